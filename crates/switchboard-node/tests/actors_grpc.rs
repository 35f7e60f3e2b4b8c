//! The actor mesh across two nodes (issue 12 items 2 and 3): two meshes of one tenant, each
//! behind its own in-process tonic server on a loopback port with the internal
//! `ActorMeshService`, each with a fixed ownership (no etcd): node B owns the tenant's shard,
//! so the router lives there; node A owns every other shard, so the customers' conversation
//! actors live there. Envelopes cross between them only through `GrpcTransport`. One SQLite
//! store in a temp dir stands for the cluster's shared store. No timed assertions: every
//! wait is for a condition, with a generous deadline.

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use switchboard_core::config::OfferMode;
use switchboard_core::mesh::{Body, Envelope, ToConversation, ToRouter};
use switchboard_core::router::{Placement, StatusCause};
use switchboard_core::{Actor, AgentStatus, ConversationId, CustomerId, State};
use switchboard_node::actors::Transport;
use switchboard_node::actors::agent::Decision;
use switchboard_node::actors::conversation::ConversationHandle;
use switchboard_node::actors::grpc::{
    ActorMeshGrpc, Answers, DELIVER_DEADLINE, GrpcTransport, encode,
};
use switchboard_node::actors::meshes::MAX_INBOUND;
use switchboard_node::actors::placement::ActorKey;
use switchboard_node::actors::transport::InProcess;
use switchboard_node::actors::{Mesh, MeshOptions};
use switchboard_node::cluster::{Owner, Ownership};
use switchboard_proto::internal::v1 as pb;
use switchboard_store::{Fence, SqliteOptions, SqliteStore, Store};

use self::support::nodes::{self, Node, SHARDS, Task};
use self::support::{
    AGENT, DEADLINE, TENANT, archived_assignments, desk_summary, message, open, options, placed,
    until,
};

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
    let c = cluster_with(DELIVER_DEADLINE, MAX_INBOUND, options(Duration::from_secs(3600))).await;
    c.a.serve();
    c.b.serve();
    c
}

/// The two nodes' shards: B owns the tenant's, A every other.
fn a_or_b(shard: u32) -> &'static str {
    if shard == router_shard() { "b" } else { "a" }
}

/// Node `name`'s fixed ownership: B owns the tenant's shard, A every other, at epoch 1.
fn fixed_ownership(name: &str, addrs: &[std::net::SocketAddr]) -> Arc<Ownership> {
    nodes::fixed_ownership(name, &[("a", addrs[0]), ("b", addrs[1])], &a_or_b)
}

/// The same with another delivery deadline and receiver bound, neither node serving yet
/// (both ports bound). Each mesh is clustered: its actors run under their shards' fences and
/// stop when their shard moves.
async fn cluster_with(deadline: Duration, bound: usize, timings: MeshOptions) -> Cluster {
    cluster_of(deadline, bound, timings, OfferMode::AutoAccept).await
}

/// The same with the group's offer mode.
async fn cluster_of(
    deadline: Duration,
    bound: usize,
    timings: MeshOptions,
    offer: OfferMode,
) -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    let (engine, config) = support::tenant_with(&[(AGENT, 1)], offer);
    let setup = nodes::Setup { store: store.clone(), engine, config, timings, deadline, bound };
    let mut nodes = nodes::nodes(&["a", "b"], &a_or_b, &setup).await;
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
    // applied the leave yet. A resends the leave until it is acknowledged; its supervisor or
    // a read (whichever comes first) activates the router again, which resends whatever it
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

/// A batch is each of its envelopes delivered as `Deliver` would: the answer names the
/// refused ones by position with `Deliver`'s status, and the others reach their actors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_delivers_each_envelope_and_names_the_refused_ones() {
    let c = cluster().await;
    let mut client = pb::actor_mesh_service_client::ActorMeshServiceClient::connect(format!(
        "http://{}",
        c.a.addr
    ))
    .await
    .unwrap();
    let customer = CustomerId(customers_on_a(1)[0]);
    let leave = Envelope {
        conversation: ConversationId(1),
        customer,
        epoch: 1,
        body: Body::Message { seq: 1, message: ToRouter::Leave },
    };
    // A message, not an acknowledgement: an acknowledgement activates no actor.
    let refused: Envelope<ToConversation> = Envelope {
        conversation: leave.conversation,
        customer,
        epoch: 1,
        body: Body::Message { seq: 1, message: ToConversation::Refused { reason: "test".into() } },
    };
    let mut malformed = encode(TENANT, pb::MeshDirection::ToConversation, &refused).unwrap();
    malformed.envelope.as_mut().unwrap().direction = 0;
    let deliveries = vec![
        // The router's envelope at A, which does not own the tenant's shard.
        encode(TENANT, pb::MeshDirection::ToRouter, &leave).unwrap(),
        // A conversation's: A owns its shard.
        encode(TENANT, pb::MeshDirection::ToConversation, &refused).unwrap(),
        malformed,
    ];
    let answer =
        client.deliver_batch(pb::DeliverBatchRequest { deliveries }).await.unwrap().into_inner();
    let refused: Vec<_> =
        answer.refused.iter().map(|r| (r.index, tonic::Code::from(r.code))).collect();
    assert_eq!(
        refused,
        [(0, tonic::Code::Unavailable), (2, tonic::Code::InvalidArgument)],
        "{answer:?}"
    );
    assert!(answer.refused[0].message.contains("does not own shard"), "{answer:?}");
    // The one handed over activated its conversation actor (and nothing on B).
    until("the conversation actor on A took the message", || async {
        c.a.mesh.activations().1 == 1
    })
    .await;
    assert_eq!(c.b.mesh.activations(), (0, 0));
}

/// What a fake peer knows of `ActorMeshService`.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Knows {
    /// `Deliver` only (a node of an older version).
    Deliver,
    /// Also `DeliverBatch`.
    Batches,
    /// Streams too, but its first `DeliverStream` takes a batch and never answers (a frozen
    /// node); the later ones answer every batch.
    FreezingStreams,
}

/// A peer that knows what `knows` says; what reached it goes to `delivered`, with the method
/// that carried it and, on a stream, the stream's number (from 0).
struct Fake {
    knows: Knows,
    delivered: tokio::sync::mpsc::UnboundedSender<(&'static str, usize)>,
    streams: std::sync::atomic::AtomicUsize,
}

#[tonic::async_trait]
impl pb::actor_mesh_service_server::ActorMeshService for Fake {
    async fn deliver(
        &self,
        _: tonic::Request<pb::DeliverRequest>,
    ) -> Result<tonic::Response<pb::DeliverResponse>, tonic::Status> {
        let _ = self.delivered.send(("Deliver", 0));
        Ok(tonic::Response::new(pb::DeliverResponse {}))
    }

    async fn deliver_batch(
        &self,
        request: tonic::Request<pb::DeliverBatchRequest>,
    ) -> Result<tonic::Response<pb::DeliverBatchResponse>, tonic::Status> {
        if self.knows == Knows::Deliver {
            return Err(tonic::Status::unimplemented("DeliverBatch"));
        }
        for _ in request.into_inner().deliveries {
            let _ = self.delivered.send(("DeliverBatch", 0));
        }
        Ok(tonic::Response::new(pb::DeliverBatchResponse { refused: vec![] }))
    }

    type DeliverStreamStream = Answers;

    async fn deliver_stream(
        &self,
        request: tonic::Request<tonic::Streaming<pb::DeliverBatchRequest>>,
    ) -> Result<tonic::Response<Answers>, tonic::Status> {
        if self.knows != Knows::FreezingStreams {
            return Err(tonic::Status::unimplemented("DeliverStream"));
        }
        let stream = self.streams.fetch_add(1, Ordering::SeqCst);
        let delivered = self.delivered.clone();
        let answers = futures_util::stream::unfold(request.into_inner(), move |mut batches| {
            let delivered = delivered.clone();
            async move {
                let batch = batches.message().await.ok()??;
                if stream == 0 {
                    // Frozen: the batch is taken, never answered, and the stream stays.
                    std::future::pending::<()>().await;
                }
                for _ in batch.deliveries {
                    let _ = delivered.send(("DeliverStream", stream));
                }
                Some((Ok(pb::DeliverBatchResponse { refused: vec![] }), batches))
            }
        });
        Ok(tonic::Response::new(Box::pin(answers)))
    }

    async fn reconfigure(
        &self,
        _: tonic::Request<pb::ReconfigureRequest>,
    ) -> Result<tonic::Response<pb::ReconfigureResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::ReconfigureResponse {}))
    }
}

/// A's transport (delivery deadline 200 ms) sends router envelopes to a [`Fake`] peer that
/// knows `knows`, one more each round, until one reaches it; returns how that one came and
/// how many envelopes the transport dropped by then.
async fn send_to_a_fake_peer_until_delivered(knows: Knows) -> ((&'static str, usize), u64) {
    let (mut listeners, addrs) = nodes::ports(2).await;
    let (tx, mut delivered) = tokio::sync::mpsc::unbounded_channel();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listeners.pop().unwrap());
    let fake = Fake { knows, delivered: tx, streams: Default::default() };
    let server = tonic::transport::Server::builder()
        .add_service(pb::actor_mesh_service_server::ActorMeshServiceServer::new(fake))
        .serve_with_incoming(incoming);
    let server = tokio::spawn(server);
    let transport =
        GrpcTransport::new(Arc::new(InProcess::default()), fixed_ownership("a", &addrs))
            .with_deadline(Duration::from_millis(200));
    let customer = CustomerId(customers_on_a(1)[0]);
    let mut seq = 0;
    let mut got = None;
    until("an envelope reached the peer", || {
        seq += 1;
        let body = Body::Message { seq, message: ToRouter::Leave };
        transport.to_router(
            TENANT,
            Envelope { conversation: ConversationId(1), customer, epoch: 1, body },
        );
        got = delivered.try_recv().ok();
        let reached = got.is_some();
        async move { reached }
    })
    .await;
    server.abort();
    (got.unwrap(), transport.undelivered())
}

/// During a rolling upgrade a peer may not know `DeliverStream`, or `DeliverBatch` either:
/// what it refuses is dropped (the links resend it), and the envelopes after it reach it the
/// older way, one `DeliverBatch` call per batch or one `Deliver` per envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_peer_gets_batch_calls_or_one_delivery_per_envelope() {
    for (knows, way) in [(Knows::Batches, "DeliverBatch"), (Knows::Deliver, "Deliver")] {
        let ((method, _), undelivered) = send_to_a_fake_peer_until_delivered(knows).await;
        assert_eq!(method, way);
        assert!(undelivered >= 1, "the first batch was refused, and dropped");
    }
}

/// A peer that stops answering on an open stream: the batch it holds is dropped once its
/// deadline passes (the links resend it), that stream ends, and the next batch goes on a new
/// stream, which delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_peer_stops_answering_is_replaced_by_a_new_one() {
    let (got, undelivered) = send_to_a_fake_peer_until_delivered(Knows::FreezingStreams).await;
    assert_eq!(got.0, "DeliverStream");
    assert!(got.1 >= 1, "{got:?}: the frozen stream answered nothing");
    assert!(undelivered >= 1, "the batch the frozen stream held was dropped");
}

/// A peer's stream never ends by itself, so the node's shutdown (its hub closing) ends every
/// `DeliverStream` it serves: the server can drain, and the sender opens its next stream
/// elsewhere or later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_shutdown_ends_the_delivery_streams_it_serves() {
    let (mut listeners, addrs) = nodes::ports(2).await;
    let hub = switchboard_node::hub::Hub::default();
    let service = ActorMeshGrpc::new(Arc::new(InProcess::default()), fixed_ownership("a", &addrs))
        .closing_with(hub.clone());
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listeners.pop().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.server())
            .serve_with_incoming(incoming),
    );
    let mut client = pb::actor_mesh_service_client::ActorMeshServiceClient::connect(format!(
        "http://{}",
        addrs[1]
    ))
    .await
    .unwrap();
    let (batches, rx) = tokio::sync::mpsc::unbounded_channel();
    let requests = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    let mut answers = client.deliver_stream(requests).await.unwrap().into_inner();
    // A batch answered: the stream is open and serving (an empty batch refuses nothing).
    batches.send(pb::DeliverBatchRequest { deliveries: vec![] }).unwrap();
    let answer = tokio::time::timeout(DEADLINE, answers.message()).await.unwrap().unwrap();
    assert_eq!(answer, Some(pb::DeliverBatchResponse { refused: vec![] }));
    hub.close();
    let ended = tokio::time::timeout(DEADLINE, answers.message()).await;
    assert!(matches!(ended, Ok(Ok(None))), "the stream ended cleanly: {ended:?}");
    drop(batches);
    server.abort();
}

/// Node B is down (its port bound, nothing answering): A's route times out at the transport's
/// deadline (200 ms here) and is dropped, and so are its resends; nothing is decided. Once B
/// serves, the next retransmission gets through and the conversation is queued and then
/// assigned, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_answer_delays_delivery_and_loses_nothing() {
    let c =
        cluster_with(Duration::from_millis(200), MAX_INBOUND, options(Duration::from_secs(3600)))
            .await;
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

/// The conversation's shard moves from A to B as the membership task would move it: B's
/// epoch fenced in the store first, then served by B, named in both views, and dropped by A.
async fn move_to_b(c: &Cluster, shard: u32) {
    c.store.raise_fence(Fence { shard, epoch: 2 }).await.unwrap();
    c.b.ownership.set_fixed(shard, Some(2));
    for node in [&c.a, &c.b] {
        let mut view = node.ownership.view();
        view.owners.insert(shard, Owner { node: "b".into(), epoch: 2, lease: 0 });
        node.ownership.set_view(view);
    }
    c.a.ownership.set_fixed(shard, None);
}

/// A customer of node A opens conversation 1, which the router on B queues (the agent is
/// signed out).
async fn queued_on_a(a: &Mesh) -> (u64, ConversationHandle) {
    let customer = customers_on_a(1)[0];
    let conversation = a.conversation(CustomerId(customer));
    assert!(conversation.customer_message(message(customer, 1, "hi")).await.unwrap().opened);
    until("the conversation on A hears it is queued", || async {
        open(a, customer).await == Some((State::Queued, None))
    })
    .await;
    (customer, conversation)
}

fn conversation_shard(customer: u64) -> u32 {
    ActorKey::Conversation { tenant: TENANT, customer: CustomerId(customer) }.shard(SHARDS)
}

/// Issue 12, a moved shard: a queued conversation's shard moves from A to B. Its actor stops
/// on A as the ownership changes (no retransmission tick in this test to stop it otherwise;
/// A refuses to activate it again), the router's assignment goes to B, which activates it
/// from the row A wrote, and the conversation is served once: queued, assigned (capacity 1),
/// answered, ended, archived assigned once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_shard_stops_its_actors_and_the_new_owner_serves_them_once() {
    let hour = Duration::from_secs(3600);
    let c = cluster_with(
        DELIVER_DEADLINE,
        MAX_INBOUND,
        MeshOptions { retransmit: hour, ..options(hour) },
    )
    .await;
    c.a.serve();
    c.b.serve();
    let (a, b) = (&c.a.mesh, &c.b.mesh);
    let (customer, conversation) = queued_on_a(a).await;
    assert_eq!(a.live(), (0, 1));

    move_to_b(&c, conversation_shard(customer)).await;
    until("the conversation actor stops on A", || async { a.live().1 == 0 }).await;
    let refused = conversation.customer_message(message(customer, 1, "still there?")).await;
    match refused {
        Err(switchboard_node::error::Error::Unavailable(m)) => {
            assert!(m.contains("does not own shard"), "{m}");
        }
        other => panic!("A must not serve a moved shard: {other:?}"),
    }

    // The agent signs in on B's router: the assignment goes to the conversation's new owner.
    b.router().set_status(AGENT, AgentStatus::Online, StatusCause::Agent).await.unwrap();
    until("the conversation on B hears it is assigned", || async {
        open(b, customer).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    assert_eq!((a.live(), b.live()), ((0, 0), (1, 1)), "both actors on B now");
    let on_b = b.conversation(CustomerId(customer));
    let text = on_b.read(|side| side.conversation().unwrap().customer_messages).await.unwrap();
    assert!(text >= 1, "B activated it from A's row: the customer's message is there");
    let replies = on_b.agent_message(ConversationId(1), AGENT, "hello", None).await.unwrap();
    assert!(!replies.is_empty());
    on_b.end(ConversationId(1), Actor::Agent(AGENT)).await.unwrap();
    until("the conversation actor on B passivates", || async { b.live().1 == 0 }).await;
    assert_eq!(placed(b, 1).await.0, None, "the router let go of it");
    assert_eq!(placed(b, 1).await.1, 0, "and the agent's slot is free");
    assert_eq!(archived_assignments(&c.store, 1), Some(1), "archived, assigned once");
    assert_eq!(a.live(), (0, 0), "nothing ran on A after the move");
}

/// Issue 12, fencing per shard: another node raised the conversation's shard's epoch in the
/// store while A still believes it owns the shard (a paused node). A's conversation actor
/// writes under its own shard's fence, so its next write is refused: the caller gets
/// UNAVAILABLE, the actor stops, and its row is what it was. (A still believes it owns the
/// shard, so the actor's supervisor starts it again from that row.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_under_an_epoch_raised_elsewhere_is_refused_and_the_actor_stops() {
    let c = cluster().await;
    let a = &c.a.mesh;
    let (customer, conversation) = queued_on_a(a).await;
    let row = || c.store.actor(TENANT, "conversation", &customer.to_string()).unwrap();
    let before = row().unwrap();
    let activations = a.activations().1;

    let shard = conversation_shard(customer);
    c.store.raise_fence(Fence { shard, epoch: 2 }).await.unwrap();
    let refused = conversation.customer_message(message(customer, 1, "anyone?")).await;
    match refused {
        Err(switchboard_node::error::Error::Unavailable(m)) => {
            assert!(m.contains(&format!("shard {shard}: epoch 1 is fenced off by epoch 2")), "{m}");
        }
        other => panic!("a fenced write must be refused: {other:?}"),
    }
    // Its restart by its supervisor is what shows it stopped (it may be live again).
    until("the fenced actor stops and is restarted", || async { a.activations().1 > activations })
        .await;
    assert_eq!(row(), Some(before), "nothing of the refused step was written");
    // The router's shard was not raised: the router on B still writes.
    let (placement, _, _) = placed(&c.b.mesh, 1).await;
    assert!(matches!(placement, Some(Placement::Queued { .. })));
}

/// Issue 12, the bounded receiver: B accepts at most 3 envelopes for the tenant that its
/// actors have not handled yet (the router is held inside a read meanwhile); the fourth gets
/// RESOURCE_EXHAUSTED. Once the router has handled them, B accepts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn envelopes_beyond_the_receivers_bound_are_resource_exhausted() {
    let c = cluster_with(DELIVER_DEADLINE, 3, options(Duration::from_secs(3600))).await;
    c.a.serve();
    c.b.serve();
    let b = c.b.mesh.clone();
    // Hold the router inside a read until released.
    let (entered_tx, entered) = tokio::sync::oneshot::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let held = tokio::spawn(async move {
        b.router()
            .read(move |_| {
                let _ = entered_tx.send(());
                let _ = released.recv();
            })
            .await
    });
    entered.await.unwrap();

    let ack: Envelope<ToRouter> = Envelope {
        conversation: ConversationId(1),
        customer: CustomerId(customers_on_a(1)[0]),
        epoch: 1,
        body: Body::Ack { next: 0 },
    };
    let request = encode(TENANT, pb::MeshDirection::ToRouter, &ack).unwrap();
    let mut client = pb::actor_mesh_service_client::ActorMeshServiceClient::connect(format!(
        "http://{}",
        c.b.addr
    ))
    .await
    .unwrap();
    for _ in 0..3 {
        client.deliver(request.clone()).await.unwrap();
    }
    assert_eq!(c.b.mesh.inbound(), 3);
    let status = client.deliver(request.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("not yet handled"), "{}", status.message());

    release.send(()).unwrap();
    held.await.unwrap().unwrap();
    until("the router handled the three", || async { c.b.mesh.inbound() == 0 }).await;
    client.deliver(request).await.unwrap();
    until("and the fourth", || async { c.b.mesh.inbound() == 0 }).await;
}

/// Issue 12, a node's meshes: the tenant (one auto-accept group, one agent of capacity 1)
/// exists only in the store, written by the tenant actor. Node A's mesh is created by the
/// first handle call, node B's by the first envelope that reaches it (the route), each with
/// the configuration and router loaded from the store; the conversation is queued on B's
/// router with the stored agent's capacity, then assigned on A. An envelope for a tenant the
/// store does not know is NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_meshes_are_created_on_demand_from_the_stored_tenant() {
    use switchboard_proto::v1;

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    let create = v1::CreateTenantRequest { tenant_id: TENANT.into(), ..Default::default() };
    support::store_tenant(&store, create).await;

    let (nodes, servers, addrs) = two_nodes_meshes(&store).await;
    let (na, nb) = (&nodes[0], &nodes[1]);

    assert!(na.running(TENANT).is_none() && nb.running(TENANT).is_none());
    let a = na.mesh(TENANT).await.unwrap();
    let customer = customers_on_a(1)[0];
    let mut first = message(customer, 1, "hi");
    first.group = Some(support::GROUP);
    assert!(a.conversation(CustomerId(customer)).customer_message(first).await.unwrap().opened);
    until("the conversation on A hears it is queued", || async {
        open(&a, customer).await == Some((State::Queued, None))
    })
    .await;
    let b = nb.running(TENANT).expect("B's mesh was created by the route's envelope");
    let (placement, load, capacity) = placed(&b, 1).await;
    assert!(matches!(placement, Some(Placement::Queued { .. })), "{placement:?}");
    assert_eq!((load, capacity), (0, 1), "the stored agent, capacity 1");
    b.router().set_status(AGENT, AgentStatus::Online, StatusCause::Agent).await.unwrap();
    until("the conversation on A hears it is assigned", || async {
        open(&a, customer).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    assert_eq!((a.live(), b.live()), ((0, 1), (1, 0)), "each actor on its shard's owner");
    // The events of both nodes name the group and the agent by their stored ids.
    let names: Vec<(String, String, String)> = support::shared(&store, "events")
        .into_iter()
        .map(|(_, item)| {
            use switchboard_proto::internal::v1::stream_item::Item;
            use v1::event::Detail;
            let Some(Item::Event(e)) = item.item else { panic!("not an event") };
            let group = match e.detail {
                Some(Detail::Opened(d)) => d.group,
                Some(Detail::Queued(d)) => d.group,
                Some(Detail::Assigned(d)) => d.group,
                _ => String::new(),
            };
            (e.r#type, group, e.agent)
        })
        .collect();
    let (sales, ann) =
        (format!("tenants/{TENANT}/groups/sales"), format!("tenants/{TENANT}/agents/ann"));
    assert_eq!(
        names,
        [
            ("opened".into(), sales.clone(), String::new()),
            ("queued".into(), sales.clone(), String::new()),
            ("agent_status_changed".into(), String::new(), ann.clone()),
            ("assigned".into(), sales, ann),
        ]
    );

    // A tenant the store does not know, in a shard A owns.
    let nobody = (0..)
        .map(|i| format!("nobody{i}"))
        .find(|t| ActorKey::Router { tenant: t }.shard(SHARDS) != router_shard())
        .unwrap();
    let ack: Envelope<ToRouter> = Envelope {
        conversation: ConversationId(1),
        customer: CustomerId(customer),
        epoch: 1,
        body: Body::Ack { next: 0 },
    };
    let request = encode(&nobody, pb::MeshDirection::ToRouter, &ack).unwrap();
    let mut client = pb::actor_mesh_service_client::ActorMeshServiceClient::connect(format!(
        "http://{}",
        addrs[0]
    ))
    .await
    .unwrap();
    let status = client.deliver(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(na.running(&nobody).is_none());
    drop(servers);
}

/// Issue 12, the node's server: in cluster mode it serves `ActorMeshService` (a node that
/// owns no shard yet, its etcd unreachable, refuses an envelope with UNAVAILABLE naming the
/// shard); a single node does not serve it (UNIMPLEMENTED).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_serves_the_actor_mesh_and_a_single_node_does_not() {
    use switchboard_node::cluster::ClusterConfig;
    use switchboard_node::server::{NodeConfig, serve};

    for clustered in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // etcd: a loopback port nobody listens on; the node keeps retrying and owns nothing.
        let etcd = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let cluster = clustered.then(|| ClusterConfig {
            etcd: vec![etcd.to_string()],
            name: "wire".into(),
            node_id: "n1".into(),
            advertise_addr: addr.to_string(),
            lease_ttl: Duration::from_secs(10),
            shards: SHARDS,
        });
        let config = NodeConfig { data_dir: dir.path().into(), cluster, ..Default::default() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let node = Task(tokio::spawn(async move {
            let _ = serve(config, listener, async move {
                let _ = stopped.await;
            })
            .await;
        }));
        let ack: Envelope<ToRouter> = Envelope {
            conversation: ConversationId(1),
            customer: CustomerId(1),
            epoch: 1,
            body: Body::Ack { next: 0 },
        };
        let request = encode(TENANT, pb::MeshDirection::ToRouter, &ack).unwrap();
        let mut client = pb::actor_mesh_service_client::ActorMeshServiceClient::connect(format!(
            "http://{addr}"
        ))
        .await
        .unwrap();
        let status = client.deliver(request).await.unwrap_err();
        if clustered {
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
            assert!(status.message().contains("does not own shard"), "{}", status.message());
        } else {
            assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
        }
        drop(stop);
        drop(node);
    }
}

/// The agent's actor on node A (its key's shard is A's), the router on B: the agent signs in
/// on A (the command crosses to B, decided there), the router's offer crosses back to A, the
/// agent accepts on A, and the conversation (on A too) is assigned. Both ends agree on the
/// agent's status and holdings, and the desk stream is gap-free: status, offer, assignment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_actor_on_node_a_accepts_an_offer_of_the_router_on_node_b() {
    let agent_key = ActorKey::Agent { tenant: TENANT, agent: AGENT };
    assert_ne!(agent_key.shard(SHARDS), router_shard(), "the agent actor lives on A");
    let hour = Duration::from_secs(3600);
    let timings = MeshOptions { agent_actors: true, ..options(hour) };
    let c = cluster_of(DELIVER_DEADLINE, MAX_INBOUND, timings, OfferMode::Offer { timeout: hour })
        .await;
    c.a.serve();
    c.b.serve();
    let (a, b) = (&c.a.mesh, &c.b.mesh);
    let desk = a.agent(AGENT);

    let online = desk.set_status(AgentStatus::Online, StatusCause::Agent).await.unwrap();
    assert_eq!(desk.decision(online).await.unwrap(), Decision::Applied, "decided on B");
    let status = b.router().read(|side| side.router().agent(AGENT).unwrap().status).await;
    assert_eq!(status.unwrap(), AgentStatus::Online);

    let customer = customers_on_a(1)[0];
    let msg = message(customer, 1, "hi");
    a.conversation(CustomerId(customer)).customer_message(msg).await.unwrap();
    until("the agent's actor on A is offered the conversation", || async {
        desk.read(|side| side.offered().contains(&ConversationId(1))).await.unwrap()
    })
    .await;
    let accept = desk.accept(ConversationId(1)).await.unwrap();
    assert_eq!(desk.decision(accept).await.unwrap(), Decision::Applied);
    until("the conversation on A hears it is assigned", || async {
        open(a, customer).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    until("the agent's actor on A holds it", || async {
        desk.read(|side| side.assigned().contains(&ConversationId(1))).await.unwrap()
    })
    .await;
    let (placement, load, _) = placed(b, 1).await;
    assert!(matches!(placement, Some(Placement::Assigned { agent: AGENT, .. })));
    assert_eq!(load, 1);
    until("B's decisions to the agent are acknowledged", || async {
        b.router().read(|side| side.retransmit_agents().is_empty()).await.unwrap()
    })
    .await;
    // The opening message reaches the offered agent's desk, written by the conversation on
    // A once it hears of the offer; its place beside the acceptance depends on which write
    // came first.
    until("the opening message is on the desk", || async {
        desk_summary(&c.store, AGENT).contains(&"customer 1 hi".to_owned())
    })
    .await;
    let summary = desk_summary(&c.store, AGENT);
    let router: Vec<&String> = summary.iter().filter(|e| !e.starts_with("customer ")).collect();
    assert_eq!(router, ["status online", "offered 1", "assigned 1 accepted"], "{summary:?}");
    let note = summary.iter().position(|e| e == "customer 1 hi");
    assert!(note > summary.iter().position(|e| e == "offered 1"), "{summary:?}");
    assert_eq!(summary.len(), 4, "the note once: {summary:?}");
    let side = desk.read(|side| side.status()).await.unwrap();
    assert_eq!(side, AgentStatus::Online, "the agent side's status is the router's");
    assert_eq!((a.live_agents(), b.live_agents()), (1, 0), "the agent actor only on A");
    placed_by_shard(&c);
}

/// The receiver checks an agent actor's key like a conversation's: node B refuses a
/// `TO_AGENT` envelope for an agent whose shard is A's, and node A a `FROM_AGENT` one (its
/// key is the router's, B's), each UNAVAILABLE, activating nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiver_refuses_agent_envelopes_for_shards_it_does_not_own() {
    use switchboard_core::mesh::{AgentEnvelope, FromAgent, ToAgent};
    use switchboard_node::actors::grpc::encode_agent;
    use switchboard_proto::internal::v1::actor_mesh_service_client::ActorMeshServiceClient;
    let hour = Duration::from_secs(3600);
    let timings = MeshOptions { agent_actors: true, ..options(hour) };
    let c = cluster_with(DELIVER_DEADLINE, MAX_INBOUND, timings).await;
    c.a.serve();
    c.b.serve();
    let to_agent: AgentEnvelope<ToAgent> =
        AgentEnvelope { agent: AGENT, epoch: 1, body: Body::Ack { next: 1 } };
    let from_agent: AgentEnvelope<FromAgent> =
        AgentEnvelope { agent: AGENT, epoch: 1, body: Body::Ack { next: 1 } };
    let cases = [
        (c.b.addr, encode_agent(TENANT, pb::MeshDirection::ToAgent, &to_agent).unwrap()),
        (c.a.addr, encode_agent(TENANT, pb::MeshDirection::FromAgent, &from_agent).unwrap()),
    ];
    for (addr, request) in cases {
        let mut client = ActorMeshServiceClient::connect(format!("http://{addr}")).await.unwrap();
        let status = client.deliver(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    }
    assert_eq!((c.a.mesh.live_agents(), c.b.mesh.live_agents()), (0, 0));
    assert_eq!((c.a.mesh.live().0, c.b.mesh.live().0), (0, 0), "no router activated");
}

/// An agent actor's shard moves from A to B: the actor stops on A as the ownership changes,
/// A refuses to activate it again, and the router's next decision about the agent (an
/// assignment) activates it on B from the row A wrote (incarnation 2): its desk stream goes
/// on gap-free, and B's actor holds the assignment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_agent_shard_stops_its_actor_and_the_new_owner_carries_on_its_desk() {
    let agent_shard = ActorKey::Agent { tenant: TENANT, agent: AGENT }.shard(SHARDS);
    let hour = Duration::from_secs(3600);
    let timings = MeshOptions { agent_actors: true, retransmit: hour, ..options(hour) };
    let c = cluster_with(DELIVER_DEADLINE, MAX_INBOUND, timings).await;
    c.a.serve();
    c.b.serve();
    let (a, b) = (&c.a.mesh, &c.b.mesh);
    let online = a.agent(AGENT).set_status(AgentStatus::Online, StatusCause::Agent).await.unwrap();
    assert_eq!(a.agent(AGENT).decision(online).await.unwrap(), Decision::Applied);
    until("B's status change to the agent is acknowledged", || async {
        b.router().read(|side| side.retransmit_agents().is_empty()).await.unwrap()
    })
    .await;
    assert_eq!(desk_summary(&c.store, AGENT), ["status online"]);
    // A's desk streams of the agent end when its actor moves (`Mesh::moved_away`).
    let key = ActorKey::Agent { tenant: TENANT, agent: AGENT };
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let mut gone = a.moved_away(key);
    assert!(gone.as_mut().poll(&mut cx).is_pending(), "the agent's actor lives on A");
    assert!(b.moved_away(key).as_mut().poll(&mut cx).is_ready(), "nor ever lived on B");

    move_to_b(&c, agent_shard).await;
    assert!(gone.as_mut().poll(&mut cx).is_ready(), "the agent's actor moved off A");
    assert!(b.moved_away(key).as_mut().poll(&mut cx).is_pending(), "it lives on B now");
    until("the agent actor stops on A", || async { a.live_agents() == 0 }).await;
    match a.agent(AGENT).set_status(AgentStatus::Away, StatusCause::Agent).await {
        Err(switchboard_node::error::Error::Unavailable(m)) => {
            assert!(m.contains("does not own shard"), "{m}");
        }
        other => panic!("A must not serve a moved shard: {other:?}"),
    }

    let customer = customers_on_a(1)[0];
    let msg = message(customer, 1, "hi");
    a.conversation(CustomerId(customer)).customer_message(msg).await.unwrap();
    let on_b = b.agent(AGENT);
    until("the agent's actor on B holds the assignment", || async {
        on_b.read(|side| side.assigned().contains(&ConversationId(1))).await.unwrap()
    })
    .await;
    // The opening message follows the assignment on the desk, written by the conversation
    // on A once it hears of it: the router tells the agent and the conversation on their own
    // links, so B can hold the assignment while A has not yet written the note.
    until("the conversation on A hears it is assigned", || async {
        open(a, customer).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    until("the opening message is on the desk", || async {
        desk_summary(&c.store, AGENT).len() == 3
    })
    .await;
    let expected = ["status online", "assigned 1 auto", "customer 1 hi"];
    assert_eq!(desk_summary(&c.store, AGENT), expected);
    let row = c.store.actor(TENANT, "agent", "1").unwrap().unwrap();
    assert_eq!(row.epoch, 2, "B's incarnation follows A's");
    assert_eq!(on_b.read(|side| side.status()).await.unwrap(), AgentStatus::Online);
    assert_eq!((a.live_agents(), b.live_agents()), (0, 1), "the agent actor only on B now");
}

/// Issue 12's three-node case: the conversation's shard on node A, the agent's on B, the
/// router's on C. The agent signs in on B (decided on C), the conversation opened on A is
/// assigned by C; then A's conversation actor writes the customer's messages to the agent's
/// desk stream itself (not through C, not through B's agent actor): the desk holds each once,
/// in order, right after `assigned`, as soon as each call returns, and B's hub (where the
/// agent's desk is read) publishes them, sent over from A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_message_on_node_a_reaches_the_desk_of_the_agent_on_node_b_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    let tenant = support::tenant(&[(AGENT, 1)]);
    let timings = MeshOptions { agent_actors: true, ..options(Duration::from_secs(3600)) };
    let [na, nb, nc] = nodes::three_apart(AGENT, store.clone(), tenant, timings).await;
    let (a, b, c) = (&na.mesh, &nb.mesh, &nc.mesh);
    let customer = nodes::customers_on_a(AGENT, 1)[0];
    let conversation = a.conversation(CustomerId(customer));
    conversation.customer_message(message(customer, 1, "hi")).await.unwrap();
    // Queued before the agent signs in: had C decided the route after the sign-in, the
    // opening message would be shown with the assignment (as on one node), and the desk
    // below would hold it too.
    until("the conversation on A hears it is queued", || async {
        open(a, customer).await == Some((State::Queued, None))
    })
    .await;
    let desk = b.agent(AGENT);
    let online = desk.set_status(AgentStatus::Online, StatusCause::Agent).await.unwrap();
    assert_eq!(desk.decision(online).await.unwrap(), Decision::Applied, "decided on C");
    until("the conversation on A hears it is assigned", || async {
        open(a, customer).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    until("the assignment is on B's desk", || async { desk_summary(&store, AGENT).len() == 3 })
        .await;
    let routed = c.router().read(|side| side.applied(ConversationId(1))).await.unwrap();

    let mut live = nb.hub.subscribe(TENANT, "agent/1");
    for text in ["where is my order", "it was due monday"] {
        conversation.customer_message(message(customer, 1, text)).await.unwrap();
    }
    assert_eq!(
        desk_summary(&store, AGENT),
        [
            "status online",
            "assigned 1 auto",
            "unaccepted -1 assigned",
            "customer 1 where is my order",
            "customer 1 it was due monday"
        ],
        "once each, in order, after the assignment"
    );
    // B's hub carries each stored entry once. In any order: each is sent over from A after
    // its write, fire-and-forget, and two sends may overtake each other on the way (the
    // desk's reader puts early ones back in order, `service::serve_hinted_stream`).
    let stored: Vec<_> = support::desk(&store, AGENT).into_iter().skip(3).collect();
    let mut published = Vec::new();
    for _ in &stored {
        let entry = tokio::time::timeout(DEADLINE, live.recv()).await.unwrap().unwrap();
        published.push((*entry).clone());
    }
    published.sort_by_key(|(seq, _)| *seq);
    assert_eq!(published, stored, "B's hub carries the stored entries");
    let after = c.router().read(|side| side.applied(ConversationId(1))).await.unwrap();
    assert_eq!(after, routed, "the messages did not go through the router on C");
    // Each actor ran only on its shard's owner.
    assert_eq!((a.live(), a.live_agents()), ((0, 1), 0), "A: the conversation");
    assert_eq!((b.live(), b.live_agents()), ((0, 0), 1), "B: the agent");
    assert_eq!((c.live(), c.live_agents()), ((1, 0), 0), "C: the router");
    assert!(na.transport.passed.load(Ordering::SeqCst) >= 3, "route and two entries left A");
}

/// Two nodes' actors write one store's shared streams: the conversation's events from A and
/// the router's from B land in `events` gap-free from 1, in the order they happened, each
/// once, though B's router is killed after writing its assignment and before delivering it
/// (its next incarnation resends the decision, not the event); `outbox` holds A's replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_actors_on_two_nodes_share_one_stream_gap_free_each_once() {
    let c = cluster().await;
    let (a, b) = (&c.a.mesh, &c.b.mesh);
    let customer = customers_on_a(1)[0];
    let conversation = a.conversation(CustomerId(customer));
    conversation.customer_message(message(customer, 1, "hi")).await.unwrap();
    until("the conversation on A hears it is queued", || async {
        open(a, customer).await == Some((State::Queued, None))
    })
    .await;

    // B's router assigns, writes (its events with it) and dies before A hears.
    c.b.transport.cut_to_conversation.store(true, Ordering::SeqCst);
    b.router().set_status(AGENT, AgentStatus::Online, StatusCause::Agent).await.unwrap();
    b.kill_router().await;
    c.b.transport.cut_to_conversation.store(false, Ordering::SeqCst);
    until("the conversation on A hears it is assigned", || async {
        let _ = placed(b, 1).await;
        open(a, customer).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    conversation.agent_message(ConversationId(1), AGENT, "hello", None).await.unwrap();
    conversation.end(ConversationId(1), Actor::Agent(AGENT)).await.unwrap();
    until("the conversation actor on A passivates", || async { a.live().1 == 0 }).await;
    assert_eq!(placed(b, 1).await.1, 0, "the router let go of it");

    assert_eq!(
        support::events_summary(&c.store),
        [
            "opened 1",               // A
            "queued 1",               // B
            "agent_status_changed 1", // B
            "assigned 1 1",           // B, once
            "first_response 1 1",     // A
            "ended 1 1",              // A
        ]
    );
    let outbox = support::outbox_summary(&c.store);
    let name = format!("tenants/acme/conversations/1 tenants/acme/customers/{customer} web");
    assert_eq!(outbox, [format!("{name} agent tenants/acme/agents/1: hello")]);
    assert_eq!(support::transcript(&c.store, 1), ["customer: hi", "agent: hello"]);
    placed_by_shard(&c);
}

/// Nodes "a" and "b" (the fixed ownership of `fixed_ownership`), each with its own
/// `Meshes` over `store` behind its own server: the meshes, the servers (stopped when
/// dropped) and their addresses.
async fn two_nodes_meshes(
    store: &Arc<dyn Store>,
) -> (Vec<Arc<switchboard_node::actors::meshes::Meshes>>, Vec<Task>, Vec<std::net::SocketAddr>) {
    use switchboard_node::actors::meshes::Meshes;
    let (listeners, addrs) = nodes::ports(2).await;
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for (name, listener) in ["a", "b"].into_iter().zip(listeners) {
        let ownership = fixed_ownership(name, &addrs);
        let meshes =
            Arc::new(Meshes::new(store.clone(), ownership, options(Duration::from_secs(3600))));
        let service = meshes.service();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        servers.push(Task(tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        })));
        nodes.push(meshes);
    }
    (nodes, servers, addrs)
}

/// Configuration versions (`actors::config`): an actor tenant's agent created after both
/// nodes' meshes loaded reaches node A's mesh (as the tenant actor's node's does after the
/// write); node B's, which nobody told, takes it when A's next envelope, carrying A's newer
/// version, reaches it, before the envelope is handled: B's router actor then has the agent
/// with its capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_with_a_newer_configuration_version_makes_the_receiving_mesh_reload() {
    use switchboard_node::hub::Hub;
    use switchboard_node::registry::{Options, Registry};
    use switchboard_proto::internal::v1::command::Op;
    use switchboard_proto::v1;

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    let create = v1::CreateTenantRequest {
        tenant_id: TENANT.into(),
        routing: v1::TenantRouting::Actors as i32,
        ..Default::default()
    };
    support::store_tenant(&store, create).await;

    let (nodes, servers, _) = two_nodes_meshes(&store).await;
    let (a, b) = (nodes[0].mesh(TENANT).await.unwrap(), nodes[1].mesh(TENANT).await.unwrap());
    let loaded = a.config_version();
    assert!(loaded > 0, "the tenant's PutGroup and PutAgent raised the version");
    assert_eq!(b.config_version(), loaded);

    // The admin API's PutAgent, through the tenant actor, after both meshes loaded.
    let registry = Registry::load(store.clone(), Hub::default(), Options::default()).await.unwrap();
    let put_bob = v1::PutAgentRequest {
        name: format!("tenants/{TENANT}/agents/bob"),
        nickname: "Bob".into(),
        capacity: 3,
        groups: vec![format!("tenants/{TENANT}/groups/sales")],
        ..Default::default()
    };
    registry.command(TENANT, Op::PutAgent(put_bob), "").await.unwrap();
    registry.shutdown().await;
    assert_eq!(b.config().agent_by_id("bob"), None, "B was told nothing");
    a.refresh_stored().await.unwrap();
    let bob = a.config().agent_by_id("bob").expect("A reloaded");
    assert!(a.config_version() > loaded);

    // A's conversation routes to B's router: the envelope carries A's version.
    let customer = customers_on_a(1)[0];
    let mut first = message(customer, 1, "hi");
    first.group = Some(support::GROUP);
    assert!(a.conversation(CustomerId(customer)).customer_message(first).await.unwrap().opened);
    until("B's mesh takes the newer configuration", || async {
        b.config_version() == a.config_version()
    })
    .await;
    assert_eq!(b.config().agent_by_id("bob"), Some(bob));
    until("B's router actor has bob with his capacity", || async {
        let router = b.router();
        let read = router.read(move |side| side.router().agent(bob).map(|r| r.capacity));
        read.await.unwrap() == Some(3)
    })
    .await;
    drop(servers);
}
