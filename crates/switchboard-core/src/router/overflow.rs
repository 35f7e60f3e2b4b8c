//! Overflow and maximum queue size (issue 14 item 2): a group's policy may cap how many
//! conversations wait in its queue (`max_waiting`) and how long one waits (`max_wait`, from
//! its entry time); past either, the conversation goes on to the overflow group's queue,
//! keeping its entry time (and so its place in line there, and its steps start over from it
//! under that group's policy), or, with no overflow group, is refused: the router lets go
//! of it and says [`Effect::Refused`]; its session ends it with cause `queue_full` and the
//! `queue_full` reply.
//!
//! - `max_waiting` is checked when a conversation *enters* a group (routed, transferred or
//!   overflowed in) and no agent can take it at once: with that many already waiting it goes
//!   on. Conversations already waiting are never pushed out by it (lowering the cap leaves
//!   them; a declined or timed-out offer goes back to its place).
//! - `max_wait` is a deadline per waiting conversation (`Timer::MaxWait`, held in `limits`,
//!   so it survives a snapshot like every other). Entering a group whose wait has already
//!   passed goes on at once unless an agent can take it.
//! - Conversations waiting for one agent in particular (pinned) and those requeued at the
//!   front after their agent went offline are exempt: they are not new work.
//!
//! The engine refuses overflow graphs with a cycle, so a chain ends; the router still stops
//! after as many hops as it has groups and refuses then. Work conservation holds: a moved
//! conversation enters its new group by [`Router::place_or_push`], and settling dispatches it.

use super::dispatch::Waiting;
use super::{Effect, Placement, Router, Timer};
use crate::ids::{AgentId, ConversationId, GroupId};
use crate::queue::QueueKey;
use crate::time::Timestamp;

/// Where a conversation entering a group ends up under the overflow and business-hours rules,
/// worked out before anything moves (so a transfer can be refused when it would end the
/// conversation): the groups it passes through, then its last stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// Each move on, in order: (from, to).
    pub hops: Vec<(GroupId, GroupId)>,
    pub stop: Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Pushed or queued in this group.
    Place(GroupId),
    /// Queued in this closed group until it opens (`when_closed = WAIT`).
    WaitClosed(GroupId),
    /// Ended by this closed group (`when_closed = END`, or OVERFLOW with nowhere to go).
    Closed(GroupId),
    /// Refused by this full (or past its wait) group with nowhere to go.
    Refused(GroupId),
}

impl Router {
    /// Places a conversation entering `group` (it is not placed anywhere): pushed or queued
    /// there, or moved on by the group's overflow rule when it is full or the wait has passed.
    pub(super) fn enter(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        group: GroupId,
        key: QueueKey,
        declined: Vec<AgentId>,
        out: &mut Vec<Effect>,
    ) {
        let entry = self.plan(now, group, key, &declined, false);
        self.follow(now, conv, key, declined, entry, out);
    }

    /// Moves a conversation (placed nowhere) past `from`'s limits: into the overflow group,
    /// or on along the chain while that one is over its limits too, or refuses it.
    pub(super) fn go_on(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        from: GroupId,
        key: QueueKey,
        declined: Vec<AgentId>,
        out: &mut Vec<Effect>,
    ) {
        let entry = self.plan(now, from, key, &declined, true);
        self.follow(now, conv, key, declined, entry, out);
    }

    /// Where a conversation entering `group` now would end up (`moving`: it is leaving
    /// `group` already). Stops after as many hops as there are groups (a loop the engine
    /// would have refused).
    pub(super) fn plan(
        &self,
        now: Timestamp,
        mut group: GroupId,
        key: QueueKey,
        declined: &[AgentId],
        mut moving: bool,
    ) -> Entry {
        use crate::config::WhenClosed;
        let mut hops = Vec::new();
        loop {
            let when_closed = self.groups[&group].policy.when_closed;
            if !moving {
                if self.closed(group) {
                    match when_closed {
                        WhenClosed::Wait => return Entry { hops, stop: Stop::WaitClosed(group) },
                        WhenClosed::End => return Entry { hops, stop: Stop::Closed(group) },
                        WhenClosed::Overflow => {}
                    }
                } else if !self.over_limit(now, group, key, declined) {
                    return Entry { hops, stop: Stop::Place(group) };
                }
            }
            let Some(to) = self.overflow_target(group).filter(|_| hops.len() < self.groups.len())
            else {
                // A group closed for business hours (`hours.rs`) ends it with its own reply.
                let closing = self.closed(group) && when_closed != WhenClosed::Wait;
                let stop = if closing { Stop::Closed(group) } else { Stop::Refused(group) };
                return Entry { hops, stop };
            };
            hops.push((group, to));
            group = to;
            moving = false;
        }
    }

    /// Carries out a plan for a conversation placed nowhere.
    fn follow(
        &mut self,
        now: Timestamp,
        conv: ConversationId,
        key: QueueKey,
        declined: Vec<AgentId>,
        entry: Entry,
        out: &mut Vec<Effect>,
    ) {
        for (from, to) in entry.hops {
            out.push(Effect::Overflowed { conversation: conv, from, to });
        }
        match entry.stop {
            Stop::Place(group) => self.place_or_push(now, conv, group, key, declined, out),
            Stop::WaitClosed(group) => {
                self.place_queued(conv, group, key, None, declined, out);
                if !key.front() {
                    out.push(Effect::OutsideHours { conversation: conv, group });
                }
            }
            Stop::Closed(group) => out.push(Effect::Closed { conversation: conv, group }),
            Stop::Refused(group) => out.push(Effect::Refused { conversation: conv, group }),
        }
    }

    /// Whether a conversation entering `group` now must go on: no agent can take it at once
    /// and the queue is at its cap or its wait has passed.
    fn over_limit(
        &self,
        now: Timestamp,
        group: GroupId,
        key: QueueKey,
        declined: &[AgentId],
    ) -> bool {
        let g = &self.groups[&group];
        let Some(o) = g.policy.overflow else { return false };
        let w = Waiting {
            group,
            key,
            pin: None,
            declined,
            widened: &[],
            min_level: g.policy.min_level,
        };
        // Whether anyone may take it at once: the one predicate, without `choose`'s record.
        let taken_at_once = || g.available.iter().any(|a| self.refusal(a, &w).is_none());
        if key.front() || (g.policy.offer.pushes() && taken_at_once()) {
            return false;
        }
        let full = o.max_waiting.is_some_and(|m| g.queue.len() >= m as usize);
        let late = o.max_wait.is_some_and(|w| key.entered_at() + w <= now);
        full || late
    }

    /// Arms (or fires) the max-wait deadline of a conversation that was just queued in its
    /// group (marked by `place_queued`).
    pub(super) fn limit(&mut self, now: Timestamp, conv: ConversationId, out: &mut Vec<Effect>) {
        let Some(Placement::Queued { group, key, pin: None, .. }) = self.placements.get(&conv)
        else {
            return;
        };
        let (group, key) = (*group, *key);
        let Some(wait) = self.groups[&group].policy.overflow.and_then(|o| o.max_wait) else {
            return;
        };
        if key.front() {
            return;
        }
        self.unlimit(conv);
        let due = key.entered_at() + wait;
        if due > now {
            self.limits.insert(conv, due);
            self.timers.insert((due, Timer::MaxWait(conv)));
            return;
        }
        let declined = self.placements[&conv].declined().to_vec();
        self.take(conv);
        self.go_on(now, conv, group, key, declined, out);
    }

    /// Drops a conversation's max-wait deadline (it leaves its group's queue).
    pub(super) fn unlimit(&mut self, conv: ConversationId) {
        if let Some(at) = self.limits.remove(&conv) {
            self.timers.remove(&(at, Timer::MaxWait(conv)));
        }
    }

    /// A max-wait deadline fired (only if it is still the conversation's).
    pub(super) fn max_wait_due(&mut self, at: Timestamp, conv: ConversationId) {
        if self.limits.get(&conv) == Some(&at) {
            self.limits.remove(&conv);
            self.dirty_limits.insert(conv);
        }
    }

    /// The group's overflow rule changed: every conversation waiting in it gets its deadline
    /// again under the new rule (applied when the operation settles).
    pub(super) fn relimit(&mut self, group: GroupId) {
        let Some(g) = self.groups.get(&group) else { return };
        let waiting: Vec<ConversationId> = g.queue.iter().map(|(_, c)| c).collect();
        for c in waiting {
            self.unlimit(c);
            self.dirty_limits.insert(c);
        }
    }

    /// The group's overflow target, if it names another group that exists.
    pub fn overflow_target(&self, group: GroupId) -> Option<GroupId> {
        let to = self.groups.get(&group)?.policy.overflow?.group?;
        (to != group && self.groups.contains_key(&to)).then_some(to)
    }

    /// Every conversation waiting (not pinned, not at the front) in a group with a max wait
    /// has exactly its deadline, `entry time + max wait`, armed; no other is.
    pub(super) fn check_limits(&self) -> std::result::Result<(), String> {
        let mut armed = 0;
        for (id, g) in &self.groups {
            let Some(wait) = g.policy.overflow.and_then(|o| o.max_wait) else { continue };
            for (_, c) in g.queue.iter() {
                let key = self.placements[&c].key();
                if key.front() {
                    continue;
                }
                let due = key.entered_at() + wait;
                if self.limits.get(&c) != Some(&due)
                    || !self.timers.contains(&(due, Timer::MaxWait(c)))
                {
                    return Err(format!("{c} waits in {id} without its max-wait deadline {due:?}"));
                }
                armed += 1;
            }
        }
        let timers = self.timers.iter().filter(|(_, t)| matches!(t, Timer::MaxWait(_))).count();
        if armed != self.limits.len() || armed != timers {
            return Err(format!(
                "{armed} conversations under a max wait, {} deadlines held, {timers} timers",
                self.limits.len()
            ));
        }
        Ok(())
    }
}
