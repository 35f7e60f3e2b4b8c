//! The command line: `loadtest run …` against live targets, `loadtest sim …` in virtual time.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use tonic::transport::Channel;

use crate::center::{self, grpc::Switchboard, postgres::Postgres, scenario, stats::Report};
use crate::node::{CpuProbe, NodeProcess, NodeSpec};
use crate::{micro, node, sim};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Contact center: Poisson arrivals of customers, simulated agents.
    Poisson,
    /// Contact center: the bank's August 1999 calls, time-compressed.
    Trace,
    /// Messages to open conversations at a fixed rate (latency).
    Open,
    /// Messages to open conversations back to back (peak durable acks/s).
    Closed,
    /// Health checks at `--rate` per second: the node's CPU per call before any of its work.
    Floor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Baseline {
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OfferMode {
    /// Agents receive offers and accept them.
    Offer,
    /// Conversations are assigned at once.
    Auto,
}

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    about = "Measure Switchboard: load live nodes, or simulate the routing engine"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive Switchboard node(s) over the public gRPC API and measure them.
    Run(Box<RunArgs>),
    /// Start a node and measure how one tenant's memory, store, CPU and restart time grow with
    /// its history of ended conversations.
    History(Box<crate::history::HistoryArgs>),
    /// Drive the routing engine (switchboard-core) in virtual time and report queue figures.
    Sim(sim::SimArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// gRPC endpoints: repeat, or a comma list. Customers and agents are spread over them.
    #[arg(
        long = "target",
        alias = "addr",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7400"
    )]
    pub targets: Vec<String>,
    #[arg(long, value_enum, default_value = "poisson")]
    pub mode: Mode,
    /// Arrivals per second (poisson); messages per second (open); health checks (floor).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Arrivals (or messages) are scheduled over this many seconds of run time.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// At most this many arrivals.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_arrivals: usize,
    /// Agents; default: enough for the peak concurrency with 25% headroom (poisson, trace),
    /// 20 (open, closed).
    #[arg(long)]
    pub agents: Option<u32>,
    /// Conversations an agent holds at once.
    #[arg(long, default_value_t = 8)]
    pub capacity: u32,
    /// Mean handle time, seconds (poisson; exponential).
    #[arg(long, default_value_t = 10.0)]
    pub handle: f64,
    /// Mean patience, seconds (poisson; exponential; 0: nobody leaves).
    #[arg(long, default_value_t = 30.0)]
    pub patience: f64,
    /// Nobody leaves sooner than this, seconds (poisson and trace): a shorter patience is
    /// raised to it. An exponential patience of mean 30 s is under 5 ms for 1 customer in
    /// 6,000, shorter than any round trip: such a customer abandons however fast the system.
    #[arg(long, default_value_t = 1.0)]
    pub min_patience: f64,
    /// Seconds between two messages of an assigned customer.
    #[arg(long, default_value_t = 1.0)]
    pub message_interval: f64,
    /// Agent's think time before each reply, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub think_ms: u64,
    #[arg(long, value_enum, default_value = "offer")]
    pub offer_mode: OfferMode,
    /// After the arrival window, wait at most this long for conversations to finish.
    #[arg(long, default_value_t = 30.0)]
    pub drain_seconds: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The call records (trace).
    #[arg(long, default_value_os_t = sim::default_csv())]
    pub csv: PathBuf,
    /// Day of August 1999 to replay (trace).
    #[arg(long, default_value_t = 2)]
    pub day: u32,
    /// Hour of the day the replay starts from (trace).
    #[arg(long, default_value_t = 8)]
    pub from_hour: u32,
    /// Time compression of the replay (trace): 60 plays an hour in a minute.
    #[arg(long, default_value_t = 60.0)]
    pub speedup: f64,
    /// Also run the same scenario on a baseline, after Switchboard, and compare.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// The baseline's database (its schema `loadtest_baseline` is dropped and recreated);
    /// default: a throwaway PostgreSQL server started for the run (Debian's binaries).
    #[arg(long, env = "LOADTEST_PG_URL")]
    pub pg_url: Option<String>,
    /// Pooled connections for the baseline's customer and agent calls. Sized for the
    /// concurrency: with 16, commits queue for a connection at ~30 arrivals/s on 2 cores.
    #[arg(long, default_value_t = 64)]
    pub pg_connections: usize,
    /// Router workers (one connection each) running the baseline's assignment transaction.
    #[arg(long, default_value_t = 2)]
    pub pg_routers: usize,
    /// Skip Switchboard: run the baseline only.
    #[arg(long)]
    pub baseline_only: bool,
    /// Create the load's tenant with `TENANT_ROUTING_TENANT_ACTOR`: one tenant actor serves
    /// it (the earlier design), instead of the product's default, conversation, agent and
    /// router actors spread over the cluster (issue 12).
    #[arg(long, conflicts_with = "actor_routing")]
    pub tenant_actor: bool,
    /// Customers' messages go on PostMessages streams (one per connection), as a high-rate
    /// gateway sends them, instead of one PostMessage call each.
    #[arg(long)]
    pub gateway_stream: bool,
    /// Agents' commands (accept, reply, end) go on DeskCommands streams (one per
    /// connection), instead of one call each.
    #[arg(long)]
    pub desk_stream: bool,
    /// Conversation, agent and router actors: the default now; kept so older command lines
    /// still run.
    #[arg(long, hide = true)]
    pub actor_routing: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print the report as JSON on stdout too, after the text.
    #[arg(long)]
    pub report_json: bool,
    /// No live progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Posters sending back to back (closed).
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Customers with open conversations (open, closed).
    #[arg(long, default_value_t = 200)]
    pub customers: u32,
    /// gRPC connections per target.
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    /// Allow targets outside 127.0.0.0/8 and ::1.
    #[arg(long)]
    pub allow_remote: bool,
    /// The verdict: a system holds the offered rate if, besides serving every arrival, p99 of
    /// customer message → agent and of arrival → assignment stay under this (milliseconds).
    #[arg(long, default_value_t = 50.0)]
    pub hold_p99_ms: f64,
    /// Run the scenario (poisson) at each of these arrival rates, lowest first, and report the
    /// highest rate each system held; a system is not run again above a rate it failed.
    #[arg(long, value_delimiter = ',')]
    pub sweep: Vec<f64>,
    /// With `--sweep`: run each system up to this many times at each rate; it holds the rate
    /// if most of the runs held it (it stops once the majority is decided). On a shared or
    /// small machine one run's p99 at the edge of the bound moves from run to run; odd
    /// values avoid ties.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub attempts: u32,
    /// The node's metrics endpoint (`host:port`, e.g. 127.0.0.1:9400), for its CPU time
    /// (`process_cpu_seconds_total`) per command.
    #[arg(long)]
    pub metrics: Option<String>,
    /// The node's PID, to read its CPU time from `/proc/<pid>/stat` when `/metrics` does not
    /// export it (same machine only).
    #[arg(long)]
    pub node_pid: Option<u32>,
    /// Start a node of our own (fresh temporary data directory, loopback, tenant rate limit
    /// off) and run against it instead of `--target`; stopped by PID at the end.
    #[arg(long)]
    pub start_node: bool,
    /// The `switchboard` binary for `--start-node`; default: beside this binary.
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// With `--start-node`: compare this `switchboard` binary (B) with `--node-bin` (A) in
    /// `--pairs` alternating pairs of the same run, and summarise both (poisson, trace).
    #[arg(long, requires = "start_node")]
    pub compare_bin: Option<PathBuf>,
    /// With `--compare-bin`: how many pairs of runs (A B, then B A, …).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub pairs: u32,
}

pub async fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => run(&args).await.map(drop),
        Command::History(args) => crate::history::run(&args).await.map(drop),
        Command::Sim(args) => sim::run(&args),
    }
}

/// Refuses a target that is not loopback unless `--allow-remote`.
pub fn check_targets(args: &RunArgs) -> anyhow::Result<()> {
    for t in &args.targets {
        let rest = t.split("://").nth(1).unwrap_or(t);
        let host = if let Some(v6) = rest.strip_prefix('[') {
            v6.split(']').next().unwrap_or("")
        } else {
            rest.split([':', '/']).next().unwrap_or("")
        };
        let loopback = host == "localhost"
            || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !loopback && !args.allow_remote {
            bail!("{t} is not a loopback address; pass --allow-remote to load a remote node");
        }
    }
    if args.targets.is_empty() {
        bail!("no --target");
    }
    Ok(())
}

/// A node `--start-node` started, and its directory (removed after the node stopped).
struct OwnNode {
    node: NodeProcess,
    _dir: tempfile::TempDir,
}

async fn start_node(args: &RunArgs) -> anyhow::Result<OwnNode> {
    let dir = tempfile::Builder::new().prefix("loadtest-run-").tempdir()?;
    let bin = args.node_bin.clone().unwrap_or_else(node::default_bin);
    let spec = NodeSpec::new(bin, dir.path().join("data"), dir.path().join("node.log"));
    let node = tokio::task::spawn_blocking(move || spec.start(Duration::from_secs(120))).await??;
    println!(
        "started node pid {} on {} (log {})",
        node.pid,
        node.grpc,
        dir.path().join("node.log").display()
    );
    Ok(OwnNode { node, _dir: dir })
}

/// `loadtest run`: returns the reports of the contact-center modes (Switchboard first, then
/// the baseline; per rate with `--sweep`), empty for the message-rate modes.
pub async fn run(args: &RunArgs) -> anyhow::Result<Vec<Report>> {
    if args.compare_bin.is_some() {
        return crate::compare::run(args).await;
    }
    let mut args = args.clone();
    let own = if args.start_node {
        let own = start_node(&args).await?;
        args.targets = vec![own.node.grpc.clone()];
        args.metrics = Some(own.node.metrics.clone());
        args.node_pid = Some(own.node.pid);
        Some(own)
    } else {
        None
    };
    let reports = run_on(&args).await;
    if let Some(mut own) = own {
        tokio::task::spawn_blocking(move || own.node.terminate()).await??;
    }
    reports
}

async fn run_on(args: &RunArgs) -> anyhow::Result<Vec<Report>> {
    check_targets(args)?;
    let probe = (args.metrics.is_some() || args.node_pid.is_some()).then(|| CpuProbe {
        metrics: args.metrics.clone(),
        pid: args.node_pid,
        tree: false,
    });
    if matches!(args.mode, Mode::Open | Mode::Closed | Mode::Floor) {
        let mut channels = Vec::new();
        for i in 0..args.connections.max(1) * args.targets.len() {
            let t = &args.targets[i % args.targets.len()];
            channels.push(Channel::from_shared(t.clone())?.connect().await.context("connect")?);
        }
        if args.mode == Mode::Floor {
            crate::floor::run(&channels, args.rate, args.seconds, probe.as_ref()).await?;
        } else {
            micro::run(&channels, args).await?;
        }
        return Ok(Vec::new());
    }
    if !args.sweep.is_empty() && args.mode != Mode::Poisson {
        bail!("--sweep varies --rate: poisson mode only");
    }
    let with_baseline = args.baseline.is_some() || args.baseline_only;
    // One PostgreSQL server for every run of a sweep.
    let pg = if with_baseline { Some(pg_url(args).await?) } else { None };
    // The server's CPU is read when this process started it (its PID known).
    let pg_url = pg.as_ref().map(|(url, server)| BaselineDb {
        url: url.as_str(),
        server: server.as_ref().and_then(switchboard_store::testing::PgServer::pid),
    });
    let result = if args.sweep.is_empty() {
        single(args, probe.as_ref(), pg_url).await
    } else {
        sweep(args, probe.as_ref(), pg_url).await
    };
    if let Some((_, Some(server))) = pg {
        // Stops the server by its PID.
        tokio::task::spawn_blocking(move || drop(server)).await?;
    }
    result
}

async fn single(
    args: &RunArgs,
    probe: Option<&CpuProbe>,
    pg_url: Option<BaselineDb<'_>>,
) -> anyhow::Result<Vec<Report>> {
    let scenario = scenario(args)?;
    print_scenario(&scenario);
    let mut reports = Vec::new();
    if !args.baseline_only {
        reports.push(switchboard(args, &scenario, probe).await?);
    }
    if let Some(pg) = pg_url {
        reports.push(baseline(args, pg, &scenario).await?);
    }
    if reports.len() > 1 {
        println!("{}", center::stats::side_by_side(&reports));
    }
    write_json(args, &serde_json::json!({ "reports": reports }))?;
    Ok(reports)
}

/// The scenario at each `--sweep` rate, lowest first; each system until it fails a rate.
async fn sweep(
    args: &RunArgs,
    probe: Option<&CpuProbe>,
    pg_url: Option<BaselineDb<'_>>,
) -> anyhow::Result<Vec<Report>> {
    let mut rates = args.sweep.clone();
    rates.retain(|r| *r > 0.0);
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    let mut sb = (!args.baseline_only).then_some((true, None::<f64>));
    let mut pg = pg_url.map(|pg| (pg, true, None::<f64>));
    let mut reports = Vec::new();
    let mut rows = Vec::new();
    for &rate in &rates {
        let mut at = args.clone();
        at.rate = rate;
        let scenario = scenario(&at)?;
        println!("\n=== sweep: {rate} arrivals/s ===");
        print_scenario(&scenario);
        if let Some((running, best)) = sb.as_mut().filter(|(running, _)| *running) {
            let runs = || switchboard(&at, &scenario, probe);
            *running = held_by_most(args.attempts, rate, &mut rows, &mut reports, runs).await?;
            if *running {
                *best = Some(rate);
            }
        }
        if let Some((pg, running, best)) = pg.as_mut().filter(|(_, running, _)| *running) {
            let runs = || baseline(&at, *pg, &scenario);
            *running = held_by_most(args.attempts, rate, &mut rows, &mut reports, runs).await?;
            if *running {
                *best = Some(rate);
            }
        }
        if !sb.is_some_and(|s| s.0) && !pg.is_some_and(|p| p.1) {
            break;
        }
    }
    match args.attempts {
        1 => println!("\nsweep (p99 bound {} ms):", args.hold_p99_ms),
        n => println!(
            "\nsweep (p99 bound {} ms; a rate is held if most of up to {n} runs held it):",
            args.hold_p99_ms
        ),
    }
    for (rate, system, verdict, cpu, of) in &rows {
        let cpu = cpu.map_or_else(|| "n/a".into(), |c| format!("{c:.0} µs/cmd"));
        println!("  {rate:>8} /s  {system:<26} {verdict}  [{of} CPU {cpu}]");
    }
    let mut highest = serde_json::Map::new();
    let mut say = |system: &str, best: Option<f64>| {
        match best {
            Some(r) => println!("highest rate held by {system}: {r} arrivals/s"),
            None => println!("highest rate held by {system}: none of the rates swept"),
        }
        highest.insert(system.to_owned(), serde_json::json!(best));
    };
    if let Some((_, best)) = sb {
        say("switchboard", best);
    }
    if let Some((_, _, best)) = pg {
        say("postgres", best);
    }
    write_json(
        args,
        &serde_json::json!({ "reports": reports, "sweep": { "rates": rates, "highest_held": highest } }),
    )?;
    Ok(reports)
}

/// One row of a sweep's table: rate, system, verdict, CPU per command and whose
/// ([`Report::cpu_of`]).
type SweepRow = (f64, String, String, Option<f64>, &'static str);

/// Runs one system at `rate` until most of `attempts` runs decide ([`majority`]), each run's
/// row and report kept; whether it held the rate.
async fn held_by_most<F, Fut>(
    attempts: u32,
    rate: f64,
    rows: &mut Vec<SweepRow>,
    reports: &mut Vec<Report>,
    mut run: F,
) -> anyhow::Result<bool>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Report>>,
{
    let mut held = Vec::new();
    loop {
        if let Some(decided) = majority(&held, attempts) {
            return Ok(decided);
        }
        let r = run().await?;
        held.push(r.verdict.held);
        rows.push((rate, r.system.clone(), r.verdict_line(), r.cpu_us_per_command, r.cpu_of()));
        reports.push(r);
    }
}

/// Whether most of `attempts` runs hold a rate, given the verdicts of the runs so far
/// (`held`); `None` while the runs left could still tip it either way.
fn majority(held: &[bool], attempts: u32) -> Option<bool> {
    let attempts = attempts.max(1) as usize;
    let yes = held.iter().filter(|h| **h).count();
    let no = held.len() - yes;
    if 2 * yes > attempts {
        Some(true)
    } else if 2 * no >= attempts {
        // Half or more failed: the rest cannot make a majority.
        Some(false)
    } else {
        None
    }
}

fn print_scenario(scenario: &center::Scenario) {
    println!(
        "scenario: {}\n  {} arrivals over {:.1} s into {} group(s); {} agents × capacity {}",
        scenario.name,
        scenario.arrivals.len(),
        scenario.window.as_secs_f64(),
        scenario.groups.len(),
        scenario.agents,
        scenario.capacity
    );
}

fn write_json(args: &RunArgs, value: &serde_json::Value) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(value)?;
    if let Some(path) = &args.json {
        std::fs::write(path, &json).with_context(|| format!("write {}", path.display()))?;
    }
    if args.report_json {
        println!("{json}");
    }
    Ok(())
}

async fn switchboard(
    args: &RunArgs,
    scenario: &center::Scenario,
    probe: Option<&CpuProbe>,
) -> anyhow::Result<Report> {
    let mut backend = Switchboard::connect(&args.targets, args.connections).await?;
    if args.tenant_actor {
        backend = backend.with_tenant_actor();
    }
    if args.gateway_stream {
        backend = backend.with_gateway_streams().await?;
    }
    if args.desk_stream {
        backend = backend.with_desk_streams().await?;
    }
    let report = center::run(backend, scenario, !args.quiet, probe).await?;
    println!("{}", report.text());
    Ok(report)
}

fn scenario(args: &RunArgs) -> anyhow::Result<center::Scenario> {
    let common = scenario::Common {
        agents: args.agents,
        capacity: args.capacity,
        think: Duration::from_millis(args.think_ms),
        interval: Duration::from_secs_f64(args.message_interval.max(0.001)),
        offer: args.offer_mode == OfferMode::Offer,
        drain: Duration::from_secs_f64(args.drain_seconds.max(0.0)),
        max_arrivals: args.max_arrivals,
        hold_p99: Duration::from_secs_f64(args.hold_p99_ms.max(0.0) / 1000.0),
        min_patience: Duration::from_secs_f64(args.min_patience.max(0.0)),
    };
    match args.mode {
        Mode::Trace => scenario::trace(
            common,
            &args.csv,
            args.day,
            args.from_hour,
            args.speedup,
            args.seconds,
            args.seed,
        ),
        _ => scenario::poisson(
            common,
            args.rate,
            args.seconds,
            args.handle,
            args.patience,
            args.seed,
        ),
    }
}

/// The baseline's database: `--pg-url`, else a throwaway server (stopped when dropped).
async fn pg_url(
    args: &RunArgs,
) -> anyhow::Result<(String, Option<switchboard_store::testing::PgServer>)> {
    if let Some(url) = &args.pg_url {
        return Ok((url.clone(), None));
    }
    let (url, server) = tokio::task::spawn_blocking(|| {
        let server = switchboard_store::testing::PgServer::start()?;
        let url = server.database();
        std::io::Result::Ok((url, server))
    })
    .await?
    .context("start a PostgreSQL server for the baseline (or pass --pg-url)")?;
    Ok((url, Some(server)))
}

/// The baseline's database: its URL, and its server's PID when this process started it.
#[derive(Debug, Clone, Copy)]
struct BaselineDb<'a> {
    url: &'a str,
    server: Option<u32>,
}

/// The PostgreSQL baseline on `pg.url` (its schema recreated). With the server's PID, the
/// report's CPU is the server's (the postmaster and its backends): the database's share of
/// the baseline; its routing runs in this process, beside the load, and is not counted.
async fn baseline(
    args: &RunArgs,
    pg: BaselineDb<'_>,
    scenario: &center::Scenario,
) -> anyhow::Result<Report> {
    let backend = Postgres::connect(pg.url, args.pg_connections, args.pg_routers).await?;
    let probe = pg.server.map(|pid| CpuProbe { metrics: None, pid: Some(pid), tree: true });
    let report = center::run(backend, scenario, !args.quiet, probe.as_ref()).await?;
    println!("{}", report.text());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::majority;

    #[test]
    fn one_attempt_is_its_verdict() {
        assert_eq!(majority(&[], 1), None);
        assert_eq!(majority(&[true], 1), Some(true));
        assert_eq!(majority(&[false], 1), Some(false));
    }

    #[test]
    fn three_attempts_stop_once_two_agree() {
        assert_eq!(majority(&[true], 3), None);
        assert_eq!(majority(&[true, true], 3), Some(true));
        assert_eq!(majority(&[false, false], 3), Some(false));
        assert_eq!(majority(&[true, false], 3), None);
        assert_eq!(majority(&[true, false, true], 3), Some(true));
        assert_eq!(majority(&[false, true, false], 3), Some(false));
    }

    #[test]
    fn an_even_count_needs_more_than_half_to_hold() {
        assert_eq!(majority(&[true, false], 2), Some(false));
        assert_eq!(majority(&[true, true], 2), Some(true));
        assert_eq!(majority(&[true, true, false], 4), None);
        assert_eq!(majority(&[true, true, false, false], 4), Some(false));
    }
}
