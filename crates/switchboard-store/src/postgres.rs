//! The cluster store: PostgreSQL, one writer thread, a few read connections.
//!
//! The same tables and columns as SQLite's ([`crate::schema`]): TEXT for strings, BIGINT for
//! `u64` values (the same `i64` range rule), BYTEA for blobs. `shard_fences` holds the epoch
//! of each shard's owner, checked by every write (cluster fencing).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, NoTls, Statement};

use crate::schema::{
    self, ARCHIVE_COLUMNS, CUSTOMER_COLUMNS, Param, SCHEMA_VERSION, bound, count, id, unsigned,
};
use crate::writer::{self, Counters, Limits, Linger};
use crate::{
    ActorState, ArchiveQuery, ArchiveScan, ArchiveWindow, Archived, Contact, ContactField,
    CustomerRecord, Error, Fence, Loaded, LogRecord, Message, Pending, Result, Stats, Store,
    StreamEntry, numbers, pg_writer,
};

/// Tables of version 1, as in SQLite. `IF NOT EXISTS` so that opening is idempotent.
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS schema_version (
    version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    tenant     TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL,
    request_id TEXT,
    command    BYTEA  NOT NULL,
    response   BYTEA  NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE TABLE IF NOT EXISTS snapshots (
    tenant TEXT   NOT NULL PRIMARY KEY,
    seq    BIGINT NOT NULL,
    bytes  BYTEA  NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    tenant     TEXT   NOT NULL,
    request_id TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    at_ms      BIGINT NOT NULL,
    response   BYTEA  NOT NULL,
    PRIMARY KEY (tenant, request_id)
);
CREATE INDEX IF NOT EXISTS requests_by_age ON requests (tenant, at_ms);
CREATE TABLE IF NOT EXISTS streams (
    tenant  TEXT   NOT NULL,
    stream  TEXT   NOT NULL,
    seq     BIGINT NOT NULL,
    at_ms   BIGINT NOT NULL,
    payload BYTEA  NOT NULL,
    PRIMARY KEY (tenant, stream, seq)
);
CREATE TABLE IF NOT EXISTS messages (
    tenant       TEXT   NOT NULL,
    conversation BIGINT NOT NULL,
    seq          BIGINT NOT NULL,
    at_ms        BIGINT NOT NULL,
    sender       TEXT   NOT NULL,
    text         TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    PRIMARY KEY (tenant, conversation, seq)
);
-- Fencing: the newest epoch that owns each shard (see `Fence`). Every write locks its shard's
-- row and compares, so a write and a newer owner's raise are ordered.
CREATE TABLE IF NOT EXISTS shard_fences (
    shard BIGINT NOT NULL PRIMARY KEY,
    epoch BIGINT NOT NULL
);
";

/// Version 2, as in SQLite: the archive, and `streams.conversation`.
const MIGRATE_V2: &str = "
CREATE TABLE archive (
    tenant       TEXT   NOT NULL,
    conversation BIGINT NOT NULL,
    customer     TEXT   NOT NULL,
    opened_at_ms BIGINT NOT NULL,
    ended_at_ms  BIGINT NOT NULL,
    purge_at_ms  BIGINT NOT NULL,
    body         BYTEA  NOT NULL,
    PRIMARY KEY (tenant, conversation)
);
CREATE INDEX archive_by_customer ON archive (tenant, customer, conversation);
CREATE INDEX archive_by_end ON archive (tenant, ended_at_ms);
CREATE INDEX archive_by_purge ON archive (tenant, purge_at_ms);
ALTER TABLE streams ADD COLUMN conversation BIGINT;
CREATE INDEX streams_by_conversation ON streams (tenant, conversation)
    WHERE conversation IS NOT NULL;
CREATE TABLE customers (
    tenant   TEXT  NOT NULL,
    customer TEXT  NOT NULL,
    body     BYTEA NOT NULL,
    PRIMARY KEY (tenant, customer)
);
";

/// Version 3, as in SQLite: one row per command (the log record answers a repeated request).
const MIGRATE_V3: &str = "
CREATE INDEX log_by_request ON log (tenant, request_id, seq) WHERE request_id IS NOT NULL;
INSERT INTO log (tenant, seq, at_ms, request_id, command, response)
    SELECT r.tenant, r.seq, r.at_ms, r.request_id, ''::bytea, r.response FROM requests r
    WHERE NOT EXISTS (SELECT 1 FROM log l WHERE l.tenant = r.tenant AND l.seq = r.seq);
DROP TABLE requests;
";

/// Any constant: the advisory lock that serialises schema set-up between processes, since
/// concurrent `CREATE TABLE IF NOT EXISTS` can fail in PostgreSQL.
const SCHEMA_LOCK: i64 = 0x5377_6974_6368;

/// Tuning of a [`PostgresStore`]. The defaults suit a node; tests may shrink them.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// At most this many writes go into one commit.
    pub max_batches_per_commit: usize,
    /// A commit stops taking writes once they add up to this many bytes (roughly).
    pub max_bytes_per_commit: usize,
    /// The idempotency window (default 24 h): how long a log record already covered by a
    /// snapshot is kept to answer a repeated request id ([`crate::Store::find_response`]).
    /// A snapshot drops those older than this before the tenant's newest record; a
    /// [`crate::Store::retain`] those older than this before its `now_ms`.
    pub request_retention: Duration,
    /// Connections for reads, used concurrently.
    pub read_connections: usize,
    /// How long the writer waits for more writes after a commit's first (zero: never), so
    /// that each commit carries more of them: the server's CPU per commit is shared by every
    /// node ([`PG_COMMIT_LINGER`]).
    pub commit_linger: Duration,
}

/// The PostgreSQL writer's default linger after every commit's first write. Three nodes at 100
/// arrivals/s (`loadtest/cluster-compare`, three alternating pairs): with 2 ms after every
/// first write, against 1 ms only after groups with company (SQLite's rule), PostgreSQL's
/// CPU fell by 21% and the nodes' by 11% per command, with the p99s level and the p50s about
/// a millisecond per commit in the chain longer (ARCHITECTURE.md, "PostgreSQL's commits").
pub const PG_COMMIT_LINGER: Duration = Duration::from_millis(2);

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_batches_per_commit: 1024,
            max_bytes_per_commit: 8 << 20,
            request_retention: Duration::from_secs(24 * 60 * 60),
            read_connections: 4,
            commit_linger: PG_COMMIT_LINGER,
        }
    }
}

/// The cluster [`Store`]: the same contract as [`crate::SqliteStore`], on a PostgreSQL
/// database. Durable means PostgreSQL's COMMIT returned with `synchronous_commit=on` (set on
/// the writer's session), which also needs the server's `fsync=on`.
///
/// Dropping it (or [`PostgresStore::close`]) lets the writer finish every queued write, then
/// stops it.
pub struct PostgresStore {
    /// `None` only while closing.
    writer: writer::Handle,
    readers: Readers,
    stats: Arc<Counters>,
    request_retention: Duration,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the URL: it may carry a password.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

/// How long the server lets one of our sessions sit inside a transaction without sending
/// anything before it ends the session. A node paused (SIGSTOP, a VM freeze, a long GC-like
/// stall) in the middle of a commit holds its shards' fence rows locked; without this, the
/// new owner's fence raise would wait for them as long as the paused node stays paused. Our
/// own transactions send their statements back to back, so this is far above any gap they
/// leave; a session ended by it fails its commit, and the writer reconnects.
pub const IDLE_IN_TRANSACTION: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects without TLS (the database is on loopback or a private network), makes sure
/// commits wait for the disk whatever the server's default, and bounds how long a stalled
/// session can hold its locks ([`IDLE_IN_TRANSACTION`]). `name` is what the session is
/// called in `pg_stat_activity` (`application_name`).
pub(crate) fn connect(url: &str, name: &str) -> Result<Client, postgres::Error> {
    let mut client = Client::connect(url, NoTls)?;
    client.batch_execute(&session(name))?;
    Ok(client)
}

/// The settings of every session of ours, as [`connect`] sets them (the writer's connection
/// is made apart: `pg_conn`). `name` is one of ours (no quote to escape).
pub(crate) fn session(name: &str) -> String {
    format!(
        "SET synchronous_commit TO on; SET idle_in_transaction_session_timeout TO {}; \
         SET application_name TO '{name}'",
        IDLE_IN_TRANSACTION.as_millis()
    )
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgresql://user@host:port/db` or `host=...
    /// port=...`), creating the tables if missing.
    pub fn open(url: &str, options: PostgresOptions) -> Result<PostgresStore> {
        let limits = Limits {
            linger: options.commit_linger,
            linger_when: Linger::Always,
            ..Limits::new(
                options.max_batches_per_commit,
                options.max_bytes_per_commit,
                options.request_retention,
            )
        };
        let stats = Arc::new(Counters::default());
        let (jobs, queue) = mpsc::channel();
        // The writer connects and sets the schema up on its own thread (a `postgres::Client`
        // must never be used on a thread that drives async tasks), and says how that went.
        let (opened_tx, opened) = mpsc::sync_channel(1);
        let writer = {
            let stats = Arc::clone(&stats);
            let url = url.to_owned();
            std::thread::Builder::new().name("store-pg-writer".into()).spawn(move || {
                let client =
                    connect(&url, "switchboard").map_err(Error::from).and_then(|mut client| {
                        migrate(&mut client)?;
                        Ok(client)
                    });
                match client {
                    Ok(client) => {
                        drop(client);
                        let _ = opened_tx.send(Ok(()));
                        pg_writer::run(url, queue, limits, &stats);
                    }
                    Err(error) => {
                        let _ = opened_tx.send(Err(error));
                    }
                }
            })?
        };
        if let Err(error) = opened.recv().unwrap_or(Err(Error::Closed)) {
            let _ = writer.join();
            return Err(error);
        }
        let readers = Readers::start(url, options.read_connections.max(1))?;
        Ok(PostgresStore {
            writer: writer::Handle::new(jobs, writer),
            readers,
            stats,
            request_retention: options.request_retention,
        })
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> Stats {
        self.stats.stats()
    }

    /// Finishes every queued write and stops the writer. Same as dropping, but says so.
    pub fn close(self) {
        drop(self);
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // The writer field drains and joins after this; readers can stop first.
        self.readers.stop();
    }
}

/// Version 6, as in SQLite: actors' durable state.
const MIGRATE_V6: &str = "
CREATE TABLE actors (
    tenant    TEXT   NOT NULL,
    kind      TEXT   NOT NULL,
    actor_key TEXT   NOT NULL,
    epoch     BIGINT NOT NULL,
    body      BYTEA  NOT NULL,
    PRIMARY KEY (tenant, kind, actor_key)
);
";

/// Version 9, as in SQLite: actors' responses by request id, and conversations' customers.
const MIGRATE_V9: &str = "
CREATE TABLE responses (
    tenant     TEXT   NOT NULL,
    request_id TEXT   NOT NULL,
    at_ms      BIGINT NOT NULL,
    body       BYTEA  NOT NULL,
    PRIMARY KEY (tenant, request_id)
);
CREATE INDEX responses_by_age ON responses (tenant, at_ms);
CREATE TABLE conversation_owners (
    tenant       TEXT   NOT NULL,
    conversation BIGINT NOT NULL,
    customer     BIGINT NOT NULL,
    PRIMARY KEY (tenant, conversation)
);
";

/// Actor rows are compressed with lz4, not PostgreSQL's default pglz. A router's row holds
/// its live work (hundreds of KB with thousands of open conversations) and is rewritten on
/// every flush: pglz compressing it was 7% of all CPU in a three-node run (`perf record -a`,
/// `loadtest/cluster --actor-routing`), lz4 is several times faster. A server built without
/// lz4 (or older than 14) stores them uncompressed instead: more bytes written, no
/// compression on the write path. Rows already stored keep theirs. A column setting, not a
/// layout: no schema version (a node of an earlier version still opens the database), set
/// once by the first node that finds it unset.
fn compress_actor_rows(tx: &mut postgres::Transaction<'_>) -> Result<()> {
    const COLUMN: &str =
        "FROM pg_attribute WHERE attrelid = 'actors'::regclass AND attname = 'body'";
    // In a savepoint: a failed statement would abort the whole migration.
    let mut sp = tx.savepoint("compression")?;
    match sp.query_one(&format!("SELECT attcompression::text, attstorage::text {COLUMN}"), &[]) {
        Ok(row) if row.get::<_, String>(0) == "l" || row.get::<_, String>(1) == "e" => {
            return Ok(sp.commit()?);
        }
        Ok(_) => {
            if sp.batch_execute("ALTER TABLE actors ALTER COLUMN body SET COMPRESSION lz4").is_ok()
            {
                return Ok(sp.commit()?);
            }
        }
        // Before 14: no `attcompression`, and no lz4.
        Err(_) => {}
    }
    sp.rollback()?;
    let storage: String = tx.query_one(&format!("SELECT attstorage::text {COLUMN}"), &[])?.get(0);
    if storage != "e" {
        tx.batch_execute("ALTER TABLE actors ALTER COLUMN body SET STORAGE EXTERNAL")?;
    }
    Ok(())
}

/// Creates the tables if missing, or brings an older database up to [`SCHEMA_VERSION`] one
/// step at a time, in one transaction under an advisory lock (so concurrent nodes migrate
/// once).
fn migrate(client: &mut Client) -> Result<()> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let found: Option<i64> = tx.query_one("SELECT MAX(version) FROM schema_version", &[])?.get(0);
    let mut version = match found {
        None => {
            tx.batch_execute(SCHEMA_V1)?;
            1
        }
        Some(found) if found > SCHEMA_VERSION => {
            return Err(Error::SchemaTooNew { found, supported: SCHEMA_VERSION });
        }
        Some(found) => found,
    };
    let found = found.unwrap_or(0);
    if version < 2 {
        tx.batch_execute(MIGRATE_V2)?;
        version = 2;
    }
    if version < 3 {
        tx.batch_execute(MIGRATE_V3)?;
        version = 3;
    }
    if version < 4 {
        tx.batch_execute(schema::MIGRATE_V4)?;
        version = 4;
    }
    if version < 5 {
        tx.batch_execute(schema::MIGRATE_V5)?;
        version = 5;
    }
    if version < 6 {
        tx.batch_execute(MIGRATE_V6)?;
        version = 6;
    }
    if version < 7 {
        tx.batch_execute(schema::MIGRATE_V7)?;
        version = 7;
    }
    if version < 8 {
        tx.batch_execute(crate::numbers::MIGRATE_V8)?;
        version = 8;
    }
    if version < 9 {
        tx.batch_execute(MIGRATE_V9)?;
        version = 9;
    }
    compress_actor_rows(&mut tx)?;
    if version != found {
        tx.execute("DELETE FROM schema_version", &[])?;
        tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&version])?;
    }
    tx.commit()?;
    Ok(())
}

impl Store for PostgresStore {
    fn request_retention(&self) -> Duration {
        self.request_retention
    }

    fn stats(&self) -> Stats {
        self.stats.stats()
    }

    fn generation(&self, tenant: &str) -> Option<u64> {
        Some(self.stats.generation(tenant))
    }

    fn append(&self, batch: crate::Batch) -> Pending {
        self.writer.append(batch)
    }

    fn append_assigned(&self, batch: crate::Batch) -> crate::Assigned {
        self.writer.append_assigned(batch)
    }

    fn snapshot(&self, tenant: &str, fence: Fence, seq: u64, bytes: Vec<u8>) -> Pending {
        self.writer.snapshot(tenant, fence, seq, bytes)
    }

    fn raise_fence(&self, fence: Fence) -> Pending {
        self.writer.raise_fence(fence)
    }

    fn trim_stream(&self, tenant: &str, stream: &str, keep_last: usize) -> Pending {
        self.writer.trim_stream(tenant, stream, keep_last)
    }

    fn retain(&self, tenant: &str, fence: Fence, now_ms: u64, streams_before_ms: u64) -> Pending {
        self.writer.retain(tenant, fence, now_ms, streams_before_ms)
    }

    fn tenants(&self) -> Result<Vec<String>> {
        self.readers.with(|client, s| {
            Ok(client.query(&s.tenants, &[])?.iter().map(|row| row.get(0)).collect())
        })
    }

    fn tenant_exists(&self, tenant: &str) -> Result<bool> {
        let tenant = tenant.to_owned();
        self.readers
            .with(move |client, s| Ok(client.query_one(&s.tenant_exists, &[&tenant])?.get(0)))
    }

    fn load(&self, tenant: &str) -> Result<Loaded> {
        let tenant = tenant.to_owned();
        self.readers.with(move |client, s| {
            // One snapshot of the database for both queries: a snapshot committed between
            // them would otherwise hide the log records it deleted.
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let snapshot = tx
                .query_opt(&s.snapshot, &[&tenant])?
                .map(|row| (unsigned(row.get(0)), row.get(1)));
            let after = snapshot.as_ref().map_or(-1, |&(seq, _)| bound(seq));
            let log = tx
                .query(&s.log, &[&tenant, &after])?
                .iter()
                .map(|row| LogRecord {
                    seq: unsigned(row.get(0)),
                    at_ms: unsigned(row.get(1)),
                    request_id: row.get(2),
                    command: row.get(3),
                    response: row.get(4),
                })
                .collect();
            tx.commit()?;
            Ok(Loaded { snapshot, log })
        })
    }

    fn read_stream(
        &self,
        tenant: &str,
        stream: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StreamEntry>> {
        let (tenant, stream) = (tenant.to_owned(), stream.to_owned());
        self.readers.with(move |client, s| {
            let rows =
                client.query(&s.stream, &[&tenant, &stream, &bound(after_seq), &count(limit)])?;
            Ok(rows
                .iter()
                .map(|row| StreamEntry {
                    stream: stream.clone(),
                    seq: unsigned(row.get(0)),
                    at_ms: unsigned(row.get(1)),
                    payload: row.get(2),
                    conversation: row.get::<_, Option<i64>>(3).map(unsigned),
                })
                .collect())
        })
    }

    fn last_stream_seq(&self, tenant: &str, stream: &str) -> Result<Option<u64>> {
        let (tenant, stream) = (tenant.to_owned(), stream.to_owned());
        self.readers.with(move |client, s| {
            let last: Option<i64> =
                client.query_one(&s.last_stream_seq, &[&tenant, &stream])?.get(0);
            Ok(last.map(unsigned))
        })
    }

    fn messages(
        &self,
        tenant: &str,
        conversation: u64,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let tenant = tenant.to_owned();
        self.readers.with(move |client, s| {
            let rows = client.query(
                &s.messages,
                &[&tenant, &id(conversation), &bound(after_seq), &count(limit)],
            )?;
            Ok(rows
                .iter()
                .map(|row| Message {
                    conversation,
                    seq: unsigned(row.get(0)),
                    at_ms: unsigned(row.get(1)),
                    sender: row.get(2),
                    text: row.get(3),
                    kind: row.get(4),
                })
                .collect())
        })
    }

    fn find_response(&self, tenant: &str, request_id: &str) -> Result<Option<Vec<u8>>> {
        let (tenant, request_id) = (tenant.to_owned(), request_id.to_owned());
        self.readers.with(move |client, s| {
            Ok(client.query_opt(&s.find_response, &[&tenant, &request_id])?.map(|row| row.get(0)))
        })
    }

    fn actor_response(&self, tenant: &str, request_id: &str) -> Result<Option<Vec<u8>>> {
        let (tenant, request_id) = (tenant.to_owned(), request_id.to_owned());
        self.readers.with(move |client, s| {
            Ok(client.query_opt(&s.actor_response, &[&tenant, &request_id])?.map(|row| row.get(0)))
        })
    }

    fn conversation_customer(&self, tenant: &str, conversation: u64) -> Result<Option<u64>> {
        // Stored ids are at most `i64::MAX` (see `ordered`).
        let Ok(conversation) = i64::try_from(conversation) else { return Ok(None) };
        let tenant = tenant.to_owned();
        self.readers.with(move |client, s| {
            let row = client.query_opt(&s.conversation_customer, &[&tenant, &conversation])?;
            Ok(row.map(|row| unsigned(row.get(0))))
        })
    }

    fn archived(&self, tenant: &str, conversation: u64) -> Result<Option<Archived>> {
        // Archived ids are at most `i64::MAX` (see `ordered`).
        let Ok(conversation) = i64::try_from(conversation) else { return Ok(None) };
        let tenant = tenant.to_owned();
        self.readers.with(move |client, s| {
            Ok(client.query_opt(&s.archived, &[&tenant, &conversation])?.as_ref().map(archived))
        })
    }

    fn list_archived(&self, tenant: &str, query: &ArchiveQuery) -> Result<Vec<Archived>> {
        let (sql, params) = schema::archive_listing('$', tenant, query);
        self.readers.with(move |client, _| {
            let params: Vec<&(dyn postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|param| match param {
                    Param::Text(text) => text as &(dyn postgres::types::ToSql + Sync),
                    Param::Int(int) => int as &(dyn postgres::types::ToSql + Sync),
                })
                .collect();
            Ok(client.query(sql.as_str(), &params)?.iter().map(archived).collect())
        })
    }

    fn count_archived(&self, tenant: &str) -> Result<u64> {
        let tenant = tenant.to_owned();
        self.readers.with(move |client, s| {
            let n: i64 = client.query_one(&s.count_archived, &[&tenant])?.get(0);
            Ok(unsigned(n))
        })
    }

    /// One autocommitted statement on a reader's connection (durable when it returns,
    /// `synchronous_commit=on`): the counter row is locked for that statement only.
    fn reserve(&self, tenant: &str, counter: &str, count: u64) -> Result<u64> {
        let n = numbers::count(tenant, counter, count)?;
        let (tenant, counter) = (tenant.to_owned(), counter.to_owned());
        self.readers.with(move |client, s| {
            let last: i64 = match client.query_one(&s.reserve, &[&tenant, &counter, &n]) {
                Ok(row) => row.get(0),
                Err(e) if e.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) => {
                    return Err(numbers::exhausted(&tenant, &counter));
                }
                Err(e) => return Err(e.into()),
            };
            Ok(numbers::first_of(unsigned(last), count))
        })
    }

    /// Insert-if-absent, then a read of what is bound, each autocommitted: a concurrent
    /// binding of the same name makes the insert wait for it and do nothing, and the read
    /// then sees it.
    fn bind_customer(&self, tenant: &str, name: &str, number: u64) -> Result<u64> {
        let n = schema::ordered("customer number", number)?;
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.readers.with(move |client, s| {
            client.execute(&s.bind, &[&tenant, &name, &n])?;
            let bound: Option<i64> =
                client.query_opt(&s.customer_number, &[&tenant, &name])?.map(|row| row.get(0));
            bound.map(unsigned).ok_or_else(|| numbers::taken(&tenant, &name, number))
        })
    }

    fn customer_number(&self, tenant: &str, name: &str) -> Result<Option<u64>> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.readers.with(move |client, s| {
            let number: Option<i64> =
                client.query_opt(&s.customer_number, &[&tenant, &name])?.map(|row| row.get(0));
            Ok(number.map(unsigned))
        })
    }

    fn customer_name(&self, tenant: &str, number: u64) -> Result<Option<String>> {
        let Ok(number) = i64::try_from(number) else { return Ok(None) };
        let tenant = tenant.to_owned();
        self.readers.with(move |client, s| {
            Ok(client.query_opt(&s.customer_name, &[&tenant, &number])?.map(|row| row.get(0)))
        })
    }

    fn customer(&self, tenant: &str, customer: &str) -> Result<Option<Vec<u8>>> {
        let (tenant, customer) = (tenant.to_owned(), customer.to_owned());
        self.readers.with(move |client, s| {
            Ok(client.query_opt(&s.customer, &[&tenant, &customer])?.map(|row| row.get(0)))
        })
    }

    fn actor(&self, tenant: &str, kind: &str, key: &str) -> Result<Option<ActorState>> {
        let (tenant, kind, key) = (tenant.to_owned(), kind.to_owned(), key.to_owned());
        self.readers.with(move |client, s| {
            Ok(client.query_opt(&s.actor, &[&tenant, &kind, &key])?.as_ref().map(actor))
        })
    }

    fn list_actors(
        &self,
        tenant: &str,
        kind: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<ActorState>> {
        let (tenant, kind, after, limit) =
            (tenant.to_owned(), kind.to_owned(), after.to_owned(), count(limit));
        self.readers.with(move |client, s| {
            let rows = client.query(&s.list_actors, &[&tenant, &kind, &after, &limit])?;
            Ok(rows.iter().map(actor).collect())
        })
    }

    fn actor_keys(
        &self,
        tenant: &str,
        kind: &str,
        after: &str,
        until: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let (tenant, kind, after, limit) =
            (tenant.to_owned(), kind.to_owned(), after.to_owned(), count(limit));
        let until = until.map(str::to_owned);
        self.readers.with(move |client, s| {
            let rows = match &until {
                Some(until) => {
                    client.query(&s.actor_keys_until, &[&tenant, &kind, &after, until, &limit])?
                }
                None => client.query(&s.actor_keys, &[&tenant, &kind, &after, &limit])?,
            };
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    fn actor_tenants(&self, after: &str, limit: usize) -> Result<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (after, limit) = (after.to_owned(), count(limit));
        self.readers.with(move |client, s| {
            let rows = client.query(&s.actor_tenants, &[&after, &limit])?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    fn scan_archived(&self, tenant: &str, scan: &ArchiveScan) -> Result<ArchiveWindow> {
        let ((floor_sql, floor_params), matches) = schema::archive_scan('$', tenant, scan);
        let scan = scan.clone();
        self.readers.with(move |client, _| {
            let floor = client
                .query_opt(floor_sql.as_str(), &sql_params(&floor_params))?
                .map(|row| (unsigned(row.get(0)), unsigned(row.get(1))));
            let (sql, params) = matches(floor.map(|(c, _)| c));
            let rows: Vec<Archived> =
                client.query(sql.as_str(), &sql_params(&params))?.iter().map(archived).collect();
            let resume_before = schema::archive_resume(&scan, &rows, floor);
            Ok(ArchiveWindow { rows, resume_before })
        })
    }

    fn scan_customers(
        &self,
        tenant: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<CustomerRecord>> {
        let (tenant, after, limit) = (tenant.to_owned(), after.to_owned(), count(limit));
        self.readers.with(move |client, _| {
            let sql = format!(
                "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE tenant = $1 AND customer > $2 \
                 ORDER BY customer LIMIT $3"
            );
            Ok(client
                .query(sql.as_str(), &[&tenant, &after, &limit])?
                .iter()
                .map(customer)
                .collect())
        })
    }

    fn find_customers(
        &self,
        tenant: &str,
        field: ContactField,
        value: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<CustomerRecord>> {
        let sql = schema::find_customers_sql('$', field);
        let (tenant, value, after, limit) =
            (tenant.to_owned(), value.to_owned(), after.to_owned(), count(limit));
        self.readers.with(move |client, _| {
            let rows = client.query(sql.as_str(), &[&tenant, &value, &after, &limit])?;
            Ok(rows.iter().map(customer).collect())
        })
    }
}

/// A `customers` row read as [`CUSTOMER_COLUMNS`].
fn customer(row: &postgres::Row) -> CustomerRecord {
    CustomerRecord {
        customer: row.get(0),
        body: row.get(1),
        contact: Contact { remark_name: row.get(2), phone: row.get(3), email: row.get(4) },
    }
}

/// An `actors` row read as `kind, actor_key, epoch, body`.
fn actor(row: &postgres::Row) -> ActorState {
    ActorState {
        kind: row.get(0),
        key: row.get(1),
        epoch: unsigned(row.get(2)),
        body: Some(row.get(3)),
    }
}

/// Listing parameters as PostgreSQL parameters.
fn sql_params(params: &[Param]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    params
        .iter()
        .map(|param| match param {
            Param::Text(text) => text as &(dyn postgres::types::ToSql + Sync),
            Param::Int(int) => int as &(dyn postgres::types::ToSql + Sync),
        })
        .collect()
}

/// An `archive` row read as [`ARCHIVE_COLUMNS`].
fn archived(row: &postgres::Row) -> Archived {
    Archived {
        conversation: unsigned(row.get(0)),
        customer: row.get(1),
        opened_at_ms: unsigned(row.get(2)),
        ended_at_ms: unsigned(row.get(3)),
        purge_at_ms: unsigned(row.get(4)),
        body: row.get(5),
    }
}

/// Every statement a reader runs, prepared once per connection.
struct ReadStatements {
    tenants: Statement,
    tenant_exists: Statement,
    snapshot: Statement,
    log: Statement,
    stream: Statement,
    last_stream_seq: Statement,
    messages: Statement,
    find_response: Statement,
    actor_response: Statement,
    conversation_customer: Statement,
    archived: Statement,
    count_archived: Statement,
    customer: Statement,
    actor: Statement,
    list_actors: Statement,
    actor_keys: Statement,
    actor_keys_until: Statement,
    actor_tenants: Statement,
    reserve: Statement,
    bind: Statement,
    customer_number: Statement,
    customer_name: Statement,
}

impl ReadStatements {
    fn prepare(client: &mut Client) -> Result<ReadStatements, postgres::Error> {
        Ok(ReadStatements {
            reserve: client.prepare(numbers::PG_RESERVE)?,
            bind: client.prepare(numbers::BIND)?,
            customer_number: client.prepare(numbers::CUSTOMER_NUMBER)?,
            customer_name: client.prepare(numbers::CUSTOMER_NAME)?,
            tenants: client
                .prepare("SELECT tenant FROM log UNION SELECT tenant FROM snapshots ORDER BY 1")?,
            tenant_exists: client.prepare(
                "SELECT EXISTS (SELECT 1 FROM snapshots WHERE tenant = $1)
                     OR EXISTS (SELECT 1 FROM log WHERE tenant = $1)",
            )?,
            snapshot: client.prepare("SELECT seq, bytes FROM snapshots WHERE tenant = $1")?,
            log: client.prepare(
                "SELECT seq, at_ms, request_id, command, response FROM log
                 WHERE tenant = $1 AND seq > $2 ORDER BY seq",
            )?,
            stream: client.prepare(
                "SELECT seq, at_ms, payload, conversation FROM streams
                 WHERE tenant = $1 AND stream = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            )?,
            last_stream_seq: client
                .prepare("SELECT MAX(seq) FROM streams WHERE tenant = $1 AND stream = $2")?,
            messages: client.prepare(
                "SELECT seq, at_ms, sender, text, kind FROM messages
                 WHERE tenant = $1 AND conversation = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            )?,
            find_response: client.prepare(
                "SELECT response FROM log WHERE tenant = $1 AND request_id = $2
                 ORDER BY seq DESC LIMIT 1",
            )?,
            actor_response: client
                .prepare("SELECT body FROM responses WHERE tenant = $1 AND request_id = $2")?,
            conversation_customer: client.prepare(
                "SELECT customer FROM conversation_owners WHERE tenant = $1 AND conversation = $2",
            )?,
            archived: client.prepare(&format!(
                "SELECT {ARCHIVE_COLUMNS} FROM archive WHERE tenant = $1 AND conversation = $2"
            ))?,
            count_archived: client.prepare("SELECT COUNT(*) FROM archive WHERE tenant = $1")?,
            customer: client
                .prepare("SELECT body FROM customers WHERE tenant = $1 AND customer = $2")?,
            actor: client.prepare(
                "SELECT kind, actor_key, epoch, body FROM actors
                 WHERE tenant = $1 AND kind = $2 AND actor_key = $3",
            )?,
            list_actors: client.prepare(
                "SELECT kind, actor_key, epoch, body FROM actors
                 WHERE tenant = $1 AND kind = $2 AND actor_key > $3 ORDER BY actor_key LIMIT $4",
            )?,
            actor_keys: client.prepare(&schema::actor_keys_sql('$', false))?,
            actor_keys_until: client.prepare(&schema::actor_keys_sql('$', true))?,
            actor_tenants: client.prepare(&schema::actor_tenants_sql('$'))?,
        })
    }
}

/// One read connection, reconnected on the next read after the server went away.
struct ReadConn {
    url: String,
    live: Option<(Client, ReadStatements)>,
}

impl ReadConn {
    fn run<T>(
        &mut self,
        read: impl FnOnce(&mut Client, &ReadStatements) -> Result<T>,
    ) -> Result<T> {
        if self.live.as_ref().is_some_and(|(client, _)| client.is_closed()) {
            self.live = None;
        }
        let (client, statements) = match &mut self.live {
            Some(live) => live,
            empty @ None => {
                let mut client = connect(&self.url, "switchboard-reader")?;
                let statements = ReadStatements::prepare(&mut client)?;
                empty.insert((client, statements))
            }
        };
        read(client, statements)
    }
}

type ReadJob = Box<dyn FnOnce(&mut ReadConn) + Send>;

/// A few reader threads, each with its own connection; a read goes to whichever is free and
/// the caller blocks until it is done, as with SQLite. Threads rather than connections in a
/// mutex because the synchronous client runs a small async runtime of its own, which must not
/// be entered from a thread that drives async tasks (the node calls reads from those).
struct Readers {
    /// `None` once stopped.
    jobs: Option<mpsc::Sender<ReadJob>>,
    threads: Vec<JoinHandle<()>>,
}

impl Readers {
    fn start(url: &str, n: usize) -> Result<Readers> {
        let (jobs, queue) = mpsc::channel::<ReadJob>();
        let queue = Arc::new(Mutex::new(queue));
        let threads = (0..n)
            .map(|i| {
                let queue = Arc::clone(&queue);
                let mut conn = ReadConn { url: url.to_owned(), live: None };
                std::thread::Builder::new().name(format!("store-pg-reader-{i}")).spawn(move || {
                    loop {
                        // The guard is a temporary: the lock is released as soon as a job is
                        // taken, so the other readers can take the next one.
                        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                        let Ok(job) = job else { break };
                        job(&mut conn);
                    }
                })
            })
            .collect::<std::io::Result<_>>()?;
        Ok(Readers { jobs: Some(jobs), threads })
    }

    fn with<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut Client, &ReadStatements) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (done, result) = mpsc::sync_channel(1);
        let job: ReadJob = Box::new(move |conn| {
            let _ = done.send(conn.run(read));
        });
        let sent = self.jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok());
        if !sent {
            return Err(Error::Closed);
        }
        // A dropped sender means the reader thread died mid-read (a panic).
        result.recv().unwrap_or(Err(Error::Closed))
    }

    fn stop(&mut self) {
        drop(self.jobs.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
