//! Matching: who gets what, and when. Every mutation of the router marks the agents and
//! groups it touched; `settle` dispatches them until nothing more can move, which is what
//! keeps work conserved after every step.

use super::aging::Effective;
use super::{Group, Router};
use crate::ids::{AgentId, ConversationId, GroupId};
use crate::queue::QueueKey;
use crate::router::Effect;
use crate::time::Timestamp;

impl Router {
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
        let g = &self.groups[&group];
        let agent = if self.serves(group) { self.choose(g, &declined) } else { None };
        match agent {
            Some(agent) => {
                self.groups.get_mut(&group).expect("group exists").round_robin_last = Some(agent);
                self.push(now, conv, agent, (group, key), declined, out);
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
            if !a.can_push() {
                return;
            }
            let pinned = a.pinned.iter().find(|(_, c)| {
                let p = &self.placements[c];
                self.serves(p.group()) && !p.declined().contains(&id)
            });
            let best = pinned.map(|(_, c)| c).or_else(|| {
                a.groups
                    .iter()
                    .filter(|g| self.serves(**g))
                    .filter_map(|g| self.groups.get(g))
                    .flat_map(|g| {
                        let own = g
                            .queue
                            .iter()
                            .find(|(_, c)| !self.placements[c].declined().contains(&id));
                        let widened = g.overflow.iter().find(|(_, c)| {
                            let p = &self.placements[c];
                            self.serves(p.group()) && !p.declined().contains(&id)
                        });
                        [own, widened].into_iter().flatten().map(|(_, c)| {
                            (Effective::at(&g.policy, self.placements[&c].key(), now), c)
                        })
                    })
                    .min()
                    .map(|(_, c)| c)
            });
            let Some(conv) = best else { return };
            let declined = self.placements[&conv].declined().to_vec();
            let (group, key) = self.take(conv);
            self.push(now, conv, id, (group, key), declined, out);
        }
    }

    /// Feeds a group's waiting conversations to its available agents, chosen by strategy.
    pub(super) fn dispatch_group(&mut self, now: Timestamp, id: GroupId, out: &mut Vec<Effect>) {
        loop {
            let Some(g) = self.groups.get(&id) else {
                return;
            };
            if g.available.is_empty() || !self.serves(id) {
                return;
            }
            let own = g.queue.iter().find_map(|(k, c)| {
                let declined = self.placements[&c].declined();
                self.choose(g, declined).map(|a| (k, c, a))
            });
            // Conversations of other groups past a step naming this one, by the same key.
            let widened = g.overflow.iter().find_map(|(k, c)| {
                let p = &self.placements[&c];
                if !self.serves(p.group()) {
                    return None;
                }
                self.choose(g, p.declined()).map(|a| (k, c, a))
            });
            let choice = match (own, widened) {
                (Some(o), Some(w)) => Some(if w.0 < o.0 { w } else { o }),
                (o, w) => o.or(w),
            };
            let Some((_, conv, agent)) = choice else { return };
            let declined = self.placements[&conv].declined().to_vec();
            let (group, key) = self.take(conv);
            self.groups.get_mut(&id).expect("group exists").round_robin_last = Some(agent);
            self.push(now, conv, agent, (group, key), declined, out);
        }
    }

    /// Picks among the group's available agents by its strategy; ties break deterministically.
    pub(super) fn choose(&self, g: &Group, declined: &[AgentId]) -> Option<AgentId> {
        g.available.best(g.policy.strategy, g.round_robin_last, declined)
    }
}
