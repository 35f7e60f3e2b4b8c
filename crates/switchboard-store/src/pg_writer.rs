//! The PostgreSQL writer thread: the same group commit as [`crate::writer`], over one
//! connection.
//!
//! Everything queued goes into one transaction, then one COMMIT (which PostgreSQL makes
//! durable before it returns, `synchronous_commit=on`), then every job is answered. The
//! transaction first locks the row of each shard the group writes under (ascending; shared
//! unless the group raises a fence, see [`FenceLock`]) and refuses fenced jobs unwritten,
//! then the head row of each shared stream it appends to (ascending, moving it past the
//! group's appends; see [`crate::writer::Heads`]); the rest go straight in. A job refused
//! partway (a duplicate, a stale snapshot) makes the writer roll back and redo the group with
//! a SAVEPOINT per job, so it is undone alone; later jobs of the same tenant in the group are
//! refused too, except after a duplicate or a snapshot (see [`crate::writer::holds_back`]).
//!
//! Nearly every commit takes two round trips on the connection ([`crate::pg_conn`] sends
//! requests before reading answers): `BEGIN`, the fences and the heads ([`begin_pipelined`]),
//! then the rows and `COMMIT`. Whatever that start assumed and did not find (a shard's or a
//! stream's first write, a job fenced off while ownership moves) begins again one statement
//! at a time ([`begin_stepwise`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use futures_util::future::{join, join_all};
use postgres::Statement;
use postgres::error::SqlState;

use crate::pg_conn::PgConn;
use crate::pg_rows::{self, Rows};
use crate::postgres::session;
use crate::schema::{bound, count, id, ordered, unsigned};
use crate::writer::{self, Counters, Fences, Heads, Job, Limits};
use crate::{Batch, Error, Fence, Result};

/// Every statement the writer runs, prepared once per connection.
struct Statements {
    insert_log: Statement,
    insert_stream: Statement,
    insert_message: Statement,
    purge: Statement,
    trim: Statement,
    lock_fence: Statement,
    raise_fence: Statement,
    stored_snapshot: Statement,
    upsert_snapshot: Statement,
    delete_log: Statement,
    delete_unrequested: Statement,
    newest_log: Statement,
    first_log_kept: Statement,
    upsert_archive: Statement,
    upsert_customer: Statement,
    upsert_actor: Statement,
    delete_actor: Statement,
    insert_response: Statement,
    insert_owner: Statement,
    retain_owners: Statement,
    retain_responses: Statement,
    retain_messages: Statement,
    retain_archive: Statement,
    stream_names: Statement,
    first_kept: Statement,
    cut_stream: Statement,
    clear_stream: Statement,
    lock_head: Statement,
    adopt_head: Statement,
    move_head: Statement,
    adopt_moved_head: Statement,
    store_head: Statement,
    /// The rows of a run of batches in one statement, one per shape (`pg_rows`).
    write_rows: pg_rows::Shapes,
    lock_fences: Statement,
}

impl Statements {
    fn prepare(client: &mut PgConn) -> Result<Statements, postgres::Error> {
        let lock_fences = pg_rows::prepare(client)?;
        Ok(Statements {
            write_rows: pg_rows::Shapes::default(),
            lock_fences,
            insert_log: client.prepare(
                "INSERT INTO log (tenant, seq, at_ms, request_id, command, response)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )?,
            insert_stream: client.prepare(
                "INSERT INTO streams (tenant, stream, seq, at_ms, payload, conversation)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )?,
            insert_message: client.prepare(
                "INSERT INTO messages (tenant, conversation, seq, at_ms, sender, text, kind)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )?,
            purge: client
                .prepare("DELETE FROM messages WHERE tenant = $1 AND conversation = $2")?,
            trim: client.prepare(
                "DELETE FROM streams WHERE tenant = $1 AND stream = $2 AND seq <= (
                    SELECT seq FROM streams WHERE tenant = $1 AND stream = $2
                    ORDER BY seq DESC LIMIT 1 OFFSET $3)",
            )?,
            // The upsert locks the shard's row until commit and returns its epoch, so a newer
            // owner's raise either commits first (and this write sees it) or waits for this
            // write's commit. Inserting epoch 0 when absent makes the row lockable.
            lock_fence: client.prepare(
                "INSERT INTO shard_fences (shard, epoch) VALUES ($1, 0)
                 ON CONFLICT (shard) DO UPDATE SET epoch = shard_fences.epoch
                 RETURNING epoch",
            )?,
            raise_fence: client.prepare(
                "INSERT INTO shard_fences (shard, epoch) VALUES ($1, $2)
                 ON CONFLICT (shard) DO UPDATE
                 SET epoch = GREATEST(shard_fences.epoch, excluded.epoch)",
            )?,
            // FOR UPDATE: two writers on one database (a cluster during failover, before
            // fencing) check and replace the snapshot one at a time.
            stored_snapshot: client
                .prepare("SELECT seq FROM snapshots WHERE tenant = $1 FOR UPDATE")?,
            upsert_snapshot: client.prepare(
                "INSERT INTO snapshots (tenant, seq, bytes) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant) DO UPDATE SET seq = excluded.seq, bytes = excluded.bytes",
            )?,
            delete_log: client.prepare("DELETE FROM log WHERE tenant = $1 AND seq <= $2")?,
            delete_unrequested: client.prepare(
                "DELETE FROM log WHERE tenant = $1 AND seq > $2 AND seq <= $3
                 AND request_id IS NULL",
            )?,
            newest_log: client
                .prepare("SELECT at_ms FROM log WHERE tenant = $1 ORDER BY seq DESC LIMIT 1")?,
            first_log_kept: client.prepare(
                "SELECT seq FROM log WHERE tenant = $1 AND at_ms >= $2 ORDER BY seq LIMIT 1",
            )?,
            upsert_archive: client.prepare(
                "INSERT INTO archive
                    (tenant, conversation, customer, opened_at_ms, ended_at_ms, purge_at_ms, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (tenant, conversation) DO UPDATE SET
                    customer = excluded.customer, opened_at_ms = excluded.opened_at_ms,
                    ended_at_ms = excluded.ended_at_ms, purge_at_ms = excluded.purge_at_ms,
                    body = excluded.body",
            )?,
            upsert_customer: client.prepare(
                "INSERT INTO customers (tenant, customer, body, remark_name, phone, email)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (tenant, customer) DO UPDATE SET body = excluded.body,
                    remark_name = excluded.remark_name, phone = excluded.phone,
                    email = excluded.email",
            )?,
            upsert_actor: client.prepare(
                "INSERT INTO actors (tenant, kind, actor_key, epoch, body)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant, kind, actor_key) DO UPDATE SET
                    epoch = excluded.epoch, body = excluded.body",
            )?,
            delete_actor: client
                .prepare("DELETE FROM actors WHERE tenant = $1 AND kind = $2 AND actor_key = $3")?,
            insert_response: client.prepare(concat!(
                "INSERT INTO responses (tenant, request_id, at_ms, body) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (tenant, request_id) DO UPDATE SET at_ms = excluded.at_ms,
                    body = excluded.body
                 WHERE ",
                pg_response_replaces!()
            ))?,
            insert_owner: client.prepare(
                "INSERT INTO conversation_owners (tenant, conversation, customer)
                 VALUES ($1, $2, $3) ON CONFLICT (tenant, conversation) DO NOTHING",
            )?,
            retain_owners: client.prepare(
                "DELETE FROM conversation_owners WHERE tenant = $1 AND conversation IN (
                    SELECT conversation FROM archive WHERE tenant = $1 AND purge_at_ms <= $2)",
            )?,
            retain_responses: client
                .prepare("DELETE FROM responses WHERE tenant = $1 AND at_ms < $2")?,
            retain_messages: client.prepare(
                "DELETE FROM messages WHERE tenant = $1 AND conversation IN (
                    SELECT conversation FROM archive WHERE tenant = $1 AND purge_at_ms <= $2)",
            )?,
            retain_archive: client
                .prepare("DELETE FROM archive WHERE tenant = $1 AND purge_at_ms <= $2")?,
            stream_names: client.prepare(writer::STREAM_NAMES)?,
            first_kept: client.prepare(
                "SELECT seq FROM streams WHERE tenant = $1 AND stream = $2 AND at_ms >= $3
                 ORDER BY seq LIMIT 1",
            )?,
            cut_stream: client
                .prepare("DELETE FROM streams WHERE tenant = $1 AND stream = $2 AND seq < $3")?,
            clear_stream: client
                .prepare("DELETE FROM streams WHERE tenant = $1 AND stream = $2")?,
            // A shared stream's head row, locked until commit: a second writer appending to
            // the stream waits here until this commit is visible, so positions follow commits.
            lock_head: client.prepare(
                "SELECT head FROM stream_heads WHERE tenant = $1 AND stream = $2 FOR UPDATE",
            )?,
            // The stream's first store-assigned append: the head starts at its last
            // writer-numbered entry (0 if none), and is locked as above. Two first appends
            // racing meet on the primary key; the later one locks the row the first made.
            adopt_head: client.prepare(
                "INSERT INTO stream_heads (tenant, stream, head)
                 SELECT $1, $2, COALESCE(MAX(seq), 0) FROM streams
                 WHERE tenant = $1 AND stream = $2
                 ON CONFLICT (tenant, stream) DO UPDATE SET head = stream_heads.head
                 RETURNING head",
            )?,
            // The fast path's lock: the head moved at once past the group's appends to the
            // stream ($3 of them), answering it as it was (`Heads::reserve`).
            move_head: client.prepare(
                "UPDATE stream_heads SET head = head + $3 WHERE tenant = $1 AND stream = $2
                 RETURNING head - $3",
            )?,
            adopt_moved_head: client.prepare(
                "INSERT INTO stream_heads (tenant, stream, head)
                 SELECT $1, $2, COALESCE(MAX(seq), 0) + $3 FROM streams
                 WHERE tenant = $1 AND stream = $2
                 ON CONFLICT (tenant, stream) DO UPDATE SET head = stream_heads.head + $3
                 RETURNING head - $3",
            )?,
            store_head: client
                .prepare("UPDATE stream_heads SET head = $3 WHERE tenant = $1 AND stream = $2")?,
        })
    }
}

/// The writer's session's name in `pg_stat_activity`, so an operator (or a test) can tell it
/// from the readers' (`switchboard-reader`).
const WRITER_NAME: &str = "switchboard-writer";

/// The writer's connection, re-established after the server went away (a restart, a
/// failover of the database): the group that hit the failure fails, the next one reconnects.
struct Conn {
    url: String,
    live: Option<(PgConn, Statements)>,
}

impl Conn {
    fn get(&mut self) -> Result<&mut (PgConn, Statements)> {
        if self.live.as_ref().is_some_and(|(client, _)| client.is_closed()) {
            self.live = None;
        }
        if self.live.is_none() {
            let mut client = PgConn::connect(&self.url, &session(WRITER_NAME))?;
            let statements = Statements::prepare(&mut client)?;
            self.live = Some((client, statements));
        }
        Ok(self.live.as_mut().expect("connected just above"))
    }
}

/// The writer thread's body: runs until every sender is gone and the queue is empty, so
/// closing the store finishes what was queued. Connects when the first group comes (`open`
/// set the schema up on a connection of its own).
pub(crate) fn run(url: String, jobs: Receiver<Job>, limits: Limits, stats: &Counters) {
    let mut conn = Conn { url, live: None };
    writer::drain(&jobs, limits, stats, &mut |group: &[Job]| {
        commit(&mut conn, group, limits, stats)
    });
}

/// Writes one group and gives every job's outcome, in order, for `writer::drain` to answer:
/// nothing is acknowledged before COMMIT returned, and if anything but a refusal fails, every
/// job in the group gets the error.
fn commit(
    conn: &mut Conn,
    group: &[Job],
    limits: Limits,
    stats: &Counters,
) -> Vec<Result<Vec<u64>>> {
    let written = conn.get().and_then(|(client, statements)| {
        write_group(client, statements, group, limits, stats).map_err(Error::from)
    });
    // A failed COMMIT's outcome is unknown to us (the server may have committed before the
    // connection broke); the callers reload, which sees what landed.
    if written.is_err() && conn.live.as_ref().is_some_and(|(client, _)| client.is_closed()) {
        conn.live = None;
    }
    writer::outcomes(group, written, stats)
}

/// One transaction for the group, as in SQLite (`writer::write_group`): every job straight
/// in, and only if one fails partway, a rollback and the group again with one savepoint per
/// job. Returns each job's outcome, or the error that sank the whole group.
fn write_group(
    client: &mut PgConn,
    statements: &Statements,
    group: &[Job],
    limits: Limits,
    stats: &Counters,
) -> Result<Vec<Result<Vec<u64>>>, postgres::Error> {
    if let Some(results) = write_fast(client, statements, group, limits)? {
        return Ok(results);
    }
    stats.redone_commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut begun = Begun::new(client);
    begun.begin("BEGIN")?;
    let tx = &mut *begun.client;
    // The fast path's lock order, fences before heads: a head taken first and a fence only in
    // its job's turn could wait crosswise with another writer's fast path.
    Fences::read(group, |shards| read_fences(tx, statements, shards))?;
    let mut heads = Heads::read(group, |tenant, stream| lock_head(tx, statements, tenant, stream))?;
    let results = write_one_by_one(tx, statements, &mut heads, group, limits)?;
    heads.store(|tenant, stream, head| store_head(tx, statements, tenant, stream, head))?;
    begun.end("COMMIT")?;
    Ok(results)
}

/// A transaction on the writer's connection, begun and ended by hand (so that `BEGIN` and
/// `COMMIT` can travel with other statements, [`PgConn::pipelined`]). Like a
/// `postgres::Transaction` it rolls back when dropped unless ended, so no error path leaves
/// the connection inside an open or aborted transaction for the next group.
struct Begun<'c> {
    client: &'c mut PgConn,
    /// A `BEGIN` went out and no `COMMIT` or `ROLLBACK` after it.
    open: bool,
}

impl<'c> Begun<'c> {
    fn new(client: &'c mut PgConn) -> Begun<'c> {
        Begun { client, open: false }
    }

    /// Sends `message`, which begins the transaction (`BEGIN`, alone or with more).
    fn begin(
        &mut self,
        message: &str,
    ) -> Result<Vec<postgres::SimpleQueryMessage>, postgres::Error> {
        self.open = true;
        self.client.simple_query(message)
    }

    /// Ends the transaction with `COMMIT` or `ROLLBACK`. A failed `COMMIT` ends it too.
    fn end(mut self, how: &str) -> Result<(), postgres::Error> {
        self.open = false;
        self.client.batch_execute(how)
    }
}

impl Drop for Begun<'_> {
    fn drop(&mut self) {
        if self.open {
            // Best effort, as `postgres::Transaction`'s drop: a broken connection is replaced
            // before the next group (`Conn::get`).
            let _ = self.client.batch_execute("ROLLBACK");
        }
    }
}

/// The fast path: every job straight into one transaction, in two round trips where it can
/// (the first `BEGIN`, the fences and the heads: [`begin_pipelined`]; the second the rows
/// and `COMMIT`), else one statement at a time. `None` when a job failed partway and the
/// transaction was rolled back (the caller redoes the group a job at a time).
fn write_fast(
    client: &mut PgConn,
    statements: &Statements,
    group: &[Job],
    limits: Limits,
) -> Result<Option<Vec<Result<Vec<u64>>>>, postgres::Error> {
    let mut begun = Begun::new(client);
    let (mut fences, mut heads) = match begin_pipelined(&mut begun, statements, group)? {
        Some(locked) => locked,
        None => begin_stepwise(&mut begun, statements, group)?,
    };
    let tx = &mut *begun.client;
    // The rows of consecutive batches go in together (`pg_rows`); anything else is written
    // in its turn, after the rows gathered before it.
    let mut rows = Rows::new();
    let written = writer::write_straight(
        group,
        &mut fences,
        |job| {
            let positions = heads.assign(job);
            match job {
                Job::Append { batch, .. } if Rows::takes(batch) => rows.add(batch, &positions)?,
                _ => {
                    rows.flush(tx, &statements.write_rows).map_err(refused_rows)?;
                    write(tx, statements, job, &positions, limits)?;
                }
            }
            heads.take(job, &positions);
            Ok(positions)
        },
        |error| match error {
            Error::Postgres(error) if !is_data_exception(&error) => Some(error),
            _ => None,
        },
    )?;
    let Some(results) = written else {
        begun.end("ROLLBACK")?;
        return Ok(None);
    };
    heads.store(|tenant, stream, head| store_head(tx, statements, tenant, stream, head))?;
    // The last rows and `COMMIT` in one round trip. If the rows fail, the transaction is
    // aborted and the `COMMIT` only rolls it back: either way it has ended.
    let open = &mut begun.open;
    let (rows, committed) = rows.flush_then(begun.client, &statements.write_rows, |tx, rows| {
        *open = false;
        match rows {
            Some((statement, params)) => tx.pipelined(|client| {
                join(client.execute(statement, params), client.batch_execute("COMMIT"))
            }),
            None => (Ok(0), tx.batch_execute("COMMIT")),
        }
    })?;
    match rows.map_err(refused_rows) {
        Ok(_) => committed.map(|()| Some(results)),
        Err(Error::Postgres(error)) if !is_data_exception(&error) => Err(error),
        // Rolled back by the `COMMIT` (unless that failed: then nothing is known).
        Err(_) => committed.map(|()| None),
    }
}

/// Begins the fast path's transaction in one round trip: `BEGIN` and the fences'
/// share lock in one simple-query message, each head moved past the appends of the group's
/// jobs (all of them: none is fenced off but while ownership moves) in statements sent right
/// behind it. `None`, with nothing left open, when the group is not for this (it raises a
/// fence), or when the answers were not what it assumed: a shard's or a
/// stream's first write (no row to lock yet), or a job fenced off (the heads were moved for
/// it); those begin again one statement at a time, as rarely as they come.
fn begin_pipelined<'g>(
    begun: &mut Begun<'_>,
    statements: &Statements,
    group: &'g [Job],
) -> Result<Option<(Fences, Heads<'g>)>, postgres::Error> {
    let shards = Fences::shards_of(group);
    if !matches!(FenceLock::for_group(group), FenceLock::Shared) {
        return Ok(None);
    }
    let message = pg_rows::begin_sharing(&shards);
    let wanted = Heads::reservations(group, None);
    let counts: Vec<i64> = wanted.iter().map(|&(_, _, count)| id(count)).collect();
    let params: Vec<[&(dyn postgres::types::ToSql + Sync); 3]> = wanted
        .iter()
        .zip(&counts)
        .map(|((tenant, stream, _), count)| [tenant as _, stream as _, count as _])
        .collect();
    begun.open = true;
    let (began, moved) = begun.client.pipelined(|client| {
        // Every stream listed gets at least one append (no job of a group without a raise
        // is fenced off by it), so each head is moved, none only locked.
        let heads = params.iter().map(|params| client.query_opt(&statements.move_head, params));
        join(client.simple_query(&message), join_all(heads))
    });
    let began = began?;
    let moved = moved.into_iter().collect::<Result<Vec<_>, _>>()?;
    let epochs = pg_rows::shared_epochs(&began, &shards);
    let lasts: Option<Vec<u64>> =
        moved.iter().map(|row| row.as_ref().map(|row| unsigned(row.get(0)))).collect();
    if let (Some(epochs), Some(lasts)) = (epochs, lasts) {
        let fences = Fences::new(shards, epochs.into_iter().map(unsigned).collect());
        if fences.admit_all(group) {
            return Ok(Some((fences, Heads::reserved(&wanted, &lasts))));
        }
    }
    begun.open = false;
    begun.client.batch_execute("ROLLBACK")?;
    Ok(None)
}

/// Begins the fast path's transaction one statement at a time: `BEGIN` with the fences
/// ([`begin_with_fences`]), then the heads, each moved past the appends of the jobs the
/// fences admit ([`Heads::reserve`]).
fn begin_stepwise<'g>(
    begun: &mut Begun<'_>,
    statements: &Statements,
    group: &'g [Job],
) -> Result<(Fences, Heads<'g>), postgres::Error> {
    // Locks each shard's row, in ascending order, until commit: a newer owner's raise either
    // committed before (and is read here) or waits for this commit.
    let lock = FenceLock::for_group(group);
    let fences = Fences::read(group, |shards| begin_with_fences(begun, statements, shards, lock))?;
    // Then the heads of the shared streams, each locked once per commit (after the fences,
    // in ascending order: the same order in every writer), and moved past the group's
    // appends in the same statement, so none is written again before COMMIT.
    let tx = &mut *begun.client;
    let heads = Heads::reserve(group, &fences, |tenant, stream, count| {
        reserve_head(tx, statements, tenant, stream, count)
    })?;
    Ok((fences, heads))
}

/// Begins the transaction and locks the fence rows of `shards` (ascending) as
/// [`read_fences`] does. A group that share-locks its shards sends `BEGIN` and the lock in
/// one message: the SQL-level prepared statement
/// `pg_rows::SHARE_FENCES_PREPARED`, the shards inlined (numbers, nothing to escape).
fn begin_with_fences(
    begun: &mut Begun<'_>,
    statements: &Statements,
    shards: &[u32],
    lock: FenceLock,
) -> Result<Vec<u64>, postgres::Error> {
    if !matches!(lock, FenceLock::Shared) {
        begun.begin("BEGIN")?;
        return read_fences(begun.client, statements, shards);
    }
    let messages = begun.begin(&pg_rows::begin_sharing(shards))?;
    match pg_rows::shared_epochs(&messages, shards) {
        Some(epochs) => Ok(epochs.into_iter().map(unsigned).collect()),
        // A shard's first write (no row yet): in the transaction already; made and locked
        // exclusively, with the rest. The one place a shared lock is upgraded: two writers
        // making the same shard's first row at once could wait crosswise, which the server's
        // deadlock check ends by failing one group (its callers reload), once per shard.
        None => read_fences(begun.client, statements, shards),
    }
}

/// As [`lock_head`], and moves the head past `count` appends (none: only locks it); returns
/// the head as it was.
fn reserve_head(
    tx: &mut PgConn,
    statements: &Statements,
    tenant: &str,
    stream: &str,
    count: u64,
) -> Result<u64, postgres::Error> {
    if count == 0 {
        return lock_head(tx, statements, tenant, stream);
    }
    let count = id(count);
    let params: [&(dyn postgres::types::ToSql + Sync); 3] = [&tenant, &stream, &count];
    let row = match tx.query_opt(&statements.move_head, &params)? {
        Some(row) => row,
        None => tx.query_one(&statements.adopt_moved_head, &params)?,
    };
    Ok(unsigned(row.get(0)))
}

/// Locks a shared stream's head row until the transaction ends and returns the head (adopting
/// the stream's last writer-numbered entry on its first append).
fn lock_head(
    tx: &mut PgConn,
    statements: &Statements,
    tenant: &str,
    stream: &str,
) -> Result<u64, postgres::Error> {
    let row = match tx.query_opt(&statements.lock_head, &[&tenant, &stream])? {
        Some(row) => row,
        None => tx.query_one(&statements.adopt_head, &[&tenant, &stream])?,
    };
    Ok(unsigned(row.get(0)))
}

/// Stores a shared stream's head (its row exists and is locked: see [`lock_head`]).
fn store_head(
    tx: &mut PgConn,
    statements: &Statements,
    tenant: &str,
    stream: &str,
    head: u64,
) -> Result<(), postgres::Error> {
    tx.execute(&statements.store_head, &[&tenant, &stream, &bound(head)])?;
    Ok(())
}

/// The slow path: one savepoint per job, so that a refused job is undone alone.
fn write_one_by_one<'g>(
    tx: &mut PgConn,
    statements: &Statements,
    heads: &mut Heads<'g>,
    group: &'g [Job],
    limits: Limits,
) -> Result<Vec<Result<Vec<u64>>>, postgres::Error> {
    let mut refused: HashSet<&str> = HashSet::new();
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        let tenant = job.tenant();
        if refused.contains(tenant) {
            results.push(Err(Error::EarlierBatchFailed { tenant: tenant.to_owned() }));
            continue;
        }
        tx.batch_execute("SAVEPOINT job")?;
        let positions = heads.assign(job);
        let written = match job.fence().filter(|_| !matches!(job, Job::RaiseFence { .. })) {
            Some(fence) => check_fence(tx, statements, fence)
                .and_then(|()| write(tx, statements, job, &positions, limits)),
            None => write(tx, statements, job, &positions, limits),
        };
        match written {
            Ok(()) => {
                tx.batch_execute("RELEASE SAVEPOINT job")?;
                heads.take(job, &positions);
                results.push(Ok(positions));
            }
            // The connection, the disk, the server: nothing in this transaction can be trusted.
            // Except a data exception (class 22: a NUL character in a text, which SQLite would
            // have taken): that is this job's own fault, and it is refused alone.
            Err(Error::Postgres(error)) if !is_data_exception(&error) => return Err(error),
            Err(refusal) => {
                tx.batch_execute("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")?;
                if crate::writer::holds_back(job, &refusal) {
                    refused.insert(tenant);
                }
                results.push(Err(refusal));
            }
        }
    }
    Ok(results)
}

/// Writes one job, its fence already checked; `positions` are its appends' (see [`Heads`]).
fn write(
    tx: &mut PgConn,
    statements: &Statements,
    job: &Job,
    positions: &[u64],
    limits: Limits,
) -> Result<()> {
    match job {
        Job::Append { batch, .. } => write_batch(tx, statements, batch, positions),
        // `PostgresStore` reserves and binds in statements of their own (see `numbers.rs`),
        // never inside a group commit; nothing queues these here.
        Job::Reserve { .. } | Job::Bind { .. } => Err(Error::Commit(Arc::new(
            std::io::Error::other("reservations do not go through the PostgreSQL writer"),
        ))),
        Job::Snapshot { tenant, seq, bytes, .. } => {
            write_snapshot(tx, statements, tenant, *seq, bytes, limits.request_retention_ms)
        }
        Job::RaiseFence { fence, .. } => {
            let epoch = ordered("fence epoch", fence.epoch)?;
            tx.execute(&statements.raise_fence, &[&i64::from(fence.shard), &epoch])?;
            Ok(())
        }
        Job::TrimStream { tenant, stream, keep_last, .. } => {
            tx.execute(&statements.trim, &[tenant, stream, &count(*keep_last)])?;
            Ok(())
        }
        Job::Retain { tenant, now_ms, streams_before_ms, .. } => write_retain(
            tx,
            statements,
            tenant,
            *now_ms,
            *streams_before_ms,
            limits.request_retention_ms,
        ),
    }
}

/// Retention of one tenant, as in SQLite (`writer::write_retain`).
fn write_retain(
    tx: &mut PgConn,
    statements: &Statements,
    tenant: &String,
    now_ms: u64,
    streams_before_ms: u64,
    retention_ms: i64,
) -> Result<()> {
    let now = bound(now_ms);
    tx.execute(&statements.retain_messages, &[tenant, &now])?;
    tx.execute(&statements.retain_owners, &[tenant, &now])?;
    // Actors' responses, once past the idempotency window.
    tx.execute(&statements.retain_responses, &[tenant, &now.saturating_sub(retention_ms)])?;
    tx.execute(&statements.retain_archive, &[tenant, &now])?;
    let before = bound(streams_before_ms);
    let names: Vec<String> =
        tx.query(&statements.stream_names, &[tenant])?.iter().map(|row| row.get(0)).collect();
    for stream in names {
        let first_kept: Option<i64> =
            tx.query_opt(&statements.first_kept, &[tenant, &stream, &before])?.map(|r| r.get(0));
        match first_kept {
            Some(first_kept) => tx.execute(&statements.cut_stream, &[tenant, &stream, &first_kept]),
            None => tx.execute(&statements.clear_stream, &[tenant, &stream]),
        }?;
    }
    let snapshot: Option<i64> =
        tx.query_opt(&statements.stored_snapshot, &[tenant])?.map(|row| row.get(0));
    if let Some(snapshot) = snapshot {
        prune_log(tx, statements, tenant, snapshot, now.saturating_sub(retention_ms))?;
    }
    Ok(())
}

fn is_data_exception(error: &postgres::Error) -> bool {
    error.code().is_some_and(|code| code.code().starts_with("22"))
}

/// Turns a primary-key violation into the caller's error; anything else stays a database error.
fn duplicate(error: postgres::Error, refusal: impl FnOnce() -> Error) -> Error {
    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        refusal()
    } else {
        Error::Postgres(error)
    }
}

/// How a group locks its shards' fence rows.
#[derive(Clone, Copy)]
enum FenceLock {
    /// Shared, when the group raises no fence and every row exists (`pg_rows::SHARE_FENCES`).
    Shared,
    /// Exclusive, made if missing (`pg_rows::LOCK_FENCES`): a group that raises a fence takes
    /// its rows so from the start, since upgrading a shared lock another writer also holds
    /// could wait crosswise with it. So does the slow path, which locks each job's row again.
    Exclusive,
}

impl FenceLock {
    fn for_group(group: &[Job]) -> FenceLock {
        if group.iter().any(|job| matches!(job, Job::RaiseFence { .. })) {
            FenceLock::Exclusive
        } else {
            FenceLock::Shared
        }
    }
}

/// Locks the rows of `shards` (ascending) exclusively until the transaction ends, making any
/// that is missing, and returns their epochs. (Shared locks go with `BEGIN`:
/// [`begin_with_fences`], [`begin_pipelined`].)
fn read_fences(
    tx: &mut PgConn,
    statements: &Statements,
    shards: &[u32],
) -> Result<Vec<u64>, postgres::Error> {
    Ok(pg_rows::lock_fences(tx, &statements.lock_fences, shards)?
        .into_iter()
        .map(unsigned)
        .collect())
}

/// Rows written together that the database refused as rows (a duplicate key, a value it
/// cannot take): whose they were is found by redoing the group a job at a time, so for the
/// fast path they are a job's refusal, not the database's failure.
fn refused_rows(error: postgres::Error) -> Error {
    let code = error.code().map(|code| code.code().to_owned()).unwrap_or_default();
    if code.starts_with("23") { Error::RowsRefused(code) } else { Error::Postgres(error) }
}

/// Locks a shard's row until the transaction ends and returns its epoch (0 if none was stored).
fn lock_fence(
    tx: &mut PgConn,
    statements: &Statements,
    shard: u32,
) -> Result<i64, postgres::Error> {
    Ok(tx.query_one(&statements.lock_fence, &[&i64::from(shard)])?.get(0))
}

/// Refuses a write whose epoch is older than its shard's, holding the shard's row lock until
/// the write commits.
fn check_fence(tx: &mut PgConn, statements: &Statements, fence: Fence) -> Result<()> {
    let current = unsigned(lock_fence(tx, statements, fence.shard)?);
    if current > fence.epoch {
        return Err(Error::Fenced { shard: fence.shard, epoch: fence.epoch, current });
    }
    Ok(())
}

/// One batch, its fence already checked, `positions` those of its appends; the log record is
/// the command's only row for idempotency too.
fn write_batch(
    tx: &mut PgConn,
    statements: &Statements,
    batch: &Batch,
    positions: &[u64],
) -> Result<()> {
    let tenant = &batch.tenant;
    for record in &batch.log {
        let seq = ordered("log seq", record.seq)?;
        let at_ms = ordered("log at_ms", record.at_ms)?;
        tx.execute(
            &statements.insert_log,
            &[tenant, &seq, &at_ms, &record.request_id, &record.command, &record.response],
        )
        .map_err(|e| {
            duplicate(e, || Error::DuplicateLogRecord { tenant: tenant.clone(), seq: record.seq })
        })?;
    }
    for entry in &batch.streams {
        let seq = ordered("stream seq", entry.seq)?;
        let at_ms = ordered("stream at_ms", entry.at_ms)?;
        let conversation = entry.conversation.map(id);
        tx.execute(
            &statements.insert_stream,
            &[tenant, &entry.stream, &seq, &at_ms, &entry.payload, &conversation],
        )
        .map_err(|e| {
            duplicate(e, || Error::DuplicateStreamEntry {
                tenant: tenant.clone(),
                stream: entry.stream.clone(),
                seq: entry.seq,
            })
        })?;
    }
    for (append, &position) in batch.appends.iter().zip(positions) {
        let seq = ordered("stream seq", position)?;
        let at_ms = ordered("stream at_ms", append.at_ms)?;
        let conversation = append.conversation.map(id);
        tx.execute(
            &statements.insert_stream,
            &[tenant, &append.stream, &seq, &at_ms, &append.payload, &conversation],
        )
        .map_err(|e| {
            duplicate(e, || Error::MixedStream {
                tenant: tenant.clone(),
                stream: append.stream.clone(),
                seq: position,
            })
        })?;
    }
    for message in &batch.messages {
        let seq = ordered("message seq", message.seq)?;
        let at_ms = ordered("message at_ms", message.at_ms)?;
        tx.execute(
            &statements.insert_message,
            &[
                tenant,
                &id(message.conversation),
                &seq,
                &at_ms,
                &message.sender,
                &message.text,
                &message.kind,
            ],
        )
        .map_err(|e| {
            duplicate(e, || Error::DuplicateMessage {
                tenant: tenant.clone(),
                conversation: message.conversation,
                seq: message.seq,
            })
        })?;
    }
    for &conversation in &batch.purge_conversations {
        tx.execute(&statements.purge, &[tenant, &id(conversation)])?;
    }
    for archived in &batch.archive {
        tx.execute(
            &statements.upsert_archive,
            &[
                tenant,
                &ordered("archived conversation", archived.conversation)?,
                &archived.customer,
                &ordered("archived opened_at_ms", archived.opened_at_ms)?,
                &ordered("archived ended_at_ms", archived.ended_at_ms)?,
                &ordered("archived purge_at_ms", archived.purge_at_ms)?,
                &archived.body,
            ],
        )?;
    }
    for customer in &batch.customers {
        let c = &customer.contact;
        tx.execute(
            &statements.upsert_customer,
            &[tenant, &customer.customer, &customer.body, &c.remark_name, &c.phone, &c.email],
        )?;
    }
    for actor in &batch.actors {
        match &actor.body {
            Some(body) => {
                let epoch = ordered("actor epoch", actor.epoch)?;
                tx.execute(
                    &statements.upsert_actor,
                    &[tenant, &actor.kind, &actor.key, &epoch, body],
                )?
            }
            None => tx.execute(&statements.delete_actor, &[tenant, &actor.kind, &actor.key])?,
        };
    }
    for response in &batch.responses {
        let at_ms = ordered("response at_ms", response.at_ms)?;
        tx.execute(
            &statements.insert_response,
            &[tenant, &response.request_id, &at_ms, &response.body],
        )?;
    }
    for owner in &batch.owners {
        let conversation = ordered("owned conversation", owner.conversation)?;
        let customer = ordered("owning customer", owner.customer)?;
        tx.execute(&statements.insert_owner, &[tenant, &conversation, &customer])?;
    }
    Ok(())
}

/// As in SQLite (`writer::write_snapshot`): the log records it replaces go, but for those
/// still needed to answer a repeated request.
fn write_snapshot(
    tx: &mut PgConn,
    statements: &Statements,
    tenant: &String,
    seq: u64,
    bytes: &Vec<u8>,
    retention_ms: i64,
) -> Result<()> {
    let seq_sql = ordered("snapshot seq", seq)?;
    let stored: Option<i64> =
        tx.query_opt(&statements.stored_snapshot, &[tenant])?.map(|row| row.get(0));
    if let Some(stored) = stored.filter(|&stored| stored > seq_sql) {
        return Err(Error::StaleSnapshot {
            tenant: tenant.to_owned(),
            seq,
            stored: unsigned(stored),
        });
    }
    tx.execute(&statements.upsert_snapshot, &[tenant, &seq_sql, bytes])?;
    let newest: Option<i64> = tx.query_opt(&statements.newest_log, &[tenant])?.map(|r| r.get(0));
    tx.execute(&statements.delete_unrequested, &[tenant, &stored.unwrap_or(-1), &seq_sql])?;
    if let Some(newest) = newest {
        prune_log(tx, statements, tenant, seq_sql, newest.saturating_sub(retention_ms))?;
    }
    Ok(())
}

/// As in SQLite (`writer::prune_log`): the records up to `snapshot` older than `before_ms`.
fn prune_log(
    tx: &mut PgConn,
    statements: &Statements,
    tenant: &String,
    snapshot: i64,
    before_ms: i64,
) -> Result<()> {
    let first_kept: Option<i64> =
        tx.query_opt(&statements.first_log_kept, &[tenant, &before_ms])?.map(|r| r.get(0));
    let up_to = first_kept.map_or(snapshot, |first| snapshot.min(first - 1));
    tx.execute(&statements.delete_log, &[tenant, &up_to])?;
    Ok(())
}
