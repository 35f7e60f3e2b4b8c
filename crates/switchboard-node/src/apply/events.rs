//! Core events as integrators see them (`switchboard.v1.Event`): typed fields with resource
//! names, a stable schema of the API's own rather than the core's serde shape.

use pb::event::Detail as D;
use serde_json::{Value, json};
use switchboard_core::engine::{Event, Target};
use switchboard_core::{AgentId, GroupId, Timestamp};
use switchboard_proto::v1 as pb;

use super::rows::Names;
use crate::convert;

/// An integrator event (`events`), its cursor still 0.
pub(crate) fn integrator_event(names: &dyn Names, now: Timestamp, event: &Event) -> pb::Event {
    let a = |id: AgentId| names.agent_name(id);
    let g = |id: GroupId| names.group_name(id);
    let opt = |id: Option<AgentId>| id.map(a).unwrap_or_default();
    let (conversation, agent, detail) = match event {
        Event::Opened { conversation, customer, channel, group } => (
            Some(*conversation),
            None,
            D::Opened(pb::event::Opened {
                customer: names.customer_name(*customer),
                channel: channel.as_str().to_owned(),
                group: g(*group),
            }),
        ),
        Event::Queued { conversation, group, pinned_to } => (
            Some(*conversation),
            *pinned_to,
            D::Queued(pb::event::Queued { group: g(*group), pinned_to: opt(*pinned_to) }),
        ),
        Event::Offered { conversation, agent } => {
            (Some(*conversation), Some(*agent), D::Offered(pb::event::Offered { agent: a(*agent) }))
        }
        Event::Assigned { conversation, agent, group, via, waited_ms } => (
            Some(*conversation),
            Some(*agent),
            D::Assigned(pb::event::Assigned {
                agent: a(*agent),
                group: g(*group),
                via: convert::snake(via),
                waited_ms: *waited_ms,
            }),
        ),
        Event::Transferred { conversation, from, to, left_queue } => {
            let (to_agent, to_group) = match to {
                Target::Agent(x) => (a(*x), String::new()),
                Target::Group { group, .. } => (String::new(), g(*group)),
            };
            let (left_group, left_waited_ms) =
                left_queue.map(|(group, ms)| (g(group), ms)).unwrap_or_default();
            (
                Some(*conversation),
                *from,
                D::Transferred(pb::event::Transferred {
                    from_agent: opt(*from),
                    to_agent,
                    to_group,
                    left_group,
                    left_waited_ms,
                }),
            )
        }
        Event::Ended { conversation, group, cause, agent, from, waited_ms } => (
            Some(*conversation),
            *agent,
            D::Ended(pb::event::Ended {
                group: g(*group),
                cause: convert::snake(cause),
                agent: opt(*agent),
                from_state: convert::snake(from),
                waited_ms: *waited_ms,
            }),
        ),
        Event::Rated { conversation, score, credited } => (
            Some(*conversation),
            None,
            D::Rated(pb::event::Rated {
                score: u32::from(*score),
                credited_agents: credited.iter().copied().map(a).collect(),
            }),
        ),
        Event::UnrepliedAlert { conversation, notify } => (
            Some(*conversation),
            None,
            D::UnrepliedAlert(pb::event::UnrepliedAlert {
                notify: notify.iter().copied().map(a).collect(),
            }),
        ),
        Event::AgentStatusChanged { agent, from, to, cause } => (
            None,
            Some(*agent),
            D::AgentStatusChanged(pb::event::AgentStatusChanged {
                agent: a(*agent),
                from_status: convert::snake(from),
                to_status: convert::snake(to),
                cause: convert::snake(cause),
            }),
        ),
        Event::OfferMissed { conversation, agent, reason } => (
            Some(*conversation),
            Some(*agent),
            D::OfferMissed(pb::event::OfferMissed {
                agent: a(*agent),
                reason: convert::snake(reason),
            }),
        ),
        Event::FirstResponse { conversation, agent, group, since_opened_ms, since_assigned_ms } => {
            (
                Some(*conversation),
                Some(*agent),
                D::FirstResponse(pb::event::FirstResponse {
                    agent: a(*agent),
                    group: g(*group),
                    since_opened_ms: *since_opened_ms,
                    since_assigned_ms: *since_assigned_ms,
                }),
            )
        }
    };
    let (kind, json) = detail_json(&detail);
    pb::Event {
        cursor: 0,
        at: Some(convert::timestamp(now)),
        r#type: kind.to_owned(),
        conversation: conversation.map(|c| names.conversation_name(c)).unwrap_or_default(),
        agent: agent.map(a).unwrap_or_default(),
        detail_json: json.to_string(),
        detail: Some(detail),
    }
}

/// The event's type and its deprecated `detail_json`: the typed fields as one JSON object.
fn detail_json(detail: &D) -> (&'static str, Value) {
    match detail {
        D::Opened(d) => {
            ("opened", json!({"customer": d.customer, "channel": d.channel, "group": d.group}))
        }
        D::Queued(d) => ("queued", json!({"group": d.group, "pinned_to": d.pinned_to})),
        D::Offered(d) => ("offered", json!({"agent": d.agent})),
        D::Assigned(d) => (
            "assigned",
            json!({"agent": d.agent, "group": d.group, "via": d.via, "waited_ms": d.waited_ms}),
        ),
        D::Transferred(d) => (
            "transferred",
            json!({"from_agent": d.from_agent, "to_agent": d.to_agent, "to_group": d.to_group,
                   "left_group": d.left_group, "left_waited_ms": d.left_waited_ms}),
        ),
        D::Ended(d) => (
            "ended",
            json!({"group": d.group, "cause": d.cause, "agent": d.agent,
                   "from_state": d.from_state, "waited_ms": d.waited_ms}),
        ),
        D::Rated(d) => ("rated", json!({"score": d.score, "credited_agents": d.credited_agents})),
        D::UnrepliedAlert(d) => ("unreplied_alert", json!({"notify": d.notify})),
        D::AgentStatusChanged(d) => (
            "agent_status_changed",
            json!({"agent": d.agent, "from_status": d.from_status, "to_status": d.to_status,
                   "cause": d.cause}),
        ),
        D::OfferMissed(d) => ("offer_missed", json!({"agent": d.agent, "reason": d.reason})),
        D::FirstResponse(d) => (
            "first_response",
            json!({"agent": d.agent, "group": d.group, "since_opened_ms": d.since_opened_ms,
                   "since_assigned_ms": d.since_assigned_ms}),
        ),
    }
}
