//! The conversation as the API shows it.

use switchboard_core::{Conversation, ConversationId, State};
use switchboard_proto::v1 as pb;

use super::{duration, state_to_pb, timestamp};
use crate::apply::Names;
use crate::state::{ConversationExtra, TenantState};

pub fn conversation(state: &TenantState, id: ConversationId) -> pb::Conversation {
    let Some(c) = state.engine.conversation(id) else {
        return pb::Conversation { name: state.conversation_name(id), ..Default::default() };
    };
    render(state, c, state.conversation_extra.get(&id), state.customers.name(c.customer.0))
}

/// A conversation in memory or out of the archive, with the tenant's names (`customer`: the
/// customer's id, which an archived conversation carries itself).
pub fn render(
    state: &TenantState,
    c: &Conversation,
    extra: Option<&ConversationExtra>,
    customer: &str,
) -> pb::Conversation {
    let position = state.engine.position(c.id);
    // Recomputed at every read: the tenant's clock never runs backwards.
    let now = crate::clock::now().max(state.last_at);
    let wait = state.engine.estimated_wait(now, c.id);
    let customer = crate::names::child_name(&state.id, "customers", customer);
    render_named(state, c, extra, customer, position, wait)
}

/// [`render`] from its parts: resource names from `names` (the tenant actor's state, or a
/// mesh's configuration), the customer's resource name, and where the router has it.
pub fn render_named(
    names: &dyn Names,
    c: &Conversation,
    extra: Option<&ConversationExtra>,
    customer: String,
    position: Option<usize>,
    estimated_wait: Option<std::time::Duration>,
) -> pb::Conversation {
    let id = c.id;
    pb::Conversation {
        name: names.conversation_name(id),
        customer,
        channel: super::channel_to_pb(c.channel) as i32,
        group: names.group_name(c.group),
        state: state_to_pb(c.state) as i32,
        agent: c.agent.map(|a| names.agent_name(a)).unwrap_or_default(),
        position: position.unwrap_or(0) as u64,
        position_display: position
            .map(switchboard_core::replies::display_position)
            .unwrap_or_default(),
        bot_hosting: c.bot_hosting,
        priority: u32::from(c.priority),
        opened_at: Some(timestamp(c.opened_at)),
        ended_at: c.ended_at.map(timestamp),
        customer_messages: c.customer_messages,
        agent_messages: c.agent_messages,
        automatic_messages: c.auto_messages,
        first_response: c.first_response_at.map(|t| duration(t.since(c.opened_at))),
        served_by: c.served_by.iter().map(|a| names.agent_name(*a)).collect(),
        transitions: c
            .transitions
            .iter()
            .map(|t| pb::Transition {
                at: Some(timestamp(t.at)),
                to: state_to_pb(t.to) as i32,
                cause: super::snake(&t.cause),
                agent: t.agent.map(|a| names.agent_name(a)).unwrap_or_default(),
            })
            .collect(),
        rating: c.rating.as_ref().map(|r| pb::Rating {
            score: u32::from(r.score),
            comment: r.comment.clone(),
            credited_agents: r.credited.iter().map(|a| names.agent_name(*a)).collect(),
        }),
        read_unreplied: c.state != State::Ended && c.read_unreplied(),
        tags: extra.map(|x| x.tags.clone()).unwrap_or_default(),
        note: extra.map(|x| x.note.clone()).unwrap_or_default(),
        estimated_wait: estimated_wait.map(duration),
    }
}
