//! What a contact-center run measures: HDR histograms of latencies from intended times,
//! counters, and the report (text and JSON) made from them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::node::CpuSource;

/// Microseconds, 1 µs .. 10 min, 3 significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

/// One latency distribution, recorded from many tasks: the whole run's, and the one since the
/// last progress line (a cumulative p99 hides when a stall happened and how long it was).
#[derive(Debug)]
pub struct Latency(Mutex<[Histogram<u64>; 2]>);

impl Default for Latency {
    fn default() -> Self {
        Latency(Mutex::new([histogram(), histogram()]))
    }
}

impl Latency {
    pub fn record(&self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 600_000_000);
        let mut h = self.0.lock().expect("histogram lock");
        for h in h.iter_mut() {
            let _ = h.record(us);
        }
    }

    pub fn summary(&self) -> Summary {
        Summary::of(&self.0.lock().expect("histogram lock")[0])
    }

    /// The distribution since the last call, which starts a new interval.
    pub fn take_interval(&self) -> Summary {
        let mut h = self.0.lock().expect("histogram lock");
        let s = Summary::of(&h[1]);
        h[1].reset();
        s
    }
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Summary {
    pub n: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    fn of(h: &Histogram<u64>) -> Summary {
        if h.is_empty() {
            return Summary::default();
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Summary {
            n: h.len(),
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1000.0,
        }
    }
}

/// Everything a run counts and measures, shared by its tasks.
#[derive(Debug, Default)]
pub struct Stats {
    /// Customer message (intended send time) → the message on the assigned agent's stream.
    pub message_to_agent: Latency,
    /// Arrival (intended) → the conversation assigned to an agent (auto, or offer accepted).
    pub arrival_to_assignment: Latency,
    /// Arrival (intended) → the agent's first reply acknowledged (includes the think time).
    pub first_response: Latency,
    /// Any customer post (intended send time) → its durable acknowledgement.
    pub post_ack: Latency,
    /// An offer on the agent's stream → its accept call answered (offer mode only): the part
    /// of arrival → assignment after the offer.
    pub accept: Latency,
    pub arrivals: AtomicU64,
    pub opened: AtomicU64,
    pub assigned: AtomicU64,
    pub abandoned: AtomicU64,
    pub ended: AtomicU64,
    pub messages_sent: AtomicU64,
    /// Sent with an intended time inside the arrival window.
    pub messages_in_window: AtomicU64,
    pub messages_delivered: AtomicU64,
    pub replies: AtomicU64,
    /// Successful mutating calls: posts, accepts, replies, ends, abandons.
    pub commands: AtomicU64,
    pub errors: AtomicU64,
    /// The first error seen, for the report.
    pub first_error: Mutex<Option<String>>,
}

impl Stats {
    pub fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self, what: &str, e: &anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().expect("error lock");
        if first.is_none() {
            *first = Some(format!("{what}: {e:#}"));
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The live progress line.
    pub fn progress(&self, elapsed: f64) -> String {
        let m = self.message_to_agent.summary();
        let last = self.message_to_agent.take_interval();
        format!(
            "[{elapsed:6.1} s] arrivals {} opened {} assigned {} abandoned {} ended {} | msgs {} delivered {} | errors {} | msg→agent p99 {:.1} ms (since last line: p99 {:.1} max {:.1})",
            Self::get(&self.arrivals),
            Self::get(&self.opened),
            Self::get(&self.assigned),
            Self::get(&self.abandoned),
            Self::get(&self.ended),
            Self::get(&self.messages_sent),
            Self::get(&self.messages_delivered),
            Self::get(&self.errors),
            m.p99_ms,
            last.p99_ms,
            last.max_ms
        )
    }
}

/// The final report of one system (Switchboard or the baseline) under one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub system: String,
    pub scenario: String,
    pub agents: u32,
    pub capacity: u32,
    /// Seconds over which arrivals were scheduled.
    pub window_s: f64,
    /// Seconds from the first intended arrival until every opening post was acknowledged.
    pub arrival_phase_s: f64,
    pub offered_arrivals_per_s: f64,
    pub achieved_arrivals_per_s: f64,
    /// Customer messages (besides the opening one) intended inside the window, ÷ the window.
    pub achieved_messages_per_s: f64,
    pub arrivals: u64,
    pub opened: u64,
    pub assigned: u64,
    pub abandoned: u64,
    pub ended: u64,
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub replies: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub message_to_agent: Summary,
    pub arrival_to_assignment: Summary,
    pub first_response: Summary,
    pub post_ack: Summary,
    pub offer_to_accepted: Summary,
    /// Successful mutating calls the load generator made (posts, accepts, replies, ends,
    /// abandons).
    pub commands: u64,
    /// Node CPU time from after the setup to the end of the run, when it could be read.
    pub node_cpu_seconds: Option<f64>,
    /// `node_cpu_seconds` ÷ `commands`, microseconds.
    pub cpu_us_per_command: Option<f64>,
    /// Where the CPU time came from: `process_cpu_seconds_total` or `/proc/<pid>/stat`.
    pub cpu_source: Option<String>,
    /// The node's store commits (`switchboard_store_commits_total`) over the same span, per
    /// command, when exported.
    pub store_commits_per_command: Option<f64>,
    /// The node's store batches (`switchboard_store_batches_total`: one per actor step that
    /// writes) over the same span, per command: how many writing steps a command takes.
    pub store_batches_per_command: Option<f64>,
    /// Of those, each actor kind's writes (`switchboard_actor_writes_total`) per command:
    /// router, conversation, agent (the mesh only; a tenant actor's are not counted).
    pub actor_writes_per_command: Option<[f64; 3]>,
    /// Pages the node's SQLite writer wrote to its WAL per commit, over the same span.
    pub wal_pages_per_commit: Option<f64>,
    /// The CPU time of the node's store threads (the writer's commits, the checkpointer),
    /// over the same span, per command, microseconds: the part of `cpu_us_per_command` that
    /// follows the number of commits (the rest is the transport, the actors, the scheduler).
    pub store_threads_us_per_command: Option<f64>,
    /// This machine's CPU steal over the same span, seconds (`/proc/stat`): runs compare
    /// only when it is small beside the node's CPU.
    pub host_steal_seconds: Option<f64>,
    /// The machine's dirty page cache written back before the run, and how long it took
    /// (`node::settle_disk`); `None` if it could not be read or flushed.
    pub settled: Option<crate::node::Settled>,
    pub verdict: Verdict,
}

/// Whether a system held the offered rate: every arrival opened and assigned, nobody
/// abandoned, no failed call, every customer message delivered, and p99 of customer message
/// → agent and of arrival → assignment under the bound.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verdict {
    pub held: bool,
    /// The p99 bound, milliseconds.
    pub p99_bound_ms: f64,
    /// Why not, one reason each; empty when held.
    pub reasons: Vec<String>,
}

impl Report {
    /// Judges the run against `p99_bound`.
    pub fn judge(&self, p99_bound: Duration) -> Verdict {
        let bound = p99_bound.as_secs_f64() * 1000.0;
        let mut reasons = Vec::new();
        if self.opened < self.arrivals {
            reasons.push(format!(
                "{} of {} arrivals not opened",
                self.arrivals - self.opened,
                self.arrivals
            ));
        }
        if self.assigned < self.arrivals {
            reasons.push(format!(
                "{} of {} arrivals not assigned",
                self.arrivals - self.assigned,
                self.arrivals
            ));
        }
        if self.abandoned > 0 {
            reasons.push(format!("{} abandoned", self.abandoned));
        }
        if self.errors > 0 {
            reasons.push(format!("{} failed calls", self.errors));
        }
        if self.messages_delivered < self.messages_sent {
            reasons.push(format!(
                "{} of {} customer messages never reached the agent",
                self.messages_sent - self.messages_delivered,
                self.messages_sent
            ));
        }
        for (name, s) in [
            ("customer msg → agent", &self.message_to_agent),
            ("arrival → assignment", &self.arrival_to_assignment),
        ] {
            if s.p99_ms >= bound {
                reasons.push(format!("p99 {name} {:.1} ms ≥ {bound:.0} ms", s.p99_ms));
            }
        }
        if self.arrivals == 0 {
            reasons.push("no arrivals".into());
        }
        Verdict { held: reasons.is_empty(), p99_bound_ms: bound, reasons }
    }

    /// The verdict as one line.
    pub fn verdict_line(&self) -> String {
        let v = &self.verdict;
        if v.held {
            format!(
                "HELD {:.2} arrivals/s (all opened and assigned, none abandoned, p99s under {:.0} ms)",
                self.offered_arrivals_per_s, v.p99_bound_ms
            )
        } else {
            format!(
                "NOT HELD {:.2} arrivals/s: {}",
                self.offered_arrivals_per_s,
                v.reasons.join("; ")
            )
        }
    }

    /// Whose CPU [`cpu_line`](Self::cpu_line) measures: a Switchboard node's (the whole
    /// system, its store included) or the baseline's database server's (the postmaster and
    /// its backends; the baseline's routing runs in the load generator and is not counted).
    pub fn cpu_of(&self) -> &'static str {
        let server = CpuSource::ProcTree.label();
        if self.cpu_source.as_deref() == Some(server) { "database" } else { "node" }
    }

    /// Node CPU per command as one line.
    pub fn cpu_line(&self) -> String {
        match (self.node_cpu_seconds, self.cpu_us_per_command, &self.cpu_source) {
            (Some(cpu), Some(per), Some(source)) => {
                let commits = self
                    .store_commits_per_command
                    .map(|c| format!("; {c:.2} store commits per command"))
                    .unwrap_or_default();
                let kinds = self
                    .actor_writes_per_command
                    .map(|w| {
                        let [router, conversation, agent] = w;
                        format!(
                            " (conversation {conversation:.2}, agent {agent:.2}, router {router:.2})"
                        )
                    })
                    .unwrap_or_default();
                let batches = self
                    .store_batches_per_command
                    .map(|b| format!(", {b:.2} batches{kinds}"))
                    .unwrap_or_default();
                let pages = self
                    .wal_pages_per_commit
                    .map(|p| format!(", {p:.1} WAL pages per commit"))
                    .unwrap_or_default();
                let store = self
                    .store_threads_us_per_command
                    .map(|u| format!("; store threads {u:.0} µs per command"))
                    .unwrap_or_default();
                let steal = self
                    .host_steal_seconds
                    .map(|s| format!("; this machine's CPU steal {s:.2} s"))
                    .unwrap_or_default();
                format!(
                    "{per:.0} µs per command ({cpu:.2} s over {} commands, from {source}{commits}{batches}{pages}{store}){steal}",
                    self.commands
                )
            }
            _ => format!("n/a ({} commands)", self.commands),
        }
    }

    pub fn text(&self) -> String {
        let mut out = format!(
            "{} — {}: {} agents × capacity {}\n  arrivals: offered {:.2}/s over {:.1} s, achieved {:.2}/s ({} of {} opened); customer messages {:.1}/s\n  assigned {}  abandoned {}  ended {}  messages {} sent / {} delivered  replies {}  errors {}\n",
            self.system,
            self.scenario,
            self.agents,
            self.capacity,
            self.offered_arrivals_per_s,
            self.window_s,
            self.achieved_arrivals_per_s,
            self.opened,
            self.arrivals,
            self.achieved_messages_per_s,
            self.assigned,
            self.abandoned,
            self.ended,
            self.messages_sent,
            self.messages_delivered,
            self.replies,
            self.errors,
        );
        if let Some(e) = &self.first_error {
            out.push_str(&format!("  first error: {e}\n"));
        }
        for (name, s) in self.latencies() {
            out.push_str(&format!("  {}\n", line(name, s)));
        }
        out.push_str(&format!("  {} CPU: {}\n", self.cpu_of(), self.cpu_line()));
        if let Some(settled) = &self.settled {
            out.push_str(&format!(
                "  disk: {:.0} MB of dirty page cache written back before the run ({:.1} s)\n",
                settled.dirty_bytes as f64 / 1e6,
                settled.flush_seconds
            ));
        }
        out.push_str(&format!("  verdict: {}\n", self.verdict_line()));
        out
    }

    fn latencies(&self) -> [(&'static str, &Summary); 5] {
        [
            ("customer msg → agent stream", &self.message_to_agent),
            ("arrival → assignment", &self.arrival_to_assignment),
            ("arrival → first response", &self.first_response),
            ("customer post → durable ack", &self.post_ack),
            ("offer → accepted", &self.offer_to_accepted),
        ]
    }
}

fn line(name: &str, s: &Summary) -> String {
    format!(
        "{name:<28} n={:<7} p50={:>8.2}  p90={:>8.2}  p99={:>8.2}  p999={:>8.2}  max={:>8.2} ms",
        s.n, s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms
    )
}

/// Switchboard and the baseline side by side.
pub fn side_by_side(reports: &[Report]) -> String {
    let mut out = String::from("side by side (same scenario, same arrivals; latencies in ms)\n");
    let w = reports.iter().map(|r| r.system.chars().count()).max().unwrap_or(0).max(12);
    out.push_str(&format!("  {:<28} {:<12}", "", "figure"));
    for r in reports {
        out.push_str(&format!(" {:>w$}", r.system));
    }
    out.push('\n');
    let mut row = |name: &str, figure: &str, f: &dyn Fn(&Report) -> f64| {
        out.push_str(&format!("  {name:<28} {figure:<12}"));
        for r in reports {
            match f(r) {
                v if v.is_nan() => out.push_str(&format!(" {:>w$}", "n/a")),
                v => out.push_str(&format!(" {v:>w$.2}")),
            }
        }
        out.push('\n');
    };
    row("arrivals/s", "offered", &|r| r.offered_arrivals_per_s);
    row("", "achieved", &|r| r.achieved_arrivals_per_s);
    row("customer messages/s", "achieved", &|r| r.achieved_messages_per_s);
    row("abandoned", "count", &|r| r.abandoned as f64);
    row("errors", "count", &|r| r.errors as f64);
    row("held the rate", "1 = yes", &|r| f64::from(u8::from(r.verdict.held)));
    row("CPU per command (node / db)", "µs", &|r| r.cpu_us_per_command.unwrap_or(f64::NAN));
    row("store commits per command", "count", &|r| r.store_commits_per_command.unwrap_or(f64::NAN));
    row("store batches per command", "count", &|r| r.store_batches_per_command.unwrap_or(f64::NAN));
    row("WAL pages per commit", "count", &|r| r.wal_pages_per_commit.unwrap_or(f64::NAN));
    row("store threads per command", "µs", &|r| {
        r.store_threads_us_per_command.unwrap_or(f64::NAN)
    });
    for i in 0..5 {
        let name = reports.first().map_or("", |r| r.latencies()[i].0);
        let pick = move |r: &Report, q: usize| {
            let s = r.latencies()[i].1;
            [s.p50_ms, s.p90_ms, s.p99_ms, s.p999_ms, s.max_ms][q]
        };
        for (q, figure) in ["p50", "p90", "p99", "p999", "max"].iter().enumerate() {
            row(if q == 0 { name } else { "" }, figure, &|r| pick(r, q));
        }
    }
    out
}
