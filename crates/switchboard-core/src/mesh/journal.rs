//! The router side's inputs, as a shell logs them between checkpoints of the side. The side
//! is deterministic: the same inputs, in the same order and at the same times, on the same
//! state give the same state. So a shell need not write the whole side (O(open
//! conversations + agents)) on every step: it writes a checkpoint now and then and, in
//! between, each batch's inputs; [`RouterSide::replay`] on the checkpoint rebuilds the side.
//!
//! What the replay must see besides the operations and envelopes:
//! - [`RouterInput::Sent`] where the shell put the side's messages on the network
//!   ([`RouterSide::outgoing`] turns a left conversation's settled link into a tombstone);
//! - [`RouterInput::Restart`] where a new incarnation began (it forgets what a restart
//!   loses, then [`RouterSide::restart`]);
//! - after a checkpoint, what was held back on its links then ([`RouterSide::held_back`]),
//!   which the checkpoint's encoding drops.
//!
//! A new configuration is not an input: a shell writes a checkpoint after it.
//!
//! Tombstones are rows of their own ([`RouterSide::take_tombstones`]), each marked with the
//! write that stored it ([`Tombstone::stored_with`]). [`rebuild`] gives the checkpoint only
//! those it had: one the log's own steps put away must not be there before them, or the
//! replay would take the conversation's first messages for late copies and drop them. The
//! replay keeps every tombstone it was given (the stored ones, whose `seen` may be older than
//! the original's), so a late copy is recognised as the original recognised it; a copy that
//! arrived later than the whole `linger` (far longer than any envelope takes) after its
//! tombstone expired is the one case it does not.

use serde::{Deserialize, Serialize};

use super::{AgentEnvelope, Body, Envelope, FromAgent, RouterSide, ToRouter, Tombstone};
use crate::engine::{Actor, Effect, Target};
use crate::error::Result;
use crate::ids::{AgentId, ConversationId, GroupId};
use crate::router::{AgentStatus, StatusCause};
use crate::time::Timestamp;

/// An operation of an agent or a supervisor on the router side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouterOp {
    SetStatus {
        agent: AgentId,
        status: AgentStatus,
        cause: StatusCause,
    },
    SetAgent {
        agent: AgentId,
        capacity: u32,
        groups: Vec<GroupId>,
    },
    Accept {
        agent: AgentId,
        conversation: ConversationId,
    },
    Decline {
        agent: AgentId,
        conversation: ConversationId,
    },
    Pick {
        agent: AgentId,
        conversation: ConversationId,
    },
    Transfer {
        conversation: ConversationId,
        target: Target,
        by: Actor,
    },
    /// Before an administrator's change lowers an agent's capacity (the tenant actor keeps
    /// the configuration, the router the load): refused if the agent serves more than
    /// `capacity`, else the router takes it now, so nothing is assigned above it meanwhile.
    LowerCapacity {
        agent: AgentId,
        capacity: u32,
    },
    /// Before an administrator deletes a group: refused while anything routes through it
    /// (members, conversations, overflow, another group's steps), else the router forgets it
    /// now, so no conversation enters it meanwhile.
    RetireGroup {
        group: GroupId,
    },
}

impl RouterOp {
    /// The command's kind, as the tenant actor names its commands, for refusal counters.
    pub fn kind(&self) -> &'static str {
        match self {
            RouterOp::SetStatus { .. } => "set_status",
            RouterOp::SetAgent { .. } => "put_agent",
            RouterOp::Accept { .. } => "accept",
            RouterOp::Decline { .. } => "decline",
            RouterOp::Pick { .. } => "pick",
            RouterOp::Transfer { .. } => "transfer",
            RouterOp::LowerCapacity { .. } => "put_agent",
            RouterOp::RetireGroup { .. } => "delete_group",
        }
    }
}

/// One input of the router side, in the order the shell applied it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RouterInput {
    /// A new incarnation began with this epoch.
    Restart { epoch: u64, at: Timestamp },
    /// An envelope from a conversation side (acknowledgements too).
    Deliver { at: Timestamp, envelope: Envelope<ToRouter> },
    /// An envelope from an agent side.
    FromAgent { at: Timestamp, envelope: AgentEnvelope<FromAgent> },
    /// An operation (refused ones too: a refusal changes nothing, so replays as nothing).
    Op { at: Timestamp, op: RouterOp },
    /// Its deadlines due at `at` fired.
    Advance { at: Timestamp },
    /// A message that waited held back on a conversation's link when a checkpoint was
    /// taken, put back there ([`RouterSide::held_back`]).
    Held { envelope: Envelope<ToRouter> },
    /// The same on an agent's link.
    HeldAgent { envelope: AgentEnvelope<FromAgent> },
    /// The shell put what was outgoing on the network.
    Sent,
}

impl RouterSide {
    /// Applies one operation.
    pub fn apply_op(&mut self, now: Timestamp, op: RouterOp) -> Result<Vec<Effect>> {
        match op {
            RouterOp::SetStatus { agent, status, cause } => {
                self.set_status(now, agent, status, cause)
            }
            RouterOp::SetAgent { agent, capacity, groups } => {
                self.set_agent(now, agent, capacity, groups)
            }
            RouterOp::Accept { agent, conversation } => self.accept(now, agent, conversation),
            RouterOp::Decline { agent, conversation } => self.decline(now, agent, conversation),
            RouterOp::Pick { agent, conversation } => self.pick(now, agent, conversation),
            RouterOp::Transfer { conversation, target, by } => {
                self.transfer(now, conversation, target, by)
            }
            RouterOp::LowerCapacity { agent, capacity } => {
                self.lower_capacity(now, agent, capacity)
            }
            RouterOp::RetireGroup { group } => self.retire_group(group),
        }
    }

    /// Applies one logged input as the shell first did, sign-ins included (`day`: the local
    /// day of a time, as the shell gives [`RouterSide::note_logins`]). Returns the input's
    /// time, if it has one. Effects are dropped: they were made durable with the input.
    pub fn replay(
        &mut self,
        input: RouterInput,
        day: impl FnOnce(Timestamp) -> u64,
    ) -> Option<Timestamp> {
        let (at, effects) = match input {
            RouterInput::Restart { epoch, at } => {
                self.forget_volatile();
                self.restart(epoch, at);
                return Some(at);
            }
            RouterInput::Deliver { at, envelope } => {
                let ack = matches!(envelope.body, Body::Ack { .. });
                let effects = self.receive(at, envelope);
                if ack {
                    return Some(at);
                }
                (at, effects)
            }
            RouterInput::FromAgent { at, envelope } => {
                let ack = matches!(envelope.body, Body::Ack { .. });
                let effects = self.receive_agent(at, envelope);
                if ack {
                    return Some(at);
                }
                (at, effects)
            }
            RouterInput::Op { at, op } => match self.apply_op(at, op) {
                Ok(effects) => (at, effects),
                Err(_) => return Some(at),
            },
            RouterInput::Advance { at } => (at, self.advance_with(at, false)),
            RouterInput::Held { envelope } => {
                self.hold(envelope);
                return None;
            }
            RouterInput::HeldAgent { envelope } => {
                self.hold_agent(envelope);
                return None;
            }
            RouterInput::Sent => {
                self.outgoing();
                self.outgoing_agents();
                return None;
            }
        };
        self.note_logins(at, &effects, || day(at));
        Some(at)
    }
}

/// The inputs that follow a checkpoint of `side`: what waits held back on its links
/// ([`RouterSide::held_back`]).
pub fn after_checkpoint(side: &RouterSide) -> Vec<RouterInput> {
    let (conversations, agents) = side.held_back();
    let conversations = conversations.into_iter().map(|envelope| RouterInput::Held { envelope });
    let agents = agents.into_iter().map(|envelope| RouterInput::HeldAgent { envelope });
    conversations.chain(agents).collect()
}

impl Tombstone {
    /// Marks it with the write that stores it: the log row `Some(seq)`, or a checkpoint's
    /// write (`None`).
    pub fn stored_with(mut self, row: Option<u64>) -> Self {
        self.log = row.map_or(0, |seq| seq + 1);
        self
    }

    /// Whether a checkpoint followed by the log rows from `covers` on had it: stored with a
    /// checkpoint's write or a log row below `covers`.
    pub fn precedes(&self, covers: u64) -> bool {
        self.log <= covers
    }
}

/// Rebuilds a side from its checkpoint (`side`, decoded, followed by the log rows from
/// `covers` on), the stored tombstones and the inputs of those log rows, in order (`day` as
/// for [`RouterSide::replay`]). The tombstones the checkpoint had come first; after the
/// replay, the side keeps exactly the stored ones. The result is as a decoded side is: what
/// a restart loses is lost ([`RouterSide::forget_volatile`]); the shell calls
/// [`RouterSide::restart`] next. Returns the newest input's time.
pub fn rebuild(
    side: &mut RouterSide,
    stored: Vec<(ConversationId, Tombstone)>,
    covers: u64,
    inputs: impl IntoIterator<Item = RouterInput>,
    mut day: impl FnMut(Timestamp) -> u64,
) -> Option<Timestamp> {
    side.restore_tombstones(stored.iter().filter(|(_, t)| t.precedes(covers)).copied());
    let (mut newest, mut replayed) = (None, false);
    for input in inputs {
        replayed = true;
        if let Some(at) = side.replay(input, &mut day) {
            newest = newest.max(Some(at));
        }
    }
    if replayed {
        // What the replay put away or expired was stored (or deleted) with the original;
        // what it decided was counted then. (Only after a replay: a row of the earlier
        // encoding, which has no log, has its tombstones stored by the next write.) The
        // stored tombstones are the original's as of its last write: those the replay kept
        // past their expiry are dropped, those the log's steps put away come back.
        let _ = side.take_tombstones();
        let _ = side.take_decisions();
        side.forget_tombstones();
    }
    side.restore_tombstones(stored);
    side.forget_volatile();
    newest
}
