//! The etcd side of cluster mode: one task per node.
//!
//! Keys, under `/switchboard/<cluster>/`:
//! - `members/<node>` = advertised address, under the node's lease;
//! - `shards/<n>` = owning node, under the owner's lease; its create revision is the epoch;
//! - `config/shards` = the shard count, written once by the first node.
//!
//! Every tick the task renews the lease when due, keeps its view current (list, then watch
//! from the listed revision; a compacted or broken watch lists again), and reconciles: take
//! the unowned shards rendezvous hashing gives it, hand over (a bounded number per tick) the
//! shards it holds that now belong to another live member, and drop what it no longer holds.
//!
//! Lease guard: the node serves a shard only while `last renewal sent + TTL - margin` lies
//! ahead. Past it, it stops serving every shard without waiting for etcd — the lease may be
//! about to expire and a new owner about to write. Fencing in the store covers the rest.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, Txn, TxnOp, WatchOptions, WatchStream,
};
use metrics::{counter, gauge, histogram};
use switchboard_store::Fence;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{ClusterConfig, Owner, Ownership, View, desired_owner};
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

struct Session {
    client: Client,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    watch: Option<WatchStream>,
}

/// The membership task's state.
pub struct Membership {
    config: ClusterConfig,
    ownership: Arc<Ownership>,
    registry: Registry,
    prefix: String,
    session: Option<Session>,
    lease: Option<i64>,
    /// Serve nothing from this instant on, unless a renewal moves it.
    serve_until: Option<Instant>,
    next_renewal: Instant,
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

async fn timed<T>(
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
            prefix,
            session: None,
            lease: None,
            serve_until: None,
            next_renewal: Instant::now(),
            view: View::default(),
            ready,
        }
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
                _ = tick.tick() => {
                    if let Err(e) = self.step().await {
                        warn!(error = %e, "cluster step failed; retrying");
                        self.session = None;
                    }
                    self.guard().await;
                }
            }
        }
        self.leave().await;
    }

    /// One round: connect, keep the lease, keep the view, reconcile.
    async fn step(&mut self) -> Result<(), Error> {
        if self.session.is_none() {
            let options = ConnectOptions::new()
                .with_connect_timeout(ETCD_TIMEOUT)
                .with_timeout(ETCD_TIMEOUT)
                .with_keep_alive(Duration::from_secs(2), ETCD_TIMEOUT);
            let client =
                timed("connect", Client::connect(self.config.etcd.clone(), Some(options))).await?;
            self.session = Some(Session { client, keeper: None, watch: None });
            self.check_shard_count().await?;
        }
        if self.lease.is_none() {
            self.join().await?;
        }
        if Instant::now() >= self.next_renewal {
            self.renew().await?;
        }
        if self.session.as_ref().is_some_and(|s| s.watch.is_none()) {
            self.list_and_watch().await?;
        }
        self.reconcile().await
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

    /// A new lease and the member key under it. Shards held under an older lease are gone.
    async fn join(&mut self) -> Result<(), Error> {
        self.drop_all_shards("new lease").await;
        let ttl = i64::try_from(self.config.lease_ttl.as_secs().max(2)).unwrap_or(10);
        let member = self.member_key(&self.config.node_id.clone());
        let addr = self.config.advertise_addr.clone();
        let client = self.client()?;
        let sent = Instant::now();
        let lease = timed("lease_grant", client.lease_grant(ttl, None)).await?;
        let id = lease.id();
        timed("put", client.put(member, addr, Some(PutOptions::new().with_lease(id)))).await?;
        self.lease = Some(id);
        self.serve_until = Some(sent + self.renewal_window(lease.ttl()));
        self.next_renewal = Instant::now() + self.config.lease_ttl / 3;
        if let Some(s) = &mut self.session {
            s.keeper = None;
            s.watch = None; // list again, with ourselves in it
        }
        info!(node = %self.config.node_id, lease = id, ttl, "joined the cluster");
        Ok(())
    }

    /// How long after sending a renewal this node may keep serving.
    fn renewal_window(&self, ttl_secs: i64) -> Duration {
        let ttl = Duration::from_secs(u64::try_from(ttl_secs).unwrap_or(0));
        let margin = (self.config.lease_ttl / 5).max(Duration::from_millis(500));
        ttl.saturating_sub(margin)
    }

    async fn renew(&mut self) -> Result<(), Error> {
        let Some(id) = self.lease else { return Ok(()) };
        let session = self.session.as_mut().expect("connected");
        if session.keeper.is_none() {
            match timed("lease_keep_alive", session.client.lease_keep_alive(id)).await {
                Ok(keeper) => session.keeper = Some(keeper),
                // etcd forgot the lease: it expired while we were away.
                Err(e) if e.to_string().contains("lease not found") => {
                    return self.lease_expired(id).await;
                }
                Err(e) => return Err(e),
            }
        }
        let (keeper, stream) = session.keeper.as_mut().expect("just set");
        let sent = Instant::now();
        let result = async {
            timed("lease_keep_alive", async { keeper.keep_alive().await }).await?;
            timed("lease_keep_alive", stream.message()).await
        }
        .await;
        let resp = match result {
            Ok(Some(resp)) => resp,
            Err(e) if e.to_string().contains("lease not found") => {
                return self.lease_expired(id).await;
            }
            Ok(None) | Err(_) => {
                counter!(m::LEASE_RENEWAL_FAILURES).increment(1);
                session.keeper = None;
                return Err(Error::Unavailable("etcd lease renewal failed".into()));
            }
        };
        if resp.ttl() <= 0 {
            return self.lease_expired(id).await;
        }
        self.serve_until = Some(sent + self.renewal_window(resp.ttl()));
        self.next_renewal = Instant::now() + self.config.lease_ttl / 3;
        Ok(())
    }

    /// The lease is gone (we were paused, or cut off, for longer than its TTL): every shard
    /// held under it may have a new owner already.
    async fn lease_expired(&mut self, id: i64) -> Result<(), Error> {
        counter!(m::LEASE_RENEWAL_FAILURES).increment(1);
        warn!(lease = id, "lease expired; dropping every shard and joining again");
        self.lease = None;
        if let Some(s) = &mut self.session {
            s.keeper = None;
        }
        self.drop_all_shards("lease expired").await;
        Ok(())
    }

    /// Stops serving a shard at once, without a snapshot: a newer owner may be writing.
    async fn lose(&self, shard: u32) {
        self.registry.release(shard, false).await;
        counter!(m::SHARD_HANDOFFS, "kind" => "lost").increment(1);
    }

    /// Stops serving before the lease can expire.
    async fn guard(&mut self) {
        if self.serve_until.is_some_and(|until| Instant::now() >= until) {
            if !self.ownership.local_shards().is_empty() {
                warn!("lease not renewed in time; no longer serving any shard");
            }
            self.drop_all_shards("lease not renewed").await;
        }
    }

    async fn drop_all_shards(&mut self, why: &str) {
        let local = self.ownership.local_shards();
        if !local.is_empty() {
            warn!(shards = local.len(), why, "dropping shards without handover");
        }
        for (shard, _) in local {
            self.lose(shard).await;
        }
        self.publish_gauges();
        let _ = self.ready.send(false);
    }

    async fn list_and_watch(&mut self) -> Result<(), Error> {
        let prefix = self.prefix.clone();
        let client = self.client()?;
        let resp =
            timed("get", client.get(prefix.clone(), Some(GetOptions::new().with_prefix()))).await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let mut view = View::default();
        for kv in resp.kvs() {
            apply_kv(&prefix, &mut view, kv.key(), Some((kv.value(), kv.create_revision())));
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
                EventType::Put => Some((kv.value(), kv.create_revision())),
                EventType::Delete => None,
            };
            apply_kv(&self.prefix, &mut self.view, kv.key(), value);
        }
        self.ownership.set_view(self.view.clone());
        Ok(())
    }

    /// Takes, re-adopts, hands over and drops shards so that this node serves what rendezvous
    /// hashing over the live members gives it.
    async fn reconcile(&mut self) -> Result<(), Error> {
        if self.lease.is_none() || self.serve_until.is_none_or(|u| Instant::now() >= u) {
            return Ok(());
        }
        let me = self.config.node_id.clone();
        if !self.view.members.contains_key(&me) {
            // Our member key vanished (etcd restored from an old backup?): put it back.
            let key = self.member_key(&me);
            let (addr, lease) = (self.config.advertise_addr.clone(), self.lease.unwrap_or(0));
            let client = self.client()?;
            timed("put", client.put(key, addr, Some(PutOptions::new().with_lease(lease)))).await?;
            self.view.members.insert(me.clone(), self.config.advertise_addr.clone());
        }
        let members: Vec<String> = self.view.members.keys().cloned().collect();
        let mut claim = Vec::new();
        let mut readopt = Vec::new();
        let mut hand_over = Vec::new();
        let mut wanted = 0;
        for shard in 0..self.config.shards {
            let desired = desired_owner(shard, members.iter().map(String::as_str));
            wanted += usize::from(desired == Some(me.as_str()));
            let owner = self.view.owners.get(&shard);
            let local = self.ownership.is_local(shard);
            match owner {
                None if desired == Some(me.as_str()) => claim.push(shard),
                Some(o) if o.node == me && !local && desired == Some(me.as_str()) => {
                    readopt.push((shard, o.epoch))
                }
                // Ours but someone else's now: hand it over (or, if the guard already stopped
                // serving it, just let the key go so the new owner can claim it).
                Some(o) if o.node == me && desired != Some(me.as_str()) => hand_over.push(shard),
                // Someone else holds the key, or nobody does: our lease lapsed at some point.
                Some(o) if o.node != me && local => self.lose(shard).await,
                None if local => self.lose(shard).await,
                _ => {}
            }
        }
        readopt.truncate(ADOPT_BATCH);
        claim.truncate(ADOPT_BATCH.saturating_sub(readopt.len()));
        for chunk in claim.chunks(CLAIM_BATCH) {
            let epoch = self.claim(chunk).await?;
            for &shard in chunk {
                match epoch {
                    Some(epoch) => readopt.push((shard, epoch)),
                    None => break, // lost a race; the watch tells who won
                }
            }
        }
        if !readopt.is_empty() {
            // Fence every shard first (queued together, so they share commits), then start
            // their tenants.
            let store = self.registry.store().clone();
            let pending: Vec<_> = readopt
                .iter()
                .map(|&(shard, epoch)| store.raise_fence(Fence { shard, epoch }))
                .collect();
            for p in pending {
                p.await.map_err(|e| Error::Unavailable(e.to_string()))?;
            }
            let known = tokio::task::spawn_blocking(move || store.tenants())
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
                .map_err(|e| Error::Unavailable(e.to_string()))?;
            for (shard, epoch) in readopt {
                self.registry.adopt(shard, epoch, &known).await?;
                counter!(m::SHARD_HANDOFFS, "kind" => "acquired").increment(1);
            }
        }
        for shard in hand_over.into_iter().take(MOVE_BATCH) {
            self.hand_over(shard).await?;
        }
        self.publish_gauges();
        let owned = self.ownership.local_shards().len();
        if owned >= wanted && !*self.ready.borrow() {
            info!(owned, members = members.len(), "serving");
            let _ = self.ready.send(true);
        }
        Ok(())
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
            self.view.owners.insert(shard, Owner { node: me.clone(), epoch });
        }
        Ok(Some(epoch))
    }

    /// Hands a shard over: its tenants snapshot and stop, then the key goes, and the new owner
    /// (which sees the delete) claims it with a newer epoch.
    async fn hand_over(&mut self, shard: u32) -> Result<(), Error> {
        let epoch = self.view.owners.get(&shard).map_or(0, |o| o.epoch);
        self.registry.release(shard, true).await;
        let key = self.shard_key(shard);
        let me = self.config.node_id.clone();
        let txn = Txn::new()
            .when([
                Compare::value(key.clone(), CompareOp::Equal, me),
                Compare::create_revision(key.clone(), CompareOp::Equal, epoch as i64),
            ])
            .and_then([TxnOp::delete(key, None)]);
        let client = self.client()?;
        timed("txn", client.txn(txn)).await?;
        self.view.owners.remove(&shard);
        counter!(m::SHARD_HANDOFFS, "kind" => "released").increment(1);
        Ok(())
    }

    /// Graceful leave: out of the member list first (so nobody picks this node), then every
    /// shard handed over, then the lease revoked.
    async fn leave(&mut self) {
        let _ = self.ready.send(false);
        info!(
            shards = self.ownership.local_shards().len(),
            "leaving the cluster: handing over shards"
        );
        let me = self.config.node_id.clone();
        let key = self.member_key(&me);
        if let Ok(client) = self.client() {
            let _ = timed("delete", client.delete(key, None)).await;
        }
        // Once etcd fails, stop asking it (each try could wait its timeout): the rest is only
        // snapshotted here, and the lease's expiry frees their keys.
        let mut etcd_ok = true;
        for (shard, _) in self.ownership.local_shards() {
            if etcd_ok && let Err(e) = self.hand_over(shard).await {
                warn!(shard, error = %e, "handover failed; the lease expiry frees the rest");
                etcd_ok = false;
            }
            if !etcd_ok {
                self.registry.release(shard, true).await;
            }
        }
        if let (Some(id), Ok(client)) = (self.lease, self.client()) {
            let _ = timed("lease_revoke", client.lease_revoke(id)).await;
        }
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

async fn next_watch_message(
    session: &mut Option<Session>,
) -> Result<Option<etcd_client::WatchResponse>, etcd_client::Error> {
    match session.as_mut().and_then(|s| s.watch.as_mut()) {
        Some(watch) => watch.message().await,
        None => std::future::pending().await,
    }
}

/// Applies one key's new value (or its deletion) to the view.
fn apply_kv(prefix: &str, view: &mut View, key: &[u8], value: Option<(&[u8], i64)>) {
    let Some(key) = std::str::from_utf8(key).ok().and_then(|k| k.strip_prefix(prefix)) else {
        return;
    };
    if let Some(node) = key.strip_prefix("members/") {
        match value {
            Some((addr, _)) => {
                view.members.insert(node.to_owned(), String::from_utf8_lossy(addr).into_owned());
            }
            None => {
                view.members.remove(node);
            }
        }
    } else if let Some(shard) = key.strip_prefix("shards/").and_then(|s| s.parse::<u32>().ok()) {
        match value {
            Some((node, created)) => {
                let owner = Owner {
                    node: String::from_utf8_lossy(node).into_owned(),
                    epoch: u64::try_from(created).unwrap_or(0),
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
        apply_kv(p, &mut view, b"/switchboard/main/members/n1", Some((b"10.0.0.1:7400", 5)));
        apply_kv(p, &mut view, b"/switchboard/main/shards/7", Some((b"n1", 9)));
        apply_kv(p, &mut view, b"/switchboard/other/shards/8", Some((b"n2", 10)));
        apply_kv(p, &mut view, b"/switchboard/main/shards/x", Some((b"n2", 11)));
        assert_eq!(view.members.get("n1").map(String::as_str), Some("10.0.0.1:7400"));
        assert_eq!(view.owners.get(&7), Some(&Owner { node: "n1".into(), epoch: 9 }));
        assert_eq!(view.owners.len(), 1);
        apply_kv(p, &mut view, b"/switchboard/main/shards/7", None);
        apply_kv(p, &mut view, b"/switchboard/main/members/n1", None);
        assert!(view.owners.is_empty() && view.members.is_empty());
    }

    #[test]
    fn a_third_member_takes_about_a_third() {
        let three = assignment(1024, &["n1", "n2", "n3"]);
        assert_eq!(three.values().sum::<u32>(), 1024);
        assert!(three.values().all(|&n| (280..400).contains(&n)), "{three:?}");
    }
}
