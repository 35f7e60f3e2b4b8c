//! `loadtest run --start-node --compare-bin B --pairs N`: the same contact-center scenario on
//! two node builds, in alternating order (A B, B A, A B, …, so a drift of the machine over the
//! runs weighs on both alike), each run on a fresh node and data directory. Prints every run
//! and, per build, the mean of node CPU per command and of the store threads' share, the
//! median p99s, how many runs held the rate, and the whole machine's busy CPU per command
//! (the load generator included: a change that only moves work onto it shows there); then
//! B ÷ A within each pair, and whether the pairs agree on its side of 1.
//!
//! Why: this machine's figures move by about ±8% from run to run, more than most single
//! changes save, so one run per build says nothing. Alternating pairs, summarised the same
//! way every time, are what a claim of a few percent needs. Even so, three pairs that agree
//! are weak evidence for a few percent: by chance alone all three fall on one side of 1 one
//! time in four. On 2026-12-06 a build measured 0.926 against the base (every pair below 1),
//! yet 1.002 against a third build that measured 1.006 against the same base: a claim of a
//! few percent needs its pairs repeated, or a second comparison that agrees.

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::center::stats::Report;
use crate::cli::{Mode, RunArgs};

/// One run of one build.
#[derive(Debug, Clone)]
pub struct Run {
    /// 0: `--node-bin` (A), 1: `--compare-bin` (B).
    pub build: usize,
    pub report: Report,
    /// The whole machine's busy CPU over the run (setup included), seconds.
    pub machine_busy_s: Option<f64>,
}

/// Runs `--pairs` pairs and prints the comparison.
pub async fn run(args: &RunArgs) -> anyhow::Result<Vec<Report>> {
    let Some(b) = args.compare_bin.clone() else { bail!("--compare-bin not given") };
    if !args.start_node {
        bail!("--compare-bin starts each build's node itself: pass --start-node");
    }
    if !matches!(args.mode, Mode::Poisson | Mode::Trace) {
        bail!("--compare-bin compares the contact-center modes (poisson, trace)");
    }
    if !args.sweep.is_empty() || args.baseline.is_some() || args.baseline_only {
        bail!("--compare-bin runs one rate, without the baseline: drop --sweep and --baseline");
    }
    let a = args.node_bin.clone().unwrap_or_else(crate::node::default_bin);
    let builds = [a, b];
    let mut runs = Vec::new();
    for pair in 0..args.pairs.max(1) {
        for build in order(pair) {
            println!("\n=== pair {} of {}: {} ===", pair + 1, args.pairs, label(&builds, build));
            let mut one = args.clone();
            one.node_bin = Some(builds[build].clone());
            one.compare_bin = None;
            let before = crate::node::busy_seconds();
            let mut reports = Box::pin(crate::cli::run(&one)).await?;
            let after = crate::node::busy_seconds();
            let report = reports.pop().context("the run made no report")?;
            let machine_busy_s = before.zip(after).map(|(b, a)| a - b);
            runs.push(Run { build, report, machine_busy_s });
        }
    }
    println!("\n{}", summary(&builds, &runs));
    Ok(runs.into_iter().map(|r| r.report).collect())
}

/// A then B on even pairs, B then A on odd ones.
fn order(pair: u32) -> [usize; 2] {
    if pair.is_multiple_of(2) { [0, 1] } else { [1, 0] }
}

fn label(builds: &[PathBuf; 2], build: usize) -> String {
    format!("{} {}", ["A", "B"][build], builds[build].display())
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() { "n/a".into() } else { format!("{:.1} ({min:.0}–{max:.0})", mean(v)) }
}

/// Every run, then per build: means with their range, median p99s, runs held; and B ÷ A.
pub fn summary(builds: &[PathBuf; 2], runs: &[Run]) -> String {
    let mut out = String::from("comparison (alternating pairs; CPU in µs per command)\n");
    out.push_str(&format!(
        "  {:>3} {:>5} {:>8} {:>13} {:>12} {:>13} {:>22} verdict\n",
        "run",
        "build",
        "node",
        "store threads",
        "machine",
        "p99 msg→agent",
        "p99 arrival→assignment"
    ));
    let machine = |r: &Run| r.machine_busy_s.map(|s| s * 1e6 / r.report.commands.max(1) as f64);
    for (i, r) in runs.iter().enumerate() {
        let f = |v: Option<f64>| v.map_or("n/a".into(), |v| format!("{v:.0}"));
        out.push_str(&format!(
            "  {:>3} {:>5} {:>8} {:>13} {:>12} {:>13.1} {:>22.1} {}\n",
            i + 1,
            ["A", "B"][r.build],
            f(r.report.cpu_us_per_command),
            f(r.report.store_threads_us_per_command),
            f(machine(r)),
            r.report.message_to_agent.p99_ms,
            r.report.arrival_to_assignment.p99_ms,
            if r.report.verdict.held { "held" } else { "not held" },
        ));
    }
    let mut means = [f64::NAN; 2];
    for (build, mean_node) in means.iter_mut().enumerate() {
        let of: Vec<&Run> = runs.iter().filter(|r| r.build == build).collect();
        let pick = |f: &dyn Fn(&Run) -> Option<f64>| of.iter().filter_map(|r| f(r)).collect();
        let node: Vec<f64> = pick(&|r| r.report.cpu_us_per_command);
        let store: Vec<f64> = pick(&|r| r.report.store_threads_us_per_command);
        let busy: Vec<f64> = pick(&machine);
        let msg: Vec<f64> = pick(&|r| Some(r.report.message_to_agent.p99_ms));
        let assign: Vec<f64> = pick(&|r| Some(r.report.arrival_to_assignment.p99_ms));
        *mean_node = mean(&node);
        out.push_str(&format!(
            "  {}: node {}, store threads {}, machine {}; median p99 msg→agent {:.1} ms, \
             arrival→assignment {:.1} ms; held {} of {}\n",
            label(builds, build),
            spread(&node),
            spread(&store),
            spread(&busy),
            median(&msg),
            median(&assign),
            of.iter().filter(|r| r.report.verdict.held).count(),
            of.len(),
        ));
    }
    out.push_str(&format!("  B ÷ A, mean node CPU per command: {:.3}\n", means[1] / means[0]));
    let cpu: Vec<(usize, Option<f64>)> =
        runs.iter().map(|r| (r.build, r.report.cpu_us_per_command)).collect();
    if let Some(line) = by_pair(&pair_ratios(&cpu)) {
        out.push_str(&format!("  B ÷ A by pair: {line}\n"));
    }
    out
}

/// Node CPU per command of B over A within each pair (runs `2k` and `2k + 1`, in either
/// order), for pairs where both runs read it. Each pair ran close together in time, so its
/// ratio is less moved by the machine's drift than the ratio of the means, and their spread
/// shows how much a claim can rest on.
fn pair_ratios(runs: &[(usize, Option<f64>)]) -> Vec<f64> {
    runs.chunks(2)
        .filter_map(|pair| {
            let of = |build| pair.iter().find(|r| r.0 == build).and_then(|r| r.1);
            of(0).zip(of(1)).filter(|(a, _)| *a > 0.0).map(|(a, b)| b / a)
        })
        .collect()
}

/// The pairs' ratios, and whether they agree on which build used less (`None`: no pair).
fn by_pair(ratios: &[f64]) -> Option<String> {
    if ratios.is_empty() {
        return None;
    }
    let (low, high) =
        ratios.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &r| (l.min(r), h.max(r)));
    let verdict = if high < 1.0 {
        "B used less in every pair"
    } else if low > 1.0 {
        "B used more in every pair"
    } else {
        // Pairs on both sides of 1 (or at it): these runs do not tell the builds apart.
        "the pairs disagree: within this machine's noise"
    };
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    Some(format!("{} ({verdict})", each.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_alternate_their_order() {
        let runs: Vec<usize> = (0..3).flat_map(order).collect();
        assert_eq!(runs, vec![0, 1, 1, 0, 0, 1]);
    }

    #[test]
    fn medians_and_means_of_a_few_runs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(mean(&[1.0, 2.0, 3.0]), 2.0);
        assert!(median(&[]).is_nan());
        assert_eq!(spread(&[200.0, 210.0, 220.0]), "210.0 (200–220)");
    }

    #[test]
    fn each_pair_gives_b_over_a_and_the_pairs_say_whether_they_agree() {
        // Runs in the order `order` makes them: A B, B A, A B; a run without a figure
        // leaves its pair out.
        let runs = [
            (0, Some(200.0)),
            (1, Some(180.0)),
            (1, Some(190.0)),
            (0, Some(200.0)),
            (0, None),
            (1, Some(150.0)),
        ];
        assert_eq!(pair_ratios(&runs), vec![0.9, 0.95]);
        assert_eq!(by_pair(&[0.9, 0.95]).unwrap(), "0.900, 0.950 (B used less in every pair)");
        assert_eq!(
            by_pair(&[0.953, 1.051, 1.006]).unwrap(),
            "0.953, 1.051, 1.006 (the pairs disagree: within this machine's noise)"
        );
        assert_eq!(by_pair(&[1.02]).unwrap(), "1.020 (B used more in every pair)");
        assert_eq!(by_pair(&[]), None);
    }
}
