//! The crate's one error type.

use std::sync::Arc;

/// Why a store operation failed.
///
/// Errors that concern one batch (a duplicate, a stale snapshot, a value out of range) refuse
/// that batch alone; the others committed with it are unaffected. An IO or database failure
/// fails every batch of the commit it hit, as [`Error::Commit`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database said no: IO, corruption, a locked file, a malformed query.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// The PostgreSQL server said no, or the connection to it failed.
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::Error),

    /// The data directory could not be created.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),

    /// The commit carrying the batch failed, so nothing of it is durable. Shared by every batch
    /// of that commit, hence the `Arc`.
    /// The inner error is the database's (`rusqlite::Error` or `postgres::Error`).
    #[error("commit failed: {0}")]
    Commit(#[source] Arc<dyn std::error::Error + Send + Sync>),

    /// A log record with this sequence number is already stored: the caller replayed or
    /// double-appended a command.
    #[error("tenant {tenant:?}: log record {seq} is already stored")]
    DuplicateLogRecord { tenant: String, seq: u64 },

    /// A stream entry with this sequence number is already stored.
    #[error("tenant {tenant:?}: stream {stream:?} entry {seq} is already stored")]
    DuplicateStreamEntry { tenant: String, stream: String, seq: u64 },

    /// A store-assigned append met a writer-numbered entry at the position it was given: the
    /// stream was written both ways (see "Streams with many writers" in the crate docs).
    #[error(
        "tenant {tenant:?}: stream {stream:?} already holds a writer-numbered entry {seq}; a stream takes either store-assigned appends or writer-numbered entries, never both"
    )]
    MixedStream { tenant: String, stream: String, seq: u64 },

    /// A transcript message with this sequence number is already stored.
    #[error("tenant {tenant:?}: conversation {conversation} message {seq} is already stored")]
    DuplicateMessage { tenant: String, conversation: u64, seq: u64 },

    /// PostgreSQL refused rows of several batches written in one statement (SQLSTATE class
    /// 23: a duplicate key). The writer redoes the group a job at a time, which names the
    /// batch with one of the errors above; this one never reaches a caller.
    #[error("rows written together were refused (SQLSTATE {0}); redone one batch at a time")]
    RowsRefused(String),

    /// A batch of the same tenant queued earlier in the same commit was refused; this one is
    /// refused too so that a tenant's log never has a hole in the middle.
    #[error("tenant {tenant:?}: an earlier batch in the same commit was refused")]
    EarlierBatchFailed { tenant: String },

    /// The writer raised the tenant's generation past the batch's: a batch it may have heard
    /// from failed, so what it holds may rest on a message that is not durable.
    #[error(
        "tenant {tenant:?}: written in generation {generation}, but a failed batch raised the \
         tenant to {current}; start again from what is durable"
    )]
    StaleGeneration { tenant: String, generation: u64, current: u64 },

    /// Storing this snapshot would replace a newer one, whose log records are already gone.
    #[error("tenant {tenant:?}: snapshot at {seq} is older than the stored one at {stored}")]
    StaleSnapshot { tenant: String, seq: u64, stored: u64 },

    /// A newer owner holds the shard: the writer lost it and must stop writing.
    #[error("shard {shard}: epoch {epoch} is fenced off by epoch {current}")]
    Fenced { shard: u32, epoch: u64, current: u64 },

    /// Sequence numbers and times are stored as signed 64-bit integers (SQLite and
    /// PostgreSQL alike).
    #[error("{what} {value} does not fit a signed 64-bit column")]
    OutOfRange { what: &'static str, value: u64 },

    /// The database was written by a newer build; refusing to guess at its layout.
    #[error("database schema version {found} is newer than this build understands ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },

    /// The file system refused WAL mode (some network file systems do); without it readers
    /// would block the writer.
    #[error("could not switch the database to WAL mode (journal_mode is {0:?})")]
    NotWal(String),

    /// The writer's connection runs with less than `synchronous=FULL`, which its VFS shim
    /// (`wal_vfs`) and every acknowledged write's durability rely on.
    #[error("the writer's connection must run with synchronous=FULL (it is {0})")]
    NotSynchronousFull(i64),

    /// The writer's VFS shim could not be registered with SQLite (its result code).
    #[error("could not register the writer's SQLite VFS (result code {0})")]
    Vfs(i32),

    /// A reservation of no numbers ([`crate::Store::reserve`] takes at least one).
    #[error("tenant {tenant:?}: a reservation of {counter:?} numbers must take at least one")]
    EmptyReservation { tenant: String, counter: String },

    /// The counter would pass the largest number a signed 64-bit column holds.
    #[error("tenant {tenant:?}: the {counter:?} counter is exhausted")]
    Exhausted { tenant: String, counter: String },

    /// [`crate::Store::bind_customer`] was given a number that another name holds (numbers
    /// come from the allocator, so this is the caller's bug).
    #[error("tenant {tenant:?}: number {number} is bound to another customer than {name:?}")]
    NumberTaken { tenant: String, name: String, number: u64 },

    /// The writer has stopped (the store was closed, or its thread died).
    #[error("the store is closed")]
    Closed,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
