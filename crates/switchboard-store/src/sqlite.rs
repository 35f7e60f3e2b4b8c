//! The embedded store: one SQLite file, one writer thread, a few read connections.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::checkpoint::{Checkpointer, Watch};
use crate::schema::{self, ARCHIVE_COLUMNS, CUSTOMER_COLUMNS, Param, bound, count, id, unsigned};
use crate::writer::{self, Counters, Limits};
use crate::{
    ActorState, ArchiveQuery, ArchiveScan, ArchiveWindow, Archived, Batch, Contact, ContactField,
    CustomerRecord, Fence, Loaded, LogRecord, Message, Pending, Result, Store, StreamEntry,
};

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "switchboard.db";

/// Tuning of a [`SqliteStore`]. The defaults suit a node; tests may shrink them.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
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
    /// The WAL is checkpointed (off the writer's thread, see `checkpoint.rs`) once a commit
    /// leaves at least this many pages in it (default 2,500: 10 MiB; the file grows past it
    /// while the checkpoint runs beside the commits).
    pub wal_checkpoint_pages: u32,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_batches_per_commit: 1024,
            max_bytes_per_commit: 8 << 20,
            request_retention: Duration::from_secs(24 * 60 * 60),
            read_connections: 4,
            wal_checkpoint_pages: crate::schema::WAL_CHECKPOINT_PAGES,
        }
    }
}

/// What the writer has done since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Transactions committed (each one sync).
    pub commits: u64,
    /// Appended batches made durable. `batches / commits` is the group-commit factor.
    pub batches: u64,
    /// Writes refused on their own (duplicate, stale snapshot, ...).
    pub rejected_batches: u64,
    /// Commits that failed, failing every write in them.
    pub failed_commits: u64,
    /// Commits redone one write at a time because a write in them was refused partway
    /// (see the crate docs, "Write path").
    pub redone_commits: u64,
    /// WAL checkpoint passes run by the checkpointer thread (SQLite only; see
    /// `checkpoint.rs`).
    pub checkpoints: u64,
    /// Checkpoints the writer finished after a pass of the checkpointer (copying what was
    /// committed meanwhile), so that the WAL starts over.
    pub finished_checkpoints: u64,
    /// Checkpoints that failed (the frames stay in the WAL; tried again at the next nudge).
    pub failed_checkpoints: u64,
    /// Pages the writer's commits wrote to the WAL (SQLite only): `wal_frames / commits` is
    /// what one commit costs in page writes.
    pub wal_frames: u64,
}

/// The embedded [`Store`]: `switchboard.db` in the node's data directory, in WAL mode with
/// `synchronous=FULL`.
///
/// Dropping it (or [`SqliteStore::close`]) lets the writer finish every queued write, then
/// stops it; that blocks the dropping thread for as long as those writes take.
pub struct SqliteStore {
    path: PathBuf,
    /// `None` only while closing.
    writer: writer::Handle,
    /// Dropped after the writer: its thread stops once the writer's nudge handle is gone.
    _checkpointer: Checkpointer,
    readers: Readers,
    stats: Arc<Counters>,
    request_retention: Duration,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the store in `dir`.
    pub fn open(dir: &Path, options: SqliteOptions) -> Result<SqliteStore> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(DB_FILE);
        let conn = schema::open_writer(&path)?;
        let stats = Arc::new(Counters::default());
        let checkpointer = Checkpointer::start(&path, Arc::clone(&stats))?;
        let wal = Watch::install(&conn, options.wal_checkpoint_pages, checkpointer.nudge())?;
        let readers = Readers::open(&path, options.read_connections.max(1))?;
        let limits = Limits::new(
            options.max_batches_per_commit,
            options.max_bytes_per_commit,
            options.request_retention,
        );
        let (jobs, queue) = mpsc::channel();
        let writer = {
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || writer::run(conn, queue, limits, &stats, wal))?
        };
        Ok(SqliteStore {
            path,
            writer: writer::Handle::new(jobs, writer),
            _checkpointer: checkpointer,
            readers,
            stats,
            request_retention: options.request_retention,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
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

impl Store for SqliteStore {
    fn request_retention(&self) -> Duration {
        self.request_retention
    }

    fn stats(&self) -> Stats {
        self.stats.stats()
    }

    fn generation(&self, tenant: &str) -> Option<u64> {
        Some(self.stats.generation(tenant))
    }

    fn append(&self, batch: Batch) -> Pending {
        self.writer.append(batch)
    }

    fn append_assigned(&self, batch: Batch) -> crate::Assigned {
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

    fn reserve(&self, tenant: &str, counter: &str, count: u64) -> Result<u64> {
        self.writer.reserve(tenant, counter, count)
    }

    fn bind_customer(&self, tenant: &str, name: &str, number: u64) -> Result<u64> {
        self.writer.bind_customer(tenant, name, number)
    }

    fn customer_number(&self, tenant: &str, name: &str) -> Result<Option<u64>> {
        self.readers.with(|conn| {
            let number: Option<i64> = conn
                .prepare_cached(crate::numbers::CUSTOMER_NUMBER)?
                .query_row(params![tenant, name], |row| row.get(0))
                .optional()?;
            Ok(number.map(unsigned))
        })
    }

    fn customer_name(&self, tenant: &str, number: u64) -> Result<Option<String>> {
        // Bound numbers are at most `i64::MAX` (see `ordered`).
        let Ok(number) = i64::try_from(number) else { return Ok(None) };
        self.readers.with(|conn| {
            Ok(conn
                .prepare_cached(crate::numbers::CUSTOMER_NAME)?
                .query_row(params![tenant, number], |row| row.get(0))
                .optional()?)
        })
    }

    fn tenants(&self) -> Result<Vec<String>> {
        self.readers.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT tenant FROM log UNION SELECT tenant FROM snapshots ORDER BY 1",
            )?;
            let rows = stmt.query_map([], |row| row.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn tenant_exists(&self, tenant: &str) -> Result<bool> {
        self.readers.with(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM snapshots WHERE tenant = ?1)
                         OR EXISTS (SELECT 1 FROM log WHERE tenant = ?1)",
                )?
                .query_row([tenant], |row| row.get(0))?)
        })
    }

    fn load(&self, tenant: &str) -> Result<Loaded> {
        self.readers.with(|conn| {
            // One read transaction: a snapshot committed between the two queries would
            // otherwise hide the log records it deleted.
            let tx = conn.transaction()?;
            let snapshot = tx
                .prepare_cached("SELECT seq, bytes FROM snapshots WHERE tenant = ?1")?
                .query_row([tenant], |row| Ok((unsigned(row.get(0)?), row.get(1)?)))
                .optional()?;
            let after = snapshot.as_ref().map_or(-1, |&(seq, _)| bound(seq));
            let log = tx
                .prepare_cached(
                    "SELECT seq, at_ms, request_id, command, response FROM log
                     WHERE tenant = ?1 AND seq > ?2 ORDER BY seq",
                )?
                .query_map(params![tenant, after], |row| {
                    Ok(LogRecord {
                        seq: unsigned(row.get(0)?),
                        at_ms: unsigned(row.get(1)?),
                        request_id: row.get(2)?,
                        command: row.get(3)?,
                        response: row.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            tx.finish()?;
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
        self.readers.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, at_ms, payload, conversation FROM streams
                 WHERE tenant = ?1 AND stream = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
            )?;
            let rows =
                stmt.query_map(params![tenant, stream, bound(after_seq), count(limit)], |row| {
                    Ok(StreamEntry {
                        stream: stream.to_owned(),
                        seq: unsigned(row.get(0)?),
                        at_ms: unsigned(row.get(1)?),
                        payload: row.get(2)?,
                        conversation: row.get::<_, Option<i64>>(3)?.map(unsigned),
                    })
                })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn last_stream_seq(&self, tenant: &str, stream: &str) -> Result<Option<u64>> {
        self.readers.with(|conn| {
            let last: Option<i64> = conn
                .prepare_cached("SELECT MAX(seq) FROM streams WHERE tenant = ?1 AND stream = ?2")?
                .query_row([tenant, stream], |row| row.get(0))?;
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
        self.readers.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, at_ms, sender, text, kind FROM messages
                 WHERE tenant = ?1 AND conversation = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![tenant, id(conversation), bound(after_seq), count(limit)],
                |row| {
                    Ok(Message {
                        conversation,
                        seq: unsigned(row.get(0)?),
                        at_ms: unsigned(row.get(1)?),
                        sender: row.get(2)?,
                        text: row.get(3)?,
                        kind: row.get(4)?,
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn find_response(&self, tenant: &str, request_id: &str) -> Result<Option<Vec<u8>>> {
        self.readers.with(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT response FROM log WHERE tenant = ?1 AND request_id = ?2
                     ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([tenant, request_id], |row| row.get(0))
                .optional()?)
        })
    }

    fn actor_response(&self, tenant: &str, request_id: &str) -> Result<Option<Vec<u8>>> {
        self.readers.with(|conn| {
            Ok(conn
                .prepare_cached("SELECT body FROM responses WHERE tenant = ?1 AND request_id = ?2")?
                .query_row([tenant, request_id], |row| row.get(0))
                .optional()?)
        })
    }

    fn conversation_customer(&self, tenant: &str, conversation: u64) -> Result<Option<u64>> {
        // Stored ids are at most `i64::MAX` (see `ordered`).
        let Ok(conversation) = i64::try_from(conversation) else { return Ok(None) };
        self.readers.with(|conn| {
            let found: Option<i64> = conn
                .prepare_cached(
                    "SELECT customer FROM conversation_owners
                     WHERE tenant = ?1 AND conversation = ?2",
                )?
                .query_row(params![tenant, conversation], |row| row.get(0))
                .optional()?;
            Ok(found.map(unsigned))
        })
    }

    fn archived(&self, tenant: &str, conversation: u64) -> Result<Option<Archived>> {
        // Archived ids are at most `i64::MAX` (see `ordered`).
        let Ok(conversation) = i64::try_from(conversation) else { return Ok(None) };
        self.readers.with(|conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {ARCHIVE_COLUMNS} FROM archive WHERE tenant = ?1 AND conversation = ?2"
                ))?
                .query_row(params![tenant, conversation], archived)
                .optional()?)
        })
    }

    fn list_archived(&self, tenant: &str, query: &ArchiveQuery) -> Result<Vec<Archived>> {
        let (sql, params) = schema::archive_listing('?', tenant, query);
        self.readers.with(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let params = params.iter().map(|param| match param {
                Param::Text(text) => rusqlite::types::Value::Text(text.clone()),
                Param::Int(int) => rusqlite::types::Value::Integer(*int),
            });
            let rows = stmt.query_map(rusqlite::params_from_iter(params), archived)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn count_archived(&self, tenant: &str) -> Result<u64> {
        self.readers.with(|conn| {
            let n: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM archive WHERE tenant = ?1")?
                .query_row([tenant], |row| row.get(0))?;
            Ok(unsigned(n))
        })
    }

    fn customer(&self, tenant: &str, customer: &str) -> Result<Option<Vec<u8>>> {
        self.readers.with(|conn| {
            Ok(conn
                .prepare_cached("SELECT body FROM customers WHERE tenant = ?1 AND customer = ?2")?
                .query_row(params![tenant, customer], |row| row.get(0))
                .optional()?)
        })
    }

    fn actor(&self, tenant: &str, kind: &str, key: &str) -> Result<Option<ActorState>> {
        self.readers.with(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT kind, actor_key, epoch, body FROM actors
                     WHERE tenant = ?1 AND kind = ?2 AND actor_key = ?3",
                )?
                .query_row(params![tenant, kind, key], actor)
                .optional()?)
        })
    }

    fn list_actors(
        &self,
        tenant: &str,
        kind: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<ActorState>> {
        self.readers.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT kind, actor_key, epoch, body FROM actors
                 WHERE tenant = ?1 AND kind = ?2 AND actor_key > ?3 ORDER BY actor_key LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![tenant, kind, after, count(limit)], actor)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
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
        self.readers.with(|conn| {
            let mut stmt = conn.prepare_cached(&schema::actor_keys_sql('?', until.is_some()))?;
            let key = |row: &rusqlite::Row<'_>| row.get(0);
            let rows = match until {
                Some(until) => {
                    stmt.query_map(params![tenant, kind, after, until, count(limit)], key)?
                }
                None => stmt.query_map(params![tenant, kind, after, count(limit)], key)?,
            };
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn actor_tenants(&self, after: &str, limit: usize) -> Result<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.readers.with(|conn| {
            let mut stmt = conn.prepare_cached(&schema::actor_tenants_sql('?'))?;
            let rows = stmt.query_map(params![after, count(limit)], |row| row.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn scan_archived(&self, tenant: &str, scan: &ArchiveScan) -> Result<ArchiveWindow> {
        let ((floor_sql, floor_params), matches) = schema::archive_scan('?', tenant, scan);
        self.readers.with(|conn| {
            let floor: Option<(u64, u64)> = conn
                .prepare_cached(&floor_sql)?
                .query_row(rusqlite::params_from_iter(values(&floor_params)), |row| {
                    Ok((unsigned(row.get(0)?), unsigned(row.get(1)?)))
                })
                .optional()?;
            let (sql, params) = matches(floor.map(|(c, _)| c));
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows: Vec<Archived> = stmt
                .query_map(rusqlite::params_from_iter(values(&params)), archived)?
                .collect::<rusqlite::Result<_>>()?;
            let resume_before = schema::archive_resume(scan, &rows, floor);
            Ok(ArchiveWindow { rows, resume_before })
        })
    }

    fn scan_customers(
        &self,
        tenant: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<CustomerRecord>> {
        self.readers.with(|conn| {
            let sql = format!(
                "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE tenant = ?1 AND customer > ?2 \
                 ORDER BY customer LIMIT ?3"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![tenant, after, count(limit)], customer)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
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
        let sql = schema::find_customers_sql('?', field);
        self.readers.with(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![tenant, value, after, count(limit)], customer)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

/// A `customers` row read as [`CUSTOMER_COLUMNS`].
fn customer(row: &rusqlite::Row<'_>) -> rusqlite::Result<CustomerRecord> {
    Ok(CustomerRecord {
        customer: row.get(0)?,
        body: row.get(1)?,
        contact: Contact { remark_name: row.get(2)?, phone: row.get(3)?, email: row.get(4)? },
    })
}

/// An `actors` row read as `kind, actor_key, epoch, body`.
fn actor(row: &rusqlite::Row<'_>) -> rusqlite::Result<ActorState> {
    Ok(ActorState {
        kind: row.get(0)?,
        key: row.get(1)?,
        epoch: unsigned(row.get(2)?),
        body: Some(row.get(3)?),
    })
}

/// Listing parameters as SQLite values.
fn values(params: &[Param]) -> impl Iterator<Item = rusqlite::types::Value> + '_ {
    params.iter().map(|param| match param {
        Param::Text(text) => rusqlite::types::Value::Text(text.clone()),
        Param::Int(int) => rusqlite::types::Value::Integer(*int),
    })
}

/// An `archive` row read as [`ARCHIVE_COLUMNS`].
fn archived(row: &rusqlite::Row<'_>) -> rusqlite::Result<Archived> {
    Ok(Archived {
        conversation: unsigned(row.get(0)?),
        customer: row.get(1)?,
        opened_at_ms: unsigned(row.get(2)?),
        ended_at_ms: unsigned(row.get(3)?),
        purge_at_ms: unsigned(row.get(4)?),
        body: row.get(5)?,
    })
}

/// A few read connections; a read takes whichever is free.
struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    fn open(path: &Path, n: usize) -> Result<Readers> {
        let conns =
            (0..n).map(|_| schema::open_reader(path).map(Mutex::new)).collect::<Result<_>>()?;
        Ok(Readers { conns, next: AtomicUsize::new(0) })
    }

    fn with<T>(&self, read: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.conns.len();
        let free = (0..n).find_map(|i| match self.conns[(start + i) % n].try_lock() {
            Ok(conn) => Some(conn),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        });
        // All busy: wait for one. A panic mid-read leaves nothing half-done (reads only, and
        // an open transaction rolls back when dropped), so a poisoned lock is fine to reuse.
        let mut conn: MutexGuard<'_, Connection> = match free {
            Some(conn) => conn,
            None => self.conns[start % n].lock().unwrap_or_else(PoisonError::into_inner),
        };
        read(&mut conn)
    }
}
