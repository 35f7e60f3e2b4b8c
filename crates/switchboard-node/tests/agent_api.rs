//! The agent's own AgentService calls of a tenant created with `TENANT_ROUTING_ACTORS`,
//! served by its agent actor (issue 12, the cut-over), over real gRPC: one node
//! (`switchboard_node::server::serve_observed`, every shard local) on a loopback port over a
//! SQLite store in a temp dir, restarted on the same directory. Conversations are opened
//! through the node's mesh handle (PostMessage on actors is another step's). No timed
//! assertions: every wait is for a condition, with a generous deadline.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_core::{AgentId, ConversationId, CustomerId, GroupId};
use switchboard_node::actors::Mesh;
use switchboard_node::actors::meshes::Meshes;
use switchboard_node::actors::placement::number_in_shard;
use switchboard_node::server::{NodeConfig, serve_observed};
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::admin_service_client::AdminServiceClient;
use switchboard_proto::v1::agent_event::Event;
use switchboard_proto::v1::agent_service_client::AgentServiceClient;
use switchboard_proto::v1::event_service_client::EventServiceClient;
use tonic::Code;
use tonic::transport::Channel;

use self::support::{DEADLINE, message};

const T: &str = "acme";
const ANN: &str = "tenants/acme/agents/ann";

/// One node serving until `stop`; its meshes for the test to drive.
struct Node {
    meshes: Arc<Meshes>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<()>,
    channel: Channel,
}

impl Node {
    async fn start(dir: &Path) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = NodeConfig { data_dir: dir.to_owned(), ..NodeConfig::default() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let seen: Arc<Mutex<Option<Arc<Meshes>>>> = Arc::default();
        let keep = seen.clone();
        let served = tokio::spawn(async move {
            let observe = move |m: &Arc<Meshes>| *keep.lock().unwrap() = Some(m.clone());
            let shutdown = async move {
                let _ = stopped.await;
            };
            serve_observed(config, listener, shutdown, observe).await.expect("node serves");
        });
        // The node hands its meshes over once its store and tenants are loaded, just before
        // it serves (the port is bound already: connections wait in its backlog).
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let meshes = loop {
            if let Some(meshes) = seen.lock().unwrap().clone() {
                break meshes;
            }
            assert!(!served.is_finished(), "the node stopped while starting");
            assert!(tokio::time::Instant::now() < deadline, "the node did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let endpoint = Channel::from_shared(format!("http://{addr}")).unwrap();
        let channel = endpoint.connect().await.expect("connect");
        Node { meshes, stop: Some(stop), served, channel }
    }

    fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    fn agent(&self) -> AgentServiceClient<Channel> {
        AgentServiceClient::new(self.channel.clone())
    }

    fn events(&self) -> EventServiceClient<Channel> {
        EventServiceClient::new(self.channel.clone())
    }

    async fn mesh(&self) -> Mesh {
        self.meshes.mesh(T).await.expect("the tenant's mesh")
    }

    /// Stops the node (its actors and tenants stop; its rows stay) and waits until it is gone.
    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        let Node { meshes, served, channel, .. } = self;
        drop((meshes, channel));
        served.await.expect("the node stopped cleanly");
    }
}

fn rid(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{tag}-{}", N.fetch_add(1, Ordering::Relaxed))
}

fn duration(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

/// An actor tenant, a group in offer mode with a wrap-up the agent may end early, and the
/// agent ann (capacity 2) in it, signed out.
async fn tenant(node: &Node) {
    let mut admin = node.admin();
    let routing = pb::TenantRouting::Actors as i32;
    let create = pb::CreateTenantRequest {
        tenant_id: T.into(),
        display_name: "Acme".into(),
        request_id: rid("tenant"),
        routing,
        ..Default::default()
    };
    let created = admin.create_tenant(create).await.expect("create tenant").into_inner();
    assert_eq!(created.routing, routing);
    let policy = pb::RoutingPolicy {
        offer_mode: pb::OfferMode::Offer as i32,
        offer_timeout: duration(600),
        wrap_up: duration(600),
        wrap_up_can_end_early: true,
        ..Default::default()
    };
    admin
        .put_group(pb::PutGroupRequest {
            name: format!("tenants/{T}/groups/sales"),
            display_name: "Sales".into(),
            policy: Some(policy),
            request_id: rid("group"),
            ..Default::default()
        })
        .await
        .expect("put group");
    admin
        .put_agent(pb::PutAgentRequest {
            name: ANN.into(),
            nickname: "Ann".into(),
            capacity: 2,
            groups: vec![format!("tenants/{T}/groups/sales")],
            request_id: rid("agent"),
            ..Default::default()
        })
        .await
        .expect("put agent");
}

/// The number of `name` in the mesh's configuration.
fn ids(mesh: &Mesh) -> (AgentId, GroupId) {
    let config = mesh.config();
    let agent = config.agent_names.iter().find(|(_, n)| n.as_str() == "ann").unwrap().0;
    let group = config.group_names.iter().find(|(_, n)| n.as_str() == "sales").unwrap().0;
    (*agent, *group)
}

/// Customer `n`'s number and its conversation's, as an actor tenant's allocator lays them
/// out (every shard is local on one node: shard 0).
fn numbers(n: u64) -> (u64, u64) {
    (number_in_shard(0, n).unwrap(), number_in_shard(0, 1000 + n).unwrap())
}

/// Customer `n` writes in the sales group through the mesh handle; returns the
/// conversation's resource name.
async fn customer_writes(mesh: &Mesh, group: GroupId, n: u64) -> String {
    let (customer, conversation) = numbers(n);
    let mut msg = message(customer, conversation, "hello");
    msg.group = Some(group);
    mesh.conversation(CustomerId(customer)).customer_message(msg).await.expect("customer message");
    format!("tenants/{T}/conversations/{conversation}")
}

fn on(conversation: &str) -> pb::AgentConversationRequest {
    pb::AgentConversationRequest {
        agent: ANN.into(),
        conversation: conversation.into(),
        request_id: rid("op"),
    }
}

fn set(status: pb::AgentStatus) -> pb::SetStatusRequest {
    pb::SetStatusRequest { agent: ANN.into(), status: status as i32, request_id: rid("status") }
}

async fn desk(
    agent: &mut AgentServiceClient<Channel>,
    after: u64,
) -> tonic::Streaming<pb::AgentEvent> {
    let request = pb::StreamAgentEventsRequest { agent: ANN.into(), after_cursor: after };
    agent.stream_events(request).await.expect("stream events").into_inner()
}

/// The next desk event, waited for within the deadline.
async fn next(stream: &mut tonic::Streaming<pb::AgentEvent>) -> pb::AgentEvent {
    tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("no desk event within the deadline")
        .expect("desk stream failed")
        .expect("desk stream ended")
}

/// Reads desk events until one `want`s; returns all read.
async fn desk_until(
    stream: &mut tonic::Streaming<pb::AgentEvent>,
    want: impl Fn(&pb::AgentEvent) -> bool,
) -> Vec<pb::AgentEvent> {
    let mut read = Vec::new();
    loop {
        let event = next(stream).await;
        let done = want(&event);
        read.push(event);
        if done {
            return read;
        }
    }
}

fn offered(conversation: &str) -> impl Fn(&pb::AgentEvent) -> bool + '_ {
    move |e| e.conversation == conversation && matches!(e.event, Some(Event::Offered(_)))
}

fn kind(e: &pb::AgentEvent) -> &'static str {
    match e.event {
        Some(Event::Offered(_)) => "offered",
        Some(Event::Assigned(_)) => "assigned",
        Some(Event::Released(_)) => "released",
        Some(Event::CustomerMessage(_)) => "customer_message",
        Some(Event::StatusChanged(_)) => "status_changed",
        _ => "other",
    }
}

/// (cursor, kind, conversation) of each event.
fn summary(events: &[pb::AgentEvent]) -> Vec<(u64, &'static str, String)> {
    events.iter().map(|e| (e.cursor, kind(e), e.conversation.clone())).collect()
}

async fn assigned(agent: &mut AgentServiceClient<Channel>) -> Vec<(String, i32)> {
    let request = pb::ListAgentConversationsRequest { agent: ANN.into(), page: None };
    let page = agent.list_assigned(request).await.expect("list assigned").into_inner();
    page.conversations.into_iter().map(|c| (c.name, c.state)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_tenants_agent_is_served_by_its_agent_actor_over_grpc_and_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    tenant(&node).await;
    let mut agent = node.agent();

    // Validation and names as on the tenant actor's path.
    let nobody = pb::SetStatusRequest {
        agent: format!("tenants/{T}/agents/nobody"),
        ..set(pb::AgentStatus::Online)
    };
    assert_eq!(agent.set_status(nobody).await.unwrap_err().code(), Code::NotFound);
    let unset = set(pb::AgentStatus::Unspecified);
    assert_eq!(agent.set_status(unset).await.unwrap_err().code(), Code::InvalidArgument);

    // The desk, followed from the start.
    let mut live = desk(&mut agent, 0).await;

    // Signed in through the agent actor; the router actor has ann online.
    let ann = agent.set_status(set(pb::AgentStatus::Online)).await.expect("online").into_inner();
    assert_eq!((ann.name.as_str(), ann.status), (ANN, pb::AgentStatus::Online as i32));
    assert_eq!(ann.capacity, 2);
    assert_eq!(ann.groups, vec![format!("tenants/{T}/groups/sales")]);
    let mesh = node.mesh().await;
    let (a, group) = ids(&mesh);
    assert_eq!(
        mesh.agent(a).read(|side| side.status()).await.unwrap(),
        switchboard_core::AgentStatus::Online
    );

    // Two customers write; both are offered to ann, each once on her desk.
    let c1 = customer_writes(&mesh, group, 1).await;
    desk_until(&mut live, offered(&c1)).await;
    let c2 = customer_writes(&mesh, group, 2).await;
    let seen = desk_until(&mut live, offered(&c2)).await;
    let cursor_after_c2 = seen.last().unwrap().cursor;
    let held = assigned(&mut agent).await;
    let names: Vec<&str> = held.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec![c1.as_str(), c2.as_str()], "both offered: {held:?}");

    // Unknown conversation: NOT_FOUND; another tenant's: INVALID_ARGUMENT.
    let unknown = format!("tenants/{T}/conversations/{}", numbers(99).1);
    assert_eq!(agent.accept(on(&unknown)).await.unwrap_err().code(), Code::NotFound);
    let elsewhere = on("tenants/other/conversations/5");
    assert_eq!(agent.accept(elsewhere).await.unwrap_err().code(), Code::InvalidArgument);

    // Decline c1 (the router takes the offer back), accept c2.
    let declined = agent.decline(on(&c1)).await.expect("decline").into_inner();
    assert_eq!(declined.name, c1);
    desk_until(&mut live, |e| e.conversation == c1 && kind(e) == "released").await;
    let accept_c2 = on(&c2);
    let accepted = agent.accept(accept_c2.clone()).await.expect("accept").into_inner();
    assert_eq!((accepted.name.as_str(), accepted.agent.as_str()), (c2.as_str(), ANN));
    assert_eq!(accepted.state, pb::ConversationState::Assigned as i32);
    assert_eq!(accepted.group, format!("tenants/{T}/groups/sales"));
    desk_until(&mut live, |e| e.conversation == c2 && kind(e) == "assigned").await;
    // A retry with the same request id applies nothing and answers alike (the router kept
    // its answer); a new Accept is refused by the router: it is no longer an offer.
    let commands = || async { mesh.agent(a).read(|side| side.commands()).await.unwrap() };
    let before = commands().await;
    let retried = agent.accept(accept_c2.clone()).await.expect("retried accept").into_inner();
    assert_eq!(
        (retried.name, retried.agent, retried.state),
        (accepted.name.clone(), accepted.agent.clone(), accepted.state)
    );
    let online = set(pb::AgentStatus::Online);
    agent.set_status(online.clone()).await.expect("online again");
    agent.set_status(online).await.expect("the same request again");
    assert_eq!(commands().await, before + 1, "one command per request id");
    let again = agent.accept(on(&c2)).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition, "{again:?}");
    assert!(
        assigned(&mut agent).await.contains(&(c2.clone(), pb::ConversationState::Assigned as i32))
    );

    // A reconnect after a cursor resumes right after it: nothing repeated, nothing lost.
    drop(live);
    let mut resumed = desk(&mut agent, cursor_after_c2).await;
    let after = desk_until(&mut resumed, |e| e.conversation == c2 && kind(e) == "assigned").await;
    assert_eq!(after.first().unwrap().cursor, cursor_after_c2 + 1, "{:?}", summary(&after));
    // From the start: gap-free cursors, each offer exactly once.
    let mut from_start = desk(&mut agent, 0).await;
    let all = desk_until(&mut from_start, |e| e.conversation == c2 && kind(e) == "assigned").await;
    let cursors: Vec<u64> = all.iter().map(|e| e.cursor).collect();
    assert_eq!(cursors, (1..=all.len() as u64).collect::<Vec<_>>(), "{:?}", summary(&all));
    for c in [&c1, &c2] {
        let offers = all.iter().filter(|e| offered(c)(e)).count();
        assert_eq!(offers, 1, "{c} offered once before the decline: {:?}", summary(&all));
    }

    // The conversation ends (through its actor): ann wraps up, and ends it early.
    let (customer, conversation) = numbers(2);
    let by = switchboard_core::Actor::Agent(a);
    mesh.conversation(CustomerId(customer))
        .end(ConversationId(conversation), by)
        .await
        .expect("end");
    let wrapping = |mesh: Mesh| async move {
        let read = move |side: &switchboard_core::mesh::RouterSide| {
            side.router().agent(a).is_some_and(|x| !x.wrapping.is_empty())
        };
        mesh.router().read(read).await.unwrap()
    };
    support::until("ann wraps up c2", || wrapping(mesh.clone())).await;
    let end = pb::EndWrapUpRequest {
        agent: ANN.into(),
        conversation: c2.clone(),
        request_id: rid("wrap"),
    };
    let ann = agent.end_wrap_up(end).await.expect("end wrap-up").into_inner();
    assert!(ann.wrap_ups.is_empty(), "{ann:?}");
    let none = pb::EndWrapUpRequest {
        agent: ANN.into(),
        conversation: String::new(),
        request_id: rid("wrap"),
    };
    assert_eq!(agent.end_wrap_up(none).await.unwrap_err().code(), Code::FailedPrecondition);

    // The tenant's integrator stream (shared `events`, written by the actors) carries them.
    let request = pb::StreamEventsRequest { tenant: format!("tenants/{T}"), after_cursor: 0 };
    let mut events = node.events().stream_events(request).await.expect("events").into_inner();
    let first = tokio::time::timeout(DEADLINE, events.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.cursor, 1);

    // ListUnaccepted from the router actor: c1 waits in ann's group again.
    let request = pb::ListAgentConversationsRequest { agent: ANN.into(), page: None };
    let unaccepted = agent.list_unaccepted(request).await.expect("unaccepted").into_inner();
    let waiting: Vec<&str> = unaccepted.conversations.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(waiting, vec![c1.as_str()], "c1 waits, declined by ann");
    // Everything on the desk so far, to compare after the restart.
    let mut rest = desk(&mut agent, all.last().unwrap().cursor).await;
    let mut desk_before = all.clone();
    desk_before
        .extend(desk_until(&mut rest, |e| e.conversation == c2 && kind(e) == "released").await);
    let desk_before = summary(&desk_before);
    // Cursors have no gap: the refused second Accept, decided by the router on this node as
    // a call of its own, is answered to its caller and takes no desk number.
    let cursors: Vec<u64> = desk_before.iter().map(|(cursor, _, _)| *cursor).collect();
    assert_eq!(cursors, (1..=cursors.len() as u64).collect::<Vec<_>>(), "{desk_before:?}");
    drop((from_start, resumed, rest, events, agent, mesh));

    // A restart on the same directory keeps ann's status and desk.
    node.stop().await;
    let node = Node::start(dir.path()).await;
    let mut agent = node.agent();
    let mut replay = desk(&mut agent, 0).await;
    let again = desk_until(&mut replay, |e| e.cursor == desk_before.last().unwrap().0).await;
    assert_eq!(summary(&again), desk_before, "the desk after the restart");
    let mesh = node.mesh().await;
    assert_eq!(
        mesh.agent(a).read(|side| side.status()).await.unwrap(),
        switchboard_core::AgentStatus::Online
    );
    // The router actor still has her online: a new customer is offered to her.
    let c3 = customer_writes(&mesh, group, 3).await;
    desk_until(&mut replay, offered(&c3)).await;
    let accepted = agent.accept(on(&c3)).await.expect("accept after the restart").into_inner();
    assert_eq!(accepted.agent, ANN);
    // The first incarnation's request ids are in the store: a retry of c2's Accept queues
    // nothing and answers with c2 as it is now (ended).
    let before = mesh.agent(a).read(|side| side.commands()).await.unwrap();
    let retried =
        agent.accept(accept_c2.clone()).await.expect("retried after the restart").into_inner();
    assert_eq!(retried.name, c2);
    assert_eq!(mesh.agent(a).read(|side| side.commands()).await.unwrap(), before);
    // A request id another call used is refused, not applied.
    let reused = pb::AgentConversationRequest { request_id: accept_c2.request_id, ..on(&c3) };
    let refused = agent.decline(reused).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(mesh.agent(a).read(|side| side.commands()).await.unwrap(), before);
    // Pick: c1, which ann declined, still waits in her group; she takes it herself.
    let picked = agent.pick(on(&c1)).await.expect("pick").into_inner();
    assert_eq!((picked.name.as_str(), picked.agent.as_str()), (c1.as_str(), ANN));
    desk_until(&mut replay, |e| e.conversation == c1 && kind(e) == "assigned").await;
    let held: Vec<String> = assigned(&mut agent).await.into_iter().map(|(n, _)| n).collect();
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.contains(&c1) && held.contains(&c3), "{held:?}");
    drop((replay, agent, mesh));
    node.stop().await;
}
