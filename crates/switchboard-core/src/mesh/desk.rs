//! The desk: an agent's desk stream, written by the side that decides what it shows (no
//! agent side in between, so an entry costs its maker's write and nothing more).
//!
//! - The router side's decisions about an agent (offered, assigned, released, a status it
//!   changed, an unreplied alert, changes of the agent's unaccepted list, refusals of the
//!   agent's commands) are its entries ([`super::RouterSide::take_desk`]), written in the
//!   router's batch.
//! - A conversation side's own notes for the agent holding it (customer messages, whispers,
//!   read-but-unreplied, bot hosting) are its entries ([`super::ConversationSide::take_desk`]),
//!   written in the batch of the step that made them.
//!
//! The stream has many writers, so its positions are the store's, in commit order (a shared
//! stream). What the desk relies on:
//! - **No note of a holding before the entry that began it.** A conversation side writes notes
//!   only for the holding the router told it of ([`super::ToConversation::Placed`]'s `desk`),
//!   and it hears that message only after the router's batch is queued ahead of its own on
//!   the same writer (one node) or durable (across nodes): its note commits after.
//! - **A conversation's notes before its `Released` at its end**: its `Leave` goes to the
//!   router after the batch with its last notes (the same rule), so the router's release
//!   commits after them.
//! - **Each entry once**: each is in the batch of the state change that made it; a lost batch
//!   loses both, and the step is made again from its resent input.
//! - **May be one message stale**: a note written while the end of its holding (a transfer, a
//!   requeue) is on its way to the conversation side goes to the agent it last heard of, after
//!   that agent's `Released`. A desk shows notes only of what it holds.
//!
//! Desk links (a link per holding from the conversation side to the agent side) carried the
//! conversation notes before; [`DeskOut`] and [`DeskIn`] remain only so that rows written then
//! still read (their notes were shown or are dropped).

use serde::{Deserialize, Serialize};

use super::link::Link;
use crate::engine::Note;
use crate::ids::{AgentId, ConversationId, CustomerId};

/// One entry of an agent's desk stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeskEvent {
    /// A decision of the router about this agent, or a conversation's note for it, as the
    /// desk shows it.
    Note(Note),
    /// The router refused the agent's command `command` (its sequence number on the link).
    Refused { command: u64, reason: String },
    /// The agent's unaccepted list changed ([`super::unaccepted`]).
    Unaccepted(super::unaccepted::Change),
}

/// What a desk link carried (rows written before desk entries were written by their makers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToDesk {
    pub notes: Vec<Note>,
}

/// The reverse of [`ToDesk`]: nothing but acknowledgements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromDesk {}

/// Who holds a conversation, as the router side tells its conversation side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub agent: AgentId,
    /// The router's message to `agent` that began the holding.
    pub since: u64,
}

/// Whether a note is one a conversation side writes on its holder's desk (the others are the
/// router's).
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

/// The conversation side's end of one desk link (read from an older row, never written).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DeskOut {
    pub conversation: ConversationId,
    pub holding: Holding,
    pub link: Link<ToDesk, FromDesk>,
}

/// The agent side's end of one desk link (read from an older row, never written).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeskIn {
    pub customer: CustomerId,
    pub since: u64,
    pub link: Link<FromDesk, ToDesk>,
}
