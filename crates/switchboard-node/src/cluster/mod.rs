//! Cluster mode: which node owns which tenant, and how a node learns it.
//!
//! Tenants hash onto a fixed number of shards (chosen at cluster creation, default 1024). A
//! shard's desired owner is the live member that wins rendezvous hashing for it; it is owned
//! while its key in etcd is held under the owner's lease, and the key's create revision is the
//! shard's epoch — the fence every durable write carries (see `switchboard_store::Fence`).
//!
//! - [`membership`]: the etcd side — member key, list-then-watch, acquiring and handing
//!   over shards (on tasks of their own), the lease guard.
//! - [`lease`]: the membership lease, granted and renewed on a task of its own.
//! - [`forward`]: the gRPC side — a tower layer that sends each public call to the node
//!   that owns its tenant.
//!
//! [`Ownership`] is what both sides and the registry share: the shards this node serves (with
//! their epochs) and the cluster's view of every other shard's owner.

pub mod forward;
mod lease;
pub mod membership;
pub mod relay;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use switchboard_store::Fence;
use tokio::sync::watch;
use tokio::time::Instant;

/// How a node joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// etcd endpoints, `host:port` or `http://host:port`.
    pub etcd: Vec<String>,
    /// Key prefix in etcd, so several clusters can share one etcd.
    pub name: String,
    /// This node's id: unique and stable across restarts (a StatefulSet pod name).
    pub node_id: String,
    /// Where other nodes reach this node's gRPC port.
    pub advertise_addr: String,
    /// The membership lease's time to live.
    pub lease_ttl: Duration,
    /// Shards of the cluster; fixed at creation, refused if it differs from etcd's.
    pub shards: u32,
}

/// The shard a tenant lives in: FNV-1a of the tenant id, stable across builds and platforms.
pub fn shard_of(tenant: &str, shards: u32) -> u32 {
    (fnv1a(tenant.as_bytes()) % u64::from(shards.max(1))) as u32
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_parts(&[bytes])
}

/// FNV-1a over the concatenation of `parts`, without building it (a key's hash runs for
/// every shard on every membership tick, and for every message placed).
pub(crate) fn fnv1a_parts(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts.iter().flat_map(|part| part.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// FNV alone mixes the last bytes poorly; a 64-bit avalanche (splitmix's finaliser) fixes it.
pub(crate) fn avalanche(h: u64) -> u64 {
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Rendezvous (highest random weight) hashing: the member with the highest score for a shard
/// owns it, so a join or a leave moves only the shards that member wins or held.
pub fn desired_owner<'a>(
    shard: u32,
    members: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let shard = shard.to_be_bytes();
    members.into_iter().max_by_key(|m| (avalanche(fnv1a_parts(&[&shard, m.as_bytes()])), *m))
}

/// Who holds a shard's key in etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub node: String,
    /// The key's create revision: the shard's epoch.
    pub epoch: u64,
    /// The etcd lease the key is held under: a key naming this node under another lease than
    /// its current one is a previous incarnation's, never re-adopted.
    pub lease: i64,
}

/// The cluster as this node last saw it in etcd.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Live members: node id → advertised gRPC address.
    pub members: BTreeMap<String, String>,
    /// Owner of each shard that has one.
    pub owners: HashMap<u32, Owner>,
}

/// Where a call for a tenant goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This node serves it, under this fence.
    Local(Fence),
    /// Another node does: its id and address.
    Remote { node: String, addr: String },
    /// Nobody serves it right now (a handover or a failover in progress).
    Unowned { shard: u32 },
}

/// Shared between the membership task, the registry and the forwarding layer.
#[derive(Debug)]
pub struct Ownership {
    node_id: String,
    shards: u32,
    /// Shards this node serves, and may serve, and until when.
    local: RwLock<Local>,
    view: RwLock<View>,
    /// Bumped on every change, so waiters can wait for the next one.
    changes: watch::Sender<u64>,
    /// Channels to the other nodes.
    peers: forward::Peers,
}

impl Ownership {
    pub fn new(
        node_id: String,
        shards: u32,
        tls: Option<crate::auth::tls::ClusterTls>,
    ) -> Arc<Ownership> {
        Arc::new(Ownership {
            node_id,
            shards: shards.max(1),
            local: RwLock::default(),
            view: RwLock::default(),
            changes: watch::channel(0).0,
            peers: forward::Peers::new(tls),
        })
    }

    /// An ownership that never changes: these shards served here (shard, epoch), and this
    /// view of the cluster. For tests and tools that run nodes without etcd.
    pub fn fixed(
        node_id: String,
        shards: u32,
        local: impl IntoIterator<Item = (u32, u64)>,
        view: View,
        tls: Option<crate::auth::tls::ClusterTls>,
    ) -> Arc<Ownership> {
        let ownership = Ownership::new(node_id, shards, tls);
        {
            let mut l = write(&ownership.local);
            l.serving = local.into_iter().collect();
            l.granted = l.serving.clone();
            // A test's ownership never lapses (about a century).
            l.serve_until = Some(Instant::now() + Duration::from_secs(3_000_000_000));
        }
        ownership.set_view(view);
        ownership
    }

    /// Moves a shard of a fixed ownership: served here at `epoch`, or no longer (tests and
    /// tools that run nodes without etcd, moving a shard as the membership task would).
    pub fn set_fixed(&self, shard: u32, epoch: Option<u64>) {
        match epoch {
            Some(e) => {
                self.grant(shard, e);
                self.set_local(shard, Some(e));
            }
            None => {
                self.withdraw(shard);
            }
        }
    }

    pub fn peers(&self) -> &forward::Peers {
        &self.peers
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    pub fn shard_of(&self, tenant: &str) -> u32 {
        shard_of(tenant, self.shards)
    }

    /// The fence this node writes a tenant under, if it serves the tenant's shard.
    pub fn local_fence(&self, tenant: &str) -> Option<Fence> {
        let shard = self.shard_of(tenant);
        let epoch = read(&self.local).serves(shard)?;
        Some(Fence { shard, epoch })
    }

    /// Whether this node serves the shard now (its tenants run and the lease guard holds).
    pub fn is_local(&self, shard: u32) -> bool {
        read(&self.local).serves(shard).is_some()
    }

    /// The shards whose tenants run here, with their epochs (past the lease guard too: those
    /// are not served, but still to be stopped).
    pub fn local_shards(&self) -> Vec<(u32, u64)> {
        let mut v: Vec<_> = read(&self.local).serving.iter().map(|(s, e)| (*s, *e)).collect();
        v.sort_unstable();
        v
    }

    pub fn route(&self, tenant: &str) -> Route {
        self.route_shard(self.shard_of(tenant))
    }

    /// Where a call for anything in `shard` goes (an actor key's shard: `actors::placement`).
    pub fn route_shard(&self, shard: u32) -> Route {
        if let Some(epoch) = read(&self.local).serves(shard) {
            return Route::Local(Fence { shard, epoch });
        }
        let view = read(&self.view);
        match view.owners.get(&shard) {
            Some(owner) if owner.node != self.node_id => match view.members.get(&owner.node) {
                Some(addr) => Route::Remote { node: owner.node.clone(), addr: addr.clone() },
                None => Route::Unowned { shard },
            },
            _ => Route::Unowned { shard },
        }
    }

    /// Who holds the tenant's shard in this node's view (this node included), if anyone.
    pub fn owner_of(&self, tenant: &str) -> Option<Owner> {
        self.owner_of_shard(self.shard_of(tenant))
    }

    /// Who holds `shard` in this node's view (this node included), if anyone.
    pub fn owner_of_shard(&self, shard: u32) -> Option<Owner> {
        read(&self.view).owners.get(&shard).cloned()
    }

    /// A receiver that sees every change of ownership or view from now on.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The address of a member, if live.
    pub fn member_addr(&self, node: &str) -> Option<String> {
        read(&self.view).members.get(node).cloned()
    }

    pub fn view(&self) -> View {
        read(&self.view).clone()
    }

    /// Replaces the view (the membership task; tests and tools moving a fixed ownership).
    pub fn set_view(&self, view: View) {
        *write(&self.view) = view;
        self.changed();
    }

    /// Marks a shard served at `epoch` (the registry, once its tenants run), or not served.
    /// Marking is refused (`false`) unless the membership task still grants the shard at that
    /// epoch: an adoption that finishes after the lease was lost never serves.
    pub(crate) fn set_local(&self, shard: u32, epoch: Option<u64>) -> bool {
        let marked = {
            let mut local = write(&self.local);
            match epoch {
                Some(e) if local.granted.get(&shard) == Some(&e) => {
                    local.serving.insert(shard, e);
                    true
                }
                Some(_) => false,
                None => {
                    local.serving.remove(&shard);
                    true
                }
            }
        };
        self.changed();
        marked
    }

    /// Lets this node serve `shard` at `epoch` once its tenants run (membership only).
    pub(crate) fn grant(&self, shard: u32, epoch: u64) {
        write(&self.local).granted.insert(shard, epoch);
    }

    /// Stops serving `shard` at once and withdraws its grant; whether it was granted.
    pub(crate) fn withdraw(&self, shard: u32) -> bool {
        let granted = {
            let mut local = write(&self.local);
            local.serving.remove(&shard);
            local.granted.remove(&shard).is_some()
        };
        self.changed();
        granted
    }

    /// Stops serving every shard at once and withdraws every grant; the shards granted.
    pub(crate) fn withdraw_all(&self) -> Vec<u32> {
        let granted: Vec<u32> = {
            let mut local = write(&self.local);
            local.serving.clear();
            local.granted.drain().map(|(s, _)| s).collect()
        };
        self.changed();
        granted
    }

    /// The shards granted, with their epochs.
    pub(crate) fn granted(&self) -> HashMap<u32, u64> {
        read(&self.local).granted.clone()
    }

    /// Whether `shard` is served at `epoch` right now.
    pub(crate) fn serves(&self, shard: u32, epoch: u64) -> bool {
        read(&self.local).serves(shard) == Some(epoch)
    }

    /// Moves the lease guard (the lease task, after each renewal; `None` when the lease is
    /// gone). Past it, nothing is served, whatever the membership task is doing.
    pub(crate) fn set_serve_until(&self, until: Option<Instant>) {
        let was_live = {
            let mut local = write(&self.local);
            let was = local.serve_until.is_some_and(|u| Instant::now() < u);
            local.serve_until = until;
            was
        };
        // A renewal that only moves the instant on changes nothing a waiter cares about.
        if !was_live || until.is_none() {
            self.changed();
        }
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Resolves at the next change of ownership or view (or after `timeout`).
    pub async fn next_change(&self, timeout: Duration) {
        let mut rx = self.changes.subscribe();
        let _ = tokio::time::timeout(timeout, rx.changed()).await;
    }
}

/// What this node serves, under one lock so that a grant withdrawn is never served after.
#[derive(Debug, Default)]
struct Local {
    /// Shards whose tenants run here, with their epochs: set by the registry once a shard's
    /// fence is raised and its tenants started, and only while the grant below still holds.
    serving: HashMap<u32, u64>,
    /// Shards the membership task lets this node serve at an epoch: held under the current
    /// lease, being adopted or served. Withdrawn on a loss, a hand-over or a guard trip.
    granted: HashMap<u32, u64>,
    /// The lease guard: nothing is served from this instant on (`None`: no lease).
    serve_until: Option<Instant>,
}

impl Local {
    fn serves(&self, shard: u32) -> Option<u64> {
        let live = self.serve_until.is_some_and(|until| Instant::now() < until);
        self.serving.get(&shard).copied().filter(|_| live)
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Placement must not change between versions (nodes of two versions share a cluster):
    /// the hash over parts is the hash over their concatenation, and a shard's owner is the
    /// one the allocating version chose.
    #[test]
    fn hashing_parts_places_as_hashing_their_concatenation() {
        assert_eq!(fnv1a_parts(&[b"acme", &[0xfd], b"c-17"]), fnv1a(b"acme\xfdc-17"));
        assert_eq!(fnv1a_parts(&[]), fnv1a(b""));
        let members = ["n1", "n2", "node-three"];
        for shard in 0..1024u32 {
            let before = members.iter().copied().max_by_key(|m| {
                let mut bytes = shard.to_be_bytes().to_vec();
                bytes.extend_from_slice(m.as_bytes());
                (avalanche(fnv1a(&bytes)), *m)
            });
            assert_eq!(desired_owner(shard, members), before, "shard {shard}");
        }
    }

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("acme", 1024), shard_of("acme", 1024));
        let mut counts = vec![0u32; 16];
        for i in 0..16_000 {
            counts[shard_of(&format!("tenant-{i}"), 16) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800 && c < 1200), "{counts:?}");
    }

    #[test]
    fn rendezvous_moves_only_what_it_must() {
        let two = ["a", "b"];
        let three = ["a", "b", "c"];
        let mut moved = 0;
        let mut to_c = 0;
        for shard in 0..1024 {
            let before = desired_owner(shard, two).unwrap();
            let after = desired_owner(shard, three).unwrap();
            if before != after {
                moved += 1;
                assert_eq!(after, "c", "a join moves shards only to the newcomer");
            }
            if after == "c" {
                to_c += 1;
            }
        }
        assert_eq!(moved, to_c);
        assert!((250..430).contains(&moved), "about a third moves: {moved}");
    }
}
