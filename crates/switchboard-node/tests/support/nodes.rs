//! Meshes of one tenant on several "nodes" in one process (`actors_grpc.rs`, and the mesh
//! bench's three-node case): each node a clustered [`Mesh`] behind its own tonic server on a
//! loopback port with the internal `ActorMeshService`, with a fixed ownership (no etcd), so
//! envelopes cross between nodes only through `GrpcTransport`. One store stands for the
//! cluster's shared store.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::{AgentId, CustomerId, Engine};
use switchboard_node::actors::grpc::{ActorMeshGrpc, DELIVER_DEADLINE, GrpcTransport};
use switchboard_node::actors::meshes::MAX_INBOUND;
use switchboard_node::actors::placement::ActorKey;
use switchboard_node::actors::transport::InProcess;
use switchboard_node::actors::{Mesh, MeshArgs, MeshOptions, TenantConfig};
use switchboard_node::cluster::{Owner, Ownership, View};
use switchboard_node::hub::Hub;
use switchboard_proto::internal::v1::actor_mesh_service_server::ActorMeshServiceServer;
use switchboard_store::Store;

use super::{Cuttable, TENANT};

/// The cluster's shard count.
pub const SHARDS: u32 = 1024;

pub struct Node {
    pub mesh: Mesh,
    /// Fixed, until a test moves a shard.
    pub ownership: Arc<Ownership>,
    pub transport: Arc<Cuttable<GrpcTransport>>,
    pub addr: SocketAddr,
    /// The node's live fan-out its agent actors publish desk entries to.
    pub hub: Hub,
    server: Mutex<Server>,
}

/// The node's tonic server: bound but not yet accepting, or running (stopped when dropped).
enum Server {
    Bound(tokio::net::TcpListener, ActorMeshServiceServer<ActorMeshGrpc>),
    Running { _task: Task },
    Taken,
}

/// A task aborted when dropped (a server stops with its test).
pub struct Task(pub tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Node {
    /// Starts serving on its (already bound) port, if not yet serving.
    pub fn serve(&self) {
        let mut server = self.server.lock().unwrap();
        if let Server::Bound(listener, service) = std::mem::replace(&mut *server, Server::Taken) {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let task = tokio::spawn(async move {
                let _ = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(incoming)
                    .await;
            });
            *server = Server::Running { _task: Task(task) };
        }
    }
}

/// `n` loopback ports, bound.
pub async fn ports(n: usize) -> (Vec<tokio::net::TcpListener>, Vec<SocketAddr>) {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    (listeners, addrs)
}

/// Node `name`'s fixed ownership among `members` (name, address): `owner` names each shard's
/// node, all at epoch 1.
pub fn fixed_ownership(
    name: &str,
    members: &[(&str, SocketAddr)],
    owner: &dyn Fn(u32) -> &'static str,
) -> Arc<Ownership> {
    let view = View {
        members: members.iter().map(|(n, addr)| ((*n).to_owned(), addr.to_string())).collect(),
        owners: (0..SHARDS)
            .map(|s| (s, Owner { node: owner(s).into(), epoch: 1, lease: 0 }))
            .collect(),
    };
    let local = (0..SHARDS).filter(|s| owner(*s) == name).map(|s| (s, 1));
    Ownership::fixed(name.into(), SHARDS, local, view, None)
}

/// How the nodes' meshes run.
pub struct Setup {
    pub store: Arc<dyn Store>,
    pub engine: Engine,
    pub config: Arc<TenantConfig>,
    pub timings: MeshOptions,
    /// Each node-to-node delivery's deadline.
    pub deadline: Duration,
    /// Each receiver's bound on envelopes not yet handled.
    pub bound: usize,
}

/// One node per name, `owner` naming each shard's node: ports bound, meshes clustered and
/// attached, none serving yet ([`Node::serve`]).
pub async fn nodes(
    names: &[&'static str],
    owner: &dyn Fn(u32) -> &'static str,
    setup: &Setup,
) -> Vec<Node> {
    let (listeners, addrs) = ports(names.len()).await;
    let members: Vec<(&str, SocketAddr)> = names.iter().copied().zip(addrs).collect();
    let mut nodes = Vec::new();
    for (name, listener) in names.iter().zip(listeners) {
        let ownership = fixed_ownership(name, &members, owner);
        let inprocess = Arc::new(InProcess::default());
        let transport =
            GrpcTransport::new(inprocess.clone(), ownership.clone()).with_deadline(setup.deadline);
        let transport = Arc::new(Cuttable::new(transport));
        let hub = Hub::default();
        let args = MeshArgs {
            tenant: TENANT.into(),
            store: setup.store.clone(),
            fence: Default::default(),
            config: setup.config.clone(),
            router: setup.engine.router().clone(),
            transport: transport.clone(),
            options: setup.timings,
            heard: None,
            hub: Some(hub.clone()),
        };
        let mesh = Mesh::clustered(args, ownership.clone());
        inprocess.attach(&mesh);
        let addr = listener.local_addr().unwrap();
        let service =
            ActorMeshGrpc::new(inprocess, ownership.clone()).with_bound(setup.bound).server();
        let server = Mutex::new(Server::Bound(listener, service));
        nodes.push(Node { mesh, ownership, transport, addr, hub, server });
    }
    nodes
}

/// The shard of the tenant's router, and of `agent`'s actor.
fn router_and_agent_shards(agent: AgentId) -> (u32, u32) {
    let router = ActorKey::Router { tenant: TENANT }.shard(SHARDS);
    let agent = ActorKey::Agent { tenant: TENANT, agent }.shard(SHARDS);
    assert_ne!(router, agent, "the agent's actor and the router share no shard");
    (router, agent)
}

/// Three nodes over `store`, one actor kind each: "c" owns the tenant's shard (the router),
/// "b" the shard of `agent`'s actor, "a" every other (the conversations of
/// [`customers_on_a`]); the node's delivery deadline and receiver bound. Returned as
/// `[a, b, c]`, all serving.
pub async fn three_apart(
    agent: AgentId,
    store: Arc<dyn Store>,
    (engine, config): (Engine, Arc<TenantConfig>),
    timings: MeshOptions,
) -> [Node; 3] {
    let (router, agent) = router_and_agent_shards(agent);
    let owner = move |shard: u32| match shard {
        s if s == router => "c",
        s if s == agent => "b",
        _ => "a",
    };
    let (deadline, bound) = (DELIVER_DEADLINE, MAX_INBOUND);
    let setup = Setup { store, engine, config, timings, deadline, bound };
    let nodes = nodes(&["a", "b", "c"], &owner, &setup).await;
    for node in &nodes {
        node.serve();
    }
    nodes.try_into().unwrap_or_else(|_| unreachable!("three nodes"))
}

/// `n` customers whose conversation actors [`three_apart`] places on node "a".
pub fn customers_on_a(agent: AgentId, n: usize) -> Vec<u64> {
    let (router, agent) = router_and_agent_shards(agent);
    (1..)
        .filter(|c| {
            let shard =
                ActorKey::Conversation { tenant: TENANT, customer: CustomerId(*c) }.shard(SHARDS);
            shard != router && shard != agent
        })
        .take(n)
        .collect()
}
