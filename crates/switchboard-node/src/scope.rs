//! The data scope of an agent (SPEC §8 "see own", SECURITY.md): which conversations and
//! customers an agent may read and edit. Supervisors (the flag an administrator sets) see all.

use switchboard_core::engine::{Actor, Customer};
use switchboard_core::{AgentId, Conversation, ConversationId, GroupId};

use crate::error::{Error, Result};
use crate::state::TenantState;

/// How `a` views data: supervisors see everything.
pub fn viewer(state: &TenantState, a: AgentId) -> Actor {
    if state.is_supervisor(a) { Actor::Supervisor(a) } else { Actor::Agent(a) }
}

/// An agent may touch a conversation it serves or served (the check `GetHistory` makes).
pub fn conversation(state: &TenantState, a: AgentId, c: &Conversation) -> Result<()> {
    if c.visible_until(viewer(state, a)).is_some() {
        return Ok(());
    }
    Err(Error::PermissionDenied(format!(
        "agent {} never served conversation {}; only its agents and supervisors can read or \
         change it",
        state.agent_name(a),
        state.conversation_name(c.id)
    )))
}

/// An agent may read and edit a customer it is the last or dedicated agent of, whose open
/// conversation it serves or served, or whose routing group (the customer's, or that of its
/// open conversation) it is a member of. `c` is the customer's routing record (`None` for
/// one never routed).
pub fn customer(state: &TenantState, a: AgentId, name: &str, c: Option<&Customer>) -> Result<()> {
    customer_seeing(state, a, name, c, |id| state.engine.conversation(id))
}

/// [`customer`], with the customer's open conversation found by `open` (on a tenant on
/// actors its conversation actor holds it, not the tenant actor's engine).
pub fn customer_seeing<'o>(
    state: &TenantState,
    a: AgentId,
    name: &str,
    c: Option<&Customer>,
    open: impl FnOnce(ConversationId) -> Option<&'o Conversation>,
) -> Result<()> {
    let groups = state.engine.agent_settings(a).map(|s| s.groups.as_slice()).unwrap_or_default();
    let open = c.and_then(|c| c.open).and_then(open);
    if customer_in_scope(state.is_supervisor(a), groups, a, c, open) {
        return Ok(());
    }
    Err(out_of_customer_scope(name, &state.agent_name(a)))
}

/// [`customer`]'s rule, for any holder of what it reads (the tenant actor, a conversation
/// actor): whether `a` (a supervisor or not, in `groups`) may read and edit the customer `c`
/// whose open conversation is `open` (if it is known).
pub fn customer_in_scope(
    supervisor: bool,
    groups: &[GroupId],
    a: AgentId,
    c: Option<&Customer>,
    open: Option<&Conversation>,
) -> bool {
    if supervisor {
        return true;
    }
    let Some(c) = c else { return false };
    if c.last_agent == Some(a) || c.settings.dedicated_agent == Some(a) {
        return true;
    }
    if let Some(open) = open.filter(|o| c.open == Some(o.id))
        && (open.visible_until(Actor::Agent(a)).is_some() || groups.contains(&open.group))
    {
        return true;
    }
    c.settings.group.is_some_and(|g| groups.contains(&g))
}

/// The refusal of a customer (`name`, its resource name) outside the scope of `agent` (its
/// resource name).
pub fn out_of_customer_scope(name: &str, agent: &str) -> Error {
    Error::PermissionDenied(format!(
        "customer {name} is outside the data scope of agent {agent}: it never served the \
         customer and is in none of its groups"
    ))
}
