//! Agent status and the policies that follow from it (SPEC §3): what signing out does to
//! offers, pins and assigned conversations (grace period, then the front of the queue), and
//! the not-responding policy after missed offers.

use super::{AgentStatus, Effect, PinKind, Placement, Release, Router, StatusCause, Timer};
use crate::error::{Error, Result};
use crate::ids::{AgentId, ConversationId};
use crate::time::Timestamp;

impl Router {
    /// Changes an agent's status. A supervisor can never take an agent out of `offline`.
    pub fn set_status(
        &mut self,
        now: Timestamp,
        id: AgentId,
        status: AgentStatus,
        cause: StatusCause,
        out: &mut Vec<Effect>,
    ) -> Result<()> {
        let a = self.agents.get(&id).ok_or(Error::UnknownAgent(id))?;
        if cause == StatusCause::Supervisor
            && a.status == AgentStatus::Offline
            && status != AgentStatus::Offline
        {
            return Err(Error::CannotForceOnline(id));
        }
        self.change_status(now, id, status, cause, out);
        self.settle(now, out);
        Ok(())
    }

    /// A declined or expired offer: back to its place in the group, and the policy applies.
    pub(super) fn miss(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        reason: Release,
        out: &mut Vec<Effect>,
    ) {
        let Some(Placement::Offered { agent, declined, .. }) = self.placements.get(&conv).cloned()
        else {
            return;
        };
        self.release(conv, reason, out);
        let (group, key) = self.take(conv);
        let mut declined = declined;
        declined.push(agent);
        self.place_queued(conv, group, key, None, declined, out);
        let a = self.agents.get_mut(&agent).expect("offered agent exists");
        a.misses += 1;
        let policy = self.not_responding;
        if policy.after_misses > 0
            && a.misses >= policy.after_misses
            && a.status == AgentStatus::Online
        {
            self.change_status(now, agent, policy.status, StatusCause::NotResponding, out);
        }
    }

    pub(super) fn change_status(
        &mut self,
        now: Timestamp,
        id: AgentId,
        to: AgentStatus,
        cause: StatusCause,
        out: &mut Vec<Effect>,
    ) {
        let a = self.agents.get_mut(&id).expect("agent exists");
        let from = a.status;
        if from == to {
            return;
        }
        a.status = to;
        if to == AgentStatus::Online {
            a.idle_since = now;
            a.misses = 0;
        }
        let signed_in_delta = match (from, to) {
            (AgentStatus::Offline, _) => 1isize,
            (_, AgentStatus::Offline) => -1,
            _ => 0,
        };
        if signed_in_delta != 0 {
            self.signed_in = self.signed_in.wrapping_add_signed(signed_in_delta);
            for g in self.agents[&id].groups.clone() {
                if let Some(g) = self.groups.get_mut(&g) {
                    g.signed_in = g.signed_in.wrapping_add_signed(signed_in_delta);
                }
            }
        }
        out.push(Effect::StatusChanged { agent: id, from, to, cause });
        let a = self.agents.get_mut(&id).expect("agent exists");
        if from == AgentStatus::Offline
            && let Some(since) = a.offline_since.take()
        {
            self.timers.remove(&(since + self.offline_grace, Timer::Grace(id)));
        }
        // Pins that no longer hold: last-agent pins need the agent online; dedicated pins
        // only need it signed in.
        let a = &self.agents[&id];
        let unpin: Vec<ConversationId> = a
            .pinned
            .iter()
            .filter(|(_, c)| match &self.placements[c] {
                Placement::Queued { pin: Some(p), .. } => {
                    to == AgentStatus::Offline
                        || (to != AgentStatus::Online && p.kind == PinKind::LastAgent)
                }
                _ => false,
            })
            .map(|(_, c)| c)
            .collect();
        for c in unpin {
            self.unpin(c, out);
        }
        if to == AgentStatus::Offline {
            let offered: Vec<ConversationId> = self.agents[&id].offered.iter().copied().collect();
            for c in offered {
                self.withdraw(c, Release::AgentOffline, out);
            }
            if !self.agents[&id].assigned.is_empty() {
                if self.offline_grace.is_zero() {
                    self.requeue_at_front(now, id, out);
                } else {
                    self.agents.get_mut(&id).expect("agent exists").offline_since = Some(now);
                    self.timers.insert((now + self.offline_grace, Timer::Grace(id)));
                }
            }
        }
        self.refresh(id);
    }

    /// Takes an offer back without counting it against the agent: the conversation returns
    /// to its place in the group.
    pub(super) fn withdraw(
        &mut self,
        conv: ConversationId,
        reason: Release,
        out: &mut Vec<Effect>,
    ) {
        self.release(conv, reason, out);
        let declined = self.placements[&conv].declined().to_vec();
        let (group, key) = self.take(conv);
        self.place_queued(conv, group, key, None, declined, out);
    }

    /// A pinned conversation falls back to its group, keeping its place by entry time.
    pub(super) fn unpin(&mut self, conv: ConversationId, out: &mut Vec<Effect>) {
        let declined = self.placements[&conv].declined().to_vec();
        let (group, key) = self.take(conv);
        self.place_queued(conv, group, key, None, declined, out);
    }

    /// The offline policy after the grace period: every assigned conversation goes to the
    /// front of its group's queue.
    pub(super) fn requeue_at_front(&mut self, _now: Timestamp, id: AgentId, out: &mut Vec<Effect>) {
        let Some(a) = self.agents.get_mut(&id) else {
            return;
        };
        a.offline_since = None;
        let assigned: Vec<ConversationId> = a.assigned.iter().copied().collect();
        for c in assigned {
            self.release(c, Release::AgentOffline, out);
            let (group, key) = self.take(c);
            self.place_queued(c, group, key.with_front(true), None, Vec::new(), out);
        }
    }
}
