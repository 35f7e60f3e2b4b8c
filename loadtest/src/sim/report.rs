//! The figures of a run: counts, service level, waits and occupancy, with standard errors
//! from batch means (the window cut into equal batches by queue-entry time; each batch's
//! figure is one observation, so correlation between neighbouring contacts stays inside it).

use super::driver::{Outcome, Run, Track};

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
    /// Mean wait of served contacts, seconds.
    pub mean_wait: Est,
    /// Share of served contacts that waited at all.
    pub p_wait: Est,
}

impl Figures {
    pub fn abandon_rate(&self) -> f64 {
        ratio(self.abandoned, self.offered)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
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
    fn add(&mut self, t: &Track, queued: u64, target_ms: u64) {
        self.offered += 1;
        match (t.assigned_at, t.outcome) {
            (Some(at), _) => {
                let wait = at - queued;
                self.served += 1;
                self.within += u64::from(wait <= target_ms);
                self.waited += u64::from(wait > 0);
                self.wait_ms += wait;
            }
            (None, Outcome::Abandoned) => self.abandoned += 1,
            (None, _) => self.unserved += 1,
        }
    }

    fn sl(&self) -> f64 {
        ratio(self.within, self.offered)
    }
    fn wait(&self) -> f64 {
        ratio(self.wait_ms, self.served) / 1000.0
    }
    fn p_wait(&self) -> f64 {
        ratio(self.waited, self.served)
    }
}

/// Pooled value with the batch-means standard error of `f` over non-empty batches.
fn estimate(total: &Tally, batches: &[Tally], f: impl Fn(&Tally) -> f64) -> Est {
    let xs: Vec<f64> = batches.iter().filter(|b| b.served > 0).map(&f).collect();
    let n = xs.len() as f64;
    let se = (xs.len() >= 2).then(|| {
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (var / n).sqrt()
    });
    Est { value: f(total), se }
}

/// Figures for `group` (all groups when `None`) over `window`, in `batches` batches.
pub fn figures(
    run: &Run,
    group: Option<u32>,
    window: (u64, u64),
    target_ms: u64,
    batches: u32,
) -> Figures {
    let batches = batches.max(1);
    let span = (window.1 - window.0).max(1);
    let mut total = Tally::default();
    let mut per = vec![Tally::default(); batches as usize];
    for t in run.tracks.iter().filter(|t| group.is_none_or(|g| t.group == g)) {
        let Some(q) = t.queued_at.filter(|q| (window.0..window.1).contains(q)) else {
            continue;
        };
        total.add(t, q, target_ms);
        let b = ((q - window.0) as u128 * u128::from(batches) / u128::from(span)) as usize;
        let last = per.len() - 1;
        per[b.min(last)].add(t, q, target_ms);
    }
    Figures {
        offered: total.offered,
        served: total.served,
        abandoned: total.abandoned,
        unserved: total.unserved,
        service_level: estimate(&total, &per, Tally::sl),
        mean_wait: estimate(&total, &per, Tally::wait),
        p_wait: estimate(&total, &per, Tally::p_wait),
    }
}

/// Busy agent-time over available agent-time within the window.
pub fn occupancy(run: &Run) -> f64 {
    ratio(run.busy_ms, run.available_ms)
}

/// Contacts that left during the bot stage, per group (all when `None`).
pub fn left_in_bot(run: &Run, group: Option<u32>) -> u64 {
    run.tracks
        .iter()
        .filter(|t| group.is_none_or(|g| t.group == g) && t.outcome == Outcome::LeftInBot)
        .count() as u64
}
