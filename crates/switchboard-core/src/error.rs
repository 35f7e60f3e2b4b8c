//! The one error type of the core. Every variant says what to fix; the API layer maps
//! [`Error::code`] onto a gRPC status once.

use crate::channel::Channel;
use crate::conversation::State;
use crate::ids::{AgentId, ConversationId, CustomerId, GroupId};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("conversation {0} does not exist")]
    UnknownConversation(ConversationId),
    #[error("agent {0} does not exist")]
    UnknownAgent(AgentId),
    #[error("skill group {0} does not exist")]
    UnknownGroup(GroupId),
    #[error("customer {0} has no open conversation")]
    NoOpenConversation(CustomerId),
    #[error("conversation {conversation} is {state:?}; cannot {action}")]
    InvalidTransition { conversation: ConversationId, state: State, action: &'static str },
    #[error("conversation {conversation} is not offered to agent {agent}")]
    NotOffered { conversation: ConversationId, agent: AgentId },
    #[error("conversation {conversation} is not assigned to agent {agent}")]
    NotAssigned { conversation: ConversationId, agent: AgentId },
    #[error("conversation {conversation} is not in the unaccepted list of agent {agent}'s groups")]
    NotPickable { conversation: ConversationId, agent: AgentId },
    #[error("agent {agent} is at capacity ({capacity}); end or transfer a conversation first")]
    AgentFull { agent: AgentId, capacity: u32 },
    #[error(
        "agent {agent} is serving {assigned} conversations; set a capacity of at least {assigned}, or end or transfer some first"
    )]
    CapacityBelowLoad { agent: AgentId, assigned: usize },
    #[error("agent {0} is offline; it cannot take conversations")]
    AgentOffline(AgentId),
    #[error(
        "agent {0} is offline; a supervisor cannot force an offline agent into another status, the agent must sign in"
    )]
    CannotForceOnline(AgentId),
    #[error(
        "the reply window of conversation {conversation} on {channel} has closed; no more messages can be sent"
    )]
    OutsideReplyWindow { conversation: ConversationId, channel: Channel },
    #[error(
        "the 7-day window of conversation {0} has passed; the message must carry a tag: confirmed_event_update, post_purchase_update or account_update"
    )]
    TagRequired(ConversationId),
    #[error(
        "conversation {conversation} on {channel} has received {limit} consecutive service messages; wait for the customer to write"
    )]
    BudgetExhausted { conversation: ConversationId, channel: Channel, limit: u32 },
    #[error("skill group {0} still has members or waiting conversations; move them first")]
    GroupInUse(GroupId),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("agent {agent} has no wrap-up{} to end", conversation.map(|c| format!(" of conversation {c}")).unwrap_or_default())]
    NotWrappingUp { agent: AgentId, conversation: Option<ConversationId> },
    #[error(
        "agent {agent}'s wrap-up is mandatory in its group; it ends by itself at {until} ms since the epoch"
    )]
    WrapUpMandatory { agent: AgentId, until: crate::time::Timestamp },
    #[error(
        "transferring conversation {conversation} would end it: skill group {group} {}; it stays where it is",
        why_transfer_would_end(*closed)
    )]
    TransferWouldEnd { conversation: ConversationId, group: GroupId, closed: bool },
}

/// Why a transfer into a group would end the conversation (its group is closed, or full).
pub fn why_transfer_would_end(closed: bool) -> &'static str {
    if closed {
        "is closed and ends conversations outside its hours"
    } else {
        "is full and has no overflow group (raise its max_waiting or give it an overflow group)"
    }
}

/// The kind of an error, mapped once onto a transport status by the API layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Code {
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    ResourceExhausted,
    AlreadyExists,
}

/// What a refusal is, apart from its text: its code and a short machine-readable reason
/// (the API's `ErrorInfo.reason`). Crosses between actors with the text, which names things
/// by internal numbers the receiver renames.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Kind {
    pub code: Code,
    pub reason: String,
}

impl Error {
    /// Its code and reason, as one value.
    pub fn kind(&self) -> Kind {
        Kind { code: self.code(), reason: self.reason().to_owned() }
    }

    /// A short machine-readable reason (`AGENT_AT_CAPACITY`), one per variant.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::UnknownConversation(_) => "CONVERSATION_NOT_FOUND",
            Error::UnknownAgent(_) => "AGENT_NOT_FOUND",
            Error::UnknownGroup(_) => "GROUP_NOT_FOUND",
            Error::NoOpenConversation(_) => "NO_OPEN_CONVERSATION",
            Error::InvalidTransition { .. } => "INVALID_TRANSITION",
            Error::NotOffered { .. } => "NOT_OFFERED",
            Error::NotAssigned { .. } => "NOT_ASSIGNED",
            Error::NotPickable { .. } => "NOT_PICKABLE",
            Error::AgentFull { .. } => "AGENT_AT_CAPACITY",
            Error::CapacityBelowLoad { .. } => "CAPACITY_BELOW_LOAD",
            Error::AgentOffline(_) => "AGENT_OFFLINE",
            Error::CannotForceOnline(_) => "CANNOT_FORCE_ONLINE",
            Error::OutsideReplyWindow { .. } => "OUTSIDE_REPLY_WINDOW",
            Error::TagRequired(_) => "MESSAGE_TAG_REQUIRED",
            Error::BudgetExhausted { .. } => "REPLY_BUDGET_EXHAUSTED",
            Error::GroupInUse(_) => "GROUP_IN_USE",
            Error::AlreadyExists(_) => "ALREADY_EXISTS",
            Error::NotWrappingUp { .. } => "NOT_WRAPPING_UP",
            Error::WrapUpMandatory { .. } => "WRAP_UP_MANDATORY",
            Error::TransferWouldEnd { .. } => "TRANSFER_WOULD_END",
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::UnknownConversation(_)
            | Error::UnknownAgent(_)
            | Error::UnknownGroup(_)
            | Error::NoOpenConversation(_) => Code::NotFound,
            Error::InvalidTransition { .. }
            | Error::NotOffered { .. }
            | Error::NotAssigned { .. }
            | Error::NotPickable { .. }
            | Error::AgentOffline(_)
            | Error::CapacityBelowLoad { .. }
            | Error::CannotForceOnline(_)
            | Error::OutsideReplyWindow { .. }
            | Error::TagRequired(_)
            | Error::GroupInUse(_)
            | Error::NotWrappingUp { .. }
            | Error::WrapUpMandatory { .. }
            | Error::TransferWouldEnd { .. } => Code::FailedPrecondition,
            Error::AgentFull { .. } | Error::BudgetExhausted { .. } => Code::ResourceExhausted,
            Error::AlreadyExists(_) => Code::AlreadyExists,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
