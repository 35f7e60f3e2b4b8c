//! Priority aging (issue 14 item 5): a group's optional `priority_aging` step raises a waiting
//! conversation's *effective* priority by one for every step it has waited, continuously, so
//! low priority is never starved.
//!
//! The effective priority at time `t` is `p + (t − e) / step` (`p` its priority, `e` its
//! entry time). Conversation A is ahead of B when its effective priority is higher, i.e. when
//! `e_A − p_A·step < e_B − p_B·step`: the order does not depend on `t`. So an aging group's
//! queue is keyed by that time-invariant value (shifted by `255·step` so it is never
//! negative) and keeps exact O(log n) positions with no re-sorting as time passes; ties go
//! by arrival order. Its placements keep the real key (priority and entry time) for
//! transfers, requeues and figures; only the queue's own keys are the effective ones, and
//! [`Router::queue`] reads back the real ones. The front class (conversations requeued when
//! their agent went offline) stays ahead of everything, aged among itself the same way.
//! Pinned queues (waiting for one agent) do not age.
//!
//! Across groups (an agent of several groups takes the best head) the effective priorities
//! at `now` are compared exactly as fractions; a group without aging is the step-less case.

use std::cmp::Ordering;

use super::Group;
use crate::config::GroupPolicy;
use crate::queue::{Priority, QueueKey};
use crate::time::Timestamp;

/// Longest aging step: one level per day.
pub const MAX_AGING_STEP_MS: u64 = 86_400_000;

fn step_ms(policy: &GroupPolicy) -> Option<u64> {
    policy
        .priority_aging
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).clamp(1, MAX_AGING_STEP_MS))
}

impl Group {
    /// The key a conversation with real key `key` has in this group's queue.
    pub(super) fn queue_key(&self, key: QueueKey) -> QueueKey {
        match step_ms(&self.policy) {
            None => key,
            Some(step) => {
                let behind = u64::from(Priority::MAX - key.priority()) * step;
                let at = Timestamp(key.entered_at().as_millis().saturating_add(behind));
                QueueKey::new(key.front(), 0, at, key.seq())
            }
        }
    }
}

/// Where a waiting conversation stands at `now` among the heads of several groups: front
/// class first, then higher effective priority, then earlier entry, then arrival order.
#[derive(Debug, Clone, Copy)]
pub(super) struct Effective {
    front: bool,
    /// Effective priority as the fraction `num / den` (den = the step, or 1 without aging).
    num: i128,
    den: i128,
    key: QueueKey,
}

impl Effective {
    pub fn at(policy: &GroupPolicy, key: QueueKey, now: Timestamp) -> Self {
        let p = i128::from(key.priority());
        match step_ms(policy) {
            None => Effective { front: key.front(), num: p, den: 1, key },
            Some(step) => {
                let step = i128::from(step);
                let waited = i128::from(now.as_millis()) - i128::from(key.entered_at().as_millis());
                Effective { front: key.front(), num: p * step + waited, den: step, key }
            }
        }
    }
}

impl Ord for Effective {
    /// Best first: `Less` means served earlier.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .front
            .cmp(&self.front)
            .then_with(|| (other.num * self.den).cmp(&(self.num * other.den)))
            .then_with(|| self.key.entered_at().cmp(&other.key.entered_at()))
            .then_with(|| self.key.seq().cmp(&other.key.seq()))
    }
}

impl PartialOrd for Effective {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Effective {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Effective {}
