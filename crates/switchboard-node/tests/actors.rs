//! Conversation and router actors around the mesh protocol (issue 12 step 2), against a real
//! SQLite store in a temp dir, through the in-process transport (wrapped here in one that can
//! cut a direction, to crash an actor after its durable write and before its delivery).
//! No timed assertions: every wait is for a condition, with a generous deadline.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use switchboard_core::config::{
    AgentSettings, GroupPolicy, GroupSettings, OfferMode, TenantSettings,
};
use switchboard_core::mesh::{Envelope, ToConversation, ToRouter};
use switchboard_core::router::{Placement, StatusCause};
use switchboard_core::{
    Actor, AgentId, AgentStatus, Channel, ConversationId, CustomerId, CustomerMessage, Engine,
    GroupId, State, Timestamp,
};
use switchboard_node::actors::transport::InProcess;
use switchboard_node::actors::{
    CONVERSATION, Mesh, MeshArgs, MeshOptions, ROUTER, TenantConfig, Transport,
};
use switchboard_node::archive;
use switchboard_store::{SqliteOptions, SqliteStore, Store};

const TENANT: &str = "acme";
const GROUP: GroupId = GroupId(1);
const AGENT: AgentId = AgentId(1);
/// Far longer than any step takes on a loaded machine; a wait that runs out fails the test.
const DEADLINE: Duration = Duration::from_secs(60);

/// The in-process transport, with each direction cuttable: a cut envelope is dropped and
/// counted, as if its sender had crashed before delivering it.
#[derive(Default)]
struct Cuttable {
    inner: InProcess,
    cut_to_router: AtomicBool,
    cut_to_conversation: AtomicBool,
    dropped: AtomicU64,
}

impl Transport for Cuttable {
    fn to_router(&self, tenant: &str, envelope: Envelope<ToRouter>) {
        if self.cut_to_router.load(Ordering::SeqCst) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        } else {
            self.inner.to_router(tenant, envelope);
        }
    }

    fn to_conversation(&self, tenant: &str, envelope: Envelope<ToConversation>) {
        if self.cut_to_conversation.load(Ordering::SeqCst) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        } else {
            self.inner.to_conversation(tenant, envelope);
        }
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    transport: Arc<Cuttable>,
    mesh: Mesh,
}

/// One group (auto-accept), one agent of capacity 1 in it, signed out.
fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    let settings = TenantSettings { default_group: Some(GROUP), ..Default::default() };
    let mut engine = Engine::new(settings).unwrap();
    let t0 = Timestamp(0);
    let policy = GroupPolicy { offer: OfferMode::AutoAccept, ..Default::default() };
    engine.upsert_group(t0, GROUP, GroupSettings { policy, ..Default::default() }).unwrap();
    let agent = AgentSettings {
        nickname: "alice".into(),
        capacity: 1,
        groups: vec![GROUP],
        ..Default::default()
    };
    engine.upsert_agent(t0, AGENT, agent).unwrap();
    let config = Arc::new(TenantConfig::of(&engine, &[GROUP], &[AGENT]));
    let transport = Arc::new(Cuttable::default());
    let options = MeshOptions {
        retransmit: Duration::from_millis(50),
        idle: Duration::from_secs(3600),
        linger: Duration::from_secs(3600),
    };
    let mesh = Mesh::new(MeshArgs {
        tenant: TENANT.into(),
        store: store.clone(),
        fence: Default::default(),
        config,
        router: engine.router().clone(),
        transport: transport.clone(),
        options,
        heard: None,
    });
    transport.inner.attach(&mesh);
    Harness { _dir: dir, store, transport, mesh }
}

fn message(customer: u64, conversation: u64, text: &str) -> CustomerMessage {
    CustomerMessage {
        customer: CustomerId(customer),
        channel: Channel::Web,
        text: text.into(),
        new_conversation: ConversationId(conversation),
        group: None,
        priority: None,
    }
}

/// Waits until `check` holds, polling; panics with `what` after [`DEADLINE`].
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The state and agent of a customer's open conversation, as its actor holds it.
async fn open(mesh: &Mesh, customer: u64) -> Option<(State, Option<AgentId>)> {
    mesh.conversation(CustomerId(customer))
        .read(|side| side.conversation().map(|c| (c.state, c.agent)))
        .await
        .ok()
        .flatten()
}

/// Where the router places a conversation, and what the agent holds.
async fn placed(mesh: &Mesh, id: u64) -> (Option<Placement>, usize, u32) {
    mesh.router()
        .read(move |side| {
            let r = side.router();
            let agent = r.agent(AGENT).unwrap();
            (r.placement(ConversationId(id)).cloned(), agent.assigned.len(), agent.capacity)
        })
        .await
        .unwrap()
}

/// How many times an archived conversation was assigned.
fn archived_assignments(store: &Arc<dyn Store>, id: u64) -> Option<usize> {
    let row = store.archived(TENANT, id).unwrap()?;
    let c = archive::decode(&row.body).unwrap().conversation;
    Some(c.transitions.iter().filter(|t| t.to == State::Assigned).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_is_queued_assigned_answered_ended_and_its_actor_passivates() {
    let h = harness();
    let mesh = &h.mesh;
    // The agent is signed out: the conversation waits in the queue and hears so.
    let outcome = mesh.conversation(CustomerId(7)).customer_message(message(7, 1, "hi")).await;
    assert!(outcome.unwrap().opened);
    until("the conversation hears it is queued", || async {
        open(mesh, 7).await == Some((State::Queued, None))
    })
    .await;
    assert!(matches!(placed(mesh, 1).await.0, Some(Placement::Queued { .. })));
    assert_eq!(mesh.live(), (1, 1));

    // The agent signs in: the router assigns, the conversation hears `Placed`.
    mesh.router().set_status(AGENT, AgentStatus::Online, StatusCause::Agent).await.unwrap();
    until("the conversation hears it is assigned", || async {
        open(mesh, 7).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    let replies = mesh
        .conversation(CustomerId(7))
        .agent_message(ConversationId(1), AGENT, "hello, how can I help?", None)
        .await
        .unwrap();
    assert!(!replies.is_empty(), "the agent's message goes to the customer");
    // Its row is durable while it lives.
    assert!(h.store.actor(TENANT, CONVERSATION, "7").unwrap().is_some());
    assert!(h.store.actor(TENANT, ROUTER, "").unwrap().is_some());

    // The agent ends it: the router lets go once it hears `Leave`, acknowledges, and the
    // conversation actor stores the customer, deletes its row and stops.
    mesh.conversation(CustomerId(7)).end(ConversationId(1), Actor::Agent(AGENT)).await.unwrap();
    until("the conversation actor passivates", || async { mesh.live().1 == 0 }).await;
    assert_eq!(h.store.actor(TENANT, CONVERSATION, "7").unwrap(), None);
    let (placement, load, _) = placed(mesh, 1).await;
    assert_eq!((placement, load), (None, 0), "the router let go of it");
    assert_eq!(archived_assignments(&h.store, 1), Some(1), "archived, assigned once");
    let record = h.store.customer(TENANT, "7").unwrap().expect("the customer is stored");
    let record = archive::decode_customer(&record).unwrap();
    assert_eq!(record.customer.last_agent, Some(AGENT), "its last agent survives");

    // The next message activates it from that record: a new conversation, same customer.
    let outcome = mesh.conversation(CustomerId(7)).customer_message(message(7, 2, "again")).await;
    assert!(outcome.unwrap().opened);
    until("the second conversation is assigned", || async {
        open(mesh, 7).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    assert_eq!(mesh.live(), (1, 1));
}

/// A crash after the durable write and before delivery loses nothing and applies nothing
/// twice, on either side: the router's assignment and the conversation's `Leave` are each
/// durable in their sender's row, resent by the next incarnation and applied once; the
/// agent's capacity (1) is never exceeded and the second customer is assigned only once the
/// first conversation left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_durable_write_and_delivery_loses_nothing_and_doubles_nothing() {
    let h = harness();
    let mesh = &h.mesh;
    for (customer, conversation) in [(1, 11), (2, 12)] {
        let msg = message(customer, conversation, "hello");
        mesh.conversation(CustomerId(customer)).customer_message(msg).await.unwrap();
    }
    for customer in [1, 2] {
        until("both conversations hear they are queued", || async {
            open(mesh, customer).await == Some((State::Queued, None))
        })
        .await;
    }

    // The router decides (assigns conversation 11), writes it, and dies before delivering.
    h.transport.cut_to_conversation.store(true, Ordering::SeqCst);
    mesh.router().set_status(AGENT, AgentStatus::Online, StatusCause::Agent).await.unwrap();
    // `set_status` answers after the write and the hand-over to the transport.
    assert!(h.transport.dropped.load(Ordering::SeqCst) >= 1, "the decision was cut");
    mesh.kill_router();
    until("the router actor is gone", || async { mesh.live().0 == 0 }).await;
    assert_eq!(open(mesh, 1).await, Some((State::Queued, None)), "not heard yet");
    h.transport.cut_to_conversation.store(false, Ordering::SeqCst);

    // Its next incarnation (activated by a read) resends the durable decision at once.
    let (placement, load, capacity) = placed(mesh, 11).await;
    assert!(matches!(placement, Some(Placement::Assigned { agent: AGENT, .. })));
    assert_eq!((load, capacity), (1, 1));
    until("conversation 11 hears its assignment", || async {
        open(mesh, 1).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    assert_eq!(open(mesh, 2).await, Some((State::Queued, None)), "capacity 1 is respected");

    // The conversation ends, writes its `Leave`, and dies before delivering it.
    h.transport.cut_to_router.store(true, Ordering::SeqCst);
    let before = h.transport.dropped.load(Ordering::SeqCst);
    mesh.conversation(CustomerId(1)).end(ConversationId(11), Actor::Agent(AGENT)).await.unwrap();
    assert!(h.transport.dropped.load(Ordering::SeqCst) > before, "the leave was cut");
    mesh.kill_conversation(CustomerId(1));
    until("conversation actor 1 is gone", || async { mesh.live().1 == 1 }).await;
    assert!(h.store.actor(TENANT, CONVERSATION, "1").unwrap().is_some(), "its row holds the leave");
    let (_, load, _) = placed(mesh, 11).await;
    assert_eq!(load, 1, "the router has not heard");
    h.transport.cut_to_router.store(false, Ordering::SeqCst);

    // A node restart activates every actor with a row: the leave is resent and applied once,
    // the agent takes the waiting conversation, and actor 1 passivates.
    mesh.recover().await.unwrap();
    until("conversation 12 is assigned", || async {
        open(mesh, 2).await == Some((State::Assigned, Some(AGENT)))
    })
    .await;
    until("conversation actor 1 passivates", || async {
        h.store.actor(TENANT, CONVERSATION, "1").unwrap().is_none()
    })
    .await;
    let (placement, load, capacity) = placed(mesh, 12).await;
    assert!(matches!(placement, Some(Placement::Assigned { agent: AGENT, .. })));
    assert_eq!((load, capacity), (1, 1));
    assert_eq!(placed(mesh, 11).await.0, None);
    assert_eq!(archived_assignments(&h.store, 11), Some(1), "11 was assigned exactly once");
    let assigned = mesh
        .conversation(CustomerId(2))
        .read(|side| {
            let c = side.conversation().unwrap();
            c.transitions.iter().filter(|t| t.to == State::Assigned).count()
        })
        .await
        .unwrap();
    assert_eq!(assigned, 1, "12 was assigned exactly once");
}
