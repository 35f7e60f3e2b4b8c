//! One customer's side of a tenant: the customer, its open conversation, and every rule that
//! lives with that conversation (SPEC §2, §4, §5): lifecycle transitions, message bookkeeping,
//! automatic replies and their budget, deadlines.
//!
//! A [`Session`] never reads or changes the [`Router`](crate::router::Router). What the router
//! decided comes in as a [`Placed`] fact, and what it knows about where the conversation
//! stands (queue position, the offline condition) as a [`Standing`]; what the router must do
//! goes out as an [`Ask`]. The [`Engine`](crate::engine::Engine) façade delivers both at once
//! on one node, which is what keeps every rule exact there; conversation actors on other nodes
//! receive the same facts as messages, a [`Standing`] possibly one message stale.
//!
//! The tenant's configuration ([`Config`]) is read-only here: every holder of a session has a
//! copy.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::channel::MessageTag;
use crate::config::{AgentSettings, CustomerSettings, GroupSettings, TenantSettings, Texts};
use crate::conversation::{Cause, Conversation, Due, State, Thresholds};
use crate::engine::customer_message::CustomerMessage;
use crate::engine::{Actor, Effect, Event, MAX_MESSAGE_TEXT, Note, Sender, Target, channel_group};
use crate::error::{Error, Result};
use crate::ids::{AgentId, ConversationId, GroupId};
use crate::queue::Priority;
use crate::replies::{self, Levels, Placeholders, ReplyKind};
pub use crate::router::Standing;
use crate::router::{RouteRequest, Via};
use crate::time::Timestamp;

/// A customer and what the core remembers of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub settings: CustomerSettings,
    /// The last agent who served the customer (SPEC §2, §3).
    pub last_agent: Option<AgentId>,
    pub open: Option<ConversationId>,
}

/// The tenant's configuration as a session reads it.
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    pub settings: &'a TenantSettings,
    pub groups: &'a FxHashMap<GroupId, GroupSettings>,
    pub agents: &'a FxHashMap<AgentId, AgentSettings>,
}

impl<'a> Config<'a> {
    /// The reply levels for a conversation, with `agent` as the agent level.
    pub fn levels(&self, c: &Conversation, agent: Option<AgentId>) -> Levels<'a> {
        Levels {
            agent: agent.and_then(|a| self.agents.get(&a)).map(|a| &a.replies),
            group: self.groups.get(&c.group).map(|g| &g.replies),
            channel: self.settings.channel_replies.get(&c.channel),
            tenant: &self.settings.replies,
        }
    }

    /// The thresholds in force for a conversation.
    pub fn thresholds(&self, c: &Conversation) -> Thresholds {
        let levels = self.levels(c, c.agent);
        Thresholds {
            agent_no_response: levels.resolve(|r| r.agent_no_response.as_ref()).map(|r| r.after),
            customer_no_response: levels
                .resolve(|r| r.customer_no_response.as_ref())
                .map(|r| r.after),
            idle_end: levels.resolve(|r| r.idle_end.as_ref()).map(|r| r.after),
            customer_no_response_end: levels
                .resolve(|r| r.customer_no_response_end.as_ref())
                .map(|r| r.after),
            unreplied_alert: self.settings.unreplied_alert,
            reply_window: self.settings.reply_window(c.channel),
            window_ends: !c.channel.window_allows_tags(),
            retention_unaccepted: self.settings.retention_unaccepted,
            retention_accepted: self.settings.retention_accepted,
        }
    }

    /// The skill group a customer's new conversation opens in: the one the message names,
    /// else the customer's, the channel's, or the tenant's default. A customer's group
    /// deleted since counts as none (a tenant on actors keeps customers' settings where the
    /// deletion cannot see them; they read it as empty too).
    pub fn opening_group(
        &self,
        customer: Option<&Customer>,
        msg: &CustomerMessage,
    ) -> Result<GroupId> {
        let own = customer.and_then(|u| u.settings.group).filter(|g| self.groups.contains_key(g));
        let group = msg
            .group
            .or(own)
            .or_else(|| channel_group(self.settings, msg.channel))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "no skill group for customer {}: name one in the request, or set the customer's group, the channel's group or the tenant's default group",
                    msg.customer
                ))
            })?;
        if !self.groups.contains_key(&group) {
            return Err(Error::UnknownGroup(group));
        }
        Ok(group)
    }

    /// Refuses customer settings naming a group or an agent this configuration does not have
    /// (what an administrator sets: [`Engine::upsert_customer`] and
    /// [`ConversationSide::put_customer`](crate::mesh::ConversationSide::put_customer)).
    ///
    /// [`Engine::upsert_customer`]: crate::engine::Engine::upsert_customer
    pub fn check_customer(&self, settings: &CustomerSettings) -> Result<()> {
        if let Some(g) = settings.group.filter(|g| !self.groups.contains_key(g)) {
            return Err(Error::UnknownGroup(g));
        }
        if let Some(a) = settings.dedicated_agent.filter(|a| !self.agents.contains_key(a)) {
            return Err(Error::UnknownAgent(a));
        }
        Ok(())
    }

    /// Opens the customer's conversation in `group` (in the bot stage when the tenant has one)
    /// with the priority the message, the customer and its customer groups give it.
    pub fn open(
        &self,
        now: Timestamp,
        customer: &mut Customer,
        msg: &CustomerMessage,
        group: GroupId,
        out: &mut Vec<Effect>,
    ) -> Conversation {
        let priority = msg
            .priority
            .unwrap_or(0)
            .max(customer.settings.priority)
            .max(self.settings.customer_group_priority(&customer.settings.customer_groups));
        customer.open = Some(msg.new_conversation);
        let mut c = Conversation::open(
            msg.new_conversation,
            msg.customer,
            msg.channel,
            group,
            priority,
            now,
        );
        // Without the bot stage it goes straight to routing, whose first transition says
        // `opened` (SPEC §2).
        if self.settings.transfer_to_human {
            c.transition(now, State::Bot, Cause::Opened, None);
        }
        out.push(Effect::Event(Event::Opened {
            conversation: msg.new_conversation,
            customer: msg.customer,
            channel: msg.channel,
            group,
        }));
        c
    }

    fn nickname(&self, agent: Option<AgentId>) -> Option<&'a str> {
        agent.and_then(|a| self.agents.get(&a)).map(|a| a.nickname.as_str())
    }
}

/// A router decision about one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placed {
    /// Waiting in `group`'s queue (or pinned to one agent). `cause` says why it (re)entered.
    Queued { group: GroupId, pinned_to: Option<AgentId>, cause: Cause },
    /// `cause`: why it left where it was (`Routed`, or what routed it in the first place).
    Offered { agent: AgentId, cause: Cause },
    /// `cause` overrides the one `via` implies, for the step that first routed it.
    Assigned { agent: AgentId, via: Via, cause: Option<Cause> },
    /// `group`'s overflow rule refused it (`router/overflow.rs`): it is no longer placed.
    Refused { group: GroupId },
    /// An overflow rule or a transfer moved it to `group`, where an agent takes it at once
    /// (the offer or assignment follows); moved into a queue, `Queued` says so instead.
    Moved { group: GroupId },
    /// It waits in `group`, which is closed (business hours): the `closed` reply, once.
    OutsideHours { group: GroupId },
    /// `group` is closed and ends what reaches it (`router/hours.rs`): it is no longer placed.
    Closed { group: GroupId },
}

/// What a session asks of the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// Place the conversation (SPEC §3).
    Route { request: RouteRequest, cause: Cause },
    /// It ended: let go of it.
    Leave,
    /// The customer raised its priority: move it up its queue, keeping its entry time.
    Raise { priority: Priority },
    /// Alert whoever can answer: its agent, or every member of its group while it waits.
    Alert { agent: Option<AgentId>, group: GroupId },
}

/// One customer with its open conversation, as a state machine.
#[derive(Debug)]
pub struct Session<'a> {
    pub cfg: Config<'a>,
    pub customer: &'a mut Customer,
    pub conv: &'a mut Conversation,
    pub standing: Standing,
}

impl<'a> Session<'a> {
    /// What the router needs to place the conversation.
    pub fn route_request(&self, now: Timestamp, cause: Cause) -> Ask {
        let request = RouteRequest {
            group: self.conv.group,
            priority: self.conv.priority,
            entered_at: now,
            dedicated: self.customer.settings.dedicated_agent,
            last_agent: self.customer.last_agent,
        };
        Ask::Route { request, cause }
    }

    // ----- facts from the router -------------------------------------------------------------

    /// Applies a router decision: the transition, and what the customer and agent hear of it.
    /// A refusal ends the conversation: the router already let go, and `Ask::Leave` says so.
    pub fn placed(&mut self, now: Timestamp, fact: Placed, out: &mut Vec<Effect>) -> Option<Ask> {
        let id = self.conv.id;
        match fact {
            Placed::Queued { group, pinned_to, cause } => {
                let c = &mut *self.conv;
                let moved = c.state != State::Queued || c.group != group;
                c.group = group;
                if moved {
                    c.transition(now, State::Queued, cause, None);
                    out.push(Effect::Event(Event::Queued { conversation: id, group, pinned_to }));
                }
            }
            Placed::Offered { agent, cause } => {
                self.conv.transition(now, State::Offered, cause, Some(agent));
            }
            Placed::Assigned { agent, via, cause } => self.assigned(now, agent, via, cause, out),
            Placed::Moved { group } => self.conv.group = group,
            Placed::Refused { group } => {
                self.conv.group = group;
                let levels = self.cfg.levels(self.conv, None);
                if let Some(texts) = levels.resolve(|r| r.queue_full.as_ref()) {
                    let dedicated = self.customer.settings.dedicated_agent;
                    self.send_auto(now, ReplyKind::QueueFull, texts, dedicated, out);
                }
                return self.finish(now, Cause::QueueFull, None, out);
            }
            Placed::OutsideHours { .. } => self.closed_reply(now, out),
            Placed::Closed { group } => {
                self.conv.group = group;
                self.closed_reply(now, out);
                return self.finish(now, Cause::Closed, None, out);
            }
        }
        None
    }

    /// The `closed` reply, by the usual precedence, when configured.
    fn closed_reply(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        let levels = self.cfg.levels(self.conv, None);
        if let Some(texts) = levels.resolve(|r| r.closed.as_ref()) {
            let dedicated = self.customer.settings.dedicated_agent;
            self.send_auto(now, ReplyKind::Closed, texts, dedicated, out);
        }
    }

    fn assigned(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        via: Via,
        cause: Option<Cause>,
        out: &mut Vec<Effect>,
    ) {
        let c = &mut *self.conv;
        let id = c.id;
        let from_queue = c.waited_in_queue;
        let entered = c
            .transitions
            .iter()
            .rev()
            .find(|t| t.to == State::Queued)
            .map_or(c.opened_at, |t| t.at);
        let cause = cause.unwrap_or(match via {
            Via::Auto => Cause::Routed,
            Via::Accepted => Cause::Accepted,
            Via::Picked => Cause::Picked,
            Via::Transferred => Cause::Transferred,
        });
        c.transition(now, State::Assigned, cause, Some(agent));
        c.waited_in_queue = false;
        self.customer.last_agent = Some(agent);
        let waited_ms = if from_queue { millis(now.since(entered)) } else { 0 };
        out.push(Effect::Notify { agent, note: Note::Assigned { conversation: id, via } });
        let group = c.group;
        out.push(Effect::Event(Event::Assigned { conversation: id, agent, group, via, waited_ms }));
        let reply = self
            .cfg
            .levels(self.conv, Some(agent))
            .resolve(|r| r.auto_accept.as_ref())
            .filter(|r| !from_queue || r.also_from_queue);
        if let Some(r) = reply {
            self.send_auto(now, ReplyKind::AutoAccept, &r.texts, Some(agent), out);
        }
    }

    // ----- the customer side -----------------------------------------------------------------

    /// A customer message that carries a priority raises the conversation's (never lowers
    /// it); a routed one asks the router to move it up.
    pub fn raise_priority(&mut self, priority: Option<Priority>) -> Option<Ask> {
        let priority = priority.filter(|p| *p > self.conv.priority)?;
        self.conv.priority = priority;
        (self.conv.state != State::Bot).then_some(Ask::Raise { priority })
    }

    /// The message's own replies: a keyword reply, else the message-received reply.
    pub fn message_replies(&mut self, now: Timestamp, text: &str, out: &mut Vec<Effect>) -> bool {
        let cfg = self.cfg;
        let agent = self.conv.agent;
        if let Some(k) = replies::keyword_rule(&cfg.settings.keywords, text) {
            self.send_auto(now, ReplyKind::Keyword, &k.texts, agent, out);
            return true;
        }
        if let Some(m) = cfg
            .settings
            .message_received
            .as_ref()
            .filter(|m| self.conv.state != State::Assigned || m.also_in_session)
        {
            self.send_auto(now, ReplyKind::MessageReceived, &m.texts, agent, out);
        }
        false
    }

    /// After transfer to a human: the offline reply, else the queue reply. Returns whether an
    /// offline reply applies.
    pub fn waiting_replies(
        &mut self,
        now: Timestamp,
        keyword_fired: bool,
        out: &mut Vec<Effect>,
    ) -> bool {
        let offline = self.offline_reply(now, keyword_fired, out);
        if !keyword_fired && !offline {
            self.queue_reply(now, out);
        }
        offline
    }

    /// Arms the agent-no-response timer and shows the message to the agent.
    pub fn deliver_customer_message(
        &mut self,
        now: Timestamp,
        text: String,
        answered: bool,
        out: &mut Vec<Effect>,
    ) {
        let c = &mut *self.conv;
        // The agent-no-response timer counts from the first unanswered message, unless a
        // keyword or offline reply answered this one.
        if answered {
            if c.agent_no_response_from == Some(now) {
                c.agent_no_response_from = None;
            }
        } else if c.state == State::Assigned {
            c.agent_no_response_from.get_or_insert(now);
        }
        if let Some(agent) = c.agent {
            let note =
                Note::CustomerMessage { conversation: c.id, text, bot_hosting: c.bot_hosting };
            out.push(Effect::Notify { agent, note });
        }
    }

    /// The open-service reply.
    pub fn open_service(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        if let Some(texts) = self.cfg.settings.open_service.as_ref() {
            let agent = self.conv.agent;
            self.send_auto(now, ReplyKind::OpenService, texts, agent, out);
        }
    }

    /// Refuses a transfer to a human unless the conversation is with the bot.
    pub fn check_request_human(&self) -> Result<()> {
        if self.conv.state != State::Bot {
            return Err(Error::InvalidTransition {
                conversation: self.conv.id,
                state: self.conv.state,
                action: "transfer to a human",
            });
        }
        Ok(())
    }

    /// Sends the offline reply if its condition holds; returns whether an offline reply
    /// applies (it then replaces the queue reply and the agent-no-response timer).
    fn offline_reply(
        &mut self,
        now: Timestamp,
        keyword_fired: bool,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(agent) = self.standing.offline else {
            return false;
        };
        let Some(reply) = self.cfg.levels(self.conv, agent).resolve(|r| r.offline.as_ref()) else {
            return false;
        };
        if keyword_fired {
            // A keyword reply replaces the offline reply, which still silences the others.
            return true;
        }
        let due = self
            .conv
            .last_offline_reply_at
            .is_none_or(|t| reply.min_interval.is_zero() || now >= t + reply.min_interval);
        if due {
            self.conv.last_offline_reply_at = Some(now);
            let staff = agent.or(self.conv.agent);
            self.send_auto(now, ReplyKind::Offline, &reply.texts, staff, out);
        }
        true
    }

    /// The queue reply for a waiting conversation: the rule for its position, at most once
    /// per interval.
    fn queue_reply(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        let c = &*self.conv;
        if c.state != State::Queued {
            return;
        }
        let Some(reply) = self.cfg.levels(c, None).resolve(|r| r.queue.as_ref()) else { return };
        if c.last_queue_reply_at.is_some_and(|t| now < t + reply.min_interval) {
            return;
        }
        let Some(position) = self.standing.position else { return };
        let Some(rule) = replies::queue_rule(reply, position) else {
            return;
        };
        self.conv.last_queue_reply_at = Some(now);
        let dedicated = self.customer.settings.dedicated_agent;
        self.send_auto(now, ReplyKind::Queue, &rule.texts, dedicated, out);
    }

    // ----- the service side ------------------------------------------------------------------

    /// A message from the conversation's agent to the customer, within the channel's reply
    /// window (Messenger: or with a tag) and budget.
    pub fn agent_message(
        &mut self,
        now: Timestamp,
        agent: AgentId,
        text: &str,
        tag: Option<MessageTag>,
    ) -> Result<Vec<Effect>> {
        check_text(text)?;
        let c = &mut *self.conv;
        let id = c.id;
        if c.state != State::Assigned || c.agent != Some(agent) {
            return Err(Error::NotAssigned { conversation: id, agent });
        }
        let window_from = c.last_customer_at.unwrap_or(c.opened_at);
        if now >= window_from + self.cfg.settings.reply_window(c.channel) {
            if !c.channel.window_allows_tags() {
                return Err(Error::OutsideReplyWindow { conversation: id, channel: c.channel });
            }
            if tag.is_none() {
                return Err(Error::TagRequired(id));
            }
        }
        if let Some(limit) = c.channel.reply_budget()
            && c.consecutive_service >= limit
        {
            return Err(Error::BudgetExhausted { conversation: id, channel: c.channel, limit });
        }
        let first = c.first_response_at.is_none();
        c.record_agent_message(now);
        let mut out = Vec::new();
        if first {
            out.push(Effect::Event(Event::FirstResponse {
                conversation: id,
                agent,
                group: c.group,
                since_opened_ms: millis(now.since(c.opened_at)),
                since_assigned_ms: millis(now.since(c.assigned_at.unwrap_or(c.opened_at))),
            }));
        }
        c.read_at = Some(now);
        out.push(Effect::Send {
            conversation: id,
            channel: c.channel,
            text: text.to_owned(),
            from: Sender::Agent(agent),
            tag,
        });
        Ok(out)
    }

    /// A supervisor's guidance, visible to the agent side only.
    pub fn whisper(&self, from: AgentId, text: &str) -> Result<Vec<Effect>> {
        check_text(text)?;
        let c = &*self.conv;
        let Some(agent) = c.agent else {
            return Err(Error::InvalidTransition {
                conversation: c.id,
                state: c.state,
                action: "whisper (no agent holds it)",
            });
        };
        Ok(vec![Effect::Notify {
            agent,
            note: Note::Whisper { conversation: c.id, from, text: text.to_owned() },
        }])
    }

    /// The agent read the conversation; flags it read-but-unreplied when the customer waits.
    pub fn mark_read(&mut self, now: Timestamp, agent: AgentId) -> Result<Vec<Effect>> {
        let c = &mut *self.conv;
        if c.agent != Some(agent) {
            return Err(Error::NotAssigned { conversation: c.id, agent });
        }
        c.read_at = Some(now);
        Ok(if c.read_unreplied() {
            vec![Effect::Notify { agent, note: Note::ReadUnreplied { conversation: c.id } }]
        } else {
            Vec::new()
        })
    }

    /// Checks who may move the conversation; returns the transfer event to emit once the
    /// router moved it.
    pub fn transfer(&self, now: Timestamp, target: Target, by: Actor) -> Result<Event> {
        let c = &*self.conv;
        if let Actor::Agent(a) = by
            && c.agent != Some(a)
        {
            return Err(Error::NotAssigned { conversation: c.id, agent: a });
        }
        if c.state == State::Bot {
            return Err(Error::InvalidTransition {
                conversation: c.id,
                state: c.state,
                action: "transfer before transfer to a human",
            });
        }
        let left_queue = match target {
            Target::Group { .. } => waited_ms(c, now).map(|ms| (c.group, ms)),
            Target::Agent(_) => None,
        };
        Ok(Event::Transferred { conversation: c.id, from: c.agent, to: target, left_queue })
    }

    /// Who ends it decides the cause: its agent, or a supervisor. A supervisor ending the
    /// conversation it serves ends it as its agent, whichever call it used.
    pub fn end_cause(&self, by: Actor) -> Result<Cause> {
        match by {
            Actor::Agent(a) | Actor::Supervisor(a) if self.conv.agent == Some(a) => {
                Ok(Cause::EndedByAgent)
            }
            Actor::Agent(a) => Err(Error::NotAssigned { conversation: self.conv.id, agent: a }),
            Actor::Supervisor(_) | Actor::System => Ok(Cause::EndedBySupervisor),
        }
    }

    /// Bot hosting on or off for an assigned conversation; whether it changed.
    pub fn set_bot_hosting(&mut self, on: bool, out: &mut Vec<Effect>) -> bool {
        let c = &mut *self.conv;
        if c.state != State::Assigned || c.bot_hosting == on {
            return false;
        }
        c.bot_hosting = on;
        if let Some(agent) = c.agent {
            out.push(Effect::Notify { agent, note: Note::BotHosting { conversation: c.id, on } });
        }
        true
    }

    /// Ends the conversation: the end reply (only if it was being served), the transition,
    /// the customer may open a new one. Asks the router to let go; `None` if already ended.
    pub fn finish(
        &mut self,
        now: Timestamp,
        cause: Cause,
        reply: Option<ReplyKind>,
        out: &mut Vec<Effect>,
    ) -> Option<Ask> {
        if !self.conv.is_open() {
            return None;
        }
        let agent = self.conv.agent;
        if self.conv.state == State::Assigned
            && let Some(kind) = reply
        {
            let levels = self.cfg.levels(self.conv, agent);
            let texts = match kind {
                ReplyKind::ManualEnd => levels.resolve(|r| r.manual_end.as_ref()),
                ReplyKind::BatchEnd => levels.resolve(|r| r.batch_end.as_ref()),
                ReplyKind::IdleEnd => levels.resolve(|r| r.idle_end.as_ref()).map(|r| &r.texts),
                ReplyKind::CustomerNoResponseEnd => {
                    levels.resolve(|r| r.customer_no_response_end.as_ref()).map(|r| &r.texts)
                }
                _ => None,
            };
            if let Some(texts) = texts {
                self.send_auto(now, kind, texts, agent, out);
            }
        }
        let c = &mut *self.conv;
        let (from, group) = (c.state, c.group);
        let waited_ms = waited_ms(c, now);
        c.transition(now, State::Ended, cause, None);
        self.customer.open = None;
        if let Some(&last) = c.served_by.last() {
            self.customer.last_agent = Some(last);
        }
        out.push(Effect::Event(Event::Ended {
            conversation: c.id,
            group,
            cause,
            agent,
            from,
            waited_ms,
        }));
        Some(Ask::Leave)
    }

    // ----- timers ----------------------------------------------------------------------------

    /// The next deadline and what is due then.
    pub fn next_deadline(&self) -> Option<(Timestamp, Due)> {
        self.conv.next_deadline(&self.cfg.thresholds(self.conv))
    }

    /// Fires what is due at `now`, if anything.
    pub fn fire(&mut self, now: Timestamp, out: &mut Vec<Effect>) -> Option<Ask> {
        let (at, due) = self.next_deadline()?;
        if at > now {
            return None;
        }
        let agent = self.conv.agent;
        let levels = self.cfg.levels(self.conv, agent);
        match due {
            Due::AgentNoResponse => {
                self.conv.agent_no_response_from = None;
                if let Some(r) = levels.resolve(|r| r.agent_no_response.as_ref()) {
                    self.send_auto(now, ReplyKind::AgentNoResponse, &r.texts, agent, out);
                }
                None
            }
            Due::CustomerNoResponse => {
                self.conv.customer_no_response_sent = true;
                if let Some(r) = levels.resolve(|r| r.customer_no_response.as_ref()) {
                    self.send_auto(now, ReplyKind::CustomerNoResponse, &r.texts, agent, out);
                }
                None
            }
            Due::UnrepliedAlert => {
                self.conv.alert_sent = true;
                Some(Ask::Alert { agent, group: self.conv.group })
            }
            Due::CustomerNoResponseEnd => self.finish(
                now,
                Cause::CustomerNoResponse,
                Some(ReplyKind::CustomerNoResponseEnd),
                out,
            ),
            Due::IdleEnd => self.finish(now, Cause::IdleTimeout, Some(ReplyKind::IdleEnd), out),
            Due::ReplyWindow => self.finish(now, Cause::ReplyWindowClosed, None, out),
            // Ended conversations are the engine's to purge.
            Due::Purge => None,
        }
    }

    /// Sends an automatic reply, as far as the channel budget allows once the humans' reserve
    /// is kept; texts that do not fit are reported as suppressed.
    fn send_auto(
        &mut self,
        now: Timestamp,
        kind: ReplyKind,
        texts: &Texts,
        staff: Option<AgentId>,
        out: &mut Vec<Effect>,
    ) {
        let id = self.conv.id;
        let placeholders = Placeholders {
            nick_name: self.customer.settings.nickname.as_deref(),
            staff_name: self.cfg.nickname(staff),
            queue_num: self.standing.position,
            wait_time: self.standing.wait,
        };
        let (channel, reserve) = (self.conv.channel, self.cfg.settings.human_reserve);
        // Past the reply window nothing untagged reaches the customer (SPEC §5: Messenger's
        // replies then need a tag, which an automatic reply never has; elsewhere the agent is
        // refused too): the reply is suppressed, as the agent's message would be refused.
        let window_from = self.conv.last_customer_at.unwrap_or(self.conv.opened_at);
        if now >= window_from + self.cfg.settings.reply_window(channel) {
            out.push(Effect::ReplySuppressed { conversation: id, kind });
            return;
        }
        for t in texts.iter() {
            let c = &mut *self.conv;
            if replies::auto_allowance(channel.reply_budget(), reserve, c.consecutive_service)
                == Some(0)
            {
                out.push(Effect::ReplySuppressed { conversation: id, kind });
                return;
            }
            c.record_auto_message(now);
            out.push(Effect::Send {
                conversation: id,
                channel,
                text: replies::render(t, &placeholders),
                from: Sender::Auto(kind),
                tag: None,
            });
        }
    }
}

/// How long a queued conversation has waited. A wait runs from the first of the trailing
/// `queued` transitions (moves between queues keep waiting).
fn waited_ms(c: &Conversation, now: Timestamp) -> Option<u64> {
    (c.state == State::Queued)
        .then(|| {
            c.transitions.iter().rev().take_while(|t| t.to == State::Queued).last().map(|t| t.at)
        })
        .flatten()
        .map(|since| millis(now.since(since)))
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether the nickname a channel reports with a customer message changes the customer's
/// (`customer`: `None` for one not known yet). It goes in before the message, so that the
/// message's replies can greet by it, and only if the message is accepted: a refused message
/// changes nothing ([`Engine::customer_message_named`],
/// [`ConversationSide::customer_message_named`](crate::mesh::ConversationSide::customer_message_named)).
///
/// [`Engine::customer_message_named`]: crate::engine::Engine::customer_message_named
pub fn renames(customer: Option<&Customer>, nickname: &str) -> bool {
    !nickname.is_empty() && customer.and_then(|c| c.settings.nickname.as_deref()) != Some(nickname)
}

pub(crate) fn check_text(text: &str) -> Result<()> {
    if text.trim().is_empty() {
        return Err(Error::InvalidArgument("text: the message is empty".into()));
    }
    if text.len() > MAX_MESSAGE_TEXT {
        return Err(Error::InvalidArgument(format!(
            "text: the message is {} bytes, the limit is {MAX_MESSAGE_TEXT}; split it",
            text.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! A session on its own: no router, only the facts a router would send.

    use super::*;
    use crate::channel::Channel;
    use crate::config::{OfflineReply, QueueReply, QueueRule};
    use crate::ids::CustomerId;
    use crate::time::secs;

    const G1: GroupId = GroupId(1);
    const A1: AgentId = AgentId(1);
    const A2: AgentId = AgentId(2);

    fn settings() -> TenantSettings {
        let mut s = TenantSettings::default();
        s.replies.queue = Some(QueueReply {
            rules: vec![QueueRule { above: 0, texts: vec!["you are number {{queue_num}}".into()] }],
            min_interval: secs(60),
        });
        s.replies.offline =
            Some(OfflineReply { texts: vec!["nobody is here".into()], min_interval: secs(0) });
        s
    }

    fn texts(effects: &[Effect]) -> Vec<&str> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn replies_follow_the_standing_the_router_sent() {
        let (settings, groups, agents) = (settings(), FxHashMap::default(), FxHashMap::default());
        let cfg = Config { settings: &settings, groups: &groups, agents: &agents };
        let now = Timestamp(0);
        let mut customer = Customer::default();
        let mut conv =
            Conversation::open(ConversationId(1), CustomerId(1), Channel::Web, G1, 0, now);
        let mut s = Session {
            cfg,
            customer: &mut customer,
            conv: &mut conv,
            standing: Standing::default(),
        };

        // Asked to route, it names its group; the router answers with a fact.
        let Ask::Route { request, .. } = s.route_request(now, Cause::Routed) else { panic!() };
        assert_eq!(request.group, G1);
        let mut out = Vec::new();
        s.placed(
            now,
            Placed::Queued { group: G1, pinned_to: None, cause: Cause::Routed },
            &mut out,
        );
        assert_eq!(s.conv.state, State::Queued);

        // "Position now 7": the queue reply shows it.
        s.standing = Standing { position: Some(7), offline: None, wait: None };
        let mut out = Vec::new();
        assert!(!s.waiting_replies(now, false, &mut out));
        assert_eq!(texts(&out), ["you are number 7"]);

        // "Everyone is offline": the offline reply replaces the queue reply.
        s.standing = Standing { position: Some(7), offline: Some(None), wait: None };
        let mut out = Vec::new();
        assert!(s.waiting_replies(now + secs(1), false, &mut out));
        assert_eq!(texts(&out), ["nobody is here"]);
    }

    #[test]
    fn an_end_asks_the_router_to_let_go_and_frees_the_customer() {
        let (settings, groups, agents) = (settings(), FxHashMap::default(), FxHashMap::default());
        let cfg = Config { settings: &settings, groups: &groups, agents: &agents };
        let now = Timestamp(0);
        let mut customer = Customer { open: Some(ConversationId(1)), ..Default::default() };
        let mut conv =
            Conversation::open(ConversationId(1), CustomerId(1), Channel::Web, G1, 0, now);
        let mut s = Session {
            cfg,
            customer: &mut customer,
            conv: &mut conv,
            standing: Standing::default(),
        };
        let mut out = Vec::new();
        s.placed(now, Placed::Assigned { agent: A1, via: Via::Auto, cause: None }, &mut out);
        assert_eq!(s.customer.last_agent, Some(A1));
        assert_eq!(s.end_cause(Actor::Agent(A1)).unwrap(), Cause::EndedByAgent);
        // A supervisor ends its own conversation as its agent, another's as a supervisor.
        assert_eq!(s.end_cause(Actor::Supervisor(A1)).unwrap(), Cause::EndedByAgent);
        assert_eq!(s.end_cause(Actor::Supervisor(A2)).unwrap(), Cause::EndedBySupervisor);
        assert!(s.end_cause(Actor::Agent(A2)).is_err(), "an agent cannot end another's");
        let ask =
            s.finish(now + secs(5), Cause::EndedByAgent, Some(ReplyKind::ManualEnd), &mut out);
        assert_eq!(ask, Some(Ask::Leave));
        assert_eq!(s.customer.open, None);
        assert_eq!(s.conv.state, State::Ended);
        // Ending twice asks nothing.
        assert_eq!(s.finish(now + secs(6), Cause::EndedByAgent, None, &mut out), None);
    }
}
