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
