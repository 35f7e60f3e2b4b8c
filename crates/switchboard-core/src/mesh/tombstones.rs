//! The router side's tombstones in memory: the ids of conversations that left, kept for at
//! least `linger` after they were last seen, in about two bytes an id.
//!
//! A tombstone only has to say "this conversation left": a late copy of one of its messages
//! carries its customer, and acknowledging the copy's own sequence number is enough (every
//! message before the leave was applied, the leave is the last message on its link, and a
//! side resending what is unacknowledged always resends its newest). So ids are kept by when
//! they were last seen, in buckets of `linger / 16`, and a bucket goes whole once its newest
//! possible sighting is `linger` old. An id is kept up to one bucket longer than `linger`
//! (never shorter), and expiry costs nothing per remaining id (before, a map of three numbers
//! per id, ~60 bytes with the map's nodes, walked whole on every advance).
//!
//! Each bucket is a compressed bitmap ([`RoaringTreemap`]). `loadtest history` ends a
//! conversation every half millisecond, so with the default hour of `linger` every id of its
//! million stays: as a hash set (the newest bucket) and sorted slices (older ones) that was
//! 8 bytes an id and up to twice that while the hash set grew, the largest part of the node's
//! growth with its history. A conversation's number is its shard in the high bits and a
//! tenant-wide sequence in the low ones, so one shard's ids are a sparse run, which the bitmap
//! keeps at two bytes each; membership stays a lookup (tens of nanoseconds), as before.

use std::collections::VecDeque;
use std::time::Duration;

use roaring::RoaringTreemap;

use crate::ids::ConversationId;
use crate::time::Timestamp;

/// Buckets per `linger`: more means ids expire closer to `linger`, and a lookup of an id
/// not held searches more buckets.
const BUCKETS: u64 = 16;

/// Each call that places ids takes the side's `linger` (the buckets are `linger / 16` wide),
/// so a side read back from its row needs nothing more than the default.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tombstones {
    /// Older buckets, oldest first: (start, ids).
    sealed: VecDeque<(Timestamp, RoaringTreemap)>,
    /// The newest bucket: (start, ids).
    open: (Timestamp, RoaringTreemap),
}

impl Tombstones {
    /// The start of the bucket of an id seen `at`.
    fn start(at: Timestamp, linger: Duration) -> Timestamp {
        Timestamp(at.0 - at.0 % Self::width(linger))
    }

    fn width(linger: Duration) -> u64 {
        (linger.as_millis() as u64 / BUCKETS).max(1)
    }

    /// Keeps `id` at least `linger` past `seen` (again, if it was kept already).
    pub(crate) fn insert(&mut self, id: ConversationId, seen: Timestamp, linger: Duration) {
        let start = Self::start(seen, linger);
        if start > self.open.0 {
            self.seal();
            self.open.0 = start;
        }
        // Seen earlier than the newest bucket: kept with it, so longer (never shorter).
        self.open.1.insert(id.0);
    }

    fn seal(&mut self) {
        let open = std::mem::take(&mut self.open.1);
        if !open.is_empty() {
            self.sealed.push_back((self.open.0, open));
        }
    }

    pub(crate) fn contains(&self, id: ConversationId) -> bool {
        self.open.1.contains(id.0) || self.sealed.iter().any(|(_, ids)| ids.contains(id.0))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.open.1.len() + self.sealed.iter().map(|(_, ids)| ids.len()).sum::<u64>()
    }

    /// The buckets' encoded size: close to what they hold in memory.
    #[cfg(test)]
    fn encoded_bytes(&self) -> u64 {
        let buckets = self.sealed.iter().map(|(_, ids)| ids).chain([&self.open.1]);
        buckets.map(|ids| ids.serialized_size() as u64).sum()
    }

    /// Forgets the buckets whose every id was last seen `linger` before `now`; calls
    /// `expired` with each id forgotten and not kept by a newer bucket.
    pub(crate) fn expire(
        &mut self,
        now: Timestamp,
        linger: Duration,
        mut expired: impl FnMut(ConversationId),
    ) {
        let width = Duration::from_millis(Self::width(linger));
        let done = |start: Timestamp| start + width + linger <= now;
        if done(self.open.0) {
            // The newest bucket is done, so every older one is.
            self.seal();
        }
        while self.sealed.front().is_some_and(|(start, _)| done(*start)) {
            let Some((_, ids)) = self.sealed.pop_front() else { break };
            for id in ids.iter().map(ConversationId).filter(|id| !self.contains(*id)) {
                expired(id);
            }
        }
        if self.sealed.is_empty() && self.open.1.is_empty() {
            // Nothing held: the next id starts a bucket wherever it falls.
            self.open.0 = Timestamp(0);
        }
    }

    /// Every id is kept at least `linger` past `now` (a restart: the peers get the whole
    /// `linger` to resend): all of them in one bucket.
    pub(crate) fn renew(&mut self, now: Timestamp, linger: Duration) {
        let mut ids = std::mem::take(&mut self.open.1);
        for (_, sealed) in self.sealed.drain(..) {
            ids |= sealed;
        }
        let start = Self::start(now, linger).max(self.open.0);
        self.open.0 = start;
        if !ids.is_empty() {
            self.sealed.push_back((start, ids));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_millis(1_600);
    const C: fn(u64) -> ConversationId = ConversationId;

    fn expire(t: &mut Tombstones, at: u64) -> Vec<ConversationId> {
        let mut out = Vec::new();
        t.expire(Timestamp(at), LINGER, |id| out.push(id));
        out.sort();
        out
    }

    #[test]
    fn an_id_is_kept_at_least_linger_and_at_most_one_bucket_more() {
        let mut t = Tombstones::default(); // buckets of 100 ms
        t.insert(C(1), Timestamp(1_050), LINGER);
        t.insert(C(2), Timestamp(1_120), LINGER);
        t.insert(C(3), Timestamp(1_199), LINGER);
        assert!([1, 2, 3].iter().all(|&n| t.contains(C(n))));
        assert!(!t.contains(C(4)));
        assert!(expire(&mut t, 1_050 + 1_600 - 1).is_empty());
        assert!(expire(&mut t, 1_100 + 1_600 - 1).is_empty(), "not before its bucket ends");
        assert_eq!(expire(&mut t, 1_100 + 1_600), [C(1)]);
        assert!(!t.contains(C(1)) && t.contains(C(2)) && t.contains(C(3)));
        assert_eq!(expire(&mut t, 1_200 + 1_600), [C(2), C(3)]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn seen_again_it_is_kept_from_then_and_reported_expired_once() {
        let mut t = Tombstones::default();
        t.insert(C(1), Timestamp(1_000), LINGER);
        t.insert(C(2), Timestamp(1_000), LINGER);
        t.insert(C(1), Timestamp(2_000), LINGER);
        assert_eq!(expire(&mut t, 1_100 + 1_600), [C(2)], "C1 is kept by its newer bucket");
        assert!(t.contains(C(1)));
        assert_eq!(expire(&mut t, 2_100 + 1_600), [C(1)]);
        // Empty again: a later id starts its own bucket.
        t.insert(C(5), Timestamp(500), LINGER);
        assert!(expire(&mut t, 500 + 1_600 - 1).is_empty());
        assert_eq!(expire(&mut t, 600 + 1_600), [C(5)]);
    }

    #[test]
    fn an_id_seen_before_the_newest_bucket_is_kept_with_it() {
        let mut t = Tombstones::default();
        t.insert(C(1), Timestamp(2_000), LINGER);
        t.insert(C(2), Timestamp(1_000), LINGER);
        assert!(expire(&mut t, 1_100 + 1_600).is_empty(), "kept longer, never shorter");
        assert_eq!(expire(&mut t, 2_100 + 1_600), [C(1), C(2)]);
    }

    #[test]
    fn a_restart_keeps_every_id_a_whole_linger_from_then() {
        let mut t = Tombstones::default();
        for n in 1..=50 {
            t.insert(C(n), Timestamp(n * 40), LINGER);
        }
        t.renew(Timestamp(10_000), LINGER);
        assert_eq!(t.len(), 50);
        assert!(expire(&mut t, 10_000 + 1_600 - 1).is_empty());
        assert_eq!(expire(&mut t, 10_100 + 1_600).len(), 50);
    }

    #[test]
    fn ids_spread_over_shards_take_about_two_bytes_each() {
        // As the node numbers conversations: the shard above bit 36, a tenant-wide sequence
        // below it, each shard taking every 64th number or so.
        let shard_of = |seq: u64| seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58;
        let mut t = Tombstones::default();
        for seq in 0..200_000u64 {
            let id = 1 << 52 | shard_of(seq) << 36 | seq;
            // Within one `linger`: its 16 buckets all held, as in `loadtest history`.
            t.insert(C(id), Timestamp(seq * 1_600 / 200_000), LINGER);
        }
        assert_eq!(t.len(), 200_000);
        assert!(t.contains(C(1 << 52 | shard_of(77) << 36 | 77)));
        assert!(!t.contains(C(1 << 52 | (shard_of(77) ^ 1) << 36 | 77)));
        let per_id = t.encoded_bytes() as f64 / 200_000.0;
        assert!(per_id < 3.0, "{per_id:.2} bytes an id");
    }
}
