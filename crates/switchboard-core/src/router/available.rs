//! The members of a group that can take pushed work now, indexed for every strategy so that
//! choosing an agent is a first-entry lookup rather than a scan over a large team.

use std::collections::BTreeSet;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

use super::Agent;
use super::explain::TieBreak;
use crate::config::Strategy;
use crate::ids::AgentId;
use crate::time::Timestamp;

/// Where an agent sorts: its occupancy and when it last received work.
pub(super) type Rank = (u64, Timestamp);

/// Load relative to capacity as a fixed-point fraction. With capacities up to 1000, distinct
/// ratios differ by more than 2^-32, so the order is exact.
pub(super) fn rank(a: &Agent) -> Rank {
    let occupancy = (u128::from(a.load()) << 32) / u128::from(a.capacity.max(1));
    (u64::try_from(occupancy).unwrap_or(u64::MAX), a.idle_since)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Stored")]
pub(super) struct Available {
    ids: BTreeSet<AgentId>,
    by_occupancy: BTreeSet<(u64, Timestamp, AgentId)>,
    by_idle: BTreeSet<(Timestamp, AgentId)>,
    /// Best proficiency first (`u8::MAX − level`), then as `by_occupancy`.
    by_proficiency: BTreeSet<(u8, u64, Timestamp, AgentId)>,
}

/// [`Available`] as snapshots hold it: those written before proficiency lack its index, and
/// every agent then had the lowest level, so it is rebuilt from the occupancy index.
#[derive(Deserialize)]
struct Stored {
    ids: BTreeSet<AgentId>,
    by_occupancy: BTreeSet<(u64, Timestamp, AgentId)>,
    by_idle: BTreeSet<(Timestamp, AgentId)>,
    #[serde(default)]
    by_proficiency: Option<BTreeSet<(u8, u64, Timestamp, AgentId)>>,
}

impl From<Stored> for Available {
    fn from(s: Stored) -> Self {
        let by_proficiency = s.by_proficiency.unwrap_or_else(|| {
            let lowest = u8::MAX - crate::config::MIN_PROFICIENCY;
            s.by_occupancy.iter().map(|&(o, i, id)| (lowest, o, i, id)).collect()
        });
        Available { ids: s.ids, by_occupancy: s.by_occupancy, by_idle: s.by_idle, by_proficiency }
    }
}

impl Available {
    /// `level`: the agent's proficiency in this index's group.
    pub fn insert(&mut self, id: AgentId, (occupancy, idle): Rank, level: u8) {
        self.ids.insert(id);
        self.by_occupancy.insert((occupancy, idle, id));
        self.by_idle.insert((idle, id));
        self.by_proficiency.insert((u8::MAX - level, occupancy, idle, id));
    }

    pub fn remove(&mut self, id: AgentId, (occupancy, idle): Rank, level: u8) {
        self.ids.remove(&id);
        self.by_occupancy.remove(&(occupancy, idle, id));
        self.by_idle.remove(&(idle, id));
        self.by_proficiency.remove(&(u8::MAX - level, occupancy, idle, id));
    }

    pub fn contains(&self, id: AgentId) -> bool {
        self.ids.contains(&id)
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = AgentId> + '_ {
        self.ids.iter().copied()
    }

    /// Whether the indexes hold exactly `expected` (agent, rank and level), for the
    /// invariant checks.
    pub fn holds_exactly(&self, expected: &[(AgentId, Rank, u8)]) -> bool {
        self.ids.len() == expected.len()
            && self.by_occupancy.len() == expected.len()
            && self.by_idle.len() == expected.len()
            && self.by_proficiency.len() == expected.len()
            && expected.iter().all(|&(id, (o, i), level)| {
                self.ids.contains(&id)
                    && self.by_occupancy.contains(&(o, i, id))
                    && self.by_idle.contains(&(i, id))
                    && self.by_proficiency.contains(&(u8::MAX - level, o, i, id))
            })
    }

    /// The agent the strategy picks among those `ok` admits (dispatch passes
    /// [`Router::refusal`](super::Router::refusal), so it skips exactly the agents Explain
    /// says cannot take the conversation). Least occupied ties go to the longest idle, then
    /// the lowest id; longest idle ties to the lowest id; round robin takes the next id after
    /// the last one chosen; best proficiency takes the highest level, then as least occupied.
    pub fn best(
        &self,
        strategy: Strategy,
        last: Option<AgentId>,
        ok: impl Fn(AgentId) -> bool,
    ) -> Option<AgentId> {
        let ok = |a: &AgentId| ok(*a);
        match strategy {
            Strategy::LeastOccupied => self.by_occupancy.iter().map(|e| e.2).find(ok),
            Strategy::LongestIdle => self.by_idle.iter().map(|e| e.1).find(ok),
            Strategy::BestProficiency => self.by_proficiency.iter().map(|e| e.3).find(ok),
            Strategy::RoundRobin => {
                let after = last.map_or(Bound::Unbounded, Bound::Excluded);
                self.ids.range((after, Bound::Unbounded)).chain(self.ids.iter()).copied().find(ok)
            }
        }
    }
}

/// Which figure of the strategy's order put `chosen` ahead of `runner_up` (each an agent
/// with its rank and level as the index holds them): the first field of the index's entry
/// where the two differ.
pub(super) fn decided_by(
    strategy: Strategy,
    chosen: (AgentId, Rank, u8),
    runner_up: (AgentId, Rank, u8),
) -> TieBreak {
    let (a, b) = (chosen, runner_up);
    let level = (u8::MAX - a.2 != u8::MAX - b.2).then_some(TieBreak::Level);
    let occupancy = (a.1.0 != b.1.0).then_some(TieBreak::Occupancy);
    let idle = (a.1.1 != b.1.1).then_some(TieBreak::IdleTime);
    match strategy {
        Strategy::LeastOccupied => occupancy.or(idle),
        Strategy::LongestIdle => idle,
        Strategy::BestProficiency => level.or(occupancy).or(idle),
        Strategy::RoundRobin => Some(TieBreak::Turn),
    }
    .unwrap_or(TieBreak::AgentId)
}
