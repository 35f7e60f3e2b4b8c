//! The customer side: messages in, conversations opened, transfer to a human, channel close,
//! and the automatic replies a customer message triggers (SPEC §2, §4).

use super::{Effect, Engine, Outcome};
use crate::channel::Channel;
use crate::conversation::Cause;
use crate::error::{Error, Result};
use crate::ids::{ConversationId, CustomerId, GroupId};
use crate::queue::Priority;
use crate::session::{self, Config, check_text};
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

impl CustomerMessage {
    /// The customer opening the service window: opens a conversation as a message would,
    /// without text, in the customer's, the channel's or the tenant's default group.
    pub fn open_service(
        customer: CustomerId,
        channel: Channel,
        new_conversation: ConversationId,
    ) -> Self {
        CustomerMessage {
            customer,
            channel,
            text: String::new(),
            new_conversation,
            group: None,
            priority: None,
        }
    }
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
            self.route(now, id, Cause::Opened, &mut routed)?;
        } else if !opened {
            let raise = self.session(now, id).and_then(|mut s| s.raise_priority(msg.priority));
            if let Some(ask) = raise {
                self.ask(now, id, ask, &mut out)?;
            }
        }
        // A full queue may have refused it (`router/overflow.rs`): the refusal is all it hears.
        let Some(mut s) = self.session(now, id) else {
            out.append(&mut routed);
            self.reschedule(id);
            return Ok(Outcome { conversation: id, opened, effects: out });
        };
        // Keyword replies replace the message-received reply.
        let keyword = s.message_replies(now, &msg.text, &mut out);
        out.append(&mut routed);
        // After transfer to a human: the offline reply, else the queue reply.
        let offline = s.waiting_replies(now, keyword, &mut out);
        s.deliver_customer_message(now, msg.text, keyword || offline, &mut out);
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
        let msg = CustomerMessage::open_service(customer, channel, new_conversation);
        let mut out = Vec::new();
        let (id, opened) = self.ensure_open(now, &msg, &mut out)?;
        if opened && !self.settings.transfer_to_human {
            self.route(now, id, Cause::Opened, &mut out)?;
        }
        if let Some(mut s) = self.session(now, id) {
            s.open_service(now, &mut out);
        }
        self.reschedule(id);
        Ok(Outcome { conversation: id, opened, effects: out })
    }

    /// The customer asks for a human: the bot stage ends and the conversation is routed.
    pub fn request_human(&mut self, now: Timestamp, id: ConversationId) -> Result<Vec<Effect>> {
        self.open_conv(id)?;
        self.session(now, id).expect("the conversation is open").check_request_human()?;
        let mut out = Vec::new();
        self.route(now, id, Cause::TransferToHuman, &mut out)?;
        if let Some(mut s) = self.session(now, id) {
            s.waiting_replies(now, false, &mut out);
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
        let cfg = Config { settings: &self.settings, groups: &self.groups, agents: &self.agents };
        let c = cfg.open(now, customer, msg, group, out);
        self.conversations.insert(c.id, c);
        Ok((msg.new_conversation, true))
    }

    /// A customer message carrying the nickname its channel reports (empty: none): the
    /// nickname goes in before the message, and only if the message is accepted
    /// ([`session::renames`]).
    pub fn customer_message_named(
        &mut self,
        now: Timestamp,
        msg: CustomerMessage,
        nickname: &str,
    ) -> Result<Outcome> {
        if session::renames(self.customers.get(&msg.customer), nickname) {
            // Validated first: undoing the nickname afterwards would leave a new customer
            // behind.
            self.check_customer_message(&msg)?;
            let customer = self.customers.entry(msg.customer).or_default();
            customer.settings.nickname = Some(nickname.to_owned());
        }
        self.customer_message(now, msg)
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
        let group = self.config().opening_group(known, msg)?;
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
        let ask =
            self.session(now, id).expect("the conversation is open").route_request(now, cause);
        self.ask(now, id, ask, out)
    }
}
