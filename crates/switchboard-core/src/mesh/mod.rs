//! The cross-actor protocol: what crosses between a conversation and the router when they are
//! not delivered synchronously by the [`Engine`](crate::engine::Engine) (issue 12).
//!
//! Three state machines stand where the engine stands on one node:
//! - [`ConversationSide`]: one customer and its open conversation, around a
//!   [`Session`](crate::session::Session) (lifecycle, replies, budget, timers). It sends the
//!   session's [`Ask`]s as [`ToRouter`] messages.
//! - [`RouterSide`]: the tenant's [`Router`](crate::router::Router) (queues, agents, capacity,
//!   offers, affinity). It sends each router decision as [`ToConversation::Placed`] with where
//!   the conversation stands after it.
//! - [`AgentSide`]: one agent's desk: its status as set, what it holds as the router told it,
//!   the router's answers to its commands. Its commands go to the router side as
//!   [`FromAgent`] on the agent's link ([`AgentEnvelope`]); the router decides them (it is
//!   the single writer of capacity) and sends its decisions about the agent back as
//!   [`ToAgent`].
//!
//! **The desk stream** of an agent is written by the sides that make its entries: the router
//! side its decisions, a conversation side its own notes for the agent holding it, each in
//! its own batch ([`desk`]; opt-in, `with_agent_links` and `with_desk`).
//!
//! **Links.** Each agent has one link to the router side, with the same rules as below.
//! Each conversation has one link between its side and the router side; every message on it
//! travels in an [`Envelope`]: the conversation (the link), the customer (the conversation
//! side's key), the sender's `epoch` (its incarnation: raised on every restart or move) and a
//! [`Body`], a message with its per-link sequence number or a cumulative acknowledgement.
//!
//! **Exactly once, in order.** The receiver applies a link's messages strictly in sequence
//! order ([`link::Inbox`]): an early one is held back until the gap is filled, a duplicate
//! (sequence below the next expected) is dropped and acknowledged again, and anything from an
//! epoch older than the newest seen on the link is dropped (a deposed incarnation; the new
//! one resends). Hold-back rather than idempotent facts, because a session's facts are
//! transitions with effects (an assignment sends the auto-accept reply and charges the budget;
//! a requeue after it must not be undone by a late copy of the assignment): applying them
//! out of order or twice changes what the customer hears. Sequence numbers never repeat on a
//! link: the counter and the unacknowledged messages are part of the sender's durable state,
//! so dedupe is by sequence number, and the epoch only fences.
//!
//! **Durability order.** Every handler only changes state and queues messages. The shell then
//! makes the state durable (the router's placements and its outbox in the same write), and
//! only then calls `outgoing()` to put on the network what was queued and the
//! acknowledgements owed. A message is therefore never heard before the decision it carries
//! is durable, and an acknowledgement never before the state that applied the message is:
//! a crash at any point either loses the step entirely (the input was not acknowledged, so it
//! comes again) or keeps it. `retransmit()` resends everything unacknowledged, on a timer and
//! after a restart (at least once).
//!
//! **What may be one message stale** (everything else is exact, as on one node):
//! - the queue position in the `{{queue_num}}` placeholder of a reply a timer sends: the
//!   position the router last told the conversation (with each decision about it, and in
//!   answer to the customer's last message), not the position now. A customer message
//!   written while it waits in a queue asks ([`ToRouter::Where`]) and its replies wait for the
//!   answer, so they show the position then;
//! - SPEC §4.5's offline condition for the offline reply: as of the router's last message
//!   about the conversation; the router pushes a fresh standing whenever a status change or
//!   an agent's new groups flip it, so it is stale only while that push is in flight;
//! - who holds the conversation, for the checks the conversation side makes (an agent's
//!   message, read mark or end is accepted from the agent it last heard was assigned) while a
//!   transfer or requeue is in flight;
//! - a customer message that arrives while its conversation's route is in flight gets the
//!   replies of a conversation not routed yet (no queue or offline reply); the opening
//!   message's own replies wait for the first decision and are then exactly the engine's, as
//!   do those of a message that raised a queued conversation's priority (the router answers
//!   every raise; a full queue may refuse it, and the refusal is then all the customer hears);
//! - a conversation's own notes for its agent's desk ([`desk`]) go to the holder it last
//!   heard of; one written while the end of that holding is on its way shows after the
//!   holder's `Released`;
//! - the router's copy of an agent's status (it routes on it) is one [`FromAgent::Status`]
//!   behind the agent side; the agent side's view of what it holds, and of status changes the
//!   router made, one [`ToAgent`] behind. Capacity and load are only the router's.
//!
//! **Tombstones.** The router keeps a left conversation's link for [`RouterSide`]'s `linger`
//! after the last envelope seen on it, so that late copies are recognised as duplicates. This
//! assumes no envelope is delivered later than `linger` after it was sent (internal calls
//! carry a deadline shorter than it), and that a side with unacknowledged messages resends
//! them at least once per `linger`. Once its last acknowledgement is out, only a
//! [`Tombstone`] stays, outside the side's own encoding: the shell stores each as a row of
//! its own, so the router's row stays bounded by its live work.

pub mod agent;
pub mod conversation;
pub mod desk;
pub mod journal;
pub mod link;
pub mod router;
mod tombstones;
pub mod unaccepted;

use serde::{Deserialize, Serialize};

pub use self::agent::AgentSide;
pub use self::conversation::ConversationSide;
pub use self::desk::{DeskEvent, Holding};
pub use self::journal::{RouterInput, RouterOp};
pub use self::router::{RouterSide, Tombstone};
use crate::conversation::Cause;
use crate::engine::{Note, Target};
use crate::ids::{AgentId, ConversationId, CustomerId, GroupId};
use crate::queue::Priority;
use crate::router::{AgentStatus, RouteRequest, Standing, StatusCause};
use crate::session::{Ask, Placed};

/// One message on a conversation's link, or an acknowledgement of the reverse direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<M> {
    /// The conversation whose link this is.
    pub conversation: ConversationId,
    /// Whose conversation side holds the link.
    pub customer: CustomerId,
    /// The sender's incarnation.
    pub epoch: u64,
    pub body: Body<M>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body<M> {
    Message {
        seq: u64,
        message: M,
    },
    /// The sender applied (durably) every message below `next` of the reverse direction.
    Ack {
        next: u64,
    },
}

/// From a conversation side to the router side: a session's [`Ask`], or a customer message
/// while it waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToRouter {
    Route {
        request: RouteRequest,
        cause: Cause,
    },
    Raise {
        priority: Priority,
    },
    Alert {
        agent: Option<AgentId>,
        group: GroupId,
    },
    Leave,
    /// The customer wrote while the conversation is offered: tell it where it stands, if
    /// that changed since the router last did.
    Wrote,
    /// The customer's dedicated agent changed (PutCustomer): a waiting conversation follows
    /// it ([`Router::reaffine`](crate::router::Router::reaffine)), and the offline condition
    /// reads it from now on.
    Reaffine {
        dedicated: Option<AgentId>,
    },
    /// The customer wrote while the conversation waits in a queue: its replies wait for where
    /// it stands now, which the router always answers.
    Where,
    /// The conversation opened with its bot: the router knows it (the supervisor's reads
    /// list and count it) and routes nothing until a `Route` (transfer to a human); a
    /// `Leave` ends it there either way.
    Bot,
}

impl From<Ask> for ToRouter {
    fn from(ask: Ask) -> Self {
        match ask {
            Ask::Route { request, cause } => ToRouter::Route { request, cause },
            Ask::Leave => ToRouter::Leave,
            Ask::Raise { priority } => ToRouter::Raise { priority },
            Ask::Alert { agent, group } => ToRouter::Alert { agent, group },
        }
    }
}

/// From the router side to a conversation side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToConversation {
    /// What one router operation decided about the conversation, in order, and where it
    /// stands after it.
    Placed {
        facts: Vec<Placed>,
        #[serde(with = "standing")]
        standing: Standing,
        /// A transfer caused them: the conversation reports it (its wait is its own to know).
        transfer: Option<Target>,
        /// Who holds it after them, and since which of the router's messages to that agent
        /// (with agent links only): the desk its notes are written on ([`desk`]).
        #[serde(default)]
        desk: Option<Holding>,
    },
    /// Where it stands changed without a decision about it.
    Standing {
        #[serde(with = "standing")]
        standing: Standing,
    },
    /// The router could not route it (its group is gone); it stays where it is.
    Refused { reason: String },
}

/// One message on an agent's link (agent side ↔ router side), or an acknowledgement of the
/// reverse direction: the same [`Body`] and rules as a conversation's link, named by agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEnvelope<M> {
    /// The agent whose link this is (the agent side's key).
    pub agent: AgentId,
    /// The sender's incarnation.
    pub epoch: u64,
    pub body: Body<M>,
}

/// From an agent side to the router side: the agent's commands the router decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromAgent {
    Status {
        status: AgentStatus,
        cause: StatusCause,
    },
    Accept {
        conversation: ConversationId,
    },
    Decline {
        conversation: ConversationId,
    },
    Pick {
        conversation: ConversationId,
    },
    /// Ends the agent's wrap-up of `conversation` (an ended one), or every one it may end
    /// early (`None`).
    EndWrapUp {
        conversation: Option<ConversationId>,
    },
}

/// From the router side to an agent side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToAgent {
    /// What one router operation decided about the agent, in order, as the notes its desk
    /// shows: `Offered`, `Assigned`, `Released` (requeued on a decline, a timeout or going
    /// offline; transferred away; ended), `StatusChanged`, and `UnrepliedAlert`.
    Decided { notes: Vec<Note> },
    /// The agent's command `command` (its sequence number on the link) was refused; `status`
    /// is the agent's status at the router after it (a refused status change does not hold).
    /// `kind`: the refusal's code and reason (absent in messages of nodes before it).
    Refused {
        command: u64,
        reason: String,
        status: AgentStatus,
        #[serde(default)]
        kind: Option<crate::error::Kind>,
    },
    /// The agent's command `command` was applied; what it decided about the agent came
    /// before it on this link (in the same step). Every command gets exactly one answer,
    /// this or `Refused`, so the agent side knows each decision without reading the link's
    /// acknowledgements (which a network may deliver before a refusal).
    Done { command: u64 },
    /// How one router operation changed the agent's unaccepted list ([`unaccepted`]), in
    /// conversation order. Only when the agent is signed in.
    Unaccepted { changes: Vec<unaccepted::Change> },
}

/// `Standing` as (position, offline, offline agent, estimated wait in nanoseconds, exact):
/// `Option<Option<_>>` does not survive self-describing encodings. The wait came later: a
/// standing of three elements (written before it) reads as one without an estimate.
pub(crate) mod standing {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serialize, Serializer};

    use crate::ids::AgentId;
    use crate::router::Standing;

    pub fn serialize<S: Serializer>(s: &Standing, ser: S) -> Result<S::Ok, S::Error> {
        let wait = s.wait.map(|w| u64::try_from(w.as_nanos()).unwrap_or(u64::MAX));
        (s.position, s.offline.is_some(), s.offline.flatten(), wait).serialize(ser)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Standing, D::Error> {
        struct Elements;
        impl<'de> Visitor<'de> for Elements {
            type Value = Standing;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a standing: (position, offline, agent[, wait in ns])")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Standing, A::Error> {
                let missing = |i| A::Error::invalid_length(i, &self);
                let position: Option<usize> = seq.next_element()?.ok_or_else(|| missing(0))?;
                let offline: bool = seq.next_element()?.ok_or_else(|| missing(1))?;
                let agent: Option<AgentId> = seq.next_element()?.ok_or_else(|| missing(2))?;
                let wait: Option<u64> = seq.next_element()?.flatten();
                Ok(Standing {
                    position,
                    offline: offline.then_some(agent),
                    wait: wait.map(Duration::from_nanos),
                })
            }
        }
        de.deserialize_tuple(4, Elements)
    }
}

#[cfg(test)]
mod tests;
