//! What-if: a tenant's routing configuration (its groups' policies, its agents' groups and
//! capacities) under Poisson load per group, run through the core in virtual time. The
//! caller reads the configuration (over the API, for `switchboard ctl simulate`) and says who
//! is on shift; this module owns the model's assumptions and states them in
//! [`Forecast::assumptions`]:
//!
//! - contacts arrive as a Poisson stream per group, go straight to routing (no bot stage),
//!   are handled for an exponential time and, with a patience, abandon the queue after an
//!   exponential time;
//! - automatic replies and in-session timers are left out (nothing is said in a simulated
//!   conversation: the handle time stands for it), so an idle auto-end cannot cut a service;
//! - agents on shift stay online the whole run and accept every offer at once; groups in pull
//!   mode are routed as auto-accept (nobody picks in a simulation).

use switchboard_core::config::{AgentSettings, GroupSettings, OfferMode, TenantSettings};

use crate::driver::{self, Arrival, Center, Shift};
use crate::report::{self, Est, Figures};
use crate::rng::Rng;
use crate::{Error, Result};

/// The load on one skill group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Contacts per hour (Poisson arrivals).
    pub per_hour: f64,
    /// Mean handle time, seconds (exponential).
    pub handle_s: f64,
    /// Mean patience in the queue, seconds (exponential); `None`: nobody abandons.
    pub patience_s: Option<f64>,
}

/// A what-if run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tenant: TenantSettings,
    /// The tenant's groups; group number `g` is `driver::group_id(g)`.
    pub groups: Vec<GroupSettings>,
    /// The agents on shift for the whole run, their `groups` in `driver::group_id`s.
    pub agents: Vec<AgentSettings>,
    /// The load on each group (same order as `groups`); `None`: no contacts arrive there.
    pub loads: Vec<Option<Load>>,
    /// Simulated before measuring, so the measured window does not start from an empty center.
    pub warmup_ms: u64,
    /// The measured window.
    pub measured_ms: u64,
    /// Service-level threshold.
    pub target_ms: u64,
    /// Batches of the window for the standard errors.
    pub batches: u32,
    pub seed: u64,
}

/// The prediction for one group (or the whole center).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupForecast {
    /// Agents on shift in the group, and their conversation slots (summed capacity).
    pub agents: usize,
    pub slots: u64,
    pub figures: Figures,
    /// Conversations over capacity of the group's agents (whatever group they serve).
    pub occupancy: Est,
}

#[derive(Debug, Clone)]
pub struct Forecast {
    /// One per group of the plan, in its order.
    pub groups: Vec<GroupForecast>,
    pub all: GroupForecast,
    /// Contacts that arrived (warm-up included).
    pub arrived: u64,
    pub engine_calls: u64,
    /// What the model assumed, in sentences for the reader of the output.
    pub assumptions: Vec<String>,
}

impl Plan {
    /// Simulated time in total, ms (what a progress bar counts to).
    pub fn length_ms(&self) -> u64 {
        self.warmup_ms + self.measured_ms
    }

    fn check(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::Invalid(m));
        if self.loads.len() != self.groups.len() {
            return invalid(format!("{} loads for {} groups", self.loads.len(), self.groups.len()));
        }
        if self.measured_ms == 0 {
            return invalid("the measured time must be greater than zero".into());
        }
        for (g, load) in self.groups.iter().zip(&self.loads) {
            let Some(l) = load else { continue };
            let positive = |x: f64| x.is_finite() && x > 0.0;
            if !positive(l.per_hour) || !positive(l.handle_s) {
                return invalid(format!(
                    "group {}: arrival rate and handle time must be positive, got {} per hour and {} s",
                    g.name, l.per_hour, l.handle_s
                ));
            }
            if l.patience_s.is_some_and(|p| !positive(p)) {
                return invalid(format!("group {}: patience must be positive", g.name));
            }
        }
        Ok(())
    }
}

/// Runs the plan, calling `progress` with the simulated time (ms) now and then.
pub fn run(plan: &Plan, progress: impl FnMut(u64)) -> Result<Forecast> {
    plan.check()?;
    let mut assumptions = vec![
        "Poisson arrivals per group, exponential handle times and patience".to_owned(),
        "contacts go straight to routing; automatic replies and in-session timers are not simulated".to_owned(),
        "agents on shift stay online the whole run and accept every offer at once".to_owned(),
    ];
    let mut tenant = plan.tenant.clone();
    tenant.transfer_to_human = false;
    tenant.replies = Default::default();
    tenant.channel_replies.clear();
    tenant.keywords.clear();
    tenant.message_received = None;
    tenant.open_service = None;
    tenant.unreplied_alert = None;
    let mut pull = Vec::new();
    let groups: Vec<GroupSettings> = plan
        .groups
        .iter()
        .map(|g| {
            let mut g = g.clone();
            g.replies = Default::default();
            if g.policy.offer == OfferMode::Pull {
                pull.push(g.name.clone());
                g.policy.offer = OfferMode::AutoAccept;
            }
            g
        })
        .collect();
    if !pull.is_empty() {
        assumptions.push(format!(
            "pull-mode groups ({}) are routed as auto-accept: nobody picks in a simulation",
            pull.join(", ")
        ));
    }
    let agents: Vec<AgentSettings> = plan
        .agents
        .iter()
        .map(|a| AgentSettings { replies: Default::default(), ..a.clone() })
        .collect();
    let window = (plan.warmup_ms, plan.length_ms());
    let center = Center {
        tenant,
        groups,
        agents,
        window,
        target_ms: plan.target_ms,
        batches: plan.batches,
        pace: Vec::new(),
    };
    let shifts: Vec<Shift> = (0..plan.agents.len())
        .map(|a| {
            let agent = u32::try_from(a)
                .map_err(|_| Error::Invalid(format!("more than {} agents", u32::MAX)))?;
            Ok(Shift { at: 0, agent, online: true })
        })
        .collect::<Result<_>>()?;
    let arrivals = Merged::new(&plan.loads, plan.seed, window.1);
    let run = driver::run_with_progress(&center, arrivals, &shifts, progress)?;

    let forecast = |group: Option<u32>| {
        let member =
            |a: &AgentSettings| group.is_none_or(|g| a.groups.contains(&driver::group_id(g)));
        let on = || center.agents.iter().filter(|a| member(a));
        GroupForecast {
            agents: on().count(),
            slots: on().map(|a| u64::from(a.capacity)).sum(),
            figures: run.stats.figures(group),
            occupancy: report::slot_occupancy(&run, |a| member(&center.agents[a])),
        }
    };
    let groups = (0..center.groups.len()).map(|g| forecast(Some(g as u32))).collect();
    Ok(Forecast {
        groups,
        all: forecast(None),
        arrived: run.arrived,
        engine_calls: run.engine_calls,
        assumptions,
    })
}

/// One group's arrival stream.
#[derive(Debug, Clone)]
struct Stream {
    group: u32,
    rng: Rng,
    gap_ms: f64,
    handle_ms: f64,
    patience_ms: Option<f64>,
    /// Time of the next arrival, ms.
    next: f64,
}

/// The groups' Poisson streams merged in time order, each from its own generator (so adding
/// load to one group leaves the others' contacts as they were).
#[derive(Debug, Clone)]
struct Merged {
    streams: Vec<Stream>,
    end: u64,
}

impl Merged {
    fn new(loads: &[Option<Load>], seed: u64, end: u64) -> Self {
        let streams = loads
            .iter()
            .enumerate()
            .filter_map(|(g, l)| {
                let l = l.as_ref()?;
                let mut rng = Rng::stream(seed, g as u64);
                let gap_ms = 3_600_000.0 / l.per_hour;
                let next = rng.exp(gap_ms);
                Some(Stream {
                    group: g as u32,
                    rng,
                    gap_ms,
                    handle_ms: l.handle_s * 1000.0,
                    patience_ms: l.patience_s.map(|p| p * 1000.0),
                    next,
                })
            })
            .collect();
        Merged { streams, end }
    }
}

impl Iterator for Merged {
    type Item = Arrival;

    fn next(&mut self) -> Option<Arrival> {
        // Few groups: a linear scan is cheaper than a heap. Ties go to the lower group.
        let s = self.streams.iter_mut().min_by(|a, b| a.next.total_cmp(&b.next))?;
        let at = s.next.round() as u64;
        if at >= self.end {
            return None;
        }
        let handle = (s.rng.exp(s.handle_ms).round() as u64).max(1);
        let patience = s.patience_ms.map(|p| s.rng.exp(p).round() as u64);
        s.next += s.rng.exp(s.gap_ms);
        Some(Arrival {
            at,
            group: s.group,
            priority: 0,
            bot: None,
            leaves_in_bot: false,
            handle,
            patience,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(agents: usize, capacity: u32, loads: Vec<Option<Load>>) -> Plan {
        let groups = (0..loads.len())
            .map(|g| GroupSettings { name: format!("g{g}"), ..GroupSettings::default() })
            .collect();
        let all: Vec<_> = (0..loads.len() as u32).map(driver::group_id).collect();
        Plan {
            tenant: TenantSettings::default(),
            groups,
            agents: (0..agents)
                .map(|_| AgentSettings { capacity, groups: all.clone(), ..Default::default() })
                .collect(),
            loads,
            warmup_ms: 3_600_000,
            measured_ms: 8 * 3_600_000,
            target_ms: 20_000,
            batches: 16,
            seed: 3,
        }
    }

    fn load(per_hour: f64, handle_s: f64) -> Option<Load> {
        Some(Load { per_hour, handle_s, patience_s: None })
    }

    /// One group, capacity 1, no patience: M/M/N, so Erlang C gives SL and ASA, and the
    /// occupancy is the offered load over N.
    #[test]
    fn one_group_agrees_with_erlang_c() {
        let p = plan(10, 1, vec![load(160.0, 180.0)]);
        let f = run(&p, |_| {}).unwrap();
        let a = 160.0 * 180.0 / 3600.0; // 8 erlangs
        let want = crate::erlang::predict(10, a, 180.0, 20.0);
        let g = f.groups[0];
        let sl = g.figures.service_level;
        let within = |e: Est, x: f64| (e.value - x).abs() <= 4.0 * e.se.unwrap() + 0.01;
        assert!(within(sl, want.service_level), "SL {sl} vs {}", want.service_level);
        assert!(within(g.occupancy, 0.8), "occupancy {}", g.occupancy);
        assert_eq!((g.agents, g.slots), (10, 10));
        assert_eq!(f.all.figures.offered, g.figures.offered);
    }

    /// A slot is a server: three agents of capacity 2 in two groups, with patience, are the
    /// M/M/6+M queue Erlang A describes (handle times do not stretch with concurrency here).
    #[test]
    fn slots_of_two_groups_agree_with_erlang_a() {
        let mut p = plan(
            3,
            2,
            vec![Some(Load { per_hour: 40.0, handle_s: 300.0, patience_s: Some(180.0) }); 2],
        );
        p.measured_ms = 40 * 3_600_000;
        p.batches = 20;
        let f = run(&p, |_| {}).unwrap();
        let want = crate::erlang_a::predict(6, 80.0 / 3600.0, 300.0, 180.0, 20.0);
        let all = f.all.figures;
        eprintln!(
            "sim SL {} abandonment {} ASA {} occupancy {}; Erlang A SL {:.4} abandonment {:.4} ASA {:.1}",
            all.service_level,
            all.abandonment,
            all.mean_wait,
            f.all.occupancy,
            want.service_level,
            want.abandonment,
            want.mean_wait
        );
        let within =
            |e: Est, x: f64, floor: f64| (e.value - x).abs() <= 4.0 * e.se.unwrap() + floor;
        assert!(within(all.service_level, want.service_level, 0.01), "SL");
        assert!(within(all.abandonment, want.abandonment, 0.005), "abandonment");
        assert!(all.abandoned > 0 && all.mean_wait.value > 0.0, "some wait, some leave");
    }

    /// Capacity counts: the same load on agents of capacity 2 halves the slot occupancy.
    #[test]
    fn occupancy_counts_slots() {
        let one = run(&plan(10, 1, vec![load(100.0, 180.0)]), |_| {}).unwrap();
        let two = run(&plan(10, 2, vec![load(100.0, 180.0)]), |_| {}).unwrap();
        let (o1, o2) = (one.all.occupancy.value, two.all.occupancy.value);
        assert!((o1 / o2 - 2.0).abs() < 0.1, "{o1} vs {o2}");
        assert_eq!(two.all.slots, 20);
    }

    /// A group without load still has its row; offers and pull mode are routed too.
    #[test]
    fn every_group_gets_a_row_and_every_offer_mode_runs() {
        let mut p = plan(4, 2, vec![load(30.0, 300.0), None, load(20.0, 120.0)]);
        p.groups[0].policy.offer = OfferMode::Offer { timeout: std::time::Duration::from_secs(30) };
        p.groups[2].policy.offer = OfferMode::Pull;
        p.measured_ms = 3_600_000;
        let mut seen = Vec::new();
        let f = run(&p, |t| seen.push(t)).unwrap();
        assert_eq!(f.groups.len(), 3);
        assert_eq!(f.groups[1].figures.offered, 0);
        for g in [0, 2] {
            let fig = f.groups[g].figures;
            assert!(fig.offered > 0 && fig.served == fig.offered, "group {g}: {fig:?}");
        }
        assert!(f.assumptions.iter().any(|a| a.contains("g2")), "{:?}", f.assumptions);
        assert!(seen.last().is_some_and(|t| *t >= p.warmup_ms), "progress ends at the end");
    }

    #[test]
    fn bad_loads_are_refused_with_the_group() {
        let mut p = plan(1, 1, vec![load(-1.0, 10.0)]);
        let e = run(&p, |_| {}).unwrap_err().to_string();
        assert!(e.contains("g0") && e.contains("positive"), "{e}");
        p.loads = vec![];
        assert!(run(&p, |_| {}).is_err());
    }
}
