//! What the mesh tests share (`actors.rs` on one node, `actors_grpc.rs` across two): the
//! tenant, a transport wrapper that can cut a direction, a store wrapper that can refuse a
//! write or hold a load, and waits and reads on conditions.

#![allow(dead_code)] // each test binary uses a different part

pub mod nodes;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use switchboard_core::config::{
    AgentSettings, GroupPolicy, GroupSettings, OfferMode, TenantSettings,
};
use switchboard_core::mesh::{
    AgentEnvelope, Envelope, FromAgent, ToAgent, ToConversation, ToRouter,
};
use switchboard_core::router::Placement;
use switchboard_core::{
    AgentId, Channel, ConversationId, CustomerId, CustomerMessage, Engine, GroupId, State,
    Timestamp,
};
use switchboard_node::actors::transport::Wire;
use switchboard_node::actors::{Mesh, MeshOptions, TenantConfig, Transport};
use switchboard_node::archive;
use switchboard_proto::internal::v1::StreamItem;
use switchboard_store::{
    ActorState, ArchiveQuery, ArchiveScan, ArchiveWindow, Archived, Batch, ContactField,
    CustomerRecord, Fence, Loaded, Message as StoredMessage, Pending, Result as StoreResult, Store,
    StreamEntry,
};

pub const TENANT: &str = "acme";
pub const GROUP: GroupId = GroupId(1);
pub const AGENT: AgentId = AgentId(1);
/// Far longer than any step takes on a loaded machine; a wait that runs out fails the test.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A transport with each direction cuttable: a cut envelope is dropped and counted, as if its
/// sender had crashed before delivering it. Counts what it passes on, too.
#[derive(Default)]
pub struct Cuttable<T> {
    pub inner: T,
    pub cut_to_router: AtomicBool,
    pub cut_to_conversation: AtomicBool,
    /// Cuts the router's envelopes to agent actors.
    pub cut_to_agent: AtomicBool,
    /// Cuts the router's messages to agent actors but lets its acknowledgements pass (so an
    /// acknowledgement overtakes the message the router sent before it).
    pub cut_messages_to_agent: AtomicBool,
    pub dropped: AtomicU64,
    pub passed: AtomicU64,
}

impl<T> Cuttable<T> {
    pub fn new(inner: T) -> Self {
        Cuttable {
            inner,
            cut_to_router: AtomicBool::new(false),
            cut_to_conversation: AtomicBool::new(false),
            cut_to_agent: AtomicBool::new(false),
            cut_messages_to_agent: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            passed: AtomicU64::new(0),
        }
    }

    fn pass(&self, cut: &AtomicBool) -> bool {
        if cut.load(Ordering::SeqCst) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
            false
        } else {
            self.passed.fetch_add(1, Ordering::SeqCst);
            true
        }
    }
}

impl<T: Transport> Transport for Cuttable<T> {
    fn to_router(&self, tenant: &str, envelope: Envelope<ToRouter>) {
        if self.pass(&self.cut_to_router) {
            self.inner.to_router(tenant, envelope);
        }
    }

    fn to_conversation(&self, tenant: &str, envelope: Envelope<ToConversation>) {
        if self.pass(&self.cut_to_conversation) {
            self.inner.to_conversation(tenant, envelope);
        }
    }

    fn to_agent(&self, tenant: &str, envelope: AgentEnvelope<ToAgent>) {
        let message = matches!(envelope.body, switchboard_core::mesh::Body::Message { .. });
        let cut = if message && self.cut_messages_to_agent.load(Ordering::SeqCst) {
            &self.cut_messages_to_agent
        } else {
            &self.cut_to_agent
        };
        if self.pass(cut) {
            self.inner.to_agent(tenant, envelope);
        }
    }

    /// Cut with the conversations' direction to the router (`cut_to_router`).
    fn to_router_from_agent(&self, tenant: &str, envelope: AgentEnvelope<FromAgent>) {
        if self.pass(&self.cut_to_router) {
            self.inner.to_router_from_agent(tenant, envelope);
        }
    }

    /// Cut with the router's envelopes to agent actors (`cut_to_agent`).
    fn desk_entry(&self, tenant: &str, agent: AgentId, seq: u64, item: &StreamItem) {
        if self.pass(&self.cut_to_agent) {
            self.inner.desk_entry(tenant, agent, seq, item);
        }
    }

    /// Early through `inner` unless its direction is cut: then it is handed back, and cut
    /// once durable like any other.
    fn early(&self, tenant: &str, generation: u64, wire: Wire) -> Option<Wire> {
        let cut = match &wire {
            Wire::ToRouter(_) | Wire::FromAgent(_) => &self.cut_to_router,
            Wire::ToConversation(_) => &self.cut_to_conversation,
            Wire::ToAgent(_) if self.cut_messages_to_agent.load(Ordering::SeqCst) => {
                &self.cut_messages_to_agent
            }
            Wire::ToAgent(_) | Wire::DeskEntry(_) => &self.cut_to_agent,
        };
        if cut.load(Ordering::SeqCst) {
            return Some(wire);
        }
        let kept = self.inner.early(tenant, generation, wire);
        if kept.is_none() {
            self.passed.fetch_add(1, Ordering::SeqCst);
        }
        kept
    }
}

/// The tenant `create` names, stored as the admin API stores it, with group "sales"
/// (auto-accept; group number 1) and agent "ann" (number 1, capacity 1) in it, signed out:
/// what a node's `Meshes` loads.
pub async fn store_tenant(
    store: &Arc<dyn Store>,
    create: switchboard_proto::v1::CreateTenantRequest,
) {
    use switchboard_node::hub::Hub;
    use switchboard_node::registry::{Options, Registry};
    use switchboard_proto::internal::v1::command::Op;
    use switchboard_proto::v1;

    let tenant = create.tenant_id.clone();
    let registry = Registry::load(store.clone(), Hub::default(), Options::default()).await.unwrap();
    registry.create_tenant(create).await.unwrap();
    let group = format!("tenants/{tenant}/groups/sales");
    let policy =
        v1::RoutingPolicy { offer_mode: v1::OfferMode::AutoAccept as i32, ..Default::default() };
    let put_group =
        v1::PutGroupRequest { name: group.clone(), policy: Some(policy), ..Default::default() };
    registry.command(&tenant, Op::PutGroup(put_group), "").await.unwrap();
    let put_agent = v1::PutAgentRequest {
        name: format!("tenants/{tenant}/agents/ann"),
        nickname: "Ann".into(),
        capacity: 1,
        groups: vec![group],
        ..Default::default()
    };
    registry.command(&tenant, Op::PutAgent(put_agent), "").await.unwrap();
    registry.shutdown().await;
}

/// One group (auto-accept) and these agents (id, capacity) in it, signed out: the engine the
/// router starts from, and the configuration every actor reads.
pub fn tenant(agents: &[(AgentId, u32)]) -> (Engine, Arc<TenantConfig>) {
    tenant_with(agents, OfferMode::AutoAccept)
}

/// The same with the group's offer mode.
pub fn tenant_with(agents: &[(AgentId, u32)], offer: OfferMode) -> (Engine, Arc<TenantConfig>) {
    let settings = TenantSettings { default_group: Some(GROUP), ..Default::default() };
    let mut engine = Engine::new(settings).unwrap();
    let t0 = Timestamp(0);
    let policy = GroupPolicy { offer, ..Default::default() };
    engine.upsert_group(t0, GROUP, GroupSettings { policy, ..Default::default() }).unwrap();
    for (id, capacity) in agents {
        let agent = AgentSettings {
            nickname: format!("agent{}", id.0),
            capacity: *capacity,
            groups: vec![GROUP],
            ..Default::default()
        };
        engine.upsert_agent(t0, *id, agent).unwrap();
    }
    let ids: Vec<AgentId> = agents.iter().map(|(id, _)| *id).collect();
    let config = Arc::new(TenantConfig::of(&engine, &[GROUP], &ids));
    (engine, config)
}

/// Fast retransmission, the given idle time, an hour's linger.
pub fn options(idle: Duration) -> MeshOptions {
    MeshOptions {
        retransmit: Duration::from_millis(50),
        idle,
        linger: Duration::from_secs(3600),
        agent_actors: false,
    }
}

pub fn message(customer: u64, conversation: u64, text: &str) -> CustomerMessage {
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
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    // A check that never answers fails the wait too, naming it, instead of hanging the test.
    while !tokio::time::timeout_at(deadline, check())
        .await
        .unwrap_or_else(|_| panic!("gave up waiting for (its last check still running): {what}"))
    {
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The state and agent of a customer's open conversation, as its actor holds it.
pub async fn open(mesh: &Mesh, customer: u64) -> Option<(State, Option<AgentId>)> {
    mesh.conversation(CustomerId(customer))
        .read(|side| side.conversation().map(|c| (c.state, c.agent)))
        .await
        .ok()
        .flatten()
}

/// Where the router places a conversation, and what the agent holds.
pub async fn placed(mesh: &Mesh, id: u64) -> (Option<Placement>, usize, u32) {
    mesh.router()
        .read(move |side| {
            let r = side.router();
            let agent = r.agent(AGENT).unwrap();
            (r.placement(ConversationId(id)).cloned(), agent.assigned.len(), agent.capacity)
        })
        .await
        .unwrap()
}

/// An agent's desk stream as the store holds it: (seq, item), in order, each agent event's
/// cursor set to its position as a reader is served it (a shared stream's entry is encoded
/// before the store gives it its position).
pub fn desk(store: &Arc<dyn Store>, agent: AgentId) -> Vec<(u64, StreamItem)> {
    use prost::Message as _;
    use switchboard_proto::internal::v1::stream_item::Item;
    let stream = switchboard_node::state::agent_stream(&agent.0.to_string());
    let entries = store.read_stream(TENANT, &stream, 0, 10_000).unwrap();
    entries
        .into_iter()
        .map(|e| {
            let mut item = StreamItem::decode(e.payload.as_slice()).unwrap();
            if let Some(Item::AgentEvent(event)) = &mut item.item {
                event.cursor = e.seq;
            }
            (e.seq, item)
        })
        .collect()
}

/// The desk entries in a short form: `"status online"`, `"offered 3"`, `"assigned 3 accepted"`,
/// `"released 3 declined"`, `"refused 4"`, `"customer 3 hello"` (a customer message); and
/// checks they are numbered 1, 2, 3… (a shared stream's positions: an event's cursor is
/// stamped with its position when it is served).
pub fn desk_summary(store: &Arc<dyn Store>, agent: AgentId) -> Vec<String> {
    use switchboard_proto::internal::v1::stream_item::Item;
    use switchboard_proto::v1::agent_event::Event;
    let entries = desk(store, agent);
    let numbers: Vec<u64> = entries.iter().map(|(seq, _)| *seq).collect();
    let expected: Vec<u64> = (1..=entries.len() as u64).collect();
    assert_eq!(numbers, expected, "the desk stream is gap-free from 1");
    let conversation = |name: &str| name.rsplit('/').next().unwrap_or_default().to_owned();
    entries
        .into_iter()
        .map(|(_, item)| match item.item {
            Some(Item::AgentEvent(e)) => {
                let c = conversation(&e.conversation);
                match e.event {
                    Some(Event::StatusChanged(s)) => {
                        let status = switchboard_proto::v1::AgentStatus::try_from(s.status)
                            .unwrap()
                            .as_str_name()
                            .trim_start_matches("AGENT_STATUS_")
                            .to_lowercase();
                        format!("status {status}")
                    }
                    Some(Event::Offered(_)) => format!("offered {c}"),
                    Some(Event::Assigned(a)) => format!("assigned {c} {}", a.via),
                    Some(Event::Released(r)) => format!("released {c} {}", r.reason),
                    Some(Event::CustomerMessage(m)) => format!("customer {c} {}", m.text),
                    // The unaccepted list, as derived from the router's placements.
                    Some(Event::UnacceptedAdded(_)) => format!("unaccepted +{c}"),
                    Some(Event::UnacceptedRemoved(r)) => format!("unaccepted -{c} {}", r.reason),
                    other => format!("{other:?}"),
                }
            }
            Some(Item::DeskRefusal(r)) => format!("refused {}", r.command),
            other => panic!("not a desk entry: {other:?}"),
        })
        .collect()
}

/// How many times an archived conversation was assigned.
pub fn archived_assignments(store: &Arc<dyn Store>, id: u64) -> Option<usize> {
    let row = store.archived(TENANT, id).unwrap()?;
    let c = archive::decode(&row.body).unwrap().conversation;
    Some(c.transitions.iter().filter(|t| t.to == State::Assigned).count())
}

/// How the crash tests end: conversation 11 left and 12 (of `customer`) took the agent's one
/// slot. 12 is assigned to the agent at capacity 1 and was assigned exactly once; 11 is gone
/// from the router and archived, assigned exactly once.
pub async fn eleven_left_and_twelve_took_its_slot(
    router: &Mesh,
    conversations: &Mesh,
    store: &Arc<dyn Store>,
    customer: u64,
) {
    let (placement, load, capacity) = placed(router, 12).await;
    assert!(matches!(placement, Some(Placement::Assigned { agent: AGENT, .. })));
    assert_eq!((load, capacity), (1, 1));
    assert_eq!(placed(router, 11).await.0, None);
    assert_eq!(archived_assignments(store, 11), Some(1), "11 was assigned exactly once");
    assert_eq!(assignments(conversations, customer).await, 1, "12 was assigned exactly once");
}

/// How many times a customer's open conversation was assigned, as its actor holds it.
pub async fn assignments(mesh: &Mesh, customer: u64) -> usize {
    mesh.conversation(CustomerId(customer))
        .read(|side| {
            let c = side.conversation().unwrap();
            c.transitions.iter().filter(|t| t.to == State::Assigned).count()
        })
        .await
        .unwrap()
}

/// A store that can refuse one write and hold conversation actors' loads, around a real one.
pub struct Faulty {
    pub inner: Arc<dyn Store>,
    /// Refuse the next batch that archives a conversation (a conversation actor's step that
    /// ended one), once.
    pub refuse_archive: AtomicBool,
    /// Refuse every batch that archives a conversation while set.
    pub refuse_archives: AtomicBool,
    pub refused: AtomicU64,
    /// Loads of conversation actors' rows so far.
    pub conversation_loads: AtomicU64,
    /// Writes of the router's row so far (begun, whether or not held).
    pub router_writes: AtomicU64,
    /// While `false`, writes of the router's row wait (see [`Faulty::hold_router_writes`]).
    router_gate: tokio::sync::watch::Sender<bool>,
    /// Lookups of an actor's stored response by request id.
    pub response_lookups: AtomicU64,
    /// Writes of an agent actor's row, counted; they wait while its gate is `false`.
    pub agent_writes: AtomicU64,
    agent_gate: tokio::sync::watch::Sender<bool>,
    held: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
    /// Dooms the next batch of an actor of this kind (once; a conversation actor's batch is
    /// one with its row or transcript rows): it goes to the writer under
    /// [`DOOMED`], a fence the store refuses, so the writer refuses it as it would a batch of
    /// a shard that moved, and raises the tenant's generation.
    pub doom: std::sync::Mutex<Option<&'static str>>,
    /// The store vouches for its writer's order (`Store::generation` is the inner store's,
    /// so actors send early): set by [`Faulty::arm_doom`], for tests that refuse and hold
    /// nothing on their own.
    vouches: AtomicBool,
    /// Once [`Faulty::pause_writer`] was called: every write goes through this queue, in
    /// order, to the inner store, as a node's writer takes its jobs; it waits there while
    /// `writer_gate` is `false`, and is written even if its caller is gone (a killed actor's
    /// batch still lands, as on a node whose writer outlives the actor).
    fifo: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<Queued>>>,
    writer_gate: tokio::sync::watch::Sender<bool>,
}

/// A write in [`Faulty`]'s queue, and where its outcome goes.
type Queued = (Batch, tokio::sync::oneshot::Sender<StoreResult<Vec<u64>>>);

/// The fence a doomed batch carries ([`Faulty::doom`]); the test raises the
/// store's fence of its shard first ([`Faulty::arm_doom`]).
pub const DOOMED: Fence = Fence { shard: 4_000_000, epoch: 1 };

impl Faulty {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Faulty {
            inner,
            refuse_archive: AtomicBool::new(false),
            refuse_archives: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            conversation_loads: AtomicU64::new(0),
            router_writes: AtomicU64::new(0),
            router_gate: tokio::sync::watch::channel(true).0,
            agent_writes: AtomicU64::new(0),
            response_lookups: AtomicU64::new(0),
            agent_gate: tokio::sync::watch::channel(true).0,
            held: std::sync::Mutex::new(false),
            opened: std::sync::Condvar::new(),
            doom: std::sync::Mutex::new(None),
            vouches: AtomicBool::new(false),
            fifo: std::sync::Mutex::new(None),
            writer_gate: tokio::sync::watch::channel(true).0,
        }
    }

    /// Every write from now on waits, in order, until [`Faulty::resume_writer`], as on a node
    /// whose writer is busy: its caller has its `Pending`, the batch is queued.
    pub fn pause_writer(&self) {
        self.writer_gate.send_replace(false);
        let mut fifo = self.fifo.lock().unwrap();
        if fifo.is_none() {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Queued>();
            let (inner, mut gate) = (self.inner.clone(), self.writer_gate.subscribe());
            tokio::spawn(async move {
                while let Some((batch, answer)) = rx.recv().await {
                    let _ = gate.wait_for(|open| *open).await;
                    // Handed to the inner writer in order; awaited aside, so the next goes on.
                    let written = inner.append_assigned(batch);
                    tokio::spawn(async move {
                        let _ = answer.send(written.await);
                    });
                }
            });
            *fifo = Some(tx);
        }
    }

    pub fn resume_writer(&self) {
        self.writer_gate.send_replace(true);
    }

    /// Lets [`Faulty::doom`] work: the store refuses [`DOOMED`] from now on,
    /// and vouches for its writer's order.
    pub async fn arm_doom(&self) {
        let above = Fence { epoch: DOOMED.epoch + 1, ..DOOMED };
        self.inner.raise_fence(above).await.unwrap();
        self.vouches.store(true, Ordering::SeqCst);
    }

    /// Conversation actors' loads block until [`Faulty::release`].
    pub fn hold(&self) {
        *self.held.lock().unwrap() = true;
    }

    pub fn release(&self) {
        *self.held.lock().unwrap() = false;
        self.opened.notify_all();
    }

    /// Writes of the router's row wait (they are not durable) until
    /// [`Faulty::release_router_writes`].
    pub fn hold_router_writes(&self) {
        self.router_gate.send_replace(false);
    }

    pub fn release_router_writes(&self) {
        self.router_gate.send_replace(true);
    }

    /// Agent actors' writes wait from now until [`Faulty::release_agent_writes`].
    pub fn hold_agent_writes(&self) {
        self.agent_gate.send_replace(false);
    }

    pub fn release_agent_writes(&self) {
        self.agent_gate.send_replace(true);
    }
}

impl Store for Faulty {
    fn append(&self, batch: Batch) -> Pending {
        let assigned = self.append_assigned(batch);
        Box::pin(async move { assigned.await.map(|_| ()) })
    }
    /// The faults apply to both ways of writing (actors write with `append_assigned`).
    fn append_assigned(&self, mut batch: Batch) -> switchboard_store::Assigned {
        let mut doom = self.doom.lock().unwrap();
        // A conversation actor's message step may leave its row out: its transcript rows
        // (only conversation actors write them) tell its batch.
        let of = |kind: &str| {
            batch.actors.iter().any(|a| a.kind == kind)
                || (kind == "conversation" && !batch.messages.is_empty())
        };
        if doom.take_if(|kind| of(kind)).is_some() {
            batch.fence = DOOMED;
        }
        drop(doom);
        if !batch.archive.is_empty()
            && (self.refuse_archives.load(Ordering::SeqCst)
                || self.refuse_archive.swap(false, Ordering::SeqCst))
        {
            self.refused.fetch_add(1, Ordering::SeqCst);
            let e = switchboard_store::Error::from(std::io::Error::other("disk full"));
            return Box::pin(std::future::ready(Err(e)));
        }
        if let Some(fifo) = self.fifo.lock().unwrap().as_ref() {
            if batch.actors.iter().any(|a| a.kind == "router") {
                self.router_writes.fetch_add(1, Ordering::SeqCst);
            }
            let (answer, written) = tokio::sync::oneshot::channel();
            let _ = fifo.send((batch, answer));
            return Box::pin(async move {
                written.await.unwrap_or_else(|_| {
                    Err(switchboard_store::Error::from(std::io::Error::other("queue gone")))
                })
            });
        }
        let gated = [
            ("router", &self.router_writes, &self.router_gate),
            ("agent", &self.agent_writes, &self.agent_gate),
        ];
        for (kind, writes, gate) in gated {
            if batch.actors.iter().any(|a| a.kind == kind) {
                writes.fetch_add(1, Ordering::SeqCst);
                let mut gate = gate.subscribe();
                let inner = self.inner.clone();
                return Box::pin(async move {
                    let _ = gate.wait_for(|open| *open).await;
                    inner.append_assigned(batch).await
                });
            }
        }
        self.inner.append_assigned(batch)
    }
    fn snapshot(&self, tenant: &str, fence: Fence, seq: u64, bytes: Vec<u8>) -> Pending {
        self.inner.snapshot(tenant, fence, seq, bytes)
    }
    fn raise_fence(&self, fence: Fence) -> Pending {
        self.inner.raise_fence(fence)
    }
    fn trim_stream(&self, tenant: &str, stream: &str, keep_last: usize) -> Pending {
        self.inner.trim_stream(tenant, stream, keep_last)
    }
    fn tenants(&self) -> StoreResult<Vec<String>> {
        self.inner.tenants()
    }
    fn reserve(&self, tenant: &str, counter: &str, count: u64) -> StoreResult<u64> {
        self.inner.reserve(tenant, counter, count)
    }
    fn bind_customer(&self, tenant: &str, name: &str, number: u64) -> StoreResult<u64> {
        self.inner.bind_customer(tenant, name, number)
    }
    fn customer_number(&self, tenant: &str, name: &str) -> StoreResult<Option<u64>> {
        self.inner.customer_number(tenant, name)
    }
    fn customer_name(&self, tenant: &str, number: u64) -> StoreResult<Option<String>> {
        self.inner.customer_name(tenant, number)
    }
    fn tenant_exists(&self, tenant: &str) -> StoreResult<bool> {
        self.inner.tenant_exists(tenant)
    }
    fn load(&self, tenant: &str) -> StoreResult<Loaded> {
        self.inner.load(tenant)
    }
    fn read_stream(
        &self,
        tenant: &str,
        stream: &str,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        self.inner.read_stream(tenant, stream, after_seq, limit)
    }
    fn last_stream_seq(&self, tenant: &str, stream: &str) -> StoreResult<Option<u64>> {
        self.inner.last_stream_seq(tenant, stream)
    }
    fn messages(
        &self,
        tenant: &str,
        conversation: u64,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.inner.messages(tenant, conversation, after_seq, limit)
    }
    fn request_retention(&self) -> Duration {
        self.inner.request_retention()
    }
    fn stats(&self) -> switchboard_store::Stats {
        self.inner.stats()
    }
    /// It refuses and holds batches on its own (not through the writer): nothing goes early,
    /// unless it only dooms batches (through the writer).
    fn generation(&self, tenant: &str) -> Option<u64> {
        let vouches = self.vouches.load(Ordering::SeqCst);
        if vouches { self.inner.generation(tenant) } else { None }
    }
    fn find_response(&self, tenant: &str, request_id: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.find_response(tenant, request_id)
    }
    fn actor_response(&self, tenant: &str, request_id: &str) -> StoreResult<Option<Vec<u8>>> {
        self.response_lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.actor_response(tenant, request_id)
    }
    fn conversation_customer(&self, tenant: &str, conversation: u64) -> StoreResult<Option<u64>> {
        self.inner.conversation_customer(tenant, conversation)
    }
    fn archived(&self, tenant: &str, conversation: u64) -> StoreResult<Option<Archived>> {
        self.inner.archived(tenant, conversation)
    }
    fn list_archived(&self, tenant: &str, query: &ArchiveQuery) -> StoreResult<Vec<Archived>> {
        self.inner.list_archived(tenant, query)
    }
    fn count_archived(&self, tenant: &str) -> StoreResult<u64> {
        self.inner.count_archived(tenant)
    }
    fn customer(&self, tenant: &str, customer: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.customer(tenant, customer)
    }
    fn actor(&self, tenant: &str, kind: &str, key: &str) -> StoreResult<Option<ActorState>> {
        if kind == "conversation" {
            self.conversation_loads.fetch_add(1, Ordering::SeqCst);
            let mut held = self.held.lock().unwrap();
            while *held {
                held = self.opened.wait(held).unwrap();
            }
        }
        self.inner.actor(tenant, kind, key)
    }
    fn list_actors(
        &self,
        tenant: &str,
        kind: &str,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<ActorState>> {
        self.inner.list_actors(tenant, kind, after, limit)
    }
    fn actor_keys(
        &self,
        tenant: &str,
        kind: &str,
        after: &str,
        until: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        self.inner.actor_keys(tenant, kind, after, until, limit)
    }
    fn actor_tenants(&self, after: &str, limit: usize) -> StoreResult<Vec<String>> {
        self.inner.actor_tenants(after, limit)
    }
    fn scan_archived(&self, tenant: &str, scan: &ArchiveScan) -> StoreResult<ArchiveWindow> {
        self.inner.scan_archived(tenant, scan)
    }
    fn scan_customers(
        &self,
        tenant: &str,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<CustomerRecord>> {
        self.inner.scan_customers(tenant, after, limit)
    }
    fn find_customers(
        &self,
        tenant: &str,
        field: ContactField,
        value: &str,
        after: &str,
        limit: usize,
    ) -> StoreResult<Vec<CustomerRecord>> {
        self.inner.find_customers(tenant, field, value, after, limit)
    }
    fn retain(&self, tenant: &str, fence: Fence, now_ms: u64, streams_before_ms: u64) -> Pending {
        self.inner.retain(tenant, fence, now_ms, streams_before_ms)
    }
}

/// A shared stream (`outbox`, `events`) as the store holds it: (position, item), the cursor
/// stamped with the position as its readers serve it; checks the positions run 1, 2, 3….
pub fn shared(store: &Arc<dyn Store>, stream: &str) -> Vec<(u64, StreamItem)> {
    use prost::Message as _;
    use switchboard_proto::internal::v1::stream_item::Item;
    let entries = store.read_stream(TENANT, stream, 0, 10_000).unwrap();
    let positions: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=entries.len() as u64).collect();
    assert_eq!(positions, expected, "{stream} is gap-free from 1");
    entries
        .into_iter()
        .map(|e| {
            let mut item = StreamItem::decode(e.payload.as_slice()).unwrap();
            match &mut item.item {
                Some(Item::Outbound(m)) => m.cursor = e.seq,
                Some(Item::Event(ev)) => ev.cursor = e.seq,
                other => panic!("{stream} holds {other:?}"),
            }
            (e.seq, item)
        })
        .collect()
}

/// The `outbox` in a short form, one entry each: `"{conversation} {customer} {channel}
/// {kind} {agent}: {text}"` with resource names, the kind the reply kind's name (`agent`
/// for an agent's message).
pub fn outbox_summary(store: &Arc<dyn Store>) -> Vec<String> {
    use switchboard_proto::internal::v1::stream_item::Item;
    use switchboard_proto::v1 as pb;
    shared(store, "outbox")
        .into_iter()
        .map(|(_, item)| {
            let Some(Item::Outbound(m)) = item.item else { panic!("not a message: {item:?}") };
            let kind = match m.reply_kind() {
                pb::ReplyKind::Unspecified => "agent".to_owned(),
                k => k.as_str_name().trim_start_matches("REPLY_KIND_").to_lowercase(),
            };
            let channel = m.channel().as_str_name().trim_start_matches("CHANNEL_").to_lowercase();
            format!("{} {} {channel} {kind} {}: {}", m.conversation, m.customer, m.agent, m.text)
        })
        .collect()
}

/// The `events` stream in a short form: `"{type} {conversation number} {agent number}"`,
/// leaving out what the event does not name.
pub fn events_summary(store: &Arc<dyn Store>) -> Vec<String> {
    use switchboard_proto::internal::v1::stream_item::Item;
    shared(store, "events")
        .into_iter()
        .map(|(_, item)| {
            let Some(Item::Event(e)) = item.item else { panic!("not an event: {item:?}") };
            let number = e.conversation.rsplit('/').next().unwrap_or_default().to_owned();
            let agent = e.agent.rsplit('/').next().unwrap_or_default().to_owned();
            [e.r#type.as_str(), &number, &agent]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// A conversation's transcript as the store holds it, `"{sender}: {text}"`; checks it is
/// numbered 1, 2, 3….
pub fn transcript(store: &Arc<dyn Store>, conversation: u64) -> Vec<String> {
    let rows = store.messages(TENANT, conversation, 0, 10_000).unwrap();
    let numbers: Vec<u64> = rows.iter().map(|m| m.seq).collect();
    let expected: Vec<u64> = (1..=rows.len() as u64).collect();
    assert_eq!(numbers, expected, "the transcript is numbered from 1");
    rows.into_iter().map(|m| format!("{}: {}", m.sender, m.text)).collect()
}
