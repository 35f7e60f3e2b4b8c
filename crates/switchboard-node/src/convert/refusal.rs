//! The core's refusals told in the tenant's public names. The core numbers its agents,
//! groups, customers and conversations (`a2`, `c1`); callers know them by resource name, so
//! every core error that leaves a tenant's actor is rewritten here, where the tenant's id
//! tables are at hand.

use switchboard_core::Error as Core;
use switchboard_core::{AgentId, ConversationId, CustomerId, GroupId};

use crate::actors::effects::MeshNames;
use crate::apply::Names;
use crate::error::Error;
use crate::state::TenantState;

/// `e` with its message in resource names; other errors pass unchanged.
pub fn named(state: &TenantState, e: Error) -> Error {
    match e {
        Error::Core(error) => Error::Refused { message: describe(state, &error), error },
        other => other,
    }
}

/// A refusal of a command that would create customer `u` (`id`), which has no name in the
/// tenant's tables yet.
pub fn new_customer(state: &TenantState, e: Core, u: CustomerId, id: &str) -> Error {
    let name = crate::names::child_name(&state.id, "customers", id);
    let message =
        describe(state, &e).replace(&format!("customer {u}"), &format!("customer {name}"));
    Error::Refused { error: e, message }
}

/// The message of a core error, naming resources as the API does.
pub fn describe(state: &TenantState, e: &Core) -> String {
    describe_named(state, &|m| rename_ids(state, m), e)
}

/// [`describe`] with any tenant's names (the actors' too); `rename` rewrites the core's
/// free-text refusals.
pub fn describe_named(names: &dyn Names, rename: &dyn Fn(&str) -> String, e: &Core) -> String {
    let state = names;
    let c = |id| state.conversation_name(id);
    let a = |id| state.agent_name(id);
    match e {
        Core::InvalidArgument(m) => rename(m),
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
            "conversation {} is not in the unaccepted list of agent {}'s groups (or its group is closed: outside business hours)",
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
        Core::NotWrappingUp { agent, conversation } => format!(
            "agent {} has no wrap-up{} to end",
            a(*agent),
            conversation.map(|x| format!(" of conversation {}", c(x))).unwrap_or_default()
        ),
        Core::WrapUpMandatory { agent, until } => format!(
            "agent {}'s wrap-up is mandatory in its group; it ends by itself at {}",
            a(*agent),
            super::timestamp(*until)
        ),
        Core::TransferWouldEnd { conversation, group, closed } => format!(
            "transferring conversation {} would end it: skill group {} {}; it stays where it is",
            c(*conversation),
            state.group_name(*group),
            switchboard_core::error::why_transfer_would_end(*closed)
        ),
    }
}

/// [`describe`] for an actor tenant, in its mesh's names; `customer`: the customer the call
/// named (its number and resource name), which the mesh's names know only by number.
pub(crate) fn describe_mesh(
    names: &MeshNames<'_>,
    customer: Option<(CustomerId, &str)>,
    e: &Core,
) -> String {
    let message = describe_named(names, &|m| rename_mesh(names, customer, m), e);
    match customer {
        Some((u, name)) => message.replace(&names.customer_name(u), name),
        None => message,
    }
}

/// A refusal the core wrote as text (its `Display`, as the router side sends an agent's
/// refused command back), in an actor tenant's resource names: [`rename_ids`] from the
/// mesh's configuration.
pub(crate) fn rename_mesh(
    names: &MeshNames<'_>,
    customer: Option<(CustomerId, &str)>,
    message: &str,
) -> String {
    let known = |kind: char, n: u64| match kind {
        'u' => customer.filter(|(u, _)| u.0 == n).map(|(_, name)| name.to_owned()),
        'a' => names.config.agents.contains_key(&AgentId(n)).then(|| names.agent_name(AgentId(n))),
        // Conversation numbers are the tenant's, whichever actor holds them.
        'c' => (n >= 1).then(|| names.conversation_name(ConversationId(n))),
        _ => names.config.groups.contains_key(&GroupId(n)).then(|| names.group_name(GroupId(n))),
    };
    rename_with(message, &known)
}

/// The core's free-text refusals write ids as it numbers them (`customer u3`, `agent a1`,
/// `conversation c2`, `group g1`); each one that names a known resource becomes its resource
/// name. (Structured variants in the core would make this unnecessary.)
fn rename_ids(state: &TenantState, message: &str) -> String {
    rename_with(message, &|prefix, n| match prefix {
        'u' => (!state.customers.name(n).is_empty()).then(|| state.customer_name(CustomerId(n))),
        'a' => (!state.agents.name(n).is_empty()).then(|| state.agent_name(AgentId(n))),
        'c' => (n >= 1 && n <= state.next_conversation)
            .then(|| state.conversation_name(ConversationId(n))),
        _ => (!state.groups.name(n).is_empty()).then(|| state.group_name(GroupId(n))),
    })
}

/// [`rename_ids`] with `known(prefix, number)` naming the resources it knows.
fn rename_with(message: &str, known: &dyn Fn(char, u64) -> Option<String>) -> String {
    let mut out = message.to_owned();
    let kinds: [(&str, char); 4] =
        [("customer ", 'u'), ("agent ", 'a'), ("conversation ", 'c'), ("group ", 'g')];
    for (word, prefix) in kinds {
        let mut renamed = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(word) {
            let (before, after) = rest.split_at(at + word.len());
            renamed.push_str(before);
            rest = after;
            let digits: String = after
                .strip_prefix(prefix)
                .unwrap_or("")
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            let boundary = after
                .get(1 + digits.len()..)
                .and_then(|tail| tail.chars().next())
                .is_none_or(|ch| !ch.is_alphanumeric() && ch != '_' && ch != '-');
            let Ok(n) = digits.parse::<u64>() else { continue };
            let name = known(prefix, n);
            if let (true, Some(name)) = (boundary, name) {
                renamed.push_str(&name);
                rest = &after[1 + digits.len()..];
            }
        }
        renamed.push_str(rest);
        out = renamed;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_text_refusals_name_resources() {
        let mut state = TenantState { id: "acme".into(), ..Default::default() };
        state.agents.intern("zed");
        state.agents.intern("amy");
        state.customers.intern("carol");
        state.next_conversation = 1;
        let m = "agent a2 cannot change agent a1's status; customer u1, conversation c1, agent a9, \
                 agent a1x";
        assert_eq!(
            rename_ids(&state, m),
            "agent tenants/acme/agents/amy cannot change agent tenants/acme/agents/zed's status; \
             customer tenants/acme/customers/carol, conversation tenants/acme/conversations/1, \
             agent a9, agent a1x"
        );
    }
}
