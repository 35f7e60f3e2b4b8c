//! A customer's dedicated agent changed while its conversation waits (SPEC §3, "Dedicated
//! agent"): the waiting conversation follows the customer's new setting, as if it had been
//! routed with it when it entered its queue.

use super::{AgentStatus, Effect, Pin, PinKind, Placement, Router, explain};
use crate::ids::{AgentId, ConversationId, GroupId};
use crate::time::Timestamp;

impl Router {
    /// The customer of a waiting conversation now has `dedicated` as its dedicated agent
    /// (or none). A conversation that waits for an agent the customer no longer has as its
    /// dedicated one falls back to its group, keeping its place. With a new dedicated agent
    /// signed in (and not one who declined it), the conversation goes to that agent at once
    /// when it can take it, and otherwise waits for it until the affinity timeout counted
    /// from its entry into the queue; once that has passed, it stays in its group. Offered or
    /// assigned conversations are not moved: the change is read by their next routing.
    pub fn reaffine(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        dedicated: Option<AgentId>,
        out: &mut Vec<Effect>,
    ) {
        let Some(Placement::Queued { group, key, pin, declined }) = self.placements.get(&conv)
        else {
            return;
        };
        let (group, key, pin) = (*group, *key, *pin);
        let declined = declined.clone();
        let pinned_dedicated = pin.is_some_and(|p| p.kind == PinKind::Dedicated);
        let target = dedicated.filter(|a| {
            !declined.contains(a)
                && self.agents.get(a).is_some_and(|a| a.status != AgentStatus::Offline)
        });
        let Some(agent) = target else {
            if pinned_dedicated {
                self.unpin(conv, out);
                self.settle(now, out);
            }
            return;
        };
        if pin.is_some_and(|p| p.agent == agent && p.kind == PinKind::Dedicated) {
            return;
        }
        let timeout = self.groups[&group].policy.dedicated_timeout;
        let until = key.entered_at() + timeout;
        if self.agents[&agent].can_push() && self.serves(group) {
            self.take(conv);
            let decision = self.affinity_decision(now, group, agent, PinKind::Dedicated);
            self.push(now, conv, agent, (group, key), declined, decision, out);
        } else if until > now && !timeout.is_zero() {
            self.take(conv);
            let pin = Pin { agent, until, kind: PinKind::Dedicated };
            self.place_queued(conv, group, key, Some(pin), declined, out);
        } else if pinned_dedicated {
            self.unpin(conv, out);
        } else {
            // Its wait for a dedicated agent would be over already: it stays where it is.
            return;
        }
        self.settle(now, out);
    }

    /// Why a conversation went straight to the agent its customer prefers.
    pub(super) fn affinity_decision(
        &self,
        now: Timestamp,
        group: GroupId,
        agent: AgentId,
        kind: PinKind,
    ) -> explain::Decision {
        explain::Decision {
            at: now,
            group,
            basis: explain::Basis::Affinity(kind),
            chosen: explain::Figures::of(&self.agents[&agent], group),
            runner_up: None,
            tie_break: None,
        }
    }
}
