//! Explain (issue 14 item 8): the router's explanations (`switchboard_core::router::explain`)
//! as the API's messages, every reference a resource name.

use switchboard_core::router::PinKind;
use switchboard_core::router::explain::{
    AgentExplanation, Basis, ConversationExplanation, Decision, Figures, Refusal, TieBreak, Verdict,
};
use switchboard_core::{AgentId, ConversationId};
use switchboard_proto::v1 as pb;

use super::settings::strategy_to_pb;
use super::{duration, status_to_pb, timestamp};
use crate::apply::Names;

/// One agent's verdict on one waiting conversation. A reason the core adds is a new arm
/// here and a new `WaitReason` value at the end of the enum.
pub fn verdict(s: &dyn Names, v: &Verdict) -> pb::Verdict {
    use pb::WaitReason as R;
    let mut out = pb::Verdict::default();
    let refusal = match v {
        Verdict::TakesOthersFirst { ahead } => {
            out.reason = R::TakesOthersFirst as i32;
            out.ahead = ahead.iter().map(|c| s.conversation_name(*c)).collect();
            return out;
        }
        Verdict::CannotTake(r) => *r,
    };
    let reason = match refusal {
        Refusal::Offline => R::Offline,
        Refusal::NotOnline(status) => {
            out.status = status_to_pb(status) as i32;
            R::NotOnline
        }
        Refusal::AtCapacity { load, capacity } => {
            (out.load, out.capacity) = (load, capacity);
            R::AtCapacity
        }
        Refusal::WrappingUp { load, capacity, until } => {
            (out.load, out.capacity) = (load, capacity);
            out.until_time = Some(timestamp(until));
            R::WrappingUp
        }
        Refusal::GroupPulls(g) => {
            out.group = s.group_name(g);
            R::GroupPulls
        }
        Refusal::WaitsForAgent(a) => {
            out.waits_for_agent = s.agent_name(a);
            R::WaitsForAgent
        }
        Refusal::NotAdmitted { from } => {
            out.until_time = from.map(timestamp);
            R::NotAdmitted
        }
        Refusal::Declined => R::Declined,
        Refusal::OutsideHours { group, until } => {
            out.group = s.group_name(group);
            out.until_time = until.map(timestamp);
            R::OutsideHours
        }
        Refusal::BelowLevel { level, needs, from } => {
            (out.level, out.needs_level) = (level.into(), needs.into());
            out.until_time = from.map(timestamp);
            R::BelowLevel
        }
    };
    out.reason = reason as i32;
    out
}

fn pin_kind(k: PinKind) -> pb::DecisionBasis {
    match k {
        PinKind::Dedicated => pb::DecisionBasis::DedicatedAgent,
        PinKind::LastAgent => pb::DecisionBasis::LastAgent,
    }
}

fn figures(f: &Figures) -> pb::AgentFigures {
    pb::AgentFigures {
        load: f.load,
        capacity: f.capacity,
        proficiency: u32::from(f.level),
        idle_since_time: Some(timestamp(f.idle_since)),
    }
}

fn decision(s: &dyn Names, d: &Decision) -> pb::Decision {
    let (basis, strategy) = match d.basis {
        Basis::Strategy(x) => (pb::DecisionBasis::Strategy, strategy_to_pb(x)),
        Basis::FreedAgent => (pb::DecisionBasis::FreedAgent, pb::Strategy::Unspecified),
        Basis::Affinity(k) => (pin_kind(k), pb::Strategy::Unspecified),
        Basis::Picked => (pb::DecisionBasis::Picked, pb::Strategy::Unspecified),
        Basis::Transferred => (pb::DecisionBasis::Transferred, pb::Strategy::Unspecified),
    };
    let tie_break = d.tie_break.map_or(pb::TieBreak::Unspecified, |t| match t {
        TieBreak::OnlyCandidate => pb::TieBreak::OnlyCandidate,
        TieBreak::Level => pb::TieBreak::Proficiency,
        TieBreak::Occupancy => pb::TieBreak::Occupancy,
        TieBreak::IdleTime => pb::TieBreak::IdleTime,
        TieBreak::AgentId => pb::TieBreak::AgentOrder,
        TieBreak::Turn => pb::TieBreak::Turn,
    });
    pb::Decision {
        decide_time: Some(timestamp(d.at)),
        group: s.group_name(d.group),
        basis: basis as i32,
        strategy: strategy as i32,
        chosen: Some(figures(&d.chosen)),
        runner_up: d.runner_up.map(|(a, _)| s.agent_name(a)).unwrap_or_default(),
        runner_up_figures: d.runner_up.map(|(_, f)| figures(&f)),
        tie_break: tie_break as i32,
    }
}

pub fn conversation(
    s: &dyn Names,
    id: ConversationId,
    x: &ConversationExplanation,
) -> pb::ConversationExplanation {
    use pb::conversation_explanation::Explanation;
    let explanation = match x {
        ConversationExplanation::Held(h) => Explanation::Held(pb::HeldExplanation {
            agent: s.agent_name(h.agent),
            group: s.group_name(h.group),
            offer_expire_time: h.offer_expires.map(timestamp),
            decision: h.decision.as_ref().map(|d| decision(s, d)),
        }),
        ConversationExplanation::Waiting(w) => Explanation::Waiting(pb::WaitingExplanation {
            group: s.group_name(w.group),
            priority: u32::from(w.priority),
            enter_time: Some(timestamp(w.entered_at)),
            position: w.position.map_or(0, |p| u32::try_from(p).unwrap_or(u32::MAX)),
            pinned_agent: w.pin.map(|p| s.agent_name(p.agent)).unwrap_or_default(),
            pin_kind: w.pin.map_or(pb::DecisionBasis::Unspecified, |p| pin_kind(p.kind)) as i32,
            pin_expire_time: w.pin.map(|p| timestamp(p.until)),
            steps_reached: u32::try_from(w.steps_reached).unwrap_or(u32::MAX),
            step_groups: w.widened.iter().map(|g| s.group_name(*g)).collect(),
            next_step_time: w.next_step.map(|n| timestamp(n.at)),
            next_step_group: w.next_step.map(|n| s.group_name(n.group)).unwrap_or_default(),
            next_step_min_level: w.next_step.and_then(|n| n.min_level).map_or(0, u32::from),
            estimated_wait: w.wait.map(duration),
            agents: w
                .agents
                .iter()
                .map(|v| pb::AgentVerdict {
                    agent: s.agent_name(v.agent),
                    verdict: Some(verdict(s, &v.verdict)),
                })
                .collect(),
        }),
    };
    pb::ConversationExplanation {
        conversation: s.conversation_name(id),
        explanation: Some(explanation),
    }
}

pub fn agent(s: &dyn Names, id: AgentId, x: &AgentExplanation) -> pb::AgentExplanation {
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    pb::AgentExplanation {
        agent: s.agent_name(id),
        status: status_to_pb(x.status) as i32,
        load: x.load,
        capacity: x.capacity,
        assigned: count(x.assigned),
        offered: count(x.offered),
        wrap_ups: x
            .wrap_ups
            .iter()
            .map(|(c, until)| pb::WrapUpSlot {
                conversation: s.conversation_name(*c),
                end_time: Some(timestamp(*until)),
            })
            .collect(),
        refusal: x.refusal.map(|r| verdict(s, &Verdict::CannotTake(r))),
        groups: x
            .groups
            .iter()
            .map(|g| pb::GroupWaiting {
                group: s.group_name(g.group),
                waiting: count(g.waiting),
                step_waiting: count(g.widened),
                pushes: g.pushes,
            })
            .collect(),
        waiting_total: count(x.waiting_total),
        waiting: x
            .waiting
            .iter()
            .map(|(c, v)| pb::ConversationVerdict {
                conversation: s.conversation_name(*c),
                verdict: Some(verdict(s, v)),
            })
            .collect(),
    }
}
