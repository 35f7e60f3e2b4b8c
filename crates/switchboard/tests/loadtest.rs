//! Smoke runs of `loadtest run` against a real `switchboard serve` process: each live scenario
//! (Poisson with the PostgreSQL baseline, the bank trace over two targets, the message-rate
//! modes, the floor, a rate sweep) runs briefly and must complete and report; and `loadtest history`,
//! which starts nodes of its own, runs a few hundred conversations. Nothing here asserts on
//! time or speed; the `sim` scenarios have their own smoke tests in the loadtest crate.

mod support;

use clap::Parser;
use support::Node;
use switchboard_loadtest::cli::{self, Cli, Command};

fn args(targets: &str, extra: &[&str]) -> cli::RunArgs {
    let mut argv = vec!["loadtest", "run", "--target", targets, "--quiet"];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("arguments").command {
        Command::Run(args) => *args,
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_scenarios_complete_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("node"));
    let json = dir.path().join("report.json");

    // Poisson arrivals, offers accepted, then the same arrivals on the PostgreSQL baseline.
    let poisson = args(
        &node.grpc,
        &[
            "--mode",
            "poisson",
            "--rate",
            "10",
            "--seconds",
            "2",
            "--handle",
            "1",
            "--patience",
            "5",
            "--message-interval",
            "0.25",
            "--think-ms",
            "50",
            "--capacity",
            "2",
            "--drain-seconds",
            "20",
            "--baseline",
            "postgres",
            "--json",
            json.to_str().unwrap(),
            "--node-pid",
            &node.pid().to_string(),
            "--metrics",
            &node.metrics,
        ],
    );
    let reports = cli::run(&poisson).await.expect("poisson run");
    assert_eq!(reports.len(), 2, "switchboard and the baseline");
    for r in &reports {
        assert!(r.arrivals > 0 && r.opened > 0, "{}", r.text());
        assert!(r.commands > 0, "{}", r.text());
        // A verdict either way, with its reasons when not held (no assertion on speed).
        assert!(r.verdict.held || !r.verdict.reasons.is_empty(), "{}", r.text());
    }
    // Switchboard's CPU per command is read from the node's PID (or its /metrics).
    assert!(reports[0].cpu_us_per_command.is_some(), "{}", reports[0].text());
    let written = std::fs::read_to_string(&json).unwrap();
    assert!(written.contains("\"reports\"") && written.contains("message_to_agent"));
    assert!(written.contains("\"verdict\"") && written.contains("cpu_us_per_command"));

    // The bank's trace, auto-accept, over the same node under two targets, its customers'
    // messages and agents' commands on command streams.
    let trace = args(
        &format!("{0},{0}", node.grpc),
        &[
            "--mode",
            "trace",
            "--speedup",
            "600",
            "--seconds",
            "2",
            "--message-interval",
            "0.5",
            "--think-ms",
            "50",
            "--offer-mode",
            "auto",
            "--drain-seconds",
            "20",
            "--gateway-stream",
            "--desk-stream",
        ],
    );
    let reports = cli::run(&trace).await.expect("trace run");
    assert_eq!(reports.len(), 1);
    assert!(reports[0].arrivals > 0, "{}", reports[0].text());
    assert!(reports[0].first_error.is_none(), "{}", reports[0].text());

    // A sweep over two small rates, Switchboard only: one report per rate it held (it stops
    // after the first it does not), and the highest held in the JSON.
    let sweep_json = dir.path().join("sweep.json");
    let sweep = args(
        &node.grpc,
        &[
            "--mode",
            "poisson",
            "--sweep",
            "2,4",
            "--seconds",
            "1",
            "--handle",
            "0.5",
            "--patience",
            "0",
            "--think-ms",
            "20",
            "--drain-seconds",
            "20",
            "--node-pid",
            &node.pid().to_string(),
            "--json",
            sweep_json.to_str().unwrap(),
        ],
    );
    let reports = cli::run(&sweep).await.expect("sweep");
    assert!(!reports.is_empty() && reports.len() <= 2);
    let written = std::fs::read_to_string(&sweep_json).unwrap();
    assert!(written.contains("highest_held"), "{written}");

    // The message-rate modes, with a call per message and on PostMessages streams.
    for (mode, stream) in [("open", ""), ("closed", ""), ("open", "--gateway-stream")] {
        let mut flags = vec!["--mode", mode, "--rate", "20", "--seconds", "1", "--agents", "2"];
        flags.extend([stream].into_iter().filter(|f| !f.is_empty()));
        cli::run(&args(&node.grpc, &flags)).await.expect(mode);
    }
    // The floor: health checks through the node's layers, its CPU read from its PID.
    let pid = node.pid().to_string();
    let floor = ["--mode", "floor", "--rate", "50", "--seconds", "1", "--node-pid", &pid];
    assert!(cli::run(&args(&node.grpc, &floor)).await.expect("floor").is_empty());
}

#[test]
fn remote_targets_are_refused_without_the_flag() {
    let remote = args("http://10.1.2.3:7400", &[]);
    assert!(cli::check_targets(&remote).is_err());
    let allowed = args("http://10.1.2.3:7400", &["--allow-remote"]);
    assert!(cli::check_targets(&allowed).is_ok());
    for local in ["http://127.0.0.1:7400", "http://localhost:1", "http://[::1]:7400"] {
        assert!(cli::check_targets(&args(local, &[])).is_ok(), "{local}");
    }
}

/// `loadtest history` with tiny numbers: it starts its own node (this build's binary),
/// restarts it at each checkpoint and (`--warm`) 100 conversations before the second, and
/// must complete and report every field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_completes_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("history.json");
    let argv = [
        "loadtest",
        "history",
        "--node-bin",
        env!("CARGO_BIN_EXE_switchboard"),
        "--conversations",
        "300",
        "--checkpoints",
        "100,300",
        "--concurrency",
        "8",
        "--agents",
        "2",
        "--snapshot-every",
        "200",
        "--warm",
        "100",
        "--quiet",
        "--json",
        json.to_str().unwrap(),
    ];
    let history = match Cli::try_parse_from(argv).expect("arguments").command {
        Command::History(args) => *args,
        _ => unreachable!(),
    };
    let report = switchboard_loadtest::history::run(&history).await.expect("history run");
    assert_eq!(report.checkpoints.len(), 2, "{}", report.summary());
    for c in &report.checkpoints {
        assert!(c.conversations > 0 && c.rss_bytes > 0 && c.store_bytes > 0, "{}", c.line());
        assert!(c.snapshot_bytes.is_some_and(|b| b > 0), "{}", c.line());
        assert_eq!(c.errors, 0, "{}", c.line());
        let restart = c.restart.as_ref().expect("restarted at the checkpoint");
        assert!(restart.clean_exit && restart.rss_after_bytes.is_some(), "{}", c.line());
        assert!(restart.routing_seconds.is_some(), "routes again: {}", c.line());
    }
    assert_eq!(report.checkpoints[1].conversations, 300, "{}", report.summary());
    assert!(report.checkpoints[1].rss_delta_per_conversation_bytes.is_some());
    let v = &report.verdict;
    assert!(v.rss_held.is_some() && v.restart_held.is_some(), "{}", report.summary());
    let written = std::fs::read_to_string(&json).unwrap();
    for field in [
        "rss_bytes",
        "rss_delta_per_conversation_bytes",
        "store_bytes",
        "snapshot_bytes",
        "cpu_us_per_conversation",
        "cpu_us_per_command",
        "conversations_per_s",
        "restart_seconds",
        "rss_after_bytes",
        "routing_seconds",
        "warm",
        "verdict",
    ] {
        assert!(written.contains(field), "{field} missing from {written}");
    }
}
