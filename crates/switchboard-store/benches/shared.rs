//! Append throughput on PostgreSQL of shared streams (positions assigned by the store at
//! commit, `Batch::appends`) against single-writer streams (numbered by their writer,
//! `Batch::streams`), from 1 and from 2 writers: a writer is one `PostgresStore` (a node's
//! writer thread and connection, group-committing), with 16 appenders each awaiting its
//! append before the next, as a node's actors do. Each batch is one 120-byte stream entry
//! and nothing else, so the figures isolate the stream's cost.
//!
//! - writer-assigned: each appender numbers a stream of its own (`agent/<writer>-<i>`);
//! - store-assigned: every appender of every writer appends to one shared `outbox`, so with 2
//!   writers their commits serialise on the stream's head row.
//!
//! Starts a throwaway PostgreSQL server (`switchboard_store::testing`) on a loopback port.
//! Prints figures; asserts nothing about time.
//!
//! `cargo bench -p switchboard-store --bench shared` (`-- --quick` for a short run).

#![allow(clippy::print_stdout, clippy::disallowed_methods)] // a benchmark: prints, reads the clock

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_store::testing::PgServer;
use switchboard_store::{Append, Batch, PostgresOptions, PostgresStore, Store, StreamEntry};

const APPENDERS: usize = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    WriterAssigned,
    StoreAssigned,
}

fn batch(kind: Kind, writer: usize, appender: usize, seq: u64) -> Batch {
    let at_ms = 1_700_000_000_000 + seq;
    let payload = vec![7; 120];
    let tenant = "acme".to_owned();
    match kind {
        Kind::WriterAssigned => Batch {
            tenant,
            streams: vec![StreamEntry {
                stream: format!("agent/{writer}-{appender}"),
                seq,
                at_ms,
                payload,
                conversation: None,
            }],
            ..Batch::default()
        },
        Kind::StoreAssigned => Batch {
            tenant,
            appends: vec![Append { stream: "outbox".into(), at_ms, payload, conversation: None }],
            ..Batch::default()
        },
    }
}

struct Run {
    kind: Kind,
    writers: usize,
    batches: u64,
    elapsed: Duration,
    waited: Duration,
    commits: u64,
}

async fn run(url: &str, kind: Kind, writers: usize, per_appender: u64) -> Run {
    let stores: Vec<Arc<PostgresStore>> = (0..writers)
        .map(|_| Arc::new(PostgresStore::open(url, PostgresOptions::default()).unwrap()))
        .collect();
    // Warm-up: connections, prepared statements, the head row.
    for (w, store) in stores.iter().enumerate() {
        for seq in 1..=20 {
            let mut warm = batch(kind, w, 0, seq);
            warm.tenant = format!("warm-up-{w}");
            store.append(warm).await.unwrap();
        }
    }
    let before: u64 = stores.iter().map(|s| s.stats().commits).sum();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (w, store) in stores.iter().enumerate() {
        for a in 0..APPENDERS {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let mut waited = Duration::ZERO;
                for seq in 1..=per_appender {
                    let sent = Instant::now();
                    store.append(batch(kind, w, a, seq)).await.unwrap();
                    waited += sent.elapsed();
                }
                waited
            }));
        }
    }
    let mut waited = Duration::ZERO;
    for task in tasks {
        waited += task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let commits = stores.iter().map(|s| s.stats().commits).sum::<u64>() - before;
    if kind == Kind::StoreAssigned {
        // The figures are only worth reading if the stream came out gap-free.
        let last = stores[0].last_stream_seq("acme", "outbox").unwrap().unwrap_or(0);
        let kept = stores[0].read_stream("acme", "outbox", 0, usize::MAX).unwrap().len() as u64;
        assert_eq!((last, kept), (per_appender * (APPENDERS * writers) as u64, last));
    }
    Run {
        kind,
        writers,
        batches: per_appender * (APPENDERS * writers) as u64,
        elapsed,
        waited,
        commits,
    }
}

fn report(run: &Run) {
    let secs = run.elapsed.as_secs_f64();
    let batches = run.batches as f64;
    let kind = match run.kind {
        Kind::WriterAssigned => "writer-assigned",
        Kind::StoreAssigned => "store-assigned ",
    };
    println!(
        "postgres {kind}  writers {}  appenders {:>2}  batches {:>6}  {:>6.0} appends/s  \
         {:>7.1} µs latency  {:>5.1} batches/commit",
        run.writers,
        APPENDERS * run.writers,
        run.batches,
        batches / secs,
        run.waited.as_secs_f64() * 1e6 / batches,
        batches / run.commits.max(1) as f64,
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let server = PgServer::start().expect("start a PostgreSQL server");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let rounds = if quick { 1 } else { 3 };
    let per_appender = if quick { 50 } else { 500 };
    for _ in 0..rounds {
        for writers in [1, 2] {
            for kind in [Kind::WriterAssigned, Kind::StoreAssigned] {
                // A fresh database per run, made off the runtime (a blocking client).
                let url = server.database();
                report(&runtime.block_on(run(&url, kind, writers, per_appender)));
            }
        }
    }
}
