//! The customer side: messages in, conversations opened, transfer to a human, channel close,
//! and the automatic replies a customer message triggers (SPEC §2, §4).

use super::{Effect, Engine, Event, Note, Outcome, channel_group, check_text, offline_condition};
use crate::channel::Channel;
use crate::conversation::{Cause, Conversation, State};
use crate::error::{Error, Result};
use crate::ids::{ConversationId, CustomerId, GroupId};
use crate::queue::Priority;
use crate::replies::{self, ReplyKind};
use crate::router::RouteRequest;
use crate::time::Timestamp;

/// A message posted by a channel gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerMessage {
    pub customer: CustomerId,
    pub channel: Channel,
    pub text: String,
    /// The id to give the conversation if this message opens one.
    pub new_conversation: ConversationId,
    /// The skill group the integrator routes to; otherwise the customer's, the channel's, or
    /// the tenant's default.
    pub group: Option<GroupId>,
    /// Raises the customer's priority for this conversation.
    pub priority: Option<Priority>,
}

/// Where a customer message goes.
enum Opening {
    /// The conversation the customer has open.
    Open(ConversationId),
    /// A new conversation, in this skill group.
    New(GroupId),
}

impl Engine {
    /// A customer message: opens a conversation when none is open, then answers with the
    /// automatic replies that apply.
    pub fn customer_message(&mut self, now: Timestamp, msg: CustomerMessage) -> Result<Outcome> {
        check_text(&msg.text)?;
        let mut out = Vec::new();
        let (id, opened) = self.ensure_open(now, &msg, &mut out)?;
        let c = self.conversations.get_mut(&id).expect("conversation exists");
        c.record_customer_message(now);

        // Route a new conversation now, but emit the routing replies after the message's own.
        let mut routed = Vec::new();
        if opened && !self.settings.transfer_to_human {
            self.route(now, id, Cause::Routed, &mut routed)?;
        }

        // Keyword replies replace the message-received reply.
        let c = &self.conversations[&id];
        let keyword =
            replies::keyword_rule(&self.settings.keywords, &msg.text).map(|k| k.texts.clone());
        let keyword_fired = keyword.is_some();
        if let Some(texts) = keyword {
            self.send_auto(now, id, ReplyKind::Keyword, &texts, c.agent, &mut out);
        } else if let Some(m) = self
            .settings
            .message_received
            .as_ref()
            .filter(|m| c.state != State::Assigned || m.also_in_session)
        {
            let texts = m.texts.clone();
            self.send_auto(now, id, ReplyKind::MessageReceived, &texts, c.agent, &mut out);
        }
        out.append(&mut routed);

        // After transfer to a human: the offline reply, else the queue reply.
        let offline_applies = self.offline_reply(now, id, keyword_fired, &mut out);
        if !keyword_fired && !offline_applies {
            self.queue_reply(now, id, &mut out);
        }

        let c = self.conversations.get_mut(&id).expect("conversation exists");
        // The agent-no-response timer counts from the first unanswered message, unless a
        // keyword or offline reply answered this one.
        if keyword_fired || offline_applies {
            if c.agent_no_response_from == Some(now) {
                c.agent_no_response_from = None;
            }
        } else if c.state == State::Assigned {
            c.agent_no_response_from.get_or_insert(now);
        }
        if let Some(agent) = c.agent {
            let note = Note::CustomerMessage {
                conversation: id,
                text: msg.text,
                bot_hosting: c.bot_hosting,
            };
            out.push(Effect::Notify { agent, note });
        }
        self.reschedule(id);
        Ok(Outcome { conversation: id, opened, effects: out })
    }

    /// The customer opened the service window: the open-service reply, opening a conversation
    /// when none is open.
    pub fn open_service(
        &mut self,
        now: Timestamp,
        customer: CustomerId,
        channel: Channel,
        new_conversation: ConversationId,
    ) -> Result<Outcome> {
        let msg = CustomerMessage {
            customer,
            channel,
            text: String::new(),
            new_conversation,
            group: None,
            priority: None,
        };
        let mut out = Vec::new();
        let (id, opened) = self.ensure_open(now, &msg, &mut out)?;
        if opened && !self.settings.transfer_to_human {
            self.route(now, id, Cause::Routed, &mut out)?;
        }
        if let Some(texts) = self.settings.open_service.clone() {
            let agent = self.conversations[&id].agent;
            self.send_auto(now, id, ReplyKind::OpenService, &texts, agent, &mut out);
        }
        self.reschedule(id);
        Ok(Outcome { conversation: id, opened, effects: out })
    }

    /// The customer asks for a human: the bot stage ends and the conversation is routed.
    pub fn request_human(&mut self, now: Timestamp, id: ConversationId) -> Result<Vec<Effect>> {
        let c = self.open_conv(id)?;
        if c.state != State::Bot {
            return Err(Error::InvalidTransition {
                conversation: id,
                state: c.state,
                action: "transfer to a human",
            });
        }
        let mut out = Vec::new();
        self.route(now, id, Cause::TransferToHuman, &mut out)?;
        if !self.offline_reply(now, id, false, &mut out) {
            self.queue_reply(now, id, &mut out);
        }
        self.reschedule(id);
        Ok(out)
    }

    /// The channel closed the conversation.
    pub fn channel_closed(&mut self, now: Timestamp, id: ConversationId) -> Result<Vec<Effect>> {
        self.open_conv(id)?;
        let mut out = Vec::new();
        self.finish(now, id, Cause::ChannelClosed, None, &mut out);
        Ok(out)
    }

    /// The customer's open conversation, opening one (in the bot stage) if there is none.
    fn ensure_open(
        &mut self,
        now: Timestamp,
        msg: &CustomerMessage,
        out: &mut Vec<Effect>,
    ) -> Result<(ConversationId, bool)> {
        // Validate before touching state: a refused message must change nothing.
        let group = match self.opening(msg)? {
            Opening::Open(open) => return Ok((open, false)),
            Opening::New(group) => group,
        };
        let customer = self.customers.entry(msg.customer).or_default();
        let priority = msg.priority.unwrap_or(0).max(customer.settings.priority);
        customer.open = Some(msg.new_conversation);
        let mut c = Conversation::open(
            msg.new_conversation,
            msg.customer,
            msg.channel,
            group,
            priority,
            now,
        );
        c.transition(now, State::Bot, Cause::Opened, None);
        self.conversations.insert(c.id, c);
        out.push(Effect::Event(Event::Opened {
            conversation: msg.new_conversation,
            customer: msg.customer,
            channel: msg.channel,
            group,
        }));
        Ok((msg.new_conversation, true))
    }

    /// Refuses what [`Engine::customer_message`] would refuse, changing nothing: for a caller
    /// that must change the customer before the message (the nickname the channel reports)
    /// and may do so only if the message is then accepted.
    pub fn check_customer_message(&self, msg: &CustomerMessage) -> Result<()> {
        check_text(&msg.text)?;
        self.opening(msg).map(drop)
    }

    /// Where a message goes: the customer's open conversation, or a new one in this group.
    fn opening(&self, msg: &CustomerMessage) -> Result<Opening> {
        let known = self.customers.get(&msg.customer);
        if let Some(open) = known.and_then(|u| u.open) {
            return Ok(Opening::Open(open));
        }
        if self.conversations.contains_key(&msg.new_conversation) {
            return Err(Error::AlreadyExists(format!("conversation {}", msg.new_conversation)));
        }
        let group = msg
            .group
            .or(known.and_then(|u| u.settings.group))
            .or_else(|| channel_group(&self.settings, msg.channel))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "no skill group for customer {}: name one in the request, or set the customer's group, the channel's group or the tenant's default group",
                    msg.customer
                ))
            })?;
        if !self.groups.contains_key(&group) {
            return Err(Error::UnknownGroup(group));
        }
        Ok(Opening::New(group))
    }

    /// Hands a conversation in the bot stage to the router.
    fn route(
        &mut self,
        now: Timestamp,
        id: ConversationId,
        cause: Cause,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        let c = &self.conversations[&id];
        let customer = self.customers.get(&c.customer);
        let req = RouteRequest {
            group: c.group,
            priority: c.priority,
            entered_at: now,
            dedicated: customer.and_then(|u| u.settings.dedicated_agent),
            last_agent: customer.and_then(|u| u.last_agent),
        };
        let mut rout = Vec::new();
        self.router.route(now, id, req, &mut rout)?;
        self.apply(now, rout, cause, out);
        Ok(())
    }

    /// Sends the offline reply if its condition holds; returns whether an offline reply
    /// applies (it then replaces the queue reply and the agent-no-response timer).
    fn offline_reply(
        &mut self,
        now: Timestamp,
        id: ConversationId,
        keyword_fired: bool,
        out: &mut Vec<Effect>,
    ) -> bool {
        let c = &self.conversations[&id];
        let dedicated = self.customers.get(&c.customer).and_then(|u| u.settings.dedicated_agent);
        let Some(agent) = offline_condition(&self.router, c, dedicated) else {
            return false;
        };
        let Some(reply) = self.levels(c, agent).resolve(|r| r.offline.as_ref()).cloned() else {
            return false;
        };
        if keyword_fired {
            // A keyword reply replaces the offline reply, which still silences the others.
            return true;
        }
        let due = c
            .last_offline_reply_at
            .is_none_or(|t| reply.min_interval.is_zero() || now >= t + reply.min_interval);
        if due {
            self.conversations.get_mut(&id).expect("conversation exists").last_offline_reply_at =
                Some(now);
            let staff = agent.or(self.conversations[&id].agent);
            self.send_auto(now, id, ReplyKind::Offline, &reply.texts, staff, out);
        }
        true
    }

    /// The queue reply for a waiting conversation: the rule for its position, at most once
    /// per interval.
    fn queue_reply(&mut self, now: Timestamp, id: ConversationId, out: &mut Vec<Effect>) {
        let c = &self.conversations[&id];
        if c.state != State::Queued {
            return;
        }
        let Some(reply) = self.levels(c, None).resolve(|r| r.queue.as_ref()) else { return };
        if c.last_queue_reply_at.is_some_and(|t| now < t + reply.min_interval) {
            return;
        }
        let Some(position) = self.router.position(id) else { return };
        let dedicated = self.customers.get(&c.customer).and_then(|u| u.settings.dedicated_agent);
        let Some(rule) = replies::queue_rule(reply, position) else {
            return;
        };
        let texts = rule.texts.clone();
        self.conversations.get_mut(&id).expect("conversation exists").last_queue_reply_at =
            Some(now);
        self.send_auto(now, id, ReplyKind::Queue, &texts, dedicated, out);
    }
}
