//! The desk link: a conversation's own notes (customer messages, whispers, read-but-unreplied,
//! bot hosting) straight from its conversation side to the desk of the agent holding it,
//! without the router (issue 12: most chat traffic never needs the router).
//!
//! **A link per holding.** An agent holds a conversation from the router message that offered
//! or assigned it (while the agent did not hold it) until the one that released it. That
//! router message's sequence number on the agent's link (`since`) names the holding on both
//! ends: the router side keeps the same count of what each agent holds ([`change`]), tells
//! the conversation side the holding with each decision ([`super::ToConversation::Placed`]'s
//! `desk`), and the agent side learns it from the message itself. One link per (conversation,
//! agent, `since`), with the usual [`Link`](super::link::Link) rules: sequence numbers from 1,
//! cumulative acknowledgements, hold-back, epochs. A new holding is a new link, so sequence
//! numbers never repeat on one.
//!
//! **What the agent side does with a note** of conversation `c` for holding `since`:
//! - it holds `c` at `since`: applied in order, each note a desk event;
//! - `since` is after every router message it applied: the holding is not known here yet (the
//!   router's `Offered`/`Assigned` is in flight on the other link): held back, volatile and
//!   unacknowledged, and applied once that message is;
//! - otherwise that holding is over (released, or never this agent's): acknowledged and
//!   dropped. On one node the note would have shown before the release; here it shows only
//!   if it arrives first.
//!
//! So per holding the desk shows a prefix of the notes the conversation sent for it, in order,
//! none twice, and all of them while the holding lasts.

use serde::{Deserialize, Serialize};

use super::Body;
use super::link::Link;
use crate::engine::Note;
use crate::ids::{AgentId, ConversationId, CustomerId};

/// One message on a desk link, or an acknowledgement of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeskEnvelope<M> {
    /// The conversation whose notes these are.
    pub conversation: ConversationId,
    /// Whose conversation side holds the conversation (where acknowledgements go).
    pub customer: CustomerId,
    /// The agent side the notes are for.
    pub agent: AgentId,
    /// The holding: the router's message to `agent` that gave it the conversation.
    pub since: u64,
    /// The sender's incarnation.
    pub epoch: u64,
    pub body: Body<M>,
}

impl<M> DeskEnvelope<M> {
    /// Each body, on the desk link of `conversation` and `holding`.
    pub(crate) fn each(
        conversation: ConversationId,
        customer: CustomerId,
        holding: Holding,
        epoch: u64,
        bodies: Vec<Body<M>>,
    ) -> impl Iterator<Item = Self> {
        let Holding { agent, since } = holding;
        bodies.into_iter().map(move |body| DeskEnvelope {
            conversation,
            customer,
            agent,
            since,
            epoch,
            body,
        })
    }
}

/// From a conversation side to the holding agent's desk: the notes of one step, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToDesk {
    pub notes: Vec<Note>,
}

/// From an agent side back on a desk link: nothing but acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromDesk {}

/// Who holds a conversation, as the router side tells its conversation side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub agent: AgentId,
    /// The router's message to `agent` that began the holding.
    pub since: u64,
}

/// Whether a note is one a conversation side sends on a desk link (the others are the
/// router's, on the agent's link).
pub fn is_conversation_note(note: &Note) -> bool {
    matches!(
        note,
        Note::CustomerMessage { .. }
            | Note::Whisper { .. }
            | Note::ReadUnreplied { .. }
            | Note::BotHosting { .. }
    )
}

/// What a router note does to its agent's holdings: `(c, true)` it holds `c` from now on (a
/// new holding if it did not), `(c, false)` it no longer does. One rule for the router side's
/// count and the agent side's, so both name a holding alike.
pub(crate) fn change(note: &Note) -> Option<(ConversationId, bool)> {
    match *note {
        Note::Offered { conversation, .. } | Note::Assigned { conversation, .. } => {
            Some((conversation, true))
        }
        Note::Released { conversation, .. } => Some((conversation, false)),
        _ => None,
    }
}

/// The conversation side's end of one desk link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeskOut {
    pub conversation: ConversationId,
    pub holding: Holding,
    pub link: Link<ToDesk, FromDesk>,
}

/// The agent side's end of one desk link (of a conversation it holds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeskIn {
    pub customer: CustomerId,
    pub since: u64,
    pub link: Link<FromDesk, ToDesk>,
}
