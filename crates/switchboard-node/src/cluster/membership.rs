//! The etcd side of cluster mode: one task per node.
//!
//! Keys, under `/switchboard/<cluster>/`:
//! - `members/<node>` = advertised address, under the node's lease;
//! - `shards/<n>` = owning node, under the owner's lease; its create revision is the epoch;
//! - `config/shards` = the shard count, written once by the first node.
//!
//! The lease is granted and renewed by its own task (`lease.rs`). Every tick this task joins
//! under a new lease when there is one, keeps its view current (list, then watch from the
//! listed revision; a compacted or broken watch lists again), and reconciles: claim the
//! unowned shards rendezvous hashing gives it, hand over (a bounded number at a time) the
//! shards it holds that now belong to another live member, and drop what it no longer holds.
//! The slow parts — adopting a shard (fence, snapshot, replay) and handing one over (snapshot,
//! stop) — run on spawned jobs, at most one per shard, so the loop keeps its pace whatever a
//! replay costs.
//!
//! Only keys under the current lease are adopted. A key naming this node under another lease
//! is a previous incarnation's (a restart before its lease expired): adopting it would share
//! its epoch, which the fence could not tell apart, so that lease is revoked instead and the
//! shards are claimed anew with newer epochs.
//!
//! Lease guard: the node serves a shard only while `last renewal sent + TTL - margin` lies
//! ahead ([`Ownership`] checks it on every call). Past it, this task drops every shard
//! without waiting for etcd — the lease may be about to expire and a new owner about to write.
//! Fencing in the store covers the rest.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions, WatchStream,
};
use metrics::{counter, gauge, histogram};
use switchboard_store::Fence;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{info, warn};

use super::lease::{LeaseState, Renewer};
use super::{ClusterConfig, Owner, Ownership, View, desired_owner};
use crate::actors::meshes::Meshes;
use crate::error::Error;
use crate::metrics as m;
use crate::registry::Registry;

/// How often the task looks at the cluster.
const TICK: Duration = Duration::from_millis(200);
/// Shards handed over per tick: a join or leave moves a bounded number at a time.
pub const MOVE_BATCH: usize = 32;
/// Unowned shards claimed per etcd transaction (etcd allows 128 operations per txn).
const CLAIM_BATCH: usize = 64;
/// Shards claimed or adopted per tick, so lease renewals keep their pace while a node takes
/// a whole cluster's shards at start-up.
const ADOPT_BATCH: usize = 256;
/// Time allowed for each etcd request.
const ETCD_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 pings on an etcd connection. etcd refuses pings closer than 5 s
/// (`--grpc-keepalive-min-time`) and closes a connection after three such strikes unless it
/// sent data meanwhile: with 2 s pings, the membership connection (a quiet watch, now that the
/// lease is renewed over a connection of its own) was closed every ~10 s.
const KEEP_ALIVE: Duration = Duration::from_secs(6);

struct Session {
    client: Client,
    watch: Option<WatchStream>,
}

/// What a shard's job in flight is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    Adopting,
    HandingOver,
    Dropping,
}

/// A job's outcome, back in the loop.
enum Done {
    /// Each shard with its epoch, and whether it is served now.
    Adopted(Vec<(u32, u64, bool)>),
    HandedOver {
        shard: u32,
        epoch: u64,
        result: Result<(), Error>,
    },
    Dropped(Vec<u32>),
}

/// The lease task, aborted when its owner goes.
struct RenewerTask(tokio::task::JoinHandle<()>);

impl Drop for RenewerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The membership task's state.
pub struct Membership {
    config: ClusterConfig,
    ownership: Arc<Ownership>,
    registry: Registry,
    /// The actor meshes, whose actors in a shard come back once it is adopted.
    meshes: Option<Arc<Meshes>>,
    prefix: String,
    session: Option<Session>,
    /// The lease this node joined under (its member key and claims are under it).
    lease: Option<i64>,
    /// The lease task and what it last published.
    renewer: Option<RenewerTask>,
    lease_state: Option<watch::Receiver<LeaseState>>,
    /// Shards with a job in flight: none gets a second one until it ends.
    busy: HashMap<u32, Busy>,
    jobs: JoinSet<Done>,
    /// The shards of each job in flight, freed if it panics; and the adoptions, which a
    /// graceful leave cancels rather than waits for.
    job_shards: HashMap<tokio::task::Id, Vec<u32>>,
    adoptions: HashMap<tokio::task::Id, tokio::task::AbortHandle>,
    /// Predecessors' leases revoked already (by this session).
    revoked: HashSet<i64>,
    view: View,
    /// Set once the node has joined and holds every shard it should.
    ready: watch::Sender<bool>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node", &self.config.node_id)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// A client with this module's timeouts and keep-alive.
pub(super) async fn connect(etcd: &[String]) -> Result<Client, Error> {
    let options = ConnectOptions::new()
        .with_connect_timeout(ETCD_TIMEOUT)
        .with_timeout(ETCD_TIMEOUT)
        .with_keep_alive(KEEP_ALIVE, ETCD_TIMEOUT);
    timed("connect", Client::connect(etcd.to_vec(), Some(options))).await
}

/// An etcd call, bounded by `ETCD_TIMEOUT` and timed in `switchboard_etcd_request_seconds`.
pub(super) async fn timed<T>(
    op: &'static str,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, Error> {
    let started = Instant::now();
    let result = tokio::time::timeout(ETCD_TIMEOUT, call).await;
    histogram!(m::ETCD_REQUEST_SECONDS, "op" => op).record(started.elapsed().as_secs_f64());
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Unavailable(format!("etcd {op}: {e}"))),
        Err(_) => Err(Error::Unavailable(format!("etcd {op}: no answer in {ETCD_TIMEOUT:?}"))),
    }
}

impl Membership {
    pub fn new(
        config: ClusterConfig,
        ownership: Arc<Ownership>,
        registry: Registry,
        ready: watch::Sender<bool>,
    ) -> Membership {
        let prefix = format!("/switchboard/{}/", config.name);
        Membership {
            config,
            ownership,
            registry,
            meshes: None,
            prefix,
            session: None,
            lease: None,
            renewer: None,
            lease_state: None,
            busy: HashMap::new(),
            jobs: JoinSet::new(),
            job_shards: HashMap::new(),
            adoptions: HashMap::new(),
            revoked: HashSet::new(),
            view: View::default(),
            ready,
        }
    }

    /// Recovers the mesh actors of each shard this node adopts (`Meshes::spawn_recovery`,
    /// started by the adoption job once the shard is served).
    pub fn with_meshes(mut self, meshes: Arc<Meshes>) -> Membership {
        self.meshes = Some(meshes);
        self
    }

    fn member_key(&self, node: &str) -> String {
        format!("{}members/{node}", self.prefix)
    }

    fn shard_key(&self, shard: u32) -> String {
        format!("{}shards/{shard}", self.prefix)
    }

    /// Runs until `shutdown` flips, then hands every shard over and leaves.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                event = next_watch_message(&mut self.session) => {
                    if let Err(e) = self.on_watch(event) {
                        warn!(error = %e, "etcd watch ended; listing again");
                        if let Some(s) = &mut self.session { s.watch = None; }
                    }
                }
                Some(done) = self.jobs.join_next_with_id(), if !self.jobs.is_empty() => {
                    for shard in self.on_job_end(done) {
                        self.spawn_drop(vec![shard]);
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.step().await {
                        warn!(error = %e, "cluster step failed; retrying");
                        self.session = None;
                    }
                    self.guard();
                }
            }
        }
        self.leave().await;
    }

    /// One round: connect, follow the lease, keep the view, reconcile.
    async fn step(&mut self) -> Result<(), Error> {
        if self.session.is_none() {
            let client = connect(&self.config.etcd).await?;
            self.session = Some(Session { client, watch: None });
            self.revoked.clear();
            self.check_shard_count().await?;
        }
        if self.renewer.is_none() {
            // Only once the shard count is known to match: a refused node takes no lease.
            let (renewer, state) = Renewer::new(
                self.config.etcd.clone(),
                self.config.lease_ttl,
                self.ownership.clone(),
            );
            self.renewer = Some(RenewerTask(tokio::spawn(renewer.run())));
            self.lease_state = Some(state);
        }
        let state = self.lease_state();
        match state.id {
            None => {
                if let Some(old) = self.lease.take() {
                    warn!(lease = old, "lease gone; dropping every shard");
                    self.drop_all_shards("lease expired");
                }
                return Ok(()); // the lease task grants a new one
            }
            Some(id) if self.lease != Some(id) => self.join(id).await?,
            Some(_) => {}
        }
        if self.session.as_ref().is_some_and(|s| s.watch.is_none()) {
            self.list_and_watch().await?;
        }
        self.reconcile(state.serve_until).await
    }

    fn lease_state(&self) -> LeaseState {
        self.lease_state.as_ref().map(|rx| *rx.borrow()).unwrap_or_default()
    }

    fn client(&mut self) -> Result<&mut Client, Error> {
        self.session
            .as_mut()
            .map(|s| &mut s.client)
            .ok_or_else(|| Error::Unavailable("not connected to etcd".into()))
    }

    /// The shard count is fixed when the cluster is created; a node configured otherwise
    /// would hash tenants elsewhere, so it refuses to join.
    async fn check_shard_count(&mut self) -> Result<(), Error> {
        let key = format!("{}config/shards", self.prefix);
        let mine = self.config.shards.to_string();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.clone(), mine.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let client = self.client()?;
        let resp = timed("txn", client.txn(txn)).await?;
        if resp.succeeded() {
            info!(shards = %mine, "created the cluster's shard count");
            return Ok(());
        }
        for op in resp.op_responses() {
            if let etcd_client::TxnOpResponse::Get(get) = op
                && let Some(kv) = get.kvs().first()
                && kv.value() != mine.as_bytes()
            {
                // Not retryable: stop the node loudly rather than loop.
                let theirs = String::from_utf8_lossy(kv.value()).into_owned();
                tracing::error!(
                    mine = %mine, cluster = %theirs,
                    "this node's shard count differs from the cluster's; set cluster.shards = {theirs}"
                );
                std::process::exit(2);
            }
        }
        Ok(())
    }

    /// Joins under a new lease: the member key goes under it, and a previous incarnation's
    /// lease (found on the member key, left by a process that did not leave cleanly) is
    /// revoked so that its shard keys go and are claimed anew, with newer epochs. Shards held
    /// under an older lease of this process are gone already.
    ///
    /// Why revoke rather than wait for the predecessor's lease to expire: its process is gone
    /// (it had our node id), so nothing is lost, and its shards are served again at once
    /// instead of after up to a TTL. The member key moves to the new lease *before* the
    /// revocation, so the other members never see this node leave and claim nothing of it.
    async fn join(&mut self, lease: i64) -> Result<(), Error> {
        self.drop_all_shards("new lease");
        self.lease = None;
        let member = self.member_key(&self.config.node_id.clone());
        let addr = self.config.advertise_addr.clone();
        let client = self.client()?;
        let previous = timed("get", client.get(member.clone(), None)).await?;
        let predecessor =
            previous.kvs().first().map(|kv| kv.lease()).filter(|&l| l != 0 && l != lease);
        timed("put", client.put(member, addr, Some(PutOptions::new().with_lease(lease)))).await?;
        self.lease = Some(lease);
        if let Some(old) = predecessor {
            self.revoke_predecessor(old).await;
        }
        if let Some(s) = &mut self.session {
            s.watch = None; // list again, with ourselves in it
        }
        info!(node = %self.config.node_id, lease, "joined the cluster");
        Ok(())
    }

    /// Revokes a lease that holds keys naming this node but is not ours: its keys (and so
    /// its epochs) go. A failure is logged and retried from `reconcile` while such keys remain.
    async fn revoke_predecessor(&mut self, old: i64) {
        if self.revoked.contains(&old) {
            return;
        }
        let Ok(client) = self.client() else { return };
        match timed("lease_revoke", client.lease_revoke(old)).await {
            Ok(_) => info!(lease = old, "revoked a previous incarnation's lease"),
            Err(e) if e.to_string().contains("lease not found") => {}
            Err(e) => {
                warn!(lease = old, error = %e, "could not revoke a previous incarnation's lease");
                return;
            }
        }
        self.revoked.insert(old);
    }

    /// Stops serving a shard at once, without a snapshot: a newer owner may be writing. Its
    /// tenants stop on a job (unless a job already has the shard: it checks the grant).
    fn lose(&mut self, shard: u32) {
        if self.ownership.withdraw(shard) {
            counter!(m::SHARD_HANDOFFS, "kind" => "lost").increment(1);
        }
        if !self.busy.contains_key(&shard) {
            self.spawn_drop(vec![shard]);
        }
    }

    /// Stops serving before the lease can expire.
    fn guard(&mut self) {
        let until = self.lease_state().serve_until;
        if until.is_some_and(|until| Instant::now() >= until) {
            if !self.ownership.granted().is_empty() {
                warn!("lease not renewed in time; no longer serving any shard");
            }
            self.drop_all_shards("lease not renewed");
        }
    }

    fn drop_all_shards(&mut self, why: &str) {
        let local = self.ownership.local_shards().len();
        let granted = self.ownership.withdraw_all();
        if !granted.is_empty() {
            warn!(shards = granted.len(), why, "dropping shards without handover");
        }
        counter!(m::SHARD_HANDOFFS, "kind" => "lost").increment(local as u64);
        // Adopting shards are released by their own job, which finds its grant withdrawn.
        let idle: Vec<u32> = granted.into_iter().filter(|s| !self.busy.contains_key(s)).collect();
        if !idle.is_empty() {
            self.spawn_drop(idle);
        }
        self.publish_gauges();
        let _ = self.ready.send(false);
    }

    fn spawn_drop(&mut self, shards: Vec<u32>) {
        for &shard in &shards {
            self.busy.insert(shard, Busy::Dropping);
        }
        let registry = self.registry.clone();
        let job = shards.clone();
        let handle = self.jobs.spawn(async move {
            for &shard in &shards {
                registry.release(shard, false).await;
            }
            Done::Dropped(shards)
        });
        self.job_shards.insert(handle.id(), job);
    }

    async fn list_and_watch(&mut self) -> Result<(), Error> {
        let prefix = self.prefix.clone();
        let client = self.client()?;
        let resp =
            timed("get", client.get(prefix.clone(), Some(GetOptions::new().with_prefix()))).await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut view = View::default();
        for kv in resp.kvs() {
            let value = (kv.value(), kv.create_revision(), kv.lease());
            apply_kv(&prefix, &mut view, kv.key(), Some(value));
        }
        let options = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
        let watch = timed("watch", client.watch(prefix, Some(options))).await?;
        self.view = view;
        self.ownership.set_view(self.view.clone());
        if let Some(s) = &mut self.session {
            s.watch = Some(watch);
        }
        Ok(())
    }

    fn on_watch(
        &mut self,
        message: Result<Option<etcd_client::WatchResponse>, etcd_client::Error>,
    ) -> Result<(), Error> {
        let resp = message
            .map_err(|e| Error::Unavailable(format!("etcd watch: {e}")))?
            .ok_or_else(|| Error::Unavailable("etcd watch closed".into()))?;
        if resp.canceled() {
            return Err(Error::Unavailable(format!(
                "etcd watch cancelled (compacted at {}): {}",
                resp.compact_revision(),
                resp.cancel_reason()
            )));
        }
        for event in resp.events() {
            let Some(kv) = event.kv() else { continue };
            let value = match event.event_type() {
                EventType::Put => Some((kv.value(), kv.create_revision(), kv.lease())),
                EventType::Delete => None,
            };
            apply_kv(&self.prefix, &mut self.view, kv.key(), value);
        }
        self.ownership.set_view(self.view.clone());
        Ok(())
    }

    /// Takes, re-adopts, hands over and drops shards so that this node serves what rendezvous
    /// hashing over the live members gives it. Adoptions and hand-overs start jobs; nothing
    /// here waits for a replay or a snapshot.
    async fn reconcile(&mut self, serve_until: Option<Instant>) -> Result<(), Error> {
        let Some(lease) = self.lease else { return Ok(()) };
        if serve_until.is_none_or(|u| Instant::now() >= u) {
            return Ok(());
        }
        let me = self.config.node_id.clone();
        if !self.view.members.contains_key(&me) {
            // Our member key vanished (etcd restored from an old backup?): put it back.
            let key = self.member_key(&me);
            let addr = self.config.advertise_addr.clone();
            let client = self.client()?;
            timed("put", client.put(key, addr, Some(PutOptions::new().with_lease(lease)))).await?;
            self.view.members.insert(me.clone(), self.config.advertise_addr.clone());
        }
        let granted = self.ownership.granted();
        let plan = plan(self.config.shards, &self.view, &me, lease, &granted, &self.busy);
        for shard in plan.lose {
            self.lose(shard);
        }
        for old in plan.revoke {
            self.revoke_predecessor(old).await;
        }
        let adopting = self.busy.values().filter(|b| **b == Busy::Adopting).count();
        let room = ADOPT_BATCH.saturating_sub(adopting);
        let mut adopt = plan.adopt;
        adopt.truncate(room);
        let mut claim = plan.claim;
        claim.truncate(room.saturating_sub(adopt.len()));
        for chunk in claim.chunks(CLAIM_BATCH) {
            let Some(epoch) = self.claim(chunk).await? else {
                break; // lost a race; the watch tells who won
            };
            adopt.extend(chunk.iter().map(|&shard| (shard, epoch)));
        }
        if !adopt.is_empty() {
            self.spawn_adopt(adopt);
        }
        let moving = self.busy.values().filter(|b| **b == Busy::HandingOver).count();
        for (shard, epoch) in plan.hand_over.into_iter().take(MOVE_BATCH.saturating_sub(moving)) {
            self.spawn_hand_over(shard, epoch)?;
        }
        self.publish_gauges();
        let owned = self.ownership.local_shards().len();
        if owned >= plan.wanted && !*self.ready.borrow() {
            info!(owned, members = self.view.members.len(), "serving");
            let _ = self.ready.send(true);
        }
        Ok(())
    }

    /// Adopts shards on a job: fence every shard first (queued together, so they share
    /// commits), then start their tenants; each is served once its tenants run, unless its
    /// grant was withdrawn meanwhile (a lost lease, a guard trip), and then it is released.
    fn spawn_adopt(&mut self, shards: Vec<(u32, u64)>) {
        for &(shard, epoch) in &shards {
            self.ownership.grant(shard, epoch);
            self.busy.insert(shard, Busy::Adopting);
        }
        let registry = self.registry.clone();
        let ownership = self.ownership.clone();
        let meshes = self.meshes.clone();
        let job = shards.iter().map(|&(shard, _)| shard).collect();
        let handle = self.jobs.spawn(async move {
            if let Err(e) = adopt(&registry, &shards).await {
                warn!(shards = shards.len(), error = %e, "adopting shards failed; retrying");
            }
            let mut out = Vec::with_capacity(shards.len());
            for (shard, epoch) in shards {
                let served = ownership.serves(shard, epoch);
                if !served {
                    // Tenants started under a withdrawn grant (or half a failed adoption).
                    registry.release(shard, false).await;
                }
                out.push((shard, epoch, served));
            }
            // Their mesh actors come back now, without waiting for a message.
            let served: Vec<u32> = out.iter().filter(|o| o.2).map(|o| o.0).collect();
            if let Some(meshes) = meshes.filter(|_| !served.is_empty()) {
                meshes.spawn_recovery(served);
            }
            Done::Adopted(out)
        });
        self.job_shards.insert(handle.id(), job);
        self.adoptions.insert(handle.id(), handle);
    }

    /// Hands a shard over on a job: it stops being served at once, then its tenants snapshot
    /// and stop, then the key goes, and the new owner (which sees the delete) claims it with a
    /// newer epoch.
    fn spawn_hand_over(&mut self, shard: u32, epoch: u64) -> Result<(), Error> {
        let client = self.client()?.clone();
        self.ownership.withdraw(shard);
        self.busy.insert(shard, Busy::HandingOver);
        let registry = self.registry.clone();
        let key = self.shard_key(shard);
        let me = self.config.node_id.clone();
        let handle = self.jobs.spawn(async move {
            let result = hand_over(&registry, client, key, me, shard, epoch).await;
            Done::HandedOver { shard, epoch, result }
        });
        self.job_shards.insert(handle.id(), vec![shard]);
        Ok(())
    }

    /// A job ended. If it panicked or was cancelled, its shards are freed and withdrawn, and
    /// returned: their tenants are still to be stopped.
    fn on_job_end(
        &mut self,
        end: Result<(tokio::task::Id, Done), tokio::task::JoinError>,
    ) -> Vec<u32> {
        let id = match &end {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        self.adoptions.remove(&id);
        let shards = self.job_shards.remove(&id).unwrap_or_default();
        match end {
            Ok((_, done)) => {
                self.on_done(done);
                Vec::new()
            }
            Err(e) => {
                if e.is_panic() {
                    warn!(shards = shards.len(), error = %e, "a shard job panicked");
                }
                for shard in &shards {
                    self.busy.remove(shard);
                    self.ownership.withdraw(*shard);
                }
                shards
            }
        }
    }

    /// A job ended: its shards are free for the next one.
    fn on_done(&mut self, done: Done) {
        match done {
            Done::Adopted(shards) => {
                for (shard, epoch, served) in shards {
                    self.busy.remove(&shard);
                    if served {
                        counter!(m::SHARD_HANDOFFS, "kind" => "acquired").increment(1);
                    } else if self.ownership.granted().get(&shard) == Some(&epoch) {
                        // It failed (the store, say): adopt it again on a later tick.
                        self.ownership.withdraw(shard);
                    }
                }
            }
            Done::HandedOver { shard, epoch, result } => {
                self.busy.remove(&shard);
                match result {
                    Ok(()) => {
                        // Unless the watch has shown a newer key already.
                        let me = &self.config.node_id;
                        if self
                            .view
                            .owners
                            .get(&shard)
                            .is_some_and(|o| &o.node == me && o.epoch == epoch)
                        {
                            self.view.owners.remove(&shard);
                        }
                        counter!(m::SHARD_HANDOFFS, "kind" => "released").increment(1);
                    }
                    Err(e) => warn!(shard, error = %e, "handover failed; retrying"),
                }
            }
            Done::Dropped(shards) => {
                for shard in shards {
                    self.busy.remove(&shard);
                }
            }
        }
        self.publish_gauges();
    }

    /// Claims unowned shards in one transaction; the epoch is the transaction's revision,
    /// which is each new key's create revision. `None` if any was taken meanwhile.
    async fn claim(&mut self, shards: &[u32]) -> Result<Option<u64>, Error> {
        let lease = self.lease.unwrap_or(0);
        let me = self.config.node_id.clone();
        let keys: Vec<String> = shards.iter().map(|s| self.shard_key(*s)).collect();
        let txn = Txn::new()
            .when(
                keys.iter()
                    .map(|k| Compare::create_revision(k.clone(), CompareOp::Equal, 0))
                    .collect::<Vec<_>>(),
            )
            .and_then(
                keys.iter()
                    .map(|k| {
                        TxnOp::put(k.clone(), me.clone(), Some(PutOptions::new().with_lease(lease)))
                    })
                    .collect::<Vec<_>>(),
            );
        let client = self.client()?;
        let resp = timed("txn", client.txn(txn)).await?;
        if !resp.succeeded() {
            return Ok(None);
        }
        let revision = resp.header().map_or(0, |h| h.revision());
        let epoch = u64::try_from(revision).unwrap_or(0);
        for &shard in shards {
            self.view.owners.insert(shard, Owner { node: me.clone(), epoch, lease });
        }
        Ok(Some(epoch))
    }

    /// Graceful leave: out of the member list first (so nobody picks this node), adoptions in
    /// flight cancelled (their shards' tenants stopped: nothing was served yet) and the other
    /// jobs finished (the lease task keeps renewing meanwhile), then every shard handed over,
    /// then the lease task stopped and the lease revoked.
    async fn leave(&mut self) {
        let _ = self.ready.send(false);
        let me = self.config.node_id.clone();
        let key = self.member_key(&me);
        if let Ok(client) = self.client() {
            let _ = timed("delete", client.delete(key, None)).await;
        }
        for (_, adoption) in self.adoptions.drain() {
            adoption.abort();
        }
        while let Some(end) = self.jobs.join_next_with_id().await {
            for shard in self.on_job_end(end) {
                self.registry.release(shard, false).await;
            }
        }
        info!(
            shards = self.ownership.local_shards().len(),
            "leaving the cluster: handing over shards"
        );
        // Once etcd fails, stop asking it (each try could wait its timeout): the rest is only
        // snapshotted here, and the lease's expiry frees their keys.
        let mut client = self.client().ok().cloned();
        for (shard, epoch) in self.ownership.local_shards() {
            self.ownership.withdraw(shard);
            let key = self.shard_key(shard);
            let result = match client.clone() {
                Some(c) => hand_over(&self.registry, c, key, me.clone(), shard, epoch).await,
                None => {
                    self.registry.release(shard, true).await;
                    continue;
                }
            };
            match result {
                Ok(()) => counter!(m::SHARD_HANDOFFS, "kind" => "released").increment(1),
                Err(e) => {
                    warn!(shard, error = %e, "handover failed; the lease expiry frees the rest");
                    client = None;
                }
            }
        }
        self.renewer = None; // aborts the lease task
        if let (Some(id), Ok(client)) = (self.lease, self.client()) {
            let _ = timed("lease_revoke", client.lease_revoke(id)).await;
        }
        self.ownership.set_serve_until(None);
        self.publish_gauges();
        info!("left the cluster");
    }

    fn publish_gauges(&self) {
        gauge!(m::CLUSTER_MEMBERS).set(self.view.members.len() as f64);
        gauge!(m::SHARDS_OWNED).set(self.ownership.local_shards().len() as f64);
        let unowned = u64::from(self.config.shards).saturating_sub(self.view.owners.len() as u64);
        gauge!(m::SHARDS_UNOWNED).set(unowned as f64);
    }
}

/// Fences every shard (queued together, so they share commits), lists the tenants once,
/// then starts each shard's tenants; the registry marks each served if its grant holds.
async fn adopt(registry: &Registry, shards: &[(u32, u64)]) -> Result<(), Error> {
    let store = registry.store().clone();
    let pending: Vec<_> =
        shards.iter().map(|&(shard, epoch)| store.raise_fence(Fence { shard, epoch })).collect();
    for p in pending {
        p.await.map_err(|e| Error::Unavailable(e.to_string()))?;
    }
    let known = tokio::task::spawn_blocking(move || store.tenants())
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    for &(shard, epoch) in shards {
        registry.adopt(shard, epoch, &known).await?;
    }
    Ok(())
}

/// Snapshots and stops a shard's tenants, then deletes its key if it is still ours at our
/// epoch.
async fn hand_over(
    registry: &Registry,
    mut client: Client,
    key: String,
    me: String,
    shard: u32,
    epoch: u64,
) -> Result<(), Error> {
    registry.release(shard, true).await;
    let txn = Txn::new()
        .when([
            Compare::value(key.clone(), CompareOp::Equal, me),
            Compare::create_revision(key.clone(), CompareOp::Equal, epoch as i64),
        ])
        .and_then([TxnOp::delete(key, None)]);
    timed("txn", client.txn(txn)).await?;
    Ok(())
}

/// What one reconcile does, decided from the view alone.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// Unowned shards this node should own.
    claim: Vec<u32>,
    /// Shards whose key is ours under the current lease but not served: (shard, epoch).
    adopt: Vec<(u32, u64)>,
    /// Shards whose key is ours but that belong to another member now.
    hand_over: Vec<(u32, u64)>,
    /// Shards granted here whose key is gone or another's (our lease lapsed at some point).
    lose: Vec<u32>,
    /// Leases of a previous incarnation that still hold keys naming this node.
    revoke: BTreeSet<i64>,
    /// Shards rendezvous hashing gives this node.
    wanted: usize,
}

/// Decides, for every shard, from the view, the current lease, the grants and the shards with
/// a job in flight (left alone, except that a lost one stops being served).
fn plan(
    shards: u32,
    view: &View,
    me: &str,
    lease: i64,
    granted: &HashMap<u32, u64>,
    busy: &HashMap<u32, Busy>,
) -> Plan {
    let mut plan = Plan::default();
    let members: Vec<&str> = view.members.keys().map(String::as_str).collect();
    for shard in 0..shards {
        let mine = desired_owner(shard, members.iter().copied()) == Some(me);
        plan.wanted += usize::from(mine);
        let held = granted.get(&shard);
        let free = !busy.contains_key(&shard);
        match view.owners.get(&shard) {
            None if held.is_some() => plan.lose.push(shard),
            None if mine && free => plan.claim.push(shard),
            None => {}
            // Ours under a previous incarnation's lease: never adopted at its epoch.
            Some(o) if o.node == me && o.lease != lease => {
                plan.revoke.insert(o.lease);
                if held.is_some() {
                    plan.lose.push(shard);
                }
            }
            Some(o) if o.node == me => match held {
                _ if !free => {}
                // Someone else's now: hand it over (or, if the guard already stopped serving
                // it, just let the key go so the new owner can claim it).
                _ if !mine => plan.hand_over.push((shard, o.epoch)),
                None => plan.adopt.push((shard, o.epoch)),
                Some(&epoch) if epoch != o.epoch => plan.lose.push(shard),
                Some(_) => {}
            },
            // Someone else holds the key: our lease lapsed at some point.
            Some(_) if held.is_some() => plan.lose.push(shard),
            Some(_) => {}
        }
    }
    plan
}

async fn next_watch_message(
    session: &mut Option<Session>,
) -> Result<Option<etcd_client::WatchResponse>, etcd_client::Error> {
    match session.as_mut().and_then(|s| s.watch.as_mut()) {
        Some(watch) => watch.message().await,
        None => std::future::pending().await,
    }
}

/// A key's value, create revision and lease.
type Value<'a> = (&'a [u8], i64, i64);

/// Applies one key's new value (or its deletion) to the view.
fn apply_kv(prefix: &str, view: &mut View, key: &[u8], value: Option<Value<'_>>) {
    let Some(key) = std::str::from_utf8(key).ok().and_then(|k| k.strip_prefix(prefix)) else {
        return;
    };
    if let Some(node) = key.strip_prefix("members/") {
        match value {
            Some((addr, _, _)) => {
                view.members.insert(node.to_owned(), String::from_utf8_lossy(addr).into_owned());
            }
            None => {
                view.members.remove(node);
            }
        }
    } else if let Some(shard) = key.strip_prefix("shards/").and_then(|s| s.parse::<u32>().ok()) {
        match value {
            Some((node, created, lease)) => {
                let owner = Owner {
                    node: String::from_utf8_lossy(node).into_owned(),
                    epoch: u64::try_from(created).unwrap_or(0),
                    lease,
                };
                view.owners.insert(shard, owner);
            }
            None => {
                view.owners.remove(&shard);
            }
        }
    }
}

/// Shards each member would own (for the closing figures and tests).
pub fn assignment(shards: u32, members: &[&str]) -> HashMap<String, u32> {
    let mut out = HashMap::new();
    for shard in 0..shards {
        if let Some(m) = desired_owner(shard, members.iter().copied()) {
            *out.entry(m.to_owned()).or_insert(0) += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_follows_puts_and_deletes_under_the_prefix_only() {
        let p = "/switchboard/main/";
        let mut view = View::default();
        apply_kv(p, &mut view, b"/switchboard/main/members/n1", Some((b"10.0.0.1:7400", 5, 1)));
        apply_kv(p, &mut view, b"/switchboard/main/shards/7", Some((b"n1", 9, 1)));
        apply_kv(p, &mut view, b"/switchboard/other/shards/8", Some((b"n2", 10, 2)));
        apply_kv(p, &mut view, b"/switchboard/main/shards/x", Some((b"n2", 11, 2)));
        assert_eq!(view.members.get("n1").map(String::as_str), Some("10.0.0.1:7400"));
        assert_eq!(view.owners.get(&7), Some(&Owner { node: "n1".into(), epoch: 9, lease: 1 }));
        assert_eq!(view.owners.len(), 1);
        apply_kv(p, &mut view, b"/switchboard/main/shards/7", None);
        apply_kv(p, &mut view, b"/switchboard/main/members/n1", None);
        assert!(view.owners.is_empty() && view.members.is_empty());
    }

    /// A one-member view where `n1` holds `owned` shards under `lease`.
    fn alone(owned: &[(u32, u64, i64)]) -> View {
        let mut view = View::default();
        view.members.insert("n1".into(), "127.0.0.1:1".into());
        for &(shard, epoch, lease) in owned {
            view.owners.insert(shard, Owner { node: "n1".into(), epoch, lease });
        }
        view
    }

    #[test]
    fn keys_under_a_previous_incarnations_lease_are_revoked_not_adopted() {
        // n1 restarted under lease 20; its predecessor's lease 10 still holds shards 0 and 1.
        let view = alone(&[(0, 12, 10), (1, 12, 10), (2, 30, 20)]);
        let p = plan(4, &view, "n1", 20, &HashMap::new(), &HashMap::new());
        assert_eq!(p.adopt, vec![(2, 30)], "only the key under the current lease");
        assert_eq!(p.revoke, BTreeSet::from([10]));
        assert_eq!(p.claim, vec![3]);
        assert!(p.lose.is_empty() && p.hand_over.is_empty());
        assert_eq!(p.wanted, 4);
        // Once the revocation's deletes arrive, they are claimed anew (newer epochs).
        let view = alone(&[(2, 30, 20)]);
        let p = plan(4, &view, "n1", 20, &HashMap::from([(2, 30)]), &HashMap::new());
        assert_eq!(p.claim, vec![0, 1, 3]);
        assert!(p.adopt.is_empty() && p.revoke.is_empty());
    }

    #[test]
    fn a_shard_with_a_job_in_flight_gets_no_second_one() {
        let view = alone(&[(0, 12, 20), (1, 13, 20)]);
        // Shard 0 is being adopted, shard 2 being dropped: neither is adopted or claimed again.
        let busy = HashMap::from([(0, Busy::Adopting), (2, Busy::Dropping)]);
        let granted = HashMap::from([(0, 12)]);
        let p = plan(3, &view, "n1", 20, &granted, &busy);
        assert_eq!(p.adopt, vec![(1, 13)]);
        assert!(p.claim.is_empty() && p.lose.is_empty());
        // Its key goes to another node meanwhile: it stops being served even while busy.
        let mut view = view;
        view.owners.insert(0, Owner { node: "n2".into(), epoch: 40, lease: 30 });
        let p = plan(3, &view, "n1", 20, &granted, &busy);
        assert_eq!(p.lose, vec![0]);
    }

    #[test]
    fn shards_of_another_member_are_handed_over_once_free() {
        let mut view = alone(&[]);
        view.members.insert("n2".into(), "127.0.0.1:2".into());
        let theirs = (0..64).find(|&s| desired_owner(s, ["n1", "n2"]) == Some("n2")).unwrap();
        view.owners.insert(theirs, Owner { node: "n1".into(), epoch: 5, lease: 20 });
        let granted = HashMap::from([(theirs, 5)]);
        let p = plan(64, &view, "n1", 20, &granted, &HashMap::new());
        assert_eq!(p.hand_over, vec![(theirs, 5)]);
        let busy = HashMap::from([(theirs, Busy::HandingOver)]);
        let p = plan(64, &view, "n1", 20, &granted, &busy);
        assert!(p.hand_over.is_empty());
    }

    #[test]
    fn a_third_member_takes_about_a_third() {
        let three = assignment(1024, &["n1", "n2", "n3"]);
        assert_eq!(three.values().sum::<u32>(), 1024);
        assert!(three.values().all(|&n| (280..400).contains(&n)), "{three:?}");
    }
}
