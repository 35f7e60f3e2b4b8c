//! The live unaccepted list (SPEC §6): when a conversation enters or leaves the unaccepted
//! list of an agent (waiting in one of its groups' queues, or for it in particular), the
//! agent's stream hears of it.
//!
//! Derived here from the router's placements rather than added to the core: after each
//! command, the conversations its events name (and every conversation waiting for one agent,
//! whose pin can lapse without an event) are compared with where the node last said they
//! wait (`TenantState::unaccepted`), and each agent that gains or loses one is told. Agents
//! who are offline are not told (their desktop reads the list when it signs in).

use switchboard_core::engine::Event;
use switchboard_core::mesh::unaccepted::Change;
use switchboard_core::{AgentId, ConversationId, Timestamp};
use switchboard_proto::internal::v1::{StreamItem, stream_item};
use switchboard_proto::v1 as pb;

use super::{Names, Output, push};
use crate::convert;
use crate::state::{TenantState, agent_stream};

/// Where the node last said each waiting conversation waits: the core's tracker, the one
/// rule for both paths (`switchboard_core::mesh::unaccepted`; an actor tenant's router side
/// keeps its own).
pub type Unaccepted = switchboard_core::mesh::unaccepted::Unaccepted;

fn conversation_of(event: &Event) -> Option<ConversationId> {
    match event {
        Event::Opened { conversation, .. }
        | Event::Queued { conversation, .. }
        | Event::Offered { conversation, .. }
        | Event::Assigned { conversation, .. }
        | Event::Transferred { conversation, .. }
        | Event::Ended { conversation, .. }
        | Event::Rated { conversation, .. }
        | Event::UnrepliedAlert { conversation, .. }
        | Event::OfferMissed { conversation, .. }
        | Event::FirstResponse { conversation, .. } => Some(*conversation),
        Event::AgentStatusChanged { .. } => None,
    }
}

/// Tells agents how this command changed their unaccepted lists: the conversations its
/// events name are compared with where they were last said to wait.
pub fn track(state: &mut TenantState, now: Timestamp, out: &mut Output) {
    let touched: Vec<ConversationId> = out.events.iter().filter_map(conversation_of).collect();
    let mut lists = std::mem::take(&mut state.unaccepted);
    let changes = lists.track(state.engine.router(), touched);
    state.unaccepted = lists;
    for (agent, changes) in changes {
        for change in &changes {
            tell(state, now, agent, change, out);
        }
    }
}

/// Tells `agent`, whose groups were `before` this command, what its unaccepted list gained
/// and lost with its new groups (`Unaccepted::regrouped`); before the command's own changes.
pub fn regrouped(
    state: &mut TenantState,
    now: Timestamp,
    agent: AgentId,
    before: &[switchboard_core::GroupId],
    out: &mut Output,
) {
    let changes = state.unaccepted.regrouped(state.engine.router(), agent, before);
    for change in &changes {
        tell(state, now, agent, change, out);
    }
}

/// One change of an agent's unaccepted list as its stream shows it (`cursor` 0 until the
/// stream numbers it), on either path.
pub fn agent_event(names: &dyn Names, now: Timestamp, change: &Change) -> pb::AgentEvent {
    use pb::agent_event::{Event, UnacceptedAdded, UnacceptedRemoved};
    let (conversation, event) = match *change {
        Change::Added { conversation, group, pinned } => {
            let group = names.group_name(group);
            (conversation, Event::UnacceptedAdded(UnacceptedAdded { group, pinned }))
        }
        Change::Removed { conversation, gone } => {
            let reason = gone.as_str().to_owned();
            (conversation, Event::UnacceptedRemoved(UnacceptedRemoved { reason }))
        }
    };
    pb::AgentEvent {
        cursor: 0,
        at: Some(convert::timestamp(now)),
        conversation: names.conversation_name(conversation),
        event: Some(event),
    }
}

fn tell(
    state: &mut TenantState,
    now: Timestamp,
    agent: AgentId,
    change: &Change,
    out: &mut Output,
) {
    let item = agent_event(&*state, now, change);
    let stream = agent_stream(state.agents.name(agent.0));
    push(state, out, &stream, StreamItem { item: Some(stream_item::Item::AgentEvent(item)) });
}

#[cfg(test)]
mod tests {
    use switchboard_proto::internal::v1::stream_item::Item;
    use switchboard_proto::internal::v1::{Advance, command::Op};
    use switchboard_proto::v1 as pb;

    use super::super::admin::tests::{T, agent_op, run, tenant};
    use super::*;

    /// The unaccepted-list items of a command, as "stream change".
    fn changes(out: &Output) -> Vec<String> {
        use pb::agent_event::Event as E;
        out.items
            .iter()
            .filter_map(|(stream, _, item)| match &item.item {
                Some(Item::AgentEvent(e)) => match &e.event {
                    Some(E::UnacceptedAdded(a)) => {
                        Some(format!("{stream} added {} pinned={}", a.group, a.pinned))
                    }
                    Some(E::UnacceptedRemoved(r)) => Some(format!("{stream} removed {}", r.reason)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    /// A conversation waiting for its dedicated agent is on that agent's list only; when the
    /// wait lapses (a timer, with no event of its own) the rest of the group hears of it.
    #[test]
    fn a_dedicated_wait_that_lapses_reaches_the_whole_group() {
        let mut s = tenant();
        let pull = Op::PutGroup(pb::PutGroupRequest {
            name: format!("{T}/groups/sales"),
            policy: Some(pb::RoutingPolicy {
                offer_mode: pb::OfferMode::Pull as i32,
                dedicated_timeout: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        run(&mut s, 1_000, pull).unwrap();
        for a in ["a1", "a2"] {
            run(&mut s, 1_000, agent_op(a, &["sales"], false)).unwrap();
            let online = Op::SetStatus(pb::SetStatusRequest {
                agent: format!("{T}/agents/{a}"),
                status: pb::AgentStatus::Online as i32,
                ..Default::default()
            });
            run(&mut s, 1_000, online).unwrap();
        }
        let dedicated = Op::PutCustomer(pb::PutCustomerRequest {
            name: format!("{T}/customers/u1"),
            dedicated_agent: "tenants/acme/agents/a1".into(),
            ..Default::default()
        });
        run(&mut s, 1_000, dedicated).unwrap();
        let post = Op::PostMessage(pb::PostMessageRequest {
            customer: format!("{T}/customers/u1"),
            channel: pb::Channel::Web as i32,
            text: "hello".into(),
            ..Default::default()
        });
        let (_, out) = run(&mut s, 2_000, post).unwrap();
        assert_eq!(changes(&out), ["agent/a1 added tenants/acme/groups/sales pinned=true"]);

        let (_, out) = run(&mut s, 63_000, Op::Advance(Advance {})).unwrap();
        assert_eq!(changes(&out), ["agent/a2 added tenants/acme/groups/sales pinned=false"]);
    }
}
