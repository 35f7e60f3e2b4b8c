//! Deterministic simulation of the cross-actor protocol (issue 12, item 5): a router side and
//! one conversation side per customer, wired through a simulated network in virtual time,
//! with delays, reordering, duplicates, losses and crash/restart of any side, all drawn from
//! one seed. Every invariant the property tests check on one engine is checked after every
//! step (see `mesh/checks.rs`), and the eventual ones whenever the network is quiet.
//!
//! A failure prints its seed and the last actions; `SIM_SEED=<seed>` replays that one seed,
//! `SIM_SEEDS=<n>` runs `n` seeds instead of the default.

#[path = "mesh/checks.rs"]
mod checks;
#[allow(dead_code)]
mod model;
#[path = "mesh/sim.rs"]
mod sim;

use sim::{Rng, Sim};

/// Seeds run by default: enough to cover every kind of step many times, within seconds.
const SEEDS: u64 = 150;
/// Steps per seed.
const STEPS: usize = 600;
/// Seeds that once failed; each is a regression case.
const REGRESSIONS: &[u64] = &[];

fn run(seed: u64) -> sim::Stats {
    let mut sim = Sim::new(seed);
    if let Err(why) = sim.run(STEPS) {
        panic!("{why}");
    }
    sim.stats
}

#[test]
fn the_protocol_keeps_every_invariant_under_faults() {
    if let Some(seed) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        let stats = run(seed);
        eprintln!("seed {seed}: {stats:?}");
        return;
    }
    let seeds = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(SEEDS);
    let mut draw = Rng::new(0x5eed);
    let mut total = sim::Stats::default();
    for seed in REGRESSIONS.iter().copied().chain((0..seeds).map(|_| draw.next())) {
        let s = run(seed);
        total.steps += s.steps;
        total.delivered += s.delivered;
        total.duplicated += s.duplicated;
        total.lost += s.lost;
        total.crashes += s.crashes;
        total.quiesced += s.quiesced;
        total.assigned += s.assigned;
        total.routed += s.routed;
        total.decisions += s.decisions;
    }
    eprintln!("{seeds} seeds: {total:?}");
    // The run exercised what it claims to.
    assert!(total.crashes > 0 && total.duplicated > 0 && total.lost > 0 && total.assigned > 0);
}
