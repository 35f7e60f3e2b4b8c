//! A queue ordered by [`QueueKey`] with exact rank in O(log n).
//!
//! Shape: a sorted list of blocks (each a `VecDeque` of at most [`MAX_BLOCK`] entries), the
//! maximum key of every block for a binary search, and a Fenwick tree over block lengths for
//! prefix counts — the design of Python's `sortedcontainers`, which keeps memory dense and
//! makes the common cases (append at the tail, pop at the head) O(1) amortised. `rank` is two
//! binary searches and one Fenwick prefix sum: O(log n) with a handful of cache misses, which
//! is what lets a million waiting conversations ask their position at any time.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Higher is served first; e.g. a VIP customer group.
pub type Priority = u8;

/// Blocks split when they reach this many entries (tiny under test so splits get exercised).
const MAX_BLOCK: usize = if cfg!(test) { 8 } else { 1024 };
const ENTERED_BITS: u32 = 55;
const ENTERED_MASK: u64 = (1 << ENTERED_BITS) - 1;

/// The place of a conversation in a queue: requeued-at-the-front entries first, then higher
/// priority, then earlier entry time, then arrival order. Packed into two words so comparing
/// keys is two integer compares.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct QueueKey {
    hi: u64,
    lo: u64,
}

impl QueueKey {
    /// `entered_at` is clamped to 2^55 ms (about a million years); `seq` breaks ties so keys
    /// are unique.
    pub fn new(front: bool, priority: Priority, entered_at: Timestamp, seq: u64) -> Self {
        let hi = (u64::from(!front) << 63)
            | (u64::from(u8::MAX - priority) << ENTERED_BITS)
            | entered_at.0.min(ENTERED_MASK);
        QueueKey { hi, lo: seq }
    }

    pub fn front(self) -> bool {
        self.hi >> 63 == 0
    }

    pub fn priority(self) -> Priority {
        // The mask keeps exactly the 8 priority bits, so the cast cannot truncate.
        u8::MAX - ((self.hi >> ENTERED_BITS) & 0xff) as u8
    }

    pub fn entered_at(self) -> Timestamp {
        Timestamp(self.hi & ENTERED_MASK)
    }

    pub fn seq(self) -> u64 {
        self.lo
    }

    /// The same place, moved to (or out of) the front class.
    pub fn with_front(self, front: bool) -> Self {
        QueueKey::new(front, self.priority(), self.entered_at(), self.seq())
    }

    /// The same entry time and arrival order at another priority.
    pub fn with_priority(self, priority: Priority) -> Self {
        QueueKey::new(self.front(), priority, self.entered_at(), self.seq())
    }
}

impl fmt::Debug for QueueKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Key({}p{} {:?} #{})",
            if self.front() { "front " } else { "" },
            self.priority(),
            self.entered_at(),
            self.seq()
        )
    }
}

/// An ordered set of `(key, value)` with unique keys and exact rank.
#[derive(Clone)]
pub struct RankedQueue<V> {
    blocks: Vec<VecDeque<(QueueKey, V)>>,
    /// `maxes[b]` is the last key of `blocks[b]`.
    maxes: Vec<QueueKey>,
    /// Fenwick tree over block lengths, 1-based.
    tree: Vec<usize>,
    len: usize,
}

impl<V> Default for RankedQueue<V> {
    fn default() -> Self {
        RankedQueue { blocks: Vec::new(), maxes: Vec::new(), tree: vec![0], len: 0 }
    }
}

/// Serialized as the ordered list of entries; blocks and the Fenwick tree are rebuilt.
impl<V: Serialize + Copy> Serialize for RankedQueue<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de, V: Deserialize<'de> + Copy> Deserialize<'de> for RankedQueue<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<(QueueKey, V)>::deserialize(d)?;
        let mut q = RankedQueue::new();
        for (k, v) in entries {
            q.insert(k, v);
        }
        Ok(q)
    }
}

impl<V: fmt::Debug + Copy> fmt::Debug for RankedQueue<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<V: Copy> RankedQueue<V> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The best entry (served next).
    pub fn first(&self) -> Option<(QueueKey, V)> {
        self.blocks.first().and_then(|b| b.front()).copied()
    }

    /// Inserts; returns false (and changes nothing) when the key is already present.
    pub fn insert(&mut self, key: QueueKey, value: V) -> bool {
        if self.blocks.is_empty() {
            self.blocks.push(VecDeque::from([(key, value)]));
            self.maxes.push(key);
            self.len = 1;
            self.rebuild();
            return true;
        }
        let b = self.locate(&key).min(self.blocks.len() - 1);
        let last_block = b + 1 == self.blocks.len();
        let block = &mut self.blocks[b];
        let i = block.partition_point(|e| e.0 < key);
        if block.get(i).is_some_and(|e| e.0 == key) {
            return false;
        }
        let appended = i == block.len();
        block.insert(i, (key, value));
        self.len += 1;
        if appended {
            self.maxes[b] = key;
        }
        if block.len() >= MAX_BLOCK {
            // Appends to the last block leave it full, so FIFO traffic packs blocks densely.
            let at = if appended && last_block { MAX_BLOCK - 1 } else { MAX_BLOCK / 2 };
            let right = block.split_off(at);
            self.maxes[b] = block.back().expect("left half is non-empty").0;
            let right_max = right.back().expect("right half is non-empty").0;
            self.blocks.insert(b + 1, right);
            self.maxes.insert(b + 1, right_max);
            self.rebuild();
        } else {
            self.tree_add(b, true);
        }
        true
    }

    /// Removes the entry with this key, returning its value.
    pub fn remove(&mut self, key: &QueueKey) -> Option<V> {
        let (b, i) = self.find(key)?;
        let block = &mut self.blocks[b];
        let (_, value) = block.remove(i).expect("index found by binary search");
        self.len -= 1;
        if block.is_empty() {
            self.blocks.remove(b);
            self.maxes.remove(b);
            self.rebuild();
        } else {
            self.maxes[b] = block.back().expect("block is non-empty").0;
            self.tree_add(b, false);
        }
        Some(value)
    }

    /// Removes and returns the best entry.
    pub fn pop_first(&mut self) -> Option<(QueueKey, V)> {
        let (key, _) = self.first()?;
        let value = self.remove(&key)?;
        Some((key, value))
    }

    pub fn contains(&self, key: &QueueKey) -> bool {
        self.find(key).is_some()
    }

    /// Number of entries ahead of `key` (0 for the first), or `None` if absent.
    pub fn rank(&self, key: &QueueKey) -> Option<usize> {
        let (b, i) = self.find(key)?;
        Some(self.prefix(b) + i)
    }

    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (QueueKey, V)> + '_ {
        self.blocks.iter().flat_map(|b| b.iter().copied())
    }

    /// Entries in order, starting at rank `start`.
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = (QueueKey, V)> + '_ {
        let (b, i) = self.select(start);
        self.blocks
            .iter()
            .skip(b)
            .enumerate()
            .flat_map(move |(n, block)| block.iter().skip(if n == 0 { i } else { 0 }).copied())
    }

    /// Bytes held by this queue's own allocations (for the memory benchmark).
    pub fn heap_bytes(&self) -> usize {
        let entry = std::mem::size_of::<(QueueKey, V)>();
        self.blocks.iter().map(|b| b.capacity() * entry).sum::<usize>()
            + self.blocks.capacity() * std::mem::size_of::<VecDeque<(QueueKey, V)>>()
            + self.maxes.capacity() * std::mem::size_of::<QueueKey>()
            + self.tree.capacity() * std::mem::size_of::<usize>()
    }

    /// Index of the first block whose max is >= key (== blocks.len() when past the end).
    fn locate(&self, key: &QueueKey) -> usize {
        self.maxes.partition_point(|m| m < key)
    }

    fn find(&self, key: &QueueKey) -> Option<(usize, usize)> {
        let b = self.locate(key);
        let block = self.blocks.get(b)?;
        let i = block.binary_search_by(|e| e.0.cmp(key)).ok()?;
        Some((b, i))
    }

    /// Block and offset of rank `r` (past-the-end when `r >= len`).
    fn select(&self, mut r: usize) -> (usize, usize) {
        if r >= self.len {
            return (self.blocks.len(), 0);
        }
        // Fenwick descent: find the largest prefix of blocks whose total is <= r.
        let n = self.blocks.len();
        let mut pos = 0;
        let mut step = n.next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= r {
                pos = next;
                r -= self.tree[next];
            }
            step >>= 1;
        }
        (pos, r)
    }

    fn prefix(&self, block: usize) -> usize {
        let mut i = block;
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i];
            i &= i - 1;
        }
        sum
    }

    fn tree_add(&mut self, block: usize, increment: bool) {
        let mut i = block + 1;
        while i < self.tree.len() {
            if increment {
                self.tree[i] += 1;
            } else {
                self.tree[i] -= 1;
            }
            i += i & i.wrapping_neg();
        }
    }

    fn rebuild(&mut self) {
        let n = self.blocks.len();
        self.tree.clear();
        self.tree.resize(n + 1, 0);
        for i in 1..=n {
            self.tree[i] += self.blocks[i - 1].len();
            let j = i + (i & i.wrapping_neg());
            if j <= n {
                self.tree[j] += self.tree[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn key(prio: u8, at: u64, seq: u64) -> QueueKey {
        QueueKey::new(false, prio, Timestamp(at), seq)
    }

    #[test]
    fn key_orders_front_then_priority_then_time_then_seq() {
        let front_low = QueueKey::new(true, 0, Timestamp(900), 9);
        let vip = key(9, 500, 5);
        let early = key(1, 100, 7);
        let late = key(1, 200, 1);
        let same_time_later_seq = key(1, 200, 2);
        let mut keys = vec![same_time_later_seq, late, early, vip, front_low];
        keys.sort();
        assert_eq!(keys, vec![front_low, vip, early, late, same_time_later_seq]);
        assert!(front_low.front());
        assert_eq!(vip.priority(), 9);
        assert_eq!(early.entered_at(), Timestamp(100));
        assert_eq!(late.seq(), 1);
        assert_eq!(late.with_front(true).with_front(false), late);
    }

    #[test]
    fn fifo_at_scale_keeps_exact_ranks() {
        let mut q = RankedQueue::new();
        for i in 0..10_000u64 {
            assert!(q.insert(key(0, i, i), i));
        }
        assert_eq!(q.len(), 10_000);
        assert_eq!(q.rank(&key(0, 0, 0)), Some(0));
        assert_eq!(q.rank(&key(0, 7_777, 7_777)), Some(7_777));
        for i in 0..5_000u64 {
            assert_eq!(q.pop_first(), Some((key(0, i, i), i)));
        }
        assert_eq!(q.rank(&key(0, 7_777, 7_777)), Some(2_777));
        assert_eq!(q.iter_from(2_777).next(), Some((key(0, 7_777, 7_777), 7_777)));
        assert!(!q.insert(key(0, 9_000, 9_000), 0), "duplicate keys are refused");
        assert_eq!(q.rank(&key(0, 1, 1)), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16, u16),
        RemoveNth(usize),
        Pop,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..3, any::<u16>(), any::<u16>()).prop_map(|(p, t, s)| Op::Insert(p, t, s)),
            2 => any::<usize>().prop_map(Op::RemoveNth),
            1 => Just(Op::Pop),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The queue behaves exactly like a BTreeMap, and rank is the index in sorted order.
        #[test]
        fn matches_a_sorted_model(ops in proptest::collection::vec(op(), 1..1_200)) {
            let mut q = RankedQueue::new();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(p, t, s) => {
                        let k = key(p, u64::from(t), u64::from(s));
                        let fresh = !model.contains_key(&k);
                        prop_assert_eq!(q.insert(k, t), fresh);
                        model.entry(k).or_insert(t);
                    }
                    Op::RemoveNth(n) => {
                        if !model.is_empty() {
                            let k = *model.keys().nth(n % model.len()).unwrap();
                            prop_assert_eq!(q.remove(&k), model.remove(&k));
                        }
                    }
                    Op::Pop => {
                        prop_assert_eq!(q.pop_first(), model.pop_first());
                    }
                }
                prop_assert_eq!(q.len(), model.len());
            }
            let got: Vec<_> = q.iter().collect();
            let want: Vec<_> = model.iter().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(&got, &want);
            for (rank, (k, _)) in want.iter().enumerate() {
                prop_assert_eq!(q.rank(k), Some(rank));
                prop_assert_eq!(q.iter_from(rank).next().map(|e| e.0), Some(*k));
            }
        }
    }
}
