//! Builders shared by the integration tests.

#![allow(dead_code)] // each test binary uses a different part

use std::any::Any;
use std::ops::Deref;
use std::path::Path;
use std::sync::{Arc, Weak, mpsc};
use std::time::Duration;

use switchboard_store::testing::{PgServer, off_runtime};
use switchboard_store::{
    Archived, Batch, DB_FILE, LogRecord, Message, PostgresOptions, PostgresStore, SqliteOptions,
    SqliteStore, Stats, Store, StreamEntry,
};

pub fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir, SqliteOptions::default()).expect("open store")
}

/// A fresh PostgreSQL database on this test binary's server, and a store on it.
pub fn open_pg(url: &str) -> PostgresStore {
    PostgresStore::open(url, PostgresOptions::default()).expect("open store")
}

/// An open store of either backend, used through the trait, plus its writer's counters.
pub struct Opened {
    pub store: Arc<dyn Store>,
    stats: Box<dyn Fn() -> Stats + Send + Sync>,
}

impl Opened {
    fn new<S: Store>(store: S, stats: fn(&S) -> Stats) -> Opened {
        let store = Arc::new(store);
        let weak: Weak<S> = Arc::downgrade(&store);
        let stats = Box::new(move || weak.upgrade().map(|s| stats(&s)).unwrap_or_default());
        Opened { store, stats }
    }

    pub fn stats(&self) -> Stats {
        (self.stats)()
    }
}

impl Deref for Opened {
    type Target = dyn Store;
    fn deref(&self) -> &(dyn Store + 'static) {
        &*self.store
    }
}

/// What the store suite needs of a backend; `tests/store.rs` runs every test on each.
pub trait Backend {
    /// Where a store keeps its data: a temporary directory, a fresh database.
    type Place;
    fn place() -> Self::Place;
    fn open_with(place: &Self::Place, request_retention: Duration) -> Opened;
    fn open(place: &Self::Place) -> Opened {
        Self::open_with(place, SqliteOptions::default().request_retention)
    }
    /// Blocks the store's writer in its next commit, from another connection, until the
    /// returned guard is dropped.
    fn hold_writes(place: &Self::Place) -> Box<dyn Any>;
    /// Runs SQL on the place directly, behind any store's back (before one opens it, say).
    fn execute(place: &Self::Place, sql: &str);
    /// Version 1's tables, to test the migration from it.
    const SCHEMA_V1: &str;
    /// A SQL literal of these bytes, for [`Backend::execute`].
    fn blob(bytes: &str) -> String;
}

fn hex(bytes: &str) -> String {
    bytes.bytes().map(|b| format!("{b:02x}")).collect()
}

pub struct Sqlite;

impl Backend for Sqlite {
    type Place = tempfile::TempDir;

    fn place() -> Self::Place {
        tempfile::tempdir().unwrap()
    }

    fn open_with(place: &Self::Place, request_retention: Duration) -> Opened {
        let options = SqliteOptions { request_retention, ..SqliteOptions::default() };
        Opened::new(SqliteStore::open(place.path(), options).unwrap(), SqliteStore::stats)
    }

    fn hold_writes(place: &Self::Place) -> Box<dyn Any> {
        // The writer's BEGIN IMMEDIATE waits for this lock (up to its busy timeout).
        let lock = rusqlite::Connection::open(place.path().join(DB_FILE)).unwrap();
        lock.execute_batch("BEGIN IMMEDIATE").unwrap();
        Box::new(lock) // closing the connection rolls back
    }

    fn blob(bytes: &str) -> String {
        format!("X'{}'", hex(bytes))
    }

    fn execute(place: &Self::Place, sql: &str) {
        let conn = rusqlite::Connection::open(place.path().join(DB_FILE)).unwrap();
        conn.execute_batch(sql).unwrap();
    }

    const SCHEMA_V1: &str = "
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        CREATE TABLE log (tenant TEXT NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL,
            request_id TEXT, command BLOB NOT NULL, response BLOB NOT NULL,
            PRIMARY KEY (tenant, seq));
        CREATE TABLE snapshots (tenant TEXT NOT NULL PRIMARY KEY, seq INTEGER NOT NULL,
            bytes BLOB NOT NULL);
        CREATE TABLE requests (tenant TEXT NOT NULL, request_id TEXT NOT NULL,
            seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, response BLOB NOT NULL,
            PRIMARY KEY (tenant, request_id));
        CREATE INDEX requests_by_age ON requests (tenant, at_ms);
        CREATE TABLE streams (tenant TEXT NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL,
            at_ms INTEGER NOT NULL, payload BLOB NOT NULL, PRIMARY KEY (tenant, stream, seq));
        CREATE TABLE fences (shard INTEGER NOT NULL PRIMARY KEY, epoch INTEGER NOT NULL);
        CREATE TABLE messages (tenant TEXT NOT NULL, conversation INTEGER NOT NULL,
            seq INTEGER NOT NULL, at_ms INTEGER NOT NULL, sender TEXT NOT NULL,
            text TEXT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (tenant, conversation, seq));
        INSERT INTO schema_version (version) VALUES (1);
    ";
}

pub struct Postgres;

impl Backend for Postgres {
    /// The database's URL.
    type Place = String;

    fn place() -> Self::Place {
        PgServer::shared().database()
    }

    fn open_with(place: &Self::Place, request_retention: Duration) -> Opened {
        let options = PostgresOptions { request_retention, ..PostgresOptions::default() };
        Opened::new(PostgresStore::open(place, options).unwrap(), PostgresStore::stats)
    }

    fn hold_writes(place: &Self::Place) -> Box<dyn Any> {
        // The writer's first INSERT waits for this lock (no lock timeout by default). The
        // client lives on a thread of its own: it must not run on an async test's thread.
        let url = place.clone();
        let (locked_tx, locked) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            client.batch_execute("BEGIN; LOCK TABLE log IN ACCESS EXCLUSIVE MODE").unwrap();
            locked_tx.send(()).unwrap();
            let _ = released.recv();
            client.batch_execute("ROLLBACK").unwrap();
        });
        locked.recv().expect("the lock holder panicked");
        Box::new(Held { release: Some(release), holder: Some(holder) })
    }

    fn blob(bytes: &str) -> String {
        format!("decode('{}', 'hex')", hex(bytes))
    }

    fn execute(place: &Self::Place, sql: &str) {
        blocking(|| {
            let mut client = postgres::Client::connect(place, postgres::NoTls).unwrap();
            client.batch_execute(sql).unwrap();
        });
    }

    const SCHEMA_V1: &str = "
        CREATE TABLE schema_version (version BIGINT NOT NULL);
        CREATE TABLE log (tenant TEXT NOT NULL, seq BIGINT NOT NULL, at_ms BIGINT NOT NULL,
            request_id TEXT, command BYTEA NOT NULL, response BYTEA NOT NULL,
            PRIMARY KEY (tenant, seq));
        CREATE TABLE snapshots (tenant TEXT NOT NULL PRIMARY KEY, seq BIGINT NOT NULL,
            bytes BYTEA NOT NULL);
        CREATE TABLE requests (tenant TEXT NOT NULL, request_id TEXT NOT NULL,
            seq BIGINT NOT NULL, at_ms BIGINT NOT NULL, response BYTEA NOT NULL,
            PRIMARY KEY (tenant, request_id));
        CREATE INDEX requests_by_age ON requests (tenant, at_ms);
        CREATE TABLE streams (tenant TEXT NOT NULL, stream TEXT NOT NULL, seq BIGINT NOT NULL,
            at_ms BIGINT NOT NULL, payload BYTEA NOT NULL, PRIMARY KEY (tenant, stream, seq));
        CREATE TABLE messages (tenant TEXT NOT NULL, conversation BIGINT NOT NULL,
            seq BIGINT NOT NULL, at_ms BIGINT NOT NULL, sender TEXT NOT NULL,
            text TEXT NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (tenant, conversation, seq));
        CREATE TABLE shard_fences (shard BIGINT NOT NULL PRIMARY KEY, epoch BIGINT NOT NULL);
        INSERT INTO schema_version (version) VALUES (1);
    ";
}

struct Held {
    release: Option<mpsc::Sender<()>>,
    holder: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        drop(self.release.take());
        if let Some(holder) = self.holder.take() {
            holder.join().unwrap();
        }
    }
}

/// Runs `f` where a `postgres::Client` may be used.
pub fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    off_runtime(f)
}

pub fn record(seq: u64) -> LogRecord {
    LogRecord {
        seq,
        at_ms: 1_000 + seq,
        request_id: Some(format!("req-{seq}")),
        command: format!("command {seq}").into_bytes(),
        response: format!("response {seq}").into_bytes(),
    }
}

pub fn entry(stream: &str, seq: u64) -> StreamEntry {
    StreamEntry {
        stream: stream.into(),
        seq,
        at_ms: 1_000 + seq,
        payload: format!("{stream} {seq}").into_bytes(),
        conversation: None,
    }
}

/// A stream entry about a conversation.
pub fn entry_about(stream: &str, seq: u64, conversation: u64) -> StreamEntry {
    StreamEntry { conversation: Some(conversation), ..entry(stream, seq) }
}

/// An archived conversation: opened at `opened`, ended 10 ms later, purged at `purge`.
pub fn archived(conversation: u64, customer: &str, opened: u64, purge: u64) -> Archived {
    Archived {
        conversation,
        customer: customer.into(),
        opened_at_ms: opened,
        ended_at_ms: opened + 10,
        purge_at_ms: purge,
        body: format!("conversation {conversation}").into_bytes(),
    }
}

pub fn message(conversation: u64, seq: u64) -> Message {
    Message {
        conversation,
        seq,
        at_ms: 1_000 + seq,
        sender: "agent/alice".into(),
        text: format!("hello {seq}"),
        kind: "text".into(),
    }
}

/// What one accepted command typically writes: its log record, an event, a transcript row.
pub fn command(tenant: &str, seq: u64) -> Batch {
    Batch {
        tenant: tenant.into(),
        log: vec![record(seq)],
        streams: vec![entry("events", seq)],
        messages: vec![message(1, seq)],
        ..Batch::default()
    }
}

/// Every test named, once per backend: `both!(test_a, test_b)` in a test binary instantiates
/// each generic `test_x::<B: Backend>()` in `mod sqlite` and `mod postgres`.
#[allow(unused_macros)] // not every test binary runs the suite
macro_rules! suite {
    ($backend:ident: $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test::<crate::common::$backend>().await;
            }
        )*
    };
}

#[allow(unused_macros)]
macro_rules! both {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            suite!(Sqlite: $($test),*);
        }
        mod postgres {
            suite!(Postgres: $($test),*);
        }
    };
}
