//! Append throughput of the SQLite store: batches shaped like one routine command (a log
//! record with a request id, two stream entries, one transcript row), from 1 and from 64
//! concurrent appenders, and 24,000 from 16 (about a node's group size under the contact-center
//! load; long enough for several WAL checkpoints). One tenant per appender, each awaiting its
//! append before the next, as a tenant's committer does. Prints figures; asserts nothing about
//! time.
//!
//! `cargo bench -p switchboard-store --bench append` (`-- --quick` for a short run).

#![allow(clippy::print_stdout, clippy::disallowed_methods)] // a benchmark: prints, reads the clock

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_store::{
    Batch, LogRecord, Message, SqliteOptions, SqliteStore, Store, StreamEntry,
};

fn batch(tenant: &str, seq: u64) -> Batch {
    let conversation = seq / 8 + 1;
    let at_ms = 1_700_000_000_000 + seq;
    let entry = |stream: &str| StreamEntry {
        stream: stream.into(),
        seq,
        at_ms,
        payload: vec![7; 120],
        conversation: Some(conversation),
    };
    Batch {
        tenant: tenant.into(),
        log: vec![LogRecord {
            seq,
            at_ms,
            request_id: Some(format!("{tenant}-request-{seq:012}")),
            command: vec![1; 200],
            response: vec![2; 60],
        }],
        streams: vec![entry("events"), entry("agent/alice")],
        messages: vec![Message {
            conversation,
            seq,
            at_ms,
            sender: "customer".into(),
            text: "Hello, I would like to change the delivery address of my order.".into(),
            kind: "text".into(),
        }],
        ..Batch::default()
    }
}

struct Run {
    appenders: usize,
    batches: u64,
    elapsed: Duration,
    /// Sum over appends of the time from `append` to its acknowledgement.
    waited: Duration,
    commits: u64,
    /// CPU time of the whole process (all threads) during the run.
    cpu: Duration,
    /// Bytes of the database file once closed (the last connection checkpoints the WAL
    /// into it), warm-up included.
    disk: u64,
}

/// User plus system CPU time of this process so far (Linux: `/proc/self/stat`, in ticks of
/// 10 ms), or zero elsewhere.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return Duration::ZERO };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let Some((_, rest)) = stat.rsplit_once(')') else { return Duration::ZERO };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

async fn run(appenders: usize, per_appender: u64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    // Warm-up: the file, its first pages, the prepared statements.
    for seq in 1..=50 {
        store.append(batch("warm-up", seq)).await.unwrap();
    }
    let before = store.stats();
    let cpu_before = cpu_time();
    let started = Instant::now();
    let tasks: Vec<_> = (0..appenders)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let tenant = format!("tenant-{i}");
                let mut waited = Duration::ZERO;
                for seq in 1..=per_appender {
                    let sent = Instant::now();
                    store.append(batch(&tenant, seq)).await.unwrap();
                    waited += sent.elapsed();
                }
                waited
            })
        })
        .collect();
    let mut waited = Duration::ZERO;
    for task in tasks {
        waited += task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let after = store.stats();
    drop(store); // the tasks' clones are gone: this closes it
    let disk = std::fs::metadata(dir.path().join(switchboard_store::DB_FILE)).unwrap().len();
    Run {
        appenders,
        batches: after.batches - before.batches,
        elapsed,
        waited,
        commits: after.commits - before.commits,
        cpu,
        disk,
    }
}

fn report(run: &Run) {
    let secs = run.elapsed.as_secs_f64();
    let batches = run.batches as f64;
    println!(
        "sqlite  appenders {:>2}  batches {:>6}  {:>6.0} appends/s  {:>6.1} µs/batch wall  \
         {:>5.1} µs/batch cpu  {:>8.1} µs latency  {:>5.1} batches/commit  {:>4.0} B/batch disk",
        run.appenders,
        run.batches,
        batches / secs,
        secs * 1e6 / batches,
        run.cpu.as_secs_f64() * 1e6 / batches,
        run.waited.as_secs_f64() * 1e6 / batches,
        batches / run.commits.max(1) as f64,
        run.disk as f64 / batches,
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let rounds = if quick { 1 } else { 3 };
    let (one, many, long) = if quick { (200, 20, 100) } else { (2_000, 100, 1_500) };
    for _ in 0..rounds {
        report(&runtime.block_on(run(1, one)));
        report(&runtime.block_on(run(64, many)));
        // About a node's group size under the contact-center load, long enough for the WAL
        // to be checkpointed several times.
        report(&runtime.block_on(run(16, long)));
    }
}
