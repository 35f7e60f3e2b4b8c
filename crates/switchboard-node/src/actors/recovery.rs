//! Recovery (issue 12 item 6): a node brings back the mesh actors it now serves without
//! waiting for a message to reach them, so a queued conversation's timers, a router's offers
//! and every unacknowledged envelope run again as soon as their shard is served here.
//!
//! - **On adoption** ([`Meshes::recover_shards`], from the membership task's adoption job,
//!   once the shards are served): every actor of a tenant served by actors
//!   (`TENANT_ROUTING_ACTORS`) whose key is in one of the adopted shards and has a row.
//! - **On a single node** ([`Meshes::recover_all`], from `server.rs` at start): every such
//!   actor with a row.
//!
//! Finding one shard's rows reads no actor of another shard, except agents:
//! - the tenants: only those with actor rows (`Store::actor_tenants`, a skip scan of the
//!   actors table's primary key), then only those whose routing is by actors
//!   ([`Meshes::actor_routing`]); a tenant-actor tenant has no mesh actor to recover;
//! - conversation actors: a tenant served by actors keys them by numbers that carry their
//!   shard (`placement::number_in_shard`, all 16 decimal digits), so one shard's keys are one
//!   string range of the primary key, and a run of consecutive shards one range too; walked in
//!   pages of keys (`Store::actor_keys`), bodies left to the actors that load them. A key in
//!   the range that is no such number (a tenant actor's small numbers never are; they sort
//!   between 16-digit strings) is skipped by its placement;
//! - the router: activated if the tenant's shard is among them;
//! - agent actors: every agent key of the tenant, in pages, those placed in the shards
//!   activated (a tenant has few agents).
//!
//! The numbers carry the shard out of the cluster's count (the allocator places them with
//! it), so a conversation actor of shard `s` has a number carrying `s`. Activation is the
//! mesh's own (the directory keeps one actor per key on this node; an actor already live, say
//! activated by a message first, is left as it is); an actor whose shard is no longer served
//! here by the time its turn comes is skipped (its owner recovers it).

use std::collections::BTreeSet;
use std::ops::AddAssign;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use switchboard_core::{AgentId, CustomerId};
use tracing::{info, warn};

use super::meshes::Meshes;
use super::placement::{self, ActorKey, MAX_SEQUENCE};
use super::{AGENT, CONVERSATION, Mesh, blocking};
use crate::error::{Error, Result};

/// Keys (or tenants) read per store round trip.
const PAGE: usize = 256;
/// Activations a recovery runs at once: about the blocking pool's threads (16), whose reads
/// share the store's read connections.
const ACTIVATIONS: usize = 16;
/// The wait before a recovery that left actors behind runs again; it doubles each time.
const RETRY: Duration = Duration::from_secs(1);
/// How many times a shard's recovery runs at most (the actors it leaves come back with
/// their next message).
const RETRIES: u32 = 5;

/// What a recovery activated, and what it could not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Tenants served by actors that had rows to look at.
    pub tenants: usize,
    pub routers: usize,
    pub conversations: usize,
    pub agents: usize,
    /// Actors whose activation failed while their shard was still served here (a store
    /// read failed, say): they come back with their next message.
    pub failed: usize,
}

impl AddAssign for Recovered {
    fn add_assign(&mut self, other: Recovered) {
        self.tenants += other.tenants;
        self.routers += other.routers;
        self.conversations += other.conversations;
        self.agents += other.agents;
        self.failed += other.failed;
    }
}

/// Which actors of a mesh to recover: those placed in these shards, or all.
#[derive(Debug, Clone, Copy)]
enum Scope<'a> {
    Shards(&'a BTreeSet<u32>),
    All,
}

impl Meshes {
    /// Activates every actor of every tenant served by actors whose key is in one of
    /// `shards` and has a row (see the module's docs): what the adoption job runs once the
    /// shards are served here. Shards no longer served here are left out. Errs only if the
    /// tenants cannot be listed; an actor that fails to activate is counted in `failed`.
    pub async fn recover_shards(&self, shards: &[u32]) -> Result<Recovered> {
        let ownership = self.ownership();
        let shards: BTreeSet<u32> =
            shards.iter().copied().filter(|s| ownership.is_local(*s)).collect();
        if shards.is_empty() {
            return Ok(Recovered::default());
        }
        self.recover(Scope::Shards(&shards)).await
    }

    /// Runs [`Meshes::recover_shards`] on a task of its own (the adoption job spawns it once
    /// its shards are served, and ends: a recovery of many actors must not keep the shards
    /// busy, which would hold back the next adoptions and any hand-over). A recovery that
    /// could not list the tenants, or left actors that failed to activate, runs again after
    /// [`RETRY`] (doubling, at most [`RETRIES`] times) for the shards still served here.
    pub fn spawn_recovery(self: &Arc<Self>, shards: Vec<u32>) {
        let meshes = self.clone();
        tokio::spawn(async move {
            let mut wait = RETRY;
            for attempt in 1..=RETRIES {
                match meshes.recover_shards(&shards).await {
                    Ok(done) if done.failed == 0 => {
                        if done != Recovered::default() {
                            info!(shards = shards.len(), ?done, "recovered the shards' actors");
                        }
                        return;
                    }
                    Ok(done) => {
                        warn!(shards = shards.len(), ?done, attempt, "recovery left actors behind");
                    }
                    Err(e) => warn!(shards = shards.len(), error = %e, attempt, "recovery failed"),
                }
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        });
    }

    /// Activates every actor of every tenant served by actors that has a row: a single
    /// node at start (it serves every shard).
    pub async fn recover_all(&self) -> Result<Recovered> {
        self.recover(Scope::All).await
    }

    async fn recover(&self, scope: Scope<'_>) -> Result<Recovered> {
        let mut done = Recovered::default();
        let mut after = String::new();
        loop {
            let (store, from) = (self.store().clone(), after.clone());
            let page = blocking(move || store.actor_tenants(&from, PAGE)).await?;
            for tenant in &page {
                match self.actor_routing(tenant).await {
                    Ok(true) => {}
                    // A tenant-actor tenant (its rows are a test's or a tool's), or one whose
                    // log is gone.
                    Ok(false) | Err(Error::NotFound(_)) => continue,
                    Err(e) => {
                        warn!(tenant, error = %e, "recovery: the tenant's mesh did not load");
                        done.failed += 1;
                        continue;
                    }
                }
                let mesh = match self.mesh(tenant).await {
                    Ok(mesh) => mesh,
                    Err(e) => {
                        warn!(tenant, error = %e, "recovery: the tenant's mesh did not load");
                        done.failed += 1;
                        continue;
                    }
                };
                let recovered = mesh.recover_in(scope).await;
                done += Recovered { tenants: 1, ..recovered };
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.clone(),
                _ => return Ok(done),
            }
        }
    }
}

impl Mesh {
    /// Activates this tenant's actors with rows in `scope`. A store read that fails ends
    /// the walk it is in (counted in `failed`); the others go on.
    async fn recover_in(&self, scope: Scope<'_>) -> Recovered {
        let mut done = Recovered::default();
        let count = self.0.ownership.as_ref().map_or(1, |o| o.shards());
        let wanted = move |key: ActorKey<'_>| match scope {
            Scope::Shards(shards) => shards.contains(&key.shard(count)),
            Scope::All => true,
        };

        let router = ActorKey::Router { tenant: self.tenant() };
        if wanted(router) {
            match self.tally(router, self.router_ref().await.map(drop)) {
                Some(true) => done.routers += 1,
                Some(false) => done.failed += 1,
                None => {}
            }
        }

        let ranges: Vec<(String, Option<String>)> = match scope {
            Scope::Shards(shards) => runs(shards)
                .filter_map(|(first, last)| {
                    let lo = placement::number_in_shard(first, 0)?;
                    let hi = placement::number_in_shard(last, MAX_SEQUENCE)?;
                    Some(((lo - 1).to_string(), Some(hi.to_string())))
                })
                .collect(),
            Scope::All => vec![(String::new(), None)],
        };
        for (after, until) in ranges {
            self.walk(CONVERSATION, after, until, &wanted, &mut done).await;
        }
        self.walk(AGENT, String::new(), None, &wanted, &mut done).await;
        done
    }

    /// Pages through the keys of `kind` (conversation or agent actors) in `(after, until]`
    /// and activates those `wanted`, counting them in `done`.
    async fn walk(
        &self,
        kind: &'static str,
        mut after: String,
        until: Option<String>,
        wanted: &(dyn Fn(ActorKey<'_>) -> bool + Sync),
        done: &mut Recovered,
    ) {
        loop {
            let (store, tenant) = (self.0.store.clone(), self.0.tenant.clone());
            let (from, to) = (after.clone(), until.clone());
            let read = move || store.actor_keys(&tenant, kind, &from, to.as_deref(), PAGE);
            let page = match blocking(read).await {
                Ok(page) => page,
                Err(e) => {
                    warn!(tenant = self.tenant(), kind, error = %e, "recovery: actors not listed");
                    done.failed += 1;
                    return;
                }
            };
            // A page's activations run together, at most `ACTIVATIONS` at a time: each
            // waits on its reads (its row, and a conversation's transcript rows after it) on
            // the blocking pool, and one at a time left the reads' threads idle.
            let tenant = self.tenant();
            let keys: Vec<ActorKey<'_>> = page
                .iter()
                .filter_map(|key| {
                    let n = key.parse::<u64>().ok()?;
                    let key = if kind == AGENT {
                        ActorKey::Agent { tenant, agent: AgentId(n) }
                    } else {
                        ActorKey::Conversation { tenant, customer: CustomerId(n) }
                    };
                    wanted(key).then_some(key)
                })
                .collect();
            let (mut keys, mut running) = (keys.into_iter(), FuturesUnordered::new());
            loop {
                while running.len() < ACTIVATIONS {
                    let Some(key) = keys.next() else { break };
                    running.push(self.recover_one(key));
                }
                let Some(outcome) = running.next().await else { break };
                let back = usize::from(outcome == Some(true));
                if kind == AGENT {
                    done.agents += back;
                } else {
                    done.conversations += back;
                }
                done.failed += usize::from(outcome == Some(false));
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.clone(),
                _ => return,
            }
        }
    }

    /// Activates one actor of a page; its outcome as [`tally`](Self::tally) reads it.
    async fn recover_one(&self, key: ActorKey<'_>) -> Option<bool> {
        let activated = match key {
            ActorKey::Agent { agent, .. } => self.agent_ref(agent).await.map(drop),
            ActorKey::Conversation { customer, .. } => {
                self.conversation_ref(customer).await.map(drop)
            }
            // A walk pages conversation and agent keys only.
            ActorKey::Router { .. } => return None,
        };
        self.tally(key, activated)
    }

    /// One activation's outcome: `Some(true)` it came back, `Some(false)` it failed while
    /// its shard is still served here (logged), `None` its shard went meanwhile (its owner
    /// recovers it).
    fn tally(&self, key: ActorKey<'_>, activated: Result<()>) -> Option<bool> {
        match activated {
            Ok(()) => Some(true),
            Err(_) if self.fence_of(key).is_err() => None,
            Err(e) => {
                warn!(tenant = self.tenant(), actor = %key, error = %e, "recovery: actor did not activate");
                Some(false)
            }
        }
    }
}

/// The runs of consecutive shards in `shards`: (first, last) each.
fn runs(shards: &BTreeSet<u32>) -> impl Iterator<Item = (u32, u32)> + '_ {
    let mut iter = shards.iter().copied().peekable();
    std::iter::from_fn(move || {
        let first = iter.next()?;
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        Some((first, last))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_shards_make_one_run() {
        let set = |s: &[u32]| s.iter().copied().collect::<BTreeSet<u32>>();
        assert_eq!(runs(&set(&[])).collect::<Vec<_>>(), []);
        assert_eq!(runs(&set(&[7])).collect::<Vec<_>>(), [(7, 7)]);
        assert_eq!(runs(&set(&[0, 1, 2, 5, 7, 8])).collect::<Vec<_>>(), [(0, 2), (5, 5), (7, 8)]);
        let all: BTreeSet<u32> = (0..1024).collect();
        assert_eq!(runs(&all).collect::<Vec<_>>(), [(0, 1023)]);
    }

    #[test]
    fn a_run_of_shards_is_one_range_of_16_digit_keys() {
        // The range the walk reads for shards 3..=5 holds exactly their numbers.
        let lo = placement::number_in_shard(3, 0).unwrap();
        let hi = placement::number_in_shard(5, MAX_SEQUENCE).unwrap();
        let (after, until) = ((lo - 1).to_string(), hi.to_string());
        assert_eq!((after.len(), until.len()), (16, 16));
        for shard in [2, 3, 4, 5, 6] {
            for seq in [0, 1, MAX_SEQUENCE] {
                let key = placement::number_in_shard(shard, seq).unwrap().to_string();
                let inside = after < key && key <= until;
                assert_eq!(inside, (3..=5).contains(&shard), "shard {shard}, sequence {seq}");
            }
        }
    }
}
