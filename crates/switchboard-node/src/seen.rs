//! Which request ids a tenant may already have answered, so that a request id it certainly
//! never saw skips the store's idempotency lookup (a blocking index probe on the tenant's
//! actor for every command that carries one).
//!
//! A Bloom filter of the ids this actor logged: "absent" is certain, "present" may be a false
//! positive, and then the store is asked as before. It can only vouch for ids logged since the
//! actor started, so it answers "never seen" only once every id logged before that is past the
//! idempotency window (`Store::request_retention` after the tenant's last logged time), or at
//! once for a tenant that had logged nothing. A retry after the window passed may then apply
//! again even if the store still holds its record; the store's contract allows either there.
//!
//! Memory is bounded: ids go into the current *generation*, a chain of bit arrays that doubles
//! as it fills, up to [`MAX_GENERATION_BITS`]; a full generation answers "maybe" for
//! everything (so the tenant falls back to lookups) until it ages out. A generation starts
//! every window and is dropped one window after it stopped taking ids, when everything it
//! holds is past the window: at most two are kept.

use std::hash::{BuildHasher, RandomState};

/// Bits of a generation's first array (4 KiB); each next one is twice the size.
const FIRST_BITS: u64 = 1 << 15;
/// All arrays of a generation together stay under this many bits (1 MiB).
const MAX_GENERATION_BITS: u64 = 1 << 23;
/// Bits probed per id.
const PROBES: u64 = 4;
/// An array takes at most `bits / BITS_PER_ID` ids: with 4 probes, about 0.24% false
/// positives when full.
const BITS_PER_ID: u64 = 16;

/// See the module documentation.
#[derive(Debug)]
pub struct SeenIds {
    hasher: RandomState,
    window_ms: u64,
    /// Before this tenant time (ms), ids logged before the actor started may still be within
    /// the window: every id is "maybe seen".
    complete_from_ms: u64,
    current: Generation,
    previous: Option<Generation>,
}

impl SeenIds {
    /// For an actor starting at log seq `log_seq`, whose last logged command was at
    /// `last_at_ms`, with the store's idempotency window.
    pub fn new(window: std::time::Duration, log_seq: u64, last_at_ms: u64) -> Self {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let complete_from_ms = if log_seq == 0 { 0 } else { last_at_ms.saturating_add(window_ms) };
        SeenIds {
            hasher: RandomState::new(),
            window_ms,
            complete_from_ms,
            current: Generation::new(last_at_ms),
            previous: None,
        }
    }

    /// Records that `request_id` was logged at tenant time `now_ms`.
    pub fn insert(&mut self, request_id: &str, now_ms: u64) {
        if now_ms >= self.current.started_ms.saturating_add(self.window_ms) {
            // The old previous generation stopped taking ids at least a window ago.
            let fresh = Generation::new(now_ms);
            self.previous = Some(std::mem::replace(&mut self.current, fresh));
        }
        let hash = self.hasher.hash_one(request_id);
        self.current.insert(hash);
    }

    /// False only if `request_id` was certainly not logged within the window before `now_ms`.
    pub fn may_contain(&self, request_id: &str, now_ms: u64) -> bool {
        if now_ms < self.complete_from_ms {
            return true;
        }
        let hash = self.hasher.hash_one(request_id);
        self.current.may_contain(hash)
            || self.previous.as_ref().is_some_and(|g| g.may_contain(hash))
    }
}

/// The ids of one window, in arrays of growing size.
#[derive(Debug)]
struct Generation {
    started_ms: u64,
    arrays: Vec<Bits>,
    /// Took an id when no array had room: answers "maybe" for everything.
    full: bool,
}

impl Generation {
    fn new(started_ms: u64) -> Self {
        Generation { started_ms, arrays: Vec::new(), full: false }
    }

    fn insert(&mut self, hash: u64) {
        if self.full {
            return;
        }
        if self.arrays.last().is_none_or(Bits::is_full) {
            let bits = self.arrays.last().map_or(FIRST_BITS, |last| last.len() * 2);
            let total: u64 = self.arrays.iter().map(Bits::len).sum();
            if total + bits > MAX_GENERATION_BITS {
                self.full = true;
                self.arrays = Vec::new();
                return;
            }
            self.arrays.push(Bits::new(bits));
        }
        if let Some(last) = self.arrays.last_mut() {
            last.insert(hash);
        }
    }

    fn may_contain(&self, hash: u64) -> bool {
        self.full || self.arrays.iter().any(|bits| bits.may_contain(hash))
    }
}

/// One Bloom filter of a power-of-two size.
#[derive(Debug)]
struct Bits {
    words: Vec<u64>,
    ids: u64,
}

impl Bits {
    fn new(bits: u64) -> Self {
        let words = usize::try_from(bits / 64).unwrap_or(usize::MAX);
        Bits { words: vec![0; words], ids: 0 }
    }

    fn len(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    fn is_full(&self) -> bool {
        self.ids >= self.len() / BITS_PER_ID
    }

    /// Bit positions of an id: double hashing of the two halves of its hash.
    fn positions(&self, hash: u64) -> impl Iterator<Item = (usize, u64)> + use<> {
        let mask = self.len() - 1;
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        (0..PROBES).map(move |i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) & mask;
            ((bit / 64) as usize, 1u64 << (bit % 64))
        })
    }

    fn insert(&mut self, hash: u64) {
        for (word, bit) in self.positions(hash) {
            self.words[word] |= bit;
        }
        self.ids += 1;
    }

    fn may_contain(&self, hash: u64) -> bool {
        self.positions(hash).all(|(word, bit)| self.words[word] & bit != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DAY: Duration = Duration::from_secs(24 * 3600);
    const DAY_MS: u64 = 24 * 3600 * 1000;

    #[test]
    fn a_new_tenant_knows_at_once_what_it_never_saw() {
        let mut seen = SeenIds::new(DAY, 0, 0);
        assert!(!seen.may_contain("r1", 5));
        seen.insert("r1", 5);
        assert!(seen.may_contain("r1", 6));
        assert!(!seen.may_contain("r2", 6));
    }

    #[test]
    fn a_reloaded_tenant_asks_the_store_until_its_old_ids_are_past_the_window() {
        let start = 1_000_000;
        let mut seen = SeenIds::new(DAY, 42, start);
        seen.insert("new", start + 10);
        assert!(seen.may_contain("logged-before-the-restart", start + 10));
        assert!(seen.may_contain("logged-before-the-restart", start + DAY_MS - 1));
        assert!(!seen.may_contain("logged-before-the-restart", start + DAY_MS));
        assert!(seen.may_contain("new", start + DAY_MS));
    }

    /// Every id inserted stays "maybe" for at least a window after it was inserted, however
    /// many others follow and however the generations turn; an id never inserted is mostly
    /// "absent" while the generation has room.
    #[test]
    fn no_id_within_the_window_is_ever_forgotten() {
        let mut seen = SeenIds::new(DAY, 0, 0);
        let step = 7_000; // ms between ids: about 12 windows over the run
        let mut inserted: Vec<(String, u64)> = Vec::new();
        for i in 0..150_000u64 {
            let now = i * step;
            let id = format!("req-{i}");
            seen.insert(&id, now);
            inserted.push((id, now));
            if i % 997 == 0 {
                for (id, at) in inserted.iter().rev().take_while(|(_, at)| now - at < DAY_MS) {
                    assert!(seen.may_contain(id, now), "{id} inserted at {at}, now {now}");
                }
            }
        }
        let now = 150_000 * step;
        let false_positives =
            (0..10_000).filter(|i| seen.may_contain(&format!("other-{i}"), now)).count();
        // The hasher is seeded at random: over 40 seeds this gave 59–95 (mean 78; several
        // arrays per generation, two generations). 150 is far outside what a seed reaches by
        // chance (the old bound of 100 failed about one run in 250), and still says "mostly
        // absent".
        assert!(false_positives < 150, "{false_positives} of 10000");
    }

    #[test]
    fn a_full_generation_answers_maybe_and_memory_stays_bounded() {
        let mut seen = SeenIds::new(DAY, 0, 0);
        let capacity: u64 = 1_000_000; // more than a generation holds
        for i in 0..capacity {
            seen.insert(&format!("req-{i}"), 1);
        }
        assert!(seen.current.full);
        assert!(seen.current.arrays.is_empty(), "its arrays are freed");
        assert!(seen.may_contain("anything", 2));
        // A window later, a new generation takes ids again.
        seen.insert("later", 1 + DAY_MS);
        assert!(seen.may_contain("anything", 2 + DAY_MS), "the full one still answers");
        seen.insert("later-still", 1 + 2 * DAY_MS);
        assert!(!seen.may_contain("anything", 2 + 2 * DAY_MS));
        assert!(seen.may_contain("later-still", 2 + 2 * DAY_MS));
    }
}
