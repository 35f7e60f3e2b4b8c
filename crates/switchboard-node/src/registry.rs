//! The tenants of this node: loads each from the store (snapshot + replay of the log after
//! it), spawns its actor, supervises it, and routes calls to it.
//!
//! **Directory.** A std mutex guards the map of tenants and is never held across an await:
//! each tenant's slot is either live (its actor) or starting (a load, a replay, a creation
//! or a restart in progress, by exactly one starter). A call to a starting tenant waits for
//! its slot to change (a `watch` per tenant), so a slow load holds up the calls to that
//! tenant only, and concurrent calls never start a tenant twice. A shard's adoptions and
//! releases take turns on a per-shard lock that calls never take; a release overtaking an
//! adoption wins (the shard is not served, what was started is stopped).
//!
//! **Supervision.** A tenant actor that stops without the registry asking (a failed durable
//! write, a panic) is restarted from the store by its supervisor task after a backoff
//! (100 ms, doubling to 10 s, back to 100 ms once an incarnation has run for 10 s), while
//! the node still serves its shard, so its timers fire without waiting for a call. Nothing
//! acknowledged is lost and nothing unacknowledged is kept (the store is the truth).
//!
//! **Budget and deadline.** At most `Options::tenant_in_flight` calls per tenant wait for or
//! are handled by its actor; beyond that a call is refused `RESOURCE_EXHAUSTED` at once. A
//! call waits for its tenant at most `Options::call_timeout` (tonic cancels it sooner at the
//! client's own gRPC deadline): UNAVAILABLE if the tenant never became ready, DEADLINE_EXCEEDED
//! if its command was handed over but not answered in time (it may have been applied).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use prost::Message as _;
use ractor::{Actor, ActorRef, ActorStatus};
use switchboard_core::engine::Customer;
use switchboard_core::{Conversation, ConversationId, CustomerId};
use switchboard_proto::internal::v1::{Command, command::Op, response};
use switchboard_proto::v1 as pb;
use switchboard_store::{Fence, Store};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::actors::{answer_or_stop, ask};
use crate::apply;
use crate::archive;
use crate::cluster::Ownership;
use crate::convert::resources;
use crate::error::Error;
use crate::hub::Hub;
use crate::state::{ConversationExtra, TenantState};
use crate::tenant::{TenantActor, TenantArgs, TenantMsg};

#[derive(Debug, Clone)]
pub struct Options {
    /// Commands between snapshots of a tenant.
    pub snapshot_every: u64,
    /// How webhook deliveries are retried.
    pub webhooks: crate::webhooks::Options,
    /// Calls per tenant waiting for or handled by its actor; more are refused
    /// `RESOURCE_EXHAUSTED`.
    pub tenant_in_flight: usize,
    /// How long a call waits for its tenant (to start, and to answer).
    pub call_timeout: Duration,
    /// A stopped tenant actor's first restart delay, doubled up to `restart_max`.
    pub restart_min: Duration,
    pub restart_max: Duration,
}

/// How a tenant created without a routing is served: by conversation, agent and router
/// actors (issue 12). `TENANT_ROUTING_TENANT_ACTOR` stays available, named explicitly.
pub const DEFAULT_ROUTING: pb::TenantRouting = pb::TenantRouting::Actors;

/// Calls per tenant in flight, by default.
pub const TENANT_IN_FLIGHT: usize = 1024;
/// How long a call waits for its tenant, by default.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Options {
    fn default() -> Self {
        Options {
            snapshot_every: 10_000,
            webhooks: crate::webhooks::Options::default(),
            tenant_in_flight: TENANT_IN_FLIGHT,
            call_timeout: CALL_TIMEOUT,
            restart_min: Duration::from_millis(100),
            restart_max: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    hub: Hub,
    options: Options,
    /// Never held across an await.
    tenants: Mutex<BTreeMap<String, Entry>>,
    /// Numbers the starts, so a starter finishes only the start it began.
    starts: AtomicU64,
    /// Per shard: its adoptions and releases take turns (calls never wait for this), and a
    /// release that overtakes an adoption keeps it from serving the shard. The map's lock is
    /// also what makes "no release since" and marking the shard served one step.
    shards: Mutex<HashMap<u32, Arc<ShardTurns>>>,
    /// In a cluster: the shards this node serves. `None` on a single node, which serves every
    /// tenant under the default fence.
    ownership: Option<Arc<Ownership>>,
}

#[derive(Default)]
struct ShardTurns {
    turn: tokio::sync::Mutex<()>,
    releases: AtomicU64,
}

/// One tenant of this node.
struct Entry {
    slot: Slot,
    /// Calls waiting for or handled by the tenant's actor (kept across restarts).
    budget: Arc<Semaphore>,
    /// Told every time `slot` changes; dropped with the entry.
    changed: watch::Sender<()>,
}

enum Slot {
    Live(ActorRef<TenantMsg>),
    /// Start number `n` (a load, a creation or a restart) is in progress.
    Starting(u64),
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("options", &self.inner.options).finish_non_exhaustive()
    }
}

type Status = tonic::Status;
type Tenants<'a> = MutexGuard<'a, BTreeMap<String, Entry>>;

/// Removes a start's slot if the start never finished (an error, or its future dropped), so
/// that waiting calls stop waiting and a later start may begin.
struct StartGuard<'a> {
    registry: &'a Registry,
    tenant: String,
    start: u64,
}

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        let mut tenants = self.registry.lock();
        if matches!(tenants.get(&self.tenant), Some(e) if matches!(e.slot, Slot::Starting(n) if n == self.start))
        {
            tenants.remove(&self.tenant);
        }
    }
}

impl Registry {
    /// Loads every tenant the store knows.
    pub async fn load(
        store: Arc<dyn Store>,
        hub: Hub,
        options: Options,
    ) -> Result<Registry, Error> {
        let registry = Registry::new(store, hub, options, None);
        let names = blocking(&registry.inner.store, |store| store.tenants()).await?;
        for name in names {
            registry.start(&name, Fence::default()).await?;
        }
        Ok(registry)
    }

    /// A cluster node's registry: empty until the membership task adopts shards.
    pub fn clustered(
        store: Arc<dyn Store>,
        hub: Hub,
        options: Options,
        ownership: Arc<Ownership>,
    ) -> Registry {
        Registry::new(store, hub, options, Some(ownership))
    }

    fn new(
        store: Arc<dyn Store>,
        hub: Hub,
        options: Options,
        ownership: Option<Arc<Ownership>>,
    ) -> Registry {
        let inner = Inner {
            store,
            hub,
            options,
            tenants: Mutex::default(),
            starts: AtomicU64::new(1),
            shards: Mutex::default(),
            ownership,
        };
        Registry { inner: Arc::new(inner) }
    }

    pub fn ownership(&self) -> Option<&Arc<Ownership>> {
        self.inner.ownership.as_ref()
    }

    fn lock(&self) -> Tenants<'_> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.inner.tenants.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fence this node writes `tenant` under, or a retryable refusal naming the owner.
    fn fence(&self, tenant: &str) -> Result<Fence, Status> {
        let Some(ownership) = &self.inner.ownership else { return Ok(Fence::default()) };
        ownership.local_fence(tenant).ok_or_else(|| moved(ownership, tenant))
    }

    /// The turns of a shard's adoptions and releases, and the map they are kept in (locked).
    fn shard(
        &self,
        shard: u32,
    ) -> (MutexGuard<'_, HashMap<u32, Arc<ShardTurns>>>, Arc<ShardTurns>) {
        let mut shards = self.inner.shards.lock().unwrap_or_else(PoisonError::into_inner);
        let turns = shards.entry(shard).or_default().clone();
        (shards, turns)
    }

    /// Starts the tenants of a shard this node now owns (their epoch fenced in the store
    /// already), then serves the shard — unless a release of the shard came meanwhile (it
    /// stops what was started once this returns).
    pub async fn adopt(&self, shard: u32, epoch: u64, known: &[String]) -> Result<(), Error> {
        let Some(ownership) = self.inner.ownership.clone() else { return Ok(()) };
        let fence = Fence { shard, epoch };
        let turns = self.shard(shard).1;
        let _turn = turns.turn.lock().await;
        let mark = turns.releases.load(Ordering::SeqCst);
        for name in known.iter().filter(|t| ownership.shard_of(t) == shard) {
            if turns.releases.load(Ordering::SeqCst) != mark {
                break;
            }
            self.start(name, fence).await?;
        }
        let (shards, _) = self.shard(shard);
        if turns.releases.load(Ordering::SeqCst) == mark {
            ownership.set_local(shard, Some(epoch));
        } else {
            info!(shard, epoch, "a release overtook the shard's adoption; not serving it");
        }
        drop(shards);
        Ok(())
    }

    /// Stops serving a shard: new calls are refused at once (and retried by their senders),
    /// then (once an adoption of it in progress has stopped) its tenants stop — after a
    /// snapshot when handing over, at once when the lease is lost (a newer owner may be
    /// writing already).
    pub async fn release(&self, shard: u32, snapshot: bool) {
        let Some(ownership) = self.inner.ownership.clone() else { return };
        let turns = {
            let (shards, turns) = self.shard(shard);
            turns.releases.fetch_add(1, Ordering::SeqCst);
            ownership.set_local(shard, None);
            drop(shards);
            turns
        };
        let _turn = turns.turn.lock().await;
        let actors: Vec<(String, Option<ActorRef<TenantMsg>>)> = {
            let mut tenants = self.lock();
            let names: Vec<String> =
                tenants.keys().filter(|t| ownership.shard_of(t) == shard).cloned().collect();
            names
                .into_iter()
                .filter_map(|t| {
                    let entry = tenants.remove(&t)?;
                    Some((t, entry.live()))
                })
                .collect()
        };
        for (name, actor) in actors {
            match actor {
                Some(actor) if snapshot => snapshot_and_stop(&name, actor).await,
                Some(actor) => actor.stop(Some("shard lost".into())),
                None => {} // its starter sees the slot gone and stops what it started
            }
            self.inner.hub.close_tenant(&name);
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Marks `tenant` as starting (its entry created if new; a live actor of it is stopped,
    /// replaced), and returns the start's number.
    fn begin(&self, tenants: &mut Tenants<'_>, tenant: &str) -> u64 {
        let start = self.inner.starts.fetch_add(1, Ordering::Relaxed);
        let entry = tenants.entry(tenant.to_owned()).or_insert_with(|| Entry {
            slot: Slot::Starting(start),
            budget: Arc::new(Semaphore::new(self.inner.options.tenant_in_flight.max(1))),
            changed: watch::Sender::new(()),
        });
        if let Some(old) = entry.set(Slot::Starting(start)) {
            old.stop(None);
        }
        start
    }

    /// Finishes start number `start`: the tenant is served by `actor` from now on, supervised.
    /// If the start was superseded (a release, another start), `actor` is stopped instead.
    fn finish(&self, tenant: &str, start: u64, actor: ActorRef<TenantMsg>, join: Join) {
        let mut tenants = self.lock();
        match tenants.get_mut(tenant) {
            Some(entry) if matches!(entry.slot, Slot::Starting(n) if n == start) => {
                entry.set(Slot::Live(actor.clone()));
                drop(tenants);
                tokio::spawn(supervise(
                    Arc::downgrade(&self.inner),
                    tenant.to_owned(),
                    actor,
                    join,
                ));
            }
            _ => {
                drop(tenants);
                actor.stop(Some("superseded".into()));
            }
        }
    }

    /// Loads `tenant` and serves it under `fence`, replacing any actor it had.
    async fn start(&self, tenant: &str, fence: Fence) -> Result<(), Error> {
        let start = self.begin(&mut self.lock(), tenant);
        let guard = StartGuard { registry: self, tenant: tenant.to_owned(), start };
        let (actor, join) = self.spawn(tenant, fence).await?;
        self.finish(tenant, start, actor, join);
        drop(guard);
        Ok(())
    }

    fn args(&self, tenant: &str, state: TenantState, log_seq: u64, fence: Fence) -> TenantArgs {
        // The series exists from the first start, so `increase()` sees the first restart.
        metrics::counter!(crate::metrics::ACTOR_RESTARTS, "kind" => "tenant", "tenant" => tenant.to_owned())
            .increment(0);
        TenantArgs {
            tenant: tenant.to_owned(),
            state,
            log_seq,
            store: self.inner.store.clone(),
            hub: self.inner.hub.clone(),
            snapshot_every: self.inner.options.snapshot_every,
            fence,
            webhooks: self.inner.options.webhooks.clone(),
        }
    }

    /// Rebuilds a tenant from its snapshot and the log after it, and starts its actor.
    async fn spawn(
        &self,
        tenant: &str,
        fence: Fence,
    ) -> Result<(ActorRef<TenantMsg>, Join), Error> {
        let name = tenant.to_owned();
        let (state, log_seq) =
            blocking(&self.inner.store, move |store| Ok(replay(store, &name))).await??;
        let args = self.args(tenant, state, log_seq, fence);
        Actor::spawn(None, TenantActor, args).await.map_err(|e| Error::Internal(e.to_string()))
    }

    /// The live actor of a tenant, with a place in its budget; waits (until `deadline`) while
    /// the tenant is starting or restarting.
    async fn actor(
        &self,
        tenant: &str,
        deadline: Instant,
    ) -> Result<(ActorRef<TenantMsg>, OwnedSemaphorePermit), Status> {
        let mut permit = None;
        loop {
            self.fence(tenant)?;
            let mut changed = {
                let tenants = self.lock();
                let Some(entry) = tenants.get(tenant) else {
                    return Err(Error::NotFound(format!("tenant {tenant:?}")).into());
                };
                let held = match permit.take() {
                    Some(held) => held,
                    None => entry
                        .budget
                        .clone()
                        .try_acquire_owned()
                        .map_err(|_| busy(tenant, self.inner.options.tenant_in_flight))?,
                };
                match &entry.slot {
                    Slot::Live(actor) if accepting(actor) => return Ok((actor.clone(), held)),
                    // Stopping or stopped: its supervisor restarts it.
                    Slot::Live(_) | Slot::Starting(_) => {
                        permit = Some(held);
                        entry.changed.subscribe()
                    }
                }
            };
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                return Err(Status::unavailable(format!(
                    "tenant {tenant} is restarting and did not become ready within {} s; retry \
                     with backoff and the same request_id",
                    self.inner.options.call_timeout.as_secs_f64()
                )));
            }
        }
    }

    /// When a call started now must be answered by.
    fn deadline(&self) -> Instant {
        Instant::now() + self.inner.options.call_timeout
    }

    /// A mutating command; resolves once durable.
    pub async fn command(
        &self,
        tenant: &str,
        op: Op,
        request_id: &str,
    ) -> Result<response::Result, Status> {
        check_request_id(request_id)?;
        let deadline = self.deadline();
        let (actor, _permit) = self.actor(tenant, deadline).await?;
        let request_id = request_id.to_owned();
        // Commands waiting in (or being handled by) tenant mailboxes.
        let depth = metrics::gauge!(crate::metrics::MAILBOX_DEPTH, "kind" => "tenant");
        depth.increment(1.0);
        let call = ask(&actor, |reply| TenantMsg::Command { op, request_id, reply }, None);
        let result = tokio::time::timeout_at(deadline, call).await;
        depth.decrement(1.0);
        let result = result
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "tenant {tenant} did not answer within {} s; the command may have been \
                     applied: retry with backoff and the same request_id to learn its outcome",
                    self.inner.options.call_timeout.as_secs_f64()
                ))
            })?
            .map_err(|e| Status::unavailable(format!("tenant {tenant} is restarting: {e}")))?;
        match result {
            ractor::rpc::CallResult::Success(r) => r,
            _ => Err(Status::unavailable(format!(
                "tenant {tenant} is restarting; retry with the same request_id"
            ))),
        }
    }

    /// Creates a tenant: its first log record is the `CreateTenant` command. Runs to the end
    /// on a task of its own, so a caller that goes away cannot leave it half done. A request
    /// that names no routing gets [`DEFAULT_ROUTING`], written into the logged command: a
    /// command logged before the default changed (`TENANT_ROUTING_UNSPECIFIED`, which the
    /// tenant actor reads as itself) replays as it was applied.
    pub async fn create_tenant(
        &self,
        mut req: pb::CreateTenantRequest,
    ) -> Result<response::Result, Status> {
        if req.routing == pb::TenantRouting::Unspecified as i32 {
            req.routing = DEFAULT_ROUTING as i32;
        }
        crate::names::check_id("tenant_id", &req.tenant_id)?;
        check_request_id(&req.request_id)?;
        let registry = self.clone();
        tokio::spawn(async move { registry.create(req).await }).await.map_err(|e| {
            Status::unavailable(format!(
                "tenant creation interrupted ({e}); retry with the same request_id"
            ))
        })?
    }

    async fn create(&self, req: pb::CreateTenantRequest) -> Result<response::Result, Status> {
        let id = req.tenant_id.clone();
        let deadline = self.deadline();
        let start = loop {
            let fence = self.fence(&id)?;
            let starting = {
                let mut tenants = self.lock();
                match tenants.get(&id) {
                    None => break (self.begin(&mut tenants, &id), fence),
                    Some(entry) if matches!(entry.slot, Slot::Starting(_)) => {
                        Some(entry.changed.subscribe())
                    }
                    Some(_) => None,
                }
            };
            let Some(mut changed) = starting else { return self.created_before(&req).await };
            // Being created (or loaded) right now: the outcome decides.
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                return Err(Status::unavailable(format!(
                    "tenant {id} is being created or loaded; retry with the same request_id"
                )));
            }
        };
        let (start, fence) = start;
        let guard = StartGuard { registry: self, tenant: id.clone(), start };
        let args = self.args(&id, TenantState::default(), 0, fence);
        let (actor, join) = Actor::spawn(None, TenantActor, args)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let request_id = req.request_id.clone();
        let op = Op::CreateTenant(req);
        let result = ask(&actor, |reply| TenantMsg::Command { op, request_id, reply }, None).await;
        let result = match result {
            Ok(ractor::rpc::CallResult::Success(Ok(r))) => {
                info!(tenant = %id, "tenant created");
                self.finish(&id, start, actor, join);
                Ok(r)
            }
            Ok(ractor::rpc::CallResult::Success(Err(status))) => {
                actor.stop(None);
                Err(status)
            }
            _ => {
                actor.stop(None);
                Err(Status::unavailable(
                    "tenant creation interrupted; retry with the same request_id",
                ))
            }
        };
        drop(guard);
        result
    }

    /// The answer to a creation of a tenant that exists: the original answer to a retry of
    /// its creation, else ALREADY_EXISTS. If the lookup fails we cannot tell a retry from a
    /// second creation: retryable.
    async fn created_before(
        &self,
        req: &pb::CreateTenantRequest,
    ) -> Result<response::Result, Status> {
        let id = req.tenant_id.clone();
        if req.request_id.is_empty() {
            return Err(Error::AlreadyExists(format!("tenant {id:?}")).into());
        }
        let (tenant, request_id) = (id.clone(), req.request_id.clone());
        let found =
            blocking(&self.inner.store, move |store| Ok(store.find_response(&tenant, &request_id)))
                .await?
                .map_err(|e| {
                    Error::Unavailable(format!(
                        "cannot tell whether request_id {:?} created tenant {id:?} (the store's \
                 lookup failed: {e}); retry with the same request_id",
                        req.request_id
                    ))
                })?;
        if let Some(bytes) = found
            && let Ok(resp) = switchboard_proto::internal::v1::Response::decode(bytes.as_slice())
            && let Some(result) = resp.result
        {
            crate::metrics::replayed(&req.tenant_id);
            return Ok(result);
        }
        Err(Error::AlreadyExists(format!("tenant {id:?}")).into())
    }

    /// Runs `f` on the tenant's current state, on its actor.
    pub async fn read<T: Send + 'static>(
        &self,
        tenant: &str,
        f: impl FnOnce(&TenantState) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let deadline = self.deadline();
        let (actor, _permit) = self.actor(tenant, deadline).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        actor
            .cast(TenantMsg::Read(Box::new(move |state| {
                let _ = tx.send(f(state));
            })))
            .map_err(|_| Status::unavailable(format!("tenant {tenant} is restarting")))?;
        match tokio::time::timeout_at(deadline, answer_or_stop(actor.get_cell(), rx)).await {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(Status::unavailable(format!("tenant {tenant} is restarting"))),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "tenant {tenant} did not answer within {} s; retry with backoff",
                self.inner.options.call_timeout.as_secs_f64()
            ))),
        }
    }

    /// Runs `f` on a conversation of the tenant, live or archived, with the tenant's state
    /// (for names) and its customer's id. A live or not-yet-durable one is read on the actor; an archived one is
    /// read from the store off the actor first.
    pub async fn with_conversation<T, F>(&self, tenant: &str, n: u64, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&TenantState, &Conversation, Option<&ConversationExtra>, &str) -> T
            + Send
            + 'static,
    {
        let first = self
            .read(tenant, move |s| {
                let id = ConversationId(n);
                if let Some(c) = s.engine.conversation(id) {
                    let customer = s.customers.name(c.customer.0);
                    return Ok(f(s, c, s.conversation_extra.get(&id), customer));
                }
                match s.archiving.get(&n).map(|(_, body)| archive::decode(body)) {
                    Some(Ok(a)) => Ok(f(s, &a.conversation, Some(&a.extra), &a.customer)),
                    _ => Err(f),
                }
            })
            .await?;
        let f = match first {
            Ok(found) => return Ok(found),
            Err(f) => f,
        };
        let (store, name) = (Arc::clone(self.store()), tenant.to_owned());
        let row = tokio::task::spawn_blocking(move || store.archived(&name, n))
            .await
            .map_err(|e| Status::unavailable(format!("archive read interrupted: {e}")))?
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("conversation {n} of tenant {tenant}")))?;
        let a = archive::decode(&row.body)?;
        self.read(tenant, move |s| f(s, &a.conversation, Some(&a.extra), &a.customer)).await
    }

    /// A customer of the tenant, in memory or out of the store.
    pub async fn customer(&self, tenant: &str, id: &str) -> Result<pb::Customer, Status> {
        self.customer_checked(tenant, id, |_, _| Ok(())).await
    }

    /// A customer of the tenant, in memory or out of the store, once `check` allows its
    /// routing record (`None` for a customer never routed) to be shown.
    pub async fn customer_checked(
        &self,
        tenant: &str,
        id: &str,
        check: impl Fn(&TenantState, Option<&Customer>) -> Result<(), Error> + Send + Clone + 'static,
    ) -> Result<pb::Customer, Status> {
        let wanted = id.to_owned();
        let first_check = check.clone();
        let first = self
            .read(tenant, move |s| {
                if let Some(u) = s.customers.get(&wanted) {
                    let u = CustomerId(u);
                    return Some(
                        first_check(s, s.engine.customer(u)).map(|()| resources::customer(s, u)),
                    );
                }
                let (_, body) = s.evicting.get(&wanted)?;
                Some(archive::decode_customer(body).and_then(|r| {
                    first_check(s, Some(&r.customer))?;
                    Ok(resources::customer_view(s, &r.id, Some(&r.customer), Some(&r.profile)))
                }))
            })
            .await?;
        if let Some(found) = first {
            return found.map_err(Status::from);
        }
        let (store, name, wanted) = (Arc::clone(self.store()), tenant.to_owned(), id.to_owned());
        let body = tokio::task::spawn_blocking(move || store.customer(&name, &wanted))
            .await
            .map_err(|e| Status::unavailable(format!("store read interrupted: {e}")))?
            .map_err(Error::from)?
            .ok_or_else(|| Error::NotFound(format!("name: customer {id:?} of tenant {tenant}")))?;
        let r = archive::decode_customer(&body)?;
        self.read(tenant, move |s| {
            check(s, Some(&r.customer))?;
            Ok(resources::customer_view(s, &r.id, Some(&r.customer), Some(&r.profile)))
        })
        .await?
        .map_err(|e: Error| Status::from(e))
    }

    /// Every tenant: this node's on a single node, the whole cluster's (from the shared
    /// store) in a cluster.
    pub async fn tenants(&self) -> Result<Vec<String>, Status> {
        if self.inner.ownership.is_none() {
            return Ok(self.lock().keys().cloned().collect());
        }
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || store.tenants())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Error::from(e).into())
    }

    /// A tenant's resource, read here or asked of its owner (with the caller's credentials).
    pub async fn tenant_resource(
        &self,
        tenant: &str,
        credentials: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    ) -> Result<pb::Tenant, Status> {
        match self.read(tenant, crate::convert::resources::tenant).await {
            Err(status) if status.metadata().contains_key(MOVED) => {
                let Some(ownership) = &self.inner.ownership else { return Err(status) };
                let crate::cluster::Route::Remote { addr, .. } = ownership.route(tenant) else {
                    return Err(status);
                };
                let channel = ownership.peers().channel(&addr)?;
                let mut client =
                    switchboard_proto::v1::admin_service_client::AdminServiceClient::new(channel);
                let mut req = tonic::Request::new(pb::GetTenantRequest {
                    name: crate::names::tenant_name(tenant),
                });
                req.metadata_mut().insert(
                    crate::cluster::forward::HOP,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
                if let Some(credentials) = credentials {
                    req.metadata_mut().insert("authorization", credentials.clone());
                }
                Ok(client.get_tenant(req).await?.into_inner())
            }
            other => other,
        }
    }

    /// Snapshots every tenant and stops its actor (graceful shutdown).
    pub async fn shutdown(&self) {
        let tenants: Vec<(String, Entry)> = std::mem::take(&mut *self.lock()).into_iter().collect();
        for (name, entry) in tenants {
            if let Some(actor) = entry.live() {
                snapshot_and_stop(&name, actor).await;
            }
        }
    }

    /// Calls of `tenant` waiting for or handled by its actor now.
    #[cfg(test)]
    fn in_flight(&self, tenant: &str) -> usize {
        let tenants = self.lock();
        let free = tenants.get(tenant).map_or(0, |e| e.budget.available_permits());
        self.inner.options.tenant_in_flight - free
    }

    /// Releases of `shard` asked so far.
    #[cfg(test)]
    fn releases(&self, shard: u32) -> u64 {
        self.shard(shard).1.releases.load(Ordering::SeqCst)
    }

    /// The tenant's live actor, if it has one.
    #[cfg(test)]
    fn live(&self, tenant: &str) -> Option<ActorRef<TenantMsg>> {
        self.lock().get(tenant).and_then(|e| match &e.slot {
            Slot::Live(a) if accepting(a) => Some(a.clone()),
            _ => None,
        })
    }
}

type Join = tokio::task::JoinHandle<()>;

impl Entry {
    /// Changes the slot and tells the waiting calls; returns the actor it held, if any.
    fn set(&mut self, slot: Slot) -> Option<ActorRef<TenantMsg>> {
        let old = std::mem::replace(&mut self.slot, slot);
        self.changed.send_replace(());
        match old {
            Slot::Live(actor) => Some(actor),
            Slot::Starting(_) => None,
        }
    }

    fn live(&self) -> Option<ActorRef<TenantMsg>> {
        match &self.slot {
            Slot::Live(actor) => Some(actor.clone()),
            Slot::Starting(_) => None,
        }
    }
}

fn accepting(actor: &ActorRef<TenantMsg>) -> bool {
    matches!(
        actor.get_status(),
        ActorStatus::Running | ActorStatus::Starting | ActorStatus::Upgrading
    )
}

/// The refusal of a call over the tenant's budget.
fn busy(tenant: &str, limit: usize) -> Status {
    Status::resource_exhausted(format!(
        "tenant {tenant} has {limit} calls waiting or in flight on this node (limits.tenant_in_flight); \
         retry with backoff and the same request_id"
    ))
}

/// Watches one tenant actor after another: when the one it watches stops and the registry
/// did not stop it (its slot still names it), restarts the tenant from the store after a
/// backoff, for as long as this node serves the tenant's shard. Ends when the tenant is
/// released, replaced or shut down.
async fn supervise(
    registry: Weak<Inner>,
    tenant: String,
    mut actor: ActorRef<TenantMsg>,
    mut join: Join,
) {
    let mut delay = Duration::ZERO;
    loop {
        let ran = Instant::now();
        let _ = join.await;
        let Some(inner) = registry.upgrade() else { return };
        let me = Registry { inner };
        let (min, max) = (me.inner.options.restart_min, me.inner.options.restart_max);
        let start = {
            let mut tenants = me.lock();
            match tenants.get(&tenant) {
                Some(e) if matches!(&e.slot, Slot::Live(a) if a.get_id() == actor.get_id()) => {
                    me.begin(&mut tenants, &tenant)
                }
                _ => return, // stopped by the registry
            }
        };
        if ran.elapsed() >= max {
            delay = Duration::ZERO;
        }
        drop(me);
        loop {
            delay = if delay.is_zero() { min } else { (delay * 2).min(max) };
            warn!(
                tenant,
                delay_ms = delay.as_millis() as u64,
                "tenant actor stopped; restarting it from the store"
            );
            tokio::time::sleep(delay).await;
            let Some(inner) = registry.upgrade() else { return };
            let me = Registry { inner };
            let ours = matches!(me.lock().get(&tenant), Some(e) if matches!(e.slot, Slot::Starting(n) if n == start));
            if !ours {
                return;
            }
            // Not served here for now (a shard on the move): its release ends this task.
            let Ok(fence) = me.fence(&tenant) else { continue };
            match me.spawn(&tenant, fence).await {
                Ok((next, next_join)) => {
                    let mut tenants = me.lock();
                    match tenants.get_mut(&tenant) {
                        Some(e) if matches!(e.slot, Slot::Starting(n) if n == start) => {
                            e.set(Slot::Live(next.clone()));
                        }
                        _ => {
                            drop(tenants);
                            next.stop(Some("superseded".into()));
                            return;
                        }
                    }
                    info!(tenant, "tenant actor restarted");
                    let t = tenant.clone();
                    metrics::counter!(crate::metrics::ACTOR_RESTARTS, "kind" => "tenant", "tenant" => t)
                        .increment(1);
                    (actor, join) = (next, next_join);
                    break;
                }
                Err(e) => warn!(tenant, error = %e, "tenant did not load; retrying"),
            }
        }
    }
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    read: impl FnOnce(&dyn Store) -> switchboard_store::Result<T> + Send + 'static,
) -> Result<T, Error> {
    let store = Arc::clone(store);
    let read = tokio::task::spawn_blocking(move || read(store.as_ref()));
    Ok(read.await.map_err(|e| Error::Unavailable(format!("store read interrupted: {e}")))??)
}

async fn snapshot_and_stop(name: &str, actor: ActorRef<TenantMsg>) {
    match ask(&actor, TenantMsg::Snapshot, Some(std::time::Duration::from_secs(30))).await {
        Ok(ractor::rpc::CallResult::Success(())) => {}
        other => warn!(tenant = %name, result = ?other.map(|_| ()), "no snapshot on stopping"),
    }
    actor.stop(None);
}

/// Metadata key on a refusal that a forwarding node should retry elsewhere.
pub const MOVED: &str = "x-switchboard-moved";

/// UNAVAILABLE marked [`MOVED`]: the call belongs to another node (or to none, for now).
pub fn moved_status(message: String) -> Status {
    let mut status = Status::unavailable(message);
    status.metadata_mut().insert(MOVED, tonic::metadata::MetadataValue::from_static("1"));
    status
}

/// The refusal for a tenant this node does not serve (any more): retryable, naming the owner
/// this node knows of.
fn moved(ownership: &Ownership, tenant: &str) -> Status {
    let shard = ownership.shard_of(tenant);
    let owner = match ownership.route(tenant) {
        crate::cluster::Route::Remote { node, addr } => format!("node {node} at {addr}"),
        _ => "no node yet (a handover or failover is in progress)".into(),
    };
    moved_status(format!(
        "tenant {tenant} (shard {shard}) is not served by node {}; its owner is {owner}. Retry; any node forwards to the owner",
        ownership.node_id()
    ))
}

/// Longest request id.
const MAX_REQUEST_ID: usize = 128;

/// What a call asked, as a stored answer keeps it to tell a retry from another call under
/// the same request id: the first 16 bytes of the SHA-256 of the call's bytes.
pub(crate) fn call_digest(bytes: &[u8]) -> [u8; 16] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 16];
    out.copy_from_slice(&digest.as_ref()[..16]);
    out
}

pub(crate) fn check_request_id(id: &str) -> Result<(), Error> {
    if id.len() > MAX_REQUEST_ID {
        return Err(Error::field("request_id", format!("longer than {MAX_REQUEST_ID} bytes")));
    }
    Ok(())
}

/// The snapshot plus every command after it, applied in order.
pub(crate) fn replay(store: &dyn Store, tenant: &str) -> Result<(TenantState, u64), Error> {
    let loaded = store.load(tenant)?;
    let (mut state, mut seq) = match loaded.snapshot {
        Some((seq, bytes)) => {
            let state = TenantState::decode_snapshot(&bytes)
                .map_err(|e| Error::Internal(format!("snapshot of {tenant} at {seq}: {e}")))?;
            (state, seq)
        }
        None => (TenantState::default(), 0),
    };
    let records = loaded.log.len();
    for record in loaded.log {
        let cmd = Command::decode(record.command.as_slice())
            .map_err(|e| Error::Internal(format!("log record {} of {tenant}: {e}", record.seq)))?;
        if let Err(e) = apply::apply(&mut state, &cmd) {
            // Only accepted commands are logged, so this means the rules changed under the log.
            warn!(tenant, seq = record.seq, error = %e, "a logged command was refused on replay");
        }
        seq = record.seq;
    }
    info!(tenant, records, seq, "tenant loaded");
    Ok((state, seq))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    use prost::Message as _;
    use switchboard_proto::internal::v1::{Command, command::Op, response};
    use switchboard_proto::v1 as pb;
    use switchboard_store::{
        Batch, Fence, Loaded, LogRecord, Message, Pending, SqliteOptions, SqliteStore, Store,
        StreamEntry,
    };

    use super::{Options, Registry};
    use crate::hub::Hub;

    fn sqlite(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap()
    }

    async fn open(store: &Arc<dyn Store>) -> Registry {
        Registry::load(store.clone(), Hub::default(), Options::default()).await.unwrap()
    }

    async fn create(registry: &Registry) {
        // The tenant actor's registry is under test: its conversations are the tenant actor's.
        let req = pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            routing: pb::TenantRouting::TenantActor as i32,
            ..Default::default()
        };
        registry.create_tenant(req).await.unwrap();
    }

    fn group(id: &str) -> Op {
        Op::PutGroup(pb::PutGroupRequest {
            name: format!("tenants/acme/groups/{id}"),
            ..Default::default()
        })
    }

    fn log(store: &dyn Store) -> Vec<LogRecord> {
        store.load("acme").unwrap().log
    }

    /// The previous owner's wall clock ran an hour ahead of this node's (or this node's clock
    /// was set back): whether the tenant comes back from its log or from a snapshot, the next
    /// command is logged no earlier than the last one, so FIFO by time holds.
    #[tokio::test]
    async fn a_reloaded_tenant_never_logs_a_time_before_its_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(sqlite(&dir));
        let registry = open(&store).await;
        create(&registry).await;
        registry.shutdown().await;

        let ahead = crate::clock::now().as_millis() + 3_600_000;
        let (snapshot_seq, _) = store.load("acme").unwrap().snapshot.expect("snapshot");
        let cmd = Command { at_ms: ahead, op: Some(group("a")), ..Default::default() };
        let record = LogRecord {
            seq: snapshot_seq + 1,
            at_ms: ahead,
            request_id: None,
            command: cmd.encode_to_vec(),
            response: Vec::new(),
        };
        store
            .append(Batch { tenant: "acme".into(), log: vec![record], ..Batch::default() })
            .await
            .unwrap();

        // Replayed from the log.
        let registry = open(&store).await;
        registry.command("acme", group("b"), "").await.unwrap();
        let last = log(store.as_ref()).pop().unwrap();
        assert!(last.at_ms >= ahead, "logged at {} after {ahead}", last.at_ms);
        registry.shutdown().await;

        // Restored from the snapshot alone.
        assert!(log(store.as_ref()).is_empty(), "the snapshot replaced the log");
        let registry = open(&store).await;
        registry.command("acme", group("c"), "").await.unwrap();
        let next = log(store.as_ref()).pop().unwrap();
        assert!(next.at_ms >= last.at_ms, "logged at {} after {}", next.at_ms, last.at_ms);
        registry.shutdown().await;
    }

    /// Which append to refuse.
    type Refusal = fn(&Batch) -> bool;

    /// A real store with faults to inject: idempotency lookups fail while `failing` is set;
    /// the next append that `refuse` matches is refused; loads and lookups of the tenant
    /// named in `gate` wait until it is cleared.
    #[derive(Default)]
    struct Faulty {
        inner: Option<SqliteStore>,
        failing: AtomicBool,
        refuse: Mutex<Option<Refusal>>,
        refused: AtomicUsize,
        gate: Mutex<Option<String>>,
        opened: Condvar,
        loads: Mutex<BTreeMap<String, usize>>,
    }

    impl Faulty {
        fn new(dir: &tempfile::TempDir, failing: bool) -> Self {
            Faulty {
                inner: Some(sqlite(dir)),
                failing: AtomicBool::new(failing),
                ..Faulty::default()
            }
        }

        fn inner(&self) -> &SqliteStore {
            self.inner.as_ref().expect("a store")
        }

        /// Waits while `tenant`'s loads and lookups are held.
        fn pass(&self, tenant: &str) {
            let mut gate = self.gate.lock().unwrap();
            while gate.as_deref() == Some(tenant) {
                gate = self.opened.wait(gate).unwrap();
            }
        }

        fn hold(&self, tenant: &str) {
            *self.gate.lock().unwrap() = Some(tenant.to_owned());
        }

        fn open_gate(&self) {
            *self.gate.lock().unwrap() = None;
            self.opened.notify_all();
        }

        fn loads(&self, tenant: &str) -> usize {
            self.loads.lock().unwrap().get(tenant).copied().unwrap_or(0)
        }
    }

    impl Store for Faulty {
        fn request_retention(&self) -> std::time::Duration {
            self.inner().request_retention()
        }
        fn stats(&self) -> switchboard_store::Stats {
            self.inner().stats()
        }
        /// It refuses batches on its own (not through the writer): nothing goes early.
        fn generation(&self, _tenant: &str) -> Option<u64> {
            None
        }
        fn append(&self, batch: Batch) -> Pending {
            let refuse = self.refuse.lock().unwrap().take_if(|refuse| refuse(&batch));
            if refuse.is_some() {
                self.refused.fetch_add(1, Ordering::SeqCst);
                let e = switchboard_store::Error::from(std::io::Error::other("disk full"));
                return Box::pin(std::future::ready(Err(e)));
            }
            self.inner().append(batch)
        }
        fn append_assigned(&self, batch: Batch) -> switchboard_store::Assigned {
            self.inner().append_assigned(batch)
        }
        fn snapshot(&self, tenant: &str, fence: Fence, seq: u64, bytes: Vec<u8>) -> Pending {
            self.inner().snapshot(tenant, fence, seq, bytes)
        }
        fn raise_fence(&self, fence: Fence) -> Pending {
            self.inner().raise_fence(fence)
        }
        fn trim_stream(&self, tenant: &str, stream: &str, keep_last: usize) -> Pending {
            self.inner().trim_stream(tenant, stream, keep_last)
        }
        fn tenants(&self) -> switchboard_store::Result<Vec<String>> {
            self.inner().tenants()
        }
        fn reserve(
            &self,
            tenant: &str,
            counter: &str,
            count: u64,
        ) -> switchboard_store::Result<u64> {
            self.inner().reserve(tenant, counter, count)
        }
        fn bind_customer(
            &self,
            tenant: &str,
            name: &str,
            number: u64,
        ) -> switchboard_store::Result<u64> {
            self.inner().bind_customer(tenant, name, number)
        }
        fn customer_number(
            &self,
            tenant: &str,
            name: &str,
        ) -> switchboard_store::Result<Option<u64>> {
            self.inner().customer_number(tenant, name)
        }
        fn customer_name(
            &self,
            tenant: &str,
            number: u64,
        ) -> switchboard_store::Result<Option<String>> {
            self.inner().customer_name(tenant, number)
        }
        fn tenant_exists(&self, tenant: &str) -> switchboard_store::Result<bool> {
            self.inner().tenant_exists(tenant)
        }
        fn load(&self, tenant: &str) -> switchboard_store::Result<Loaded> {
            *self.loads.lock().unwrap().entry(tenant.to_owned()).or_default() += 1;
            self.pass(tenant);
            self.inner().load(tenant)
        }
        fn read_stream(
            &self,
            tenant: &str,
            stream: &str,
            after_seq: u64,
            limit: usize,
        ) -> switchboard_store::Result<Vec<StreamEntry>> {
            self.inner().read_stream(tenant, stream, after_seq, limit)
        }
        fn last_stream_seq(
            &self,
            tenant: &str,
            stream: &str,
        ) -> switchboard_store::Result<Option<u64>> {
            self.inner().last_stream_seq(tenant, stream)
        }
        fn messages(
            &self,
            tenant: &str,
            conversation: u64,
            after_seq: u64,
            limit: usize,
        ) -> switchboard_store::Result<Vec<Message>> {
            self.inner().messages(tenant, conversation, after_seq, limit)
        }
        fn find_response(
            &self,
            tenant: &str,
            request_id: &str,
        ) -> switchboard_store::Result<Option<Vec<u8>>> {
            self.pass(tenant);
            if self.failing.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("disk unreadable").into());
            }
            self.inner().find_response(tenant, request_id)
        }
        fn actor_response(
            &self,
            tenant: &str,
            request_id: &str,
        ) -> switchboard_store::Result<Option<Vec<u8>>> {
            self.inner().actor_response(tenant, request_id)
        }
        fn conversation_customer(
            &self,
            tenant: &str,
            conversation: u64,
        ) -> switchboard_store::Result<Option<u64>> {
            self.inner().conversation_customer(tenant, conversation)
        }
        fn scan_archived(
            &self,
            tenant: &str,
            scan: &switchboard_store::ArchiveScan,
        ) -> switchboard_store::Result<switchboard_store::ArchiveWindow> {
            self.inner().scan_archived(tenant, scan)
        }
        fn scan_customers(
            &self,
            tenant: &str,
            after: &str,
            limit: usize,
        ) -> switchboard_store::Result<Vec<switchboard_store::CustomerRecord>> {
            self.inner().scan_customers(tenant, after, limit)
        }
        fn find_customers(
            &self,
            tenant: &str,
            field: switchboard_store::ContactField,
            value: &str,
            after: &str,
            limit: usize,
        ) -> switchboard_store::Result<Vec<switchboard_store::CustomerRecord>> {
            self.inner().find_customers(tenant, field, value, after, limit)
        }
        fn archived(
            &self,
            tenant: &str,
            conversation: u64,
        ) -> switchboard_store::Result<Option<switchboard_store::Archived>> {
            self.inner().archived(tenant, conversation)
        }
        fn list_archived(
            &self,
            tenant: &str,
            query: &switchboard_store::ArchiveQuery,
        ) -> switchboard_store::Result<Vec<switchboard_store::Archived>> {
            self.inner().list_archived(tenant, query)
        }
        fn count_archived(&self, tenant: &str) -> switchboard_store::Result<u64> {
            self.inner().count_archived(tenant)
        }
        fn customer(
            &self,
            tenant: &str,
            customer: &str,
        ) -> switchboard_store::Result<Option<Vec<u8>>> {
            self.inner().customer(tenant, customer)
        }
        fn actor(
            &self,
            tenant: &str,
            kind: &str,
            key: &str,
        ) -> switchboard_store::Result<Option<switchboard_store::ActorState>> {
            self.inner().actor(tenant, kind, key)
        }
        fn list_actors(
            &self,
            tenant: &str,
            kind: &str,
            after: &str,
            limit: usize,
        ) -> switchboard_store::Result<Vec<switchboard_store::ActorState>> {
            self.inner().list_actors(tenant, kind, after, limit)
        }
        fn retain(&self, tenant: &str, fence: Fence, now_ms: u64, before_ms: u64) -> Pending {
            self.inner().retain(tenant, fence, now_ms, before_ms)
        }
    }

    /// A retry whose idempotency lookup fails is refused as retryable and applies nothing;
    /// once the store answers again, the same retry gets the original answer.
    #[tokio::test]
    async fn a_failed_idempotency_lookup_refuses_instead_of_applying_twice() {
        let dir = tempfile::tempdir().unwrap();
        let flaky = Arc::new(Faulty::new(&dir, false));
        let store: Arc<dyn Store> = flaky.clone();
        let registry = open(&store).await;
        create(&registry).await;
        let first = registry.command("acme", group("a"), "r1").await.unwrap();
        // Restarted: the answer of r1 is in the store only.
        registry.shutdown().await;
        let registry = open(&store).await;
        let applied = store.load("acme").unwrap();

        flaky.failing.store(true, Ordering::SeqCst);
        for request_id in ["r1", "r2"] {
            let e = registry.command("acme", group("b"), request_id).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unavailable, "{request_id}: {e:?}");
            assert!(e.message().contains("retry with the same request_id"), "{}", e.message());
        }
        let create_again = pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            request_id: "c1".into(),
            ..Default::default()
        };
        let e = registry.create_tenant(create_again).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert_eq!(store.load("acme").unwrap(), applied, "nothing was logged");
        let groups = registry.read("acme", |s| s.groups.names_after("").count()).await.unwrap();
        assert_eq!(groups, 1, "nothing was applied");

        flaky.failing.store(false, Ordering::SeqCst);
        assert_eq!(registry.command("acme", group("a"), "r1").await.unwrap(), first);
        // The same id for another call: refused, not answered with r1's answer.
        let e = registry.command("acme", group("b"), "r1").await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert_eq!(log(store.as_ref()).len(), applied.log.len(), "r1 was not applied again");
        registry.shutdown().await;
    }

    /// A tenant created on this node knows every request id it logged, so a new id needs no
    /// idempotency lookup: commands go through while the store's lookups fail. A retry is
    /// still answered as the first time.
    #[tokio::test]
    async fn a_new_request_id_of_a_new_tenant_needs_no_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let flaky = Arc::new(Faulty::new(&dir, true));
        let store: Arc<dyn Store> = flaky.clone();
        let registry = open(&store).await;
        create(&registry).await;
        let first = registry.command("acme", group("a"), "r1").await.unwrap();
        registry.command("acme", group("b"), "r2").await.unwrap();
        assert_eq!(log(store.as_ref()).len(), 3, "created, then r1 and r2 applied");

        flaky.failing.store(false, Ordering::SeqCst);
        assert_eq!(registry.command("acme", group("a"), "r1").await.unwrap(), first);
        assert_eq!(log(store.as_ref()).len(), 3, "r1 was not applied again");
        registry.shutdown().await;
    }

    /// A registry over a [`Faulty`] store in `dir`, with tenant "acme" created.
    async fn faulty(dir: &tempfile::TempDir, options: Options) -> (Arc<Faulty>, Registry) {
        let faulty = Arc::new(Faulty::new(dir, false));
        let store: Arc<dyn Store> = faulty.clone();
        let registry = Registry::load(store, Hub::default(), options).await.unwrap();
        create(&registry).await;
        (faulty, registry)
    }

    /// Calls to acme putting groups `a` and `b`, on tasks of their own.
    fn call_acme(
        registry: &Registry,
    ) -> Vec<tokio::task::JoinHandle<Result<response::Result, tonic::Status>>> {
        ["a", "b"]
            .into_iter()
            .map(|g| {
                let registry = registry.clone();
                tokio::spawn(async move { registry.command("acme", group(g), g).await })
            })
            .collect()
    }

    /// Waits (generously) until `done` holds.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let patience = tokio::time::Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(tokio::time::Instant::now() < patience, "gave up waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn named_group(tenant: &str, id: &str) -> Op {
        Op::PutGroup(pb::PutGroupRequest {
            name: format!("tenants/{tenant}/groups/{id}"),
            ..Default::default()
        })
    }

    async fn create_named(registry: &Registry, tenant: &str) {
        let req = pb::CreateTenantRequest {
            tenant_id: tenant.into(),
            routing: pb::TenantRouting::TenantActor as i32,
            ..Default::default()
        };
        registry.create_tenant(req).await.unwrap();
    }

    /// Makes `tenant`'s next write fail, so its actor stops, and holds the reload its
    /// supervisor starts until `store.open_gate()`. Returns once the reload is held.
    async fn stop_and_hold(registry: &Registry, store: &Faulty, tenant: &str) {
        let loads = store.loads(tenant);
        store.hold(tenant);
        *store.refuse.lock().unwrap() = Some(|_| true);
        let e = registry.command(tenant, named_group(tenant, "doomed"), "").await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        until("the supervisor reloads the tenant", || store.loads(tenant) > loads).await;
    }

    async fn groups(registry: &Registry, tenant: &str) -> usize {
        registry.read(tenant, |s| s.groups.names_after("").count()).await.unwrap()
    }

    /// A tenant whose load is slow holds up its own calls only: another tenant is served
    /// meanwhile, and the calls waiting for the slow one are answered by the one actor its
    /// single load starts.
    #[tokio::test]
    async fn a_slow_load_holds_up_only_its_tenant_and_starts_it_once() {
        let dir = tempfile::tempdir().unwrap();
        let (faulty, registry) = faulty(&dir, Options::default()).await;
        create_named(&registry, "beta").await;

        stop_and_hold(&registry, &faulty, "acme").await;
        let waiting = call_acme(&registry);
        until("both calls wait for acme", || registry.in_flight("acme") == 2).await;

        registry.command("beta", named_group("beta", "g"), "").await.unwrap();
        assert_eq!(groups(&registry, "beta").await, 1);
        assert!(waiting.iter().all(|w| !w.is_finished()), "acme's calls wait for its load");

        faulty.open_gate();
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        assert_eq!(faulty.loads("acme"), 1, "one load for every waiting call");
        assert_eq!(groups(&registry, "acme").await, 2, "a and b, not the refused one");
        registry.shutdown().await;
    }

    /// A tenant actor stopped by a failed write comes back by itself, and the timer that was
    /// due fires without any call: the write of the timer's own step fails, the actor stops,
    /// its supervisor reloads it, and the reloaded actor logs the step.
    #[tokio::test]
    async fn a_stopped_tenant_restarts_by_itself_and_its_due_timer_fires() {
        let dir = tempfile::tempdir().unwrap();
        let (faulty, registry) = faulty(&dir, Options::default()).await;
        let t = "tenants/acme";
        let pull = Op::PutGroup(pb::PutGroupRequest {
            name: format!("{t}/groups/sales"),
            policy: Some(pb::RoutingPolicy {
                offer_mode: pb::OfferMode::Pull as i32,
                dedicated_timeout: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let settings =
            pb::TenantSettings { default_group: format!("{t}/groups/sales"), ..Default::default() };
        let update = Op::UpdateTenant(pb::UpdateTenantRequest {
            name: t.into(),
            settings: Some(settings),
            ..Default::default()
        });
        let agent = Op::PutAgent(pb::PutAgentRequest {
            name: format!("{t}/agents/a1"),
            capacity: 2,
            groups: vec![format!("{t}/groups/sales")],
            ..Default::default()
        });
        let online = Op::SetStatus(pb::SetStatusRequest {
            agent: format!("{t}/agents/a1"),
            status: pb::AgentStatus::Online as i32,
            ..Default::default()
        });
        let dedicated = Op::PutCustomer(pb::PutCustomerRequest {
            name: format!("{t}/customers/u1"),
            dedicated_agent: format!("{t}/agents/a1"),
            ..Default::default()
        });
        for op in [pull, update, agent, online, dedicated] {
            registry.command("acme", op, "").await.unwrap();
        }
        let before = registry.live("acme").expect("running").get_id();

        // The first step the timer logs is refused.
        *faulty.refuse.lock().unwrap() = Some(|batch| {
            batch.log.iter().any(|r| {
                Command::decode(r.command.as_slice())
                    .is_ok_and(|c| matches!(c.op, Some(Op::Advance(_))))
            })
        });
        let post = Op::PostMessage(pb::PostMessageRequest {
            customer: format!("{t}/customers/u1"),
            channel: pb::Channel::Web as i32,
            text: "hello".into(),
            ..Default::default()
        });
        registry.command("acme", post, "").await.unwrap();

        let advanced = || {
            log(faulty.inner()).iter().any(|r| {
                Command::decode(r.command.as_slice())
                    .is_ok_and(|c| matches!(c.op, Some(Op::Advance(_))))
            })
        };
        until("the timer's step is durable", advanced).await;
        assert_eq!(faulty.refused.load(Ordering::SeqCst), 1, "its first write was refused");
        assert_eq!(faulty.loads("acme"), 1, "reloaded once, by its supervisor");
        let after = registry.live("acme").expect("running again").get_id();
        assert_ne!(before, after, "a new incarnation");
        registry.shutdown().await;
    }

    /// Calls beyond a tenant's budget are refused at once (RESOURCE_EXHAUSTED, retryable);
    /// the calls within it are served once the tenant is back.
    #[tokio::test]
    async fn calls_beyond_a_tenants_budget_are_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options { tenant_in_flight: 2, ..Options::default() };
        let (faulty, registry) = faulty(&dir, options).await;

        stop_and_hold(&registry, &faulty, "acme").await;
        let waiting = call_acme(&registry);
        until("both calls wait for acme", || registry.in_flight("acme") == 2).await;
        let e = registry.command("acme", group("c"), "c").await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
        assert!(e.message().contains("retry with backoff and the same request_id"), "{e:?}");
        let e = registry.read("acme", |_| ()).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted, "reads count too: {e:?}");

        faulty.open_gate();
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        assert_eq!(registry.in_flight("acme"), 0, "the budget is given back");
        registry.command("acme", group("c"), "c").await.unwrap();
        registry.shutdown().await;
    }

    /// A call waits for its tenant at most the call timeout: UNAVAILABLE while the tenant
    /// does not come back, DEADLINE_EXCEEDED when its actor took the command but did not
    /// answer in time (it may be applied: the retry with the same request_id tells).
    #[tokio::test]
    async fn a_call_waits_for_its_tenant_at_most_the_call_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options { call_timeout: Duration::from_millis(200), ..Options::default() };
        let (faulty, registry) = faulty(&dir, options).await;

        stop_and_hold(&registry, &faulty, "acme").await;
        let e = registry.command("acme", group("a"), "a").await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
        assert!(e.message().contains("retry with backoff and the same request_id"), "{e:?}");
        assert_eq!(registry.in_flight("acme"), 0, "the budget is given back");

        // The reloaded actor asks the store whether "a" was seen; the lookup is held.
        faulty.open_gate();
        until("acme is back", || registry.live("acme").is_some()).await;
        faulty.hold("acme");
        let e = registry.command("acme", group("a"), "a").await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
        assert!(e.message().contains("the same request_id"), "{e:?}");
        faulty.open_gate();
        registry.command("acme", group("a"), "a").await.unwrap();
        assert_eq!(groups(&registry, "acme").await, 1, "applied once");
        registry.shutdown().await;
    }

    /// A release of a shard that comes while its adoption is still loading a tenant wins:
    /// the adoption does not serve the shard, and what it started is stopped.
    #[tokio::test]
    async fn a_release_overtaking_an_adoption_keeps_the_shard_unserved() {
        let dir = tempfile::tempdir().unwrap();
        let (faulty, single) = faulty(&dir, Options::default()).await;
        single.shutdown().await;
        let store: Arc<dyn Store> = faulty.clone();
        let ownership = crate::cluster::Ownership::new("n1".into(), 4, None);
        let shard = ownership.shard_of("acme");
        let options = Options::default();
        let registry =
            Registry::clustered(store.clone(), Hub::default(), options, ownership.clone());
        let known = vec!["acme".to_owned()];
        // What the membership task does before adopting: a live lease, a grant per epoch.
        let hour = std::time::Duration::from_secs(3600);
        ownership.set_serve_until(Some(tokio::time::Instant::now() + hour));
        ownership.grant(shard, 1);

        faulty.hold("acme");
        let r = registry.clone();
        let k = known.clone();
        let adopting = tokio::spawn(async move { r.adopt(shard, 1, &k).await });
        until("acme loads", || faulty.loads("acme") == 1).await;
        let r = registry.clone();
        let releasing = tokio::spawn(async move { r.release(shard, false).await });
        until("the release is asked", || registry.releases(shard) == 1).await;
        faulty.open_gate();
        adopting.await.unwrap().unwrap();
        releasing.await.unwrap();
        assert!(!ownership.is_local(shard), "the shard is not served");
        assert!(registry.live("acme").is_none(), "what the adoption started is stopped");
        let e = registry.command("acme", group("a"), "").await.unwrap_err();
        assert!(e.metadata().contains_key(super::MOVED), "{e:?}");

        // The next adoption serves it.
        store.raise_fence(Fence { shard, epoch: 2 }).await.unwrap();
        ownership.grant(shard, 2);
        registry.adopt(shard, 2, &known).await.unwrap();
        assert!(ownership.is_local(shard));
        registry.command("acme", group("a"), "").await.unwrap();
        registry.shutdown().await;
    }
}
