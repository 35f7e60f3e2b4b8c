//! `loadtest sim`: the routing engine driven straight through `switchboard-core` in virtual
//! time — no node, no network, no clock. Scenarios:
//!
//! - `erlang`: an M/M/N center checked against Erlang C ([`erlang`]).
//! - `day`: a day of a large center under Poisson load, to show the speed.
//! - `trace`: a month of a real call center replayed with its real staffing ([`trace`]).

mod scenario;
pub(crate) mod trace;

// The driver, statistics, generator and Erlang models live in `switchboard-sim`, shared with
// `switchboard ctl simulate`.
pub use switchboard_sim::{driver, erlang, erlang_a, report, rng};

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use switchboard_core::config::{GroupPolicy, Overflow, WhenClosed, WrapUp};
use switchboard_core::hours::{Hours, Span};
use tokio::time::Instant;

use self::report::{Est, Figures};

#[derive(Debug, Args)]
pub struct SimArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Single skill, FIFO, Poisson arrivals, exponential handle times: simulation vs Erlang C.
    Erlang(ErlangArgs),
    /// A day of a large single-skill center (default 1,000 agents), timed.
    Day(DayArgs),
    /// Replay the anonymous bank's August 1999 calls with the real staffing.
    Trace(TraceArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ErlangArgs {
    /// Staffing levels to compare.
    #[arg(long, value_delimiter = ',', default_value = "11,12,13,14")]
    pub agents: Vec<u32>,
    /// Contacts per 30 minutes.
    #[arg(long, default_value_t = 100.0)]
    pub per_30_min: f64,
    /// Mean handle time, seconds.
    #[arg(long, default_value_t = 180.0)]
    pub aht: f64,
    /// Mean patience, seconds (exponential): compared with Erlang A; 0: nobody abandons,
    /// compared with Erlang C.
    #[arg(long, default_value_t = 0.0)]
    pub patience: f64,
    /// Service-level target, seconds.
    #[arg(long, default_value_t = 20.0)]
    pub target: f64,
    /// Simulated days per staffing level (after one hour of warm-up).
    #[arg(long, default_value_t = 84.0)]
    pub days: f64,
    /// Batches for the batch-means standard errors.
    #[arg(long, default_value_t = 28)]
    pub batches: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Clone, Args)]
pub struct DayArgs {
    #[arg(long, default_value_t = 1000)]
    pub agents: u32,
    /// Offered load in erlangs (arrival rate × mean handle time).
    #[arg(long, default_value_t = 950.0)]
    pub load: f64,
    /// Mean handle time, seconds.
    #[arg(long, default_value_t = 180.0)]
    pub aht: f64,
    /// Mean patience, seconds (exponential); 0: nobody abandons.
    #[arg(long, default_value_t = 300.0)]
    pub patience: f64,
    #[arg(long, default_value_t = 24.0)]
    pub hours: f64,
    #[arg(long, default_value_t = 20.0)]
    pub target: f64,
    #[arg(long, default_value_t = 24)]
    pub batches: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Wrap-up seconds after every served conversation (issue 14, mandatory): the agent's
    /// slot stays taken that long. 0: none.
    #[arg(long, default_value_t = 0)]
    pub wrap_up: u64,
    /// Share of contacts at priority 1, served ahead of the others (0 to 1); figures are
    /// then printed per priority too.
    #[arg(long, default_value_t = 0.0)]
    pub high_share: f64,
    /// Priority aging (issue 14): every this many seconds of waiting raises a contact's
    /// effective priority by one, so priority 0 is not starved. 0: none.
    #[arg(long, default_value_t = 0)]
    pub priority_aging: u64,
    /// Proficiency (issue 14): agent `a` gets level `a mod 5 + 1` and handles contacts at
    /// `1.3 − 0.1 × level` of their handle time (level 5: 0.8, level 1: 1.2; 1.0 on average
    /// over the team); figures then also per level.
    #[arg(long)]
    pub levels: bool,
    /// How the group chooses among free agents.
    #[arg(long, value_enum, default_value_t = DayStrategy::LeastOccupied)]
    pub strategy: DayStrategy,
    /// Helpers: this many agents of a second group with no traffic of its own (issue 14
    /// steps); they take the main group's contacts only past `--step-after`.
    #[arg(long, default_value_t = 0)]
    pub helpers: u32,
    /// Seconds of waiting after which the main group's step lets the helpers take a
    /// contact; 0: no step (the helpers stay idle: the same staff, without overflow).
    #[arg(long, default_value_t = 0)]
    pub step_after: u64,
    /// Overflow (issue 14): a contact arriving when this many wait in the main group's
    /// queue goes on at once: to the helpers' group (`--helpers`), else it is refused
    /// (counted unserved). 0: no cap.
    #[arg(long, default_value_t = 0)]
    pub max_waiting: u32,
    /// Overflow (issue 14): a contact still waiting this many seconds in the main group goes
    /// on, as with `--max-waiting`. 0: no limit.
    #[arg(long, default_value_t = 0)]
    pub max_wait: u64,
    /// Levels (issue 14, with `--levels`): only agents at this proficiency level or above
    /// take the main group's contacts, until `--level-step-after`. 0: every level.
    #[arg(long, default_value_t = 0)]
    pub min_level: u8,
    /// Seconds of waiting after which a step of the main group lets every level take a
    /// contact (with `--min-level`). 0: never.
    #[arg(long, default_value_t = 0)]
    pub level_step_after: u64,
    /// Business hours (issue 14): the main group is open from hour `A` to hour `B` of every
    /// simulated day (`8-20`; the day starts at 00:00 UTC); unset: always open.
    #[arg(long, value_parser = open_hours)]
    pub open_hours: Option<(u16, u16)>,
    /// What the main group does with contacts while closed: they wait (and may abandon),
    /// go to the helpers' group (`--helpers`), or end (counted unserved).
    #[arg(long, value_enum, default_value_t = DayClosed::Wait)]
    pub when_closed: DayClosed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DayClosed {
    Wait,
    Overflow,
    End,
}

/// `A-B`, whole hours, 0 ≤ A < B ≤ 24.
fn open_hours(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?}: give whole hours A-B with 0 <= A < B <= 24, such as 8-20");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if a >= b || b > 24 {
        return Err(bad());
    }
    Ok((a, b))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DayStrategy {
    LeastOccupied,
    LongestIdle,
    RoundRobin,
    BestProficiency,
}

impl From<DayStrategy> for switchboard_core::config::Strategy {
    fn from(s: DayStrategy) -> Self {
        use switchboard_core::config::Strategy as S;
        match s {
            DayStrategy::LeastOccupied => S::LeastOccupied,
            DayStrategy::LongestIdle => S::LongestIdle,
            DayStrategy::RoundRobin => S::RoundRobin,
            DayStrategy::BestProficiency => S::BestProficiency,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct TraceArgs {
    /// The call records (default: `../shared/data/…` from the workspace root).
    #[arg(long, default_value_os_t = default_csv())]
    pub csv: PathBuf,
    #[arg(long, default_value_t = 20)]
    pub target: u64,
    /// Replay these days of the month only.
    #[arg(long, default_value_t = 1)]
    pub first_day: u32,
    #[arg(long, default_value_t = 31)]
    pub last_day: u32,
    /// How agents are put online: `busy` (while the trace shows them serving) or `hours`
    /// (every hour they were seen serving in, all of it).
    #[arg(long, value_enum, default_value_t = trace::Method::Busy)]
    pub staffing: trace::Method,
    /// With `--staffing busy`: idle gaps between an agent's services up to this many seconds
    /// count as online.
    #[arg(long, default_value_t = 0)]
    pub idle_gap: u64,
    /// Skill groups (`type` codes, e.g. `TT`) served ahead of the others: their calls' priority
    /// is raised above the trace's 0–2, so an agent free for several groups takes them first.
    #[arg(long, value_delimiter = ',')]
    pub prefer: Vec<String>,
    /// How long callers the real center served wait in the replay: `infinite`, or their
    /// real wait plus an exponential residual with the group's estimated mean patience.
    #[arg(long, value_enum, default_value_t = trace::ServedPatience::Exponential)]
    pub served_patience: trace::ServedPatience,
    /// Seed for the handle times of calls that hung up in the real data but are answered in
    /// the simulation, and for served callers' residual patience.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn default_csv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/anonymous-bank-1999-08.csv")
}

pub fn run(args: &SimArgs) -> anyhow::Result<()> {
    match &args.scenario {
        Scenario::Erlang(a) => erlang(a).map(drop),
        Scenario::Day(a) => day(a).map(drop),
        Scenario::Trace(a) => trace(a).map(drop),
    }
}

fn pct(e: Est) -> String {
    match e.se {
        Some(se) => format!("{:.4} ±{:.4}", e.value, se),
        None => format!("{:.4}", e.value),
    }
}

fn secs(e: Est) -> String {
    match e.se {
        Some(se) => format!("{:.1} ±{:.1}", e.value, se),
        None => format!("{:.1}", e.value),
    }
}

pub fn erlang(a: &ErlangArgs) -> anyhow::Result<Vec<scenario::Comparison>> {
    let traffic = a.per_30_min / 1800.0 * a.aht;
    let patience = (a.patience > 0.0).then_some(a.patience);
    let model = match patience {
        Some(p) => format!("patience exponential, mean {p} s: Erlang A (M/M/N+M)"),
        None => "nobody abandons: Erlang C (M/M/N)".to_owned(),
    };
    println!(
        "erlang: {} contacts/30 min, AHT {} s (A = {traffic:.2} erlangs), target {} s, {model}; {} simulated days per N, ±: standard error over {} batches; P(wait), ASA: of served contacts",
        a.per_30_min, a.aht, a.target, a.days, a.batches
    );
    println!(
        "{:>4} | {:>7} {:>16} | {:>7} {:>16} | {:>7} {:>16} | {:>7} {:>12} | {:>6} {:>6} | {:>7} | {:>8} {:>7}",
        "N",
        "aband.",
        "simulated",
        "P(wait)",
        "simulated",
        "SL",
        "simulated",
        "ASA s",
        "simulated",
        "occ",
        "sim",
        "EWT MAE",
        "contacts",
        "wall s"
    );
    let mut rows = Vec::new();
    for &n in &a.agents {
        let started = Instant::now();
        let c = scenario::compare(
            n,
            a.per_30_min,
            a.aht,
            patience,
            a.target,
            a.days,
            a.batches,
            a.seed,
        )?;
        let (p, s) = (c.predicted, c.simulated);
        println!(
            "{:>4} | {:>7.4} {:>16} | {:>7.4} {:>16} | {:>7.4} {:>16} | {:>7.1} {:>12} | {:>6.3} {:>6.3} | {:>7} | {:>8} {:>7.2}",
            c.n,
            p.abandonment,
            pct(s.abandonment),
            p.p_wait,
            pct(s.p_wait),
            p.service_level,
            pct(s.service_level),
            p.mean_wait,
            secs(s.mean_wait),
            p.occupancy,
            c.occupancy,
            c.ewt.mae_secs().map_or("-".to_owned(), |e| format!("{e:.1}")),
            s.offered,
            started.elapsed().as_secs_f64()
        );
        rows.push(c);
    }
    Ok(rows)
}

/// The process's peak resident set (`VmHWM` of `/proc/self/status`), bytes; `None` where
/// there is no procfs.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 =
        line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

fn print_memory(run: &driver::Run) {
    let rss = peak_rss().map_or("n/a".to_owned(), |b| format!("{:.1} MiB", b as f64 / 1048576.0));
    let p = run.peak;
    println!(
        "  memory: peak RSS {rss}; most held at once: {} open contacts, {} pending events, {} customers and {} conversations in the engine",
        p.tracks, p.events, p.engine_customers, p.engine_conversations
    );
}

/// Issue 14 item 7: the core's estimated wait at queue entry against the realised wait.
fn print_ewt(e: &driver::EwtAccuracy) {
    match (e.mae_secs(), e.means_secs()) {
        (Some(mae), Some((predicted, realised))) => println!(
            "  EWT: mean absolute error {mae:.1} s over {} contacts served after waiting (estimate at queue entry: mean {predicted:.1} s; realised wait: mean {realised:.1} s); {} served after waiting had no estimate",
            e.estimated, e.without
        ),
        _ => println!(
            "  EWT: no contact was served after waiting with an estimate ({} without)",
            e.without
        ),
    }
}

fn print_figures(name: &str, f: &Figures) {
    println!(
        "  {name:<6} offered {:>8}  served {:>8}  abandoned {:>6} ({})  unserved {:>4}  SL {}  mean wait {} s  P(wait>0) {}",
        f.offered,
        f.served,
        f.abandoned,
        pct(f.abandonment),
        f.unserved,
        pct(f.service_level),
        secs(f.mean_wait),
        pct(f.p_wait)
    );
}

/// The figures of all contacts, and of priority 0 and 1.
pub fn day(a: &DayArgs) -> anyhow::Result<(Figures, [Figures; 2])> {
    let length = (a.hours * 3_600_000.0) as u64;
    let single = scenario::Single {
        agents: a.agents,
        rate: a.load / a.aht,
        aht: a.aht,
        patience: (a.patience > 0.0).then_some(a.patience),
        length,
        warmup: (length / 24).min(3_600_000),
        target_ms: (a.target * 1000.0) as u64,
        batches: a.batches,
        seed: a.seed,
        policy: GroupPolicy {
            wrap_up: (a.wrap_up > 0).then(|| WrapUp {
                duration: std::time::Duration::from_secs(a.wrap_up),
                can_end_early: false,
            }),
            priority_aging: (a.priority_aging > 0)
                .then(|| std::time::Duration::from_secs(a.priority_aging)),
            strategy: a.strategy.into(),
            overflow: (a.max_waiting > 0 || a.max_wait > 0 || a.when_closed == DayClosed::Overflow)
                .then(|| Overflow {
                    max_waiting: (a.max_waiting > 0).then_some(a.max_waiting),
                    max_wait: (a.max_wait > 0).then(|| std::time::Duration::from_secs(a.max_wait)),
                    group: (a.helpers > 0).then(|| switchboard_sim::driver::group_id(1)),
                }),
            hours: a.open_hours.map(|(from, to)| {
                let span = vec![Span { start: from * 60, end: to * 60 }];
                Hours { weekly: std::array::from_fn(|_| span.clone()), ..Hours::default() }
            }),
            min_level: (a.min_level > 0).then_some(a.min_level),
            when_closed: match a.when_closed {
                DayClosed::Wait => WhenClosed::Wait,
                DayClosed::Overflow => WhenClosed::Overflow,
                DayClosed::End => WhenClosed::End,
            },
            ..GroupPolicy::default()
        },
        high_share: a.high_share,
        levels: if a.levels {
            (0..a.agents).map(|n| (n % 5) as u8 + 1).collect()
        } else {
            Vec::new()
        },
        pace: if a.levels {
            (0..a.agents).map(|n| 1.3 - 0.1 * f64::from(n % 5 + 1)).collect()
        } else {
            Vec::new()
        },
        helpers: a.helpers,
        step_after: (a.step_after > 0).then(|| std::time::Duration::from_secs(a.step_after)),
        level_step_after: (a.level_step_after > 0)
            .then(|| std::time::Duration::from_secs(a.level_step_after)),
    };
    anyhow::ensure!((0.0..=1.0).contains(&a.high_share), "--high-share: give a share from 0 to 1");
    anyhow::ensure!(
        a.min_level == 0 || a.levels,
        "--min-level: give --levels too (agents have no level otherwise)"
    );
    anyhow::ensure!(
        a.level_step_after == 0 || a.min_level > 1,
        "--level-step-after: give --min-level 2 to 5 (the step lowers it to 1)"
    );
    anyhow::ensure!(
        a.when_closed != DayClosed::Overflow || a.helpers > 0,
        "--when-closed overflow: give --helpers, the group closed contacts go to"
    );
    let started = Instant::now();
    let run = single.run()?;
    let wall = started.elapsed().as_secs_f64();
    // The main group's contacts (the helpers' group has no traffic of its own).
    let f = run.stats.figures(Some(0));
    // With a wrap-up, the models get the slot time (handle + wrap-up): a reference only, as
    // the wrap-up is fixed rather than exponential.
    let slot = a.aht + a.wrap_up as f64;
    let p = match single.patience {
        Some(patience) => erlang_a::predict(a.agents, single.rate, slot, patience, a.target),
        None => erlang::predict(a.agents, single.rate * slot, slot, a.target),
    };
    println!(
        "day: {} agents ({:?}{}), {} erlangs, AHT {} s, wrap-up {} s, priority 1 share {}, aging {} s/level, patience {} s, {} simulated hours: {} contacts, {} engine calls in {wall:.2} s wall clock ({:.0} calls/s, {:.0}× real time)",
        a.agents,
        a.strategy,
        if a.levels { ", levels 1-5" } else { "" },
        a.load,
        a.aht,
        a.wrap_up,
        a.high_share,
        a.priority_aging,
        a.patience,
        a.hours,
        run.arrived,
        run.engine_calls,
        run.engine_calls as f64 / wall,
        a.hours * 3600.0 / wall
    );
    print_memory(&run);
    print_figures("all", &f);
    print_ewt(&run.ewt);
    let by_priority = [run.by_priority.figures(Some(0)), run.by_priority.figures(Some(1))];
    if a.high_share > 0.0 {
        print_figures("prio 1", &by_priority[1]);
        print_figures("prio 0", &by_priority[0]);
    }
    if a.helpers > 0 {
        let n = a.agents as usize;
        println!(
            "  helpers: {} agents, step after {} s: their occupancy {:.3}; the main group's {:.3}",
            a.helpers,
            a.step_after,
            report::slot_occupancy(&run, |x| x >= n),
            report::slot_occupancy(&run, |x| x < n),
        );
    }
    if a.max_waiting > 0 || a.max_wait > 0 {
        println!(
            "  overflow: max waiting {}, max wait {} s, to {}: {} of the main group's contacts unserved (refused ones among them)",
            a.max_waiting,
            a.max_wait,
            if a.helpers > 0 { "the helpers" } else { "nobody (refused)" },
            f.unserved,
        );
    }
    if a.min_level > 0 {
        println!(
            "  levels: the main group needs level {}; {}",
            a.min_level,
            if a.level_step_after > 0 {
                format!("every level after {} s of waiting", a.level_step_after)
            } else {
                "always".to_owned()
            }
        );
    }
    if let Some((from, to)) = a.open_hours {
        println!(
            "  hours: the main group open {from:02}:00-{to:02}:00 UTC every day, closed contacts {:?}: of its contacts {} unserved (ended), {} abandoned",
            a.when_closed, f.unserved, f.abandoned,
        );
    }
    if a.levels {
        let by_level: Vec<String> = (1..=5usize)
            .map(|l| format!("{l}: {:.3}", report::slot_occupancy(&run, |n| n % 5 + 1 == l)))
            .collect();
        println!(
            "  occupancy by proficiency level (pace 1.3 − 0.1 × level): {}",
            by_level.join("  ")
        );
    }
    let mut model =
        if a.patience > 0.0 { "Erlang A (M/M/N+M)" } else { "Erlang C (M/M/N)" }.to_owned();
    if a.wrap_up > 0 {
        model.push_str(", slot time AHT + wrap-up");
    }
    println!(
        "  {model}: abandonment {:.4}  SL {:.4}  mean wait {:.1} s  P(wait>0) {:.4}  occupancy {:.4}; simulated occupancy {:.4}",
        p.abandonment,
        p.service_level,
        p.mean_wait,
        p.p_wait,
        p.occupancy,
        report::occupancy(&run)
    );
    Ok((f, by_priority))
}

/// Per group (and `None` for all): simulated figures beside the real ones.
pub type TraceRows = Vec<(Option<u32>, Figures, Figures)>;

/// How many standard errors apart two estimates are.
fn gap(sim: Est, real: Est) -> String {
    let se = (sim.se.unwrap_or(0.0).powi(2) + real.se.unwrap_or(0.0).powi(2)).sqrt();
    if se > 0.0 { format!("{:+.1}", (sim.value - real.value) / se) } else { "-".to_owned() }
}

pub fn trace(a: &TraceArgs) -> anyhow::Result<TraceRows> {
    let started = Instant::now();
    let rows = trace::read(&a.csv, a.first_day..=a.last_day)?;
    let calls = &rows.calls;
    let staffing = trace::staffing(calls, a.first_day, a.staffing, a.idle_gap);
    let mut prefer = Vec::new();
    for name in &a.prefer {
        let g = trace::TYPES.iter().position(|t| t.eq_ignore_ascii_case(name));
        let g = g.with_context(|| format!("--prefer {name}: not one of {:?}", trace::TYPES))?;
        prefer.push(g as u32);
    }
    let mut arrivals = trace::arrivals(calls, a.first_day, a.served_patience, a.seed);
    for arrival in arrivals.iter_mut().filter(|x| prefer.contains(&x.group)) {
        arrival.priority += 3;
    }
    let days = a.last_day + 1 - a.first_day;
    let end = u64::from(days) * 86_400_000;
    let mut center = driver::Center::uniform(
        trace::TYPES.len(),
        &staffing.agents,
        (0, end),
        a.target * 1000,
        days,
    );
    center.tenant.transfer_to_human = true;
    let run = driver::run(&center, arrivals, &staffing.shifts)?;
    let real = trace::real(calls, a.first_day, center.window, center.target_ms);
    let wall = started.elapsed().as_secs_f64();
    let how = match a.staffing {
        trace::Method::Busy => {
            format!("online while serving, idle gaps ≤ {} s bridged", a.idle_gap)
        }
        trace::Method::Hours => "online every hour seen serving".to_owned(),
    };
    println!(
        "trace: {} days 1999-08-{:02}..{:02}, {} calls (dropped: PHANTOM, {} served rows without service times, {} served by NO_SERVER), {} agents ({how}: {:.0} agent-hours), {} engine calls in {wall:.2} s; ±: standard error over days; z: (sim − real) / combined standard error",
        days,
        a.first_day,
        a.last_day,
        calls.len(),
        rows.no_service_times,
        rows.no_server,
        staffing.agents.len(),
        staffing.online_ms as f64 / 3_600_000.0,
        run.engine_calls
    );
    println!(
        "{:<5} {:<4} | {:>7} {:>7} {:>7} {:>7} | {:>16} {:>5} | {:>16} {:>5} | {:>14} | {:>16}",
        "group",
        "",
        "offered",
        "served",
        "aband.",
        "in bot",
        "SL",
        "z",
        "abandonment",
        "z",
        "mean wait s",
        "P(wait>0)"
    );
    let mut out = Vec::new();
    let groups = (0..trace::TYPES.len() as u32).map(Some).chain([None]);
    for g in groups {
        let name = g.map_or("all", |g| trace::TYPES[g as usize]);
        let (f, r) = (run.stats.figures(g), real.figures(g));
        for (label, x, bot, z) in [
            ("real", &r, real.left_in_bot(g), None),
            ("sim", &f, run.stats.left_in_bot(g), Some(&r)),
        ] {
            println!(
                "{:<5} {label:<4} | {:>7} {:>7} {:>7} {:>7} | {:>16} {:>5} | {:>16} {:>5} | {:>14} | {:>16}",
                if z.is_none() { name } else { "" },
                x.offered,
                x.served,
                x.abandoned,
                bot,
                pct(x.service_level),
                z.map_or(String::new(), |r| gap(x.service_level, r.service_level)),
                pct(x.abandonment),
                z.map_or(String::new(), |r| gap(x.abandonment, r.abandonment)),
                secs(x.mean_wait),
                pct(x.p_wait),
            );
        }
        out.push((g, f, r));
    }
    println!("  simulated occupancy {:.4} (busy / online agent-time)", report::occupancy(&run));
    print_ewt(&run.ewt);
    print_memory(&run);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sane(f: &Figures) {
        assert!(f.offered > 0 && f.served > 0, "{f:?}");
        assert!(f.served + f.abandoned + f.unserved == f.offered, "{f:?}");
        for r in [f.service_level.value, f.p_wait.value, f.abandon_rate()] {
            assert!((0.0..=1.0).contains(&r), "{f:?}");
        }
        assert!(f.mean_wait.value >= 0.0 && f.mean_wait.value.is_finite(), "{f:?}");
    }

    #[test]
    fn erlang_scenario_completes() {
        let args = ErlangArgs {
            agents: vec![11, 14],
            per_30_min: 100.0,
            aht: 180.0,
            patience: 0.0,
            target: 20.0,
            days: 0.5,
            batches: 4,
            seed: 3,
        };
        let rows = erlang(&args).unwrap();
        assert_eq!(rows.len(), 2);
        for c in &rows {
            sane(&c.simulated);
            assert!((0.0..=1.0).contains(&c.occupancy));
        }
        // Issue 14 item 7: at 11 agents for 10 erlangs many wait, each with an estimate.
        let ewt = rows[0].ewt;
        assert!(ewt.estimated > 0, "{ewt:?}");
        assert!(ewt.mae_secs().is_some_and(|e| e.is_finite() && e >= 0.0), "{ewt:?}");
    }

    /// Issue 14 item 3: open only 01:00-03:00 of a 4-hour day, the main group ends contacts
    /// while closed (unserved), lets them wait (most abandon in the first closed hour), or
    /// sends them to helpers, who serve them.
    #[test]
    fn business_hours_close_the_main_group() {
        let args = |open_hours, when_closed, helpers| DayArgs {
            hours: 4.0,
            patience: 300.0,
            open_hours,
            when_closed,
            helpers,
            ..quiet_day()
        };
        let (open, _) = day(&args(None, DayClosed::Wait, 0)).unwrap();
        let (ended, _) = day(&args(Some((1, 3)), DayClosed::End, 0)).unwrap();
        let (waited, _) = day(&args(Some((1, 3)), DayClosed::Wait, 0)).unwrap();
        let (helped, _) = day(&args(Some((1, 3)), DayClosed::Overflow, 100)).unwrap();
        sane(&ended);
        assert!(ended.unserved > open.unserved, "{ended:?} vs {open:?}");
        assert!(waited.abandoned > open.abandoned, "{waited:?} vs {open:?}");
        assert!(helped.served > ended.served, "{helped:?} vs {ended:?}");
    }

    /// A day's arguments with every issue-14 rule off (the shape tests start from).
    fn quiet_day() -> DayArgs {
        DayArgs {
            agents: 100,
            load: 85.0,
            aht: 180.0,
            patience: 0.0,
            hours: 2.0,
            target: 20.0,
            batches: 4,
            seed: 1,
            wrap_up: 0,
            high_share: 0.0,
            priority_aging: 0,
            levels: false,
            strategy: DayStrategy::LeastOccupied,
            helpers: 0,
            step_after: 0,
            max_waiting: 0,
            max_wait: 0,
            min_level: 0,
            level_step_after: 0,
            open_hours: None,
            when_closed: DayClosed::Wait,
        }
    }

    #[test]
    fn day_scenario_completes() {
        let args = DayArgs {
            agents: 100,
            load: 95.0,
            aht: 180.0,
            patience: 60.0,
            hours: 2.0,
            target: 20.0,
            batches: 4,
            seed: 5,
            ..quiet_day()
        };
        let (f, _) = day(&args).unwrap();
        sane(&f);
        assert!(f.abandoned > 0, "short patience at 95% load makes some leave: {f:?}");
    }

    /// Issue 14 item 4: the same arrivals with a mandatory wrap-up take slot time from the
    /// agents, so fewer are answered within the target and more leave.
    #[test]
    fn wrap_up_costs_service_level_in_the_day_scenario() {
        let args = |wrap_up| DayArgs {
            agents: 100,
            load: 85.0,
            aht: 180.0,
            patience: 120.0,
            hours: 2.0,
            target: 20.0,
            batches: 4,
            seed: 5,
            wrap_up,
            ..quiet_day()
        };
        let (without, _) = day(&args(0)).unwrap();
        let (with, _) = day(&args(30)).unwrap();
        sane(&with);
        assert!(with.service_level.value < without.service_level.value, "{with:?} vs {without:?}");
        assert!(with.abandoned > without.abandoned, "{with:?} vs {without:?}");
    }

    /// Issue 14 item 5: at a load where priority 1 takes most of the agents, priority 0
    /// waits far longer under strict priority; aging (10 s a level) hands part of that wait
    /// to priority 1, and priority 0's longest waits come down.
    #[test]
    fn aging_shortens_low_priority_waits_in_the_day_scenario() {
        let args = |priority_aging| DayArgs {
            agents: 50,
            load: 49.0,
            aht: 180.0,
            patience: 0.0,
            hours: 4.0,
            target: 20.0,
            batches: 4,
            seed: 3,
            high_share: 0.5,
            priority_aging,
            ..quiet_day()
        };
        let (_, [low, high]) = day(&args(0)).unwrap();
        let (_, [aged_low, aged_high]) = day(&args(10)).unwrap();
        assert!(aged_low.mean_wait.value < low.mean_wait.value, "{aged_low:?} vs {low:?}");
        assert!(aged_high.mean_wait.value > high.mean_wait.value, "{aged_high:?} vs {high:?}");
    }

    /// Issue 14 item 6: with levels 1-5 where higher levels work faster, best proficiency
    /// gives the experts more of the work than least occupied does, and the center waits
    /// less for it.
    #[test]
    fn best_proficiency_uses_the_experts_in_the_day_scenario() {
        let args = |strategy| DayArgs {
            agents: 50,
            load: 42.0,
            aht: 180.0,
            patience: 0.0,
            hours: 4.0,
            target: 20.0,
            batches: 4,
            seed: 7,
            levels: true,
            strategy,
            ..quiet_day()
        };
        let (spread, _) = day(&args(DayStrategy::LeastOccupied)).unwrap();
        let (best, _) = day(&args(DayStrategy::BestProficiency)).unwrap();
        sane(&best);
        assert!(best.mean_wait.value < spread.mean_wait.value, "{best:?} vs {spread:?}");
    }

    /// Issue 14 item 1: the same staff, with a second team that helps only past a 15 s
    /// step, answers more contacts within the target than without the step.
    #[test]
    fn a_step_to_helpers_raises_service_level_in_the_day_scenario() {
        let args = |step_after| DayArgs {
            agents: 40,
            load: 39.0,
            aht: 180.0,
            patience: 120.0,
            hours: 4.0,
            target: 20.0,
            batches: 4,
            seed: 11,
            helpers: 5,
            step_after,
            ..quiet_day()
        };
        let (without, _) = day(&args(0)).unwrap();
        let (with, _) = day(&args(15)).unwrap();
        sane(&with);
        assert!(with.service_level.value > without.service_level.value, "{with:?} vs {without:?}");
        assert!(with.abandoned < without.abandoned, "{with:?} vs {without:?}");
    }

    /// Issue 14 items 1 and 6: a group that sends its contacts to levels 4-5 only answers
    /// fewer within the target than the same group with a step that lets every level take a
    /// contact after 10 s of waiting.
    #[test]
    fn a_step_admitting_every_level_raises_service_level() {
        let args = |level_step_after| DayArgs {
            agents: 50,
            load: 30.0,
            aht: 180.0,
            patience: 120.0,
            hours: 4.0,
            target: 20.0,
            batches: 4,
            seed: 13,
            levels: true,
            min_level: 4,
            level_step_after,
            ..quiet_day()
        };
        let (experts_only, _) = day(&args(0)).unwrap();
        let (stepped, _) = day(&args(10)).unwrap();
        sane(&stepped);
        assert!(
            stepped.service_level.value > experts_only.service_level.value,
            "{stepped:?} vs {experts_only:?}"
        );
    }

    /// Issue 14 item 2: the same staff, with the helpers taking the main group's contacts
    /// once they have waited 15 s (overflow, the contact moves), answers more within the
    /// target than without; a cap of 3 waiting without helpers refuses contacts and shortens
    /// the wait of those it keeps.
    #[test]
    fn overflow_to_helpers_raises_service_level_and_a_cap_refuses() {
        let args = |helpers, max_waiting, max_wait| DayArgs {
            agents: 40,
            load: 39.0,
            aht: 180.0,
            patience: 120.0,
            hours: 4.0,
            target: 20.0,
            batches: 4,
            seed: 11,
            helpers,
            max_waiting,
            max_wait,
            ..quiet_day()
        };
        let (without, _) = day(&args(5, 0, 0)).unwrap();
        let (with, _) = day(&args(5, 0, 15)).unwrap();
        sane(&with);
        assert!(with.service_level.value > without.service_level.value, "{with:?} vs {without:?}");
        let (uncapped, _) = day(&args(0, 0, 0)).unwrap();
        let (capped, _) = day(&args(0, 3, 0)).unwrap();
        assert!(capped.unserved > uncapped.unserved, "{capped:?} vs {uncapped:?}");
        assert!(capped.mean_wait.value < uncapped.mean_wait.value, "{capped:?} vs {uncapped:?}");
    }

    #[test]
    fn trace_scenario_completes() {
        for staffing in [trace::Method::Busy, trace::Method::Hours] {
            let args = TraceArgs {
                csv: default_csv(),
                target: 20,
                first_day: 1,
                last_day: 3,
                staffing,
                idle_gap: 0,
                served_patience: trace::ServedPatience::Exponential,
                prefer: vec!["TT".into()],
                seed: 1,
            };
            let rows = trace(&args).unwrap();
            assert_eq!(rows.len(), trace::TYPES.len() + 1);
            let (_, all, real) = rows.last().unwrap();
            sane(all);
            sane(real);
            assert_eq!(all.offered, real.offered, "the replay offers exactly the real calls");
            assert_eq!(real.unserved, 0);
        }
    }
}
