//! The router's structural invariants, checked by unit and property tests.

use rustc_hash::FxHashMap;

use super::{AgentStatus, Placement, Router, Timer, available};
use crate::ids::GroupId;
use crate::queue::QueueKey;

impl Router {
    /// Checks every structural invariant; used by property tests.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let mut counted = 0;
        for (id, a) in &self.agents {
            if a.load() > a.capacity {
                return Err(format!(
                    "agent {id} holds {} conversations over capacity {}",
                    a.load(),
                    a.capacity
                ));
            }
            counted += a.assigned.len() + a.offered.len() + a.pinned.len();
            for (key, c) in a.pinned.iter() {
                match self.placements.get(&c) {
                    Some(Placement::Queued { key: k, pin: Some(p), .. })
                        if *k == key && p.agent == *id => {}
                    other => return Err(format!("{c} pinned to {id} but placed {other:?}")),
                }
            }
            for c in &a.assigned {
                if !matches!(self.placements.get(c), Some(Placement::Assigned { agent, .. }) if agent == id)
                {
                    return Err(format!(
                        "{c} in {id}'s assigned set but placed {:?}",
                        self.placements.get(c)
                    ));
                }
            }
            for c in &a.offered {
                if !matches!(self.placements.get(c), Some(Placement::Offered { agent, .. }) if agent == id)
                {
                    return Err(format!(
                        "{c} in {id}'s offered set but placed {:?}",
                        self.placements.get(c)
                    ));
                }
            }
            for g in &a.groups {
                if let Some(group) = self.groups.get(g) {
                    if !group.members.contains(id) {
                        return Err(format!("{id} names {g} but is not a member"));
                    }
                    if group.available.contains(*id) != a.can_push() {
                        return Err(format!("{id}'s availability in {g} is stale"));
                    }
                }
            }
            for (c, w) in &a.wrapping {
                if !self.timers.contains(&(w.until, Timer::WrapUp(*id, *c))) {
                    return Err(format!("{id}'s wrap-up of {c} has no deadline"));
                }
                if self.placements.contains_key(c) {
                    return Err(format!("{id} wraps up {c}, which is still placed"));
                }
            }
            // Work conservation for conversations waiting for this agent in particular.
            if a.can_push() {
                for (_, c) in a.pinned.iter() {
                    let p = &self.placements[&c];
                    if self.serves(p.group()) && !p.declined().contains(id) {
                        return Err(format!(
                            "{id} could take {c}, which waits for it, but is idle"
                        ));
                    }
                }
            }
        }
        let mut refs: FxHashMap<GroupId, usize> = FxHashMap::default();
        for p in self.placements.values() {
            *refs.entry(p.group()).or_default() += 1;
        }
        for (gid, g) in &self.groups {
            if g.refs != refs.get(gid).copied().unwrap_or(0) {
                return Err(format!(
                    "group {gid} counts {} placements, has {:?}",
                    g.refs,
                    refs.get(gid)
                ));
            }
            counted += g.queue.len();
            let mut last: Option<QueueKey> = None;
            for (key, c) in g.queue.iter() {
                if last.is_some_and(|l| l >= key) {
                    return Err(format!("queue of {gid} out of order at {c}"));
                }
                last = Some(key);
                match self.placements.get(&c) {
                    Some(Placement::Queued { group, key: k, pin: None, .. })
                        if group == gid && g.queue_key(*k) == key => {}
                    other => return Err(format!("{c} queued in {gid} but placed {other:?}")),
                }
                // Work conservation: no available agent of the group that dispatch's one
                // predicate admits (not declined, at the level it needs now) stays idle.
                if self.serves(*gid)
                    && let Some(w) = self.waiting(c)
                    && let Some(idle) = g.available.iter().find(|a| self.refusal(*a, &w).is_none())
                {
                    return Err(format!("agent {idle} is idle while {c} waits in {gid}"));
                }
            }
            for (key, c) in g.overflow.iter() {
                match self.placements.get(&c) {
                    Some(Placement::Queued { group, key: k, pin: None, .. })
                        if group != gid && g.queue_key(*k) == key && self.widened_to(c, *gid) => {}
                    other => return Err(format!("{c} in {gid}'s overflow but placed {other:?}")),
                }
                if self.serves(*gid)
                    && let Some(w) = self.waiting(c)
                    && let Some(idle) = g.available.iter().find(|a| self.refusal(*a, &w).is_none())
                {
                    return Err(format!(
                        "agent {idle} is idle while {c}, past a step naming {gid}, waits"
                    ));
                }
            }
            let expected: Vec<_> = g
                .members
                .iter()
                .filter(|a| self.agents[a].can_push())
                .map(|a| (*a, available::rank(&self.agents[a]), self.agents[a].level(*gid)))
                .collect();
            if !g.available.holds_exactly(&expected) {
                return Err(format!("availability index of {gid} is stale"));
            }
            let signed_in =
                g.members.iter().filter(|a| self.agents[a].status != AgentStatus::Offline).count();
            if signed_in != g.signed_in {
                return Err(format!(
                    "group {gid} counts {} signed in, has {signed_in}",
                    g.signed_in
                ));
            }
        }
        if counted != self.placements.len() {
            return Err(format!(
                "{} placements but {counted} conversations in places",
                self.placements.len()
            ));
        }
        let mut standing = 0;
        for (c, w) in &self.widened {
            if !matches!(self.placements.get(c), Some(Placement::Queued { pin: None, .. })) {
                return Err(format!("{c} has steps but is not waiting in its group"));
            }
            if let Some(at) = w.next
                && !self.timers.contains(&(at, Timer::Step(*c)))
            {
                return Err(format!("{c}'s next step at {at:?} has no deadline"));
            }
            standing += w.groups.len();
        }
        if standing != self.groups.values().map(|g| g.overflow.len()).sum::<usize>() {
            return Err(format!("overflow queues hold other than the {standing} widened entries"));
        }
        for (at, t) in &self.timers {
            if let Timer::Step(c) = t
                && self.widened.get(c).and_then(|w| w.next) != Some(*at)
            {
                return Err(format!("step deadline of {c} at {at:?} is stale"));
            }
            if let Timer::WrapUp(agent, c) = t
                && self.agents.get(agent).and_then(|a| a.wrapping.get(c)).map(|w| w.until)
                    != Some(*at)
            {
                return Err(format!("wrap-up deadline of {agent} for {c} at {at:?} is stale"));
            }
        }
        self.check_limits()?;
        for c in self.decisions.keys() {
            if !matches!(
                self.placements.get(c),
                Some(Placement::Offered { .. } | Placement::Assigned { .. })
            ) {
                return Err(format!("a decision is kept for {c}, which no agent holds"));
            }
        }
        self.check_hours()?;
        let signed_in = self.agents.values().filter(|a| a.status != AgentStatus::Offline).count();
        if signed_in != self.signed_in {
            return Err(format!("router counts {} signed in, has {signed_in}", self.signed_in));
        }
        Ok(())
    }
}
