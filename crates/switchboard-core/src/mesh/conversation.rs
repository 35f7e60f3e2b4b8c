//! The conversation side: one customer and its open conversation, around a
//! [`Session`]. Every rule is the session's; this file only decides
//! when the session runs (a call, a timer, a message from the router) and what goes out on
//! the conversation's link.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::desk::{self, DeskOut};
use super::link::Link;
use super::{Body, Envelope, Holding, ToConversation, ToRouter, standing};
use crate::channel::{Channel, MessageTag};
use crate::config::CustomerSettings;
use crate::conversation::{Cause, Conversation, State};
use crate::engine::customer_message::CustomerMessage;
use crate::engine::{Actor, Effect, Event, Note, Outcome};
use crate::error::{Error, Result};
use crate::ids::{AgentId, ConversationId, CustomerId, GroupId};
use crate::replies::ReplyKind;
use crate::router::Standing;
use crate::session::{self, Ask, Config, Customer, Placed, Session, check_text};
use crate::time::Timestamp;

type ConvLink = Link<ToRouter, ToConversation>;

/// One customer's side of the tenant. Serializable: a snapshot of it is its durable state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationSide {
    id: CustomerId,
    customer: Customer,
    open: Option<Open>,
    /// Links of ended conversations whose last messages the router has not acknowledged.
    closing: BTreeMap<ConversationId, ConvLink>,
    /// Conversations ended since the last [`take_ended`](Self::take_ended).
    ended: Vec<Conversation>,
    epoch: u64,
    /// Acknowledgements owed on links this side no longer holds (volatile).
    #[serde(skip)]
    stray: Vec<(ConversationId, u64)>,
    /// The conversation's own notes also go on the holding agent's desk ([`desk`]).
    #[serde(default)]
    desk_links: bool,
    /// Unused: desk links of a row written before ([`desk`]); dropped when read.
    #[serde(default)]
    desks: Vec<DeskOut>,
    /// Notes for the holding agent's desk since the last [`Self::take_desk`] (volatile: the
    /// shell writes them in the batch of the step that made them).
    #[serde(skip)]
    desk: Vec<(AgentId, Note)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Open {
    conv: Conversation,
    /// Where it stands, as the router last said.
    #[serde(with = "standing")]
    standing: Standing,
    /// A route was asked: the router knows the conversation's link, or will.
    routed: bool,
    /// Replies that wait for the answer to the route.
    pending: Option<Pending>,
    link: ConvLink,
    /// Who holds it, as the router last said (with agent links).
    #[serde(default)]
    holding: Option<Holding>,
    /// Opened with its bot, the router was told ([`ToRouter::Bot`]): it knows the link, or
    /// will, before any route. (Last: rows are encoded by position.)
    #[serde(default)]
    listed: bool,
}

/// What opened or routed the conversation, whose replies come after its first placement
/// (on one node they follow the routing in the same call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Pending {
    Message {
        text: String,
    },
    OpenService,
    Human,
    /// A customer message that raised a queued conversation's priority (the router answers
    /// every raise).
    Raised {
        text: String,
    },
    /// A customer message written while it waits in a queue ([`ToRouter::Where`]): its
    /// replies (it was shown already).
    Wrote {
        text: String,
    },
}

/// Equal as durable state: what its row keeps (the volatile fields aside). A shell that
/// skips its row for a step checks with it that [`ConversationSide::fold`] reproduces the step.
impl PartialEq for ConversationSide {
    fn eq(&self, other: &Self) -> bool {
        let ConversationSide {
            id,
            customer,
            open,
            closing,
            ended,
            epoch,
            stray: _,
            desk_links,
            desks,
            desk: _,
        } = self;
        *id == other.id
            && *customer == other.customer
            && *open == other.open
            && *closing == other.closing
            && *ended == other.ended
            && *epoch == other.epoch
            && *desk_links == other.desk_links
            && *desks == other.desks
    }
}

/// One transcript row of the open conversation, as [`ConversationSide::fold`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// The customer wrote.
    Customer(Timestamp),
    /// The agent holding it wrote.
    Agent(Timestamp),
    /// An automatic reply went out.
    Automatic(Timestamp),
    /// Anything else (a supervisor's whisper): nothing the side keeps.
    Other,
}

impl ConversationSide {
    pub fn new(id: CustomerId, customer: Customer) -> Self {
        ConversationSide {
            id,
            customer,
            open: None,
            closing: BTreeMap::new(),
            ended: Vec::new(),
            epoch: 0,
            stray: Vec::new(),
            desk_links: false,
            desks: Vec::new(),
            desk: Vec::new(),
        }
    }

    /// With a router side `with_agent_links`: the conversation's own notes for the agent
    /// holding it (customer messages, whispers, read-but-unreplied, bot hosting) are also
    /// handed over for that agent's desk stream ([`Self::take_desk`], [`desk`]). They are
    /// still returned as `Notify` effects (as the router side's are): the shell writes the
    /// desk's entries, not those.
    pub fn with_desk(mut self) -> Self {
        self.desk_links = true;
        self
    }

    /// Who holds the open conversation, as the router last said (with agent links).
    pub fn holding(&self) -> Option<Holding> {
        self.open.as_ref().and_then(|o| o.holding)
    }

    pub fn customer(&self) -> &Customer {
        &self.customer
    }

    /// The open conversation.
    pub fn conversation(&self) -> Option<&Conversation> {
        self.open.as_ref().map(|o| &o.conv)
    }

    /// Where the open conversation stands, as the router last said.
    pub fn standing(&self) -> Option<Standing> {
        self.open.as_ref().map(|o| o.standing)
    }

    /// Whether the open conversation `id` waits for the router's answer to a route or a raise
    /// it asked for (its `Placed`, a `Standing` answering a raise, or a refusal). On one node
    /// the call that asked has that answer in its response; a shell holds the response until
    /// this is false. Not for a message's question of where it stands ([`ToRouter::Where`]):
    /// only its replies wait, so the call does not depend on the router being up.
    pub fn awaits_router(&self, id: ConversationId) -> bool {
        self.open.as_ref().is_some_and(|o| {
            o.conv.id == id
                && o.pending.as_ref().is_some_and(|p| !matches!(p, Pending::Wrote { .. }))
        })
    }

    /// How many of the router's messages about the open conversation were applied.
    pub fn applied(&self) -> u64 {
        self.open.as_ref().map_or(0, |o| o.link.inbox.applied_below() - 1)
    }

    /// Starts a new incarnation (after a restart or a move), before anything is sent.
    pub fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.desks.clear();
    }

    /// What the open conversation's transcript rows say happened to it, applied as the plain
    /// message steps that write them apply it: a customer's message (which, with no keyword
    /// or offline reply, starts the agent-no-response timer of an assigned conversation), an
    /// agent's reply (which also marks the conversation read), an automatic reply. It lets a
    /// shell leave its row as it was for such a step (ARCHITECTURE.md, "A conversation's row
    /// not rewritten by its message steps"): it skips the row only if this fold, applied to
    /// the side as the row has it, gives the side the step left (`==`), and its next
    /// activation folds the transcript rows written after its row. A step the fold does not
    /// reproduce (a raise, a route, a keyword reply, a status from the router) fails that
    /// check and writes its row, so the fold need not know every rule, only never guess.
    pub fn fold(&mut self, lines: impl IntoIterator<Item = Line>) {
        let Some(open) = self.open.as_mut() else { return };
        let c = &mut open.conv;
        for line in lines {
            match line {
                Line::Customer(at) => {
                    c.record_customer_message(at);
                    if c.state == State::Assigned {
                        c.agent_no_response_from.get_or_insert(at);
                    }
                }
                Line::Agent(at) => {
                    c.record_agent_message(at);
                    c.read_at = Some(at);
                }
                Line::Automatic(at) => c.record_auto_message(at),
                Line::Other => {}
            }
        }
    }

    /// Hands out the conversations that ended since the last call.
    pub fn take_ended(&mut self) -> Vec<Conversation> {
        std::mem::take(&mut self.ended)
    }

    // ----- the customer side -------------------------------------------------------------------

    /// A customer message: opens a conversation when none is open (and asks the router to
    /// route it unless the tenant has a bot stage), then answers with the replies that apply.
    pub fn customer_message(
        &mut self,
        cfg: Config<'_>,
        now: Timestamp,
        msg: CustomerMessage,
    ) -> Result<Outcome> {
        check_text(&msg.text)?;
        let mut out = Vec::new();
        let opened = self.ensure_open(cfg, now, &msg, &mut out)?;
        let open = self.open.as_mut().expect("opened");
        open.conv.record_customer_message(now);
        let mut raised = false;
        if !opened {
            let before = open.conv.priority;
            let raise = session(cfg, &mut self.customer, open).raise_priority(msg.priority);
            // Raised while its route is in flight: the raise follows the route on the link.
            let raise = raise.or_else(|| {
                (open.routed && open.conv.priority > before)
                    .then_some(Ask::Raise { priority: open.conv.priority })
            });
            if let Some(ask) = raise {
                // Raised in a queue, it is placed again, and a full queue's overflow rule
                // may end it there: as on one node, where the refusal is then all the
                // customer hears, its replies wait for the router's answer.
                raised = open.pending.is_none() && open.conv.state == State::Queued;
                open.link.out.push(ask.into());
            }
        }
        // Waiting in a queue, its replies read where it stands (the queue reply's position,
        // the offline condition): they wait for the router to say it now, as on one node.
        let ask = !raised
            && !opened
            && open.routed
            && open.pending.is_none()
            && open.conv.state == State::Queued;
        let mut s = session(cfg, &mut self.customer, open);
        if raised {
            open.pending = Some(Pending::Raised { text: msg.text });
        } else if ask {
            // Shown now as on one node (to nobody while it waits), and the call answered
            // now; only the replies wait.
            s.deliver_customer_message(now, msg.text.clone(), false, &mut out);
            open.link.out.push(ToRouter::Where);
            open.pending = Some(Pending::Wrote { text: msg.text });
        } else if opened && !cfg.settings.transfer_to_human {
            // Its replies depend on where routing puts it: they wait for the first decision.
            let ask = s.route_request(now, Cause::Opened);
            open.route(ask, Pending::Message { text: msg.text });
        } else {
            // Keyword replies replace the message-received reply; after transfer to a human,
            // the offline reply, else the queue reply.
            let keyword = s.message_replies(now, &msg.text, &mut out);
            let offline = s.waiting_replies(now, keyword, &mut out);
            s.deliver_customer_message(now, msg.text, keyword || offline, &mut out);
            if open.routed && open.pending.is_none() && open.conv.state == State::Offered {
                open.link.out.push(ToRouter::Wrote);
            }
        }
        let conversation = open.conv.id;
        self.send_notes(&out);
        Ok(Outcome { conversation, opened, effects: out })
    }

    /// A customer message carrying the nickname its channel reports (empty: none): the
    /// nickname goes in before the message, and only if the message is accepted
    /// ([`session::renames`], as [`Engine::customer_message_named`](crate::Engine::customer_message_named)).
    pub fn customer_message_named(
        &mut self,
        cfg: Config<'_>,
        now: Timestamp,
        msg: CustomerMessage,
        nickname: &str,
    ) -> Result<Outcome> {
        if session::renames(Some(&self.customer), nickname) {
            check_text(&msg.text)?;
            self.opening(cfg, &msg)?;
            self.customer.settings.nickname = Some(nickname.to_owned());
        }
        self.customer_message(cfg, now, msg)
    }

    /// What an administrator sets on the customer (PutCustomer): refused as
    /// [`Engine::upsert_customer`](crate::Engine::upsert_customer) refuses it (an unknown group
    /// or dedicated agent, [`Config::check_customer`]). Like there, it changes what the next
    /// routing of the customer reads (group, priority, customer groups), not a conversation
    /// already open, except a new dedicated agent, which the router is told of at once
    /// ([`ToRouter::Reaffine`]).
    pub fn put_customer(&mut self, cfg: Config<'_>, settings: CustomerSettings) -> Result<()> {
        cfg.check_customer(&settings)?;
        let dedicated = settings.dedicated_agent;
        let changed = self.customer.settings.dedicated_agent != dedicated;
        self.customer.settings = settings;
        if let Some(open) = self.open.as_mut().filter(|o| changed && o.routed) {
            open.link.out.push(ToRouter::Reaffine { dedicated });
        }
        Ok(())
    }

    /// The customer opened the service window: the open-service reply, opening a conversation
    /// when none is open.
    pub fn open_service(
        &mut self,
        cfg: Config<'_>,
        now: Timestamp,
        channel: Channel,
        new_conversation: ConversationId,
    ) -> Result<Outcome> {
        let msg = CustomerMessage::open_service(self.id, channel, new_conversation);
        let mut out = Vec::new();
        let opened = self.ensure_open(cfg, now, &msg, &mut out)?;
        let open = self.open.as_mut().expect("opened");
        let mut s = session(cfg, &mut self.customer, open);
        if opened && !cfg.settings.transfer_to_human {
            let ask = s.route_request(now, Cause::Opened);
            open.route(ask, Pending::OpenService);
        } else {
            s.open_service(now, &mut out);
        }
        Ok(Outcome { conversation: open.conv.id, opened, effects: out })
    }

    /// The customer asks for a human: the bot stage ends and the router is asked to route it.
    pub fn request_human(
        &mut self,
        cfg: Config<'_>,
        now: Timestamp,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        let open = open_mut(&mut self.open, &self.closing, id)?;
        // Out of the bot stage first (a raise may be pending on a queued one), as on one node.
        session(cfg, &mut self.customer, open).check_request_human()?;
        if open.pending.is_some() {
            return Err(Error::InvalidTransition {
                conversation: id,
                state: open.conv.state,
                action: "transfer to a human (already asked)",
            });
        }
        let s = session(cfg, &mut self.customer, open);
        let ask = s.route_request(now, Cause::TransferToHuman);
        open.route(ask, Pending::Human);
        Ok(Vec::new())
    }

    /// The channel closed the conversation.
    pub fn channel_closed(
        &mut self,
        cfg: Config<'_>,
        now: Timestamp,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        open_mut(&mut self.open, &self.closing, id)?;
        Ok(self.finish(cfg, now, Cause::ChannelClosed, None))
    }

    // ----- the service side --------------------------------------------------------------------

    /// A message from the conversation's agent (as this side last heard) to the customer.
    pub fn agent_message(
        &mut self,
        cfg: Config<'_>,
        now: Timestamp,
        id: ConversationId,
        agent: AgentId,
        text: &str,
        tag: Option<MessageTag>,
    ) -> Result<Vec<Effect>> {
        let open = open_mut(&mut self.open, &self.closing, id)?;
        session(cfg, &mut self.customer, open).agent_message(now, agent, text, tag)
    }

    /// A supervisor's guidance, visible to the agent side only.
    pub fn whisper(
        &mut self,
        cfg: Config<'_>,
        id: ConversationId,
        from: AgentId,
        text: &str,
    ) -> Result<Vec<Effect>> {
        let open = open_mut(&mut self.open, &self.closing, id)?;
        let out = session(cfg, &mut self.customer, open).whisper(from, text)?;
        self.send_notes(&out);
        Ok(out)
    }

    /// The agent read the conversation.
    pub fn mark_read(
        &mut self,
        cfg: Config<'_>,
        now: Timestamp,
        id: ConversationId,
        agent: AgentId,
    ) -> Result<Vec<Effect>> {
        let open = open_mut(&mut self.open, &self.closing, id)?;
        let out = session(cfg, &mut self.customer, open).mark_read(now, agent)?;
        self.send_notes(&out);
        Ok(out)
    }

    /// Bot hosting on or off; whether it changed.
    pub fn set_bot_hosting(
        &mut self,
        cfg: Config<'_>,
        id: ConversationId,
        on: bool,
    ) -> Result<(bool, Vec<Effect>)> {
        let open = open_mut(&mut self.open, &self.closing, id)?;
        let mut out = Vec::new();
        let changed = session(cfg, &mut self.customer, open).set_bot_hosting(on, &mut out);
        self.send_notes(&out);
        Ok((changed, out))
    }

    /// Bot hosting on or off by `by`: the agent holding it (as this side last heard) or a
    /// supervisor (the tenant actor's rule: another agent is `NotAssigned`); whether it
    /// changed.
    pub fn set_bot_hosting_by(
        &mut self,
        cfg: Config<'_>,
        id: ConversationId,
        on: bool,
        by: Actor,
    ) -> Result<(bool, Vec<Effect>)> {
        let open = open_mut(&mut self.open, &self.closing, id)?;
        if let Actor::Agent(a) = by
            && open.conv.agent != Some(a)
        {
            return Err(Error::NotAssigned { conversation: id, agent: a });
        }
        self.set_bot_hosting(cfg, id, on)
    }

    /// The customer rates the open conversation ([`Conversation::rate`]'s rule, credit per
    /// the tenant's setting). An ended one is rated with [`rate_ended`] on its archived copy.
    pub fn rate(
        &mut self,
        cfg: Config<'_>,
        id: ConversationId,
        score: u8,
        comment: &str,
    ) -> Result<Vec<Effect>> {
        let open = open_mut(&mut self.open, &self.closing, id)?;
        rate_ended(cfg, &mut open.conv, score, comment)
    }

    /// Ends the conversation: by its agent (as this side last heard), or a supervisor.
    pub fn end(
        &mut self,
        cfg: Config<'_>,
        now: Timestamp,
        id: ConversationId,
        by: Actor,
    ) -> Result<Vec<Effect>> {
        let open = open_mut(&mut self.open, &self.closing, id)?;
        let cause = session(cfg, &mut self.customer, open).end_cause(by)?;
        Ok(self.finish(cfg, now, cause, Some(ReplyKind::ManualEnd)))
    }

    /// Ends the conversation as part of a supervisor's batch (the batch-end reply).
    pub fn end_in_batch(
        &mut self,
        cfg: Config<'_>,
        now: Timestamp,
        id: ConversationId,
    ) -> Result<Vec<Effect>> {
        open_mut(&mut self.open, &self.closing, id)?;
        Ok(self.finish(cfg, now, Cause::EndedInBatch, Some(ReplyKind::BatchEnd)))
    }

    // ----- timers ------------------------------------------------------------------------------

    /// When the open conversation next has something due.
    pub fn next_deadline(&self, cfg: Config<'_>) -> Option<Timestamp> {
        let open = self.open.as_ref()?;
        open.conv.next_deadline(&cfg.thresholds(&open.conv)).map(|(at, _)| at)
    }

    /// Fires everything due at `now`.
    pub fn advance(&mut self, cfg: Config<'_>, now: Timestamp) -> Vec<Effect> {
        let mut out = Vec::new();
        while self.next_deadline(cfg).is_some_and(|at| at <= now) {
            let open = self.open.as_mut().expect("a deadline belongs to the open conversation");
            match session(cfg, &mut self.customer, open).fire(now, &mut out) {
                Some(Ask::Leave) => self.close(),
                Some(ask) => {
                    open.link.out.push(ask.into());
                }
                None => {}
            }
        }
        out
    }

    // ----- the link ----------------------------------------------------------------------------

    /// An envelope from the router side: the messages it completes are applied in order.
    pub fn receive(
        &mut self,
        cfg: Config<'_>,
        now: Timestamp,
        envelope: Envelope<ToConversation>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        let id = envelope.conversation;
        if let Some(open) = self.open.as_mut().filter(|o| o.conv.id == id) {
            let mut ended = false;
            for message in open.link.receive(envelope.epoch, envelope.body) {
                if !ended {
                    let mut fx = Vec::new();
                    ended = apply(cfg, &mut self.customer, open, now, message, &mut fx);
                    if self.desk_links {
                        desk_notes(&mut self.desk, open.holding, &fx);
                    }
                    out.append(&mut fx);
                }
            }
            if ended {
                // Refused by a full queue: it ended, and the router already let go.
                self.close();
            }
        } else if let Some(link) = self.closing.get_mut(&id) {
            // Decisions about an ended conversation are moot: acknowledged, not applied.
            if let Body::Message { seq, .. } = envelope.body {
                self.stray.push((id, seq + 1));
            } else {
                link.receive(envelope.epoch, envelope.body);
                if link.out.is_empty() {
                    self.closing.remove(&id);
                }
            }
        } else if let Body::Message { seq, .. } = envelope.body {
            self.stray.push((id, seq + 1));
        }
        out
    }

    /// What to put on the network once the state is durable.
    pub fn outgoing(&mut self) -> Vec<Envelope<ToRouter>> {
        let (customer, epoch) = (self.id, self.epoch);
        let mut wire = Vec::new();
        if let Some(open) = self.open.as_mut() {
            open.link.outgoing(open.conv.id, customer, epoch, &mut wire);
        }
        for (id, link) in &mut self.closing {
            link.outgoing(*id, customer, epoch, &mut wire);
        }
        for (conversation, next) in self.stray.drain(..) {
            wire.push(Envelope { conversation, customer, epoch, body: Body::Ack { next } });
        }
        wire
    }

    /// The notes for the holding agent's desk since it was last asked, in order, each with
    /// that agent: the shell appends them to the agent's desk stream in the batch of the
    /// steps that made them (with the side's row), before anything of those steps is heard.
    pub fn take_desk(&mut self) -> Vec<(AgentId, Note)> {
        std::mem::take(&mut self.desk)
    }

    /// Everything unacknowledged, again.
    pub fn retransmit(&self) -> Vec<Envelope<ToRouter>> {
        let (customer, epoch) = (self.id, self.epoch);
        let mut wire = Vec::new();
        if let Some(open) = &self.open {
            open.link.retransmit(open.conv.id, customer, epoch, &mut wire);
        }
        for (id, link) in &self.closing {
            link.retransmit(*id, customer, epoch, &mut wire);
        }
        wire
    }

    // ----- internals ---------------------------------------------------------------------------

    /// Opens a conversation unless one is open; whether it did. Validates before it changes
    /// anything.
    fn ensure_open(
        &mut self,
        cfg: Config<'_>,
        now: Timestamp,
        msg: &CustomerMessage,
        out: &mut Vec<Effect>,
    ) -> Result<bool> {
        let Some(group) = self.opening(cfg, msg)? else { return Ok(false) };
        let conv = cfg.open(now, &mut self.customer, msg, group, out);
        let mut link = Link::default();
        // With its bot, it is still the tenant's open work: the router lists it. (A new
        // conversation's state reads `Bot` until its first transition either way.)
        let listed = cfg.settings.transfer_to_human;
        if listed {
            link.out.push(ToRouter::Bot);
        }
        self.open = Some(Open {
            conv,
            standing: Standing::default(),
            routed: false,
            listed,
            pending: None,
            link,
            holding: None,
        });
        Ok(true)
    }

    /// Where a message goes, changing nothing: the open conversation (`None`), or a new one in
    /// this group.
    fn opening(&self, cfg: Config<'_>, msg: &CustomerMessage) -> Result<Option<GroupId>> {
        if msg.customer != self.id {
            return Err(Error::InvalidArgument(format!(
                "customer {} sent to the side of customer {}",
                msg.customer, self.id
            )));
        }
        if self.open.is_some() {
            return Ok(None);
        }
        if self.closing.contains_key(&msg.new_conversation) {
            return Err(Error::AlreadyExists(format!("conversation {}", msg.new_conversation)));
        }
        cfg.opening_group(Some(&self.customer), msg).map(Some)
    }

    /// Ends the open conversation through its session; the router lets go of it.
    fn finish(
        &mut self,
        cfg: Config<'_>,
        now: Timestamp,
        cause: Cause,
        reply: Option<ReplyKind>,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        if let Some(open) = self.open.as_mut()
            && session(cfg, &mut self.customer, open).finish(now, cause, reply, &mut out).is_some()
        {
            self.close();
        }
        out
    }

    /// The open conversation ended: asks the router to let go (if it ever heard of it), and
    /// keeps the link until the router acknowledged everything.
    fn close(&mut self) {
        let Some(mut open) = self.open.take() else { return };
        if open.routed || open.listed {
            open.link.out.push(ToRouter::Leave);
        }
        if !open.link.out.is_empty() {
            self.closing.insert(open.conv.id, open.link);
        }
        self.ended.push(open.conv);
    }

    /// Hands the open conversation's notes in `out` to its holder's desk.
    fn send_notes(&mut self, out: &[Effect]) {
        if let Some(open) = self.open.as_ref().filter(|_| self.desk_links) {
            desk_notes(&mut self.desk, open.holding, out);
        }
    }
}

/// The customer rates a conversation (open, or ended and brought back from the archive by
/// the shell): [`Conversation::rate`] with the tenant's credit setting, as the engine does.
pub fn rate_ended(
    cfg: Config<'_>,
    conv: &mut Conversation,
    score: u8,
    comment: &str,
) -> Result<Vec<Effect>> {
    Ok(vec![Effect::Event(conv.rate(cfg.settings.rating_credit, score, comment)?)])
}

/// Queues one step's notes for the agent holding the conversation, on its desk. Notes for
/// another agent stay effects only: without a router side with agent links no holding is
/// known.
fn desk_notes(desk: &mut Vec<(AgentId, Note)>, holding: Option<Holding>, out: &[Effect]) {
    let Some(holding) = holding else { return };
    for e in out {
        if let Effect::Notify { agent, note } = e
            && *agent == holding.agent
            && desk::is_conversation_note(note)
        {
            desk.push((*agent, note.clone()));
        }
    }
}

impl Open {
    fn route(&mut self, ask: Ask, pending: Pending) {
        self.link.out.push(ask.into());
        self.routed = true;
        self.pending = Some(pending);
    }
}

fn session<'s>(cfg: Config<'s>, customer: &'s mut Customer, open: &'s mut Open) -> Session<'s> {
    Session { cfg, customer, conv: &mut open.conv, standing: open.standing }
}

fn open_mut<'o>(
    open: &'o mut Option<Open>,
    closing: &BTreeMap<ConversationId, ConvLink>,
    id: ConversationId,
) -> Result<&'o mut Open> {
    match open {
        Some(o) if o.conv.id == id => Ok(o),
        _ if closing.contains_key(&id) => Err(Error::InvalidTransition {
            conversation: id,
            state: State::Ended,
            action: "act on an ended conversation",
        }),
        _ => Err(Error::UnknownConversation(id)),
    }
}

/// The replies of a message written while the conversation waited in a queue, once the
/// router said where it stands; whether a keyword or offline reply answered it.
fn wrote_replies(s: &mut Session<'_>, now: Timestamp, text: &str, out: &mut Vec<Effect>) -> bool {
    let keyword = s.message_replies(now, text, out);
    let offline = s.waiting_replies(now, keyword, out);
    keyword || offline
}

/// A customer message's replies, after the raise it caused was decided (the engine's order).
fn raised_replies(s: &mut Session<'_>, now: Timestamp, text: String, out: &mut Vec<Effect>) {
    let answered = wrote_replies(s, now, &text, out);
    s.deliver_customer_message(now, text, answered, out);
}

/// Applies one message from the router to the open conversation; true when that ended it.
fn apply(
    cfg: Config<'_>,
    customer: &mut Customer,
    open: &mut Open,
    now: Timestamp,
    message: ToConversation,
    out: &mut Vec<Effect>,
) -> bool {
    match message {
        ToConversation::Placed { facts, standing, transfer, desk } => {
            // A transfer is reported as it stood before the move, as on one node.
            if let Some(target) = transfer
                && let Ok(event) = session(cfg, customer, open).transfer(now, target, Actor::System)
            {
                out.push(Effect::Event(event));
            }
            let transferred = transfer.is_some();
            open.standing = standing;
            open.holding = desk;
            let pending = open.pending.take();
            let id = open.conv.id;
            let mut s = session(cfg, customer, open);
            let mut routed = Vec::new();
            for fact in facts {
                // The router leaves a transferred conversation's offer for it to report.
                let offered = match fact {
                    Placed::Offered { agent, .. } if transferred => Some(agent),
                    _ => None,
                };
                if s.placed(now, fact, &mut routed).is_some() {
                    out.append(&mut routed);
                    return true;
                }
                if let Some(agent) = offered {
                    routed.push(Effect::Event(Event::Offered { conversation: id, agent }));
                }
            }
            // What the opening (or the request for a human) waited for, as on one node: the
            // message's own replies see where routing put it and come first, then what routing
            // caused, then the offline or queue reply.
            match pending {
                Some(Pending::Message { text }) => {
                    let keyword = s.message_replies(now, &text, out);
                    out.append(&mut routed);
                    let offline = s.waiting_replies(now, keyword, out);
                    s.deliver_customer_message(now, text, keyword || offline, out);
                }
                Some(Pending::Human) => {
                    out.append(&mut routed);
                    s.waiting_replies(now, false, out);
                }
                Some(Pending::OpenService) => {
                    out.append(&mut routed);
                    s.open_service(now, out);
                }
                Some(Pending::Raised { text }) => {
                    out.append(&mut routed);
                    raised_replies(&mut s, now, text, out);
                }
                Some(Pending::Wrote { text }) => {
                    out.append(&mut routed);
                    wrote_replies(&mut s, now, &text, out);
                }
                None => out.append(&mut routed),
            }
        }
        ToConversation::Standing { standing } => {
            open.standing = standing;
            // The answer to a raise that decided nothing about it, or to a question.
            match open.pending.take() {
                Some(Pending::Raised { text }) => {
                    raised_replies(&mut session(cfg, customer, open), now, text, out);
                }
                Some(Pending::Wrote { text }) => {
                    wrote_replies(&mut session(cfg, customer, open), now, &text, out);
                }
                other => open.pending = other,
            }
        }
        // It stays in the bot stage; the customer may ask again.
        ToConversation::Refused { .. } => open.pending = None,
    }
    false
}
