//! What the engine asks its caller to do. The core never does IO: it returns these and the
//! actors execute them.

use serde::{Deserialize, Serialize};

use crate::channel::{Channel, MessageTag};
use crate::conversation::{Cause, State};
use crate::ids::{AgentId, ConversationId, CustomerId, GroupId};
use crate::replies::ReplyKind;
use crate::router::{AgentStatus, Release, StatusCause, Via};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "effect")]
pub enum Effect {
    /// Deliver a message to the customer through the conversation's channel.
    Send {
        conversation: ConversationId,
        channel: Channel,
        text: String,
        from: Sender,
        tag: Option<MessageTag>,
    },
    /// An automatic reply was due but would have eaten the budget kept for humans, or came
    /// after the channel's reply window (no tag: the customer may not be sent it).
    ReplySuppressed { conversation: ConversationId, kind: ReplyKind },
    /// Push to one agent's desktop stream.
    Notify { agent: AgentId, note: Note },
    /// For integrators (SPEC §9) and metrics.
    Event(Event),
    /// Retention elapsed: delete the transcript.
    Purge { conversation: ConversationId },
}

/// Who a message to the customer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sender {
    Agent(AgentId),
    Auto(ReplyKind),
}

/// Something an agent desktop shows (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "note")]
pub enum Note {
    Offered {
        conversation: ConversationId,
        expires: Timestamp,
    },
    Assigned {
        conversation: ConversationId,
        via: Via,
    },
    /// The conversation left this agent's lists.
    Released {
        conversation: ConversationId,
        reason: Release,
    },
    CustomerMessage {
        conversation: ConversationId,
        text: String,
        bot_hosting: bool,
    },
    Whisper {
        conversation: ConversationId,
        from: AgentId,
        text: String,
    },
    ReadUnreplied {
        conversation: ConversationId,
    },
    BotHosting {
        conversation: ConversationId,
        on: bool,
    },
    UnrepliedAlert {
        conversation: ConversationId,
    },
    StatusChanged {
        status: AgentStatus,
        cause: StatusCause,
    },
}

impl Note {
    /// The conversation the note is about; `None` for the agent's own status.
    pub fn conversation(&self) -> Option<ConversationId> {
        match self {
            Note::Offered { conversation, .. }
            | Note::Assigned { conversation, .. }
            | Note::Released { conversation, .. }
            | Note::CustomerMessage { conversation, .. }
            | Note::Whisper { conversation, .. }
            | Note::ReadUnreplied { conversation }
            | Note::BotHosting { conversation, .. }
            | Note::UnrepliedAlert { conversation } => Some(*conversation),
            Note::StatusChanged { .. } => None,
        }
    }
}

/// Integrator events (SPEC §9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    Opened {
        conversation: ConversationId,
        customer: CustomerId,
        channel: Channel,
        group: GroupId,
    },
    Queued {
        conversation: ConversationId,
        group: GroupId,
        pinned_to: Option<AgentId>,
    },
    Offered {
        conversation: ConversationId,
        agent: AgentId,
    },
    Assigned {
        conversation: ConversationId,
        agent: AgentId,
        group: GroupId,
        via: Via,
        waited_ms: u64,
    },
    /// `left_queue`: the group whose queue it was waiting in and for how long, when a
    /// waiting conversation moves to another group (a wait that ends in that queue).
    Transferred {
        conversation: ConversationId,
        from: Option<AgentId>,
        to: Target,
        #[serde(default)]
        left_queue: Option<(GroupId, u64)>,
    },
    /// `from` is the state it ended in; `waited_ms` how long it had waited if it ended queued
    /// (an abandonment when the customer's channel closed it).
    Ended {
        conversation: ConversationId,
        group: GroupId,
        cause: Cause,
        agent: Option<AgentId>,
        from: State,
        waited_ms: Option<u64>,
    },
    /// The first answer from a human agent.
    FirstResponse {
        conversation: ConversationId,
        agent: AgentId,
        group: GroupId,
        since_opened_ms: u64,
        since_assigned_ms: u64,
    },
    Rated {
        conversation: ConversationId,
        score: u8,
        credited: Vec<AgentId>,
    },
    UnrepliedAlert {
        conversation: ConversationId,
        notify: Vec<AgentId>,
    },
    AgentStatusChanged {
        agent: AgentId,
        from: AgentStatus,
        to: AgentStatus,
        cause: StatusCause,
    },
    OfferMissed {
        conversation: ConversationId,
        agent: AgentId,
        reason: Release,
    },
}

impl Event {
    /// Its `event` tag as serde writes it ("opened", "assigned" …), without serializing it.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Opened { .. } => "opened",
            Event::Queued { .. } => "queued",
            Event::Offered { .. } => "offered",
            Event::Assigned { .. } => "assigned",
            Event::Transferred { .. } => "transferred",
            Event::Ended { .. } => "ended",
            Event::FirstResponse { .. } => "first_response",
            Event::Rated { .. } => "rated",
            Event::UnrepliedAlert { .. } => "unreplied_alert",
            Event::AgentStatusChanged { .. } => "agent_status_changed",
            Event::OfferMissed { .. } => "offer_missed",
        }
    }
}

/// Where a transfer or reassignment sends a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Agent(AgentId),
    Group { group: GroupId, keep_entry_time: bool },
}
