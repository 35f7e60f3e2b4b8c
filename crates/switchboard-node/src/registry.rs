//! The tenants of this node: loads each from the store (snapshot + replay of the log after
//! it), spawns its actor, and routes calls to it.
//!
//! Restart policy: a tenant actor that stopped (a failed durable write) is reloaded from the
//! store on the next call, so nothing acknowledged is lost and nothing unacknowledged is kept.

use std::collections::BTreeMap;
use std::sync::Arc;

use prost::Message as _;
use ractor::{Actor, ActorRef, ActorStatus};
use switchboard_core::engine::Customer;
use switchboard_core::{Conversation, ConversationId, CustomerId};
use switchboard_proto::internal::v1::{Command, command::Op, response};
use switchboard_proto::v1 as pb;
use switchboard_store::{Fence, Store};
use tokio::sync::Mutex;
use tracing::{info, warn};

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
}

impl Default for Options {
    fn default() -> Self {
        Options { snapshot_every: 10_000, webhooks: crate::webhooks::Options::default() }
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
    tenants: Mutex<BTreeMap<String, ActorRef<TenantMsg>>>,
    /// In a cluster: the shards this node serves. `None` on a single node, which serves every
    /// tenant under the default fence.
    ownership: Option<Arc<Ownership>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("options", &self.inner.options).finish_non_exhaustive()
    }
}

type Status = tonic::Status;

impl Registry {
    /// Loads every tenant the store knows.
    pub async fn load(
        store: Arc<dyn Store>,
        hub: Hub,
        options: Options,
    ) -> Result<Registry, Error> {
        let registry = Registry::new(store, hub, options, None);
        let names = registry.inner.store.tenants()?;
        let mut tenants = registry.inner.tenants.lock().await;
        for name in names {
            let actor = registry.spawn(&name, Fence::default()).await?;
            tenants.insert(name, actor);
        }
        drop(tenants);
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
        let tenants = Mutex::default();
        Registry { inner: Arc::new(Inner { store, hub, options, tenants, ownership }) }
    }

    pub fn ownership(&self) -> Option<&Arc<Ownership>> {
        self.inner.ownership.as_ref()
    }

    /// The fence this node writes `tenant` under, or a retryable refusal naming the owner.
    fn fence(&self, tenant: &str) -> Result<Fence, Status> {
        let Some(ownership) = &self.inner.ownership else { return Ok(Fence::default()) };
        ownership.local_fence(tenant).ok_or_else(|| moved(ownership, tenant))
    }

    /// Starts the tenants of a shard this node now owns (their epoch fenced in the store
    /// already), then serves the shard.
    pub async fn adopt(&self, shard: u32, epoch: u64, known: &[String]) -> Result<(), Error> {
        let Some(ownership) = self.inner.ownership.clone() else { return Ok(()) };
        let fence = Fence { shard, epoch };
        let mut tenants = self.inner.tenants.lock().await;
        for name in known.iter().filter(|t| ownership.shard_of(t) == shard) {
            if let Some(old) = tenants.remove(name) {
                old.stop(None);
            }
            let actor = self.spawn(name, fence).await?;
            tenants.insert(name.clone(), actor);
        }
        ownership.set_local(shard, Some(epoch));
        Ok(())
    }

    /// Stops serving a shard: new calls are refused at once (and retried by their senders),
    /// then its tenants stop — after a snapshot when handing over, at once when the lease is
    /// lost (a newer owner may be writing already).
    pub async fn release(&self, shard: u32, snapshot: bool) {
        let Some(ownership) = self.inner.ownership.clone() else { return };
        ownership.set_local(shard, None);
        let mut tenants = self.inner.tenants.lock().await;
        let names: Vec<String> =
            tenants.keys().filter(|t| ownership.shard_of(t) == shard).cloned().collect();
        let actors: Vec<_> = names.iter().filter_map(|t| tenants.remove(t)).collect();
        drop(tenants);
        for (name, actor) in names.iter().zip(actors) {
            if snapshot {
                snapshot_and_stop(name, actor).await;
            } else {
                actor.stop(Some("shard lost".into()));
            }
            self.inner.hub.close_tenant(name);
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Rebuilds a tenant from its snapshot and the log after it, and starts its actor.
    async fn spawn(&self, tenant: &str, fence: Fence) -> Result<ActorRef<TenantMsg>, Error> {
        let store = self.inner.store.clone();
        let name = tenant.to_owned();
        let (state, log_seq) = tokio::task::spawn_blocking(move || replay(store.as_ref(), &name))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let args = TenantArgs {
            tenant: tenant.to_owned(),
            state,
            log_seq,
            store: self.inner.store.clone(),
            hub: self.inner.hub.clone(),
            snapshot_every: self.inner.options.snapshot_every,
            fence,
            webhooks: self.inner.options.webhooks.clone(),
        };
        let (actor, _) = Actor::spawn(None, TenantActor, args)
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
        Ok(actor)
    }

    /// The running actor of a tenant, reloading it if it stopped.
    async fn actor(&self, tenant: &str) -> Result<ActorRef<TenantMsg>, Status> {
        self.fence(tenant)?;
        let mut tenants = self.inner.tenants.lock().await;
        let Some(actor) = tenants.get(tenant) else {
            return Err(Error::NotFound(format!("tenant {tenant:?}")).into());
        };
        if matches!(
            actor.get_status(),
            ActorStatus::Running | ActorStatus::Starting | ActorStatus::Upgrading
        ) {
            return Ok(actor.clone());
        }
        // The shard may have moved while the actor was stopping.
        let fence = self.fence(tenant)?;
        warn!(tenant, "tenant actor stopped; reloading from the store");
        let actor = self.spawn(tenant, fence).await?;
        tenants.insert(tenant.to_owned(), actor.clone());
        Ok(actor)
    }

    /// A mutating command; resolves once durable.
    pub async fn command(
        &self,
        tenant: &str,
        op: Op,
        request_id: &str,
    ) -> Result<response::Result, Status> {
        check_request_id(request_id)?;
        let actor = self.actor(tenant).await?;
        let request_id = request_id.to_owned();
        // Commands waiting in (or being handled by) tenant mailboxes.
        let depth = metrics::gauge!(crate::metrics::MAILBOX_DEPTH, "kind" => "tenant");
        depth.increment(1.0);
        let result = actor.call(|reply| TenantMsg::Command { op, request_id, reply }, None).await;
        depth.decrement(1.0);
        let result = result
            .map_err(|e| Status::unavailable(format!("tenant {tenant} is restarting: {e}")))?;
        match result {
            ractor::rpc::CallResult::Success(r) => r,
            _ => Err(Status::unavailable(format!(
                "tenant {tenant} is restarting; retry with the same request_id"
            ))),
        }
    }

    /// Creates a tenant: its first log record is the `CreateTenant` command.
    pub async fn create_tenant(
        &self,
        req: pb::CreateTenantRequest,
    ) -> Result<response::Result, Status> {
        crate::names::check_id("tenant_id", &req.tenant_id)?;
        check_request_id(&req.request_id)?;
        let fence = self.fence(&req.tenant_id)?;
        let mut tenants = self.inner.tenants.lock().await;
        let id = req.tenant_id.clone();
        if let Some(actor) = tenants.get(&id) {
            // A retry of the creation answers as the creation did (and if the lookup fails we
            // cannot tell a retry from a second creation: retryable).
            let found = if req.request_id.is_empty() {
                None
            } else {
                self.inner.store.find_response(&id, &req.request_id).map_err(|e| {
                    Error::Unavailable(format!(
                        "cannot tell whether request_id {:?} created tenant {id:?} (the store's \
                         lookup failed: {e}); retry with the same request_id",
                        req.request_id
                    ))
                })?
            };
            if let Some(bytes) = found
                && let Ok(resp) =
                    switchboard_proto::internal::v1::Response::decode(bytes.as_slice())
                && let Some(result) = resp.result
            {
                return Ok(result);
            }
            let _ = actor;
            return Err(Error::AlreadyExists(format!("tenant {id:?}")).into());
        }
        let args = TenantArgs {
            tenant: id.clone(),
            state: TenantState::default(),
            log_seq: 0,
            store: self.inner.store.clone(),
            hub: self.inner.hub.clone(),
            snapshot_every: self.inner.options.snapshot_every,
            fence,
            webhooks: self.inner.options.webhooks.clone(),
        };
        let (actor, _) = Actor::spawn(None, TenantActor, args)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        let request_id = req.request_id.clone();
        let op = Op::CreateTenant(req);
        let result = actor.call(|reply| TenantMsg::Command { op, request_id, reply }, None).await;
        match result {
            Ok(ractor::rpc::CallResult::Success(Ok(r))) => {
                info!(tenant = %id, "tenant created");
                tenants.insert(id, actor);
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
        }
    }

    /// Runs `f` on the tenant's current state, on its actor.
    pub async fn read<T: Send + 'static>(
        &self,
        tenant: &str,
        f: impl FnOnce(&TenantState) -> T + Send + 'static,
    ) -> Result<T, Status> {
        let actor = self.actor(tenant).await?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        actor
            .cast(TenantMsg::Read(Box::new(move |state| {
                let _ = tx.send(f(state));
            })))
            .map_err(|_| Status::unavailable(format!("tenant {tenant} is restarting")))?;
        rx.await.map_err(|_| Status::unavailable(format!("tenant {tenant} is restarting")))
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
            return Ok(self.inner.tenants.lock().await.keys().cloned().collect());
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
        let tenants: Vec<_> =
            std::mem::take(&mut *self.inner.tenants.lock().await).into_iter().collect();
        for (name, actor) in tenants {
            snapshot_and_stop(&name, actor).await;
        }
    }
}

async fn snapshot_and_stop(name: &str, actor: ActorRef<TenantMsg>) {
    match actor.call(TenantMsg::Snapshot, Some(std::time::Duration::from_secs(30))).await {
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

fn check_request_id(id: &str) -> Result<(), Error> {
    if id.len() > MAX_REQUEST_ID {
        return Err(Error::field("request_id", format!("longer than {MAX_REQUEST_ID} bytes")));
    }
    Ok(())
}

/// The snapshot plus every command after it, applied in order.
fn replay(store: &dyn Store, tenant: &str) -> Result<(TenantState, u64), Error> {
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
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use prost::Message as _;
    use switchboard_proto::internal::v1::{Command, command::Op};
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
        let req = pb::CreateTenantRequest { tenant_id: "acme".into(), ..Default::default() };
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

    /// A real store whose idempotency lookups fail while `failing` is set.
    struct FailingLookups {
        inner: SqliteStore,
        failing: AtomicBool,
    }

    impl Store for FailingLookups {
        fn request_retention(&self) -> std::time::Duration {
            self.inner.request_retention()
        }
        fn append(&self, batch: Batch) -> Pending {
            self.inner.append(batch)
        }
        fn snapshot(&self, tenant: &str, fence: Fence, seq: u64, bytes: Vec<u8>) -> Pending {
            self.inner.snapshot(tenant, fence, seq, bytes)
        }
        fn raise_fence(&self, fence: Fence) -> Pending {
            self.inner.raise_fence(fence)
        }
        fn trim_stream(&self, tenant: &str, stream: &str, keep_last: usize) -> Pending {
            self.inner.trim_stream(tenant, stream, keep_last)
        }
        fn tenants(&self) -> switchboard_store::Result<Vec<String>> {
            self.inner.tenants()
        }
        fn load(&self, tenant: &str) -> switchboard_store::Result<Loaded> {
            self.inner.load(tenant)
        }
        fn read_stream(
            &self,
            tenant: &str,
            stream: &str,
            after_seq: u64,
            limit: usize,
        ) -> switchboard_store::Result<Vec<StreamEntry>> {
            self.inner.read_stream(tenant, stream, after_seq, limit)
        }
        fn last_stream_seq(
            &self,
            tenant: &str,
            stream: &str,
        ) -> switchboard_store::Result<Option<u64>> {
            self.inner.last_stream_seq(tenant, stream)
        }
        fn messages(
            &self,
            tenant: &str,
            conversation: u64,
            after_seq: u64,
            limit: usize,
        ) -> switchboard_store::Result<Vec<Message>> {
            self.inner.messages(tenant, conversation, after_seq, limit)
        }
        fn find_response(
            &self,
            tenant: &str,
            request_id: &str,
        ) -> switchboard_store::Result<Option<Vec<u8>>> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("disk unreadable").into());
            }
            self.inner.find_response(tenant, request_id)
        }
        fn scan_archived(
            &self,
            tenant: &str,
            scan: &switchboard_store::ArchiveScan,
        ) -> switchboard_store::Result<switchboard_store::ArchiveWindow> {
            self.inner.scan_archived(tenant, scan)
        }
        fn scan_customers(
            &self,
            tenant: &str,
            after: &str,
            limit: usize,
        ) -> switchboard_store::Result<Vec<switchboard_store::CustomerRecord>> {
            self.inner.scan_customers(tenant, after, limit)
        }
        fn find_customers(
            &self,
            tenant: &str,
            field: switchboard_store::ContactField,
            value: &str,
            after: &str,
            limit: usize,
        ) -> switchboard_store::Result<Vec<switchboard_store::CustomerRecord>> {
            self.inner.find_customers(tenant, field, value, after, limit)
        }
        fn archived(
            &self,
            tenant: &str,
            conversation: u64,
        ) -> switchboard_store::Result<Option<switchboard_store::Archived>> {
            self.inner.archived(tenant, conversation)
        }
        fn list_archived(
            &self,
            tenant: &str,
            query: &switchboard_store::ArchiveQuery,
        ) -> switchboard_store::Result<Vec<switchboard_store::Archived>> {
            self.inner.list_archived(tenant, query)
        }
        fn count_archived(&self, tenant: &str) -> switchboard_store::Result<u64> {
            self.inner.count_archived(tenant)
        }
        fn customer(
            &self,
            tenant: &str,
            customer: &str,
        ) -> switchboard_store::Result<Option<Vec<u8>>> {
            self.inner.customer(tenant, customer)
        }
        fn actor(
            &self,
            tenant: &str,
            kind: &str,
            key: &str,
        ) -> switchboard_store::Result<Option<switchboard_store::ActorState>> {
            self.inner.actor(tenant, kind, key)
        }
        fn list_actors(
            &self,
            tenant: &str,
            kind: &str,
            after: &str,
            limit: usize,
        ) -> switchboard_store::Result<Vec<switchboard_store::ActorState>> {
            self.inner.list_actors(tenant, kind, after, limit)
        }
        fn retain(&self, tenant: &str, fence: Fence, now_ms: u64, before_ms: u64) -> Pending {
            self.inner.retain(tenant, fence, now_ms, before_ms)
        }
    }

    /// A retry whose idempotency lookup fails is refused as retryable and applies nothing;
    /// once the store answers again, the same retry gets the original answer.
    #[tokio::test]
    async fn a_failed_idempotency_lookup_refuses_instead_of_applying_twice() {
        let dir = tempfile::tempdir().unwrap();
        let flaky =
            Arc::new(FailingLookups { inner: sqlite(&dir), failing: AtomicBool::new(false) });
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
        assert_eq!(registry.command("acme", group("b"), "r1").await.unwrap(), first);
        assert_eq!(log(store.as_ref()).len(), applied.log.len(), "r1 was not applied again");
        registry.shutdown().await;
    }

    /// A tenant created on this node knows every request id it logged, so a new id needs no
    /// idempotency lookup: commands go through while the store's lookups fail. A retry is
    /// still answered as the first time.
    #[tokio::test]
    async fn a_new_request_id_of_a_new_tenant_needs_no_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let flaky =
            Arc::new(FailingLookups { inner: sqlite(&dir), failing: AtomicBool::new(true) });
        let store: Arc<dyn Store> = flaky.clone();
        let registry = open(&store).await;
        create(&registry).await;
        let first = registry.command("acme", group("a"), "r1").await.unwrap();
        registry.command("acme", group("b"), "r2").await.unwrap();
        assert_eq!(log(store.as_ref()).len(), 3, "created, then r1 and r2 applied");

        flaky.failing.store(false, Ordering::SeqCst);
        assert_eq!(registry.command("acme", group("c"), "r1").await.unwrap(), first);
        assert_eq!(log(store.as_ref()).len(), 3, "r1 was not applied again");
        registry.shutdown().await;
    }
}
