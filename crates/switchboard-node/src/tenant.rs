//! The tenant actor: one per tenant, the router of DESIGN.md. It owns the tenant's state,
//! applies commands in order, and makes each one durable before anybody hears of it.
//!
//! Pipeline: a command is applied to the in-memory state at once (so the next one sees it),
//! its batch (log record, stream items, transcript rows) is queued on the store in log order,
//! and a per-tenant committer task awaits durability batch by batch, in order, before it
//! answers the caller and publishes to live subscribers. Several commands are therefore in
//! flight at once and share group commits.
//!
//! Backpressure: the mailbox is unbounded (ractor), but the registry admits at most
//! `limits.tenant_in_flight` calls per tenant into it, each with a deadline.
//! Failure: if a write fails, the state is suspect (later commands were applied on top of
//! it), so the actor stops; the registry's supervisor reloads the tenant from the store after
//! a backoff, so its timers fire again without waiting for a call.
//! Timers: the actor arms one wake-up at the engine's next deadline and logs an `Advance`
//! command when it fires, so timers survive restarts as state.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rustc_hash::FxHashMap;
use switchboard_core::Timestamp;
use switchboard_proto::internal::v1::{Advance, Command, Response, command::Op, response};
use switchboard_store::{Batch, Fence, LogRecord, Message, Pending, Store, StreamEntry};
use tokio::sync::mpsc;
use tracing::{error, warn};

use crate::apply::{self, Output};
use crate::clock;
use crate::error::Error;
use crate::hub::Hub;
use crate::metrics as m;
use crate::seen::SeenIds;
use crate::state::{EVENTS, TenantState};
use crate::webhooks::Deliverers;

pub type Reply = RpcReplyPort<Result<response::Result, tonic::Status>>;

pub enum TenantMsg {
    /// A mutating command; answered once durable. `request_id` dedupes retries.
    Command { op: Op, request_id: String, reply: Reply },
    /// A read of the current state.
    Read(Box<dyn FnOnce(&TenantState) + Send>),
    /// A deadline may be due.
    Tick,
    /// Store a snapshot now (graceful shutdown), answered once durable.
    Snapshot(RpcReplyPort<()>),
    /// Sample the tenant's gauges.
    Gauges,
    /// What durable steps moved out of memory is in the store now.
    Durable(Vec<Moved>),
}

pub struct TenantArgs {
    /// The tenant's id (a tenant being created starts from an empty state).
    pub tenant: String,
    pub state: TenantState,
    pub log_seq: u64,
    pub store: Arc<dyn Store>,
    pub hub: Hub,
    /// Commands between snapshots.
    pub snapshot_every: u64,
    /// The shard and epoch every write carries (the default on a single node).
    pub fence: Fence,
    /// How webhook deliveries are retried.
    pub webhooks: crate::webhooks::Options,
}

#[derive(Debug)]
pub struct TenantActor;

impl std::fmt::Debug for TenantMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TenantMsg::Command { request_id, .. } => write!(f, "Command({request_id})"),
            TenantMsg::Read(_) => f.write_str("Read"),
            TenantMsg::Tick => f.write_str("Tick"),
            TenantMsg::Snapshot(_) => f.write_str("Snapshot"),
            TenantMsg::Gauges => f.write_str("Gauges"),
            TenantMsg::Durable(_) => f.write_str("Durable"),
        }
    }
}

impl std::fmt::Debug for TenantArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantArgs")
            .field("tenant", &self.tenant)
            .field("log_seq", &self.log_seq)
            .finish()
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("tenant", &self.state.id)
            .field("log_seq", &self.log_seq)
            .finish()
    }
}

pub struct Running {
    state: TenantState,
    log_seq: u64,
    since_snapshot: u64,
    last_snapshot: Timestamp,
    /// When retention last swept the store (with a snapshot, or by time on the gauges'
    /// tick: a quiet tenant takes no snapshot).
    last_retained: Timestamp,
    snapshot_every: u64,
    fence: Fence,
    store: Arc<dyn Store>,
    committer: mpsc::UnboundedSender<Job>,
    /// Answers of request ids whose command is not durable yet, with its log seq: the store
    /// cannot answer a retry of those. Cleared as they become durable, so it holds in-flight
    /// work only; the store answers for everything older.
    recent: FxHashMap<String, (u64, Vec<u8>)>,
    /// Request ids this actor logged: a new one skips the store's lookup.
    seen: SeenIds,
    /// Metric handles of this tenant's commands.
    handles: m::CommandHandles,
    last_now: Timestamp,
    armed: Option<(Timestamp, tokio::task::JoinHandle<()>)>,
    sampler: tokio::task::JoinHandle<()>,
    /// The tenant's webhook deliverers; they stop with the actor.
    deliverers: Option<Deliverers>,
}

/// Housekeeping whose failure must not stop the tenant: logged, then done.
fn not_fatal(tenant: &str, what: &'static str, pending: Pending) -> Pending {
    let tenant = tenant.to_owned();
    Box::pin(async move {
        if let Err(e) = pending.await {
            warn!(tenant = %tenant, error = %e, "{what} failed; retried at the next snapshot");
        }
        Ok(())
    })
}

/// Drops what a durable step kept in memory, unless a later step (another `seq`) has replaced
/// it and is not durable yet.
fn forget<K: std::hash::Hash + Eq>(kept: &mut FxHashMap<K, (u64, Vec<u8>)>, key: K, seq: u64) {
    if kept.get(&key).is_some_and(|(kept_seq, _)| *kept_seq == seq) {
        kept.remove(&key);
    }
}

/// What a command needs from the store before it is applied (see `crate::archive`).
#[derive(Debug, Default)]
pub struct Loaded {
    archived: Vec<u8>,
    customer: Vec<u8>,
    events_head: u64,
}

/// One durable step for the committer: wait for `pending`, then answer and publish.
struct Job {
    pending: Pending,
    reply: Option<Reply>,
    result: Option<response::Result>,
    live: Vec<(String, u64, switchboard_proto::internal::v1::StreamItem)>,
    /// Told once the step is durable (snapshots on shutdown).
    ack: Option<RpcReplyPort<()>>,
    /// What the step moves out of memory.
    moved: Moved,
}

/// Conversations archived, customers evicted and the answer kept by one command, with its
/// log seq: until durable they are served from memory (`archiving`, `evicting`, `recent`).
#[derive(Debug, Default)]
pub struct Moved {
    seq: u64,
    conversations: Vec<u64>,
    customers: Vec<String>,
    /// The command's request id, whose answer the store now gives.
    request_id: Option<String>,
}

impl Moved {
    fn is_empty(&self) -> bool {
        self.conversations.is_empty() && self.customers.is_empty() && self.request_id.is_none()
    }
}

impl Job {
    fn new(pending: Pending) -> Self {
        Job {
            pending,
            reply: None,
            result: None,
            live: Vec::new(),
            ack: None,
            moved: Moved::default(),
        }
    }
}

/// Snapshot at least this often.
const SNAPSHOT_AGE: Duration = Duration::from_secs(3600);
/// Entries kept per stream.
const STREAM_KEEP: usize = 100_000;

impl Actor for TenantActor {
    type Msg = TenantMsg;
    type State = Running;
    type Arguments = TenantArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<TenantMsg>,
        args: TenantArgs,
    ) -> Result<Running, ActorProcessingErr> {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(commit_in_order(args.tenant.clone(), rx, args.hub.clone(), myself.clone()));
        let me = myself.clone();
        let sampler = tokio::spawn(async move {
            let mut every = tokio::time::interval(m::GAUGE_INTERVAL);
            loop {
                every.tick().await;
                if me.cast(TenantMsg::Gauges).is_err() {
                    return;
                }
            }
        });
        // The tenant's time never goes before its last logged time, whatever this node's
        // wall clock says (it may be behind the previous owner's, or set back).
        let last_at = args.state.last_at;
        let deliverers = Deliverers::spawn(
            args.tenant.clone(),
            myself.clone(),
            args.store.clone(),
            args.hub.clone(),
            args.webhooks.clone(),
            args.state.webhooks.clone(),
        );
        let seen = SeenIds::new(args.store.request_retention(), args.log_seq, last_at.as_millis());
        let mut running = Running {
            deliverers: Some(deliverers),
            sampler,
            last_now: last_at,
            state: args.state,
            log_seq: args.log_seq,
            since_snapshot: 0,
            last_snapshot: clock::now().max(last_at),
            last_retained: Timestamp(0),
            snapshot_every: args.snapshot_every.max(1),
            fence: args.fence,
            store: args.store,
            committer: tx,
            recent: FxHashMap::default(),
            seen,
            handles: m::CommandHandles::default(),
            armed: None,
        };
        running.arm(&myself);
        metrics::gauge!(m::ACTORS, "kind" => "tenant").increment(1.0);
        Ok(running)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<TenantMsg>,
        running: &mut Running,
    ) -> Result<(), ActorProcessingErr> {
        if let Some((_, timer)) = running.armed.take() {
            timer.abort();
        }
        running.sampler.abort();
        running.deliverers = None;
        metrics::gauge!(m::ACTORS, "kind" => "tenant").decrement(1.0);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<TenantMsg>,
        msg: TenantMsg,
        running: &mut Running,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TenantMsg::Command { op, request_id, reply } => {
                match running.answered_before(&op, &request_id).await {
                    Ok(None) => match running.load_for(&op).await {
                        Ok(loaded) => running.command(op, loaded, request_id, Some(reply)),
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                        }
                    },
                    Ok(Some(found)) => {
                        // Answered after the original is durable: it may still be in flight.
                        running.enqueue(Job {
                            reply: Some(reply),
                            result: Some(found),
                            ..Job::new(Box::pin(async { Ok(()) }))
                        });
                    }
                    // Not knowing whether it was applied, applying it could apply it twice.
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            TenantMsg::Durable(steps) => {
                for moved in steps {
                    let seq = moved.seq;
                    if let Some(id) = moved.request_id {
                        forget(&mut running.recent, id, seq);
                    }
                    let state = &mut running.state;
                    for c in moved.conversations {
                        forget(&mut state.archiving, c, seq);
                    }
                    for u in moved.customers {
                        forget(&mut state.evicting, u, seq);
                    }
                }
            }
            TenantMsg::Read(f) => f(&running.state),
            TenantMsg::Tick => {
                running.armed = None;
                let now = running.now();
                if running.state.engine.next_deadline().is_some_and(|at| at <= now) {
                    let op = Op::Advance(Advance {});
                    running.command(op, Loaded::default(), String::new(), None);
                }
            }
            TenantMsg::Gauges => {
                let now = running.now();
                m::gauges(&running.state, now);
                // Retention by time too: a quiet tenant takes no snapshot, yet its
                // transcripts must go when their retention ends (SPEC §5).
                if now >= running.last_retained + running.retention_every() {
                    running.retain(now);
                }
            }
            TenantMsg::Snapshot(reply) => {
                let pending = running.snapshot();
                running.enqueue(Job { ack: Some(reply), ..Job::new(pending) });
            }
        }
        running.arm(&myself);
        Ok(())
    }
}

impl Running {
    /// Time only moves forward within a tenant, whatever the wall clock does.
    fn now(&mut self) -> Timestamp {
        self.last_now = self.last_now.max(clock::now());
        self.last_now
    }

    /// What a command needs that is out of memory: the archived conversation it acts on and
    /// the evicted customer it names, from the not-yet-durable ones in memory, else from the
    /// store (off the runtime's threads). A failed read fails the call (retryable).
    async fn load_for(&self, op: &Op) -> Result<Loaded, Error> {
        let conversation = apply::archived_target(&self.state, op);
        let customer = apply::customer_target(&self.state, op);
        let mut loaded = Loaded::default();
        if let Some((_, body)) = conversation.and_then(|n| self.state.archiving.get(&n)) {
            loaded.archived = body.clone();
        }
        if let Some((_, body)) = customer.as_ref().and_then(|u| self.state.evicting.get(u)) {
            loaded.customer = body.clone();
        }
        let read_conversation = conversation.filter(|_| loaded.archived.is_empty());
        let read_customer = customer.filter(|_| loaded.customer.is_empty());
        let read_head = apply::webhooks::needs_events_head(&self.state, op);
        if read_conversation.is_none() && read_customer.is_none() && !read_head {
            return Ok(loaded);
        }
        let (store, tenant) = (Arc::clone(&self.store), self.state.id.clone());
        let read = move || -> switchboard_store::Result<Loaded> {
            if let Some(n) = read_conversation
                && let Some(row) = store.archived(&tenant, n)?
            {
                loaded.archived = row.body;
            }
            if let Some(u) = read_customer
                && let Some(body) = store.customer(&tenant, &u)?
            {
                loaded.customer = body;
            }
            if read_head {
                loaded.events_head = store.last_stream_seq(&tenant, EVENTS)?.unwrap_or(0);
            }
            Ok(loaded)
        };
        let loaded = tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| Error::Unavailable(format!("store read interrupted: {e}")))?
            .map_err(|e| Error::Unavailable(format!("store read failed, retry: {e}")))?;
        Ok(loaded)
    }

    fn command(&mut self, op: Op, loaded: Loaded, request_id: String, reply: Option<Reply>) {
        let now = self.now();
        let cmd = Command {
            at_ms: now.as_millis(),
            op: Some(op),
            archived: loaded.archived,
            customer: loaded.customer,
            events_head: loaded.events_head,
        };
        let kind = op_kind(&cmd);
        let webhooks_changed = matches!(cmd.op, Some(Op::PutWebhook(_) | Op::DeleteWebhook(_)));
        let started = tokio::time::Instant::now();
        match apply::apply(&mut self.state, &cmd) {
            Err(e) => {
                m::refused(&self.state.id, kind, &e);
                if let Some(reply) = reply {
                    let _ = reply.send(Err(e.into()));
                }
            }
            Ok((mut response, output)) => {
                m::applied(&self.state, &mut self.handles, kind, started.elapsed(), &output);
                if !request_id.is_empty() {
                    response.call = call_digest(cmd.op.as_ref());
                }
                if webhooks_changed && let Some(deliverers) = &self.deliverers {
                    deliverers.update(&self.state.webhooks);
                }
                self.log_seq += 1;
                let response_bytes = response.encode_to_vec();
                let mut moved = Moved { seq: self.log_seq, ..Moved::default() };
                if !request_id.is_empty() {
                    self.seen.insert(&request_id, now.as_millis());
                    moved.request_id = Some(request_id.clone());
                    self.recent.insert(request_id.clone(), (self.log_seq, response_bytes.clone()));
                }
                let mut batch = Batch {
                    fence: self.fence,
                    ..batch(&self.state.id, self.log_seq, &cmd, request_id, response_bytes, &output)
                };
                // An actor tenant's running meshes reload a configuration this changed.
                if self.state.actor_routing
                    && cmd.op.as_ref().is_some_and(crate::actors::config::changes_mesh)
                {
                    batch.actors.push(crate::actors::config::row(self.log_seq));
                }
                let pending = self.store.append(batch);
                for row in output.archive {
                    moved.conversations.push(row.conversation);
                    self.state.archiving.insert(row.conversation, (self.log_seq, row.body));
                }
                for record in output.customers {
                    moved.customers.push(record.customer.clone());
                    self.state.evicting.insert(record.customer, (self.log_seq, record.body));
                }
                let live = output.items;
                self.enqueue(Job {
                    reply,
                    result: response.result,
                    live,
                    moved,
                    ..Job::new(pending)
                });
                self.since_snapshot += 1;
                // By count, and at least hourly so the log (which holds message texts) never
                // outlives transcript retention by much. A snapshot costs in proportion to the
                // tenant's size, so a big tenant waits for at least as many commands as it holds
                // conversations: snapshot work stays proportional to the log it replaces.
                let due = self.snapshot_every.max(self.state.engine.conversation_count() as u64);
                if self.since_snapshot >= due || now >= self.last_snapshot + SNAPSHOT_AGE {
                    let pending = self.snapshot();
                    self.enqueue(Job::new(pending));
                    self.trim_streams();
                    self.retain(now);
                }
            }
        }
    }

    fn enqueue(&self, job: Job) {
        // The committer lives as long as the actor; a closed channel means we are stopping.
        let _ = self.committer.send(job);
    }

    /// The answer given to `request_id` before, if it was seen. A failed lookup is an error,
    /// never "not seen": the command may have been applied already. The store is asked (off
    /// the runtime's threads; the actor waits, so nothing is applied meanwhile) only if the
    /// actor's filter of logged ids cannot rule the id out. A tenant's creation always asks:
    /// its actor starts empty, so its filter knows nothing, even if the store already holds
    /// the tenant (a retry racing a shard's handover, say).
    async fn answered_before(
        &mut self,
        op: &Op,
        request_id: &str,
    ) -> Result<Option<response::Result>, Error> {
        if request_id.is_empty() {
            return Ok(None);
        }
        let now_ms = self.now().as_millis();
        let bytes = match self.recent.get(request_id) {
            Some((_, b)) => b.clone(),
            None if !matches!(op, Op::CreateTenant(_))
                && !self.seen.may_contain(request_id, now_ms) =>
            {
                return Ok(None);
            }
            None => {
                let (store, tenant, id) =
                    (Arc::clone(&self.store), self.state.id.clone(), request_id.to_owned());
                let found = tokio::task::spawn_blocking(move || store.find_response(&tenant, &id))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|found| found.map_err(|e| e.to_string()));
                match found {
                    Ok(Some(b)) => b,
                    Ok(None) => return Ok(None),
                    Err(e) => {
                        warn!(tenant = %self.state.id, error = %e, "idempotency lookup failed");
                        return Err(Error::Unavailable(format!(
                            "cannot tell whether request_id {request_id:?} was already applied \
                             (the store's lookup failed: {e}); nothing was done, retry with the \
                             same request_id"
                        )));
                    }
                }
            }
        };
        let stored = Response::decode(bytes.as_slice()).map_err(|e| {
            Error::Internal(format!("stored answer of request_id {request_id:?}: {e}"))
        })?;
        // Answers stored before calls were kept have none: answered as before.
        if !stored.call.is_empty() && stored.call != call_digest(Some(op)) {
            return Err(Error::reused(request_id));
        }
        crate::metrics::replayed(&self.state.id);
        Ok(stored.result)
    }

    /// Retention by time in the store: archived conversations (and their transcripts) past
    /// their deadline, and stream entries older than the shortest transcript retention: an
    /// entry is written before its conversation ends, so none outlives the transcript it
    /// quotes (the store deletes stream entries by age alone, not by conversation).
    fn retain(&mut self, now: Timestamp) {
        self.last_retained = now;
        let shortest = self.shortest_retention();
        let before =
            now.as_millis().saturating_sub(u64::try_from(shortest.as_millis()).unwrap_or(u64::MAX));
        let pending = self.store.retain(&self.state.id, self.fence, now.as_millis(), before);
        self.enqueue(Job::new(not_fatal(&self.state.id, "retention", pending)));
    }

    /// How often retention sweeps by time: an eighth of the shortest retention, so nothing
    /// outlives its retention by much more than that, between every second (the gauges'
    /// tick, every few seconds, is when it is looked at) and hourly (as snapshots go).
    fn retention_every(&self) -> Duration {
        (self.shortest_retention() / 8).clamp(Duration::from_secs(1), SNAPSHOT_AGE)
    }

    /// The shorter of the tenant's two transcript retentions.
    fn shortest_retention(&self) -> Duration {
        let settings = self.state.engine.settings();
        settings.retention_accepted.min(settings.retention_unaccepted)
    }

    /// Bounds every stream of the tenant; readers behind the kept window resume from the
    /// oldest entry kept.
    fn trim_streams(&self) {
        for stream in self.state.stream_seq.keys() {
            let pending = self.store.trim_stream(&self.state.id, stream, STREAM_KEEP);
            self.enqueue(Job::new(not_fatal(&self.state.id, "stream trim", pending)));
        }
    }

    /// Queues a snapshot of the state as of the last applied command: the state is cloned
    /// here (it holds live work only), encoded and written off the actor. A failed snapshot
    /// is logged and counted, never fatal: the log it would have replaced stays.
    fn snapshot(&mut self) -> Pending {
        self.since_snapshot = 0;
        self.last_snapshot = self.last_now;
        let state = self.state.clone();
        let (store, fence, seq) = (Arc::clone(&self.store), self.fence, self.log_seq);
        Box::pin(async move {
            let tenant = state.id.clone();
            let encoded = tokio::task::spawn_blocking(move || state.encode_snapshot()).await;
            let bytes = match encoded {
                Ok(Ok(bytes)) => bytes,
                Ok(Err(e)) => {
                    error!(tenant = %tenant, error = %e, "snapshot encoding failed");
                    return Ok(());
                }
                Err(e) => {
                    error!(tenant = %tenant, error = %e, "snapshot encoding interrupted");
                    return Ok(());
                }
            };
            m::snapshot(&tenant, bytes.len());
            if let Err(e) = store.snapshot(&tenant, fence, seq, bytes).await {
                warn!(tenant = %tenant, error = %e, "snapshot not stored; the log stays");
            }
            Ok(())
        })
    }

    /// Keeps exactly one wake-up armed at the engine's next deadline.
    fn arm(&mut self, myself: &ActorRef<TenantMsg>) {
        let next = self.state.engine.next_deadline();
        if self.armed.as_ref().map(|(at, _)| *at) == next {
            return;
        }
        if let Some((_, timer)) = self.armed.take() {
            timer.abort();
        }
        if let Some(at) = next {
            let wait =
                Duration::from_millis(at.as_millis().saturating_sub(clock::now().as_millis()));
            let me = myself.clone();
            let timer = tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let _ = me.cast(TenantMsg::Tick);
            });
            self.armed = Some((at, timer));
        }
    }
}

/// What a call asked, as its answer keeps it (`Response.call`): the digest of its op as
/// encoded (`registry::call_digest`). prost encodes fields in number order and the API's one
/// map in key order (`switchboard-proto`'s build), so a retry of the same request gives the
/// same bytes, whatever order its client encoded them in.
fn call_digest(op: Option<&Op>) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Some(op) = op {
        op.encode(&mut bytes);
    }
    crate::registry::call_digest(&bytes).to_vec()
}

fn batch(
    tenant: &str,
    seq: u64,
    cmd: &Command,
    request_id: String,
    response: Vec<u8>,
    out: &Output,
) -> Batch {
    Batch {
        tenant: tenant.to_owned(),
        fence: Fence::default(),
        log: vec![LogRecord {
            seq,
            at_ms: cmd.at_ms,
            request_id: (!request_id.is_empty()).then_some(request_id),
            command: cmd.encode_to_vec(),
            response,
        }],
        streams: out
            .items
            .iter()
            .map(|(stream, seq, item)| StreamEntry {
                stream: stream.clone(),
                seq: *seq,
                at_ms: cmd.at_ms,
                payload: item.encode_to_vec(),
                conversation: item_conversation(item),
            })
            .collect(),
        messages: out
            .transcript
            .iter()
            .map(|row| Message {
                conversation: row.conversation,
                seq: row.message.seq,
                at_ms: cmd.at_ms,
                sender: row.message.sender.clone(),
                text: row.message.text.clone(),
                kind: crate::service::transcript_kind(&row.message),
            })
            .collect(),
        purge_conversations: out.purges.clone(),
        archive: out.archive.clone(),
        customers: out.customers.clone(),
        appends: Vec::new(),
        actors: out.actors.clone(),
        responses: Vec::new(),
        owners: Vec::new(),
        // The tenant actor hears nothing early: unchecked.
        generation: None,
    }
}

/// The conversation a stream item is about, so retention can delete it with the conversation.
fn item_conversation(item: &switchboard_proto::internal::v1::StreamItem) -> Option<u64> {
    use switchboard_proto::internal::v1::stream_item::Item;
    let name = match item.item.as_ref()? {
        Item::Outbound(m) => &m.conversation,
        Item::AgentEvent(e) => &e.conversation,
        Item::Event(e) => &e.conversation,
        Item::WebhookDeadLetter(_) | Item::DeskRefusal(_) => return None,
    };
    crate::names::conversation("conversation", name).ok().map(|(_, n)| n)
}

/// A short name of the command, for metrics and logs.
pub fn op_kind(cmd: &Command) -> &'static str {
    match &cmd.op {
        Some(Op::CreateTenant(_)) => "create_tenant",
        Some(Op::UpdateTenant(_)) => "update_tenant",
        Some(Op::PutGroup(_)) => "put_group",
        Some(Op::DeleteGroup(_)) => "delete_group",
        Some(Op::PutAgent(_)) => "put_agent",
        Some(Op::DeleteAgent(_)) => "delete_agent",
        Some(Op::PutCustomer(_)) => "put_customer",
        Some(Op::PutSharedQuickReplies(_)) => "put_shared_quick_replies",
        Some(Op::PostMessage(_)) => "post_message",
        Some(Op::OpenService(_)) => "open_service",
        Some(Op::RequestHuman(_)) => "request_human",
        Some(Op::CloseConversation(_)) => "close_conversation",
        Some(Op::RateConversation(_)) => "rate_conversation",
        Some(Op::SetStatus(_)) => "set_status",
        Some(Op::Accept(_)) => "accept",
        Some(Op::Decline(_)) => "decline",
        Some(Op::Pick(_)) => "pick",
        Some(Op::SendMessage(_)) => "send_message",
        Some(Op::MarkRead(_)) => "mark_read",
        Some(Op::Transfer(_)) => "transfer",
        Some(Op::EndConversation(_)) => "end_conversation",
        Some(Op::AgentBotHosting(_)) => "agent_bot_hosting",
        Some(Op::InviteRating(_)) => "invite_rating",
        Some(Op::UpdateConversation(_)) => "update_conversation",
        Some(Op::UpdateCustomerProfile(_)) => "update_customer_profile",
        Some(Op::PutPersonalQuickReplies(_)) => "put_personal_quick_replies",
        Some(Op::UpdateAgentReplies(_)) => "update_agent_replies",
        Some(Op::EndWrapUp(_)) => "end_wrap_up",
        Some(Op::Whisper(_)) => "whisper",
        Some(Op::SupervisorSetStatus(_)) => "supervisor_set_status",
        Some(Op::ReassignBatch(_)) => "reassign_batch",
        Some(Op::EndBatch(_)) => "end_batch",
        Some(Op::SupervisorEnd(_)) => "supervisor_end",
        Some(Op::SetBotHosting(_)) => "set_bot_hosting",
        Some(Op::PutWebhook(_)) => "put_webhook",
        Some(Op::DeleteWebhook(_)) => "delete_webhook",
        Some(Op::WebhookProgress(_)) => "webhook_progress",
        Some(Op::Advance(_)) => "advance",
        None => "empty",
    }
}

/// Awaits each batch in order; answers and publishes only what is durable. On a write
/// failure every later answer fails too and the actor stops, so the tenant reloads.
async fn commit_in_order(
    tenant: String,
    mut rx: mpsc::UnboundedReceiver<Job>,
    hub: Hub,
    actor: ActorRef<TenantMsg>,
) {
    let mut failed: Option<String> = None;
    // What durable steps moved out of memory, told to the actor once per burst of steps
    // rather than once per command.
    let mut moved: Vec<Moved> = Vec::new();
    while let Some(job) = rx.recv().await {
        let result = match &failed {
            Some(why) => Err(why.clone()),
            None => job.pending.await.map_err(|e| {
                if matches!(e, switchboard_store::Error::Fenced { .. }) {
                    metrics::counter!(m::FENCED_WRITES).increment(1);
                }
                e.to_string()
            }),
        };
        match result {
            Ok(()) => {
                for (stream, seq, item) in job.live {
                    hub.publish(&tenant, &stream, seq, item);
                }
                if let (Some(reply), Some(result)) = (job.reply, job.result) {
                    let _ = reply.send(Ok(result));
                }
                if let Some(ack) = job.ack {
                    let _ = ack.send(());
                }
                if !job.moved.is_empty() {
                    moved.push(job.moved);
                }
            }
            Err(why) => {
                if failed.is_none() {
                    error!(tenant = %tenant, error = %why, "durable write failed; reloading the tenant");
                    actor.stop(Some(format!("store write failed: {why}")));
                }
                if let Some(reply) = job.reply {
                    let _ = reply.send(Err(Error::Unavailable(why.clone()).into()));
                }
                failed = Some(why);
            }
        }
        if rx.is_empty() && !moved.is_empty() {
            let _ = actor.cast(TenantMsg::Durable(std::mem::take(&mut moved)));
        }
    }
}
