//! Estimated wait time (issue 14 item 7), kept live: recomputed whenever it is asked for, from
//! the group's recent service rate and the conversation's exact position.
//!
//! **The model.** Each group keeps an exponentially weighted rate of its conversations being
//! served: assigned to an agent (pushed, accepted or picked, whether they waited or not; a
//! direct transfer is not counted). While a queue stands this is the rate at which it drains;
//! while agents are idle it is the arrival rate, a lower bound. Every departure adds one to a count that decays as `e^(−Δt/τ)` with
//! τ = [`RATE_WINDOW`]; the rate at `now` is that decayed count over the decayed length of
//! time observed, `τ·(1 − e^(−(now − since)/τ))` (so a group watched for less than τ is not
//! under-estimated), `since` being when the group was created or, in a snapshot written
//! before this, its first departure. A conversation at position `p` waits about `p / rate`:
//! `p` departures must happen before it is taken. Each departure is O(1) and nothing is
//! scheduled; as time passes without departures the rate decays, so a waiting
//! conversation's estimate grows by itself (which the big platforms do not do).
//!
//! **No estimate** (`None`): the conversation is not waiting in its group's queue (offered,
//! assigned, or pinned to one agent — that agent's pace is not the group's); the group has
//! never served a conversation since it was observed; or the estimate exceeds
//! [`MAX_ESTIMATE`] (the group has in effect stopped serving).
//!
//! **Business hours.** A closed group serves nobody before it opens (`hours.rs`), so its
//! conversations' estimate is the time until it opens plus `p / rate` (none when the
//! opening is unknown or the sum exceeds [`MAX_ESTIMATE`]). The rate is still the decayed
//! one, which the closed hours have lowered; an estimate that pauses while closed is better
//! and not built.
//!
//! It ignores conversations that will overtake it (higher priority arriving, aging) and
//! those ahead that leave without being served; `loadtest sim` prints how far off it is.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Router;
use crate::ids::{ConversationId, GroupId};
use crate::time::Timestamp;

/// The service rate's time constant τ: departures older than a few τ hardly count.
pub const RATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// Estimates beyond this are reported as none.
pub const MAX_ESTIMATE: Duration = Duration::from_secs(24 * 3600);

/// A group's exponentially weighted departure count (see the module docs). Every field
/// defaults, so snapshots written before it load with no history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceRate {
    /// Departures, each weighted `e^(−age/τ)`, as of `at`.
    #[serde(default)]
    weight: f64,
    /// The last departure.
    #[serde(default)]
    at: Option<Timestamp>,
    /// When observation began.
    #[serde(default)]
    since: Option<Timestamp>,
}

fn decay(elapsed: Duration) -> f64 {
    (-elapsed.as_secs_f64() / RATE_WINDOW.as_secs_f64()).exp()
}

impl ServiceRate {
    /// Observation starting at `now` (a new group).
    pub fn starting(now: Timestamp) -> Self {
        ServiceRate { since: Some(now), ..Self::default() }
    }

    /// One conversation left the queue to an agent at `now`.
    pub fn departed(&mut self, now: Timestamp) {
        let since = *self.since.get_or_insert(now);
        // Time never runs backwards for the router; clamp if a caller's clock does.
        let now = now.max(since);
        let kept = match self.at {
            Some(at) => self.weight * decay(now.since(at)),
            None => 0.0,
        };
        self.weight = kept + 1.0;
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
    }

    /// Departures per second at `now`, `None` before the first departure.
    pub fn per_second(&self, now: Timestamp) -> Option<f64> {
        let (at, since) = (self.at?, self.since?);
        let tau = RATE_WINDOW.as_secs_f64();
        let weight = self.weight * decay(now.since(at));
        // At least one millisecond observed, so a departure at `since` is not infinitely fast.
        let observed = now.since(since).max(Duration::from_millis(1));
        let span = tau * (1.0 - decay(observed));
        let rate = weight / span;
        (rate.is_finite() && rate > 0.0).then_some(rate)
    }

    /// The wait of the conversation at 1-based `position`, at `now`.
    pub fn wait(&self, now: Timestamp, position: usize) -> Option<Duration> {
        let rate = self.per_second(now)?;
        let secs = position as f64 / rate;
        Duration::try_from_secs_f64(secs).ok().filter(|d| *d <= MAX_ESTIMATE)
    }
}

impl Router {
    /// Estimated wait of a conversation waiting in its group's queue, at `now` (module docs).
    pub fn estimated_wait(&self, now: Timestamp, conv: ConversationId) -> Option<Duration> {
        match self.placements.get(&conv)? {
            super::Placement::Queued { group, pin: None, .. } => {
                self.group_wait(now, *group, self.position(conv)?)
            }
            _ => None,
        }
    }

    /// Estimated wait at `now` of whoever stands at 1-based `position` in the group's queue.
    pub fn group_wait(&self, now: Timestamp, group: GroupId, position: usize) -> Option<Duration> {
        let wait = self.groups.get(&group)?.service.wait(now, position)?;
        if !self.closed(group) {
            return Some(wait);
        }
        let total = wait + self.hours_change(group)?.since(now);
        (total <= MAX_ESTIMATE).then_some(total)
    }

    /// The group's service rate at `now`, in conversations per second.
    pub fn service_rate(&self, now: Timestamp, group: GroupId) -> Option<f64> {
        self.groups.get(&group)?.service.per_second(now)
    }

    /// Counts a departure from the group's queue (called by `assign`).
    pub(super) fn served(&mut self, now: Timestamp, group: GroupId) {
        if let Some(g) = self.groups.get_mut(&group) {
            g.service.departed(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{mins, secs};

    fn t(s: u64) -> Timestamp {
        Timestamp::ZERO + secs(s)
    }

    #[test]
    fn no_estimate_before_a_departure() {
        let r = ServiceRate::starting(t(0));
        assert_eq!(r.per_second(t(100)), None);
        assert_eq!(r.wait(t(100), 1), None);
        assert_eq!(ServiceRate::default().wait(t(100), 1), None);
    }

    #[test]
    fn steady_rate_is_recovered() {
        // One departure every 30 s for an hour: 2 per minute.
        let mut r = ServiceRate::starting(t(0));
        for i in 1..=120 {
            r.departed(t(30 * i));
        }
        let rate = r.per_second(t(3600)).unwrap();
        assert!((rate - 1.0 / 30.0).abs() < 0.002, "rate {rate}");
        let w = r.wait(t(3600), 4).unwrap();
        assert!(w > secs(110) && w < secs(130), "4th in line waits about 2 min: {w:?}");
    }

    #[test]
    fn a_young_group_is_not_under_estimated() {
        // Two minutes observed, one departure every 10 s: the bias correction sees 6/min.
        let mut r = ServiceRate::starting(t(0));
        for i in 1..=12 {
            r.departed(t(10 * i));
        }
        let rate = r.per_second(t(120)).unwrap();
        assert!((rate - 0.1).abs() < 0.01, "rate {rate}");
    }

    #[test]
    fn the_estimate_grows_while_nobody_is_served() {
        let mut r = ServiceRate::starting(t(0));
        for i in 1..=60 {
            r.departed(t(60 * i));
        }
        let now = t(3600);
        let fresh = r.wait(now, 3).unwrap();
        let later = r.wait(now + mins(10), 3).unwrap();
        assert!(later > fresh, "{later:?} > {fresh:?}");
        assert_eq!(r.wait(now + Duration::from_secs(7 * 86_400), 3), None, "stopped serving");
    }

    #[test]
    fn monotone_in_position() {
        let mut r = ServiceRate::starting(t(0));
        r.departed(t(5));
        r.departed(t(5));
        let waits: Vec<_> = (1..=50).map(|p| r.wait(t(60), p).unwrap()).collect();
        assert!(waits.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn old_snapshots_load_without_history() {
        // `Group::service` is its last field: an older snapshot's group array just ends sooner.
        let bytes = rmp_serde::to_vec(&Vec::<u8>::new()).unwrap();
        let r: ServiceRate = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(r, ServiceRate::default());
        let mut r = r;
        r.departed(t(10));
        assert!(r.per_second(t(20)).is_some());
    }
}
