//! The live unaccepted list (SPEC §6): when a conversation enters or leaves the unaccepted
//! list of an agent (waiting in one of its groups' queues, or for it in particular), the
//! agent's stream hears of it.
//!
//! Derived here from the router's placements rather than added to the core: after each
//! command, the conversations its events name (and every conversation waiting for one agent,
//! whose pin can lapse without an event) are compared with where the node last said they
//! wait (`TenantState::unaccepted`), and each agent that gains or loses one is told. Agents
//! who are offline are not told (their desktop reads the list when it signs in).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use switchboard_core::engine::Event;
use switchboard_core::router::Placement;
use switchboard_core::{AgentId, AgentStatus, ConversationId, GroupId, Timestamp};
use switchboard_proto::internal::v1::{StreamItem, stream_item};
use switchboard_proto::v1 as pb;

use super::{Output, push};
use crate::convert;
use crate::state::{TenantState, agent_stream};

/// Where a conversation waits, as far as unaccepted lists go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Waiting {
    Group(GroupId),
    Pinned(GroupId, AgentId),
}

/// Where the node last said each waiting conversation waits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Unaccepted {
    waiting: BTreeMap<ConversationId, Waiting>,
}

fn waiting(state: &TenantState, c: ConversationId) -> Option<Waiting> {
    match state.engine.router().placement(c)? {
        Placement::Queued { group, pin: Some(p), .. } => Some(Waiting::Pinned(*group, p.agent)),
        Placement::Queued { group, pin: None, .. } => Some(Waiting::Group(*group)),
        _ => None,
    }
}

/// The agents whose list holds a conversation waiting at `w`.
fn eligible(state: &TenantState, w: Waiting) -> BTreeSet<AgentId> {
    let router = state.engine.router();
    let signed_in =
        |a: &AgentId| router.agent(*a).is_some_and(|x| x.status != AgentStatus::Offline);
    match w {
        Waiting::Group(g) => router.group_members(g).filter(signed_in).collect(),
        Waiting::Pinned(_, a) => std::iter::once(a).filter(signed_in).collect(),
    }
}

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

/// Tells agents how this command changed their unaccepted lists.
pub fn track(state: &mut TenantState, now: Timestamp, out: &mut Output) {
    let mut candidates: BTreeSet<ConversationId> =
        out.events.iter().filter_map(conversation_of).collect();
    candidates.extend(
        state
            .unaccepted
            .waiting
            .iter()
            .filter(|(_, w)| matches!(w, Waiting::Pinned(..)))
            .map(|(c, _)| *c),
    );
    for c in candidates {
        let before = state.unaccepted.waiting.get(&c).copied();
        let after = waiting(state, c);
        if before == after {
            continue;
        }
        match after {
            Some(w) => state.unaccepted.waiting.insert(c, w),
            None => state.unaccepted.waiting.remove(&c),
        };
        let old = before.map(|w| eligible(state, w)).unwrap_or_default();
        let new = after.map(|w| eligible(state, w)).unwrap_or_default();
        let conversation = state.conversation_name(c);
        if let Some(w) = after {
            let (group, pinned) = match w {
                Waiting::Group(g) => (g, false),
                Waiting::Pinned(g, _) => (g, true),
            };
            let added = pb::agent_event::UnacceptedAdded { group: state.group_name(group), pinned };
            for a in new.difference(&old) {
                let event = pb::agent_event::Event::UnacceptedAdded(added.clone());
                tell(state, now, *a, &conversation, event, out);
            }
        }
        let reason = match state.engine.router().placement(c) {
            Some(Placement::Offered { .. }) => "offered",
            Some(Placement::Assigned { .. }) => "assigned",
            Some(Placement::Queued { .. }) => "moved",
            None => "ended",
        };
        for a in old.difference(&new) {
            let removed = pb::agent_event::UnacceptedRemoved { reason: reason.to_owned() };
            let event = pb::agent_event::Event::UnacceptedRemoved(removed);
            tell(state, now, *a, &conversation, event, out);
        }
    }
}

fn tell(
    state: &mut TenantState,
    now: Timestamp,
    agent: AgentId,
    conversation: &str,
    event: pb::agent_event::Event,
    out: &mut Output,
) {
    let item = pb::AgentEvent {
        cursor: 0,
        at: Some(convert::timestamp(now)),
        conversation: conversation.to_owned(),
        event: Some(event),
    };
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
