//! Matching: who gets what, and when. Every mutation of the router marks the agents and
//! groups it touched; `settle` dispatches them until nothing more can move, which is what
//! keeps work conserved after every step.
//!
//! Whether one agent may take one waiting conversation now is decided in one place,
//! [`Router::refusal`]: dispatch skips exactly the pairs it refuses, and Explain
//! (`explain.rs`) reports its reasons, so the two cannot drift.

use super::aging::Effective;
use super::explain::{Basis, Decision, Figures, Refusal, TieBreak};
use super::{Agent, AgentStatus, Placement, Router, available};
use crate::ids::{AgentId, ConversationId, GroupId};
use crate::queue::QueueKey;
use crate::router::Effect;
use crate::time::Timestamp;

/// A waiting conversation as the matching predicate sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Waiting<'a> {
    pub group: GroupId,
    pub key: QueueKey,
    /// The agent it waits for in particular.
    pub pin: Option<AgentId>,
    pub declined: &'a [AgentId],
    /// Groups (besides its own) whose agents its steps admit now.
    pub widened: &'a [GroupId],
    /// The proficiency level its own group's agents need now (`None`: any).
    pub min_level: Option<u8>,
}

impl Router {
    /// A queued conversation as [`Router::refusal`] takes it.
    pub(super) fn waiting(&self, conv: ConversationId) -> Option<Waiting<'_>> {
        match self.placements.get(&conv)? {
            Placement::Queued { group, key, pin, declined } => Some(Waiting {
                group: *group,
                key: *key,
                pin: pin.map(|p| p.agent),
                declined,
                widened: self.widened_groups(conv),
                min_level: self.groups.get(group).and_then(|g| {
                    g.policy.min_level_after(self.widened.get(&conv).map_or(0, |w| w.reached))
                }),
            }),
            _ => None,
        }
    }

    /// Why the agent cannot take pushed work at all now (status, capacity, wrap-up), or
    /// `None` when it can.
    pub(super) fn agent_refusal(a: &Agent) -> Option<Refusal> {
        match a.status {
            AgentStatus::Online => {}
            AgentStatus::Offline => return Some(Refusal::Offline),
            other => return Some(Refusal::NotOnline(other)),
        }
        if a.has_room() {
            return None;
        }
        let (load, capacity) = (a.load(), a.capacity);
        let serving = a.assigned.len() + a.offered.len();
        Some(match a.wrapping.values().map(|w| w.until).min() {
            Some(until) if serving < capacity as usize => {
                Refusal::WrappingUp { load, capacity, until }
            }
            _ => Refusal::AtCapacity { load, capacity },
        })
    }

    /// Why `agent` may not take the waiting conversation `w` now, or `None` when it may: the
    /// one predicate of matching. Agent-wide reasons come first, then the conversation's.
    pub(super) fn refusal(&self, agent: AgentId, w: &Waiting<'_>) -> Option<Refusal> {
        let Some(a) = self.agents.get(&agent) else { return Some(Refusal::Offline) };
        if let Some(why) = Self::agent_refusal(a) {
            return Some(why);
        }
        let pushes = |g: &GroupId| self.groups.get(g).is_some_and(|g| g.policy.offer.pushes());
        // Pushes and is open (business hours, `hours.rs`).
        let serves = |g: &GroupId| pushes(g) && !self.closed(*g);
        let outside = |g: GroupId| Refusal::OutsideHours { group: g, until: self.hours_change(g) };
        if !pushes(&w.group) {
            return Some(Refusal::GroupPulls(w.group));
        }
        if self.closed(w.group) {
            return Some(outside(w.group));
        }
        match w.pin {
            Some(p) if p != agent => return Some(Refusal::WaitsForAgent(p)),
            Some(_) => {}
            None => {
                let via = || a.groups.iter().filter(|g| **g == w.group || w.widened.contains(g));
                let Some(&first) = via().next() else {
                    return Some(Refusal::NotAdmitted { from: self.admits_from(a, w) });
                };
                if !via().any(pushes) {
                    return Some(Refusal::GroupPulls(first));
                }
                if !via().any(serves) {
                    let closed = via().find(|g| pushes(g)).copied().unwrap_or(first);
                    return Some(outside(closed));
                }
                // Through its own group only at the level the conversation needs now; a group
                // its steps admit takes it at any level.
                let level = a.level(w.group);
                if let Some(needs) = w.min_level.filter(|n| level < *n)
                    && !a.groups.iter().any(|g| w.widened.contains(g) && serves(g))
                {
                    return Some(Refusal::BelowLevel {
                        level,
                        needs,
                        from: self.lowered_for(level, w),
                    });
                }
            }
        }
        if w.declined.contains(&agent) {
            return Some(Refusal::Declined);
        }
        None
    }

    /// When a step of the conversation's group first lowers the level it needs to `level`.
    fn lowered_for(&self, level: u8, w: &Waiting<'_>) -> Option<Timestamp> {
        let g = self.groups.get(&w.group)?;
        g.policy
            .steps
            .iter()
            .find(|s| s.min_level.is_some_and(|l| l <= level))
            .map(|s| w.key.entered_at() + s.after)
    }

    /// When a step of the conversation's group first admits one of the agent's groups (not
    /// yet reached: the agent is in no group it stands in).
    fn admits_from(&self, a: &Agent, w: &Waiting<'_>) -> Option<Timestamp> {
        let g = self.groups.get(&w.group)?;
        g.policy
            .steps
            .iter()
            .filter(|s| a.groups.contains(&s.group))
            .map(|s| w.key.entered_at() + s.after)
            .min()
    }

    /// Hands a conversation entering a group straight to an available agent when there is
    /// one (other than those in `declined`), so it never shows as waiting; otherwise queues
    /// it. At rest every conversation already waiting was declined by every available agent,
    /// so none is overtaken.
    pub(super) fn place_or_push(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        group: GroupId,
        key: QueueKey,
        declined: Vec<AgentId>,
        out: &mut Vec<Effect>,
    ) {
        let min_level = self.groups.get(&group).and_then(|g| g.policy.min_level);
        let w = Waiting { group, key, pin: None, declined: &declined, widened: &[], min_level };
        match self.choose(now, group, &w) {
            Some((agent, decision)) => {
                self.groups.get_mut(&group).expect("group exists").round_robin_last = Some(agent);
                self.push(now, conv, agent, (group, key), declined, decision, out);
            }
            None => self.place_queued(conv, group, key, None, declined, out),
        }
    }

    /// Dispatches every touched agent and group until nothing more can move.
    pub(super) fn settle(&mut self, now: Timestamp, out: &mut Vec<Effect>) {
        loop {
            if let Some(c) = self.dirty_limits.pop_first() {
                self.limit(now, c, out);
            } else if let Some(c) = self.dirty_steps.pop_first() {
                self.widen(now, c);
            } else if let Some(a) = self.dirty_agents.pop_first() {
                self.dispatch_agent(now, a, out);
            } else if let Some(g) = self.dirty_groups.pop_first() {
                self.dispatch_group(now, g, out);
            } else {
                break;
            }
        }
    }

    /// Feeds an agent with room: conversations waiting for it first, then the best waiting
    /// conversation across its groups (effective priority at `now`, then longest wait).
    pub(super) fn dispatch_agent(&mut self, now: Timestamp, id: AgentId, out: &mut Vec<Effect>) {
        loop {
            let Some(a) = self.agents.get(&id) else {
                return;
            };
            // A shortcut of `refusal`'s first check.
            if !a.can_push() {
                return;
            }
            let ok = |c: &ConversationId| {
                self.waiting(*c).is_some_and(|w| self.refusal(id, &w).is_none())
            };
            let pinned = a.pinned.iter().map(|(_, c)| c).find(ok);
            let basis = match pinned.map(|c| &self.placements[&c]) {
                Some(Placement::Queued { pin: Some(p), .. }) => Basis::Affinity(p.kind),
                _ => Basis::FreedAgent,
            };
            let best = pinned.or_else(|| {
                a.groups
                    .iter()
                    .filter(|g| self.serves(**g))
                    .filter_map(|g| self.groups.get(g))
                    // A shortcut: `refusal` admits nothing through a group that pulls.
                    .filter(|g| g.policy.offer.pushes())
                    .flat_map(|g| {
                        let own = g.queue.iter().map(|(_, c)| c).find(ok);
                        let widened = g.overflow.iter().map(|(_, c)| c).find(ok);
                        [own, widened]
                            .into_iter()
                            .flatten()
                            .map(|c| (Effective::at(&g.policy, self.placements[&c].key(), now), c))
                    })
                    .min()
                    .map(|(_, c)| c)
            });
            let Some(conv) = best else { return };
            let group = self.placements[&conv].group();
            let decision = Decision {
                at: now,
                group,
                basis,
                chosen: Figures::of(a, group),
                runner_up: None,
                tie_break: None,
            };
            let declined = self.placements[&conv].declined().to_vec();
            let (group, key) = self.take(conv);
            self.push(now, conv, id, (group, key), declined, decision, out);
        }
    }

    /// Feeds a group's waiting conversations to its available agents, chosen by strategy.
    pub(super) fn dispatch_group(&mut self, now: Timestamp, id: GroupId, out: &mut Vec<Effect>) {
        loop {
            let Some(g) = self.groups.get(&id) else {
                return;
            };
            // A shortcut: `refusal` admits no one through a group that pulls or is closed.
            if g.available.is_empty() || !self.serves(id) {
                return;
            }
            let pick = |(k, c): (QueueKey, ConversationId)| {
                let w = self.waiting(c)?;
                self.choose(now, id, &w).map(|a| (k, c, a))
            };
            let own = g.queue.iter().find_map(pick);
            // Conversations of other groups past a step naming this one, by the same key.
            let widened = g.overflow.iter().find_map(pick);
            let choice = match (own, widened) {
                (Some(o), Some(w)) => Some(if w.0 < o.0 { w } else { o }),
                (o, w) => o.or(w),
            };
            let Some((_, conv, (agent, decision))) = choice else { return };
            let declined = self.placements[&conv].declined().to_vec();
            let (group, key) = self.take(conv);
            self.groups.get_mut(&id).expect("group exists").round_robin_last = Some(agent);
            self.push(now, conv, agent, (group, key), declined, decision, out);
        }
    }

    /// Picks among the available agents of group `gid` that [`Router::refusal`] admits, by
    /// the group's strategy (ties break deterministically), with the record of the choice:
    /// the figures compared against the agent the strategy would have taken next.
    pub(super) fn choose(
        &self,
        now: Timestamp,
        gid: GroupId,
        w: &Waiting<'_>,
    ) -> Option<(AgentId, Decision)> {
        let g = &self.groups[&gid];
        let strategy = g.policy.strategy;
        let ok = |a: AgentId| self.refusal(a, w).is_none();
        let agent = g.available.best(strategy, g.round_robin_last, ok)?;
        let runner_up = g.available.best(strategy, Some(agent), |a| a != agent && ok(a));
        let entry = |id: AgentId| {
            let a = &self.agents[&id];
            (id, available::rank(a), a.level(gid))
        };
        let tie_break = match runner_up {
            Some(r) => available::decided_by(strategy, entry(agent), entry(r)),
            None => TieBreak::OnlyCandidate,
        };
        Some((
            agent,
            Decision {
                at: now,
                group: gid,
                basis: Basis::Strategy(strategy),
                chosen: Figures::of(&self.agents[&agent], gid),
                runner_up: runner_up.map(|r| (r, Figures::of(&self.agents[&r], gid))),
                tie_break: Some(tie_break),
            },
        ))
    }
}
