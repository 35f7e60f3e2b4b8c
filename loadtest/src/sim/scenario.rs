//! Synthetic scenarios: `erlang` (the M/M/N queue Erlang C describes, checked against it) and
//! `day` (a day of a large center, to show the engine's speed in virtual time).

use switchboard_core::config::GroupPolicy;
use switchboard_sim::driver::{self, Arrival, Center, Run};
use switchboard_sim::erlang::{self, Prediction};
use switchboard_sim::erlang_a;
use switchboard_sim::report::{self, Figures};
use switchboard_sim::rng::Rng;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// Poisson arrivals to group 0 with exponential handle times and, optionally, exponential
/// patience, until `end` (virtual ms).
#[derive(Debug, Clone)]
pub struct Poisson {
    rng: Rng,
    /// Mean gap between arrivals, ms.
    gap: f64,
    aht: f64,
    patience: Option<f64>,
    t: f64,
    end: u64,
    /// Share of arrivals at priority 1 (the rest at 0); drawn only when above zero, so the
    /// other draws stay the same.
    high_share: f64,
}

impl Poisson {
    /// `rate` per second, `aht` and `patience` in seconds.
    pub fn new(seed: u64, rate: f64, aht: f64, patience: Option<f64>, end: u64) -> Self {
        Poisson {
            rng: Rng::new(seed),
            gap: 1000.0 / rate,
            aht: aht * 1000.0,
            patience: patience.map(|p| p * 1000.0),
            t: 0.0,
            end,
            high_share: 0.0,
        }
    }

    /// `share` of the arrivals at priority 1.
    pub fn with_high_share(self, share: f64) -> Self {
        Poisson { high_share: share, ..self }
    }
}

impl Iterator for Poisson {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        self.t += self.rng.exp(self.gap);
        let at = self.t.round() as u64;
        if at >= self.end {
            return None;
        }
        let handle = self.rng.exp(self.aht).round() as u64;
        let patience = self.patience.map(|p| self.rng.exp(p).round() as u64);
        let priority = u8::from(self.high_share > 0.0 && self.rng.unit() < self.high_share);
        Some(Arrival { at, group: 0, priority, bot: None, leaves_in_bot: false, handle, patience })
    }
}

/// One single-skill FIFO center of `n` agents under Poisson load.
#[derive(Debug, Clone, Default)]
pub struct Single {
    pub agents: u32,
    /// Arrivals per second.
    pub rate: f64,
    /// Mean handle time, seconds.
    pub aht: f64,
    /// Mean patience, seconds; `None`: nobody abandons.
    pub patience: Option<f64>,
    /// Simulated length, ms, of which the first `warmup` ms are not measured.
    pub length: u64,
    pub warmup: u64,
    /// Service-level target, ms, and batches of the window for the standard errors.
    pub target_ms: u64,
    pub batches: u32,
    pub seed: u64,
    /// The group's routing policy (issue 14's rules: wrap-up, priority aging…); the core's
    /// default otherwise.
    pub policy: GroupPolicy,
    /// Share of contacts at priority 1 (the rest at 0).
    pub high_share: f64,
    /// Per agent: its proficiency level in the group (empty: none rated) and its pace
    /// (handle time factor; empty: 1.0).
    pub levels: Vec<u8>,
    pub pace: Vec<f64>,
    /// Helpers: this many more agents in a second group (number 1) with no traffic of its
    /// own, and the wait after which the first group's step lets them take its contacts
    /// (`None`: no step, they stay idle).
    pub helpers: u32,
    pub step_after: Option<std::time::Duration>,
    /// The wait after which a step of the first group lowers the level it needs to 1
    /// (`policy.min_level`); `None`: no such step.
    pub level_step_after: Option<std::time::Duration>,
}

impl Single {
    pub fn window(&self) -> (u64, u64) {
        (self.warmup, self.length)
    }

    pub fn run(&self) -> anyhow::Result<Run> {
        let mut agents = vec![vec![0]; self.agents as usize];
        agents.extend(vec![vec![1]; self.helpers as usize]);
        let groups = if self.helpers > 0 { 2 } else { 1 };
        let mut center =
            Center::uniform(groups, &agents, self.window(), self.target_ms, self.batches);
        center.groups[0].policy = self.policy.clone();
        let mut steps = Vec::new();
        if let Some(after) = self.step_after {
            steps.push(switchboard_core::config::Step {
                after,
                group: driver::group_id(1),
                min_level: None,
            });
        }
        if let Some(after) = self.level_step_after {
            steps.push(switchboard_core::config::Step {
                after,
                group: driver::group_id(0),
                min_level: Some(switchboard_core::config::MIN_PROFICIENCY),
            });
        }
        steps.sort_by_key(|s| s.after);
        center.groups[0].policy.steps = steps;
        for (a, level) in center.agents.iter_mut().zip(&self.levels) {
            a.proficiency.insert(driver::group_id(0), *level);
        }
        center.pace = self.pace.clone();
        let online: Vec<driver::Shift> = (0..self.agents + self.helpers)
            .map(|agent| driver::Shift { at: 0, agent, online: true })
            .collect();
        let arrivals = Poisson::new(self.seed, self.rate, self.aht, self.patience, self.length)
            .with_high_share(self.high_share);
        Ok(driver::run(&center, arrivals, &online)?)
    }
}

/// The Erlang C (no patience) or Erlang A (exponential patience) comparison for one staffing
/// level.
#[derive(Debug, Clone, Copy)]
pub struct Comparison {
    pub n: u32,
    pub predicted: Prediction,
    pub simulated: Figures,
    pub occupancy: f64,
    /// The core's estimated wait against the realised one.
    pub ewt: driver::EwtAccuracy,
}

/// `per_30_min` contacts per half hour, `aht`, mean `patience` (`None`: nobody abandons) and
/// `target` in seconds, `days` simulated days after one hour of warm-up.
#[allow(clippy::too_many_arguments)]
pub fn compare(
    n: u32,
    per_30_min: f64,
    aht: f64,
    patience: Option<f64>,
    target: f64,
    days: f64,
    batches: u32,
    seed: u64,
) -> anyhow::Result<Comparison> {
    let rate = per_30_min / 1800.0;
    let single = Single {
        agents: n,
        rate,
        aht,
        patience,
        length: HOUR_MS + (days * DAY_MS as f64) as u64,
        warmup: HOUR_MS,
        target_ms: (target * 1000.0) as u64,
        batches,
        seed: Rng::stream(seed, u64::from(n)).next_u64(),
        ..Single::default()
    };
    let run = single.run()?;
    Ok(Comparison {
        n,
        predicted: match patience {
            Some(p) => erlang_a::predict(n, rate, aht, p, target),
            None => erlang::predict(n, rate * aht, aht, target),
        },
        simulated: run.stats.figures(None),
        occupancy: report::occupancy(&run),
        ewt: run.ewt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shorter run than the CLI's, still long enough for batch-means standard errors of a
    /// few percent; deterministic seed, so not flaky. Agreement within 5 standard errors
    /// (plus a small absolute floor for the discreteness of ms timestamps).
    #[test]
    fn simulation_agrees_with_erlang_c() {
        for n in 11..=14 {
            let c = compare(n, 100.0, 180.0, None, 20.0, 14.0, 14, 42).unwrap();
            let s = c.simulated;
            assert_eq!(s.served, s.offered, "nobody abandons in the Erlang scenario");
            assert!(s.offered > 60_000, "{}", s.offered);
            let close = |what: &str, sim: report::Est, want: f64, floor: f64| {
                let se = sim.se.expect("batches give a standard error");
                assert!(
                    (sim.value - want).abs() <= 5.0 * se + floor,
                    "N={n} {what}: simulated {sim} vs Erlang C {want:.4}"
                );
            };
            eprintln!("N={n}: P(wait) {} SL {} ASA {}", s.p_wait, s.service_level, s.mean_wait);
            close("P(wait)", s.p_wait, c.predicted.p_wait, 0.005);
            close("service level", s.service_level, c.predicted.service_level, 0.005);
            close("mean wait", s.mean_wait, c.predicted.mean_wait, 0.5);
            assert!((c.occupancy - c.predicted.occupancy).abs() < 0.03, "{}", c.occupancy);
        }
    }

    /// The same with exponential patience (mean 120 s) against Erlang A, N = 9 (overloaded
    /// without abandonment) to 11.
    #[test]
    fn simulation_agrees_with_erlang_a() {
        for n in 9..=11 {
            let c = compare(n, 100.0, 180.0, Some(120.0), 20.0, 14.0, 14, 7).unwrap();
            let (s, p) = (c.simulated, c.predicted);
            assert!(s.abandoned > 0 && s.unserved == 0, "{s:?}");
            eprintln!(
                "N={n}: aband. {} vs {:.4}  P(wait) {} vs {:.4}  SL {} vs {:.4}  ASA {} vs {:.1}",
                s.abandonment,
                p.abandonment,
                s.p_wait,
                p.p_wait,
                s.service_level,
                p.service_level,
                s.mean_wait,
                p.mean_wait
            );
            let close = |what: &str, sim: report::Est, want: f64, floor: f64| {
                let se = sim.se.expect("batches give a standard error");
                assert!(
                    (sim.value - want).abs() <= 5.0 * se + floor,
                    "N={n} {what}: simulated {sim} vs Erlang A {want:.4}"
                );
            };
            close("abandonment", s.abandonment, p.abandonment, 0.002);
            close("P(wait)", s.p_wait, p.p_wait, 0.005);
            close("service level", s.service_level, p.service_level, 0.005);
            close("mean wait", s.mean_wait, p.mean_wait, 0.5);
            assert!((c.occupancy - p.occupancy).abs() < 0.03, "{} vs {}", c.occupancy, p.occupancy);
        }
    }

    // The driver's memory check: the driver lives in `switchboard-sim`, the scenario it runs
    // here.
    fn single(hours: u64) -> Run {
        let length = hours * 3_600_000;
        let s = Single {
            agents: 20,
            rate: 0.1,
            aht: 180.0,
            patience: Some(120.0),
            length,
            warmup: 0,
            target_ms: 20_000,
            batches: 4,
            seed: 9,
            ..Single::default()
        };
        s.run().unwrap()
    }

    /// What the driver and the engine hold at once does not grow with the number of contacts:
    /// ten times the contacts, about the same peak, and far below the contact count (before
    /// `take_ended`/`evict_customer` and streaming statistics the engine held every customer
    /// and the driver a record per contact).
    #[test]
    fn retained_state_does_not_grow_with_the_run() {
        let (short, long) = (single(4), single(40));
        assert!(long.arrived >= 9 * short.arrived, "{} vs {}", long.arrived, short.arrived);
        let (s, l) = (short.peak, long.peak);
        eprintln!("{} contacts: {s:?}; {} contacts: {l:?}", short.arrived, long.arrived);
        for (what, s, l) in [
            ("open contacts", s.tracks, l.tracks),
            ("pending events", s.events, l.events),
            ("engine customers", s.engine_customers, l.engine_customers),
            ("engine conversations", s.engine_conversations, l.engine_conversations),
        ] {
            assert!(s > 0 && l <= 2 * s + 20, "{what}: {s} at 4 h, {l} at 40 h");
            assert!(l as u64 * 50 < long.arrived, "{what}: {l} of {} contacts", long.arrived);
        }
        let f = long.stats.figures(None);
        assert_eq!(f.offered, long.arrived, "every contact is counted once");
        assert_eq!(f.served + f.abandoned + f.unserved, f.offered);
    }
}
