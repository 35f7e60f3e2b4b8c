//! Conversation, agent and router actors around the core's cross-actor protocol
//! ([`switchboard_core::mesh`], issue 12 step 2), beside the tenant actor, not serving the
//! public API yet. A cluster node runs one [`Mesh`] per tenant ([`meshes::Meshes`], on
//! demand); a clustered mesh ([`Mesh::clustered`]) runs each actor only while this node owns
//! its key's shard, writes under that shard's fence, and stops it when the shard moves.
//!
//! - [`router::RouterActor`]: one per tenant, around a [`RouterSide`](switchboard_core::mesh::RouterSide)
//!   (queues, agents' status, capacity, offers, affinity).
//! - [`conversation::ConversationActor`]: one per tenant and customer with an open
//!   conversation (or links the router has not acknowledged yet), around a
//!   [`ConversationSide`](switchboard_core::mesh::ConversationSide).
//! - [`agent::AgentActor`]: one per tenant and agent, around an
//!   [`AgentSide`](switchboard_core::mesh::AgentSide) (status as set, holdings, the router's
//!   answers), when the mesh runs agent actors ([`MeshOptions::agent_actors`]: the router
//!   side then has agent links, and the router and conversation actors write the agents'
//!   desk streams, `effects::Rows::desk`).
//! - [`transport`]: how envelopes travel between them, behind the small [`Transport`] trait;
//!   [`transport::InProcess`] delivers inside the node, [`grpc::GrpcTransport`] between nodes
//!   (to the owner of the actor key's shard, [`placement`]).
//!
//! **Each step, in this order:** the side changes its state and queues messages in its
//! outbox; the shell writes the side's state (snapshot encoding, outbox and inbox numbers
//! included) as one [`ActorState`] row in a store batch, with the conversations that ended
//! in it (archive rows) and its effects as `outbox`/`events` entries and transcript rows
//! (`effects`), and awaits durability (the store's group commit shares the sync
//! with every other actor's write); only then it calls `outgoing()` and hands the envelopes
//! to the transport, and answers the caller. A crash before the write loses the step (its
//! input was not acknowledged and comes again); a crash after it keeps it, and the next
//! incarnation resends everything unacknowledged at once.
//!
//! **Activation** is on the first message: the [`Mesh`] finds the live actor or spawns one,
//! which loads its row from the store (a conversation actor without one starts from the
//! customer's stored record, if any) and starts a new incarnation (epoch = stored + 1).
//! **Passivation**: a conversation actor whose conversation ended and whose links are fully
//! acknowledged stores the customer's record, deletes its row (one batch) and stops; any actor
//! idle for [`MeshOptions::idle`] with nothing unacknowledged and no deadline stops and keeps
//! its row. **Timers**: one one-shot wake-up per actor (`Timers`), at its side's next
//! deadline, its next resend while something it sent is unacknowledged, or the end of its
//! idle time; an actor at rest costs no wake-up until then.
//!
//! **Supervision**: each incarnation has a supervisor task watching it. An actor that stops
//! for any other reason than a passivation or a stop the mesh asked for ([`Mesh::stop_all`],
//! its shard moving away) — a failed write, a panic, a kill — is activated again from its row
//! after a backoff (100 ms, doubling to 10 s, back to 100 ms once an incarnation has run for
//! 10 s), while its key's shard is still served here (always, on a single node), so its
//! deadlines and retransmissions run without waiting for a message. A message that comes
//! first activates it at once. The directory clears a slot whose activation failed or was
//! cancelled (its caller gave up), so later callers never wait on an activation nobody runs.

pub mod agent;
pub mod config;
pub mod conversation;
pub(crate) mod effects;
pub mod grpc;
pub mod meshes;
pub mod numbers;
pub mod placement;
pub mod recovery;
pub mod router;
pub mod routing;
pub mod transport;

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, ActorStatus, RpcReplyPort};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard_core::config::{AgentSettings, GroupSettings, TenantSettings};
use switchboard_core::router::Router;
use switchboard_core::session::Config;
use switchboard_core::{AgentId, CustomerId, Effect, Engine, GroupId, Timestamp};
use switchboard_store::{ActorState, Batch, Fence, Store};
use tokio::sync::{Notify, mpsc};
use tracing::{info, warn};

use self::agent::{AgentActor, AgentArgs, AgentHandle};
use self::conversation::{ConversationActor, ConversationArgs, ConversationHandle};
use self::placement::ActorKey;
use self::router::{RouterActor, RouterArgs, RouterHandle};
pub use self::transport::Transport;
use crate::cluster::{Ownership, Route};
use crate::error::{Error, Result};

/// The `kind` of a router actor's row and of the `switchboard_actors` gauge.
pub const ROUTER: &str = "router";
/// The `kind` of a conversation actor's row and of the `switchboard_actors` gauge.
pub const CONVERSATION: &str = "conversation";
/// The `kind` of an agent actor's row and of the `switchboard_actors` gauge.
pub const AGENT: &str = "agent";
/// The `kind` of the router actor's tombstones (`RouterSide::take_tombstones`), one row per
/// conversation that left within the router's `linger`, keyed by its number.
pub const TOMBSTONE: &str = "tombstone";

/// Leading byte of an actor row's body: a new layout gets a new number. Rows are written
/// with fields by position ([`Body`]: no field names, a conversation side's row about a
/// seventh of its named size, the router's under half); rows of [`NAMED`] still load. A
/// field added to a side's encoding goes last (a row written before it reads its default),
/// and only the last field may be left unwritten (`RouterSide`'s tombstones).
const VERSION: u8 = 2;
/// The first layout: [`Body`] with fields by name.
const NAMED: u8 = 1;
/// [`VERSION`]'s layout for a router checkpoint that log rows follow (`router.rs`): a node of
/// an earlier version, which would read the checkpoint without its log, refuses it instead.
const JOURNALED: u8 = 3;

/// The buffer an actor's row is encoded into starts this large (see [`encode_with`]).
const ROW_CAPACITY: usize = 512;

/// The first wait before an actor that stopped abnormally is activated again; it doubles
/// with every restart up to [`RESTART_MAX`].
const RESTART_MIN: Duration = Duration::from_millis(100);
/// The longest wait between restarts; an incarnation that ran this long resets the backoff.
const RESTART_MAX: Duration = Duration::from_secs(10);

/// The tenant's configuration as the sides read it (read-only; the mesh holds one `Arc` and
/// swaps it for a newer one, [`Mesh::refresh`]; each step reads the current one).
#[derive(Debug, Clone, Default)]
pub struct TenantConfig {
    pub settings: TenantSettings,
    pub groups: FxHashMap<GroupId, GroupSettings>,
    pub agents: FxHashMap<AgentId, AgentSettings>,
    /// The agents' ids (the names their streams carry, `agent/{id}`); an agent missing here
    /// is named by its number.
    pub agent_names: FxHashMap<AgentId, String>,
    /// The groups' ids (the names their events carry); a group missing here is named by its
    /// number.
    pub group_names: FxHashMap<GroupId, String>,
    /// The tenant was created with `TENANT_ROUTING_ACTORS`: its public calls are served by
    /// these actors, not by its tenant actor (fixed at creation).
    pub actor_routing: bool,
    /// The agents that are supervisors (the node keeps the flag beside the engine).
    pub supervisors: rustc_hash::FxHashSet<AgentId>,
    /// `agent_names` and `group_names` the other way round ([`TenantConfig::named`]): every
    /// agent call finds its agent by id, and a scan of the names cost O(agents) per call.
    agent_ids: FxHashMap<String, AgentId>,
    group_ids: FxHashMap<String, GroupId>,
}

impl TenantConfig {
    /// The configuration an engine holds, for the groups and agents named.
    pub fn of(engine: &Engine, groups: &[GroupId], agents: &[AgentId]) -> Self {
        TenantConfig {
            settings: engine.settings().clone(),
            groups: groups
                .iter()
                .filter_map(|g| engine.group_settings(*g).map(|s| (*g, s.clone())))
                .collect(),
            agents: agents
                .iter()
                .filter_map(|a| engine.agent_settings(*a).map(|s| (*a, s.clone())))
                .collect(),
            agent_names: FxHashMap::default(),
            group_names: FxHashMap::default(),
            actor_routing: false,
            supervisors: Default::default(),
            agent_ids: FxHashMap::default(),
            group_ids: FxHashMap::default(),
        }
    }

    /// Names the agents and groups by their ids, and indexes by id those the configuration
    /// has (a name of one it lacks finds nothing, as before).
    pub fn named(
        mut self,
        agents: FxHashMap<AgentId, String>,
        groups: FxHashMap<GroupId, String>,
    ) -> Self {
        let live_agents = agents.iter().filter(|(a, _)| self.agents.contains_key(a));
        self.agent_ids = live_agents.map(|(a, name)| (name.clone(), *a)).collect();
        let live_groups = groups.iter().filter(|(g, _)| self.groups.contains_key(g));
        self.group_ids = live_groups.map(|(g, name)| (name.clone(), *g)).collect();
        self.agent_names = agents;
        self.group_names = groups;
        self
    }

    /// The agent's id, for its stream's name.
    pub fn agent_name(&self, agent: AgentId) -> std::borrow::Cow<'_, str> {
        // Borrowed: most callers build a longer name from it.
        match self.agent_names.get(&agent) {
            Some(name) => name.as_str().into(),
            None => agent.0.to_string().into(),
        }
    }

    /// The agent's desk stream (`state::agent_stream` of its id): where the router and
    /// conversation actors write its entries, and where another node's are published.
    pub fn desk_stream(&self, agent: AgentId) -> String {
        crate::state::agent_stream(&self.agent_name(agent))
    }

    /// The agent whose id (the name in `tenants/{t}/agents/{id}`) is `id`, if the
    /// configuration has it.
    pub fn agent_by_id(&self, id: &str) -> Option<AgentId> {
        self.agent_ids.get(id).copied().filter(|a| self.agents.contains_key(a))
    }

    /// The group whose id (the name in `tenants/{t}/groups/{g}`) is `id`, if the
    /// configuration has it.
    pub fn group_by_id(&self, id: &str) -> Option<GroupId> {
        self.group_ids.get(id).copied().filter(|g| self.groups.contains_key(g))
    }

    /// A group named by a reference field (`tenants/{t}/groups/{g}`), as
    /// `TenantState::group_ref` finds it, in this configuration.
    pub fn group_ref(&self, tenant: &str, field: &str, name: &str) -> Result<GroupId> {
        let id = crate::names::child_id_in(field, name, "groups", tenant)?;
        self.group_by_id(id).ok_or_else(|| {
            Error::NotFound(format!("{field}: skill group {id:?} of tenant {tenant}"))
        })
    }

    /// An agent named by a reference field (`tenants/{t}/agents/{a}`), as
    /// `TenantState::agent_ref` finds it, in this configuration.
    pub fn agent_ref(&self, tenant: &str, field: &str, name: &str) -> Result<AgentId> {
        let id = crate::names::child_id_in(field, name, "agents", tenant)?;
        self.agent_by_id(id)
            .ok_or_else(|| Error::NotFound(format!("{field}: agent {id:?} of tenant {tenant}")))
    }

    /// The group's id, for its resource name.
    pub fn group_name(&self, group: GroupId) -> std::borrow::Cow<'_, str> {
        match self.group_names.get(&group) {
            Some(name) => name.as_str().into(),
            None => group.0.to_string().into(),
        }
    }

    pub fn cfg(&self) -> Config<'_> {
        Config { settings: &self.settings, groups: &self.groups, agents: &self.agents }
    }
}

/// Timings of the actors.
#[derive(Debug, Clone, Copy)]
pub struct MeshOptions {
    /// How often an actor resends what is unacknowledged.
    pub retransmit: Duration,
    /// An actor with nothing unacknowledged and no deadline stops after this long without a
    /// message.
    pub idle: Duration,
    /// How long the router keeps a left conversation's link (see `RouterSide::new`); far
    /// longer than any envelope takes and than `retransmit`.
    pub linger: Duration,
    /// Agent actors run: the router side is built `with_agent_links()`, so its decisions
    /// about an agent go to the agent's actor on its link and agent commands come from
    /// there ([`Mesh::agent`]). Off: agent commands are calls on the router's handle only.
    pub agent_actors: bool,
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            retransmit: Duration::from_secs(1),
            idle: Duration::from_secs(300),
            linger: Duration::from_secs(3600),
            agent_actors: false,
        }
    }
}

/// What a step did that others may want to hear, once it is durable: the effects of the
/// core (replies, agent notes, events) by the actor that produced them. The actors also
/// write replies, events and transcript rows durably in the step's own batch
/// (`effects`); this is every effect, for tests and metrics.
#[derive(Debug, Clone)]
pub struct Heard {
    /// `None`: the router.
    pub customer: Option<CustomerId>,
    pub effects: Vec<Effect>,
}

/// Everything the actors of one tenant on this node share.
#[allow(missing_debug_implementations)] // a store and a transport: nothing worth printing
pub struct MeshArgs {
    pub tenant: String,
    pub store: Arc<dyn Store>,
    /// The shard and epoch every write carries on a single node (a clustered mesh,
    /// [`Mesh::clustered`], writes each actor under its own key's shard instead).
    pub fence: Fence,
    pub config: Arc<TenantConfig>,
    /// The router a tenant's router actor starts from when the store has no row for it.
    pub router: Router,
    pub transport: Arc<dyn Transport>,
    pub options: MeshOptions,
    /// Where effects go once durable, if anywhere.
    pub heard: Option<mpsc::UnboundedSender<Heard>>,
    /// The node's live fan-out: actors publish their durable stream entries there (desk
    /// entries written on other nodes too, `publish_desk_entry`).
    pub hub: Option<crate::hub::Hub>,
}

/// The conversation and router actors of one tenant on this node: finds the live actor of a
/// key or activates it. Cheap to clone.
#[derive(Clone)]
pub struct Mesh(Arc<Inner>);

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh").field("tenant", &self.0.tenant).finish()
    }
}

pub(crate) struct Inner {
    pub(crate) tenant: String,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) fence: Fence,
    /// Swapped whole by [`Mesh::refresh`]; read (cloned) once per step.
    config: std::sync::RwLock<Arc<TenantConfig>>,
    /// The configuration version `config` is at ([`config`]): the log position it was
    /// loaded at.
    version: AtomicU64,
    /// One reload of this tenant's configuration at a time: callers behind it find it done.
    reload: tokio::sync::Mutex<()>,
    pub(crate) router: Router,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) options: MeshOptions,
    pub(crate) heard: Option<mpsc::UnboundedSender<Heard>>,
    pub(crate) hub: Option<crate::hub::Hub>,
    /// In a cluster: where each actor key lives, and the fence its writes carry.
    pub(crate) ownership: Option<Arc<Ownership>>,
    /// Envelopes from other nodes accepted and not yet handled (`grpc::ActorMeshGrpc`'s bound).
    pub(crate) inbound: Arc<AtomicUsize>,
    /// Timer wake-ups the actors handled (`Timers`).
    wakes: AtomicU64,
    routers: Directory<(), router::RouterMsg>,
    conversations: Directory<CustomerId, conversation::ConversationMsg>,
    agents: Directory<AgentId, agent::AgentMsg>,
    /// Customers whose number a call on this node bound (`Numbers::customer_noting`), with
    /// the fence of their key's shard then and their name, until their actor's first
    /// activation here: nothing was ever stored under that number, so it skips its reads.
    new_customers: Mutex<FxHashMap<CustomerId, (Fence, Arc<str>)>>,
    /// The tenant's events counter by event type, for its actors' steps on this node.
    events: Mutex<crate::metrics::EventCounters>,
    pub(crate) counters: StepCounters,
}

/// Handles of the counters every actor step adds to, taken once per mesh: `counter!` builds
/// its key and searches the recorder's registry on each call, and the writes alone were
/// about one such call per command (with the events counter, 1.3 lookups per command at
/// 200 arrivals/s, `perf probe` on the registry's `get_or_create_counter`).
#[derive(Debug)]
pub(crate) struct StepCounters {
    /// `switchboard_actor_writes_total` of each kind.
    pub(crate) router_writes: metrics::Counter,
    pub(crate) conversation_writes: metrics::Counter,
    pub(crate) agent_writes: metrics::Counter,
    /// `switchboard_actor_rows_kept_total{kind="conversation"}`.
    pub(crate) conversation_rows_kept: metrics::Counter,
}

impl StepCounters {
    fn new() -> Self {
        let writes =
            |kind: &'static str| metrics::counter!(crate::metrics::ACTOR_WRITES, "kind" => kind);
        StepCounters {
            router_writes: writes(ROUTER),
            conversation_writes: writes(CONVERSATION),
            agent_writes: writes(AGENT),
            conversation_rows_kept: metrics::counter!(crate::metrics::ACTOR_ROWS_KEPT, "kind" => CONVERSATION),
        }
    }
}

/// New customers [`Mesh::note_new_customer`] keeps at most; past it they are forgotten (their
/// actors read the store as any other's).
const NEW_CUSTOMERS: usize = 4096;

impl Inner {
    /// The tenant's configuration as the mesh has it now (a step reads it once).
    pub(crate) fn config(&self) -> Arc<TenantConfig> {
        self.config.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Mesh {
    pub fn new(args: MeshArgs) -> Self {
        Mesh::build(args, None)
    }

    /// A mesh in a cluster: each actor runs here only while this node owns its key's shard
    /// ([`placement::resolve`]), and writes under that shard's fence (`args.fence` is unused).
    /// When `ownership` drops a shard, the actors whose keys hash to it stop (each after the
    /// step it is in; their rows are durable after every step, so the new owner activates
    /// them from there). Needs a tokio runtime (it watches `ownership` on a task).
    pub fn clustered(args: MeshArgs, ownership: Arc<Ownership>) -> Self {
        let mut changes = ownership.subscribe();
        let mesh = Mesh::build(args, Some(ownership));
        let weak = mesh.downgrade();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(mesh) = Mesh::upgrade(&weak) else { return };
                mesh.stop_unowned();
            }
        });
        mesh
    }

    fn build(args: MeshArgs, ownership: Option<Arc<Ownership>>) -> Self {
        Mesh(Arc::new(Inner {
            tenant: args.tenant,
            store: args.store,
            fence: args.fence,
            config: std::sync::RwLock::new(args.config),
            version: AtomicU64::new(0),
            reload: tokio::sync::Mutex::new(()),
            router: args.router,
            transport: args.transport,
            options: args.options,
            heard: args.heard,
            hub: args.hub,
            ownership,
            inbound: Arc::default(),
            wakes: AtomicU64::new(0),
            routers: Directory::default(),
            conversations: Directory::default(),
            agents: Directory::default(),
            new_customers: Mutex::default(),
            events: Mutex::default(),
            counters: StepCounters::new(),
        }))
    }

    /// What `Numbers::customer_noting` tells of a customer number a call binds: `new` before
    /// the binding is written (kept with the fence of its key's shard, if this node owns it),
    /// not `new` if the binding lost (dropped).
    pub fn note_new_customer(&self, customer: CustomerId, name: &str, new: bool) {
        // The ownership's lock is taken before this one, never under it.
        let fence = self.fence_of(ActorKey::Conversation { tenant: self.tenant(), customer });
        let mut noted = self.0.new_customers.lock().unwrap_or_else(PoisonError::into_inner);
        let (true, Ok(fence)) = (new, fence) else {
            noted.remove(&customer);
            return;
        };
        if noted.len() >= NEW_CUSTOMERS {
            noted.clear();
        }
        noted.insert(customer, (fence, name.into()));
    }

    /// The name of `customer` if a call here bound its number and its shard has been this
    /// node's at `fence` since (so no other node can have stored anything under it either);
    /// taken: only the first activation may skip the store.
    fn take_new_customer(&self, customer: CustomerId, fence: Fence) -> Option<Arc<str>> {
        let mut noted = self.0.new_customers.lock().unwrap_or_else(PoisonError::into_inner);
        noted.remove(&customer).filter(|(f, _)| *f == fence).map(|(_, name)| name)
    }

    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }

    /// The tenant's configuration as this mesh has it now.
    pub fn config(&self) -> Arc<TenantConfig> {
        self.0.config()
    }

    /// The configuration version of [`Mesh::config`] (0: as built, never reloaded).
    pub fn config_version(&self) -> u64 {
        self.0.version.load(Ordering::Acquire)
    }

    /// Sets the version of the configuration the mesh was built with (its load's position).
    pub(crate) fn loaded_at(&self, version: u64) {
        self.0.version.fetch_max(version, Ordering::AcqRel);
    }

    /// Reloads the tenant's configuration unless this mesh has version `at_least` already,
    /// then lets the router actor (if it runs here) apply it before its next step. Reloads of
    /// one tenant are coalesced (one at a time; a caller that waited finds the newer version
    /// and returns); the load replays the tenant's snapshot and log on the blocking pool, and
    /// no node-wide lock is held meanwhile. It runs on a task of its own, so a caller that
    /// gives up (an envelope's deadline) does not waste it.
    pub async fn refresh(&self, at_least: u64) -> Result<()> {
        if self.config_version() >= at_least {
            return Ok(());
        }
        let mesh = self.clone();
        let reload = tokio::spawn(async move {
            let _one = mesh.0.reload.lock().await;
            if mesh.config_version() >= at_least {
                return Ok(());
            }
            let (store, tenant) = (mesh.0.store.clone(), mesh.0.tenant.clone());
            let (config, _, version) = meshes::load(store, tenant).await?;
            mesh.swap(config, version);
            Ok(())
        });
        reload
            .await
            .map_err(|e| Error::Unavailable(format!("reloading the configuration failed: {e}")))?
    }

    /// Reads the tenant's stored configuration version (one probe, off the runtime) and
    /// reloads if it is newer than this mesh's ([`Mesh::refresh`]). At most one probe and one
    /// reload per call.
    pub async fn refresh_stored(&self) -> Result<()> {
        let (store, tenant) = (self.0.store.clone(), self.0.tenant.clone());
        let stored = tokio::task::spawn_blocking(move || config::stored(store.as_ref(), &tenant))
            .await
            .map_err(|e| Error::Unavailable(format!("store read interrupted: {e}")))??;
        self.refresh(stored).await
    }

    /// Takes `config` at `version` if it is newer than what the mesh has, and nudges the
    /// router actor running here so it applies it now (it would before its next step anyway).
    /// Reloads are serialized (`reload`), so the configuration is in place before its
    /// version says so.
    fn swap(&self, config: Arc<TenantConfig>, version: u64) {
        if self.config_version() >= version {
            return;
        }
        *self.0.config.write().unwrap_or_else(PoisonError::into_inner) = config;
        self.0.version.fetch_max(version, Ordering::AcqRel);
        info!(tenant = %self.0.tenant, version, "the mesh took a newer configuration");
        if let Some(router) = self.0.routers.any(&()) {
            let _ = router.send_message(router::RouterMsg::Reconfigure);
        }
        // Conversation actors armed their one timer by the last configuration's thresholds:
        // each wakes to arm it by this one (a shortened threshold fires when it now says;
        // a wake-up with nothing due is harmless). Configuration changes are rare.
        for (_, actor, _) in self.0.conversations.entries() {
            let _ = actor.send_message(conversation::ConversationMsg::Wake);
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.0
    }

    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.0)
    }

    pub(crate) fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<Mesh> {
        weak.upgrade().map(Mesh)
    }

    /// The tenant's router actor, activated if needed.
    pub fn router(&self) -> RouterHandle {
        RouterHandle::new(self.clone())
    }

    /// A customer's conversation actor, activated on its first message.
    pub fn conversation(&self, customer: CustomerId) -> ConversationHandle {
        ConversationHandle::new(self.clone(), customer)
    }

    /// An agent's actor, activated on its first message.
    pub fn agent(&self, agent: AgentId) -> AgentHandle {
        AgentHandle::new(self.clone(), agent)
    }

    /// Activates the router and every conversation and agent actor the store holds a row
    /// for, so that they resend what they had not had acknowledged and fire their deadlines
    /// (after a node restart). Pages through the rows. Returns how many conversation and
    /// agent actors it activated.
    pub async fn recover(&self) -> Result<usize> {
        self.router_ref().await?;
        let mut activated = 0;
        for kind in [CONVERSATION, AGENT] {
            let mut after = String::new();
            loop {
                let (store, tenant, from) = (self.0.store.clone(), self.0.tenant.clone(), after);
                let page = blocking(move || store.list_actors(&tenant, kind, &from, 256)).await?;
                let Some(last) = page.last() else { break };
                after = last.key.clone();
                for row in page {
                    let Ok(n) = row.key.parse::<u64>() else { continue };
                    if kind == AGENT {
                        self.agent_ref(AgentId(n)).await?;
                    } else {
                        self.conversation_ref(CustomerId(n)).await?;
                    }
                    activated += 1;
                }
            }
        }
        Ok(activated)
    }

    /// Fault injection: stops the router actor abruptly, as a crash would (no `post_stop`,
    /// nothing more written or sent), and returns once it is gone. Its supervisor activates
    /// it again from its row after the backoff, unless a message does first.
    pub async fn kill_router(&self) {
        if let Some(actor) = self.0.routers.any(&()) {
            let _ = actor.kill_and_wait(None).await;
        }
    }

    /// Fault injection: stops a conversation actor abruptly, as a crash would, and returns
    /// once it is gone (restarted like the router, [`Mesh::kill_router`]).
    pub async fn kill_conversation(&self, customer: CustomerId) {
        if let Some(actor) = self.0.conversations.any(&customer) {
            let _ = actor.kill_and_wait(None).await;
        }
    }

    /// Fault injection: stops an agent actor abruptly, as a crash would, and returns once it
    /// is gone (restarted like the router, [`Mesh::kill_router`]).
    pub async fn kill_agent(&self, agent: AgentId) {
        if let Some(actor) = self.0.agents.any(&agent) {
            let _ = actor.kill_and_wait(None).await;
        }
    }

    /// Stops every actor of the tenant on this node and waits for them (a node shutting
    /// down or handing the tenant over): each finishes the step it is in, and its row is
    /// what the next node loads. They are not restarted.
    pub async fn stop_all(&self) {
        for ((), actor, exit) in self.0.routers.entries() {
            exit.ask();
            let _ = actor.stop_and_wait(Some("shutdown".into()), None).await;
        }
        for (_, actor, exit) in self.0.conversations.entries() {
            exit.ask();
            let _ = actor.stop_and_wait(Some("shutdown".into()), None).await;
        }
        for (_, actor, exit) in self.0.agents.entries() {
            exit.ask();
            let _ = actor.stop_and_wait(Some("shutdown".into()), None).await;
        }
    }

    /// Stops every actor whose key's shard this node no longer owns (each after the step it
    /// is in) and returns how many. Nothing on a single node.
    pub fn stop_unowned(&self) -> usize {
        let Some(ownership) = &self.0.ownership else { return 0 };
        let tenant = self.tenant();
        let moved = |key: ActorKey<'_>| !ownership.is_local(key.shard(ownership.shards()));
        let mut stopped = 0;
        for ((), actor, exit) in self.0.routers.entries() {
            if moved(ActorKey::Router { tenant }) {
                exit.ask();
                actor.stop(Some("shard moved".into()));
                stopped += 1;
            }
        }
        for (customer, actor, exit) in self.0.conversations.entries() {
            if moved(ActorKey::Conversation { tenant, customer }) {
                exit.ask();
                actor.stop(Some("shard moved".into()));
                stopped += 1;
            }
        }
        for (agent, actor, exit) in self.0.agents.entries() {
            if moved(ActorKey::Agent { tenant, agent }) {
                exit.ask();
                actor.stop(Some("shard moved".into()));
                stopped += 1;
            }
        }
        stopped
    }

    /// The fence an actor of `key` activating now writes under: its shard's on this node
    /// (`Unavailable` if this node does not own it), or the mesh's on a single node.
    pub(crate) fn fence_of(&self, key: ActorKey<'_>) -> Result<Fence> {
        let Some(ownership) = &self.0.ownership else { return Ok(self.0.fence) };
        match placement::resolve(ownership, key) {
            Route::Local(fence) => Ok(fence),
            _ => Err(Error::Unavailable(format!(
                "node {} does not own shard {} of the {key}; its owner serves it",
                ownership.node_id(),
                key.shard(ownership.shards())
            ))),
        }
    }

    /// Whether an actor activated under `fence` may still write: this node still owns the
    /// shard at that epoch. (The store refuses an older epoch anyway once a new owner raised
    /// it; this refuses as soon as this node's view changes.)
    /// Whether the actor of `key` lives on this node now (always, without a cluster).
    pub fn is_here(&self, key: ActorKey<'_>) -> bool {
        let Some(ownership) = &self.0.ownership else { return true };
        matches!(placement::resolve(ownership, key), Route::Local(_))
    }

    /// Resolves once the actor of `key` no longer lives on this node under the epoch it had
    /// when this was called (at once if it did not live here; never without a cluster). A
    /// stream that actor feeds through this node's hub ends then, so its client reconnects
    /// and reaches the new owner instead of waiting on a hub nobody writes to.
    pub fn moved_away(
        &self,
        key: ActorKey<'_>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let Some(ownership) = self.0.ownership.clone() else {
            return Box::pin(std::future::pending());
        };
        let shard = key.shard(ownership.shards());
        Box::pin(async move {
            // Subscribed before the first look, so a change in between is not missed.
            let mut changes = ownership.subscribe();
            let start = ownership.route_shard(shard);
            if !matches!(start, Route::Local(_)) {
                return;
            }
            while ownership.route_shard(shard) == start {
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
    }

    pub(crate) fn holds(&self, fence: Fence) -> Result<()> {
        let Some(ownership) = &self.0.ownership else { return Ok(()) };
        match ownership.route_shard(fence.shard) {
            Route::Local(now) if now == fence => Ok(()),
            _ => Err(Error::Unavailable(format!(
                "shard {} moved off node {} (epoch {} is no longer its own); retry on its owner",
                fence.shard,
                ownership.node_id(),
                fence.epoch
            ))),
        }
    }

    /// Counts one envelope from another node against `bound`; `None` once `bound` are
    /// accepted and not yet handled.
    pub(crate) fn admit(&self, bound: usize) -> Option<Ticket> {
        let inbound = &self.0.inbound;
        if inbound.fetch_add(1, Ordering::AcqRel) >= bound {
            inbound.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Ticket(inbound.clone()))
    }

    /// Envelopes from other nodes accepted and not yet handled by their actors.
    pub fn inbound(&self) -> usize {
        self.0.inbound.load(Ordering::Acquire)
    }

    /// How many actors of this tenant are live on this node: (routers, conversations).
    pub fn live(&self) -> (usize, usize) {
        (self.0.routers.live(), self.0.conversations.live())
    }

    /// How many actors of this tenant this node has activated so far, restarts included:
    /// (routers, conversations).
    pub fn activations(&self) -> (u64, u64) {
        let started = |d: &AtomicU64| d.load(Ordering::Acquire);
        (started(&self.0.routers.started), started(&self.0.conversations.started))
    }

    /// How many timer wake-ups (deadline, resend or idle; see `Timers`) this tenant's actors
    /// on this node have handled so far. Actors at rest add none.
    pub fn wakes(&self) -> u64 {
        self.0.wakes.load(Ordering::Acquire)
    }

    /// A durable entry of an agent's desk stream, written on another node, to this node's
    /// live readers of that stream ([`transport::Transport::desk_entry`]), named as its
    /// writer names it (`Rows::desk`).
    pub(crate) fn publish_desk_entry(&self, entry: transport::DeskEntry) {
        let Some(hub) = &self.inner().hub else { return };
        let stream = self.config().desk_stream(entry.agent);
        hub.publish(self.tenant(), &stream, entry.seq, entry.item);
    }

    /// The response the store keeps for `request_id` of this tenant (`Batch::responses`), if
    /// any: read off the runtime; a failed read is `Unavailable` (the caller retries).
    pub(crate) async fn stored_response(&self, request_id: &str) -> Result<Option<Vec<u8>>> {
        let inner = self.inner();
        let (store, tenant, id) =
            (inner.store.clone(), inner.tenant.clone(), request_id.to_owned());
        blocking(move || store.actor_response(&tenant, &id)).await
    }

    /// An actor handles a timer wake-up.
    pub(crate) fn woke(&self) {
        self.0.wakes.fetch_add(1, Ordering::AcqRel);
    }

    /// How many agent actors of this tenant are live on this node.
    pub fn live_agents(&self) -> usize {
        self.0.agents.live()
    }

    /// How many agent actors of this tenant this node has activated so far, restarts
    /// included.
    pub fn agent_activations(&self) -> u64 {
        self.0.agents.started.load(Ordering::Acquire)
    }

    pub(crate) async fn router_ref(&self) -> Result<ActorRef<router::RouterMsg>> {
        self.activate_router(Duration::ZERO).await
    }

    /// The live router actor or a new one, supervised with `backoff` as its last restart's
    /// wait (zero: activated by a message).
    async fn activate_router(&self, backoff: Duration) -> Result<ActorRef<router::RouterMsg>> {
        // Refused here with a clear message; the actor checks again as it starts.
        let fence = self.fence_of(ActorKey::Router { tenant: self.tenant() })?;
        let mesh = self.clone();
        self.0
            .routers
            .get((), |unsettled| async move {
                if unsettled {
                    mesh.settle(fence).await;
                }
                let exit = Arc::new(Exit::default());
                let weak = mesh.downgrade();
                let args = RouterArgs { mesh, exit: exit.clone() };
                let (actor, join) = ractor::Actor::spawn(None, RouterActor, args)
                    .await
                    .map_err(|e| Error::Unavailable(format!("router actor did not start: {e}")))?;
                tokio::spawn(supervise(weak, Which::Router, join, exit.clone(), backoff));
                Ok((actor, exit))
            })
            .await
    }

    pub(crate) async fn conversation_ref(
        &self,
        customer: CustomerId,
    ) -> Result<ActorRef<conversation::ConversationMsg>> {
        self.activate_conversation(customer, Duration::ZERO).await
    }

    /// The customer's live conversation actor or a new one, supervised with `backoff` as its
    /// last restart's wait (zero: activated by a message).
    async fn activate_conversation(
        &self,
        customer: CustomerId,
        backoff: Duration,
    ) -> Result<ActorRef<conversation::ConversationMsg>> {
        let fence = self.fence_of(ActorKey::Conversation { tenant: self.tenant(), customer })?;
        let mesh = self.clone();
        self.0
            .conversations
            .get(customer, |unsettled| async move {
                if unsettled {
                    mesh.settle(fence).await;
                }
                let exit = Arc::new(Exit::default());
                let weak = mesh.downgrade();
                let args = ConversationArgs { mesh, customer, exit: exit.clone() };
                let (actor, join) =
                    ractor::Actor::spawn(None, ConversationActor, args).await.map_err(|e| {
                        Error::Unavailable(format!("conversation actor did not start: {e}"))
                    })?;
                let which = Which::Conversation(customer);
                tokio::spawn(supervise(weak, which, join, exit.clone(), backoff));
                Ok((actor, exit))
            })
            .await
    }

    pub(crate) async fn agent_ref(&self, agent: AgentId) -> Result<ActorRef<agent::AgentMsg>> {
        self.activate_agent(agent, Duration::ZERO).await
    }

    /// The agent's live actor or a new one, supervised with `backoff` as its last restart's
    /// wait (zero: activated by a message).
    async fn activate_agent(
        &self,
        agent: AgentId,
        backoff: Duration,
    ) -> Result<ActorRef<agent::AgentMsg>> {
        let fence = self.fence_of(ActorKey::Agent { tenant: self.tenant(), agent })?;
        let mesh = self.clone();
        self.0
            .agents
            .get(agent, |unsettled| async move {
                if unsettled {
                    mesh.settle(fence).await;
                }
                let exit = Arc::new(Exit::default());
                let weak = mesh.downgrade();
                let args = AgentArgs { mesh, agent, exit: exit.clone() };
                let (actor, join) = ractor::Actor::spawn(None, AgentActor, args)
                    .await
                    .map_err(|e| Error::Unavailable(format!("agent actor did not start: {e}")))?;
                tokio::spawn(supervise(weak, Which::Agent(agent), join, exit.clone(), backoff));
                Ok((actor, exit))
            })
            .await
    }

    /// Activates the actor of `which` (a restart by its supervisor).
    async fn activate(&self, which: Which, backoff: Duration) -> Result<()> {
        match which {
            Which::Router => self.activate_router(backoff).await.map(|_| ()),
            Which::Conversation(c) => self.activate_conversation(c, backoff).await.map(|_| ()),
            Which::Agent(a) => self.activate_agent(a, backoff).await.map(|_| ()),
        }
    }

    /// Whether an actor of `which` is live, stopping or activating here.
    fn has(&self, which: Which) -> bool {
        match which {
            Which::Router => self.0.routers.has(&()),
            Which::Conversation(c) => self.0.conversations.has(&c),
            Which::Agent(a) => self.0.agents.has(&a),
        }
    }

    fn key(&self, which: Which) -> ActorKey<'_> {
        let tenant = self.tenant();
        match which {
            Which::Router => ActorKey::Router { tenant },
            Which::Conversation(customer) => ActorKey::Conversation { tenant, customer },
            Which::Agent(agent) => ActorKey::Agent { tenant, agent },
        }
    }

    /// The router actor taking messages, or whether one is being activated (for a
    /// transport: [`Found`]).
    pub(crate) fn find_router(&self) -> Found<router::RouterMsg> {
        self.0.routers.find(&())
    }

    pub(crate) fn find_conversation(
        &self,
        customer: CustomerId,
    ) -> Found<conversation::ConversationMsg> {
        self.0.conversations.find(&customer)
    }

    pub(crate) fn find_agent(&self, agent: AgentId) -> Found<agent::AgentMsg> {
        self.0.agents.find(&agent)
    }

    pub(crate) fn forget_agent(&self, agent: AgentId, id: ractor::ActorId) {
        self.0.agents.forget(&agent, id);
    }

    pub(crate) fn forget_router(&self, id: ractor::ActorId) {
        self.0.routers.forget(&(), id);
    }

    pub(crate) fn forget_conversation(&self, customer: CustomerId, id: ractor::ActorId) {
        self.0.conversations.forget(&customer, id);
    }

    /// Hands effects to whoever listens, once durable. With agent actors on, without the
    /// agents' notes (`Effect::Notify`): the router and conversation actors wrote them on the
    /// agents' desk streams, so nothing that listens here may show them a second time.
    pub(crate) fn heard(&self, customer: Option<CustomerId>, effects: Vec<Effect>) {
        self.heard_on(customer, None, effects);
    }

    /// [`heard`](Self::heard), from a conversation actor whose open conversation is on
    /// `channel` (what a reply withheld for the channel's budget counts against).
    pub(crate) fn heard_on(
        &self,
        customer: Option<CustomerId>,
        channel: Option<switchboard_core::Channel>,
        mut effects: Vec<Effect>,
    ) {
        // The business counters, as the tenant actor counts its commands' effects.
        let config = self.config();
        let group = |g| config.group_name(g).into_owned();
        crate::metrics::mesh_step(&self.0.tenant, &group, channel, &effects, &self.0.events);
        if self.0.options.agent_actors {
            effects.retain(|e| !matches!(e, Effect::Notify { .. }));
        }
        if let Some(heard) = &self.0.heard
            && !effects.is_empty()
        {
            let _ = heard.send(Heard { customer, effects });
        }
    }

    /// Returns once every write queued on the node's writer before this call is committed
    /// or refused: an empty batch under `fence` (the writer answers its jobs in order, and
    /// whatever the answer, the jobs before it are done). See [`Slot::Unsettled`].
    async fn settle(&self, fence: Fence) {
        let batch = Batch { tenant: self.0.tenant.clone(), fence, ..Batch::default() };
        let _ = self.0.store.append(batch).await;
    }

    /// Reads an actor's row off the runtime's threads.
    pub(crate) async fn load(&self, kind: &'static str, key: String) -> Result<Option<ActorState>> {
        let (store, tenant) = (self.0.store.clone(), self.0.tenant.clone());
        blocking(move || store.actor(&tenant, kind, &key)).await
    }
}

/// Which actor of a mesh a supervisor watches.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Which {
    Router,
    Conversation(CustomerId),
    Agent(AgentId),
}

/// How an incarnation ended, as its supervisor reads it once it is gone: a stop the mesh
/// asked for or a passivation is final; anything else (a failed write, a panic, a kill) is
/// restarted.
#[derive(Debug, Default)]
pub(crate) struct Exit {
    asked: AtomicBool,
    passivated: AtomicBool,
}

impl Exit {
    /// The mesh stops it (shutdown, shard moved): not restarted.
    fn ask(&self) {
        self.asked.store(true, Ordering::Release);
    }

    /// It passivated cleanly (from `post_stop`): not restarted.
    pub(crate) fn passivated(&self) {
        self.passivated.store(true, Ordering::Release);
    }

    fn settled(&self) -> bool {
        self.asked.load(Ordering::Acquire) || self.passivated.load(Ordering::Acquire)
    }
}

/// Watches one incarnation of an actor: once it is gone, unless it passivated or was asked
/// to stop, activates its key again after a backoff (`backoff` is the wait that started this
/// incarnation; it doubles up to [`RESTART_MAX`], and resets once an incarnation ran that
/// long), while its key's shard is served here. Ends when the mesh is gone, when another
/// incarnation is live (a message activated it; it has its own supervisor) or when the new
/// one is started (and supervised by its own task). Boxed: a restart spawns the next
/// incarnation's supervisor.
fn supervise(
    mesh: std::sync::Weak<Inner>,
    which: Which,
    join: tokio::task::JoinHandle<()>,
    exit: Arc<Exit>,
    backoff: Duration,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(watch(mesh, which, join, exit, backoff))
}

async fn watch(
    mesh: std::sync::Weak<Inner>,
    which: Which,
    join: tokio::task::JoinHandle<()>,
    exit: Arc<Exit>,
    mut backoff: Duration,
) {
    let ran = tokio::time::Instant::now();
    let _ = join.await;
    if exit.settled() {
        return;
    }
    if ran.elapsed() >= RESTART_MAX {
        backoff = Duration::ZERO;
    }
    loop {
        backoff = if backoff.is_zero() { RESTART_MIN } else { (backoff * 2).min(RESTART_MAX) };
        {
            let Some(mesh) = Mesh::upgrade(&mesh) else { return };
            let delay_ms = backoff.as_millis() as u64;
            warn!(tenant = mesh.tenant(), actor = %mesh.key(which), delay_ms, "actor stopped; restarting it from its row");
        }
        tokio::time::sleep(backoff).await;
        let Some(mesh) = Mesh::upgrade(&mesh) else { return };
        if mesh.has(which) {
            return;
        }
        // Its shard is served elsewhere now: its owner activates it.
        if mesh.fence_of(mesh.key(which)).is_err() {
            return;
        }
        match mesh.activate(which, backoff).await {
            Ok(()) => {
                info!(tenant = mesh.tenant(), actor = %mesh.key(which), "actor restarted");
                let kind = match which {
                    Which::Router => ROUTER,
                    Which::Conversation(_) => CONVERSATION,
                    Which::Agent(_) => AGENT,
                };
                let tenant = mesh.tenant().to_owned();
                metrics::counter!(crate::metrics::ACTOR_RESTARTS, "kind" => kind, "tenant" => tenant)
                    .increment(1);
                return;
            }
            Err(e) => {
                warn!(tenant = mesh.tenant(), actor = %mesh.key(which), error = %e, "actor did not restart; retrying");
            }
        }
    }
}

/// Values by request id, the newest `limit` of them (an actor's volatile memory of the
/// answers it gave, beside the store's).
#[derive(Debug)]
pub(crate) struct Newest<V> {
    limit: usize,
    values: FxHashMap<String, V>,
    order: std::collections::VecDeque<String>,
}

impl<V> Newest<V> {
    pub(crate) fn new(limit: usize) -> Self {
        Newest { limit, values: FxHashMap::default(), order: Default::default() }
    }

    pub(crate) fn get(&self, request_id: &str) -> Option<&V> {
        self.values.get(request_id)
    }

    /// Keeps `value` for `request_id`, forgetting the oldest past the limit.
    pub(crate) fn insert(&mut self, request_id: String, value: V) {
        if self.values.insert(request_id.clone(), value).is_none() {
            self.order.push_back(request_id);
        }
        while self.order.len() > self.limit {
            if let Some(old) = self.order.pop_front() {
                self.values.remove(&old);
            }
        }
    }
}

/// Runs a store read on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    read: impl FnOnce() -> switchboard_store::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| Error::Unavailable(format!("store read interrupted: {e}")))?
        .map_err(|e| Error::Unavailable(format!("store read failed, retry: {e}")))
}

/// A side's durable state as an actor row's body: the side through its snapshot encoding,
/// and the actor's clock (time never runs backwards across a restart); what a conversation
/// actor keeps beside it ([`Beside`], absent in other rows). Written by position, every field
/// written (as [`BodyRef`], which borrows); read from either layout (MessagePack decodes a
/// struct from an array or a map; [`NAMED`] rows left absent fields out, hence the defaults).
#[derive(serde::Deserialize)]
struct Body<S> {
    at_ms: u64,
    side: S,
    #[serde(default)]
    transcript: Option<effects::Transcript>,
    #[serde(default)]
    customer: Option<String>,
    #[serde(default)]
    extra: Option<(u64, crate::state::ConversationExtra)>,
    #[serde(default)]
    profile: Option<crate::state::Profile>,
}

/// [`Body`] as written: borrowed, so a step's row costs no copy of what it holds (MessagePack
/// writes a reference as the value, so the bytes are [`Body`]'s).
#[derive(Serialize)]
struct BodyRef<'a, S> {
    at_ms: u64,
    side: &'a S,
    transcript: Option<effects::Transcript>,
    customer: Option<&'a str>,
    extra: Option<(u64, &'a crate::state::ConversationExtra)>,
    profile: Option<&'a crate::state::Profile>,
}

/// What a conversation actor's row keeps beside its side (node-side, not the core's).
#[derive(Debug, Clone, Default)]
pub(crate) struct Beside {
    /// Its transcript numbering.
    pub transcript: Option<effects::Transcript>,
    /// Its customer's id (its name), once a public call or the store's binding told it.
    pub customer: Option<String>,
    /// Its open conversation's tags and note (its number and them).
    pub extra: Option<(u64, crate::state::ConversationExtra)>,
    /// Its customer's profile (contact data, tags, customer groups, language: what
    /// UpdateCustomerProfile and PutCustomer set beside the core's settings).
    pub profile: Option<crate::state::Profile>,
}

#[cfg(test)]
impl Beside {
    /// Borrowed, to write ([`encode_with`]).
    pub(crate) fn by_ref(&self) -> BesideRef<'_> {
        BesideRef {
            transcript: self.transcript,
            customer: self.customer.as_deref(),
            extra: self.extra.as_ref().map(|(n, e)| (*n, e)),
            profile: self.profile.as_ref(),
        }
    }
}

/// [`Beside`] borrowed from the actor that writes its row.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BesideRef<'a> {
    pub transcript: Option<effects::Transcript>,
    pub customer: Option<&'a str>,
    pub extra: Option<(u64, &'a crate::state::ConversationExtra)>,
    pub profile: Option<&'a crate::state::Profile>,
}

pub(crate) fn encode<S: Serialize>(at: Timestamp, side: &S) -> Result<Vec<u8>> {
    encode_with(at, side, BesideRef::default())
}

/// Whether a row is a router checkpoint ([`JOURNALED`]).
pub(crate) fn journaled(bytes: &[u8]) -> bool {
    bytes.first() == Some(&JOURNALED)
}

/// [`encode`] for a router checkpoint ([`JOURNALED`]).
pub(crate) fn encode_journaled<S: Serialize>(at: Timestamp, side: &S) -> Result<Vec<u8>> {
    let mut bytes = encode(at, side)?;
    bytes[0] = JOURNALED;
    Ok(bytes)
}

pub(crate) fn encode_with<S: Serialize>(
    at: Timestamp,
    side: &S,
    beside: BesideRef<'_>,
) -> Result<Vec<u8>> {
    // Room for a typical row (a conversation's is about 300 bytes), so the writes that
    // build it do not grow the buffer several times over.
    let mut bytes = Vec::with_capacity(ROW_CAPACITY);
    bytes.push(VERSION);
    let BesideRef { transcript, customer, extra, profile } = beside;
    let body = BodyRef { at_ms: at.as_millis(), side, transcript, customer, extra, profile };
    rmp_serde::encode::write(&mut bytes, &body)
        .map_err(|e| Error::Internal(format!("actor state does not encode: {e}")))?;
    Ok(bytes)
}

pub(crate) fn decode<S: DeserializeOwned>(bytes: &[u8]) -> Result<(Timestamp, S)> {
    decode_with(bytes).map(|(at, side, _)| (at, side))
}

pub(crate) fn decode_with<S: DeserializeOwned>(bytes: &[u8]) -> Result<(Timestamp, S, Beside)> {
    match bytes.split_first() {
        Some((&(VERSION | NAMED | JOURNALED), rest)) => {
            let body: Body<S> = rmp_serde::from_slice(rest)
                .map_err(|e| Error::Internal(format!("actor state does not decode: {e}")))?;
            let Body { at_ms, side, transcript, customer, extra, profile } = body;
            Ok((Timestamp(at_ms), side, Beside { transcript, customer, extra, profile }))
        }
        Some((v, _)) => Err(Error::Internal(format!("actor state of unknown version {v}"))),
        None => Err(Error::Internal("empty actor state".into())),
    }
}

/// Counts a live actor in `switchboard_actors{kind}` for as long as it lives (a guard, so an
/// actor killed without `post_stop` is uncounted too).
pub(crate) struct Counted(&'static str);

impl Counted {
    pub(crate) fn new(kind: &'static str) -> Self {
        metrics::gauge!(crate::metrics::ACTORS, "kind" => kind).increment(1.0);
        Counted(kind)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::ACTORS, "kind" => self.0).decrement(1.0);
    }
}

/// An envelope from another node, counted against its tenant's bound until it is handled
/// (or dropped with a stopped actor's mailbox): it travels with the envelope.
#[derive(Debug)]
pub struct Ticket(Arc<AtomicUsize>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Aborts a task when dropped (timers of an actor die with it, however it stops).
pub(crate) struct Task(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An actor's one timer: a single one-shot wake-up, re-armed after every step, never an
/// interval. It fires at the earliest of
/// - the side's next deadline (the core's timers),
/// - the next resend, while something the actor sent is unacknowledged (every
///   [`MeshOptions::retransmit`] from the send that left it so, then from each resend),
/// - the end of its idle time (`last_active + idle`), only while nothing else is due and the
///   actor could passivate then.
///
/// So an actor at rest (settled, no deadline) wakes once per idle time, to passivate, and
/// costs nothing between. A wake-up earlier than needed is harmless: the actor checks what
/// is due and arms again. A later wish does not move an armed wake-up (no task per step):
/// it fires, finds nothing due, and arms for the later time. It dies with the actor.
pub(crate) struct Timers {
    armed: Option<(tokio::time::Instant, Task)>,
    /// When to resend: `Some` while something sent may be unacknowledged.
    resend_at: Option<tokio::time::Instant>,
    every: Duration,
}

impl Timers {
    /// No wake-up armed yet; resends every `every` while something is unacknowledged.
    pub(crate) fn new(every: Duration) -> Self {
        Timers { armed: None, resend_at: None, every }
    }

    /// The wake-up fired.
    pub(crate) fn fired(&mut self) {
        self.armed = None;
    }

    /// Something that awaits an acknowledgement went on the network: resend it after
    /// `every` (unless a resend is due sooner already).
    pub(crate) fn sent(&mut self) {
        if self.resend_at.is_none() {
            self.resend_at = Some(tokio::time::Instant::now() + self.every);
        }
    }

    /// Whether a resend is due now.
    pub(crate) fn resend_due(&self) -> bool {
        self.resend_at.is_some_and(|at| at <= tokio::time::Instant::now())
    }

    /// A resend is due (or was put off): `unacked` is whether anything is still owed an
    /// acknowledgement; if so the next resend comes after `every`.
    pub(crate) fn resent(&mut self, unacked: bool) {
        self.resend_at = unacked.then(|| tokio::time::Instant::now() + self.every);
    }

    /// Everything sent is acknowledged: no resend is due, and a wake-up armed only for
    /// it is cancelled (the next `arm` sets the one still wanted, if any).
    pub(crate) fn acknowledged(&mut self) {
        let resend_at = self.resend_at.take();
        if resend_at.is_some() && self.armed.as_ref().map(|(at, _)| *at) == resend_at {
            self.armed = None;
        }
    }

    /// Whether something sent may still be unacknowledged (a resend is scheduled).
    pub(crate) fn resending(&self) -> bool {
        self.resend_at.is_some()
    }

    /// Arms the one wake-up (casting `wake` to the actor) at the earliest of the side's
    /// `deadline` (measured from `now`, the actor's clock), the next resend, and `idle_at`
    /// (the caller passes it only when the actor could passivate then). Keeps an armed
    /// wake-up that comes no later.
    pub(crate) fn arm<M: ractor::Message>(
        &mut self,
        actor: &ActorRef<M>,
        deadline: Option<Timestamp>,
        now: Timestamp,
        idle_at: Option<tokio::time::Instant>,
        wake: fn() -> M,
    ) {
        let instant = tokio::time::Instant::now();
        let deadline = deadline.map(|at| {
            instant + Duration::from_millis(at.as_millis().saturating_sub(now.as_millis()))
        });
        let idle_at = idle_at.filter(|_| deadline.is_none() && self.resend_at.is_none());
        let Some(at) = [deadline, self.resend_at, idle_at].into_iter().flatten().min() else {
            self.armed = None;
            return;
        };
        if self.armed.as_ref().is_some_and(|(armed, _)| *armed <= at) {
            return;
        }
        let me = actor.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = me.cast(wake());
        });
        self.armed = Some((at, Task(timer)));
    }
}

/// What an actor heard early: sending before durability (ARCHITECTURE.md, "Sending before
/// durability" under "The actors"). A step's messages to actors of this process go out once its
/// batch is queued on the node's writer, before it is durable ([`Outbox`]); the receiver's
/// next batch is queued after it, so it commits in the same group or a later one. If the
/// sender's batch fails, the writer raises the tenant's generation before the next group
/// (`switchboard_store::Store::generation`), and within the group it refuses the tenant's
/// later batches; so the receiver's batch, written under the generation its sender's
/// carried, is refused too, and it starts again from what is durable, which never held the
/// message. Whatever it sent on early meanwhile goes the same way.
///
/// So a batch carries the oldest generation among the early messages heard since the last
/// batch (the tenant's current one if none): an actor that heard nothing early is refused
/// only if its own batch raced a raise, not because another actor's batch failed.
#[derive(Debug, Default)]
pub(crate) struct Generation {
    heard: Option<u64>,
}

impl Generation {
    /// Whether an envelope sent early under `tag` (`None`: sent once durable) may be
    /// applied: not if the tenant's generation moved past it, since its sender's batch is
    /// refused (or failed) then, and applying it would only doom this actor's next write.
    /// One that may is remembered for the next batch.
    pub(crate) fn hear(&mut self, mesh: &Mesh, tag: Option<u64>) -> bool {
        let Some(tag) = tag else { return true };
        let inner = mesh.inner();
        if inner.store.generation(&inner.tenant).is_some_and(|now| tag < now) {
            return false;
        }
        self.heard = Some(self.heard.map_or(tag, |heard| heard.min(tag)));
        true
    }

    /// The generation the actor's next batch carries, and its early messages with it;
    /// `None` if the store cannot vouch for its writer's order (nothing goes early then).
    pub(crate) fn next(&mut self, mesh: &Mesh) -> Option<u64> {
        let inner = mesh.inner();
        let now = inner.store.generation(&inner.tenant)?;
        // What was heard is never newer than the tenant's generation now.
        Some(self.heard.take().map_or(now, |heard| heard.min(now)))
    }
}

/// Where a step's envelopes go as its actor hands them out: at once (the step is durable),
/// or, while its batch is in flight, messages to actors of this process at once
/// ([`Transport::early`]) and the rest once the batch is durable ([`Outbox::later`]):
/// acknowledgements (they let the other side forget what it sent), and envelopes to other
/// nodes (whose writer is not this one).
pub(crate) struct Outbox<'a> {
    transport: &'a dyn Transport,
    tenant: &'a str,
    /// The generation the step's batch carries, while it is in flight.
    early: Option<u64>,
    held: Vec<transport::Wire>,
}

impl<'a> Outbox<'a> {
    /// For a step's envelopes: its batch is queued under `early` and not yet durable, or
    /// (`None`) it is durable and each goes at once.
    pub(crate) fn new(mesh: &'a Mesh, early: Option<u64>) -> Self {
        let inner = mesh.inner();
        Outbox { transport: &*inner.transport, tenant: &inner.tenant, early, held: vec![] }
    }

    pub(crate) fn put(&mut self, wire: transport::Wire) {
        match self.early {
            None => wire.send(self.transport, self.tenant),
            // Only messages go early: an acknowledgement lets the other side forget.
            Some(generation) if wire.message() => {
                let kept = self.transport.early(self.tenant, generation, wire);
                self.held.extend(kept);
            }
            Some(_) => self.held.push(wire),
        }
    }

    /// What waits for the batch to be durable ([`Later::send`] then).
    pub(crate) fn later(self) -> Later {
        Later(self.held)
    }
}

/// Envelopes of a step that go once its batch is durable (dropped if it fails: the actor
/// starts again from what is durable, and resends that).
#[derive(Debug, Default)]
pub(crate) struct Later(Vec<transport::Wire>);

impl Later {
    pub(crate) fn send(self, mesh: &Mesh) {
        let inner = mesh.inner();
        for wire in self.0 {
            wire.send(&*inner.transport, &inner.tenant);
        }
    }
}

/// Whether an envelope's body awaits an acknowledgement (a message; not an acknowledgement).
pub(crate) fn awaits_ack<M>(body: &switchboard_core::mesh::Body<M>) -> bool {
    matches!(body, switchboard_core::mesh::Body::Message { .. })
}

/// A read of a side, run by its actor in turn.
pub type ReadSide<S> = Box<dyn FnOnce(&S) + Send>;

/// A read of an actor's side, answered from its mailbox in turn (see [`read_retrying`]).
pub(crate) async fn read<M, S, T, F, Fut>(
    resolve: F,
    wrap: fn(ReadSide<S>) -> M,
    read: impl FnOnce(&S) -> T + Send + 'static,
) -> Result<T>
where
    M: ractor::Message,
    S: 'static,
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<ActorRef<M>>>,
{
    let read = Taken::new(read);
    let build = |reply: RpcReplyPort<T>| {
        let read = read.clone();
        wrap(Box::new(move |side| read.answer(reply, |read| read(side))))
    };
    read_retrying(resolve, build).await
}

/// A closure the first of several messages takes: a read sent again after its actor stopped
/// without running it runs once, wherever it lands.
pub(crate) struct Taken<R>(Arc<Mutex<Option<R>>>);

impl<R> Clone for Taken<R> {
    fn clone(&self) -> Self {
        Taken(self.0.clone())
    }
}

impl<R> Taken<R> {
    pub(crate) fn new(read: R) -> Self {
        Taken(Arc::new(Mutex::new(Some(read))))
    }

    /// Runs the read on `reply` if no earlier message took it.
    pub(crate) fn answer<T>(&self, reply: RpcReplyPort<T>, run: impl FnOnce(R) -> T) {
        let read = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(read) = read {
            let _ = reply.send(run(read));
        }
    }
}

/// Sends the read `build` makes to the actor `resolve` finds (activating it) and waits for its
/// answer. A read that actor never ran (it was passivating, or stopped: ractor drops what is
/// left in its mailbox) goes to the next incarnation, as [`call`] does for operations the
/// actor never took; a read changes nothing, so one that was taken and not answered is sent
/// again too (a conversation actor passivates right after its end, racing reads of it).
pub(crate) async fn read_retrying<M, T, F, Fut>(
    resolve: F,
    build: impl Fn(RpcReplyPort<T>) -> M,
) -> Result<T>
where
    M: ractor::Message,
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<ActorRef<M>>>,
{
    for _ in 0..3 {
        let actor = resolve().await?;
        if let Ok(CallResult::Success(answer)) = ask(&actor, &build, None).await {
            return Ok(answer);
        }
    }
    Err(Error::Unavailable("the actor keeps stopping; retry".into()))
}

/// Casts the message `build` makes around a reply port to `actor`, and waits for the answer,
/// for the actor to stop without giving one ([`CallResult::SenderError`]), or for `timeout`.
/// Ractor's own `call` waits for the answer alone; but a message cast while its actor stops
/// can outlive the actor in the mailbox, neither handled nor dropped, for as long as anyone
/// holds a reference to the actor (ractor empties the mailbox as the actor ends, and a send
/// racing that emptying lands after it). Such a caller, holding the reference itself, waited
/// for ever (a test's read of a conversation actor restarting on refused writes, about 1
/// run in 100 on a loaded machine). A refused cast returns once the actor has stopped
/// ([`cast_or_outlive`]).
pub(crate) async fn ask<M, T>(
    actor: &ActorRef<M>,
    build: impl FnOnce(RpcReplyPort<T>) -> M,
    timeout: Option<Duration>,
) -> std::result::Result<CallResult<T>, ractor::MessagingErr<M>>
where
    M: ractor::Message,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    cast_or_outlive(actor, build(tx.into())).await?;
    let answer = answer_or_stop(actor.get_cell(), rx);
    let answer = match timeout {
        Some(timeout) => match tokio::time::timeout(timeout, answer).await {
            Ok(answer) => answer,
            Err(_) => return Ok(CallResult::Timeout),
        },
        None => answer.await,
    };
    Ok(answer.map_or(CallResult::SenderError, CallResult::Success))
}

/// Casts `msg` to `actor`; a refused one comes back only once the actor has stopped. Only a
/// drain refuses casts, and ractor closes the mailbox a moment before it marks the actor
/// draining: a directory asked meanwhile hands out the same actor as live, so a caller that
/// looked it up again at once could be refused three times over (a batch end of a
/// conversation that just ended, once in CI). After the stop, a lookup finds its successor.
pub(crate) async fn cast_or_outlive<M: ractor::Message>(
    actor: &ActorRef<M>,
    msg: M,
) -> std::result::Result<(), ractor::MessagingErr<M>> {
    let cast = actor.cast(msg);
    if cast.is_err() {
        let _ = actor.get_cell().wait(None).await;
    }
    cast
}

/// The answer on `rx` of the actor `cell`, or `None` once it stopped without one (see
/// [`ask`]).
pub(crate) async fn answer_or_stop<T>(
    cell: ractor::ActorCell,
    rx: tokio::sync::oneshot::Receiver<T>,
) -> Option<T> {
    tokio::pin!(rx);
    tokio::select! {
        biased;
        answer = &mut rx => answer.ok(),
        // Stopped: whatever it answered before it stopped is in `rx` by now.
        _ = cell.wait(None) => rx.try_recv().ok(),
    }
}

/// How long a caller waits for an actor's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends an operation to the actor `resolve` finds (activating it) and waits for its answer.
/// An operation the actor never took (it was draining or gone) goes to the next incarnation;
/// one it took and did not answer does not (it may have been applied): the caller retries by
/// its request id.
pub(crate) async fn call<M, R, F, Fut>(
    resolve: F,
    op: impl Fn(RpcReplyPort<Result<R>>) -> M,
) -> Result<R>
where
    M: ractor::Message,
    R: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<ActorRef<M>>>,
{
    for _ in 0..3 {
        let actor = resolve().await?;
        match ask(&actor, &op, Some(CALL_TIMEOUT)).await {
            Ok(CallResult::Success(result)) => return result,
            Ok(CallResult::Timeout) => {
                return Err(Error::Unavailable("the actor did not answer in time".into()));
            }
            Ok(CallResult::SenderError) => {
                return Err(Error::Unavailable("the actor stopped before answering".into()));
            }
            Err(_) => continue,
        }
    }
    Err(Error::Unavailable("the actor keeps stopping; retry".into()))
}

/// The live actors of one kind, by key. At most one actor runs per key: a new one is spawned
/// only once the previous one has stopped, and concurrent activations of a key wait for the
/// first. The map's lock is never held across a load or a spawn.
struct Directory<K, M: ractor::Message> {
    slots: Mutex<FxHashMap<K, Slot<M>>>,
    /// Actors spawned so far.
    started: AtomicU64,
}

/// What the directory holds for a key, as a transport needs it.
pub(crate) enum Found<M: ractor::Message> {
    /// An actor taking messages.
    Live(ActorRef<M>),
    /// An activation in progress (spawned, not yet live).
    Starting,
    /// Neither: no actor, or one that is stopping.
    None,
}

enum Slot<M: ractor::Message> {
    /// The actor, and how its supervisor learns that a stop was asked for.
    Live(ActorRef<M>, Arc<Exit>),
    Starting(Arc<Notify>),
    /// No actor, and the last one ended abruptly (a panic, a failed write, a kill: its
    /// [`Exit`] not settled), so a batch it queued may still be on the node's writer. The
    /// next activation first waits for the writer to settle it ([`Mesh::settle`]):
    /// otherwise it could load the row before that batch lands, and its first write would
    /// put the older row back, losing what the batch recorded while the messages it sent
    /// before durability were heard and kept (a conversation assigned on the router's side
    /// and queued on its own: found by the random actor tests over many seeds). A stop the
    /// mesh asked for or a passivation finished its step, its last write included.
    Unsettled,
}

/// An activation in progress: whatever way it ends (started, failed, or its future dropped
/// because the caller gave up), its `Starting` slot goes and the waiting callers wake. One
/// that was to settle the writer first leaves the mark for the next, unless it started.
struct StartGuard<'a, K: Hash + Eq + Clone, M: ractor::Message> {
    directory: &'a Directory<K, M>,
    key: K,
    notify: Arc<Notify>,
    unsettled: bool,
}

impl<K: Hash + Eq + Clone, M: ractor::Message> Drop for StartGuard<'_, K, M> {
    fn drop(&mut self) {
        let mut slots = self.directory.lock();
        if matches!(slots.get(&self.key), Some(Slot::Starting(n)) if Arc::ptr_eq(n, &self.notify)) {
            if self.unsettled {
                slots.insert(self.key.clone(), Slot::Unsettled);
            } else {
                slots.remove(&self.key);
            }
        }
        drop(slots);
        self.notify.notify_waiters();
    }
}

impl<K, M: ractor::Message> Default for Directory<K, M> {
    fn default() -> Self {
        Directory { slots: Mutex::new(FxHashMap::default()), started: AtomicU64::new(0) }
    }
}

impl<K: Hash + Eq + Clone, M: ractor::Message> Directory<K, M> {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<K, Slot<M>>> {
        // Nothing panics while holding it; a poisoned map is still consistent.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The key's actor taking messages, or whether one is being activated: one look under
    /// one lock, so an activation that completes meanwhile is seen as one or the other.
    fn find(&self, key: &K) -> Found<M> {
        match self.lock().get(key) {
            Some(Slot::Live(actor, _)) if accepting(actor) => Found::Live(actor.clone()),
            Some(Slot::Starting(_)) => Found::Starting,
            _ => Found::None,
        }
    }

    /// Every actor with its key and exit, whatever its status.
    fn entries(&self) -> Vec<(K, ActorRef<M>, Arc<Exit>)> {
        let slots = self.lock();
        let live = slots.iter().filter_map(|(k, s)| match s {
            Slot::Live(actor, exit) => Some((k.clone(), actor.clone(), exit.clone())),
            Slot::Starting(_) | Slot::Unsettled => None,
        });
        live.collect()
    }

    /// The actor of a key, whatever its status.
    fn any(&self, key: &K) -> Option<ActorRef<M>> {
        match self.lock().get(key) {
            Some(Slot::Live(actor, _)) => Some(actor.clone()),
            _ => None,
        }
    }

    /// Whether the key has an actor taking messages or an activation in progress.
    fn has(&self, key: &K) -> bool {
        match self.lock().get(key) {
            Some(Slot::Live(actor, _)) => accepting(actor),
            Some(Slot::Starting(_)) => true,
            Some(Slot::Unsettled) | None => false,
        }
    }

    fn live(&self) -> usize {
        self.lock().values().filter(|s| matches!(s, Slot::Live(a, _) if accepting(a))).count()
    }

    /// The key's live actor, or a new one from `spawn`, which is told whether it must first
    /// settle what the last one left on the writer ([`Slot::Unsettled`]).
    async fn get<F, Fut>(&self, key: K, spawn: F) -> Result<ActorRef<M>>
    where
        F: FnOnce(bool) -> Fut,
        Fut: std::future::Future<Output = Result<(ActorRef<M>, Arc<Exit>)>>,
    {
        let (notify, unsettled) = loop {
            let wait = {
                let mut slots = self.lock();
                match slots.get(&key) {
                    Some(Slot::Live(actor, _)) if accepting(actor) => return Ok(actor.clone()),
                    // Stopping: the next one starts once it has (its last write is done).
                    Some(Slot::Live(actor, _)) => Err(actor.get_cell()),
                    Some(Slot::Starting(notify)) => Ok(notify.clone()),
                    free => {
                        let unsettled = matches!(free, Some(Slot::Unsettled));
                        let notify = Arc::new(Notify::new());
                        slots.insert(key.clone(), Slot::Starting(notify.clone()));
                        break (notify, unsettled);
                    }
                }
            };
            match wait {
                Err(cell) => {
                    let _ = cell.wait(None).await;
                    self.forget(&key, cell.get_id());
                }
                Ok(notify) => {
                    // Created before the starter can notify (it needs the lock we dropped
                    // only after taking `notify`), so no wake-up is missed... unless it
                    // already notified: then the slot changed and the loop sees it.
                    let notified = notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    let still = matches!(self.lock().get(&key), Some(Slot::Starting(n)) if Arc::ptr_eq(n, &notify));
                    if still {
                        notified.await;
                    }
                }
            }
        };
        // Dropped however this ends: a failed or cancelled activation clears its slot.
        let guard = StartGuard { directory: self, key, notify, unsettled };
        let (actor, exit) = spawn(unsettled).await?;
        self.started.fetch_add(1, Ordering::AcqRel);
        let mut slots = self.lock();
        if matches!(slots.get(&guard.key), Some(Slot::Starting(n)) if Arc::ptr_eq(n, &guard.notify))
        {
            slots.insert(guard.key.clone(), Slot::Live(actor.clone(), exit));
        }
        drop(slots);
        Ok(actor)
    }

    /// An actor stopped: its slot goes, unless a newer actor holds it; marked
    /// [`Slot::Unsettled`] if it ended abruptly.
    fn forget(&self, key: &K, id: ractor::ActorId) {
        let mut slots = self.lock();
        let settled = match slots.get(key) {
            Some(Slot::Live(a, exit)) if a.get_id() == id => exit.settled(),
            _ => return,
        };
        if settled {
            slots.remove(key);
        } else {
            slots.insert(key.clone(), Slot::Unsettled);
        }
    }
}

fn accepting<M: ractor::Message>(actor: &ActorRef<M>) -> bool {
    matches!(actor.get_status(), ActorStatus::Starting | ActorStatus::Running)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use switchboard_core::mesh::{AgentSide, ConversationSide, RouterSide};
    use switchboard_core::router::{Router, StatusCause};
    use switchboard_core::session::Customer;
    use switchboard_core::time::secs;
    use switchboard_core::{AgentId, AgentStatus, CustomerId, GroupId};

    use super::*;

    /// A router side with a group and an online agent, and a link to the agent's side.
    fn router_side() -> RouterSide {
        let t0 = Timestamp(0);
        let mut router = Router::new(secs(60), Default::default());
        let mut out = Vec::new();
        router.upsert_group(t0, GroupId(1), Default::default(), &mut out);
        router
            .upsert_agent(t0, AgentId(1), 3, vec![GroupId(1)], Default::default(), &mut out)
            .unwrap();
        let mut side = RouterSide::new(router, Duration::from_secs(600)).with_agent_links();
        side.set_status(t0, AgentId(1), AgentStatus::Online, StatusCause::Agent).unwrap();
        side
    }

    /// Agents and groups are found by id through the index `named` builds, and only those
    /// the configuration has: a name left over from a deleted one finds nothing.
    #[test]
    fn the_configuration_finds_agents_and_groups_by_id() {
        let mut config = TenantConfig::default();
        config.agents.insert(AgentId(1), Default::default());
        config.groups.insert(GroupId(7), Default::default());
        let config = config.named(
            [(AgentId(1), "alice".to_owned()), (AgentId(2), "gone".to_owned())]
                .into_iter()
                .collect(),
            [(GroupId(7), "sales".to_owned()), (GroupId(8), "old".to_owned())]
                .into_iter()
                .collect(),
        );
        assert_eq!(config.agent_by_id("alice"), Some(AgentId(1)));
        assert_eq!(config.agent_by_id("gone"), None);
        assert_eq!(config.agent_by_id("bob"), None);
        assert_eq!(config.group_by_id("sales"), Some(GroupId(7)));
        assert_eq!(config.group_by_id("old"), None);
        assert_eq!(config.group_ref("t", "group", "tenants/t/groups/sales").unwrap(), GroupId(7));
        assert!(config.group_ref("t", "group", "tenants/t/groups/old").is_err());
        assert_eq!(config.agent_name(AgentId(2)), "gone");
    }

    fn round_trip<S: Serialize + DeserializeOwned>(side: &S, beside: Beside) -> (Vec<u8>, Vec<u8>) {
        let at = Timestamp(1_234);
        let bytes = encode_with(at, side, beside.by_ref()).unwrap();
        assert_eq!(bytes[0], VERSION);
        let (back_at, back, beside) = decode_with::<S>(&bytes).unwrap();
        assert_eq!(back_at, at);
        (bytes, encode_with(at, &back, beside.by_ref()).unwrap())
    }

    /// Every side's row reads back as written, fields by position (the router's tombstones,
    /// its one field left unwritten, must be its last for that), with what a conversation
    /// keeps beside its side.
    #[test]
    fn rows_are_written_by_position_and_read_back_as_written() {
        let (bytes, again) = round_trip(&router_side(), Beside::default());
        assert_eq!(bytes, again, "the router's row");
        let agent = AgentSide::new(AgentId(1), AgentStatus::Online);
        let (bytes, again) = round_trip(&agent, Beside::default());
        assert_eq!(bytes, again, "an agent's row");
        let conversation = ConversationSide::new(CustomerId(7), Customer::default());
        let extra = crate::state::ConversationExtra {
            tags: vec!["vip".into()],
            note: "called twice".into(),
            transcript_seq: 3,
        };
        let beside =
            Beside { customer: Some("c-7".into()), extra: Some((9, extra)), ..Beside::default() };
        let (bytes, again) = round_trip(&conversation, beside);
        assert_eq!(bytes, again, "a conversation's row");
        let (_, _, beside) = decode_with::<ConversationSide>(&bytes).unwrap();
        assert_eq!(beside.customer.as_deref(), Some("c-7"));
        assert_eq!(beside.extra.map(|(n, e)| (n, e.note)), Some((9, "called twice".into())));
    }

    /// A row written before (fields by name, absent ones left out) still loads, and is
    /// larger than the same row by position.
    #[test]
    fn a_row_with_fields_by_name_still_loads() {
        #[derive(Serialize)]
        struct Named<'a, S> {
            at_ms: u64,
            side: &'a S,
            #[serde(skip_serializing_if = "Option::is_none")]
            customer: Option<String>,
        }
        let side = router_side();
        let named = Named { at_ms: 77, side: &side, customer: Some("c-1".into()) };
        let mut bytes = vec![NAMED];
        rmp_serde::encode::write_named(&mut bytes, &named).unwrap();
        let (at, back, beside) = decode_with::<RouterSide>(&bytes).unwrap();
        assert_eq!((at, beside.customer.as_deref()), (Timestamp(77), Some("c-1")));
        let positional = encode_with(at, &back, beside.by_ref()).unwrap();
        assert!(
            positional.len() < bytes.len(),
            "{} by position, {} by name",
            positional.len(),
            bytes.len()
        );
        assert_eq!(encode(at, &back).unwrap(), encode(at, &side).unwrap(), "the same side");
        assert!(decode::<RouterSide>(&[9, 0]).is_err(), "an unknown layout is an error");
    }

    /// Keeps the reply port of each question, as a message left in a stopped actor's mailbox
    /// does (answering first if `answer`), and stops; with `go`, only once told to go on.
    struct Keeper {
        kept: Arc<Mutex<Vec<RpcReplyPort<u32>>>>,
        answer: bool,
        go: Option<Arc<Notify>>,
    }

    impl ractor::Actor for Keeper {
        type Msg = RpcReplyPort<u32>;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _: ActorRef<Self::Msg>,
            _: (),
        ) -> std::result::Result<(), ractor::ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            myself: ActorRef<Self::Msg>,
            port: RpcReplyPort<u32>,
            _: &mut (),
        ) -> std::result::Result<(), ractor::ActorProcessingErr> {
            if let Some(go) = &self.go {
                go.notified().await;
            }
            if self.answer {
                let _ = port.send(7);
            } else {
                self.kept.lock().unwrap().push(port);
            }
            myself.stop(None);
            Ok(())
        }
    }

    /// A question whose reply port outlives its actor, never answered, ends the wait once the
    /// actor stopped (ractor's `call` waited for ever); an answer given just before the stop
    /// is the answer.
    #[tokio::test]
    async fn asking_an_actor_that_stops_without_answering_ends_with_its_stop() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let keeper = Keeper { kept: kept.clone(), answer: false, go: None };
        let (actor, join) = ractor::Actor::spawn(None, keeper, ()).await.unwrap();
        let asked = ask(&actor, |port| port, None).await;
        assert!(matches!(asked, Ok(CallResult::SenderError)));
        assert_eq!(kept.lock().unwrap().len(), 1, "its reply port is still held");
        join.await.unwrap();

        let keeper = Keeper { kept: kept.clone(), answer: true, go: None };
        let (actor, join) = ractor::Actor::spawn(None, keeper, ()).await.unwrap();
        let asked = ask(&actor, |port| port, Some(Duration::from_secs(3600))).await;
        assert!(matches!(asked, Ok(CallResult::Success(7))));
        join.await.unwrap();
        let refused = ask(&actor, |port| port, None).await;
        assert!(refused.is_err(), "a stopped actor takes nothing");
    }

    /// A read its actor stopped without answering (a conversation actor passivating after its
    /// end) is answered by the next incarnation, not refused with UNAVAILABLE.
    #[tokio::test]
    async fn a_read_its_actor_dropped_goes_to_the_next_incarnation() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let incarnations = Mutex::new(vec![true, false]); // popped: the silent one first
        let resolve = || async {
            let answer = incarnations.lock().unwrap().pop().expect("at most two");
            let keeper = Keeper { kept: kept.clone(), answer, go: None };
            Ok(ractor::Actor::spawn(None, keeper, ()).await.unwrap().0)
        };
        let answer = read_retrying(resolve, |port| port).await.expect("answered");
        assert_eq!(answer, 7);
        assert_eq!(kept.lock().unwrap().len(), 1, "the first incarnation took it, unanswered");
        assert!(incarnations.lock().unwrap().is_empty(), "asked twice");
    }

    /// An actor draining behind a question it handles only once `go` is notified: its
    /// mailbox refuses everything meanwhile.
    async fn draining(go: &Arc<Notify>) -> ActorRef<RpcReplyPort<u32>> {
        let keeper = Keeper { kept: Arc::default(), answer: true, go: Some(go.clone()) };
        let (draining, _) = ractor::Actor::spawn(None, keeper, ()).await.unwrap();
        let (busy, _) = tokio::sync::oneshot::channel();
        draining.cast(busy.into()).unwrap();
        draining.drain().unwrap();
        draining
    }

    /// An actor that refuses a message is draining; the caller asks again only once it has
    /// stopped, so a directory that still hands it out as live (ractor closes the mailbox
    /// before it marks the status) does not use up the caller's tries.
    #[tokio::test]
    async fn a_refused_question_waits_for_the_draining_actor_to_stop() {
        let go = Arc::new(Notify::new());
        let draining = draining(&go).await;
        let resolved = Mutex::new(0);
        let resolve = || async {
            let n = {
                let mut resolved = resolved.lock().unwrap();
                *resolved += 1;
                *resolved
            };
            if n == 1 {
                go.notify_one();
            }
            if draining.get_status() != ActorStatus::Stopped {
                return Ok(draining.clone());
            }
            let keeper = Keeper { kept: Arc::default(), answer: true, go: None };
            Ok(ractor::Actor::spawn(None, keeper, ()).await.unwrap().0)
        };
        let answer = read_retrying(resolve, |port| port).await.expect("answered by the next one");
        assert_eq!(answer, 7);
        assert_eq!(*resolved.lock().unwrap(), 2, "asked the draining one once");
    }

    /// A message for an actor whose drain just closed its mailbox, while the directory still
    /// hands it out as live, reaches its successor rather than being lost until its sender
    /// resends.
    #[tokio::test]
    async fn a_message_refused_by_a_draining_actor_reaches_its_successor() {
        let go = Arc::new(Notify::new());
        let draining = draining(&go).await;
        let live = draining.clone();
        let find = move |_: &()| Found::Live(live.clone());
        let activations = Arc::new(AtomicU64::new(0));
        let activate = {
            let (draining, activations) = (draining.clone(), activations.clone());
            move |()| {
                let (draining, go) = (draining.clone(), go.clone());
                let n = activations.fetch_add(1, Ordering::AcqRel);
                async move {
                    if n == 0 {
                        go.notify_one();
                        return Ok(draining);
                    }
                    let keeper = Keeper { kept: Arc::default(), answer: true, go: None };
                    Ok(ractor::Actor::spawn(None, keeper, ()).await.unwrap().0)
                }
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        transport::cast_or_activate((), find, tx.into(), true, activate);
        assert_eq!(rx.await.expect("delivered to the successor"), 7);
        assert_eq!(activations.load(Ordering::Acquire), 2, "activated again once it stopped");
    }

    /// An actor that ended abruptly leaves its key to be settled by the next activation; one
    /// that passivated does not (`Slot::Unsettled`).
    #[tokio::test]
    async fn the_directory_marks_a_key_whose_actor_ended_abruptly() {
        let directory = Directory::<u32, RpcReplyPort<u32>>::default();
        let told = Arc::new(std::sync::Mutex::new(Vec::new()));
        let start = |exit: Arc<Exit>| {
            let told = told.clone();
            move |unsettled: bool| async move {
                told.lock().unwrap().push(unsettled);
                let keeper = Keeper { kept: Arc::default(), answer: true, go: None };
                let (actor, _) = ractor::Actor::spawn(None, keeper, ()).await.unwrap();
                Ok((actor, exit))
            }
        };
        // Killed: its exit not settled.
        let exit = Arc::new(Exit::default());
        let actor = directory.get(1, start(exit)).await.unwrap();
        actor.kill_and_wait(None).await.unwrap();
        directory.forget(&1, actor.get_id());
        assert!(matches!(directory.find(&1), Found::None));
        assert!(!directory.has(&1));
        // Passivated: settled.
        let exit = Arc::new(Exit::default());
        let actor = directory.get(1, start(exit.clone())).await.unwrap();
        exit.passivated();
        actor.stop_and_wait(None, None).await.unwrap();
        directory.forget(&1, actor.get_id());
        let actor = directory.get(1, start(Arc::new(Exit::default()))).await.unwrap();
        assert_eq!(*told.lock().unwrap(), vec![false, true, false]);
        actor.stop_and_wait(None, None).await.unwrap();
    }

    /// One look tells an actor taking messages from one being activated and from none (the
    /// transport decides on it whether an acknowledgement may wake an actor).
    #[tokio::test]
    async fn the_directory_tells_a_starting_actor_from_a_live_one() {
        let directory = Arc::new(Directory::<u32, RpcReplyPort<u32>>::default());
        assert!(matches!(directory.find(&1), Found::None));
        let (go, started) = tokio::sync::oneshot::channel::<()>();
        let starting = tokio::spawn({
            let directory = directory.clone();
            async move {
                let spawn = |_| async move {
                    let _ = started.await;
                    let keeper = Keeper { kept: Arc::default(), answer: true, go: None };
                    let (actor, _) = ractor::Actor::spawn(None, keeper, ()).await.unwrap();
                    Ok((actor, Arc::new(Exit::default())))
                };
                directory.get(1, spawn).await.unwrap()
            }
        });
        while !matches!(directory.find(&1), Found::Starting) {
            tokio::task::yield_now().await;
        }
        go.send(()).unwrap();
        let actor = starting.await.unwrap();
        assert!(matches!(directory.find(&1), Found::Live(ref a) if a.get_id() == actor.get_id()));
        // It answers and stops: stopped, it takes nothing, and nothing starts.
        let asked = ask(&actor, |port| port, None).await;
        assert!(matches!(asked, Ok(CallResult::Success(7))));
        actor.get_cell().wait(None).await.unwrap();
        assert!(matches!(directory.find(&1), Found::None));
    }
}
