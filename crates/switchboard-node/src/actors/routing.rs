//! A tenant's routing mode (the public API served by its tenant actor, or by its actors: see
//! ARCHITECTURE.md, the cut-over), read for every call by the forwarder and the services, so
//! read without loading the tenant.
//!
//! **The row.** CreateTenant writes, in the batch of its log record, one [`ActorState`] of
//! kind [`TENANT`] and key [`ROUTING`] whose body is the mode ([`row`]). It is durable with
//! the creation or not at all, so a tenant that exists without it was created before the row
//! was: a tenant-actor tenant. (No command changes or deletes it: the mode is fixed at
//! creation, and no tenant is ever deleted.)
//!
//! **The read** ([`RoutingModes::read`]): a cached answer, else the tenant's existence
//! *first*, then the row. In that order a creation that commits between the two probes is
//! seen as created with its row; the other order could miss the row and then see the tenant,
//! and cache a tenant-actor answer for an actor tenant forever. A found row is cached for
//! good; a missing one is cached as "tenant actor" only for a tenant that exists; a tenant
//! that does not exist is NOT_FOUND and not cached (it may be created a moment later). At
//! most [`MAX_CACHED`] tenants are cached; past that an arbitrary entry makes room (it is
//! read again when next asked).

use std::sync::{Mutex, PoisonError};

use rustc_hash::FxHashMap;
use switchboard_store::{ActorState, Store};

use crate::error::{Error, Result};

/// The row's actor kind: the tenant itself.
pub const TENANT: &str = "tenant";
/// The row's key within [`TENANT`].
pub const ROUTING: &str = "routing";
/// How many tenants' modes a node keeps.
pub const MAX_CACHED: usize = 100_000;

/// The body of an actor tenant's row.
const ACTORS: &[u8] = b"actors";
/// The body of a tenant-actor tenant's row.
const TENANT_ACTOR: &[u8] = b"tenant_actor";

/// The row CreateTenant writes: the tenant's public API is served by its actors or not.
pub fn row(actor_routing: bool) -> ActorState {
    ActorState {
        kind: TENANT.into(),
        key: ROUTING.into(),
        epoch: 0,
        body: Some(if actor_routing { ACTORS } else { TENANT_ACTOR }.to_vec()),
    }
}

/// The two probes a read makes, so the rules above can be tested on their own.
pub trait Probe {
    /// Whether the tenant was created ([`Store::tenant_exists`]).
    fn tenant_exists(&self, tenant: &str) -> Result<bool>;
    /// What its row says: `Some(true)` actors, `Some(false)` the tenant actor, `None` none.
    fn routing_row(&self, tenant: &str) -> Result<Option<bool>>;
}

impl<S: Store + ?Sized> Probe for S {
    fn tenant_exists(&self, tenant: &str) -> Result<bool> {
        Ok(Store::tenant_exists(self, tenant)?)
    }

    fn routing_row(&self, tenant: &str) -> Result<Option<bool>> {
        let Some(state) = self.actor(tenant, TENANT, ROUTING)? else { return Ok(None) };
        match state.body.as_deref() {
            Some(ACTORS) => Ok(Some(true)),
            Some(TENANT_ACTOR) => Ok(Some(false)),
            other => Err(Error::Internal(format!(
                "tenant {tenant}'s routing row holds {:?}, neither actors nor tenant_actor",
                other.map(String::from_utf8_lossy)
            ))),
        }
    }
}

/// The modes this node has read, by tenant.
#[derive(Debug, Default)]
pub struct RoutingModes {
    cached: Mutex<FxHashMap<String, bool>>,
}

impl RoutingModes {
    /// The tenant's mode if this node knows it already (no store read).
    pub fn cached(&self, tenant: &str) -> Option<bool> {
        self.lock().get(tenant).copied()
    }

    /// Whether the tenant's public API is served by its actors: the cached answer, or read
    /// from `store` (blocking: call it off the runtime) as the module docs say.
    pub fn read(&self, store: &(impl Probe + ?Sized), tenant: &str) -> Result<bool> {
        if let Some(mode) = self.cached(tenant) {
            return Ok(mode);
        }
        // The order matters (module docs): existence first, then the row.
        if !store.tenant_exists(tenant)? {
            return Err(Error::NotFound(format!("tenant {tenant:?}")));
        }
        let mode = store.routing_row(tenant)?.unwrap_or(false);
        let mut cached = self.lock();
        if cached.len() >= MAX_CACHED
            && !cached.contains_key(tenant)
            && let Some(victim) = cached.keys().next().cloned()
        {
            cached.remove(&victim);
        }
        cached.insert(tenant.to_owned(), mode);
        Ok(mode)
    }

    /// How many tenants are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<String, bool>> {
        self.cached.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    /// A creation the store runs during a probe.
    type Creation = Box<dyn FnOnce(&Counting)>;

    /// A store of tenants and rows that records every probe, in order.
    #[derive(Default)]
    struct Counting {
        tenants: RefCell<HashMap<String, Option<bool>>>,
        probes: RefCell<Vec<String>>,
        failing: RefCell<bool>,
        /// Runs once, inside the first existence probe (a creation racing the read).
        during_exists: RefCell<Option<Creation>>,
    }

    impl Counting {
        fn create(&self, tenant: &str, row: Option<bool>) {
            self.tenants.borrow_mut().insert(tenant.to_owned(), row);
        }

        fn probes(&self) -> Vec<String> {
            self.probes.take()
        }
    }

    impl Probe for Counting {
        fn tenant_exists(&self, tenant: &str) -> Result<bool> {
            self.probes.borrow_mut().push(format!("exists {tenant}"));
            if *self.failing.borrow() {
                return Err(Error::Unavailable("disk unreadable".into()));
            }
            let exists = self.tenants.borrow().contains_key(tenant);
            if let Some(creation) = self.during_exists.take() {
                creation(self);
            }
            Ok(exists)
        }

        fn routing_row(&self, tenant: &str) -> Result<Option<bool>> {
            self.probes.borrow_mut().push(format!("row {tenant}"));
            Ok(self.tenants.borrow().get(tenant).copied().flatten())
        }
    }

    #[test]
    fn a_found_row_is_read_once_and_cached_for_good() {
        let (store, modes) = (Counting::default(), RoutingModes::default());
        store.create("acme", Some(true));
        store.create("bank", Some(false));
        assert!(modes.read(&store, "acme").unwrap());
        assert!(!modes.read(&store, "bank").unwrap());
        assert_eq!(store.probes(), ["exists acme", "row acme", "exists bank", "row bank"]);
        for _ in 0..3 {
            assert!(modes.read(&store, "acme").unwrap());
            assert!(!modes.read(&store, "bank").unwrap());
        }
        assert_eq!(store.probes(), Vec::<String>::new(), "answered from the cache");
        assert_eq!((modes.cached("acme"), modes.cached("bank")), (Some(true), Some(false)));
    }

    #[test]
    fn a_tenant_without_a_row_is_a_tenant_actor_tenant_and_cached() {
        let (store, modes) = (Counting::default(), RoutingModes::default());
        store.create("old", None);
        assert!(!modes.read(&store, "old").unwrap());
        assert!(!modes.read(&store, "old").unwrap());
        assert_eq!(store.probes(), ["exists old", "row old"]);
    }

    #[test]
    fn an_unknown_tenant_is_not_found_and_not_cached() {
        let (store, modes) = (Counting::default(), RoutingModes::default());
        let e = modes.read(&store, "new").unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        assert_eq!(store.probes(), ["exists new"], "no row read for a tenant that is not");
        assert!(modes.is_empty());
        // Created a moment later, with actors: read again, and right.
        store.create("new", Some(true));
        assert!(modes.read(&store, "new").unwrap());
        assert_eq!(store.probes(), ["exists new", "row new"]);
    }

    /// A creation that commits while the read runs: existence is probed first, so a read
    /// that saw no tenant answers NOT_FOUND (never "tenant actor" for an actor tenant), and
    /// one that saw the tenant sees its row too (they commit together).
    #[test]
    fn a_creation_racing_the_read_is_never_cached_as_tenant_actor() {
        let (store, modes) = (Counting::default(), RoutingModes::default());
        *store.during_exists.borrow_mut() =
            Some(Box::new(|s: &Counting| s.create("racy", Some(true))));
        assert!(matches!(modes.read(&store, "racy"), Err(Error::NotFound(_))));
        assert_eq!(modes.cached("racy"), None);
        assert!(modes.read(&store, "racy").unwrap());
        assert_eq!(store.probes(), ["exists racy", "exists racy", "row racy"]);
    }

    #[test]
    fn a_failed_probe_is_an_error_and_not_cached() {
        let (store, modes) = (Counting::default(), RoutingModes::default());
        store.create("acme", Some(true));
        *store.failing.borrow_mut() = true;
        assert!(matches!(modes.read(&store, "acme"), Err(Error::Unavailable(_))));
        assert!(modes.is_empty());
        *store.failing.borrow_mut() = false;
        assert!(modes.read(&store, "acme").unwrap());
    }

    #[test]
    fn the_cache_is_bounded() {
        let (store, modes) = (Counting::default(), RoutingModes::default());
        for i in 0..MAX_CACHED + 10 {
            let tenant = format!("t{i}");
            store.create(&tenant, Some(i % 2 == 0));
            assert_eq!(modes.read(&store, &tenant).unwrap(), i % 2 == 0);
        }
        assert_eq!(modes.len(), MAX_CACHED);
        // The newest is kept; an evicted one is read again, correctly.
        let newest = format!("t{}", MAX_CACHED + 9);
        assert_eq!(modes.cached(&newest), Some(false));
        store.probes();
        for i in 0..MAX_CACHED + 10 {
            let tenant = format!("t{i}");
            assert_eq!(modes.read(&store, &tenant).unwrap(), i % 2 == 0);
        }
        assert_eq!(modes.len(), MAX_CACHED);
    }

    #[test]
    fn the_row_says_the_mode() {
        assert_eq!(row(true).body.as_deref(), Some(ACTORS));
        assert_eq!(row(false).body.as_deref(), Some(TENANT_ACTOR));
        assert_eq!((row(true).kind.as_str(), row(true).key.as_str()), (TENANT, ROUTING));
    }

    /// Through the node's own path: CreateTenant (by the tenant actor) writes the row; after
    /// a restart (snapshots taken, log records gone) a fresh node reads each tenant's mode
    /// right, a tenant created before the row existed included, without loading any.
    #[tokio::test]
    async fn every_tenant_answers_its_mode_after_a_restart() {
        use std::sync::Arc;

        use prost::Message as _;
        use switchboard_proto::internal::v1::{Command, command::Op};
        use switchboard_proto::v1 as pb;
        use switchboard_store::{Batch, LogRecord, SqliteOptions, SqliteStore};

        use crate::actors::MeshOptions;
        use crate::actors::meshes::Meshes;
        use crate::cluster::Ownership;
        use crate::registry::{Options, Registry};

        let dir = tempfile::tempdir().unwrap();
        let open = || -> Arc<dyn Store> {
            Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap())
        };
        let node = |store: Arc<dyn Store>| {
            let here = Ownership::fixed("local".into(), 1, [(0, 0)], Default::default(), None);
            Meshes::new(store, here, MeshOptions::default())
        };
        // A creation that names no routing gets the node's default (actors); one logged
        // before that default, without a routing, stays the tenant actor's.
        let expected = [("acts", true), ("plain", true), ("explicit", false), ("old", false)];
        {
            let store = open();
            let hub = crate::hub::Hub::default();
            let registry = Registry::load(store.clone(), hub, Options::default()).await.unwrap();
            for (tenant, routing) in [
                ("acts", pb::TenantRouting::Actors),
                ("plain", pb::TenantRouting::Unspecified),
                ("explicit", pb::TenantRouting::TenantActor),
            ] {
                let create = pb::CreateTenantRequest {
                    tenant_id: tenant.into(),
                    routing: routing as i32,
                    ..Default::default()
                };
                registry.create_tenant(create).await.unwrap();
            }
            // A tenant created before this change: its creation was logged without the row.
            let create = pb::CreateTenantRequest { tenant_id: "old".into(), ..Default::default() };
            let cmd =
                Command { at_ms: 1_000, op: Some(Op::CreateTenant(create)), ..Default::default() };
            let record = LogRecord {
                seq: 1,
                at_ms: 1_000,
                request_id: None,
                command: cmd.encode_to_vec(),
                response: Vec::new(),
            };
            let old = Batch { tenant: "old".into(), log: vec![record], ..Batch::default() };
            store.append(old).await.unwrap();
            assert_eq!(store.actor("old", TENANT, ROUTING).unwrap(), None);
            assert_eq!(store.actor("acts", TENANT, ROUTING).unwrap(), Some(row(true)));

            let meshes = node(store.clone());
            for (tenant, mode) in expected {
                assert_eq!(meshes.actor_routing(tenant).await.unwrap(), mode, "{tenant}");
            }
            registry.shutdown().await;
        }

        // Restarted: the snapshots replaced the creations' log records; the rows stay.
        let store = open();
        assert!(store.load("acts").unwrap().log.is_empty(), "snapshotted at shutdown");
        let meshes = node(store.clone());
        for (tenant, mode) in expected {
            assert_eq!(meshes.actor_routing(tenant).await.unwrap(), mode, "{tenant}");
        }
        assert!(meshes.running("acts").is_none(), "no tenant loaded to answer");
        let e = meshes.actor_routing("nobody").await.unwrap_err();
        assert!(matches!(e, Error::NotFound(_)), "{e:?}");
        // The mesh, once loaded, agrees with the row.
        assert!(meshes.mesh("acts").await.unwrap().config().actor_routing);
        assert!(!meshes.mesh("old").await.unwrap().config().actor_routing);
    }
}
