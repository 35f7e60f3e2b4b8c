//! The actor meshes of one cluster node (issue 12): one shared [`InProcess`] and one
//! [`GrpcTransport`] per node, and a [`Mesh`] per tenant created on demand — by the first
//! envelope for the tenant that reaches this node ([`ActorMeshGrpc`]) or the first handle
//! call ([`Meshes::mesh`]). Each mesh is [`Mesh::clustered`]: its actors run here only while
//! this node owns their keys' shards, write under those shards' fences, and stop when a
//! shard moves away.
//!
//! A mesh's [`TenantConfig`] (swapped whole for a newer one, [`Mesh::refresh`] and
//! `super::config`) and the router its router actor starts from when it
//! has no row are read from the store as the tenant actor loads a tenant (snapshot and the
//! log after it), off the runtime, without a node-wide lock held across the load: each
//! tenant has its own once-cell, so a slow load delays only that tenant's first envelopes
//! (their senders resend them).
//!
//! A single node runs its meshes too, under an ownership of one shard served here
//! (`server.rs`). The actors of the shards a node serves come back from their rows without
//! waiting for a message ([`super::recovery`]: on adoption, and on a single node at start).
//!
//! **Agent actors** run in the meshes of tenants created with `TENANT_ROUTING_ACTORS` (their
//! agents' own calls are served by them, `service::agent_actors`): such a mesh is built with
//! [`MeshOptions::agent_actors`] on whatever the node's options say, so its router has agent
//! links and its router and conversations write the agents' desk streams; every other
//! tenant's mesh keeps the node's options. Durable desk entries go to the hub of the node
//! where the agent's actor runs ([`Meshes::with_hub`]; sent there when written elsewhere),
//! where `AgentService.StreamEvents` follows them.

use std::sync::{Arc, Mutex, PoisonError};

use rustc_hash::FxHashMap;
use switchboard_core::{AgentId, GroupId};
use switchboard_proto::internal::v1::actor_mesh_service_server::ActorMeshServiceServer;
use switchboard_store::Store;
use tokio::sync::OnceCell;

use super::grpc::{ActorMeshGrpc, GrpcTransport};
use super::numbers::Numbers;
use super::routing::RoutingModes;
use super::transport::InProcess;
use super::{Mesh, MeshArgs, MeshOptions, TenantConfig};
use crate::cluster::Ownership;
use crate::error::{Error, Result};

/// Envelopes from other nodes a tenant's actors may have accepted and not yet handled on
/// this node; beyond it `ActorMeshService.Deliver` answers RESOURCE_EXHAUSTED (the sender
/// drops the envelope and the link resends it).
pub const MAX_INBOUND: usize = 10_000;

/// Every tenant's mesh on this node.
pub struct Meshes {
    local: Arc<InProcess>,
    ownership: Arc<Ownership>,
    store: Arc<dyn Store>,
    transport: Arc<GrpcTransport>,
    options: MeshOptions,
    /// The node's live fan-out, handed to every mesh (agent actors publish there).
    hub: Option<crate::hub::Hub>,
    meshes: Mutex<FxHashMap<String, Arc<OnceCell<Mesh>>>>,
    /// Customer and conversation numbers of actor tenants, with the node's shard count.
    numbers: Arc<Numbers>,
    /// Each tenant's routing mode, as read ([`Meshes::actor_routing`]).
    modes: Arc<RoutingModes>,
}

impl std::fmt::Debug for Meshes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A store, a transport and actor directories: the node and the count say enough.
        let meshes = self.meshes.lock().unwrap_or_else(PoisonError::into_inner).len();
        f.debug_struct("Meshes")
            .field("node", &self.ownership.node_id())
            .field("meshes", &meshes)
            .finish_non_exhaustive()
    }
}

impl Meshes {
    pub fn new(store: Arc<dyn Store>, ownership: Arc<Ownership>, options: MeshOptions) -> Self {
        let local = Arc::new(InProcess::default());
        let transport = Arc::new(GrpcTransport::new(local.clone(), ownership.clone()));
        let numbers = Arc::new(Numbers::new(store.clone(), ownership.shards()));
        let (meshes, modes) = (Mutex::default(), Arc::default());
        Meshes { local, ownership, store, transport, options, hub: None, meshes, numbers, modes }
    }

    /// The node's numbering of actor tenants' customers and conversations.
    pub fn numbers(&self) -> &Arc<Numbers> {
        &self.numbers
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn ownership(&self) -> &Arc<Ownership> {
        &self.ownership
    }

    /// The node's hub: actors publish their durable desk entries there, so a desk's
    /// `StreamEvents` on this node gets them at once.
    #[must_use]
    pub fn with_hub(mut self, hub: crate::hub::Hub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// The node's transport (to read what it dropped).
    pub fn transport(&self) -> &Arc<GrpcTransport> {
        &self.transport
    }

    /// `ActorMeshService` for the node's server: delivers into this node's meshes, creating
    /// a tenant's on its first envelope, at most [`MAX_INBOUND`] unhandled per tenant.
    pub fn service(self: &Arc<Self>) -> ActorMeshServiceServer<ActorMeshGrpc> {
        let service = ActorMeshGrpc::new(self.local.clone(), self.ownership.clone());
        let service = match &self.hub {
            Some(hub) => service.closing_with(hub.clone()),
            None => service,
        };
        service.on_demand(self.clone()).server()
    }

    /// The tenant's mesh here, created (and its configuration loaded) if it is not yet.
    /// NOT_FOUND for a tenant the store does not know. The creation runs on a task of its
    /// own, so a caller that gives up (an envelope's deadline) does not waste the load: the
    /// next caller finds the mesh.
    pub async fn mesh(&self, tenant: &str) -> Result<Mesh> {
        let cell = {
            let mut meshes = self.meshes.lock().unwrap_or_else(PoisonError::into_inner);
            meshes.entry(tenant.to_owned()).or_default().clone()
        };
        if let Some(mesh) = cell.get() {
            return Ok(mesh.clone());
        }
        let (store, ownership) = (self.store.clone(), self.ownership.clone());
        let (local, transport, mut options, hub) =
            (self.local.clone(), self.transport.clone(), self.options, self.hub.clone());
        let tenant = tenant.to_owned();
        let create = tokio::spawn(async move {
            let mesh = cell
                .get_or_try_init(|| async {
                    let (config, router, version) = load(store.clone(), tenant.clone()).await?;
                    // An actor tenant's agents are served by their agent actors.
                    options.agent_actors |= config.actor_routing;
                    let args = MeshArgs {
                        tenant,
                        store,
                        fence: Default::default(),
                        config,
                        router,
                        transport,
                        options,
                        heard: None,
                        hub,
                    };
                    let mesh = Mesh::clustered(args, ownership);
                    mesh.loaded_at(version);
                    local.attach(&mesh);
                    Ok::<_, Error>(mesh)
                })
                .await?;
            Ok(mesh.clone())
        });
        create.await.map_err(|e| Error::Unavailable(format!("creating the mesh failed: {e}")))?
    }

    /// Whether the tenant was created with `TENANT_ROUTING_ACTORS` (its public calls are
    /// served by its actors). NOT_FOUND for a tenant the store does not know.
    ///
    /// Never loads the tenant: the mode is cached for good once read, and read from the row
    /// CreateTenant writes (two primary-key probes, off the runtime; see [`super::routing`]).
    pub async fn actor_routing(&self, tenant: &str) -> Result<bool> {
        if let Some(mode) = self.modes.cached(tenant) {
            return Ok(mode);
        }
        let (store, modes, name) = (self.store.clone(), self.modes.clone(), tenant.to_owned());
        tokio::task::spawn_blocking(move || modes.read(store.as_ref(), &name)).await.map_err(
            |e| Error::Unavailable(format!("reading tenant {tenant}'s routing mode failed: {e}")),
        )?
    }

    /// The tenant's mesh if it runs here already.
    pub fn running(&self, tenant: &str) -> Option<Mesh> {
        let meshes = self.meshes.lock().unwrap_or_else(PoisonError::into_inner);
        meshes.get(tenant).and_then(|cell| cell.get().cloned())
    }

    /// Stops every actor of every mesh here (a node shutting down): each finishes its step.
    pub async fn stop_all(&self) {
        let meshes: Vec<Mesh> = {
            let meshes = self.meshes.lock().unwrap_or_else(PoisonError::into_inner);
            meshes.values().filter_map(|cell| cell.get().cloned()).collect()
        };
        for mesh in meshes {
            mesh.stop_all().await;
        }
    }
}

/// The tenant's configuration and router as its snapshot and log hold them, and the
/// configuration version they hold at least (`super::config`), read on the blocking pool. The router is the tenant actor's: groups, agents, hours, and the tenant
/// actor's own placements too. Which work a tenant's mesh starts with is for the cut-over of
/// the public API onto the actors to decide; until then the two do not share conversations.
pub(crate) async fn load(
    store: Arc<dyn Store>,
    tenant: String,
) -> Result<(Arc<TenantConfig>, switchboard_core::router::Router, u64)> {
    let name = tenant.clone();
    // The version first: the replay after it holds at least that configuration (maybe a
    // newer one, which costs at most one needless reload later).
    let (version, (state, seq)) = tokio::task::spawn_blocking(move || {
        let version = super::config::stored(store.as_ref(), &name)?;
        Ok::<_, Error>((version, crate::registry::replay(store.as_ref(), &name)?))
    })
    .await
    .map_err(|e| Error::Unavailable(format!("loading tenant {tenant} interrupted: {e}")))??;
    if seq == 0 && state.id.is_empty() {
        return Err(Error::NotFound(format!("tenant {tenant:?}")));
    }
    let groups: Vec<GroupId> = state.groups.names_after("").map(|(_, n)| GroupId(n)).collect();
    let agents: Vec<AgentId> = state.agents.names_after("").map(|(_, n)| AgentId(n)).collect();
    let mut config = TenantConfig::of(&state.engine, &groups, &agents).named(
        agents.iter().map(|a| (*a, state.agents.name(a.0).to_owned())).collect(),
        groups.iter().map(|g| (*g, state.groups.name(g.0).to_owned())).collect(),
    );
    config.actor_routing = state.actor_routing;
    config.supervisors = agents.iter().copied().filter(|a| state.is_supervisor(*a)).collect();
    Ok((Arc::new(config), state.engine.router().clone(), version))
}
