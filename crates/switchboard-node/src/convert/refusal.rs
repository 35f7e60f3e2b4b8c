//! The core's refusals told in the tenant's public names. The core numbers its agents,
//! groups, customers and conversations (`a2`, `c1`); callers know them by resource name, so
//! every core error that leaves a tenant's actor is rewritten here, where the tenant's id
//! tables are at hand.

use switchboard_core::Error as Core;

use crate::error::Error;
use crate::state::TenantState;

/// `e` with its message in resource names; other errors pass unchanged.
pub fn named(state: &TenantState, e: Error) -> Error {
    match e {
        Error::Core(error) => Error::Refused { message: describe(state, &error), error },
        other => other,
    }
}

/// The message of a core error, naming resources as the API does.
pub fn describe(state: &TenantState, e: &Core) -> String {
    let c = |id| state.conversation_name(id);
    let a = |id| state.agent_name(id);
    match e {
        Core::InvalidArgument(m) => m.clone(),
        Core::UnknownConversation(id) => format!("conversation {} does not exist", c(*id)),
        Core::UnknownAgent(id) => format!("agent {} does not exist", a(*id)),
        Core::UnknownGroup(id) => format!("skill group {} does not exist", state.group_name(*id)),
        Core::NoOpenConversation(id) => {
            format!("customer {} has no open conversation", state.customer_name(*id))
        }
        Core::InvalidTransition { conversation, state: s, action } => {
            format!("conversation {} is {}; cannot {action}", c(*conversation), super::snake(s))
        }
        Core::NotOffered { conversation, agent } => {
            format!("conversation {} is not offered to agent {}", c(*conversation), a(*agent))
        }
        Core::NotAssigned { conversation, agent } => {
            format!("conversation {} is not assigned to agent {}", c(*conversation), a(*agent))
        }
        Core::NotPickable { conversation, agent } => format!(
            "conversation {} is not in the unaccepted list of agent {}'s groups",
            c(*conversation),
            a(*agent)
        ),
        Core::AgentFull { agent, capacity } => format!(
            "agent {} is at capacity ({capacity}); end or transfer a conversation first",
            a(*agent)
        ),
        Core::CapacityBelowLoad { agent, assigned } => format!(
            "agent {} is serving {assigned} conversations; set a capacity of at least \
             {assigned}, or end or transfer some first",
            a(*agent)
        ),
        Core::AgentOffline(id) => {
            format!("agent {} is offline; it cannot take conversations", a(*id))
        }
        Core::CannotForceOnline(id) => format!(
            "agent {} is offline; a supervisor cannot force an offline agent into another \
             status, the agent must sign in",
            a(*id)
        ),
        Core::OutsideReplyWindow { conversation, channel } => format!(
            "the reply window of conversation {} on {channel} has closed; no more messages can \
             be sent",
            c(*conversation)
        ),
        Core::TagRequired(id) => format!(
            "the 7-day window of conversation {} has passed; the message must carry a tag: \
             confirmed_event_update, post_purchase_update or account_update",
            c(*id)
        ),
        Core::BudgetExhausted { conversation, channel, limit } => format!(
            "conversation {} on {channel} has received {limit} consecutive service messages; \
             wait for the customer to write",
            c(*conversation)
        ),
        Core::GroupInUse(id) => format!(
            "skill group {} still has members or waiting conversations; move them first",
            state.group_name(*id)
        ),
        Core::AlreadyExists(what) => format!("{what} already exists"),
    }
}
