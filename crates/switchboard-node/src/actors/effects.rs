//! The durable form of the actors' effects (issue 12, the cut-over's streams and
//! transcripts): what a conversation or router actor writes in the SAME batch as its row, so
//! a crash after the write loses no reply and the next incarnation repeats none.
//!
//! - `Effect::Send` (an automatic reply, an agent's message) → an `outbox` entry
//!   (`pb::OutboundMessage`) and a transcript row; a conversation actor's only.
//! - `Effect::Event` → an `events` entry (`pb::Event`), from either actor.
//! - The customer's own message → a transcript row (the conversation actor's operation, not
//!   an effect: the tenant actor writes it the same way, `apply::channel`).
//!
//! `outbox` and `events` are shared streams ([`crate::state::SHARED_STREAMS`]): the entries
//! go as [`Batch::appends`] and the store numbers them at commit, gap-free across every
//! writer and node. The rows read as the tenant actor writes them (one translation,
//! [`crate::apply::rows`], named through [`MeshNames`]); what the mesh cannot say yet: a
//! customer is named by its id only once a public call told its conversation actor
//! ([`CustomerNamed`]; before, and in the router's events, by its number), and a queue reply carries no estimated wait (the router knows the queue, the
//! conversation side does not). `ReplySuppressed` and `Purge` write nothing here (metrics,
//! and retention by the archive's `purge_at`). Every effect still goes to `MeshArgs::heard`
//! after the write.
//!
//! Desk entries (with agent actors): the router's decisions about agents
//! (`RouterSide::take_desk`) and a conversation's notes for its holder
//! (`ConversationSide::take_desk`) go on the agent's desk stream (`agent/{id}`, shared too:
//! [`crate::state::is_shared`]) in the batch of the step that made them ([`Rows::desk`]), so
//! each is one append in its maker's write (`switchboard_core::mesh::desk` says why the desk's
//! order holds). `Notify` effects write nothing here: the desk entries are their durable form.

use prost::Message as _;
use serde::{Deserialize, Serialize};
use switchboard_core::engine::Effect;
use switchboard_core::mesh::DeskEvent;
use switchboard_core::mesh::unaccepted::Change;
use switchboard_core::{AgentId, ConversationId, CustomerId, GroupId, Timestamp};
use switchboard_proto::internal::v1::stream_item::Item;
use switchboard_proto::internal::v1::{DeskRefusal, StreamItem};
use switchboard_proto::v1 as pb;
use switchboard_store::{Append, Batch, Message};

use super::{Mesh, TenantConfig};
use crate::apply::Names;
use crate::apply::events::integrator_event;
use crate::apply::rows;
use crate::state::{EVENTS, OUTBOX, is_shared};

/// Resource names as a mesh can give them, from its [`TenantConfig`] (the one current when
/// the names were taken: a step's or a call's).
#[derive(Debug, Clone)]
pub(crate) struct MeshNames<'a> {
    pub tenant: &'a str,
    pub config: std::sync::Arc<TenantConfig>,
}

impl Names for MeshNames<'_> {
    fn agent_name(&self, agent: AgentId) -> String {
        crate::names::child_name(self.tenant, "agents", &self.config.agent_name(agent))
    }

    fn group_name(&self, group: GroupId) -> String {
        crate::names::child_name(self.tenant, "groups", &self.config.group_name(group))
    }

    /// By its number, the conversation actor's key, for now (customer ids reach the actors
    /// with the cut-over's keys).
    fn customer_name(&self, customer: CustomerId) -> String {
        crate::names::numbered_name(self.tenant, "customers", customer.0)
    }

    fn conversation_name(&self, conversation: ConversationId) -> String {
        crate::names::numbered_name(self.tenant, "conversations", conversation.0)
    }
}

/// A mesh's names as a resource that refers to an agent or a group shows them (a customer's
/// dedicated and last agent, its group): empty for one the configuration no longer has, as
/// the tenant actor shows one deleted since (`TenantState::agent_name`), never a dangling
/// name.
#[derive(Debug, Clone)]
pub(crate) struct Current<'a>(pub MeshNames<'a>);

impl Names for Current<'_> {
    fn agent_name(&self, agent: AgentId) -> String {
        let known = self.0.config.agents.contains_key(&agent);
        if known { self.0.agent_name(agent) } else { String::new() }
    }

    fn group_name(&self, group: GroupId) -> String {
        let known = self.0.config.groups.contains_key(&group);
        if known { self.0.group_name(group) } else { String::new() }
    }

    fn customer_name(&self, customer: CustomerId) -> String {
        self.0.customer_name(customer)
    }

    fn conversation_name(&self, conversation: ConversationId) -> String {
        self.0.conversation_name(conversation)
    }
}

/// A mesh's names, with one customer named by its id (a conversation actor that knows its
/// customer's name: the cut-over's keys); every other customer by its number.
#[derive(Debug, Clone)]
pub(crate) struct CustomerNamed<'a> {
    pub names: MeshNames<'a>,
    pub customer: CustomerId,
    pub name: &'a str,
}

impl Names for CustomerNamed<'_> {
    fn agent_name(&self, agent: AgentId) -> String {
        self.names.agent_name(agent)
    }

    fn group_name(&self, group: GroupId) -> String {
        self.names.group_name(group)
    }

    fn customer_name(&self, customer: CustomerId) -> String {
        if customer == self.customer {
            crate::names::child_name(self.names.tenant, "customers", self.name)
        } else {
            self.names.customer_name(customer)
        }
    }

    fn conversation_name(&self, conversation: ConversationId) -> String {
        self.names.conversation_name(conversation)
    }
}

/// A conversation actor's transcript numbering, kept in its row beside its side (node-side:
/// the core's side does not number transcript rows): the last number given in `conversation`.
/// A new conversation of the customer starts again at 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Transcript {
    pub conversation: u64,
    pub last: u64,
}

impl Transcript {
    /// The numbering after the transcript row `m` (the one [`Self::next`] numbered it with).
    pub fn after(m: &Message) -> Self {
        Transcript { conversation: m.conversation, last: m.seq }
    }

    fn next(&mut self, conversation: ConversationId) -> u64 {
        if self.conversation != conversation.0 {
            *self = Transcript { conversation: conversation.0, last: 0 };
        }
        self.last += 1;
        self.last
    }
}

/// Who and when a conversation actor's step is, for its rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    pub now: Timestamp,
    pub customer: CustomerId,
    /// Its estimated wait as the router last told it (a queue reply's `estimated_wait`).
    pub wait: Option<std::time::Duration>,
}

/// What one step writes besides the actor's row.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    appends: Vec<Append>,
    /// The appended items, in the same order, for the hub once their positions are known
    /// (with the agent, for a desk entry).
    items: Vec<(String, StreamItem, Option<AgentId>)>,
    messages: Vec<Message>,
}

impl Rows {
    pub fn is_empty(&self) -> bool {
        self.appends.is_empty() && self.messages.is_empty()
    }

    /// The step's transcript rows, in order.
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// The last transcript row of the step, if any.
    pub fn last_message(&self) -> Option<&Message> {
        self.messages.last()
    }

    /// The customer's message, as the transcript's next row.
    pub fn customer_message(
        &mut self,
        transcript: &mut Transcript,
        now: Timestamp,
        conversation: ConversationId,
        text: &str,
    ) {
        let seq = transcript.next(conversation);
        let unspecified = pb::ReplyKind::Unspecified;
        let message = rows::transcript_message(seq, now, "customer", "", unspecified, text, 0);
        self.transcript(now, conversation, &message);
    }

    /// A row only the agent side sees (a supervisor's whisper), as the transcript's next.
    pub fn note_row(
        &mut self,
        transcript: &mut Transcript,
        now: Timestamp,
        conversation: ConversationId,
        sender: &str,
        agent: &str,
        text: &str,
    ) {
        let seq = transcript.next(conversation);
        let unspecified = pb::ReplyKind::Unspecified;
        let message = rows::transcript_message(seq, now, sender, agent, unspecified, text, 0);
        self.transcript(now, conversation, &message);
    }

    /// A conversation actor's step: its replies and agent messages (outbox and transcript)
    /// and its events, in the order the side produced them.
    pub fn conversation(
        &mut self,
        names: &dyn Names,
        transcript: &mut Transcript,
        step: Step,
        effects: &[Effect],
    ) {
        let Step { now, customer, wait } = step;
        for effect in effects {
            match effect {
                Effect::Send { conversation, channel, text, from, tag } => {
                    let message = rows::outbound_message(
                        names,
                        now,
                        *conversation,
                        names.customer_name(customer),
                        *channel,
                        text,
                        *from,
                        *tag,
                        || wait,
                    );
                    let seq = transcript.next(*conversation);
                    let row = rows::transcript_message(
                        seq,
                        now,
                        rows::sender_of(*from),
                        &message.agent,
                        message.reply_kind(),
                        text,
                        message.tag,
                    );
                    self.transcript(now, *conversation, &row);
                    let item = StreamItem { item: Some(Item::Outbound(message)) };
                    self.append(OUTBOX.to_owned(), now, Some(conversation.0), item, None);
                }
                Effect::Event(_) => self.event(names, now, effect),
                Effect::Notify { .. } | Effect::ReplySuppressed { .. } | Effect::Purge { .. } => {}
            }
        }
    }

    /// The step's agent message is the rating invitation (InviteRating): its outbound entries
    /// and its transcript row say so, as the tenant actor marks them (`apply::agent`).
    pub fn rating_invitation(&mut self) {
        let kind = pb::ReplyKind::RatingInvitation as i32;
        let mut marked = false;
        for (append, (_, item, _)) in self.appends.iter_mut().zip(&mut self.items) {
            if let Some(Item::Outbound(m)) = &mut item.item {
                m.reply_kind = kind;
                append.payload = item.encode_to_vec();
                marked = true;
            }
        }
        if let Some(row) = self.messages.last_mut().filter(|_| marked) {
            let rest = row.kind.split_once('|').map_or("", |(_, rest)| rest);
            row.kind = format!("{kind}|{rest}");
        }
    }

    /// A router actor's step: its events only (it sends nothing to customers; its notes are
    /// the desks').
    pub fn router(&mut self, names: &dyn Names, now: Timestamp, effects: &[Effect]) {
        for effect in effects {
            self.event(names, now, effect);
        }
    }

    /// Entries of agents' desk streams, each on its agent's, in order.
    pub fn desk(
        &mut self,
        names: &MeshNames<'_>,
        now: Timestamp,
        entries: impl IntoIterator<Item = (AgentId, DeskEvent)>,
    ) {
        for (agent, event) in entries {
            let stream = names.config.desk_stream(agent);
            let item = desk_item(names, now, &event);
            self.append(stream, now, about(&event).map(|c| c.0), item, Some(agent));
        }
    }

    fn event(&mut self, names: &dyn Names, now: Timestamp, effect: &Effect) {
        if let Effect::Event(event) = effect {
            let event = integrator_event(names, now, event);
            let conversation =
                crate::names::conversation_parts("conversation", &event.conversation)
                    .ok()
                    .map(|c| c.1);
            let item = StreamItem { item: Some(Item::Event(event)) };
            self.append(EVENTS.to_owned(), now, conversation, item, None);
        }
    }

    /// One entry of a shared stream (`agent`: whose desk it is on, if it is a desk entry).
    fn append(
        &mut self,
        stream: String,
        now: Timestamp,
        conversation: Option<u64>,
        item: StreamItem,
        agent: Option<AgentId>,
    ) {
        debug_assert!(is_shared(&stream), "{stream} is not a shared stream");
        self.appends.push(Append {
            stream: stream.clone(),
            at_ms: now.as_millis(),
            payload: item.encode_to_vec(),
            conversation,
        });
        self.items.push((stream, item, agent));
    }

    fn transcript(&mut self, now: Timestamp, conversation: ConversationId, message: &pb::Message) {
        self.messages.push(Message {
            conversation: conversation.0,
            seq: message.seq,
            at_ms: now.as_millis(),
            sender: message.sender.clone(),
            text: message.text.clone(),
            kind: crate::service::transcript_kind(message),
        });
    }

    /// Puts the rows in the actor's batch; what it returns goes to [`Published::publish`]
    /// with the positions the store assigned.
    pub fn into_batch(self, batch: &mut Batch) -> Published {
        batch.appends.extend(self.appends);
        batch.messages.extend(self.messages);
        Published(self.items)
    }
}

/// Durable entries, waiting for their positions to go to the node's live readers.
#[derive(Debug, Default)]
pub(crate) struct Published(Vec<(String, StreamItem, Option<AgentId>)>);

impl Published {
    /// To the mesh's hub (if any), each stamped with its position (`positions`: the
    /// store's answer for the batch's appends, in their order; the batch carried only these);
    /// a desk entry also to the node of its agent's actor, where its desk is read, if that
    /// is another ([`super::transport::Transport::desk_entry`]).
    pub fn publish(self, mesh: &Mesh, positions: Vec<u64>) {
        let inner = mesh.inner();
        for ((stream, mut item, agent), seq) in self.0.into_iter().zip(positions) {
            crate::service::stamp(&mut item, seq);
            if let Some(agent) = agent {
                inner.transport.desk_entry(mesh.tenant(), agent, seq, &item);
            }
            if let Some(hub) = &inner.hub {
                hub.publish(mesh.tenant(), &stream, seq, item);
            }
        }
    }
}

/// The conversation a desk event is about, if any (the store deletes the entry with that
/// conversation's archive row).
fn about(event: &DeskEvent) -> Option<ConversationId> {
    match event {
        DeskEvent::Note(note) => note.conversation(),
        DeskEvent::Refused { .. } => None,
        DeskEvent::Unaccepted(
            Change::Added { conversation, .. } | Change::Removed { conversation, .. },
        ) => Some(*conversation),
    }
}

/// A desk event as the agent's stream stores it: a note as the tenant actor encodes it
/// (`apply::note_event`), a change of the unaccepted list as the tenant actor tells it, a
/// refusal as a [`DeskRefusal`] (`AgentService.StreamEvents` skips those: the command's caller
/// learns it from `AgentHandle::decision`). Its cursor is its position, stamped once the
/// store gave it one (`service::stamp`).
pub(crate) fn desk_item(names: &MeshNames<'_>, now: Timestamp, event: &DeskEvent) -> StreamItem {
    let item = match event {
        DeskEvent::Note(note) => {
            // A whisper names its supervisor as the tenant actor does.
            let name = |a: AgentId| names.agent_name(a);
            Item::AgentEvent(crate::apply::note_event(names.tenant, now, note.clone(), name))
        }
        DeskEvent::Refused { command, reason } => {
            Item::DeskRefusal(DeskRefusal { command: *command, reason: reason.clone() })
        }
        DeskEvent::Unaccepted(change) => {
            Item::AgentEvent(crate::apply::unaccepted::agent_event(names, now, change))
        }
    };
    StreamItem { item: Some(item) }
}
