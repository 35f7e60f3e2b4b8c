//! Switchboard's durable state.
//!
//! A node keeps each tenant's routing state in memory (`switchboard-core`'s `Engine`). This
//! crate is what makes that state survive the node: every accepted mutating command goes into
//! the tenant's **command log**; now and then the node stores a **snapshot** of the whole state,
//! which replaces the log records before it. On start-up the node [`loads`](Store::load) the
//! snapshot and replays the records after it.
//!
//! In the same atomic [`Batch`] as the log record go the command's visible consequences:
//! entries appended to **streams** (ordered per-tenant event lists that clients read from a
//! resume cursor, such as `agent/alice`, `outbox`, `events`), **transcript** messages, and the
//! deletion of transcripts whose retention has passed. A gRPC call is acknowledged only when
//! its batch is durable (synced to disk), so an acknowledged write survives a crash or a power
//! cut.
//!
//! Syncing once per call would cap a node at the disk's sync rate, so writes are **group
//! committed**: batches from concurrent callers that queue while one commit syncs all go into
//! the next commit, and share its sync.
//!
//! # Archive and retention
//!
//! An ended conversation leaves the node's memory for the **archive**: the batch of the
//! command that ended it carries an [`Archived`] row (an upsert by conversation, so the few
//! later changes an ended conversation takes rewrite it). It is read back by
//! [`Store::archived`], by paginated, indexed [`Store::list_archived`] queries (by customer,
//! by end time, in conversation order) and counted by [`Store::count_archived`].
//!
//! Retention is a store-side delete by time: [`Store::retain`], one fenced write, deletes the
//! archived conversations whose `purge_at_ms` has come together with their transcripts;
//! stream entries older than a bound (by age alone: the node passes its shortest transcript
//! retention, so no message text in a stream outlives its transcript, and no index by
//! conversation costs every stream entry a write); and log records kept for idempotency once
//! past the window.
//!
//! # Write path
//!
//! A command writes one log row, which also answers a repeated request id
//! ([`Store::find_response`], by index) until the idempotency window (`request_retention`,
//! 24 h by default) passes, even once a snapshot covers it; [`Store::load`] returns only the
//! records after the snapshot. Within a group commit, each shard's fence is checked once and
//! every batch goes straight into the transaction; only if a batch fails partway (a
//! duplicate, say) is the commit redone with one savepoint per batch, so that batch alone is
//! refused ([`Stats::redone_commits`]). `benches/append.rs` measures it. A writer whose last
//! group had company waits a little (`writer::COMMIT_LINGER`) for more batches before it
//! commits: under load, fewer and larger commits (each a sync and its pages); idle, none.
//!
//! # Streams with many writers
//!
//! A stream is one of two kinds, fixed by how it is written:
//!
//! - **single-writer** (today's every stream): one writer (the tenant's actor) numbers its
//!   entries itself ([`Batch::streams`], [`StreamEntry::seq`]) and commits them in order;
//! - **shared** (a tenant-wide `outbox` or `events` written by actors on several nodes): the
//!   writers send [`Batch::appends`] without a number and the store gives each the stream's
//!   next position when the batch commits; [`Store::append_assigned`] says which.
//!
//! Positions of a shared stream are gap-free and in commit order, whatever the number of
//! writers, nodes and stores over one database: a reader that has read up to a cursor never
//! later finds a new entry at or below it. On PostgreSQL the store keeps each shared
//! stream's last position in a head row (`stream_heads`), read once per commit (after the
//! fences) and locked until the commit, so a second writer's commit waits for the first's
//! to be visible before it numbers: commit order is position order. A group commit locks
//! each head once however many batches append to it, in ascending (tenant, stream) order
//! after the shard fences, so writers never wait on each other crosswise. It costs one
//! statement per shared stream per commit (an `UPDATE` that moves the head past the group's
//! appends as it locks it; a group redone a job at a time locks with `SELECT … FOR UPDATE`
//! and writes the heads back before COMMIT), and commits appending to the same shared
//! stream from two databases' writers serialise on its row. Trimming and retention leave
//! the head alone, so a position is never given twice.
//! On SQLite (one writer per file) the head is the stream's last entry, read only for a
//! stream the writer's last commits did not append to (`writer::HeadCache`), and a head row
//! is written only by a trim or retention pass that deletes a stream's last entry (it
//! stores that entry's position first). A batch's positions are taken only once it is
//! written, so a refused or fenced batch leaves no gap.
//!
//! Mixing: a stream's first store-assigned append starts numbering after its last
//! writer-numbered entry (so a stream can turn shared and its readers' cursors stay valid);
//! from then on it must take no writer-numbered entries. The store refuses a store-assigned
//! append whose position is already taken by one ([`Error::MixedStream`]; on SQLite, while
//! the writer still holds the stream's head: one started since numbers on after it); a
//! writer-numbered entry is not checked against the heads (that would cost a lookup on every
//! command), so which streams are shared is the node's to fix, one name list in one place
//! (`switchboard_node::state::SHARED_STREAMS`).
//!
//! [`SqliteStore`] is the embedded default (one file in the node's data directory).
//! [`PostgresStore`] is the cluster's: the same [`Store`] contract, the same tables, on a
//! PostgreSQL database that every node reaches. Both run the same test suite. Both bring an
//! older database up to [`SCHEMA_VERSION`] when they open it (1: log, snapshots, streams,
//! transcripts; 2: the archive and `streams.conversation`; 3: one row per command; 4:
//! customers' contact columns; 5: no index of stream entries by conversation; 6: actors'
//! durable state; 7: heads of shared streams; 8: the block allocator's counters and the
//! customers' numbers; 9: actors' responses by request id and the customers of
//! conversations actors opened).
//!
//! # Numbers
//!
//! A tenant served by actors names customers and conversations by numbers that no single
//! writer hands out: [`Store::reserve`] gives a node a block of a tenant-wide counter
//! (durable before it returns, never given twice), and [`Store::bind_customer`] binds a
//! customer's name to a number once, the earlier binding winning a race
//! ([`Store::customer_number`], [`Store::customer_name`] read it both ways). Counters and
//! bindings are kept while the tenant lives.
//!
//! ```no_run
//! # async fn demo() -> switchboard_store::Result<()> {
//! use switchboard_store::{Batch, LogRecord, SqliteOptions, SqliteStore, Store};
//!
//! let store = SqliteStore::open("/var/lib/switchboard".as_ref(), SqliteOptions::default())?;
//! let record = LogRecord {
//!     seq: 1,
//!     at_ms: 1_700_000_000_000,
//!     request_id: Some("req-1".into()),
//!     command: b"...".to_vec(),
//!     response: b"...".to_vec(),
//! };
//! store.append(Batch { tenant: "acme".into(), log: vec![record], ..Batch::default() }).await?;
//! let loaded = store.load("acme")?;
//! assert_eq!(loaded.log.len(), 1);
//! # Ok(())
//! # }
//! ```

/// [`Response::replaces`] as the `WHERE` of PostgreSQL's upsert of `responses` (the
/// conflicting row, `responses`, and the one proposed, `excluded`); one text for both of its
/// statements (`pg_writer`, `pg_rows`). SQLite's is in `writer.rs` (`x'FE'`: a BLOB literal
/// there, a bit string here). A stored prefix of 17 bytes equal to the new one's implies the
/// new body is that long too.
macro_rules! pg_response_replaces {
    () => {
        "substr(excluded.body, 1, 1) <> '\\xfe'::bytea
           OR (length(responses.body) >= 17
               AND substr(responses.body, 1, 17) = substr(excluded.body, 1, 17))"
    };
}

mod checkpoint;
mod error;
mod numbers;
mod pg_conn;
mod pg_rows;
mod pg_writer;
mod postgres;
mod schema;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
mod wal_vfs;
mod writer;

use std::future::Future;
use std::pin::Pin;

pub use error::{Error, Result};
pub use postgres::{PG_COMMIT_LINGER, PostgresOptions, PostgresStore};
pub use schema::SCHEMA_VERSION;
pub use sqlite::{DB_FILE, SqliteOptions, SqliteStore, Stats};

/// One durable append for one tenant: all of it or none of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub tenant: String,
    /// The shard and epoch the writer holds the tenant under; refused if the shard's stored
    /// epoch is newer ([`Error::Fenced`]). The single node writes the default, shard 0 epoch 0.
    pub fence: Fence,
    /// Usually zero or one record.
    pub log: Vec<LogRecord>,
    /// Entries appended to single-writer streams, numbered by their writer.
    pub streams: Vec<StreamEntry>,
    /// Entries appended to shared streams, numbered by the store at commit (see
    /// "Streams with many writers" in the crate docs). [`Store::append_assigned`] resolves with
    /// their positions, in this order. Applied after `streams`.
    pub appends: Vec<Append>,
    /// Transcript rows.
    pub messages: Vec<Message>,
    /// Conversations whose transcript rows are deleted, and nothing else of them. Applied after
    /// `messages`, so a conversation named here has no rows once the batch is durable.
    /// (Superseded by [`Store::retain`], which purges by `purge_at_ms` of the archive.)
    pub purge_conversations: Vec<u64>,
    /// Ended conversations to archive: each is an upsert by (tenant, conversation), the first
    /// write inserts it and a later one replaces every column. Applied after `messages` and
    /// `purge_conversations`.
    pub archive: Vec<Archived>,
    /// Customers the node moved out of memory: each an upsert by (tenant, customer).
    pub customers: Vec<CustomerRecord>,
    /// Durable state of the node's actors (conversation and router actors, issue 12): each
    /// an upsert by (tenant, kind, key), or a delete when `body` is `None`. Applied last, so
    /// an actor's state and the outbox it holds are durable in the same commit as the rest.
    pub actors: Vec<ActorState>,
    /// Responses of calls an actor answered in this batch's step (issue 12, per-actor
    /// idempotency): each an upsert by (tenant, request id). Only the actor that applied the
    /// call writes its request id again: a response it held for the router's answer, stored
    /// once as its own step rendered it and again as answered.
    pub responses: Vec<Response>,
    /// Conversations opened in this batch's step by a conversation actor, with the customer
    /// (number) that holds them: each an insert by (tenant, conversation), an existing one kept.
    pub owners: Vec<ConversationOwner>,
    /// The tenant's generation on this store's writer ([`Store::generation`]) that the
    /// writing actor's incarnation started in, if it may have applied messages sent before
    /// their batch was durable; refused ([`Error::StaleGeneration`]) once the writer has
    /// raised the tenant's generation past it. `None`: not checked.
    pub generation: Option<u64>,
}

/// The response an actor gave to a mutating call that carried a request id, written in the
/// batch of the step that answered it (schema version 9). [`Store::actor_response`] finds it
/// until `request_retention` after `at_ms`; [`Store::retain`] deletes it after that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub request_id: String,
    pub at_ms: u64,
    /// Opaque to the store (the node's encoding of the response), except a *kept call*: a
    /// body that starts with [`Response::KEPT_CALL`] and then [`Response::CALL_LEN`] bytes
    /// naming the call it answers ([`Response::replaces`]).
    pub body: Vec<u8>,
}

impl Response {
    /// The first byte of a body that names the call it answers.
    pub const KEPT_CALL: u8 = 0xFE;
    /// How many bytes after [`Response::KEPT_CALL`] name the call.
    pub const CALL_LEN: usize = 16;

    /// Whether a response with body `new` written under a request id replaces `stored`, the
    /// one kept under it: not when `new` is a kept call and `stored` does not answer that
    /// same call. A request id reused by another call whose actor could not look it up
    /// first (a customer's first conversation actor) then keeps the first call's answer, so
    /// the first call's retry is still answered with it; an actor writing its own answer
    /// again (one it held for the router's answer) replaces it as before.
    pub fn replaces(stored: &[u8], new: &[u8]) -> bool {
        let call = ..1 + Self::CALL_LEN;
        new.first() != Some(&Self::KEPT_CALL)
            || stored.get(call).is_some_and(|asked| new.starts_with(asked))
    }
}

/// Which customer (by number) a conversation opened by a conversation actor belongs to, so a
/// call naming the conversation finds the customer's actor (schema version 9). Deleted by
/// [`Store::retain`] with the conversation's archive row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConversationOwner {
    pub conversation: u64,
    pub customer: u64,
}

/// The durable state of one actor: whatever it needs to survive a crash (for the mesh sides,
/// their snapshot encoding with the outbox and inbox numbers), opaque to the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActorState {
    /// The actor's kind (`"router"`, `"conversation"`).
    pub kind: String,
    /// Its key within the tenant and kind (a customer's number, or empty for the router).
    pub key: String,
    /// The incarnation that wrote it: the next activation takes a larger one. (The write
    /// itself is fenced by the batch's [`Fence`].)
    pub epoch: u64,
    /// The state; `None` deletes the row (the actor's work is over).
    pub body: Option<Vec<u8>>,
}

/// A customer the node keeps out of memory while it has nothing open: written when it leaves
/// memory, read back when a command names it again. Kept until the tenant deletes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerRecord {
    /// The customer's id (caller-chosen name).
    pub customer: String,
    /// Opaque to the store (the node's encoding of the customer).
    pub body: Vec<u8>,
    /// Contact data, indexed where set for [`Store::find_customers`].
    pub contact: Contact,
}

/// A stored customer's contact data (empty: not set, and not indexed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contact {
    pub remark_name: String,
    pub phone: String,
    pub email: String,
}

/// Which contact field a [`Store::find_customers`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactField {
    RemarkName,
    Phone,
    Email,
}

impl ContactField {
    pub(crate) fn column(self) -> &'static str {
        match self {
            ContactField::RemarkName => "remark_name",
            ContactField::Phone => "phone",
            ContactField::Email => "email",
        }
    }
}

/// An ended conversation as the node archived it: written when it ends, rewritten by the few
/// changes an ended conversation still takes (rating, tags, note), deleted at `purge_at_ms`
/// with its transcript.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archived {
    pub conversation: u64,
    /// The customer's id (caller-chosen name), for history by customer.
    pub customer: String,
    pub opened_at_ms: u64,
    pub ended_at_ms: u64,
    /// When retention deletes it and its transcript rows.
    pub purge_at_ms: u64,
    /// Opaque to the store (the node's encoding of the conversation).
    pub body: Vec<u8>,
}

/// Which archived conversations a listing wants, in ascending conversation order.
///
/// Cost: with `customer` set, the listing walks that customer's conversations in order
/// (index `(tenant, customer, conversation)`); else with an `ended_*` bound, the conversations
/// that ended in that range (index `(tenant, ended_at_ms)`), sorted, keeping `limit`; else the
/// tenant's conversations in order from `after_conversation` (primary key). `opened_before_ms`
/// only filters what one of those walks finds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Only this customer's, if set.
    pub customer: Option<String>,
    /// Only those that ended at or after this time / before this time (ms), if set.
    pub ended_from_ms: Option<u64>,
    pub ended_before_ms: Option<u64>,
    /// Only those opened at or before this time (ms), if set (waits that entered in a window).
    pub opened_before_ms: Option<u64>,
    /// Page token: conversations with a larger id only.
    pub after_conversation: u64,
    pub limit: usize,
}

/// A bounded walk over archived conversations, newest (largest id) first, for searches whose
/// other conditions the caller checks itself.
///
/// Cost: one call reads at most `window` entries of one index below `before_conversation`:
/// that customer's conversations (index `(tenant, customer, conversation)`) when `customer`
/// is set, else the tenant's (primary key). The time bounds only filter what the window
/// holds, except that a window reaching conversations opened before `opened_from_ms` ends
/// the walk: a tenant's conversation ids grow with its clock, so every smaller id opened
/// earlier still.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveScan {
    /// Only this customer's, if set.
    pub customer: Option<String>,
    /// Continuation: only conversations with a smaller id (`u64::MAX` from the newest).
    pub before_conversation: u64,
    /// Bounds (ms), each if set: opened at or after / before, ended at or after / before.
    pub opened_from_ms: Option<u64>,
    pub opened_before_ms: Option<u64>,
    pub ended_from_ms: Option<u64>,
    pub ended_before_ms: Option<u64>,
    /// Index entries read at most.
    pub window: usize,
    /// Matches returned at most.
    pub limit: usize,
}

/// What one [`ArchiveScan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveWindow {
    /// Matches, descending by conversation.
    pub rows: Vec<Archived>,
    /// Every match with an id in `[resume_before, before_conversation)` is in `rows`; the
    /// next call continues with `before_conversation = resume_before`. `None`: nothing below.
    pub resume_before: Option<u64>,
}

/// A fencing token: the shard a tenant lives in and the epoch under which the writer owns it.
/// In a cluster the epoch is the create revision of the shard's ownership key in etcd, so a
/// later owner always holds a larger one. [`Store::raise_fence`] records a new owner's epoch;
/// from then on every write carrying an older epoch for that shard is refused, atomically with
/// the write itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Fence {
    pub shard: u32,
    pub epoch: u64,
}

/// One accepted mutating command and what the node answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRecord {
    /// Position in the tenant's log; unique per tenant.
    pub seq: u64,
    pub at_ms: u64,
    /// The caller's idempotency key: the record (and so its response) is kept for
    /// [`Store::find_response`] until the idempotency window passes, even once a snapshot
    /// covers it.
    pub request_id: Option<String>,
    pub command: Vec<u8>,
    pub response: Vec<u8>,
}

/// One entry of a tenant's stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamEntry {
    pub stream: String,
    /// Position in the stream; unique per (tenant, stream). Readers resume after it.
    pub seq: u64,
    pub at_ms: u64,
    pub payload: Vec<u8>,
    /// The conversation the entry is about, if any: [`Store::retain`] deletes it with that
    /// conversation's archive row, so no message text outlives its transcript.
    pub conversation: Option<u64>,
}

/// One entry for a shared stream: the store gives it the stream's next position when the
/// batch commits (see "Streams with many writers" in the crate docs). Read back as a
/// [`StreamEntry`] whose `seq` is that position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Append {
    pub stream: String,
    pub at_ms: u64,
    pub payload: Vec<u8>,
    /// As [`StreamEntry::conversation`].
    pub conversation: Option<u64>,
}

/// One transcript row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub conversation: u64,
    /// Position in the conversation; unique per (tenant, conversation).
    pub seq: u64,
    pub at_ms: u64,
    pub sender: String,
    pub text: String,
    pub kind: String,
}

/// What a tenant restarts from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The latest snapshot: its sequence number and bytes.
    pub snapshot: Option<(u64, Vec<u8>)>,
    /// Log records after the snapshot, ascending by `seq`.
    pub log: Vec<LogRecord>,
}

/// A write in flight. It is queued when the method that returns it returns (so writes are
/// committed in call order even if the futures are awaited later), and resolves once it is
/// durable or refused. Dropping it does not cancel the write.
pub type Pending = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A write in flight that resolves with the positions the store assigned to its batch's
/// [`Batch::appends`], in their order. Queued like [`Pending`].
pub type Assigned = Pin<Box<dyn Future<Output = Result<Vec<u64>>> + Send>>;

/// Durable state of every tenant on a node. Object safe: hold it as `Arc<dyn Store>`.
///
/// Writes return [`Pending`]; reads are short and synchronous (call them from
/// `spawn_blocking` if a read may be large).
///
/// After any write error the caller must treat the tenant's in-memory state as suspect and
/// reload it with [`Store::load`]; later writes of the tenant may already be queued and
/// would otherwise leave a gap in its log.
pub trait Store: Send + Sync + 'static {
    /// Appends a batch. Resolves `Ok` only once it is durable; group-committed with concurrent
    /// appends. A duplicate (tenant, seq) in the log, a stream or a transcript refuses the
    /// whole batch.
    fn append(&self, batch: Batch) -> Pending;

    /// [`Store::append`], resolving with the positions assigned to `batch.appends` (in their
    /// order) once durable: what a writer publishes live. Refused as a whole like `append`.
    fn append_assigned(&self, batch: Batch) -> Assigned;

    /// Stores the tenant's snapshot taken after log record `seq`, atomically with dropping
    /// the log records it replaces: [`Store::load`] returns only records after `seq` from then
    /// on. Records up to `seq` without a request id are deleted; those with one are kept to
    /// answer [`Store::find_response`] until they are older than the idempotency window
    /// (`request_retention`) before the tenant's newest record. Refuses a snapshot older than
    /// the stored one, and one whose fence is older than the shard's.
    fn snapshot(&self, tenant: &str, fence: Fence, seq: u64, bytes: Vec<u8>) -> Pending;

    /// Records that `fence.epoch` now owns `fence.shard`: every later write with an older
    /// epoch for the shard is refused. Never lowers the stored epoch.
    fn raise_fence(&self, fence: Fence) -> Pending;

    /// Deletes all but the newest `keep_last` entries of a stream, to bound its size.
    fn trim_stream(&self, tenant: &str, stream: &str, keep_last: usize) -> Pending;

    /// Tenants that have a log record or a snapshot, sorted.
    fn tenants(&self) -> Result<Vec<String>>;

    /// Whether the tenant has a log record or a snapshot (it was created): a primary-key
    /// probe of each table, without reading either.
    fn tenant_exists(&self, tenant: &str) -> Result<bool>;

    /// The latest snapshot and the log records after it, read consistently.
    fn load(&self, tenant: &str) -> Result<Loaded>;

    /// Up to `limit` entries of a stream with `seq > after_seq`, ascending.
    fn read_stream(
        &self,
        tenant: &str,
        stream: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<StreamEntry>>;

    /// The highest stored `seq` of a stream, if it has any entry left.
    fn last_stream_seq(&self, tenant: &str, stream: &str) -> Result<Option<u64>>;

    /// Up to `limit` transcript rows of a conversation with `seq > after_seq`, ascending.
    fn messages(
        &self,
        tenant: &str,
        conversation: u64,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>>;

    /// The idempotency window: how long [`Store::find_response`] answers for a request id
    /// at least (`request_retention` of the store's options).
    fn request_retention(&self) -> std::time::Duration;

    /// What the store's writer has done since it opened (commits, batches, ...), for the
    /// node's `/metrics`.
    fn stats(&self) -> Stats;

    /// The tenant's generation on this store's writer: raised whenever a batch that carried
    /// a generation fails (refused, or its commit failed), before the writer looks at the
    /// next job, and never lowered. An actor that may hear messages sent before they were
    /// durable reads it when it starts and writes under it ([`Batch::generation`]): once a
    /// batch it may have heard from fails, its own are refused, and it starts again from
    /// what is durable. Held in memory: a new process starts every tenant at 0.
    ///
    /// `None`: this store cannot vouch that writes are committed in the order they were
    /// queued, nor that every failure raises the generation (a wrapper that refuses or
    /// delays batches on its own, in tests): nothing may be sent before it is durable.
    fn generation(&self, tenant: &str) -> Option<u64>;

    /// The response stored with the log record that carried `request_id` (the newest such
    /// record, if the id was reused), if it is still within the idempotency window:
    /// `request_retention` of the store's options, 24 h by default. A record past the window
    /// may or may not have been deleted yet (that happens at the tenant's next snapshot or
    /// retain). One indexed lookup.
    fn find_response(&self, tenant: &str, request_id: &str) -> Result<Option<Vec<u8>>>;

    /// The response an actor stored for `request_id` ([`Batch::responses`]), if it is still
    /// kept (written within `request_retention` before the tenant's last retain, at least).
    /// One primary-key probe.
    fn actor_response(&self, tenant: &str, request_id: &str) -> Result<Option<Vec<u8>>>;

    /// The customer (number) a conversation actor opened `conversation` for
    /// ([`Batch::owners`]), if it is stored. One primary-key probe.
    fn conversation_customer(&self, tenant: &str, conversation: u64) -> Result<Option<u64>>;

    /// One archived conversation, if it is stored (not yet purged by [`Store::retain`]).
    fn archived(&self, tenant: &str, conversation: u64) -> Result<Option<Archived>>;

    /// Up to `query.limit` archived conversations matching `query`, ascending by conversation.
    /// The next page asks again with `after_conversation` = the last one returned.
    fn list_archived(&self, tenant: &str, query: &ArchiveQuery) -> Result<Vec<Archived>>;

    /// How many archived conversations the tenant has.
    fn count_archived(&self, tenant: &str) -> Result<u64>;

    /// The stored record of a customer (see [`Batch::customers`]), if any.
    fn customer(&self, tenant: &str, customer: &str) -> Result<Option<Vec<u8>>>;

    /// The stored state of one actor (see [`Batch::actors`]), if any. One primary-key probe.
    fn actor(&self, tenant: &str, kind: &str, key: &str) -> Result<Option<ActorState>>;

    /// Up to `limit` stored actors of a kind with a key greater than `after`, ascending by
    /// key (a primary-key walk): what a node activates again after a restart.
    fn list_actors(
        &self,
        tenant: &str,
        kind: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<ActorState>>;

    /// Up to `limit` keys of stored actors of a kind with `after < key <= until` (`None`: no
    /// upper bound), ascending, compared as strings: a primary-key range walk that reads no
    /// bodies. What a node adopting a shard activates: the keys of one shard's actors form
    /// such a range when they are numbers of one length (`actors::placement` in the node).
    /// The default reads [`Store::list_actors`]; the backends read keys only.
    fn actor_keys(
        &self,
        tenant: &str,
        kind: &str,
        after: &str,
        until: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let rows = self.list_actors(tenant, kind, after, limit)?;
        let within = |key: &String| until.is_none_or(|until| key.as_str() <= until);
        Ok(rows.into_iter().map(|row| row.key).take_while(within).collect())
    }

    /// Up to `limit` tenants that have at least one stored actor, greater than `after`,
    /// ascending: a skip scan of the primary key (one probe per tenant, however many actors
    /// each has). The default returns every tenant the store knows after `after`, a superset
    /// that callers must tolerate.
    fn actor_tenants(&self, after: &str, limit: usize) -> Result<Vec<String>> {
        let tenants = self.tenants()?.into_iter().filter(|t| t.as_str() > after);
        Ok(tenants.take(limit).collect())
    }

    /// A bounded walk over archived conversations (see [`ArchiveScan`] for its cost).
    fn scan_archived(&self, tenant: &str, scan: &ArchiveScan) -> Result<ArchiveWindow>;

    /// Up to `limit` stored customer records with an id greater than `after`, ascending by
    /// id (primary key walk; the caller filters on what the bodies hold).
    fn scan_customers(
        &self,
        tenant: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<CustomerRecord>>;

    /// Up to `limit` stored customers whose `field` equals `value` (not empty), with an id
    /// greater than `after`, ascending by id: one walk of that field's index
    /// `(tenant, field, customer)`, which holds only customers with the field set.
    fn find_customers(
        &self,
        tenant: &str,
        field: ContactField,
        value: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<CustomerRecord>>;

    /// Retention, as one fenced write: deletes the archived conversations with
    /// `purge_at_ms <= now_ms` together with their transcript rows, every stream entry with
    /// `at_ms < streams_before_ms` (by age only: a caller that must not keep a conversation's
    /// stream entries longer than its transcript passes a bound no older than its shortest
    /// transcript retention), and the log records
    /// up to the snapshot kept for idempotency that are older than the window before `now_ms`,
    /// as are actors' stored responses ([`Batch::responses`]); the conversation owners of the
    /// purged conversations go with them. Resolves once durable.
    ///
    /// Stream entries are cut by age per stream, from the oldest up to the first one at or
    /// after `streams_before_ms`: exact when `at_ms` never decreases along a stream (the node
    /// stamps entries with the tenant's clock, which never moves backwards), and otherwise it
    /// keeps an older entry that follows a newer one rather than scan the whole stream.
    fn retain(&self, tenant: &str, fence: Fence, now_ms: u64, streams_before_ms: u64) -> Pending;

    /// Reserves `count` fresh numbers of the tenant's `counter` ("customer", "conversation"):
    /// returns the first of [first, first + count). Durable before it returns; never hands out
    /// a number twice, across nodes, restarts and kill -9. Numbers start at 1.
    ///
    /// Blocks until durable (one commit; call it from `spawn_blocking`). `count` 0 is refused
    /// ([`Error::EmptyReservation`]), and so is a counter that would pass `i64::MAX`
    /// ([`Error::Exhausted`]). Unfenced: a counter belongs to the tenant, not to a shard.
    fn reserve(&self, tenant: &str, counter: &str, count: u64) -> Result<u64>;

    /// Binds the customer `name` to `number` unless it is bound already; returns the number it
    /// is bound to (the earlier binding wins a race).
    ///
    /// Blocks until durable. A number bound to another name is refused
    /// ([`Error::NumberTaken`]); a number above `i64::MAX` too ([`Error::OutOfRange`]).
    fn bind_customer(&self, tenant: &str, name: &str, number: u64) -> Result<u64>;

    /// The number bound to the customer `name`, if any. One primary-key probe.
    fn customer_number(&self, tenant: &str, name: &str) -> Result<Option<u64>>;

    /// The name bound to a customer `number`, if any. One unique-index probe.
    fn customer_name(&self, tenant: &str, number: u64) -> Result<Option<String>>;
}
