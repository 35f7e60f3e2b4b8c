//! The writer thread: group commit.
//!
//! One thread owns the only writing connection. Callers queue jobs on a channel; the thread
//! takes everything queued (up to a bound), writes it in one transaction, syncs once, and only
//! then answers each caller. While it syncs, new jobs queue up for the next commit, so the
//! number of syncs follows the disk, not the number of callers.
//!
//! Within the transaction, each shard's fence is read once, fenced jobs are refused without
//! being written, and every other job is written straight in. Savepoints cost a write of
//! each page a job touches to a side journal, so they are only used when needed: if a job
//! fails partway (a duplicate, say), the writer rolls the transaction back and redoes the
//! group with one savepoint per job, which undoes the refused job alone.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, PoisonError};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::schema::{bound, count, id, ordered, unsigned};
use crate::{Batch, Error, Fence, Result, Stats};

/// Where a job's outcome goes: for an append, the positions assigned to its batch's
/// `appends` (empty for every other job).
pub(crate) type Ack = oneshot::Sender<Result<Vec<u64>>>;

/// Where the outcome of a job a caller waits for synchronously goes (a reservation or a
/// binding: [`crate::Store::reserve`] is a blocking call, and a std channel blocks safely on
/// any thread).
pub(crate) type SyncAck = std::sync::mpsc::SyncSender<Result<Vec<u64>>>;

/// One write, as queued by the store. `Reserve` ([`crate::Store::reserve`], answering
/// `[first]`) and `Bind` ([`crate::Store::bind_customer`], answering `[bound number]`) are
/// SQLite's only: see `numbers.rs`.
#[derive(Debug)]
pub(crate) enum Job {
    Append { batch: Batch, ack: Ack },
    Snapshot { tenant: String, fence: Fence, seq: u64, bytes: Vec<u8>, ack: Ack },
    TrimStream { tenant: String, stream: String, keep_last: usize, ack: Ack },
    RaiseFence { fence: Fence, ack: Ack },
    Retain { tenant: String, fence: Fence, now_ms: u64, streams_before_ms: u64, ack: Ack },
    Reserve { tenant: String, counter: String, count: u64, ack: SyncAck },
    Bind { tenant: String, name: String, number: u64, ack: SyncAck },
}

impl Job {
    pub(crate) fn tenant(&self) -> &str {
        match self {
            Job::Append { batch, .. } => &batch.tenant,
            Job::Snapshot { tenant, .. }
            | Job::TrimStream { tenant, .. }
            | Job::Retain { tenant, .. } => tenant,
            // Not part of the tenant's log: never held back by a refusal of its batches.
            Job::RaiseFence { .. } | Job::Reserve { .. } | Job::Bind { .. } => "",
        }
    }

    /// The fence the job is written under (checked), or raises; `None` for unfenced jobs.
    pub(crate) fn fence(&self) -> Option<Fence> {
        match self {
            Job::Append { batch, .. } => Some(batch.fence),
            Job::Snapshot { fence, .. }
            | Job::Retain { fence, .. }
            | Job::RaiseFence { fence, .. } => Some(*fence),
            Job::TrimStream { .. } | Job::Reserve { .. } | Job::Bind { .. } => None,
        }
    }

    /// Roughly the bytes the job writes, to bound a commit's size.
    pub(crate) fn size(&self) -> usize {
        match self {
            Job::Append { batch, .. } => {
                let log: usize =
                    batch.log.iter().map(|r| r.command.len() + r.response.len() + 64).sum();
                let streams: usize = batch.streams.iter().map(|e| e.payload.len() + 64).sum();
                let appends: usize = batch.appends.iter().map(|e| e.payload.len() + 64).sum();
                let messages: usize = batch.messages.iter().map(|m| m.text.len() + 64).sum();
                let archive: usize = batch.archive.iter().map(|a| a.body.len() + 64).sum();
                let customers: usize = batch.customers.iter().map(|c| c.body.len() + 64).sum();
                let actors: usize =
                    batch.actors.iter().map(|a| a.body.as_ref().map_or(0, Vec::len) + 64).sum();
                let responses: usize =
                    batch.responses.iter().map(|r| r.body.len() + r.request_id.len() + 64).sum();
                log + streams
                    + appends
                    + messages
                    + archive
                    + customers
                    + actors
                    + responses
                    + 32 * batch.owners.len()
            }
            Job::Snapshot { bytes, .. } => bytes.len(),
            Job::TrimStream { .. }
            | Job::RaiseFence { .. }
            | Job::Retain { .. }
            | Job::Reserve { .. }
            | Job::Bind { .. } => 64,
        }
    }

    pub(crate) fn ack(self, result: Result<Vec<u64>>) {
        // The caller may have dropped its future; the write stands either way.
        match self {
            Job::Append { ack, .. }
            | Job::Snapshot { ack, .. }
            | Job::TrimStream { ack, .. }
            | Job::RaiseFence { ack, .. }
            | Job::Retain { ack, .. } => drop(ack.send(result)),
            Job::Reserve { ack, .. } | Job::Bind { ack, .. } => drop(ack.send(result)),
        }
    }
}

/// Counters the writer keeps; read through `SqliteStore::stats` and `PostgresStore::stats`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub commits: AtomicU64,
    pub batches: AtomicU64,
    pub rejected_batches: AtomicU64,
    pub failed_commits: AtomicU64,
    pub redone_commits: AtomicU64,
    pub checkpoints: AtomicU64,
    pub finished_checkpoints: AtomicU64,
    pub failed_checkpoints: AtomicU64,
    pub wal_frames: AtomicU64,
    /// Each tenant's generation ([`crate::Store::generation`]): the writer raises it, the
    /// store reads it. Shared here because this is what the writer already shares.
    pub generations: std::sync::Mutex<HashMap<String, u64>>,
}

impl Counters {
    /// The tenant's generation (0 until a failure raised it).
    pub(crate) fn generation(&self, tenant: &str) -> u64 {
        let generations = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
        generations.get(tenant).copied().unwrap_or(0)
    }

    fn raise_generation(&self, tenant: &str) {
        let mut generations = self.generations.lock().unwrap_or_else(PoisonError::into_inner);
        *generations.entry(tenant.to_owned()).or_default() += 1;
    }

    pub(crate) fn stats(&self) -> Stats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            commits: get(&self.commits),
            batches: get(&self.batches),
            rejected_batches: get(&self.rejected_batches),
            failed_commits: get(&self.failed_commits),
            redone_commits: get(&self.redone_commits),
            checkpoints: get(&self.checkpoints),
            finished_checkpoints: get(&self.finished_checkpoints),
            failed_checkpoints: get(&self.failed_checkpoints),
            wal_frames: get(&self.wal_frames),
        }
    }

    /// Counts a commit that went through, given each job's outcome.
    pub(crate) fn committed(&self, group: &[Job], results: &[Result<Vec<u64>>]) {
        let appended = group
            .iter()
            .zip(results)
            .filter(|(job, result)| matches!(job, Job::Append { .. }) && result.is_ok())
            .count();
        let rejected = results.iter().filter(|r| r.is_err()).count();
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.batches.fetch_add(appended as u64, Ordering::Relaxed);
        self.rejected_batches.fetch_add(rejected as u64, Ordering::Relaxed);
    }
}

/// How long a busy writer waits for more jobs before it commits (see [`drain`]). It sleeps
/// the whole linger once instead of waiting in `recv` for each job: every job that wakes a
/// parked receiver costs a futex call and a switch on both sides, and the node's CPU per
/// command fell by 10% (251 → 224 µs at 200 arrivals/s) when those wake-ups went. 1 ms, not
/// 500 µs, since the actors send before their batches are durable: a hop no longer waits
/// for a commit, and node CPU per command fell 10–13% at 200 arrivals/s with p99s no worse.
pub(crate) const COMMIT_LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// When a commit waits [`Limits::linger`] for more jobs after its group's first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Linger {
    /// Only when the last group had company: jobs come faster than commits. SQLite's: its
    /// commit costs this node's own CPU, and a lone job waiting for company cost as much
    /// latency as it saved (ARCHITECTURE.md, "The 37th session: the writer's linger").
    WhenBusy,
    /// After every group's first job. PostgreSQL's: its commit costs the server, which every
    /// node shares, several hundred µs of CPU, so gathering more jobs into each one is worth
    /// the wait.
    Always,
}

/// How the writer bounds a commit and prunes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_jobs: usize,
    pub max_bytes: usize,
    pub request_retention_ms: i64,
    /// How long a commit waits for more jobs after the first ([`drain`]); zero: never.
    pub linger: std::time::Duration,
    /// When it waits.
    pub linger_when: Linger,
}

impl Limits {
    pub fn new(
        max_batches: usize,
        max_bytes: usize,
        request_retention: std::time::Duration,
    ) -> Self {
        Limits {
            max_jobs: max_batches.max(1),
            max_bytes,
            request_retention_ms: i64::try_from(request_retention.as_millis()).unwrap_or(i64::MAX),
            linger: COMMIT_LINGER,
            linger_when: Linger::WhenBusy,
        }
    }
}

/// A store's end of its writer thread (either backend): queues jobs in call order, and when
/// dropped lets the thread drain the queue and joins it.
#[derive(Debug)]
pub(crate) struct Handle {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Handle {
    pub fn new(jobs: std::sync::mpsc::Sender<Job>, thread: std::thread::JoinHandle<()>) -> Self {
        Handle { jobs: Some(jobs), thread: Some(thread) }
    }

    pub fn append(&self, batch: Batch) -> crate::Pending {
        self.submit(|ack| Job::Append { batch, ack })
    }

    pub fn append_assigned(&self, batch: Batch) -> crate::Assigned {
        self.queue(|ack| Job::Append { batch, ack })
    }

    pub fn snapshot(&self, tenant: &str, fence: Fence, seq: u64, bytes: Vec<u8>) -> crate::Pending {
        self.submit(|ack| Job::Snapshot { tenant: tenant.to_owned(), fence, seq, bytes, ack })
    }

    pub fn raise_fence(&self, fence: Fence) -> crate::Pending {
        self.submit(|ack| Job::RaiseFence { fence, ack })
    }

    pub fn trim_stream(&self, tenant: &str, stream: &str, keep_last: usize) -> crate::Pending {
        self.submit(|ack| Job::TrimStream {
            tenant: tenant.to_owned(),
            stream: stream.to_owned(),
            keep_last,
            ack,
        })
    }

    pub fn retain(
        &self,
        tenant: &str,
        fence: Fence,
        now_ms: u64,
        streams_before_ms: u64,
    ) -> crate::Pending {
        self.submit(|ack| Job::Retain {
            tenant: tenant.to_owned(),
            fence,
            now_ms,
            streams_before_ms,
            ack,
        })
    }

    /// Reserves `count` numbers of the tenant's `counter` and waits until that is durable
    /// (see [`crate::Store::reserve`]).
    pub fn reserve(&self, tenant: &str, counter: &str, count: u64) -> Result<u64> {
        let job = |ack| Job::Reserve {
            tenant: tenant.to_owned(),
            counter: counter.to_owned(),
            count,
            ack,
        };
        self.wait(job)?.first().copied().ok_or(Error::Closed)
    }

    /// Binds a customer's name to a number unless it is bound, and waits until that is
    /// durable (see [`crate::Store::bind_customer`]).
    pub fn bind_customer(&self, tenant: &str, name: &str, number: u64) -> Result<u64> {
        let job = |ack| Job::Bind { tenant: tenant.to_owned(), name: name.to_owned(), number, ack };
        self.wait(job)?.first().copied().ok_or(Error::Closed)
    }

    /// Queues a job now and blocks until it is durable or refused.
    fn wait(&self, job: impl FnOnce(SyncAck) -> Job) -> Result<Vec<u64>> {
        let (ack, done) = std::sync::mpsc::sync_channel(1);
        let sent = self.jobs.as_ref().is_some_and(|jobs| jobs.send(job(ack)).is_ok());
        if !sent {
            return Err(Error::Closed);
        }
        // A dropped ack means the writer died without answering: not durable.
        done.recv().unwrap_or(Err(Error::Closed))
    }

    /// Queues a job now, so that jobs are written in call order.
    fn submit(&self, job: impl FnOnce(Ack) -> Job) -> crate::Pending {
        let done = self.queue(job);
        Box::pin(async move { done.await.map(drop) })
    }

    /// Queues a job now; resolves with its outcome and the positions it was assigned.
    fn queue(&self, job: impl FnOnce(Ack) -> Job) -> crate::Assigned {
        let (ack, done) = oneshot::channel();
        let sent = self.jobs.as_ref().is_some_and(|jobs| jobs.send(job(ack)).is_ok());
        if !sent {
            return Box::pin(std::future::ready(Err(Error::Closed)));
        }
        // A dropped ack means the writer died without answering: not durable.
        Box::pin(async move { done.await.unwrap_or(Err(Error::Closed)) })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The writer drains the queue, then sees the channel closed and returns.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            // A panicked writer has already failed its callers (their acks were dropped).
            let _ = thread.join();
        }
    }
}

/// The writer thread's body: runs until every sender is gone and the queue is empty, so
/// closing the store finishes what was queued.
pub(crate) fn run(
    conn: Connection,
    jobs: Receiver<Job>,
    limits: Limits,
    stats: &Counters,
    wal: crate::checkpoint::Watch,
) {
    struct Sqlite<'s> {
        conn: Connection,
        cache: HeadCache,
        wal: crate::checkpoint::Watch,
        limits: Limits,
        stats: &'s Counters,
    }
    impl Committer for Sqlite<'_> {
        fn commit(&mut self, group: &[Job]) -> Vec<Result<Vec<u64>>> {
            commit(&mut self.conn, &mut self.cache, group, self.limits, self.stats)
        }

        // After the answers: a checkpoint's finishing pass keeps no caller waiting.
        fn answered(&mut self) {
            self.wal.committed(&self.conn, self.stats);
        }
    }
    let cache = HeadCache::default();
    drain(&jobs, limits, stats, &mut Sqlite { conn, cache, wal, limits, stats });
}

/// What [`drain`] hands each group to: a writer's transaction.
pub(crate) trait Committer {
    /// Writes the group and gives each job's outcome, in order; [`drain`] answers them.
    fn commit(&mut self, group: &[Job]) -> Vec<Result<Vec<u64>>>;

    /// Called once the group's jobs are answered.
    fn answered(&mut self) {}
}

impl<F: FnMut(&[Job]) -> Vec<Result<Vec<u64>>>> Committer for F {
    fn commit(&mut self, group: &[Job]) -> Vec<Result<Vec<u64>>> {
        self(group)
    }
}

/// The shared streams' heads as this writer's last commits left them, so a group reads from
/// the store only the heads of streams it has not appended to lately (a read per desk stream
/// and group was about 1.5% of the node's CPU at 500 arrivals/s). Valid while no other
/// connection wrote the file (`PRAGMA data_version` unchanged; a second process on the same
/// file), and only with what committed: a failed group clears it. Were a head ever stale, no
/// position would repeat: the entry's key refuses the append (as a mixed stream).
#[derive(Debug, Default)]
struct HeadCache {
    /// `PRAGMA data_version` when the heads were read or written.
    version: Option<i64>,
    /// Tenant → stream → head (nested, so a lookup copies no name).
    heads: HashMap<String, HashMap<String, u64>>,
    /// How many heads `heads` holds.
    count: usize,
}

/// Heads kept at most; past it the cache starts over (more streams than this appended to
/// in turn only cost the reads the cache saves).
const CACHED_HEADS: usize = 100_000;

impl HeadCache {
    /// Drops everything unless the file is as this writer left it.
    fn check(&mut self, conn: &Connection) -> rusqlite::Result<()> {
        // Prepared once: it runs on every commit.
        let version: i64 =
            conn.prepare_cached("PRAGMA data_version")?.query_row([], |row| row.get(0))?;
        if self.version != Some(version) {
            self.forget();
            self.version = Some(version);
        }
        Ok(())
    }

    fn get(&self, tenant: &str, stream: &str) -> Option<u64> {
        self.heads.get(tenant)?.get(stream).copied()
    }

    fn head(&self, conn: &Connection, tenant: &str, stream: &str) -> rusqlite::Result<u64> {
        match self.get(tenant, stream) {
            Some(head) => Ok(head),
            None => read_head(conn, tenant, stream),
        }
    }

    /// Keeps the heads of a committed group.
    fn committed(&mut self, heads: &Heads<'_>) {
        if self.count + heads.heads.len() > CACHED_HEADS {
            self.forget();
        }
        for (&(tenant, stream), &Head { last: head, .. }) in heads.iter() {
            let streams = match self.heads.get_mut(tenant) {
                Some(streams) => streams,
                None => self.heads.entry(tenant.to_owned()).or_default(),
            };
            match streams.get_mut(stream) {
                Some(cached) => *cached = head,
                None => {
                    streams.insert(stream.to_owned(), head);
                    self.count += 1;
                }
            }
        }
    }

    fn forget(&mut self) {
        self.heads.clear();
        self.count = 0;
    }

    fn clear(&mut self) {
        self.forget();
        self.version = None;
    }
}

/// Hands `commit` everything queued (up to the limits) each time, until every sender is gone
/// and the queue is empty. Shared by the SQLite and PostgreSQL writers.
///
/// A refused append also refuses the tenant's later appends, and not only within its group:
/// a writer pipelines, so its next batches may land in the next group, and writing them
/// would leave a gap in its log. The refusal holds until an append comes at or below the
/// refused sequence number (the writer reloaded and starts again from what is durable), or
/// under another fence: a new ownership of the tenant loaded what is durable, wherever its
/// log stands now (a node fenced off while appending may own the tenant again later, after
/// another node wrote on; its old refusal must not hold the new owner back).
/// Only refusals that wrote nothing count: not a duplicate (its number is durable already, and
/// the writer goes on after it), nor a failed commit (its outcome may be unknown, see
/// `pg_writer`).
pub(crate) fn drain(
    jobs: &Receiver<Job>,
    limits: Limits,
    stats: &Counters,
    committer: &mut impl Committer,
) {
    drain_sleeping(jobs, limits, stats, committer, std::thread::sleep);
}

/// [`drain`], lingering with `sleep` (a test's sleep queues what "arrives" meanwhile).
#[allow(clippy::disallowed_methods)] // a shell's thread: the linger's deadline is wall time
fn drain_sleeping(
    jobs: &Receiver<Job>,
    limits: Limits,
    stats: &Counters,
    committer: &mut impl Committer,
    mut sleep: impl FnMut(std::time::Duration),
) {
    let mut refused: HashMap<String, (u64, Fence)> = HashMap::new();
    // The last group had company: jobs come faster than commits, so waiting a little for
    // more costs less latency than it saves in commits (each one a sync and its pages).
    let mut busy = false;
    let always = limits.linger_when == Linger::Always;
    // Kept from group to group: a commit allocates no vector of its own for its jobs.
    let (mut group, mut admitted) = (Vec::new(), Vec::new());
    while let Ok(first) = jobs.recv() {
        let mut bytes = first.size();
        group.push(first);
        let until = std::time::Instant::now() + limits.linger;
        let mut lingered = false;
        while group.len() < limits.max_jobs && bytes < limits.max_bytes {
            let job = match jobs.try_recv() {
                Ok(job) => job,
                Err(_) if (always || busy) && !lingered && !limits.linger.is_zero() => {
                    // One sleep for the whole linger, then take what came: a thread parked in
                    // `recv` is woken (a futex call on each side) by every job that arrives.
                    sleep(until.saturating_duration_since(std::time::Instant::now()));
                    lingered = true;
                    continue;
                }
                Err(_) => break,
            };
            bytes += job.size();
            group.push(job);
        }
        busy = group.len() > 1;
        for job in group.drain(..) {
            let Job::Append { batch, ack } = job else {
                admitted.push(job);
                continue;
            };
            if let Some(generation) = batch.generation {
                let current = stats.generation(&batch.tenant);
                if generation < current {
                    stats.rejected_batches.fetch_add(1, Ordering::Relaxed);
                    let tenant = batch.tenant;
                    let _ = ack.send(Err(Error::StaleGeneration { tenant, generation, current }));
                    continue;
                }
            }
            let seq = batch.log.first().map(|r| r.seq);
            if let (Some(seq), Some(&(at, fence))) = (seq, refused.get(&batch.tenant)) {
                if seq > at && batch.fence == fence {
                    // Counted as if refused within a commit: the same whatever the grouping.
                    stats.rejected_batches.fetch_add(1, Ordering::Relaxed);
                    let _ = ack.send(Err(Error::EarlierBatchFailed { tenant: batch.tenant }));
                    continue;
                }
                refused.remove(&batch.tenant);
            }
            admitted.push(Job::Append { batch, ack });
        }
        let mut results = committer.commit(&admitted);
        // A commit that answered short (neither does) left the rest unwritten, as far as it
        // knows: they are not durable.
        results.resize_with(admitted.len(), || Err(Error::Closed));
        // Raised once per tenant per group, before the next group is looked at: every batch
        // of the tenant queued from now on under an older generation is refused.
        let mut raised: HashSet<&str> = HashSet::new();
        for (job, result) in admitted.iter().zip(&results) {
            let (Job::Append { batch, .. }, Err(e)) = (job, result) else { continue };
            if batch.generation.is_some() && raised.insert(&batch.tenant) {
                stats.raise_generation(&batch.tenant);
            }
            if let Some(seq) = batch.log.first().map(|r| r.seq)
                && refusal_holds_back(e)
                && !matches!(e, Error::Commit(_) | Error::Closed)
            {
                refused.entry(batch.tenant.clone()).or_insert((seq, batch.fence));
            }
        }
        for (job, result) in admitted.drain(..).zip(results) {
            job.ack(result);
        }
        committer.answered();
    }
}

/// Whether a refused job holds back its tenant's later appends (in its group and after):
/// only a refused append, and not a duplicate (its number is durable already, and the writer
/// goes on after it), so the outcome is the same whether the next append shares its commit or
/// not. A refused snapshot holds nothing back: a failed snapshot never stops the tenant.
pub(crate) fn holds_back(job: &Job, refusal: &Error) -> bool {
    matches!(job, Job::Append { .. }) && refusal_holds_back(refusal)
}

/// The part of [`holds_back`] about the refusal itself: anything but a duplicate.
fn refusal_holds_back(refusal: &Error) -> bool {
    !matches!(refusal, Error::DuplicateLogRecord { .. })
}

/// Writes one group and gives every job's outcome, in order, for [`drain`] to answer: nothing
/// is acknowledged before the commit returned, and if the commit fails, every job in it gets
/// the error.
fn commit(
    conn: &mut Connection,
    cache: &mut HeadCache,
    group: &[Job],
    limits: Limits,
    stats: &Counters,
) -> Vec<Result<Vec<u64>>> {
    let written = write_group(conn, cache, group, limits, stats);
    if written.is_err() {
        cache.clear();
    }
    outcomes(group, written, stats)
}

/// Each job's outcome from a group's write, counted: its own, or the error that sank the
/// group's commit. Shared by both writers.
pub(crate) fn outcomes<E: std::error::Error + Send + Sync + 'static>(
    group: &[Job],
    written: std::result::Result<Vec<Result<Vec<u64>>>, E>,
    stats: &Counters,
) -> Vec<Result<Vec<u64>>> {
    match written {
        Ok(results) => {
            stats.committed(group, &results);
            results
        }
        Err(error) => {
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            let error: Arc<dyn std::error::Error + Send + Sync> = Arc::new(error);
            group.iter().map(|_| Err(Error::Commit(Arc::clone(&error)))).collect()
        }
    }
}

/// One transaction for the group. Returns each job's outcome, or the error that sank the
/// whole group.
///
/// Fast path: every job straight into the transaction ([`write_straight`]). Only if a job
/// fails partway (a duplicate, a value out of range, a stale snapshot) is the transaction
/// rolled back and the group redone with one savepoint per job, so that the refused job is
/// undone alone ([`write_one_by_one`]). The outcomes are the same either way.
fn write_group(
    conn: &mut Connection,
    cache: &mut HeadCache,
    group: &[Job],
    limits: Limits,
    stats: &Counters,
) -> rusqlite::Result<Vec<Result<Vec<u64>>>> {
    // IMMEDIATE takes the write lock up front, so another connection holding it (a second
    // process on the same file) makes us wait here, not fail halfway through the group.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut fences =
        Fences::read(group, |shards| shards.iter().map(|&s| read_fence(&tx, s)).collect())?;
    cache.check(&tx)?;
    let mut heads = Heads::read(group, |tenant, stream| cache.head(&tx, tenant, stream))?;
    let mut hot = Hot::new(&tx);
    let written = write_straight(
        group,
        &mut fences,
        |job| {
            let answer = write(&mut hot, job, heads.assign(job), limits)?;
            // An append's answer is its positions.
            heads.take(job, &answer);
            Ok(answer)
        },
        |error| match error {
            // IO, a full disk, corruption: nothing in this transaction can be trusted.
            Error::Sqlite(error) => Some(error),
            _ => None,
        },
    )?;
    drop(hot);
    if let Some(results) = written {
        tx.commit()?;
        cache.committed(&heads);
        return Ok(results);
    }
    tx.rollback()?;
    stats.redone_commits.fetch_add(1, Ordering::Relaxed);
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The cached heads again (a job that met an entry at its position is refused as a mixed
    // stream): the entries are the heads on SQLite, so a read would step past that entry.
    let mut heads = Heads::read(group, |tenant, stream| cache.head(&tx, tenant, stream))?;
    let results = write_one_by_one(&mut tx, &mut heads, group, limits)?;
    tx.commit()?;
    cache.committed(&heads);
    Ok(results)
}

/// The slow path: one savepoint per job, so that a refused job is undone alone.
fn write_one_by_one<'g>(
    tx: &mut rusqlite::Transaction<'_>,
    heads: &mut Heads<'g>,
    group: &'g [Job],
    limits: Limits,
) -> rusqlite::Result<Vec<Result<Vec<u64>>>> {
    let mut refused: HashSet<&str> = HashSet::new();
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        let tenant = job.tenant();
        if refused.contains(tenant) {
            results.push(Err(Error::EarlierBatchFailed { tenant: tenant.to_owned() }));
            continue;
        }
        let sp = tx.savepoint()?;
        let positions = heads.assign(job);
        let written = match job.fence().filter(|_| !matches!(job, Job::RaiseFence { .. })) {
            Some(fence) => check_fence(&sp, fence)
                .and_then(|()| write(&mut Hot::new(&sp), job, positions, limits)),
            None => write(&mut Hot::new(&sp), job, positions, limits),
        };
        match written {
            Ok(answer) => {
                sp.commit()?;
                // An append's answer is its positions.
                heads.take(job, &answer);
                results.push(Ok(answer));
            }
            // IO, a full disk, corruption: nothing in this transaction can be trusted.
            Err(Error::Sqlite(error)) => return Err(error),
            Err(refusal) => {
                sp.finish()?; // rolls the savepoint back
                if tx.is_autocommit() {
                    // SQLite rolled the whole transaction back on its own (it does on some
                    // errors); what follows would commit outside it.
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                        Some("transaction rolled back by SQLite".into()),
                    ));
                }
                if holds_back(job, &refusal) {
                    refused.insert(tenant);
                }
                results.push(Err(refusal));
            }
        }
    }
    Ok(results)
}

/// The epoch of every shard a group touches: read (on PostgreSQL, locked) once per group, then
/// kept up to date by the group's own `RaiseFence` jobs as they come, so a job is checked
/// against exactly what a check in its own turn would have read.
#[derive(Debug, Clone)]
pub(crate) struct Fences {
    /// The shards, ascending (a group touches a few: a search along sorted vectors, built
    /// with two allocations, not a map's).
    shards: Vec<u32>,
    /// Each shard's epoch, in the order of `shards`.
    epochs: Vec<u64>,
}

impl Fences {
    /// Reads the epoch of each shard `group` touches, in ascending shard order (PostgreSQL
    /// locks the rows in that order, so two writers never wait on each other crosswise).
    /// `epochs_of` gets the shards ascending and gives their epochs in that order.
    pub(crate) fn read<E>(
        group: &[Job],
        epochs_of: impl FnOnce(&[u32]) -> Result<Vec<u64>, E>,
    ) -> Result<Fences, E> {
        let shards = Self::shards_of(group);
        let epochs = epochs_of(&shards)?;
        Ok(Fences::new(shards, epochs))
    }

    /// The shards `group` touches, ascending, each once.
    pub(crate) fn shards_of(group: &[Job]) -> Vec<u32> {
        let mut shards: Vec<u32> = group.iter().filter_map(Job::fence).map(|f| f.shard).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    /// The fences read for `shards` (as [`Fences::shards_of`] gives them): `epochs` in order.
    pub(crate) fn new(shards: Vec<u32>, epochs: Vec<u64>) -> Fences {
        debug_assert_eq!(epochs.len(), shards.len(), "one epoch per shard");
        Fences { shards, epochs }
    }

    /// Whether the fast path ([`write_straight`]) would write every job of `group` under these
    /// fences: none is fenced off.
    pub(crate) fn admit_all(&self, group: &[Job]) -> bool {
        let mut fences = self.clone();
        let mut admission = Admission::new(&mut fences);
        group.iter().all(|job| admission.admit(job).is_ok())
    }

    /// Refuses a job whose epoch is older than its shard's; a `RaiseFence` raises it.
    pub(crate) fn admit(&mut self, job: &Job) -> Result<()> {
        let Some(fence) = job.fence() else { return Ok(()) };
        // Every shard of the group was read; a shard not read has no epoch yet.
        let current = slot(&mut self.shards, &mut self.epochs, fence.shard);
        if matches!(job, Job::RaiseFence { .. }) {
            *current = (*current).max(fence.epoch);
            return Ok(());
        }
        if *current > fence.epoch {
            return Err(Error::Fenced {
                shard: fence.shard,
                epoch: fence.epoch,
                current: *current,
            });
        }
        Ok(())
    }
}

/// The fast path, shared by both writers: jobs in order straight into the open transaction,
/// fenced ones refused without being written (and later jobs of their tenant after them).
/// `write` writes one job; `fatal` says which of its errors sink the whole group (the
/// database's own) rather than belong to the job. `Ok(None)` when a job failed partway: the
/// transaction holds part of it, so the caller rolls back and redoes the group one job at a
/// time.
pub(crate) fn write_straight<'g, E>(
    group: &'g [Job],
    fences: &mut Fences,
    mut write: impl FnMut(&'g Job) -> Result<Vec<u64>>,
    fatal: impl Fn(Error) -> Option<E>,
) -> Result<Option<Vec<Result<Vec<u64>>>>, E> {
    let mut admission = Admission::new(fences);
    let mut results = Vec::with_capacity(group.len());
    for job in group {
        if let Err(refused) = admission.admit(job) {
            results.push(Err(refused));
            continue;
        }
        match write(job) {
            Ok(positions) => results.push(Ok(positions)),
            Err(error) => {
                return match fatal(error) {
                    Some(error) => Err(error),
                    None => Ok(None),
                };
            }
        }
    }
    Ok(Some(results))
}

/// Which jobs of a group the fast path ([`write_straight`]) writes, in turn: not a fenced
/// one, nor any later job of its tenant. Kept apart so the PostgreSQL writer can know before
/// writing anything how many appends each shared stream gets ([`Heads::reserve`]).
struct Admission<'f, 'g> {
    fences: &'f mut Fences,
    refused: HashSet<&'g str>,
}

impl<'f, 'g> Admission<'f, 'g> {
    fn new(fences: &'f mut Fences) -> Self {
        Admission { fences, refused: HashSet::new() }
    }

    /// Admits `job` or gives its refusal (a `RaiseFence` admitted raises its shard's epoch).
    fn admit(&mut self, job: &'g Job) -> Result<()> {
        let tenant = job.tenant();
        if self.refused.contains(tenant) {
            return Err(Error::EarlierBatchFailed { tenant: tenant.to_owned() });
        }
        self.fences.admit(job).inspect_err(|_| {
            self.refused.insert(tenant);
        })
    }
}

/// The value of `key` in `values`, kept in the order of the ascending `keys`; inserted (a
/// default) if missing. [`Fences`] and [`Heads`] keep a group's few keys so.
fn slot<'v, K: Ord, V: Default>(keys: &mut Vec<K>, values: &'v mut Vec<V>, key: K) -> &'v mut V {
    let at = match keys.binary_search(&key) {
        Ok(at) => at,
        Err(at) => {
            keys.insert(at, key);
            values.insert(at, V::default());
            at
        }
    };
    &mut values[at]
}

/// The heads of the shared streams a group appends to (see "Streams with many writers" in
/// the crate docs): (tenant, stream) → the last position assigned. Read (on PostgreSQL,
/// locked) once per transaction in ascending (tenant, stream) order after the fences, kept
/// in memory while jobs are written (a job's positions are taken only once it is written, so
/// a refused job leaves no gap), and stored back before the commit where it differs from what
/// the database holds (on PostgreSQL's fast path, moved as it is locked: [`Heads::reserve`]).
/// Keyed by the group's own names (borrowed: a command appends about once to a shared
/// stream, and copying both names at each step cost a dozen allocations per command).
#[derive(Debug, Default)]
pub(crate) struct Heads<'g> {
    /// The (tenant, stream) pairs, ascending (sorted vectors: two allocations a group, where
    /// a map took one per stream).
    streams: Vec<(&'g str, &'g str)>,
    /// Each stream's head, in the order of `streams`.
    heads: Vec<Head>,
}

/// A shared stream's head within one transaction.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Head {
    /// The last position assigned.
    last: u64,
    /// What the transaction holds for it in the database so far: [`Heads::store`] writes
    /// `last` back only where the two differ.
    stored: u64,
}

impl<'g> Heads<'g> {
    /// Reads the head of every shared stream `group` appends to, in ascending order (so two
    /// PostgreSQL writers never wait on each other crosswise). `head_of` gives the stream's
    /// stored head, or adopts its last writer-numbered entry (0 if none).
    pub(crate) fn read<E>(
        group: &'g [Job],
        mut head_of: impl FnMut(&str, &str) -> Result<u64, E>,
    ) -> Result<Heads<'g>, E> {
        let streams = Self::streams_of(group);
        let heads = streams
            .iter()
            .map(|&(tenant, stream)| head_of(tenant, stream).map(|h| Head { last: h, stored: h }))
            .collect::<Result<_, E>>()?;
        Ok(Heads { streams, heads })
    }

    /// As [`Heads::read`], for the fast path ([`write_straight`]) under `fences` as read for
    /// the group: each stream's head is also moved, in the statement that reads it, past the
    /// appends the fast path will write to it. `reserve(tenant, stream, count)` moves the
    /// stored head by `count` and gives it as it was. If every admitted job is written (the
    /// fast path's only way to commit), the heads end where they were moved to, and
    /// [`Heads::store`] writes none: one statement per stream and commit, not two.
    pub(crate) fn reserve<E>(
        group: &'g [Job],
        fences: &Fences,
        mut reserve: impl FnMut(&str, &str, u64) -> Result<u64, E>,
    ) -> Result<Heads<'g>, E> {
        let wanted = Self::reservations(group, Some(fences));
        let lasts = wanted
            .iter()
            .map(|&(tenant, stream, count)| reserve(tenant, stream, count))
            .collect::<Result<Vec<u64>, E>>()?;
        Ok(Self::reserved(&wanted, &lasts))
    }

    /// What [`Heads::reserve`] moves: each stream `group` appends to (ascending) and the
    /// appends the fast path writes to it under `fences` (`None`: as if no shard had an epoch
    /// stored, so only a `RaiseFence` of the group fences a job off).
    pub(crate) fn reservations(
        group: &'g [Job],
        fences: Option<&Fences>,
    ) -> Vec<(&'g str, &'g str, u64)> {
        let streams = Self::streams_of(group);
        let mut counts = vec![0_u64; streams.len()];
        let mut fences = fences.cloned().unwrap_or_else(|| Fences::new(Vec::new(), Vec::new()));
        let mut admission = Admission::new(&mut fences);
        for job in group {
            // Every job goes through admission: a `RaiseFence` raises its shard's epoch for
            // the jobs after it. (A shard not read has epoch 0: nothing is fenced off.)
            let admitted = admission.admit(job).is_ok();
            let Job::Append { batch, .. } = job else { continue };
            if !admitted {
                continue;
            }
            for append in &batch.appends {
                let key = (batch.tenant.as_str(), append.stream.as_str());
                if let Ok(at) = streams.binary_search(&key) {
                    counts[at] += 1;
                }
            }
        }
        streams
            .into_iter()
            .zip(counts)
            .map(|((tenant, stream), count)| (tenant, stream, count))
            .collect()
    }

    /// The heads once `reservations` were moved, `lasts` each stream's head before.
    pub(crate) fn reserved(reservations: &[(&'g str, &'g str, u64)], lasts: &[u64]) -> Heads<'g> {
        debug_assert_eq!(reservations.len(), lasts.len(), "one head per stream");
        let streams = reservations.iter().map(|&(tenant, stream, _)| (tenant, stream)).collect();
        let heads = reservations
            .iter()
            .zip(lasts)
            .map(|(&(_, _, count), &last)| Head { last, stored: last + count })
            .collect();
        Heads { streams, heads }
    }

    /// The (tenant, stream) pairs `group` appends to, ascending, each once.
    fn streams_of(group: &'g [Job]) -> Vec<(&'g str, &'g str)> {
        let mut streams: Vec<(&str, &str)> = group
            .iter()
            .filter_map(|job| match job {
                Job::Append { batch, .. } => Some(batch),
                _ => None,
            })
            .flat_map(|batch| {
                batch.appends.iter().map(|a| (batch.tenant.as_str(), a.stream.as_str()))
            })
            .collect();
        streams.sort_unstable();
        streams.dedup();
        streams
    }

    /// Every stream's name and head, ascending.
    fn iter(&self) -> impl Iterator<Item = (&(&'g str, &'g str), &Head)> {
        self.streams.iter().zip(&self.heads)
    }

    /// The positions a job's appends get if it is written now, in order (empty for
    /// anything but an append). Takes nothing: see [`Heads::take`].
    pub(crate) fn assign(&self, job: &Job) -> Vec<u64> {
        let Job::Append { batch, .. } = job else { return Vec::new() };
        let head = |stream: &str| {
            let at = self.streams.binary_search(&(batch.tenant.as_str(), stream));
            at.map_or(0, |at| self.heads[at].last)
        };
        if let [append] = batch.appends.as_slice() {
            // Most batches append once: no table of next positions.
            return vec![head(&append.stream) + 1];
        }
        // A batch appends to a few streams: the next position of each, by a look along.
        let mut next: Vec<(&str, u64)> = Vec::with_capacity(batch.appends.len());
        batch
            .appends
            .iter()
            .map(|append| {
                let stream = append.stream.as_str();
                let at = match next.iter().position(|(s, _)| *s == stream) {
                    Some(at) => at,
                    None => {
                        next.push((stream, head(stream)));
                        next.len() - 1
                    }
                };
                next[at].1 += 1;
                next[at].1
            })
            .collect()
    }

    /// Takes the positions of a job that was written.
    pub(crate) fn take(&mut self, job: &'g Job, positions: &[u64]) {
        let Job::Append { batch, .. } = job else { return };
        for (append, &position) in batch.appends.iter().zip(positions) {
            // Every stream of the group was read; one not read starts from nothing.
            let key = (batch.tenant.as_str(), append.stream.as_str());
            let head = slot(&mut self.streams, &mut self.heads, key);
            head.last = head.last.max(position);
        }
    }

    /// Stores every head whose last position is not what the transaction holds for it.
    pub(crate) fn store<E>(
        &self,
        mut store: impl FnMut(&str, &str, u64) -> Result<(), E>,
    ) -> Result<(), E> {
        for (&(tenant, stream), head) in self.iter() {
            if head.last != head.stored {
                store(tenant, stream, head.last)?;
            }
        }
        Ok(())
    }
}

/// Writes one job, its fence already checked; `positions` are its appends' (see [`Heads`]).
/// Answers what the job's caller gets: an append's positions, a reservation's first number,
/// a binding's number, nothing for the rest.
fn write(hot: &mut Hot<'_>, job: &Job, positions: Vec<u64>, limits: Limits) -> Result<Vec<u64>> {
    let conn = hot.conn;
    match job {
        Job::Append { batch, .. } => {
            return write_batch(hot, batch, &positions).map(|()| positions);
        }
        Job::Reserve { tenant, counter, count, .. } => {
            return crate::numbers::sqlite_reserve(conn, tenant, counter, *count).map(|n| vec![n]);
        }
        Job::Bind { tenant, name, number, .. } => {
            return crate::numbers::sqlite_bind(conn, tenant, name, *number).map(|n| vec![n]);
        }
        Job::Snapshot { tenant, seq, bytes, .. } => {
            write_snapshot(conn, tenant, *seq, bytes, limits.request_retention_ms)?;
        }
        Job::RaiseFence { fence, .. } => {
            conn.prepare_cached(
                "INSERT INTO fences (shard, epoch) VALUES (?1, ?2)
                 ON CONFLICT (shard) DO UPDATE SET epoch = MAX(epoch, excluded.epoch)",
            )?
            .execute(params![fence.shard, ordered("fence epoch", fence.epoch)?])?;
        }
        Job::TrimStream { tenant, stream, keep_last, .. } => {
            if *keep_last == 0 {
                keep_head(conn, tenant, stream)?;
            }
            conn.prepare_cached(
                "DELETE FROM streams WHERE tenant = ?1 AND stream = ?2 AND seq <= (
                    SELECT seq FROM streams WHERE tenant = ?1 AND stream = ?2
                    ORDER BY seq DESC LIMIT 1 OFFSET ?3)",
            )?
            .execute(params![tenant, stream, count(*keep_last)])?;
        }
        Job::Retain { tenant, now_ms, streams_before_ms, .. } => {
            write_retain(conn, tenant, *now_ms, *streams_before_ms, limits.request_retention_ms)?;
        }
    }
    Ok(Vec::new())
}

/// Retention of one tenant (see `Store::retain`).
fn write_retain(
    conn: &Connection,
    tenant: &str,
    now_ms: u64,
    streams_before_ms: u64,
    retention_ms: i64,
) -> Result<()> {
    let now = bound(now_ms);
    // What is due, by index; then each of its transcript rows by index. Stream entries go by
    // age below, never by conversation (see `MIGRATE_V5`).
    conn.prepare_cached(
        "DELETE FROM messages WHERE tenant = ?1 AND conversation IN (
            SELECT conversation FROM archive WHERE tenant = ?1 AND purge_at_ms <= ?2)",
    )?
    .execute(params![tenant, now])?;
    conn.prepare_cached(
        "DELETE FROM conversation_owners WHERE tenant = ?1 AND conversation IN (
            SELECT conversation FROM archive WHERE tenant = ?1 AND purge_at_ms <= ?2)",
    )?
    .execute(params![tenant, now])?;
    // Actors' responses, once past the idempotency window.
    conn.prepare_cached("DELETE FROM responses WHERE tenant = ?1 AND at_ms < ?2")?
        .execute(params![tenant, now.saturating_sub(retention_ms)])?;
    conn.prepare_cached("DELETE FROM archive WHERE tenant = ?1 AND purge_at_ms <= ?2")?
        .execute(params![tenant, now])?;

    // Old stream entries: per stream (found by skipping through the primary key, not by
    // reading every entry), the entries before the first one at or after the bound.
    let before = bound(streams_before_ms);
    let names: Vec<String> = conn
        .prepare_cached(STREAM_NAMES)?
        .query_map([tenant], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for stream in names {
        let first_kept: Option<i64> = conn
            .prepare_cached(
                "SELECT seq FROM streams WHERE tenant = ?1 AND stream = ?2 AND at_ms >= ?3
                 ORDER BY seq LIMIT 1",
            )?
            .query_row(params![tenant, stream, before], |row| row.get(0))
            .optional()?;
        match first_kept {
            Some(first_kept) => conn
                .prepare_cached(
                    "DELETE FROM streams WHERE tenant = ?1 AND stream = ?2 AND seq < ?3",
                )?
                .execute(params![tenant, stream, first_kept])?,
            None => {
                keep_head(conn, tenant, &stream)?;
                conn.prepare_cached("DELETE FROM streams WHERE tenant = ?1 AND stream = ?2")?
                    .execute(params![tenant, stream])?
            }
        };
    }

    // Log records kept only to answer a repeated request, once past the window.
    let snapshot: Option<i64> = conn
        .prepare_cached("SELECT seq FROM snapshots WHERE tenant = ?1")?
        .query_row([tenant], |row| row.get(0))
        .optional()?;
    if let Some(snapshot) = snapshot {
        prune_log(conn, tenant, snapshot, now.saturating_sub(retention_ms))?;
    }
    Ok(())
}

/// The names of a tenant's streams, one index probe each (a loose index scan), in both
/// SQLite and PostgreSQL syntax.
pub(crate) const STREAM_NAMES: &str = "
WITH RECURSIVE names (stream) AS (
    SELECT MIN(stream) FROM streams WHERE tenant = $1
    UNION ALL
    SELECT (SELECT MIN(s.stream) FROM streams s WHERE s.tenant = $1 AND s.stream > names.stream)
    FROM names WHERE names.stream IS NOT NULL
)
SELECT stream FROM names WHERE stream IS NOT NULL";

/// Turns a primary-key violation into the caller's error; anything else stays a database error.
fn duplicate(error: rusqlite::Error, refusal: impl FnOnce() -> Error) -> Error {
    match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => refusal(),
        _ => Error::Sqlite(error),
    }
}

/// A shard's stored epoch (0 if none is stored). The single writer of a SQLite file never
/// races itself, so a plain read inside the transaction suffices.
fn read_fence(conn: &Connection, shard: u32) -> rusqlite::Result<u64> {
    let current: Option<i64> = conn
        .prepare_cached("SELECT epoch FROM fences WHERE shard = ?1")?
        .query_row(params![shard], |row| row.get(0))
        .optional()?;
    Ok(current.map_or(0, unsigned))
}

/// A shared stream's head: its last entry, or the stored head if that is later (the entries
/// up to it were deleted: [`keep_head`]); on its first store-assigned append the last
/// writer-numbered entry (0 if none), so numbering goes on after it. The single writer of a
/// SQLite file never races itself, so plain reads suffice.
///
/// On SQLite a commit stores no head: its entries are the head, found by the key's index
/// (the one read on a `HeadCache` miss). Storing each appended stream's head cost a
/// scattered row per stream per commit: an agent's desk is a stream of its own, so at 750
/// arrivals/s that was about 5% of the WAL's pages. PostgreSQL keeps storing them: its head
/// rows are also the locks that order writers on several nodes.
fn read_head(conn: &Connection, tenant: &str, stream: &str) -> rusqlite::Result<u64> {
    let stored: Option<i64> = conn
        .prepare_cached("SELECT head FROM stream_heads WHERE tenant = ?1 AND stream = ?2")?
        .query_row(params![tenant, stream], |row| row.get(0))
        .optional()?;
    let last: Option<i64> = conn
        .prepare_cached("SELECT MAX(seq) FROM streams WHERE tenant = ?1 AND stream = ?2")?
        .query_row(params![tenant, stream], |row| row.get(0))?;
    Ok(stored.max(last).map_or(0, unsigned))
}

/// Before a trim or retention deletes a stream's last entry: stores its position as the
/// stream's head (never lowering one stored), so no position is given twice.
fn keep_head(conn: &Connection, tenant: &str, stream: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO stream_heads (tenant, stream, head)
         SELECT tenant, stream, MAX(seq) FROM streams WHERE tenant = ?1 AND stream = ?2
         GROUP BY tenant, stream
         ON CONFLICT (tenant, stream) DO UPDATE SET head = MAX(head, excluded.head)",
    )?
    .execute(params![tenant, stream])?;
    Ok(())
}

/// Refuses a write whose epoch is older than its shard's.
fn check_fence(conn: &Connection, fence: Fence) -> Result<()> {
    let current = read_fence(conn, fence.shard)?;
    if current > fence.epoch {
        return Err(Error::Fenced { shard: fence.shard, epoch: fence.epoch, current });
    }
    Ok(())
}

/// The statements [`write_batch`] runs for every row, each taken from the connection's cache
/// once per group ([`Hot`]) rather than once per row.
#[derive(Clone, Copy, Debug)]
enum Stmt {
    Log,
    Stream,
    Message,
    Archive,
    Customer,
    PutActor,
    DeleteActor,
    Response,
    Owner,
}

impl Stmt {
    /// How many there are (`Owner` is the last).
    const COUNT: usize = Stmt::Owner as usize + 1;

    fn sql(self) -> &'static str {
        match self {
            Stmt::Log => {
                "INSERT INTO log (tenant, seq, at_ms, request_id, command, response)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            }
            Stmt::Stream => {
                "INSERT INTO streams (tenant, stream, seq, at_ms, payload, conversation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            }
            Stmt::Message => {
                "INSERT INTO messages (tenant, conversation, seq, at_ms, sender, text, kind)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            }
            Stmt::Archive => {
                "INSERT INTO archive
                    (tenant, conversation, customer, opened_at_ms, ended_at_ms, purge_at_ms, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (tenant, conversation) DO UPDATE SET
                    customer = excluded.customer, opened_at_ms = excluded.opened_at_ms,
                    ended_at_ms = excluded.ended_at_ms, purge_at_ms = excluded.purge_at_ms,
                    body = excluded.body"
            }
            Stmt::Customer => {
                "INSERT INTO customers (tenant, customer, body, remark_name, phone, email)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (tenant, customer) DO UPDATE SET body = excluded.body,
                    remark_name = excluded.remark_name, phone = excluded.phone,
                    email = excluded.email"
            }
            Stmt::PutActor => {
                "INSERT INTO actors (tenant, kind, actor_key, epoch, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, kind, actor_key) DO UPDATE SET
                    epoch = excluded.epoch, body = excluded.body"
            }
            Stmt::DeleteActor => {
                "DELETE FROM actors WHERE tenant = ?1 AND kind = ?2 AND actor_key = ?3"
            }
            Stmt::Response => {
                "INSERT INTO responses (tenant, request_id, at_ms, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, request_id) DO UPDATE SET at_ms = excluded.at_ms,
                    body = excluded.body
                 WHERE substr(excluded.body, 1, 1) <> x'FE'
                    OR (length(responses.body) >= 17
                        AND substr(responses.body, 1, 17) = substr(excluded.body, 1, 17))"
            }
            Stmt::Owner => {
                "INSERT INTO conversation_owners (tenant, conversation, customer)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (tenant, conversation) DO NOTHING"
            }
        }
    }
}

/// The statements of one group's rows, each taken from rusqlite's statement cache the first
/// time a row needs it and kept until the group is written. Taking a statement from that
/// cache hashes its SQL twice and copies it (about as much work as binding the row), and a
/// command writes about five rows.
struct Hot<'c> {
    conn: &'c Connection,
    taken: [Option<rusqlite::CachedStatement<'c>>; Stmt::COUNT],
}

impl<'c> Hot<'c> {
    fn new(conn: &'c Connection) -> Self {
        Hot { conn, taken: [const { None }; Stmt::COUNT] }
    }

    fn get(&mut self, which: Stmt) -> rusqlite::Result<&mut rusqlite::CachedStatement<'c>> {
        let slot = &mut self.taken[which as usize];
        let statement = match slot.take() {
            Some(statement) => statement,
            None => self.conn.prepare_cached(which.sql())?,
        };
        Ok(slot.insert(statement))
    }
}

/// One batch; its fence already checked, `positions` those of its appends. A command's log
/// record is its only row for idempotency too: `find_response` looks it up by request id.
fn write_batch(hot: &mut Hot<'_>, batch: &Batch, positions: &[u64]) -> Result<()> {
    let tenant = &batch.tenant;
    for record in &batch.log {
        let seq = ordered("log seq", record.seq)?;
        let at_ms = ordered("log at_ms", record.at_ms)?;
        hot.get(Stmt::Log)?
            .execute(params![
                tenant,
                seq,
                at_ms,
                record.request_id,
                record.command,
                record.response
            ])
            .map_err(|e| {
                duplicate(e, || Error::DuplicateLogRecord {
                    tenant: tenant.clone(),
                    seq: record.seq,
                })
            })?;
    }
    for entry in &batch.streams {
        hot.get(Stmt::Stream)?
            .execute(params![
                tenant,
                entry.stream,
                ordered("stream seq", entry.seq)?,
                ordered("stream at_ms", entry.at_ms)?,
                entry.payload,
                entry.conversation.map(id)
            ])
            .map_err(|e| {
                duplicate(e, || Error::DuplicateStreamEntry {
                    tenant: tenant.clone(),
                    stream: entry.stream.clone(),
                    seq: entry.seq,
                })
            })?;
    }
    for (append, &position) in batch.appends.iter().zip(positions) {
        hot.get(Stmt::Stream)?
            .execute(params![
                tenant,
                append.stream,
                ordered("stream seq", position)?,
                ordered("stream at_ms", append.at_ms)?,
                append.payload,
                append.conversation.map(id)
            ])
            .map_err(|e| {
                duplicate(e, || Error::MixedStream {
                    tenant: tenant.clone(),
                    stream: append.stream.clone(),
                    seq: position,
                })
            })?;
    }
    for message in &batch.messages {
        hot.get(Stmt::Message)?
            .execute(params![
                tenant,
                id(message.conversation),
                ordered("message seq", message.seq)?,
                ordered("message at_ms", message.at_ms)?,
                message.sender,
                message.text,
                message.kind
            ])
            .map_err(|e| {
                duplicate(e, || Error::DuplicateMessage {
                    tenant: tenant.clone(),
                    conversation: message.conversation,
                    seq: message.seq,
                })
            })?;
    }
    for &conversation in &batch.purge_conversations {
        hot.conn
            .prepare_cached("DELETE FROM messages WHERE tenant = ?1 AND conversation = ?2")?
            .execute(params![tenant, id(conversation)])?;
    }
    for archived in &batch.archive {
        hot.get(Stmt::Archive)?.execute(params![
            tenant,
            ordered("archived conversation", archived.conversation)?,
            archived.customer,
            ordered("archived opened_at_ms", archived.opened_at_ms)?,
            ordered("archived ended_at_ms", archived.ended_at_ms)?,
            ordered("archived purge_at_ms", archived.purge_at_ms)?,
            archived.body
        ])?;
    }
    for customer in &batch.customers {
        hot.get(Stmt::Customer)?.execute(params![
            tenant,
            customer.customer,
            customer.body,
            customer.contact.remark_name,
            customer.contact.phone,
            customer.contact.email
        ])?;
    }
    for actor in &batch.actors {
        match &actor.body {
            Some(body) => hot.get(Stmt::PutActor)?.execute(params![
                tenant,
                actor.kind,
                actor.key,
                ordered("actor epoch", actor.epoch)?,
                body
            ])?,
            None => hot.get(Stmt::DeleteActor)?.execute(params![tenant, actor.kind, actor.key])?,
        };
    }
    for response in &batch.responses {
        hot.get(Stmt::Response)?.execute(params![
            tenant,
            response.request_id,
            ordered("response at_ms", response.at_ms)?,
            response.body
        ])?;
    }
    for owner in &batch.owners {
        hot.get(Stmt::Owner)?.execute(params![
            tenant,
            ordered("owned conversation", owner.conversation)?,
            ordered("owning customer", owner.customer)?
        ])?;
    }
    Ok(())
}

/// Stores a snapshot and drops the log records it replaces, except those still needed to
/// answer a repeated request: records up to the snapshot go if they carry no request id, or
/// once they are older than the window.
fn write_snapshot(
    conn: &Connection,
    tenant: &str,
    seq: u64,
    bytes: &[u8],
    retention_ms: i64,
) -> Result<()> {
    let seq_sql = ordered("snapshot seq", seq)?;
    let stored: Option<i64> = conn
        .prepare_cached("SELECT seq FROM snapshots WHERE tenant = ?1")?
        .query_row([tenant], |row| row.get(0))
        .optional()?;
    if let Some(stored) = stored.filter(|&stored| stored > seq_sql) {
        return Err(Error::StaleSnapshot {
            tenant: tenant.to_owned(),
            seq,
            stored: unsigned(stored),
        });
    }
    conn.prepare_cached(
        "INSERT INTO snapshots (tenant, seq, bytes) VALUES (?1, ?2, ?3)
         ON CONFLICT (tenant) DO UPDATE SET seq = excluded.seq, bytes = excluded.bytes",
    )?
    .execute(params![tenant, seq_sql, bytes])?;
    // "Now" is the tenant's newest record (read before any goes), so no clock is read here.
    let newest: Option<i64> = conn
        .prepare_cached("SELECT at_ms FROM log WHERE tenant = ?1 ORDER BY seq DESC LIMIT 1")?
        .query_row([tenant], |row| row.get(0))
        .optional()?;
    // Those without a request id: only the ones since the previous snapshot are left.
    conn.prepare_cached(
        "DELETE FROM log WHERE tenant = ?1 AND seq > ?2 AND seq <= ?3 AND request_id IS NULL",
    )?
    .execute(params![tenant, stored.unwrap_or(-1), seq_sql])?;
    if let Some(newest) = newest {
        prune_log(conn, tenant, seq_sql, newest.saturating_sub(retention_ms))?;
    }
    Ok(())
}

/// Deletes the log records up to `snapshot` older than `before_ms`. `at_ms` never decreases
/// along a tenant's log (the node's clock for a tenant never moves backwards), so those are
/// the records before the first that is not, found from the oldest without reading the rest:
/// each pass reads about what it deletes. (Were the times out of order, a record would only
/// be kept longer, never dropped early.)
fn prune_log(conn: &Connection, tenant: &str, snapshot: i64, before_ms: i64) -> Result<()> {
    let first_kept: Option<i64> = conn
        .prepare_cached(
            "SELECT seq FROM log WHERE tenant = ?1 AND at_ms >= ?2 ORDER BY seq LIMIT 1",
        )?
        .query_row(params![tenant, before_ms], |row| row.get(0))
        .optional()?;
    let up_to = first_kept.map_or(snapshot, |first| snapshot.min(first - 1));
    conn.prepare_cached("DELETE FROM log WHERE tenant = ?1 AND seq <= ?2")?
        .execute(params![tenant, up_to])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogRecord, StreamEntry};

    /// Commits `group` and answers its jobs, as [`drain`] does.
    fn commit_and_answer(
        conn: &mut Connection,
        cache: &mut HeadCache,
        group: Vec<Job>,
        limits: Limits,
        stats: &Counters,
    ) {
        let results = commit(conn, cache, &group, limits, stats);
        for (job, result) in group.into_iter().zip(results) {
            job.ack(result);
        }
    }

    /// Limits that put each job in a group of its own.
    const ONE_PER_GROUP: Limits = Limits {
        max_jobs: 1,
        max_bytes: 1 << 20,
        request_retention_ms: 0,
        linger: std::time::Duration::ZERO,
        linger_when: Linger::WhenBusy,
    };

    /// Limits that let a test's few jobs share a group, without lingering.
    const SIXTEEN_PER_GROUP: Limits = Limits { max_jobs: 16, ..ONE_PER_GROUP };

    /// Queues `jobs`, drains them all through `commit` on `conn`, and gives their outcomes.
    fn drain_all(
        conn: &mut Connection,
        jobs: Vec<(Job, oneshot::Receiver<Result<Vec<u64>>>)>,
        limits: Limits,
        stats: &Counters,
    ) -> Vec<Result<Vec<u64>>> {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut outcomes = Vec::new();
        for (job, done) in jobs {
            tx.send(job).unwrap();
            outcomes.push(done);
        }
        drop(tx);
        let mut cache = HeadCache::default();
        drain(&rx, limits, stats, &mut |group: &[Job]| {
            commit(conn, &mut cache, group, limits, stats)
        });
        outcomes.into_iter().map(|d| d.blocking_recv().unwrap()).collect()
    }

    fn append(tenant: &str, seq: u64) -> (Job, oneshot::Receiver<Result<Vec<u64>>>) {
        let (ack, done) = oneshot::channel();
        let batch = Batch {
            tenant: tenant.into(),
            log: vec![LogRecord { seq, ..LogRecord::default() }],
            streams: vec![StreamEntry { stream: "events".into(), seq, ..StreamEntry::default() }],
            ..Batch::default()
        };
        (Job::Append { batch, ack }, done)
    }

    fn log_seqs(conn: &Connection, tenant: &str) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT seq FROM log WHERE tenant = ?1 ORDER BY seq").unwrap();
        stmt.query_map([tenant], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
    }

    /// The groups `drain_sleeping` commits from two lone jobs under `when`: the first queued
    /// at the start, the second "arriving" while the writer lingers (the test's sleep queues
    /// it) or, if it never lingers, once the first group is committed. Gives the groups' sizes
    /// and the lingers slept.
    fn groups_of_two_lone_jobs(when: Linger) -> (Vec<usize>, Vec<std::time::Duration>) {
        let linger = std::time::Duration::from_millis(2);
        let limits = Limits { linger, linger_when: when, ..SIXTEEN_PER_GROUP };
        let (tx, rx) = std::sync::mpsc::channel();
        let (first, _first_done) = append("a", 1);
        let (second, _second_done) = append("a", 2);
        tx.send(first).unwrap();
        // Whichever comes first queues the second job and lets the queue close after it.
        let pending = std::cell::RefCell::new(Some((tx, second)));
        let arrive = || {
            if let Some((tx, job)) = pending.borrow_mut().take() {
                tx.send(job).unwrap();
            }
        };
        let (mut groups, mut slept) = (Vec::new(), Vec::new());
        let mut committer = |group: &[Job]| {
            groups.push(group.len());
            arrive();
            group.iter().map(|_| Ok(vec![])).collect()
        };
        let sleep = |d: std::time::Duration| {
            slept.push(d);
            arrive();
        };
        drain_sleeping(&rx, limits, &Counters::default(), &mut committer, sleep);
        (groups, slept)
    }

    /// PostgreSQL's rule (`Linger::Always`): a lone first job waits the linger, and what
    /// comes meanwhile shares its commit. SQLite's (`Linger::WhenBusy`): a lone job after
    /// a lone group commits at once, alone.
    #[test]
    fn an_always_lingering_writer_gathers_what_comes_after_a_lone_job() {
        let (groups, slept) = groups_of_two_lone_jobs(Linger::Always);
        assert_eq!(groups, [2], "the second job shares the first's commit");
        assert_eq!(slept.len(), 1, "one sleep for the whole linger");
        assert!(slept[0] <= std::time::Duration::from_millis(2));
        let (groups, slept) = groups_of_two_lone_jobs(Linger::WhenBusy);
        assert_eq!(groups, [1, 1], "each lone job commits alone");
        assert!(slept.is_empty(), "no linger after a lone group");
    }

    /// A store-assigned append to `stream` (shared).
    fn shared(stream: &str) -> (Job, oneshot::Receiver<Result<Vec<u64>>>) {
        let (ack, done) = oneshot::channel();
        let append = crate::Append { stream: stream.into(), ..crate::Append::default() };
        let batch = Batch { tenant: "a".into(), appends: vec![append], ..Batch::default() };
        (Job::Append { batch, ack }, done)
    }

    /// The writer's cache of shared streams' heads gives the next position after its own
    /// commits without reading, and after another connection's commits (a second process on
    /// the file) reads again: positions never repeat, and no group is redone.
    #[test]
    fn cached_heads_follow_another_writer_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let (mut mine, mut theirs) = (
            crate::schema::open_writer(&path).unwrap(),
            crate::schema::open_writer(&path).unwrap(),
        );
        let (mut my_cache, mut their_cache) = (HeadCache::default(), HeadCache::default());
        let limits = SIXTEEN_PER_GROUP;
        let stats = Counters::default();
        let write = |conn: &mut Connection, cache: &mut HeadCache| {
            let (job, done) = shared("desk");
            commit_and_answer(conn, cache, vec![job], limits, &stats);
            done.blocking_recv().unwrap().unwrap()
        };
        assert_eq!(write(&mut mine, &mut my_cache), [1]);
        assert_eq!(write(&mut mine, &mut my_cache), [2]);
        assert_eq!(my_cache.get("a", "desk"), Some(2));
        assert_eq!(write(&mut theirs, &mut their_cache), [3]);
        assert_eq!(write(&mut mine, &mut my_cache), [4], "read again after the other's write");
        assert_eq!(write(&mut theirs, &mut their_cache), [5]);
        // A stale head would still not repeat a position (the entry's key refuses it, and
        // the group is redone reading the heads), but it would cost that redo.
        assert_eq!(stats.redone_commits.load(Ordering::Relaxed), 0, "no cached head was stale");
        my_cache.clear();
        assert!(my_cache.heads.is_empty() && my_cache.count == 0 && my_cache.version.is_none());
        assert_eq!(write(&mut mine, &mut my_cache), [6]);
    }

    /// PostgreSQL's fast path moves each shared stream's head as it locks it, by the appends
    /// of the jobs the fast path will write (not a fenced job's, nor its tenant's after it;
    /// a `RaiseFence` in the group counts from its turn on): once those are written the
    /// heads need no second write. The plain read leaves every moved head to be stored.
    #[test]
    fn reserved_heads_count_only_what_the_fast_path_writes() {
        let job = |tenant: &str, streams: &[&str], fence| {
            let (ack, _) = oneshot::channel();
            let appends = streams
                .iter()
                .map(|s| crate::Append { stream: (*s).into(), ..crate::Append::default() })
                .collect();
            let batch = Batch { tenant: tenant.into(), appends, fence, ..Batch::default() };
            Job::Append { batch, ack }
        };
        let (old, new) = (Fence { shard: 7, epoch: 10 }, Fence { shard: 7, epoch: 12 });
        let other = Fence { shard: 8, epoch: 0 };
        let (ack, _) = oneshot::channel();
        let group = vec![
            job("a", &["desk"], old),
            Job::RaiseFence { fence: new, ack },
            job("a", &["desk", "events"], old), // fenced off by the raise before it
            job("a", &["desk"], new),           // refused: after its tenant's fenced job
            job("b", &["desk", "events", "desk"], other),
            job("c", &["events"], new),
        ];
        let epochs = |shards: &[u32]| shards.iter().map(|&s| if s == 7 { 10 } else { 0 }).collect();
        let fences = Fences::read(&group, |shards| Ok::<_, ()>(epochs(shards))).unwrap();
        let mut reserved = Vec::new();
        let mut heads = Heads::reserve(&group, &fences, |tenant, stream, count| {
            reserved.push((tenant.to_owned(), stream.to_owned(), count));
            Ok::<_, ()>(5)
        })
        .unwrap();
        let want = [("a", "desk", 1), ("a", "events", 0), ("b", "desk", 2), ("b", "events", 1)];
        let want: Vec<_> = want
            .iter()
            .chain(&[("c", "events", 1)])
            .map(|&(t, s, n)| (t.to_owned(), s.to_owned(), n))
            .collect();
        assert_eq!(reserved, want, "ascending, counting only what is written");

        type Stored = Vec<(String, String, u64)>;
        fn fast_path<'g>(
            group: &'g [Job],
            fences: &Fences,
            heads: &mut Heads<'g>,
        ) -> (Vec<Result<Vec<u64>>>, Stored) {
            let mut fences = fences.clone();
            let written = write_straight(
                group,
                &mut fences,
                |job| {
                    let positions = heads.assign(job);
                    heads.take(job, &positions);
                    Ok(positions)
                },
                |_| None::<()>,
            );
            let results = written.unwrap().unwrap();
            let mut stored = Vec::new();
            heads
                .store(|tenant, stream, head| {
                    stored.push((tenant.to_owned(), stream.to_owned(), head));
                    Ok::<_, ()>(())
                })
                .unwrap();
            (results, stored)
        }
        let (results, stored) = fast_path(&group, &fences, &mut heads);
        assert_eq!(results[0].as_ref().unwrap(), &[6]);
        assert!(matches!(results[2], Err(Error::Fenced { .. })), "{:?}", results[2]);
        assert!(matches!(results[3], Err(Error::EarlierBatchFailed { .. })), "{:?}", results[3]);
        assert_eq!(results[4].as_ref().unwrap(), &[6, 6, 7]);
        assert_eq!(results[5].as_ref().unwrap(), &[6]);
        assert_eq!(stored, [], "every head ended where it was moved to");

        let mut heads = Heads::read(&group, |_, _| Ok::<_, ()>(5)).unwrap();
        let (_, stored) = fast_path(&group, &fences, &mut heads);
        let moved = [("a", "desk", 6), ("b", "desk", 7), ("b", "events", 6), ("c", "events", 6)];
        let moved: Vec<_> =
            moved.iter().map(|&(t, s, n)| (t.to_owned(), s.to_owned(), n)).collect();
        assert_eq!(stored, moved, "read, not moved: every head the group moved is stored");

        // The pipelined start moves the heads before the fences are read, as if every job
        // were admitted; it keeps them only if the fences, once read, admit every job.
        // As if nothing were stored: here only the group's own raise fences a job off, so
        // the counts are those above.
        let all = Heads::reservations(&group, None);
        assert_eq!(
            all.iter().map(|&(t, s, n)| (t.to_owned(), s.to_owned(), n)).collect::<Vec<_>>(),
            want
        );
        assert!(!fences.admit_all(&group), "the old owner's jobs are fenced off");
        let admitted = [job("b", &["desk", "events", "desk"], other), job("c", &["events"], new)];
        let fences = Fences::read(&admitted, |shards| Ok::<_, ()>(epochs(shards))).unwrap();
        assert!(fences.admit_all(&admitted));
        let wanted = Heads::reservations(&admitted, None);
        assert_eq!(wanted, [("b", "desk", 2), ("b", "events", 1), ("c", "events", 1)]);
        let mut heads = Heads::reserved(&wanted, &[5, 8, 0]);
        let (results, stored) = fast_path(&admitted, &fences, &mut heads);
        assert_eq!(results[0].as_ref().unwrap(), &[6, 9, 7]);
        assert_eq!(results[1].as_ref().unwrap(), &[1]);
        assert_eq!(stored, [], "every head ended where the pipelined start moved it");
    }

    /// Driven directly so that the jobs are certainly in one commit.
    #[test]
    fn a_refused_batch_fails_alone_and_holds_back_its_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::schema::open_writer(&dir.path().join("t.db")).unwrap();
        let limits = SIXTEEN_PER_GROUP;
        let stats = Counters::default();

        let (first, done) = append("a", 1);
        let cache = &mut HeadCache::default();
        commit_and_answer(&mut conn, cache, vec![first], limits, &stats);
        done.blocking_recv().unwrap().unwrap();

        let (dup, dup_done) = append("a", 1);
        let (far, far_done) = append("b", u64::MAX);
        let (after_dup, after_dup_done) = append("a", 2);
        let (after_far, after_far_done) = append("b", 1);
        commit_and_answer(&mut conn, cache, vec![dup, far, after_dup, after_far], limits, &stats);

        let dup = dup_done.blocking_recv().unwrap();
        assert!(matches!(dup, Err(Error::DuplicateLogRecord { seq: 1, .. })), "{dup:?}");
        let far = far_done.blocking_recv().unwrap();
        assert!(matches!(far, Err(Error::OutOfRange { .. })), "{far:?}");
        // A duplicate holds nothing back (its number is durable); the refused batch does.
        after_dup_done.blocking_recv().unwrap().unwrap();
        let after_far = after_far_done.blocking_recv().unwrap();
        assert!(matches!(after_far, Err(Error::EarlierBatchFailed { .. })), "{after_far:?}");

        assert_eq!(log_seqs(&conn, "a"), vec![1, 2]);
        assert_eq!(log_seqs(&conn, "b"), Vec::<i64>::new());
        assert_eq!(stats.commits.load(Ordering::Relaxed), 2);
        assert_eq!(stats.batches.load(Ordering::Relaxed), 2);
        assert_eq!(stats.rejected_batches.load(Ordering::Relaxed), 3);
        assert_eq!(stats.redone_commits.load(Ordering::Relaxed), 1, "the refusals' commit");
    }

    /// One job per group, so the refused batch and the tenant's next one are certainly in
    /// different commits: the next is still refused (no gap in the log), until the tenant
    /// starts again from the refused sequence number. A duplicate holds nothing back.
    #[test]
    fn a_refusal_holds_back_its_tenant_in_later_groups_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::schema::open_writer(&dir.path().join("t.db")).unwrap();
        let limits = ONE_PER_GROUP;
        let stats = Counters::default();
        let (old, new) = (Fence { shard: 7, epoch: 10 }, Fence { shard: 7, epoch: 12 });
        let fenced = |tenant: &str, seq, fence| {
            let (job, done) = append(tenant, seq);
            let Job::Append { mut batch, ack } = job else { unreachable!() };
            batch.fence = fence;
            (Job::Append { batch, ack }, done)
        };
        let (raise_ack, raised) = oneshot::channel();
        let jobs = vec![
            fenced("a", 1, old),
            (Job::RaiseFence { fence: new, ack: raise_ack }, raised),
            fenced("a", 2, old), // 2: fenced off, nothing written
            fenced("a", 3, old), // 3: pipelined after it by the same owner, in a later commit
            append("b", 1),      // 4: other tenants go on
            fenced("a", 2, new), // 5: the new owner starts again from what is durable
            fenced("a", 3, new), // 6
            fenced("a", 3, new), // 7: a duplicate...
            fenced("a", 4, new), // 8: ...holds nothing back
        ];
        let got = drain_all(&mut conn, jobs, limits, &stats);
        assert!(got[0].is_ok() && got[1].is_ok(), "{got:?}");
        assert!(matches!(got[2], Err(Error::Fenced { .. })), "{:?}", got[2]);
        assert!(matches!(got[3], Err(Error::EarlierBatchFailed { .. })), "{:?}", got[3]);
        assert!(got[4].is_ok() && got[5].is_ok() && got[6].is_ok(), "{got:?}");
        assert!(matches!(got[7], Err(Error::DuplicateLogRecord { seq: 3, .. })), "{:?}", got[7]);
        assert!(got[8].is_ok(), "{:?}", got[8]);
        assert_eq!(log_seqs(&conn, "a"), vec![1, 2, 3, 4]);
    }

    /// A failed batch that carried a generation raises its tenant's generation before the
    /// next group: a later batch of the tenant under the old one is refused (it may rest on
    /// a message of the failed one), without raising it again; one under the new generation,
    /// one that carries none, and other tenants' batches are written.
    #[test]
    fn a_failed_batch_raises_its_tenants_generation_and_refuses_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::schema::open_writer(&dir.path().join("t.db")).unwrap();
        let limits = ONE_PER_GROUP;
        let stats = Counters::default();
        let (moved, kept) = (Fence { shard: 7, epoch: 10 }, Fence { shard: 8, epoch: 0 });
        let actor = |tenant: &str, fence, generation| {
            let (ack, done) = oneshot::channel();
            let row = crate::ActorState {
                kind: "conversation".into(),
                key: "k".into(),
                epoch: 0,
                body: Some(vec![1]),
            };
            let batch = Batch {
                tenant: tenant.into(),
                fence,
                actors: vec![row],
                generation,
                ..Batch::default()
            };
            (Job::Append { batch, ack }, done)
        };
        let (raise, raised) = oneshot::channel();
        let jobs = vec![
            (Job::RaiseFence { fence: Fence { shard: 7, epoch: 12 }, ack: raise }, raised),
            actor("a", moved, Some(0)), // 1: fenced off: a's generation becomes 1
            actor("a", kept, Some(0)),  // 2: stale
            actor("a", kept, Some(1)),  // 3: written
            actor("a", kept, None),     // 4: not checked
            actor("b", kept, Some(0)),  // 5: another tenant
        ];
        let got = drain_all(&mut conn, jobs, limits, &stats);
        assert!(got[0].is_ok(), "{:?}", got[0]);
        assert!(matches!(got[1], Err(Error::Fenced { .. })), "{:?}", got[1]);
        assert!(
            matches!(got[2], Err(Error::StaleGeneration { generation: 0, current: 1, .. })),
            "{:?}",
            got[2]
        );
        assert!(got[3].is_ok() && got[4].is_ok() && got[5].is_ok(), "{got:?}");
        assert_eq!(stats.generation("a"), 1, "a stale refusal raises nothing");
        assert_eq!(stats.generation("b"), 0);
    }

    /// A node fenced off while appending remembers the refusal; when it owns the tenant again
    /// later (a higher fence, after another node wrote on), it loads what is durable and
    /// appends after that, above the old refusal: that append is written, not held back
    /// forever (seen as a livelock in the paused-node cluster test). The other node is a
    /// second connection to the same database, used between this writer's jobs.
    #[test]
    fn an_old_refusal_does_not_hold_back_a_later_ownership() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = crate::schema::open_writer(&path).unwrap();
        let mut other = crate::schema::open_writer(&path).unwrap();
        let limits = ONE_PER_GROUP;
        let mine = Fence { shard: 7, epoch: 10 };
        let theirs = Fence { shard: 7, epoch: 12 };
        let mine_again = Fence { shard: 7, epoch: 14 };
        let fenced = |seq, fence| {
            let (job, done) = append("a", seq);
            let Job::Append { mut batch, ack } = job else { unreachable!() };
            batch.fence = fence;
            (Job::Append { batch, ack }, done)
        };
        let raise = |fence| {
            let (ack, done) = oneshot::channel();
            (Job::RaiseFence { fence, ack }, done)
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            let stats = Counters::default();
            drain(&rx, limits, &stats, &mut |group: &[Job]| {
                commit(&mut conn, &mut HeadCache::default(), group, limits, &stats)
            });
        });
        let run = |(job, done): (Job, oneshot::Receiver<Result<Vec<u64>>>)| {
            tx.send(job).unwrap();
            done.blocking_recv().unwrap()
        };
        run(fenced(1, mine)).unwrap();
        // The other node takes the shard over and writes on.
        let stats = Counters::default();
        let (job, done) = raise(theirs);
        commit_and_answer(&mut other, &mut HeadCache::default(), vec![job], limits, &stats);
        done.blocking_recv().unwrap().unwrap();
        let refused = run(fenced(2, mine));
        assert!(matches!(refused, Err(Error::Fenced { .. })), "{refused:?}");
        for seq in 2..=4 {
            let (job, done) = fenced(seq, theirs);
            commit_and_answer(&mut other, &mut HeadCache::default(), vec![job], limits, &stats);
            done.blocking_recv().unwrap().unwrap();
        }
        // This node owns it again: a higher fence, and it appends after what is durable.
        run(raise(mine_again)).unwrap();
        let again = run(fenced(5, mine_again));
        assert!(again.is_ok(), "{again:?}");
        drop(tx);
        writer.join().unwrap();
        assert_eq!(log_seqs(&other, "a"), vec![1, 2, 3, 4, 5]);
    }

    /// Reservations and bindings share a commit with the tenant's batches but are never held
    /// back by their refusals, nor hold them back.
    #[test]
    fn reservations_ride_a_commit_apart_from_the_tenants_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = crate::schema::open_writer(&dir.path().join("t.db")).unwrap();
        let limits = SIXTEEN_PER_GROUP;
        let stats = Counters::default();
        let sync = || std::sync::mpsc::sync_channel(1);
        let (raise_ack, raised) = oneshot::channel();
        let raise = Job::RaiseFence { fence: Fence { shard: 0, epoch: 5 }, ack: raise_ack };
        let (fenced, fenced_done) = append("a", 1); // epoch 0 < 5: refused
        let (r1_ack, r1) = sync();
        let (too_many_ack, too_many) = sync();
        let (bind_ack, bound) = sync();
        let (r2_ack, r2) = sync();
        let reserve = |count, ack| Job::Reserve {
            tenant: "a".into(),
            counter: "customer".into(),
            count,
            ack,
        };
        let group = vec![
            raise,
            fenced,
            reserve(3, r1_ack),
            reserve(u64::try_from(i64::MAX).unwrap(), too_many_ack),
            Job::Bind { tenant: "a".into(), name: "carol".into(), number: 1, ack: bind_ack },
            reserve(2, r2_ack),
        ];
        commit_and_answer(&mut conn, &mut HeadCache::default(), group, limits, &stats);
        raised.blocking_recv().unwrap().unwrap();
        let fenced = fenced_done.blocking_recv().unwrap();
        assert!(matches!(fenced, Err(Error::Fenced { .. })), "{fenced:?}");
        assert_eq!(r1.recv().unwrap().unwrap(), vec![1]);
        let refused = too_many.recv().unwrap();
        assert!(matches!(refused, Err(Error::Exhausted { .. })), "{refused:?}");
        assert_eq!(bound.recv().unwrap().unwrap(), vec![1]);
        assert_eq!(r2.recv().unwrap().unwrap(), vec![4], "the refused one took nothing");
        assert_eq!(stats.commits.load(Ordering::Relaxed), 1);
    }

    /// `EXPLAIN QUERY PLAN` of `sql`, one detail line per step.
    fn plan(conn: &Connection, sql: &str, params: &[rusqlite::types::Value]) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |row| row.get::<_, String>(3))
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
    }

    /// Listings and retention read by index, never the whole tenant (SQLite has no statistics
    /// to go by, so this pins the plans the `INDEXED BY` hints and query shapes ask for).
    #[test]
    fn archive_listings_and_retention_use_their_indexes() {
        use crate::ArchiveQuery;
        use crate::schema::{Param, archive_listing};
        use rusqlite::types::Value;

        let dir = tempfile::tempdir().unwrap();
        let conn = crate::schema::open_writer(&dir.path().join("t.db")).unwrap();
        let listing = |query: ArchiveQuery| {
            let (sql, params) = archive_listing('?', "acme", &query);
            let params: Vec<Value> = params
                .into_iter()
                .map(|p| match p {
                    Param::Text(t) => Value::Text(t),
                    Param::Int(i) => Value::Integer(i),
                })
                .collect();
            plan(&conn, &sql, &params)
        };
        let page = ArchiveQuery { limit: 10, ..ArchiveQuery::default() };
        let all = listing(page.clone());
        assert!(all.contains("INDEX sqlite_autoindex_archive_1"), "{all}");
        assert!(!all.contains("TEMP B-TREE"), "pages in key order, no sort: {all}");
        let customer = listing(ArchiveQuery {
            customer: Some("carol".into()),
            ended_from_ms: Some(5),
            ..page.clone()
        });
        assert!(customer.contains("INDEX archive_by_customer"), "{customer}");
        assert!(!customer.contains("TEMP B-TREE"), "{customer}");
        let ended = listing(ArchiveQuery { ended_before_ms: Some(5), ..page.clone() });
        assert!(ended.contains("INDEX archive_by_end (tenant=? AND ended_at_ms<?)"), "{ended}");

        let text = |s: &str| Value::Text(s.into());
        let due = plan(
            &conn,
            "DELETE FROM messages WHERE tenant = ?1 AND conversation IN (
                SELECT conversation FROM archive WHERE tenant = ?1 AND purge_at_ms <= ?2)",
            &[text("acme"), Value::Integer(5)],
        );
        assert!(due.contains("INDEX sqlite_autoindex_messages_1"), "{due}");
        assert!(due.contains("INDEX archive_by_purge"), "{due}");
        let names = plan(&conn, STREAM_NAMES, &[text("acme")]);
        assert!(!names.contains("SCAN streams"), "{names}");
        let first_kept = plan(
            &conn,
            "SELECT seq FROM streams WHERE tenant = ?1 AND stream = ?2 AND at_ms >= ?3
             ORDER BY seq LIMIT 1",
            &[text("acme"), text("events"), Value::Integer(5)],
        );
        assert!(first_kept.contains("INDEX sqlite_autoindex_streams_1"), "{first_kept}");

        // One row per command: a repeated request is found by the log's partial index, and
        // pruning walks the log from its oldest record.
        let answer = plan(
            &conn,
            "SELECT response FROM log WHERE tenant = ?1 AND request_id = ?2
             ORDER BY seq DESC LIMIT 1",
            &[text("acme"), text("req-1")],
        );
        assert!(answer.contains("INDEX log_by_request (tenant=? AND request_id=?)"), "{answer}");
        let oldest_kept = plan(
            &conn,
            "SELECT seq FROM log WHERE tenant = ?1 AND at_ms >= ?2 ORDER BY seq LIMIT 1",
            &[text("acme"), Value::Integer(5)],
        );
        assert!(oldest_kept.contains("INDEX sqlite_autoindex_log_1 (tenant=?)"), "{oldest_kept}");
        assert!(!oldest_kept.contains("TEMP B-TREE"), "{oldest_kept}");
    }
}
