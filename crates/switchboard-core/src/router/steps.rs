//! Criteria that widen over time (issue 14 item 1): a group's policy lists steps, each a
//! wait (from the conversation's entry time) after which a conversation waiting in the
//! group may also go to another group's agents.
//!
//! A conversation stays in its own group's queue (its position is read there) and, once a
//! step is reached, also stands in the step group's `overflow` queue under that group's key
//! for its real key: among that group's own conversations it keeps its place in line by
//! priority and entry time. Whichever agent takes it first takes it from every queue
//! (`take` calls [`Router::unwiden`]). `widened` records, per conversation, the steps
//! reached, the groups it stands in and its next step's deadline (a router timer like every
//! other, so it survives a restart). Work conservation covers overflow entries too: no
//! agent of a step group that could take one stays idle. Conversations waiting for one agent
//! in particular (pinned) do not widen.

use serde::{Deserialize, Serialize};

use super::{Placement, Router, Timer};
use crate::ids::{ConversationId, GroupId};
use crate::time::Timestamp;

/// The steps one waiting conversation has reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Widened {
    /// Steps of its group's policy reached so far.
    pub reached: usize,
    /// Groups whose overflow queue holds it.
    pub groups: Vec<GroupId>,
    /// When the next step is due (its `Timer::Step`).
    pub next: Option<Timestamp>,
}

impl Router {
    /// Applies every step of its group due at `now` to a conversation waiting in its
    /// group's queue, and arms the next one.
    pub(super) fn widen(&mut self, now: Timestamp, conv: ConversationId) {
        let Some(Placement::Queued { group, key, pin: None, .. }) = self.placements.get(&conv)
        else {
            return;
        };
        let (group, key) = (*group, *key);
        let Some(steps) = self.groups.get(&group).map(|g| g.policy.steps.clone()) else {
            return;
        };
        let w = self.widened.entry(conv).or_default();
        if let Some(at) = w.next.take() {
            self.timers.remove(&(at, Timer::Step(conv)));
        }
        while let Some(step) = steps.get(w.reached) {
            let due = key.entered_at() + step.after;
            if due > now {
                w.next = Some(due);
                self.timers.insert((due, Timer::Step(conv)));
                break;
            }
            w.reached += 1;
            if step.min_level.is_some() {
                // Agents of its own group at a lower level may take it now.
                self.dirty_groups.insert(group);
            }
            if step.group == group || w.groups.contains(&step.group) {
                continue;
            }
            if let Some(x) = self.groups.get_mut(&step.group) {
                x.overflow.insert(x.queue_key(key), conv);
                w.groups.push(step.group);
                self.dirty_groups.insert(step.group);
            }
        }
        if w.groups.is_empty() && w.next.is_none() && w.reached == 0 {
            self.widened.remove(&conv);
        }
    }

    /// Takes a conversation out of every overflow queue and drops its step deadline (it
    /// leaves its group's queue, or its steps are recomputed).
    pub(super) fn unwiden(&mut self, conv: ConversationId, key: crate::queue::QueueKey) {
        let Some(w) = self.widened.remove(&conv) else { return };
        if let Some(at) = w.next {
            self.timers.remove(&(at, Timer::Step(conv)));
        }
        for g in w.groups {
            if let Some(x) = self.groups.get_mut(&g) {
                x.overflow.remove(&x.queue_key(key));
            }
        }
    }

    /// A step deadline fired (only if it is still the conversation's next one).
    pub(super) fn step_due(&mut self, now: Timestamp, at: Timestamp, conv: ConversationId) {
        if self.widened.get(&conv).is_some_and(|w| w.next == Some(at)) {
            self.widen(now, conv);
        }
    }

    /// The group's steps changed: every conversation waiting in it starts over from its
    /// entry time under the new steps (applied when the operation settles).
    pub(super) fn rewiden(&mut self, group: GroupId) {
        let Some(g) = self.groups.get(&group) else { return };
        let waiting: Vec<ConversationId> = g.queue.iter().map(|(_, c)| c).collect();
        for c in waiting {
            let key = self.placements[&c].key();
            self.unwiden(c, key);
            self.dirty_steps.insert(c);
        }
    }

    /// Whether `conv` stands in `group`'s overflow queue.
    pub(super) fn widened_to(&self, conv: ConversationId, group: GroupId) -> bool {
        self.widened.get(&conv).is_some_and(|w| w.groups.contains(&group))
    }

    /// The groups (besides its own) whose agents may take `conv` now.
    pub fn widened_groups(&self, conv: ConversationId) -> &[GroupId] {
        self.widened.get(&conv).map_or(&[], |w| &w.groups)
    }
}
