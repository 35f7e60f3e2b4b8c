//! The figures of a run: counts, service level, waits, abandonment and occupancy, with
//! standard errors from batch means (the window cut into equal batches by queue-entry time;
//! each batch's figure is one observation, so correlation between neighbouring contacts stays
//! inside it). Kept as streaming tallies per group and batch, fed by the driver as each
//! contact ends, so a run's memory does not grow with the number of contacts.

use crate::driver::{Run, Slots};

/// An estimate and its standard error (none with fewer than two non-empty batches).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Est {
    pub value: f64,
    pub se: Option<f64>,
}

impl std::fmt::Display for Est {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = f.precision().unwrap_or(3);
        match self.se {
            Some(se) => write!(f, "{:.p$} ±{:.p$}", self.value, se),
            None => write!(f, "{:.p$}", self.value),
        }
    }
}

/// The report of one group (or all groups) over the measurement window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Contacts that entered the queue within the window.
    pub offered: u64,
    pub served: u64,
    pub abandoned: u64,
    /// Ended by the core while waiting (e.g. no agent before the reply window closed), or
    /// still open at the end.
    pub unserved: u64,
    /// Share of offered contacts answered within the target.
    pub service_level: Est,
    /// Share of offered contacts that abandoned while waiting.
    pub abandonment: Est,
    /// Mean wait of served contacts, seconds.
    pub mean_wait: Est,
    /// Share of served contacts that waited at all.
    pub p_wait: Est,
}

impl Figures {
    pub fn abandon_rate(&self) -> f64 {
        self.abandonment.value
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// How one contact ended, as the statistics need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Assigned after waiting this long (ms).
    Served {
        wait: u64,
    },
    Abandoned,
    /// Ended otherwise while waiting, or still waiting at the end of the run.
    Unserved,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    offered: u64,
    served: u64,
    abandoned: u64,
    unserved: u64,
    within: u64,
    waited: u64,
    wait_ms: u64,
}

impl Tally {
    fn add(&mut self, fate: Fate, target_ms: u64) {
        self.offered += 1;
        match fate {
            Fate::Served { wait } => {
                self.served += 1;
                self.within += u64::from(wait <= target_ms);
                self.waited += u64::from(wait > 0);
                self.wait_ms += wait;
            }
            Fate::Abandoned => self.abandoned += 1,
            Fate::Unserved => self.unserved += 1,
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.offered += o.offered;
        self.served += o.served;
        self.abandoned += o.abandoned;
        self.unserved += o.unserved;
        self.within += o.within;
        self.waited += o.waited;
        self.wait_ms += o.wait_ms;
    }

    fn sl(&self) -> f64 {
        ratio(self.within, self.offered)
    }
    fn abandonment(&self) -> f64 {
        ratio(self.abandoned, self.offered)
    }
    fn wait(&self) -> f64 {
        ratio(self.wait_ms, self.served) / 1000.0
    }
    fn p_wait(&self) -> f64 {
        ratio(self.waited, self.served)
    }
}

/// Pooled value with the batch-means standard error of `f` over the batches `keep` accepts.
fn estimate(
    total: &Tally,
    batches: &[Tally],
    keep: impl Fn(&Tally) -> bool,
    f: impl Fn(&Tally) -> f64,
) -> Est {
    let xs: Vec<f64> = batches.iter().filter(|b| keep(b)).map(&f).collect();
    Est { value: f(total), se: batch_se(&xs) }
}

/// The standard error of the mean of batch figures (none with fewer than two).
fn batch_se(xs: &[f64]) -> Option<f64> {
    let n = xs.len() as f64;
    (xs.len() >= 2).then(|| {
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (var / n).sqrt()
    })
}

/// The running statistics of one run: a tally per group and batch, contacts that left in
/// the bot stage per group. Constant size whatever the number of contacts.
#[derive(Debug, Clone)]
pub struct Stats {
    window: (u64, u64),
    target_ms: u64,
    /// `tallies[group][batch]`.
    tallies: Vec<Vec<Tally>>,
    left_in_bot: Vec<u64>,
}

impl Stats {
    /// `groups` skill groups, measured over `window` (virtual ms, by queue-entry time) in
    /// `batches` batches, service level against `target_ms`.
    pub fn new(groups: usize, window: (u64, u64), target_ms: u64, batches: u32) -> Self {
        let batches = batches.max(1) as usize;
        Stats {
            window,
            target_ms,
            tallies: vec![vec![Tally::default(); batches]; groups],
            left_in_bot: vec![0; groups],
        }
    }

    /// Counts one contact of `group` that entered the queue at `queued` (ignored outside the
    /// window).
    pub fn add(&mut self, group: u32, queued: u64, fate: Fate) {
        let (from, to) = self.window;
        if !(from..to).contains(&queued) {
            return;
        }
        let Some(per) = self.tallies.get_mut(group as usize) else { return };
        let n = per.len();
        let b = ((queued - from) as u128 * n as u128 / u128::from((to - from).max(1))) as usize;
        per[b.min(n - 1)].add(fate, self.target_ms);
    }

    /// Whether a contact that entered the queue at `queued` is measured.
    pub fn in_window(&self, queued: u64) -> bool {
        (self.window.0..self.window.1).contains(&queued)
    }

    pub fn add_left_in_bot(&mut self, group: u32) {
        if let Some(n) = self.left_in_bot.get_mut(group as usize) {
            *n += 1;
        }
    }

    /// Figures for `group` (all groups when `None`).
    pub fn figures(&self, group: Option<u32>) -> Figures {
        let batches = self.tallies.first().map_or(1, Vec::len);
        let mut per = vec![Tally::default(); batches];
        for (g, tallies) in self.tallies.iter().enumerate() {
            if group.is_none_or(|want| want as usize == g) {
                for (p, t) in per.iter_mut().zip(tallies) {
                    p.merge(t);
                }
            }
        }
        let mut total = Tally::default();
        for p in &per {
            total.merge(p);
        }
        let offered = |t: &Tally| t.offered > 0;
        let served = |t: &Tally| t.served > 0;
        Figures {
            offered: total.offered,
            served: total.served,
            abandoned: total.abandoned,
            unserved: total.unserved,
            service_level: estimate(&total, &per, offered, Tally::sl),
            abandonment: estimate(&total, &per, offered, Tally::abandonment),
            mean_wait: estimate(&total, &per, served, Tally::wait),
            p_wait: estimate(&total, &per, served, Tally::p_wait),
        }
    }

    /// Contacts that left during the bot stage, per group (all when `None`).
    pub fn left_in_bot(&self, group: Option<u32>) -> u64 {
        match group {
            Some(g) => self.left_in_bot.get(g as usize).copied().unwrap_or(0),
            None => self.left_in_bot.iter().sum(),
        }
    }
}

/// Busy agent-time over available agent-time within the window.
pub fn occupancy(run: &Run) -> f64 {
    ratio(run.busy_ms, run.available_ms)
}

/// Slot occupancy of the agents `member` picks (by number): their conversations over their
/// capacity, integrated over the time they were available within the window, with the
/// batch-means standard error over batches in which any of them was available.
pub fn slot_occupancy(run: &Run, member: impl Fn(usize) -> bool) -> Est {
    let batches = run.slots.first().map_or(1, Vec::len);
    let mut per = vec![Slots::default(); batches];
    for (_, slots) in run.slots.iter().enumerate().filter(|(a, _)| member(*a)) {
        for (p, s) in per.iter_mut().zip(slots) {
            p.busy += s.busy;
            p.available += s.available;
        }
    }
    let (busy, available) = per.iter().fold((0, 0), |(b, a), s| (b + s.busy, a + s.available));
    let xs: Vec<f64> =
        per.iter().filter(|s| s.available > 0).map(|s| ratio(s.busy, s.available)).collect();
    Est { value: ratio(busy, available), se: batch_se(&xs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-checked: two groups, two batches of 10 s each, target 20 s.
    #[test]
    fn stats_pool_groups_and_batch_means() {
        let mut s = Stats::new(2, (1_000, 21_000), 20_000, 2);
        s.add(0, 500, Fate::Served { wait: 0 }); // before the window: ignored
        s.add(0, 1_000, Fate::Served { wait: 0 }); // batch 0
        s.add(0, 5_000, Fate::Served { wait: 30_000 }); // batch 0, late
        s.add(1, 9_000, Fate::Abandoned); // batch 0
        s.add(0, 11_000, Fate::Served { wait: 10_000 }); // batch 1
        s.add(1, 20_999, Fate::Unserved); // batch 1
        s.add(1, 21_000, Fate::Served { wait: 0 }); // after: ignored
        s.add_left_in_bot(1);
        let all = s.figures(None);
        assert_eq!((all.offered, all.served, all.abandoned, all.unserved), (5, 3, 1, 1));
        // Batch 0: SL 1/3, abandonment 1/3; batch 1: SL 1/2, abandonment 0.
        assert!((all.service_level.value - 2.0 / 5.0).abs() < 1e-12);
        let se = |a: f64, b: f64| (a - b).abs() / 2.0;
        assert!((all.service_level.se.unwrap() - se(1.0 / 3.0, 0.5)).abs() < 1e-12);
        assert!((all.abandonment.value - 0.2).abs() < 1e-12);
        assert!((all.abandonment.se.unwrap() - se(1.0 / 3.0, 0.0)).abs() < 1e-12);
        // Served waits 0, 30 and 10 s: mean 40/3 s, 2 of 3 waited.
        assert!((all.mean_wait.value - 40.0 / 3.0).abs() < 1e-12);
        assert!((all.p_wait.value - 2.0 / 3.0).abs() < 1e-12);
        let g1 = s.figures(Some(1));
        assert_eq!((g1.offered, g1.served, g1.abandoned, g1.unserved), (2, 0, 1, 1));
        assert_eq!(g1.mean_wait.se, None, "no batch of group 1 served anyone");
        assert_eq!(
            (s.left_in_bot(Some(1)), s.left_in_bot(Some(0)), s.left_in_bot(None)),
            (1, 0, 1)
        );
    }
}
