//! The actor mesh across two nodes (issue 12 items 2 and 3): two meshes of one tenant, each
//! behind its own in-process tonic server on a loopback port with the internal
//! `ActorMeshService`, each with a fixed ownership (no etcd): node B owns the tenant's shard,
//! so the router lives there; node A owns every other shard, so the customers' conversation
//! actors live there. Envelopes cross between them only through `GrpcTransport`. One SQLite
//! store in a temp dir stands for the cluster's shared store. No timed assertions: every
//! wait is for a condition, with a generous deadline.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::mesh::{Body, Envelope, ToConversation, ToRouter};
use switchboard_core::router::{Placement, StatusCause};
use switchboard_core::{Actor, AgentStatus, ConversationId, CustomerId, State};
use switchboard_node::actors::grpc::{ActorMeshGrpc, DELIVER_DEADLINE, GrpcTransport, encode};
use switchboard_node::actors::placement::ActorKey;
use switchboard_node::actors::transport::InProcess;
use switchboard_node::actors::{Mesh, MeshArgs};
use switchboard_node::cluster::{Owner, Ownership, View};
use switchboard_proto::internal::v1 as pb;
use switchboard_proto::internal::v1::actor_mesh_service_server::ActorMeshServiceServer;
use switchboard_store::{SqliteOptions, SqliteStore, Store};

use self::support::{
    AGENT, Cuttable, TENANT, archived_assignments, message, open, options, placed, until,
};

const SHARDS: u32 = 1024;

struct Node {
    mesh: Mesh,
    transport: Arc<Cuttable<GrpcTransport>>,
    addr: std::net::SocketAddr,
    server: Mutex<Server>,
}

/// The node's tonic server: bound but not yet accepting, or running (stopped when dropped).
enum Server {
    Bound(tokio::net::TcpListener, ActorMeshServiceServer<ActorMeshGrpc>),
    Running { _task: Task },
    Taken,
}

struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Node {
    /// Starts serving on its (already bound) port, if not yet serving.
    fn serve(&self) {
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

struct Cluster {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    /// Owns every shard but the tenant's: the conversation actors.
    a: Node,
    /// Owns the tenant's shard: the router.
    b: Node,
}

fn router_shard() -> u32 {
    ActorKey::Router { tenant: TENANT }.shard(SHARDS)
}

/// `n` customers whose conversation actors live on node A (not in the tenant's shard).
fn customers_on_a(n: usize) -> Vec<u64> {
    (1..)
        .filter(|c| {
            ActorKey::Conversation { tenant: TENANT, customer: CustomerId(*c) }.shard(SHARDS)
                != router_shard()
        })
        .take(n)
        .collect()
}

/// One group (auto-accept), one agent of capacity 1 in it, signed out; the router on B, the
/// conversations on A; both serving.
async fn cluster() -> Cluster {
    let c = cluster_with(DELIVER_DEADLINE).await;
    c.a.serve();
    c.b.serve();
    c
}

/// The same with another delivery deadline, neither node serving yet (both ports bound).
async fn cluster_with(deadline: Duration) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    let (engine, config) = support::tenant(&[(AGENT, 1)]);

    let listeners = [
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    ];
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let owner = |shard: u32| if shard == router_shard() { "b" } else { "a" };
    let view = View {
        members: BTreeMap::from([
            ("a".to_owned(), addrs[0].to_string()),
            ("b".to_owned(), addrs[1].to_string()),
        ]),
        owners: (0..SHARDS)
            .map(|s| (s, Owner { node: owner(s).into(), epoch: 1, lease: 0 }))
            .collect(),
    };
    let mut nodes = Vec::new();
    for (name, listener) in ["a", "b"].into_iter().zip(listeners) {
        let local = (0..SHARDS).filter(|s| owner(*s) == name).map(|s| (s, 1));
        let ownership = Ownership::fixed(name.into(), SHARDS, local, view.clone(), None);
        let inprocess = Arc::new(InProcess::default());
        let transport =
            GrpcTransport::new(inprocess.clone(), ownership.clone()).with_deadline(deadline);
        let transport = Arc::new(Cuttable::new(transport));
        let mesh = Mesh::new(MeshArgs {
            tenant: TENANT.into(),
            store: store.clone(),
            fence: Default::default(),
            config: config.clone(),
            router: engine.router().clone(),
            transport: transport.clone(),
            options: options(Duration::from_secs(3600)),
            heard: None,
        });
        inprocess.attach(&mesh);
        let addr = listener.local_addr().unwrap();
        let service = ActorMeshGrpc::new(inprocess, ownership).server();
        let server = Mutex::new(Server::Bound(listener, service));
        nodes.push(Node { mesh, transport, addr, server });
    }
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    Cluster { _dir: dir, store, a, b }
}

/// Neither node ever ran an actor whose shard it does not own.
fn placed_by_shard(c: &Cluster) {
    assert_eq!(c.a.mesh.live().0, 0, "no router on node A");
    assert_eq!(c.b.mesh.live().1, 0, "no conversation actor on node B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_on_node_a_with_its_router_on_node_b_is_served_once_end_to_end() {
    let c = cluster().await;
    let (a, b) = (&c.a.mesh, &c.b.mesh);
    let customer = customers_on_a(1)[0];

    // The agent is signed out: the route crosses to B, the queued decision comes back.
    let conversation = a.conversation(CustomerId(customer));
    let outcome = conversation.customer_message(message(customer, 1, "hi")).await;
    assert!(outcome.unwrap().opened);
    until("the conversation on A hears it is queued", || async {
        open(a, customer).await == Some((State::Queued, None))
    })
    .await;
    assert!(matches!(placed(b, 1).await.0, Some(Placement::Queued { .. })));
    assert_eq!((a.live(), b.live()), ((0, 1), (1, 0)), "each actor on its shard's owner");

    // The agent signs in on B's router: the assignment crosses to A.
    b.router().set_status(AGENT, AgentStatus::Online, StatusCause::Agent).await.unwrap();
    until("the conversation on A hears it is assigned", || async {
        open(a, customer).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    let replies = conversation
        .agent_message(ConversationId(1), AGENT, "hello, how can I help?", None)
        .await
        .unwrap();
    assert!(!replies.is_empty(), "the agent's message goes to the customer");

    // The agent ends it on A: the leave crosses to B, B acknowledges, A's actor passivates.
    conversation.end(ConversationId(1), Actor::Agent(AGENT)).await.unwrap();
    until("the conversation actor on A passivates", || async { a.live().1 == 0 }).await;
    assert_eq!(placed(b, 1).await.0, None, "the router let go of it");
    assert_eq!(placed(b, 1).await.1, 0, "and the agent's slot is free");
    assert_eq!(archived_assignments(&c.store, 1), Some(1), "archived, assigned once");
    placed_by_shard(&c);
    assert!(c.a.transport.passed.load(Ordering::SeqCst) >= 2, "route and leave went A → B");
    assert!(c.b.transport.passed.load(Ordering::SeqCst) >= 2, "decisions went B → A");
}

/// Node B's router decides (assigns 11), writes it, and is killed before the decision
/// reaches A; its next incarnation resends it over gRPC. Then it is killed again right after
/// the conversation's end went out. Nothing is lost, nothing assigned twice, capacity 1 holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_crash_on_node_b_loses_nothing_and_doubles_nothing() {
    let c = cluster().await;
    let (a, b) = (&c.a.mesh, &c.b.mesh);
    let customers = customers_on_a(2);
    let (c1, c2) = (customers[0], customers[1]);
    for (customer, conversation) in [(c1, 11), (c2, 12)] {
        let msg = message(customer, conversation, "hello");
        a.conversation(CustomerId(customer)).customer_message(msg).await.unwrap();
    }
    for customer in [c1, c2] {
        until("both conversations hear they are queued", || async {
            open(a, customer).await == Some((State::Queued, None))
        })
        .await;
    }

    c.b.transport.cut_to_conversation.store(true, Ordering::SeqCst);
    b.router().set_status(AGENT, AgentStatus::Online, StatusCause::Agent).await.unwrap();
    assert!(c.b.transport.dropped.load(Ordering::SeqCst) >= 1, "the decision was cut");
    b.kill_router().await;
    assert_eq!(open(a, c1).await, Some((State::Queued, None)), "not heard on A yet");
    c.b.transport.cut_to_conversation.store(false, Ordering::SeqCst);

    // Its next incarnation on B (activated by a read, or by a retransmission from A) resends
    // the durable decision at once.
    let (placement, load, capacity) = placed(b, 11).await;
    assert!(matches!(placement, Some(Placement::Assigned { agent: AGENT, .. })));
    assert_eq!((load, capacity), (1, 1));
    until("conversation 11 on A hears its assignment", || async {
        open(a, c1).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    assert_eq!(open(a, c2).await, Some((State::Queued, None)), "capacity 1 is respected");

    // The agent ends 11 on A; the router on B is killed right after, whether or not it has
    // applied the leave yet. A resends the leave until it is acknowledged; a read activates
    // the router again (a restart with backoff is not there yet), which resends whatever it
    // decided and had not delivered.
    a.conversation(CustomerId(c1)).end(ConversationId(11), Actor::Agent(AGENT)).await.unwrap();
    b.kill_router().await;
    until("conversation 12 on A is assigned", || async {
        let _ = placed(b, 12).await;
        open(a, c2).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    until("conversation actor 11's customer passivates on A", || async {
        c.store.actor(TENANT, "conversation", &c1.to_string()).unwrap().is_none()
    })
    .await;
    support::eleven_left_and_twelve_took_its_slot(b, a, &c.store, c2).await;
    placed_by_shard(&c);
}

/// The receiver checks ownership and input: a key whose shard it does not own, or whose
/// tenant's actors it does not run, is UNAVAILABLE; a malformed envelope INVALID_ARGUMENT.
/// Nothing is activated by a refused envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_refuses_envelopes_it_must_not_deliver() {
    let c = cluster().await;
    let client = |addr: std::net::SocketAddr| async move {
        pb::actor_mesh_service_client::ActorMeshServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
    };
    let leave = Envelope {
        conversation: ConversationId(1),
        customer: CustomerId(customers_on_a(1)[0]),
        epoch: 1,
        body: Body::Message { seq: 0, message: ToRouter::Leave },
    };
    // The router's envelope at A, which does not own the tenant's shard.
    let request = encode(TENANT, pb::MeshDirection::ToRouter, &leave).unwrap();
    let status = client(c.a.addr).await.deliver(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("does not own shard"), "{}", status.message());

    // A conversation envelope at B, which owns only the tenant's shard.
    let ack: Envelope<ToConversation> = Envelope {
        conversation: leave.conversation,
        customer: leave.customer,
        epoch: 1,
        body: Body::Ack { next: 1 },
    };
    let request = encode(TENANT, pb::MeshDirection::ToConversation, &ack).unwrap();
    let status = client(c.b.addr).await.deliver(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    // A tenant whose shard A owns but whose actors do not run there.
    let ghost = (0..)
        .map(|i| format!("ghost{i}"))
        .find(|t| {
            ActorKey::Conversation { tenant: t, customer: ack.customer }.shard(SHARDS)
                != router_shard()
        })
        .unwrap();
    let request = encode(&ghost, pb::MeshDirection::ToConversation, &ack).unwrap();
    let status = client(c.a.addr).await.deliver(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("not running"), "{}", status.message());

    // Malformed: no direction.
    let mut request = encode(TENANT, pb::MeshDirection::ToConversation, &ack).unwrap();
    request.envelope.as_mut().unwrap().direction = 0;
    let status = client(c.a.addr).await.deliver(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    assert_eq!((c.a.mesh.live(), c.b.mesh.live()), ((0, 0), (0, 0)), "nothing activated");
}

/// Node B is down (its port bound, nothing answering): A's route times out at the transport's
/// deadline (200 ms here) and is dropped, and so are its resends; nothing is decided. Once B
/// serves, the next retransmission gets through and the conversation is queued and then
/// assigned, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_answer_delays_delivery_and_loses_nothing() {
    let c = cluster_with(Duration::from_millis(200)).await;
    c.a.serve();
    let (a, b) = (&c.a.mesh, &c.b.mesh);
    let customer = customers_on_a(1)[0];
    let conversation = a.conversation(CustomerId(customer));
    assert!(conversation.customer_message(message(customer, 1, "hi")).await.unwrap().opened);
    until("A's route and a resend of it timed out", || async {
        c.a.transport.inner.undelivered() >= 2
    })
    .await;
    let waiting = open(a, customer).await.map(|(state, _)| state);
    assert!(!matches!(waiting, Some(State::Queued | State::Assigned)), "{waiting:?}");
    assert_eq!(b.live(), (0, 0), "nothing reached B");

    c.b.serve();
    until("the conversation on A hears it is queued", || async {
        open(a, customer).await == Some((State::Queued, None))
    })
    .await;
    b.router().set_status(AGENT, AgentStatus::Online, StatusCause::Agent).await.unwrap();
    until("the conversation on A hears it is assigned", || async {
        open(a, customer).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    let (placement, load, _) = placed(b, 1).await;
    assert!(matches!(placement, Some(Placement::Assigned { agent: AGENT, .. })));
    assert_eq!(load, 1);
    assert_eq!(support::assignments(a, customer).await, 1, "assigned exactly once");
    placed_by_shard(&c);
}
