//! One tenant's routing domain, as a façade over two kinds of state machine that talk only
//! through messages: the [`Router`] (queues, agents, capacity, offers, affinity, statuses) and
//! one [`Session`] per customer with an open conversation (lifecycle, automatic replies,
//! budgets, deadlines). The façade finds the session a call is for, hands the router what the
//! session asks ([`Ask`]) and hands each session what the router decided ([`Placed`]) with
//! where it now stands ([`Standing`](crate::router::Standing)), all synchronously, so every
//! rule holds exactly on one node. It also keeps the configuration, the customer directory
//! and the deadline index.
//!
//! Each operation takes `now` and returns the [`Effect`]s to execute. Deadlines are state:
//! [`Engine::next_deadline`] says when to call [`Engine::advance`], and rebuilding an engine
//! from stored state re-arms every timer.

pub mod customer_message;
pub mod effect;
pub(crate) mod facts;
mod service;
mod timers;

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

pub use self::effect::{Effect, Event, Note, Sender, Target};
use self::facts::Step;
use crate::channel::Channel;
use crate::config::{AgentSettings, CustomerSettings, GroupSettings, TenantSettings};
use crate::conversation::{Cause, Conversation, State};
use crate::error::{Error, Result};
use crate::ids::{AgentId, ConversationId, CustomerId, GroupId};
use crate::replies::{self, ReplyKind};
use crate::router::{self, Placement, Router};
pub use crate::session::Customer;
use crate::session::{Ask, Config, Placed, Session};
use crate::time::Timestamp;

/// Longest customer or agent message text, in bytes.
pub const MAX_MESSAGE_TEXT: usize = 8 * 1024;

/// Who performs an operation, for the rules that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    Agent(AgentId),
    Supervisor(AgentId),
    /// The channel gateway or an integrator.
    System,
}

/// Which assigned conversations a bot-hosting switch applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Conversations(Vec<ConversationId>),
    AssignedTo(AgentId),
    All,
}

/// The result of an operation that may open a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub conversation: ConversationId,
    pub opened: bool,
    pub effects: Vec<Effect>,
}

/// An ended conversation handed out of the engine by [`Engine::take_ended`], with the moment
/// retention deletes it (SPEC §7: 48 h if no agent took it, 60 days otherwise, from its end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub conversation: Conversation,
    pub purge_at: Timestamp,
}

/// Serializable: a snapshot plus the commands after it rebuild the same engine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Engine {
    settings: TenantSettings,
    groups: FxHashMap<GroupId, GroupSettings>,
    agents: FxHashMap<AgentId, AgentSettings>,
    customers: FxHashMap<CustomerId, Customer>,
    conversations: FxHashMap<ConversationId, Conversation>,
    router: Router,
    /// Next deadline of every conversation that has one.
    deadlines: BTreeSet<(Timestamp, ConversationId)>,
    scheduled: FxHashMap<ConversationId, Timestamp>,
    /// Conversations ended since the last [`Engine::take_ended`], oldest first.
    #[serde(default)]
    ended: Vec<ConversationId>,
}

impl Engine {
    pub fn new(settings: TenantSettings) -> Result<Self> {
        settings.validate()?;
        let router = Router::new(settings.offline_grace, settings.not_responding);
        Ok(Engine { settings, router, ..Default::default() })
    }

    // ----- configuration -------------------------------------------------------------------

    pub fn settings(&self) -> &TenantSettings {
        &self.settings
    }

    pub fn set_settings(&mut self, settings: TenantSettings) -> Result<()> {
        settings.validate()?;
        self.router.set_policies(settings.offline_grace, settings.not_responding);
        self.settings = settings;
        self.reschedule_where(|_| true);
        Ok(())
    }

    pub fn upsert_group(
        &mut self,
        now: Timestamp,
        id: GroupId,
        settings: GroupSettings,
    ) -> Result<Vec<Effect>> {
        settings.validate()?;
        for (i, s) in settings.policy.steps.iter().enumerate() {
            if s.group == id && s.min_level.is_none() {
                return Err(Error::InvalidArgument(format!(
                    "policy.steps[{i}].group: a step widens to another group, not the group itself, or lowers policy.min_level"
                )));
            }
            if !self.groups.contains_key(&s.group) {
                return Err(Error::UnknownGroup(s.group));
            }
        }
        if let Some(to) = settings.policy.overflow.and_then(|o| o.group) {
            self.check_overflow(id, to)?;
        }
        let mut rout = Vec::new();
        self.router.upsert_group(now, id, settings.policy.clone(), &mut rout);
        self.groups.insert(id, settings);
        let mut out = Vec::new();
        self.apply(now, rout, Cause::Routed, &mut out);
        self.reschedule_where(|c| c.group == id);
        Ok(out)
    }

    /// Business hours (`router/hours.rs`): the tenant zone's UTC offsets, built by the shell
    /// from `time_zone`, with the hours of the settings; every group's open state is
    /// computed again. Call after `set_settings` and when a node starts.
    pub fn set_calendar(&mut self, now: Timestamp, offsets: crate::hours::Offsets) -> Vec<Effect> {
        let mut rout = Vec::new();
        self.router.set_calendar(now, self.settings.hours.clone(), offsets, &mut rout);
        let mut out = Vec::new();
        self.apply(now, rout, Cause::Routed, &mut out);
        self.reschedule_where(|_| true);
        out
    }

    /// Refuses an overflow from `id` to `to` that names an unknown group or closes a loop
    /// (`router/overflow.rs`: a chain must end), naming the loop.
    fn check_overflow(&self, id: GroupId, to: GroupId) -> Result<()> {
        if !self.groups.contains_key(&to) {
            return Err(Error::UnknownGroup(to));
        }
        let mut chain = vec![id, to];
        let mut at = to;
        while at != id {
            if chain.len() > self.groups.len() + 1 {
                break;
            }
            let Some(next) = self.groups.get(&at).and_then(|g| g.policy.overflow?.group) else {
                return Ok(());
            };
            chain.push(next);
            at = next;
        }
        let names: Vec<String> = chain.iter().map(|g| g.to_string()).collect();
        Err(Error::InvalidArgument(format!(
            "policy.overflow.group: the overflow chain loops ({}); a chain must end in a group without overflow or in a refusal",
            names.join(" → ")
        )))
    }

    pub fn remove_group(&mut self, id: GroupId) -> Result<()> {
        self.router.remove_group(id)?;
        self.groups.remove(&id);
        Ok(())
    }

    pub fn upsert_agent(
        &mut self,
        now: Timestamp,
        id: AgentId,
        settings: AgentSettings,
    ) -> Result<Vec<Effect>> {
        settings.validate()?;
        if let Some(g) = settings.groups.iter().find(|g| !self.groups.contains_key(g)) {
            return Err(Error::UnknownGroup(*g));
        }
        let mut rout = Vec::new();
        self.router.upsert_agent(
            now,
            id,
            settings.capacity,
            settings.groups.clone(),
            settings.proficiency.clone(),
            &mut rout,
        )?;
        self.agents.insert(id, settings);
        let mut out = Vec::new();
        self.apply(now, rout, Cause::Routed, &mut out);
        self.reschedule_where(|c| c.agent == Some(id));
        Ok(out)
    }

    /// Signs the agent out, requeues its conversations at the front, and forgets it.
    pub fn remove_agent(&mut self, now: Timestamp, id: AgentId) -> Result<Vec<Effect>> {
        let mut rout = Vec::new();
        self.router.remove_agent(now, id, &mut rout)?;
        self.agents.remove(&id);
        let mut out = Vec::new();
        self.apply(now, rout, Cause::AgentOffline, &mut out);
        Ok(out)
    }

    /// Sets what an administrator sets on a customer; refuses an unknown group or dedicated
    /// agent ([`Config::check_customer`], the conversation side's rule too). The settings are
    /// read by the customer's next routing, except a new dedicated agent, which a waiting
    /// conversation follows at once ([`Router::reaffine`]).
    pub fn upsert_customer(
        &mut self,
        now: Timestamp,
        id: CustomerId,
        settings: CustomerSettings,
    ) -> Result<Vec<Effect>> {
        self.config().check_customer(&settings)?;
        let customer = self.customers.entry(id).or_default();
        let dedicated = settings.dedicated_agent;
        let changed = customer.settings.dedicated_agent != dedicated;
        customer.settings = settings;
        let mut out = Vec::new();
        if changed && let Some(conv) = customer.open {
            let mut rout = Vec::new();
            self.router.reaffine(now, conv, dedicated, &mut rout);
            self.apply(now, rout, Cause::Routed, &mut out);
        }
        Ok(out)
    }

    // ----- queries -------------------------------------------------------------------------

    pub fn conversation(&self, id: ConversationId) -> Option<&Conversation> {
        self.conversations.get(&id)
    }

    pub fn conversations(&self) -> impl Iterator<Item = &Conversation> {
        self.conversations.values()
    }

    /// How many conversations the engine holds (open, and ended within retention).
    pub fn conversation_count(&self) -> usize {
        self.conversations.len()
    }

    pub fn customer(&self, id: CustomerId) -> Option<&Customer> {
        self.customers.get(&id)
    }

    pub fn agent_settings(&self, id: AgentId) -> Option<&AgentSettings> {
        self.agents.get(&id)
    }

    pub fn group_settings(&self, id: GroupId) -> Option<&GroupSettings> {
        self.groups.get(&id)
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Exact 1-based queue position of a waiting conversation.
    pub fn position(&self, id: ConversationId) -> Option<usize> {
        self.router.position(id)
    }

    /// Estimated wait of a conversation waiting in its group's queue, at `now`: its exact
    /// position over the group's recent service rate (`router/ewt.rs`); `None` when it is not
    /// waiting there or the group has no service history yet.
    pub fn estimated_wait(
        &self,
        now: Timestamp,
        id: ConversationId,
    ) -> Option<std::time::Duration> {
        self.router.estimated_wait(now, id)
    }

    /// A queue position as the customer sees it (`5000+` above 5000).
    pub fn displayed_position(&self, id: ConversationId) -> Option<String> {
        self.position(id).map(replies::display_position)
    }

    /// Up to which moment `viewer` may read the transcript (SPEC §7); see
    /// [`Conversation::visible_until`].
    pub fn visible_until(&self, id: ConversationId, viewer: Actor) -> Option<Option<Timestamp>> {
        self.conversations.get(&id)?.visible_until(viewer)
    }

    /// Hands out every conversation that ended since the last call and forgets it, with its
    /// retention deadline: history belongs to the store, the engine keeps live work only. What
    /// routing still needs of it (the customer's last agent) is already on the customer. A
    /// shell that never calls this keeps ended conversations until retention purges them.
    pub fn take_ended(&mut self) -> Vec<Ended> {
        let ids = std::mem::take(&mut self.ended);
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(c) = self.conversations.remove(&id) else { continue };
            if let Some(at) = self.scheduled.remove(&id) {
                self.deadlines.remove(&(at, id));
            }
            let purge_at = c.purge_at(&self.thresholds(&c)).unwrap_or(c.opened_at);
            out.push(Ended { conversation: c, purge_at });
        }
        out
    }

    /// Brings an archived conversation back for one command that acts on it after its end
    /// (a rating, tags): it is ended, so no rule routes or times it, and the next
    /// [`take_ended`](Self::take_ended) hands it out again. Ignored if not ended or present.
    pub fn restore_ended(&mut self, conversation: Conversation) {
        let id = conversation.id;
        if conversation.is_open() || self.conversations.contains_key(&id) {
            return;
        }
        self.conversations.insert(id, conversation);
        self.ended.push(id);
    }

    /// Forgets a customer that has nothing open, handing back what the engine knew of it, so
    /// the shell can keep it in the store and [`restore_customer`](Self::restore_customer) it
    /// before the next command that needs it. `None` (and nothing forgotten) if it is unknown
    /// or has a conversation open.
    pub fn evict_customer(&mut self, id: CustomerId) -> Option<Customer> {
        if self.customers.get(&id)?.open.is_some() {
            return None;
        }
        self.customers.remove(&id)
    }

    /// Brings back an evicted customer. References that went stale while it was away (a
    /// group or an agent since deleted) are dropped, as deleting them would have done.
    pub fn restore_customer(&mut self, id: CustomerId, mut customer: Customer) {
        if self.customers.contains_key(&id) {
            return;
        }
        customer.open = None;
        let s = &mut customer.settings;
        s.group = s.group.filter(|g| self.groups.contains_key(g));
        s.dedicated_agent = s.dedicated_agent.filter(|a| self.agents.contains_key(a));
        customer.last_agent = customer.last_agent.filter(|a| self.agents.contains_key(a));
        self.customers.insert(id, customer);
    }

    /// How many customers the engine holds.
    pub fn customer_count(&self) -> usize {
        self.customers.len()
    }

    /// Checks every invariant across router and conversations; used by property tests.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        self.router.check_invariants()?;
        for c in self.conversations.values() {
            let placement = self.router.placement(c.id);
            let consistent = match (c.state, placement) {
                (State::Bot | State::Ended, None) => true,
                (State::Queued, Some(Placement::Queued { group, .. })) => *group == c.group,
                (State::Offered, Some(Placement::Offered { agent, .. })) => c.agent == Some(*agent),
                (State::Assigned, Some(Placement::Assigned { agent, .. })) => {
                    c.agent == Some(*agent)
                }
                _ => false,
            };
            if !consistent {
                return Err(format!(
                    "{} is {:?} with agent {:?} but placed {placement:?}",
                    c.id, c.state, c.agent
                ));
            }
            if let Some(limit) = c.channel.reply_budget()
                && c.consecutive_service > limit
            {
                return Err(format!(
                    "{} sent {} service messages on a budget of {limit}",
                    c.id, c.consecutive_service
                ));
            }
            if c.is_open() && self.customers.get(&c.customer).and_then(|u| u.open) != Some(c.id) {
                return Err(format!("{} is open but its customer points elsewhere", c.id));
            }
            let want = c.next_deadline(&self.thresholds(c)).map(|(at, _)| at);
            if self.scheduled.get(&c.id).copied() != want {
                return Err(format!(
                    "{} is scheduled at {:?}, its next deadline is {want:?}",
                    c.id,
                    self.scheduled.get(&c.id)
                ));
            }
        }
        for (id, u) in &self.customers {
            if let Some(open) = u.open
                && !self.conversations.get(&open).is_some_and(|c| c.is_open() && c.customer == *id)
            {
                return Err(format!(
                    "customer {id} points to {open}, which is not its open conversation"
                ));
            }
        }
        if self.deadlines.len() != self.scheduled.len() {
            return Err("deadline index out of step".into());
        }
        Ok(())
    }

    // ----- shared internals ----------------------------------------------------------------

    fn conv(&self, id: ConversationId) -> Result<&Conversation> {
        self.conversations.get(&id).ok_or(Error::UnknownConversation(id))
    }

    /// An open conversation past its bot stage (the router holds it), for an agent's accept,
    /// decline or pick: one still with its bot is refused as not yet routable.
    fn routed_conv(&self, id: ConversationId, action: &'static str) -> Result<&Conversation> {
        let c = self.open_conv(id)?;
        if c.state == State::Bot {
            return Err(Error::InvalidTransition { conversation: id, state: State::Bot, action });
        }
        Ok(c)
    }

    fn open_conv(&self, id: ConversationId) -> Result<&Conversation> {
        let c = self.conv(id)?;
        if c.is_open() {
            Ok(c)
        } else {
            Err(Error::InvalidTransition {
                conversation: id,
                state: State::Ended,
                action: "act on an ended conversation",
            })
        }
    }

    /// The configuration as sessions read it.
    fn config(&self) -> Config<'_> {
        Config { settings: &self.settings, groups: &self.groups, agents: &self.agents }
    }

    /// The session of an open conversation, told where it stands at `now`.
    fn session(&mut self, now: Timestamp, id: ConversationId) -> Option<Session<'_>> {
        let conv = self.conversations.get_mut(&id).filter(|c| c.is_open())?;
        let customer = self.customers.entry(conv.customer).or_default();
        let standing = self.router.standing_at(now, id, customer.settings.dedicated_agent);
        let cfg = Config { settings: &self.settings, groups: &self.groups, agents: &self.agents };
        Some(Session { cfg, customer, conv, standing })
    }

    /// Runs one router operation and applies what it did.
    fn routed(
        &mut self,
        now: Timestamp,
        cause: Cause,
        op: impl FnOnce(&mut Router, &mut Vec<router::Effect>) -> Result<()>,
    ) -> Result<Vec<Effect>> {
        let mut rout = Vec::new();
        op(&mut self.router, &mut rout)?;
        let mut out = Vec::new();
        self.apply(now, rout, cause, &mut out);
        Ok(out)
    }

    /// Hands the router what a session asked. Only a route can be refused.
    fn ask(
        &mut self,
        now: Timestamp,
        id: ConversationId,
        ask: Ask,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        match ask {
            Ask::Route { request, cause } => {
                let mut rout = Vec::new();
                self.router.route(now, id, request, &mut rout)?;
                self.apply_routed(now, rout, cause, Some(id), out);
            }
            Ask::Raise { priority } => {
                let mut rout = Vec::new();
                self.router.raise_priority(now, id, priority, &mut rout);
                self.apply(now, rout, Cause::Routed, out);
            }
            Ask::Leave => {
                self.ended.push(id);
                let mut rout = Vec::new();
                self.router.remove(now, id, &mut rout);
                self.apply(now, rout, Cause::Routed, out);
                self.reschedule(id);
            }
            Ask::Alert { agent, group } => facts::alert(&self.router, id, agent, group, out),
        }
        Ok(())
    }

    /// Hands the router what a session asked, when that cannot be a route.
    fn settle(
        &mut self,
        now: Timestamp,
        id: ConversationId,
        ask: Option<Ask>,
        out: &mut Vec<Effect>,
    ) {
        if let Some(ask) = ask {
            debug_assert!(!matches!(ask, Ask::Route { .. }), "a session routes only when told");
            // Leaving and alerting are never refused.
            let _ = self.ask(now, id, ask, out);
        }
    }

    /// Hands a session what the router decided about its conversation.
    fn deliver(&mut self, now: Timestamp, id: ConversationId, fact: Placed, out: &mut Vec<Effect>) {
        let ask = self.session(now, id).and_then(|mut s| s.placed(now, fact, out));
        self.settle(now, id, ask, out);
    }

    /// Turns router effects into session facts, agent notes and events. `cause` names the
    /// operation for transitions whose router effect carries none.
    fn apply(
        &mut self,
        now: Timestamp,
        effects: Vec<router::Effect>,
        cause: Cause,
        out: &mut Vec<Effect>,
    ) {
        self.apply_routed(now, effects, cause, None, out);
    }

    /// [`apply`](Self::apply) for the operation that first routed `routed`: wherever that
    /// conversation lands (queued, offered, assigned), the transition carries `cause`.
    fn apply_routed(
        &mut self,
        now: Timestamp,
        effects: Vec<router::Effect>,
        cause: Cause,
        routed: Option<ConversationId>,
        out: &mut Vec<Effect>,
    ) {
        let known = |c: ConversationId| self.conversations.contains_key(&c);
        let mut touched = Vec::new();
        for step in facts::steps(effects, cause, routed, known) {
            match step {
                Step::Placed(conversation, fact) => {
                    touched.push(conversation);
                    self.deliver(now, conversation, fact, out);
                }
                Step::Effect(e) => out.push(e),
                // Offline replies and in-session thresholds depend on the status.
                Step::Status(agent) => {
                    if let Some(a) = self.router.agent(agent) {
                        touched.extend(a.assigned.iter().chain(a.offered.iter()).copied());
                    }
                }
            }
        }
        for id in touched {
            self.reschedule(id);
        }
    }

    /// Ends a conversation through its session, and the router lets go of it.
    fn finish(
        &mut self,
        now: Timestamp,
        id: ConversationId,
        cause: Cause,
        reply: Option<ReplyKind>,
        out: &mut Vec<Effect>,
    ) {
        let ask = self.session(now, id).and_then(|mut s| s.finish(now, cause, reply, out));
        self.settle(now, id, ask, out);
    }
}

/// Which channel's default group applies.
pub(crate) fn channel_group(settings: &TenantSettings, channel: Channel) -> Option<GroupId> {
    settings.channel_groups.get(&channel).copied().or(settings.default_group)
}

#[cfg(test)]
pub(crate) mod tests;
