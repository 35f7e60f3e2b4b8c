//! The mesh between nodes (issue 12 item 3): [`GrpcTransport`] sends an envelope whose actor
//! lives on another node over the internal `ActorMeshService`
//! (`proto/switchboard/internal/v1/mesh.proto`), and [`ActorMeshGrpc`] is that service on the
//! receiving node, which delivers into its local [`InProcess`] transport.
//!
//! - **Placement** decides: [`placement::resolve`] maps the envelope's actor key (router: the
//!   tenant; conversation: tenant and customer; agent: tenant and agent) onto its shard's owner in the node's
//!   [`Ownership`] view. Owned here: straight to `InProcess`. Elsewhere: in a batch over the
//!   pooled node-to-node channel the forwarder uses ([`crate::cluster::forward::Peers`],
//!   mutual TLS when the cluster has a CA). Nobody (a handover in progress): dropped.
//! - **Fire-and-forget, batched per peer, on one stream**: an envelope for another node joins
//!   that node's queue (at most [`MAX_QUEUED`]; beyond that it is dropped, so a slow peer
//!   costs bounded memory), and the queue's pump sends what accumulated as one batch whenever
//!   one of its [`CALLS_PER_PEER`] batch slots is free: idle, an envelope leaves at once;
//!   under load many share one batch (a quarter of the actor path's CPU went to one call per
//!   envelope). The batches go on one long-lived `DeliverStream` per peer ([`Outgoing`]),
//!   answered in order: a call per batch cost each one an HTTP/2 stream's headers, tasks and
//!   wake-ups on both nodes, at about 0.6 calls per command in a three-node cluster. Each
//!   batch has a short deadline ([`DELIVER_DEADLINE`]), far below the router's `linger` (the
//!   protocol assumes no envelope arrives later than that after it was sent): a batch not
//!   answered within it ends the stream, and the next batch opens another. A failed, late or
//!   refused envelope is dropped, never retried: the links resend what stays unacknowledged.
//!   A peer without `DeliverStream` gets one `DeliverBatch` call per batch (deadline carried
//!   as `grpc-timeout`), and one without that (an older node) one `Deliver` per envelope,
//!   each for a while.
//! - **The receiver checks ownership**: an envelope for a key whose shard this node does not
//!   serve (any more) is refused with UNAVAILABLE and delivered nowhere, so an actor never
//!   runs on a node that does not own its shard, whatever the sender's view. On a cluster
//!   node ([`super::meshes::Meshes`]) the tenant's mesh is created by its first envelope.
//! - **The receiver is bounded**: at most [`MAX_INBOUND`](super::meshes::MAX_INBOUND)
//!   envelopes per tenant accepted and not yet handled by their actors (each carries a
//!   [`Ticket`](super::Ticket) until its actor has handled it); beyond that RESOURCE_EXHAUSTED,
//!   and the sender drops the envelope (the link resends it).
//! - **Encoding**: the envelope's header (direction, conversation, customer or agent, epoch,
//!   sequence or acknowledgement) is typed; the message (`ToRouter` / `ToConversation`, and
//!   on an agent's link `FromAgent` / `ToAgent`) is the core's
//!   serde encoding (MessagePack, fields by name, [`PAYLOAD_VERSION`]) in a `bytes` field. It
//!   is the encoding the actors' rows already keep unacknowledged messages in, so it changes
//!   under the same compatibility rules; a full prost mapping of the core's route requests
//!   and placement facts would be a second copy of those types to keep in step.
//! - **Desk entries** (`MESH_DIRECTION_DESK_ENTRY`, [`Transport::desk_entry`]): a durable
//!   entry of an agent's desk stream written here goes, after its write, to the node of the
//!   agent's actor (where the desk is read), in the same per-peer batches, as a hint for that
//!   node's hub: no actor handles it, nothing acknowledges it, a lost one only makes the
//!   reader find the entry in the store later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::counter;
use pb::actor_mesh_service_client::ActorMeshServiceClient;
use pb::actor_mesh_service_server::{ActorMeshService, ActorMeshServiceServer};
use prost::Message as _;
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard_core::mesh::{
    AgentEnvelope, Body, Envelope, FromAgent, ToAgent, ToConversation, ToRouter,
};
use switchboard_core::{AgentId, ConversationId, CustomerId};
use switchboard_proto::internal::v1 as pb;
use switchboard_proto::internal::v1::StreamItem;
use tokio::sync::{Semaphore, mpsc};

use super::Transport;
use super::meshes::{MAX_INBOUND, Meshes};
use super::placement::{self, ActorKey};
use super::transport::{DeskEntry, InProcess, Wire};
use crate::cluster::{Ownership, Route};
use crate::error::Error;
use crate::metrics as m;

/// How long one node-to-node delivery may take before the sender gives up on it (and, through
/// `grpc-timeout`, the receiver too). Far below `MeshOptions::linger` (an hour by default);
/// a lost envelope costs one retransmission interval.
pub const DELIVER_DEADLINE: Duration = Duration::from_secs(2);
/// Envelopes queued for one peer node before further ones are dropped (the links resend
/// them), so a slow peer costs bounded memory.
pub const MAX_QUEUED: usize = 4096;
/// Batches sent to one peer node and not answered yet. While they are, what the actors send
/// queues up and leaves in the next batch: under load one batch carries many envelopes,
/// idle it carries one at once.
pub const CALLS_PER_PEER: usize = 2;
/// At most this many envelopes, and [`MAX_BATCH_BYTES`] encoded, per call.
pub const MAX_BATCH: usize = 512;
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// A peer's queue ends after this long without an envelope (a departed node's with it).
const PEER_IDLE: Duration = Duration::from_secs(60);
/// How long a peer without `DeliverStream` (or `DeliverBatch`) gets batch calls (or single
/// deliveries) before the newer way is tried again (it may have been upgraded meanwhile).
const LEGACY_RETRY: Duration = Duration::from_secs(60);
/// `MeshMessage.payload_version`: MessagePack of the core's message, fields by name.
pub const PAYLOAD_VERSION: u32 = 1;

/// Envelopes to actors on this node go to `local`; the others to their owner over gRPC.
#[allow(missing_debug_implementations)] // an ownership view and queue senders
pub struct GrpcTransport {
    local: Arc<InProcess>,
    ownership: Arc<Ownership>,
    deadline: Duration,
    /// One queue per peer address, drained by its [`pump`].
    queues: Mutex<FxHashMap<String, mpsc::Sender<pb::DeliverRequest>>>,
    undelivered: Arc<AtomicU64>,
}

impl GrpcTransport {
    pub fn new(local: Arc<InProcess>, ownership: Arc<Ownership>) -> Self {
        GrpcTransport {
            local,
            ownership,
            deadline: DELIVER_DEADLINE,
            queues: Mutex::default(),
            undelivered: Arc::default(),
        }
    }

    /// Another deadline per delivery (it must stay well below the mesh's `linger`).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Envelopes for other nodes it dropped so far (failed, timed out, unavailable, over the
    /// queue's bound, or for a shard without an owner); the links resend them.
    pub fn undelivered(&self) -> u64 {
        self.undelivered.load(Ordering::Relaxed)
    }

    fn drop_one(&self, why: &'static str) {
        self.undelivered.fetch_add(1, Ordering::Relaxed);
        outcome(why);
    }

    /// Queues one delivery to the node at `addr`; its pump sends it.
    fn send(&self, addr: &str, request: Option<pb::DeliverRequest>) {
        let Some(mut request) = request else { return self.drop_one("failed") };
        // The sender's configuration version: a receiver with an older one reloads first.
        request.config_version = self.local.mesh(&request.tenant).map_or(0, |m| m.config_version());
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        let request = match queues.get(addr) {
            Some(queue) => match queue.try_send(request) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => return self.drop_one("busy"),
                // Its pump ended (idle): a new one takes it.
                Err(mpsc::error::TrySendError::Closed(request)) => request,
            },
            None => request,
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.drop_one("failed");
        };
        let (tx, rx) = mpsc::channel(MAX_QUEUED);
        if tx.try_send(request).is_err() {
            return self.drop_one("failed");
        }
        let peer = Peer {
            addr: addr.to_owned(),
            ownership: self.ownership.clone(),
            deadline: self.deadline,
            undelivered: self.undelivered.clone(),
            unary: Fallback::default(),
            legacy: Fallback::default(),
        };
        runtime.spawn(pump(rx, peer));
        queues.insert(addr.to_owned(), tx);
    }
}

/// Where a pump sends, and what it reports to (shared by its calls).
struct Peer {
    addr: String,
    ownership: Arc<Ownership>,
    deadline: Duration,
    undelivered: Arc<AtomicU64>,
    /// While on, the peer gets one `DeliverBatch` call per batch (it answered `DeliverStream`
    /// with UNIMPLEMENTED).
    unary: Fallback,
    /// While on, one `Deliver` per envelope (it answered `DeliverBatch` so too).
    legacy: Fallback,
}

/// An older way of sending, taken for [`LEGACY_RETRY`] after a peer did not know the newer.
#[derive(Default)]
struct Fallback(Mutex<Option<tokio::time::Instant>>);

impl Fallback {
    fn on(&self) -> bool {
        let until = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        until.is_some_and(|at| tokio::time::Instant::now() < at)
    }

    fn start(&self) {
        let mut until = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *until = Some(tokio::time::Instant::now() + LEGACY_RETRY);
    }
}

impl Peer {
    fn dropped(&self, n: usize, why: &'static str) {
        self.undelivered.fetch_add(n as u64, Ordering::Relaxed);
        counter!(m::MESH_ENVELOPES, "outcome" => why).increment(n as u64);
    }

    /// A batch's answer: its refused envelopes dropped, the others sent.
    fn answered(&self, n: usize, refused: Vec<pb::DeliveryRefusal>) {
        counter!(m::MESH_ENVELOPES, "outcome" => "sent").increment((n - refused.len()) as u64);
        counter!(m::MESH_BATCHES).increment(1);
        for r in refused {
            self.dropped(1, refused_why(tonic::Code::from(r.code)));
        }
    }
}

/// Sends one peer's queue: waits for one of [`CALLS_PER_PEER`] batch slots, then takes what
/// queued meanwhile (at least one envelope, at most one batch) into one batch, on the peer's
/// stream (opened again if it ended) or, for an older peer, in a call. Ends once the queue
/// stayed empty for [`PEER_IDLE`] (what raced in is still sent) or its transport is gone;
/// its stream ends with it.
async fn pump(mut rx: mpsc::Receiver<pb::DeliverRequest>, peer: Peer) {
    let peer = Arc::new(peer);
    let calls = Arc::new(Semaphore::new(CALLS_PER_PEER));
    let mut stream: Option<Outgoing> = None;
    loop {
        let Ok(permit) = calls.clone().acquire_owned().await else { return };
        let first = match tokio::time::timeout(PEER_IDLE, rx.recv()).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(_) => {
                rx.close();
                match rx.try_recv() {
                    Ok(request) => request,
                    Err(_) => return,
                }
            }
        };
        let mut size = first.encoded_len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && size < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(request) => {
                    size += request.encoded_len();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        // The peer's channel only to open a stream or make a call: an open stream has one.
        let client =
            || peer.ownership.peers().channel(&peer.addr).ok().map(ActorMeshServiceClient::new);
        if !peer.unary.on() {
            stream = match stream.take() {
                Some(open) if open.is_open() => Some(open),
                _ => client().map(|client| Outgoing::open(client, peer.clone())),
            };
            match &stream {
                Some(open) => open.send(batch, permit, &peer),
                None => peer.dropped(batch.len(), "failed"),
            }
            continue;
        }
        let Some(client) = client() else {
            peer.dropped(batch.len(), "failed");
            continue;
        };
        let peer = peer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            deliver_batch(client, batch, &peer).await;
        });
    }
}

/// A peer's `DeliverStream`: batches go in through `tx`, in order, and [`drive`] hands each
/// answer to the oldest batch sent and not answered yet.
struct Outgoing {
    tx: mpsc::UnboundedSender<pb::DeliverBatchRequest>,
    pending: Arc<Mutex<Pending>>,
}

/// What a stream's batches wait for, shared by the pump and the stream's [`drive`].
#[derive(Default)]
struct Pending {
    /// The stream ended: nothing more is sent on it (its batches were dropped).
    closed: bool,
    /// Sent and not answered, oldest first.
    sent: std::collections::VecDeque<Sent>,
}

/// A batch on the stream: when it went, how many envelopes, and its slot (free once it is
/// answered or dropped).
struct Sent {
    at: tokio::time::Instant,
    n: usize,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Outgoing {
    fn open(client: ActorMeshServiceClient<tonic::transport::Channel>, peer: Arc<Peer>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(Mutex::new(Pending::default()));
        tokio::spawn(drive(client, rx, pending.clone(), peer));
        Outgoing { tx, pending }
    }

    fn is_open(&self) -> bool {
        !self.pending.lock().unwrap_or_else(PoisonError::into_inner).closed
    }

    /// Sends `batch`, which keeps `slot` until it is answered or dropped; on a stream that
    /// ended meanwhile it is dropped now.
    fn send(
        &self,
        batch: Vec<pb::DeliverRequest>,
        slot: tokio::sync::OwnedSemaphorePermit,
        peer: &Peer,
    ) {
        let n = batch.len();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.closed || self.tx.send(pb::DeliverBatchRequest { deliveries: batch }).is_err() {
            drop(pending);
            return peer.dropped(n, "failed");
        }
        let at = tokio::time::Instant::now();
        pending.sent.push_back(Sent { at, n, _slot: slot });
    }
}

/// Runs one `DeliverStream` until it ends, then closes it: what it left unanswered is
/// dropped (the links resend it), and the pump's next batch opens another.
async fn drive(
    client: ActorMeshServiceClient<tonic::transport::Channel>,
    rx: mpsc::UnboundedReceiver<pb::DeliverBatchRequest>,
    pending: Arc<Mutex<Pending>>,
    peer: Arc<Peer>,
) {
    let why = answer_batches(client, rx, &pending, &peer).await;
    let lost = {
        let mut pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.closed = true;
        std::mem::take(&mut pending.sent)
    };
    let n = lost.iter().map(|sent| sent.n).sum();
    if n > 0 {
        peer.dropped(n, why);
    }
}

/// Opens the stream and matches its answers to its batches, in order, until it ends (the
/// pump dropped its sender, the peer or the connection went away) or its oldest batch goes
/// unanswered past the deadline; returns the outcome of what is left unanswered.
async fn answer_batches(
    mut client: ActorMeshServiceClient<tonic::transport::Channel>,
    rx: mpsc::UnboundedReceiver<pb::DeliverBatchRequest>,
    pending: &Mutex<Pending>,
    peer: &Peer,
) -> &'static str {
    let requests = tokio_stream::wrappers::UnboundedReceiverStream::new(rx);
    let mut answers =
        match tokio::time::timeout(peer.deadline, client.deliver_stream(requests)).await {
            Ok(Ok(answers)) => answers.into_inner(),
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unimplemented {
                    peer.unary.start();
                }
                return refused_why(status.code());
            }
            Err(_) => return "timed_out",
        };
    let oldest = || {
        let pending = pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.sent.front().map(|sent| sent.at + peer.deadline)
    };
    loop {
        // Idle, it looks again after a deadline: a batch sent meanwhile is late only past
        // its own.
        let wake = oldest().unwrap_or_else(|| tokio::time::Instant::now() + peer.deadline);
        match tokio::time::timeout_at(wake, answers.message()).await {
            Ok(Ok(Some(answer))) => {
                let sent = pending.lock().unwrap_or_else(PoisonError::into_inner).sent.pop_front();
                // An answer to no batch: the peer does not follow the protocol.
                let Some(sent) = sent else { return "failed" };
                peer.answered(sent.n, answer.refused);
            }
            Ok(Ok(None)) => return "failed",
            Ok(Err(status)) => return refused_why(status.code()),
            Err(_) if oldest().is_some_and(|due| due <= tokio::time::Instant::now()) => {
                return "timed_out";
            }
            Err(_) => {}
        }
    }
}

/// One call carrying `batch`. A peer that answers UNIMPLEMENTED (an older node, during a
/// rolling upgrade) gets one `Deliver` per envelope for [`LEGACY_RETRY`]; the batch it
/// refused is dropped (the links resend it).
async fn deliver_batch(
    mut client: ActorMeshServiceClient<tonic::transport::Channel>,
    batch: Vec<pb::DeliverRequest>,
    peer: &Peer,
) {
    if peer.legacy.on() {
        let mut calls = tokio::task::JoinSet::new();
        for request in batch {
            let (mut client, deadline) = (client.clone(), peer.deadline);
            let mut request = tonic::Request::new(request);
            request.set_timeout(deadline);
            calls.spawn(
                async move { tokio::time::timeout(deadline, client.deliver(request)).await },
            );
        }
        while let Some(result) = calls.join_next().await {
            match result {
                Ok(Ok(Ok(_))) => outcome("sent"),
                Ok(Ok(Err(status))) => peer.dropped(1, refused_why(status.code())),
                Ok(Err(_)) => peer.dropped(1, "timed_out"),
                Err(_) => peer.dropped(1, "failed"),
            }
        }
        return;
    }
    let n = batch.len();
    let mut request = tonic::Request::new(pb::DeliverBatchRequest { deliveries: batch });
    request.set_timeout(peer.deadline);
    match tokio::time::timeout(peer.deadline, client.deliver_batch(request)).await {
        Ok(Ok(answer)) => peer.answered(n, answer.into_inner().refused),
        Ok(Err(status)) => {
            if status.code() == tonic::Code::Unimplemented {
                peer.legacy.start();
            }
            peer.dropped(n, refused_why(status.code()));
        }
        Err(_) => peer.dropped(n, "timed_out"),
    }
}

/// The sender's outcome for a receiver's refusal.
fn refused_why(code: tonic::Code) -> &'static str {
    match code {
        // The receiver does not own the key, or there is no connection.
        tonic::Code::Unavailable => "unavailable",
        // The receiver's tenant has too many envelopes unhandled.
        tonic::Code::ResourceExhausted => "exhausted",
        _ => "failed",
    }
}

fn outcome(outcome: &'static str) {
    counter!(m::MESH_ENVELOPES, "outcome" => outcome).increment(1);
}

impl GrpcTransport {
    /// To `key`'s owner: here through `local`, elsewhere as `wire` encodes it.
    fn route<E>(
        &self,
        key: ActorKey<'_>,
        envelope: E,
        local: impl FnOnce(&InProcess, E),
        wire: impl FnOnce(&E) -> Option<pb::DeliverRequest>,
    ) {
        match placement::resolve(&self.ownership, key) {
            Route::Local(_) => local(&self.local, envelope),
            Route::Remote { addr, .. } => self.send(&addr, wire(&envelope)),
            Route::Unowned { .. } => self.drop_one("unowned"),
        }
    }
}

impl Transport for GrpcTransport {
    fn to_router(&self, tenant: &str, envelope: Envelope<ToRouter>) {
        let key = ActorKey::Router { tenant };
        let wire = |e: &_| encode(tenant, pb::MeshDirection::ToRouter, e);
        self.route(key, envelope, |local, e| local.to_router(tenant, e), wire);
    }

    fn to_conversation(&self, tenant: &str, envelope: Envelope<ToConversation>) {
        let key = ActorKey::Conversation { tenant, customer: envelope.customer };
        let wire = |e: &_| encode(tenant, pb::MeshDirection::ToConversation, e);
        self.route(key, envelope, |local, e| local.to_conversation(tenant, e), wire);
    }

    fn to_agent(&self, tenant: &str, envelope: AgentEnvelope<ToAgent>) {
        let key = ActorKey::Agent { tenant, agent: envelope.agent };
        let wire = |e: &_| encode_agent(tenant, pb::MeshDirection::ToAgent, e);
        self.route(key, envelope, |local, e| local.to_agent(tenant, e), wire);
    }

    fn to_router_from_agent(&self, tenant: &str, envelope: AgentEnvelope<FromAgent>) {
        let key = ActorKey::Router { tenant };
        let wire = |e: &_| encode_agent(tenant, pb::MeshDirection::FromAgent, e);
        self.route(key, envelope, |local, e| local.to_router_from_agent(tenant, e), wire);
    }

    fn desk_entry(&self, tenant: &str, agent: AgentId, seq: u64, item: &StreamItem) {
        // Here, this node's hub has it already.
        if let Route::Remote { addr, .. } =
            placement::resolve(&self.ownership, ActorKey::Agent { tenant, agent })
        {
            self.send(&addr, Some(encode_desk_entry(tenant, agent, seq, item)));
        }
    }

    /// Early only to this node's actors: they share its writer.
    fn early(&self, tenant: &str, generation: u64, wire: Wire) -> Option<Wire> {
        match placement::resolve(&self.ownership, wire.key(tenant)) {
            Route::Local(_) => self.local.early(tenant, generation, wire),
            _ => Some(wire),
        }
    }
}

/// The wire form of an envelope (`None`: its message does not encode, which the core's types
/// never do).
pub fn encode<M: Serialize>(
    tenant: &str,
    direction: pb::MeshDirection,
    envelope: &Envelope<M>,
) -> Option<pb::DeliverRequest> {
    Some(pb::DeliverRequest {
        tenant: tenant.to_owned(),
        config_version: 0,
        envelope: Some(pb::MeshEnvelope {
            direction: direction as i32,
            conversation: envelope.conversation.0,
            customer: envelope.customer.0,
            epoch: envelope.epoch,
            body: Some(wire_body(&envelope.body)?),
            agent: 0,
            since: 0,
        }),
    })
}

/// The wire form of an envelope on an agent's link, as [`encode`].
pub fn encode_agent<M: Serialize>(
    tenant: &str,
    direction: pb::MeshDirection,
    envelope: &AgentEnvelope<M>,
) -> Option<pb::DeliverRequest> {
    Some(pb::DeliverRequest {
        tenant: tenant.to_owned(),
        config_version: 0,
        envelope: Some(pb::MeshEnvelope {
            direction: direction as i32,
            conversation: 0,
            customer: 0,
            epoch: envelope.epoch,
            body: Some(wire_body(&envelope.body)?),
            agent: envelope.agent.0,
            since: 0,
        }),
    })
}

/// The wire form of a desk entry for the live readers on another node
/// ([`Transport::desk_entry`]): the stream item itself (protobuf, payload version 0) at its
/// position.
pub fn encode_desk_entry(
    tenant: &str,
    agent: AgentId,
    seq: u64,
    item: &StreamItem,
) -> pb::DeliverRequest {
    pb::DeliverRequest {
        tenant: tenant.to_owned(),
        config_version: 0,
        envelope: Some(pb::MeshEnvelope {
            direction: pb::MeshDirection::DeskEntry as i32,
            conversation: 0,
            customer: 0,
            epoch: 0,
            body: Some(pb::mesh_envelope::Body::Message(pb::MeshMessage {
                seq,
                payload_version: 0,
                payload: item.encode_to_vec(),
            })),
            agent: agent.0,
            since: 0,
        }),
    }
}

/// A desk entry as [`encode_desk_entry`] sent it.
fn desk_entry(envelope: &pb::MeshEnvelope) -> Result<DeskEntry, Error> {
    let field = |field: &str, message: String| Error::Field { field: field.into(), message };
    let Some(pb::mesh_envelope::Body::Message(m)) = &envelope.body else {
        return Err(field("envelope.body", "a desk entry is a message".into()));
    };
    if m.payload_version != 0 {
        return Err(field(
            "envelope.message.payload_version",
            format!("a desk entry's payload version is 0, not {}", m.payload_version),
        ));
    }
    let item = StreamItem::decode(m.payload.as_slice()).map_err(|e| {
        field("envelope.message.payload", format!("the stream item does not decode: {e}"))
    })?;
    Ok(DeskEntry { agent: AgentId(envelope.agent), seq: m.seq, item })
}

fn wire_body<M: Serialize>(body: &Body<M>) -> Option<pb::mesh_envelope::Body> {
    Some(match body {
        Body::Message { seq, message } => pb::mesh_envelope::Body::Message(pb::MeshMessage {
            seq: *seq,
            payload_version: PAYLOAD_VERSION,
            payload: rmp_serde::to_vec_named(message).ok()?,
        }),
        Body::Ack { next } => pb::mesh_envelope::Body::Ack(pb::MeshAck { next: *next }),
    })
}

/// Reads a received envelope; a malformed one is INVALID_ARGUMENT naming the field.
pub fn decode(request: &pb::DeliverRequest) -> Result<Wire, Error> {
    let field = |field: &str, message: String| Error::Field { field: field.into(), message };
    if request.tenant.is_empty() {
        return Err(field("tenant", "the tenant id is required".into()));
    }
    let Some(envelope) = &request.envelope else {
        return Err(field("envelope", "the envelope is required".into()));
    };
    let direction =
        pb::MeshDirection::try_from(envelope.direction).unwrap_or(pb::MeshDirection::Unspecified);
    match direction {
        pb::MeshDirection::ToRouter => Ok(Wire::ToRouter(body(envelope)?)),
        pb::MeshDirection::ToConversation => Ok(Wire::ToConversation(body(envelope)?)),
        pb::MeshDirection::ToAgent => Ok(Wire::ToAgent(agent_body(envelope)?)),
        pb::MeshDirection::FromAgent => Ok(Wire::FromAgent(agent_body(envelope)?)),
        pb::MeshDirection::DeskEntry => Ok(Wire::DeskEntry(desk_entry(envelope)?)),
        // A node from before desk entries were written by their makers: nothing to do.
        pb::MeshDirection::ToDesk | pb::MeshDirection::FromDesk => Err(field(
            "envelope.direction",
            "TO_DESK and FROM_DESK are no longer used: desk links are gone (upgrade the sender)"
                .into(),
        )),
        pb::MeshDirection::Unspecified => Err(field(
            "envelope.direction",
            format!(
                "{} is not a direction: TO_ROUTER, TO_CONVERSATION, TO_AGENT or FROM_AGENT",
                envelope.direction
            ),
        )),
    }
}

fn body<M: DeserializeOwned>(envelope: &pb::MeshEnvelope) -> Result<Envelope<M>, Error> {
    Ok(Envelope {
        conversation: ConversationId(envelope.conversation),
        customer: CustomerId(envelope.customer),
        epoch: envelope.epoch,
        body: read_body(envelope)?,
    })
}

fn agent_body<M: DeserializeOwned>(envelope: &pb::MeshEnvelope) -> Result<AgentEnvelope<M>, Error> {
    Ok(AgentEnvelope {
        agent: AgentId(envelope.agent),
        epoch: envelope.epoch,
        body: read_body(envelope)?,
    })
}

fn read_body<M: DeserializeOwned>(envelope: &pb::MeshEnvelope) -> Result<Body<M>, Error> {
    let field = |field: &str, message: String| Error::Field { field: field.into(), message };
    Ok(match &envelope.body {
        Some(pb::mesh_envelope::Body::Message(m)) => {
            if m.payload_version != PAYLOAD_VERSION {
                return Err(field(
                    "envelope.message.payload_version",
                    format!(
                        "payload version {} is not known here (this node reads {PAYLOAD_VERSION})",
                        m.payload_version
                    ),
                ));
            }
            let message = rmp_serde::from_slice(&m.payload).map_err(|e| {
                field("envelope.message.payload", format!("the message does not decode: {e}"))
            })?;
            Body::Message { seq: m.seq, message }
        }
        Some(pb::mesh_envelope::Body::Ack(a)) => Body::Ack { next: a.next },
        None => return Err(field("envelope.body", "a message or an ack is required".into())),
    })
}

/// A `DeliverStream`'s answers, one per batch, in order.
pub type Answers = std::pin::Pin<
    Box<dyn futures_util::Stream<Item = Result<pb::DeliverBatchResponse, tonic::Status>> + Send>,
>;

/// `ActorMeshService` on the receiving node: checks that it owns the key's shard and hands
/// the envelope to its local actors.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // an ownership view and the local transport
pub struct ActorMeshGrpc {
    local: Arc<InProcess>,
    ownership: Arc<Ownership>,
    /// Creates a tenant's mesh on its first envelope (a cluster node); without it, only
    /// meshes already attached to `local` receive.
    meshes: Option<Arc<Meshes>>,
    /// Envelopes per tenant accepted and not yet handled.
    bound: usize,
    /// The node's hub: its closing (the node shuts down) ends every `DeliverStream` here, so
    /// the server drains (a peer's stream never ends by itself).
    hub: Option<crate::hub::Hub>,
}

impl ActorMeshGrpc {
    pub fn new(local: Arc<InProcess>, ownership: Arc<Ownership>) -> Self {
        ActorMeshGrpc { local, ownership, meshes: None, bound: MAX_INBOUND, hub: None }
    }

    /// Ends every `DeliverStream` when `hub` closes (see [`crate::hub::Hub::close`]).
    pub fn closing_with(mut self, hub: crate::hub::Hub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// Creates the mesh of a tenant that has none here yet on its first envelope.
    pub fn on_demand(mut self, meshes: Arc<Meshes>) -> Self {
        self.meshes = Some(meshes);
        self
    }

    /// Another bound on the envelopes per tenant accepted and not yet handled.
    pub fn with_bound(mut self, bound: usize) -> Self {
        self.bound = bound;
        self
    }

    /// The service, ready for `Server::add_service`.
    pub fn server(self) -> ActorMeshServiceServer<ActorMeshGrpc> {
        ActorMeshServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl ActorMeshService for ActorMeshGrpc {
    async fn deliver(
        &self,
        request: tonic::Request<pb::DeliverRequest>,
    ) -> Result<tonic::Response<pb::DeliverResponse>, tonic::Status> {
        self.deliver_one(request.into_inner()).await?;
        Ok(tonic::Response::new(pb::DeliverResponse {}))
    }

    async fn deliver_batch(
        &self,
        request: tonic::Request<pb::DeliverBatchRequest>,
    ) -> Result<tonic::Response<pb::DeliverBatchResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.deliver_all(request.into_inner()).await))
    }

    type DeliverStreamStream = Answers;

    async fn deliver_stream(
        &self,
        request: tonic::Request<tonic::Streaming<pb::DeliverBatchRequest>>,
    ) -> Result<tonic::Response<Answers>, tonic::Status> {
        // One batch at a time, each answered before the next is read. The answers end with
        // the batches (the sender's stream finished or broke), or when the node shuts down:
        // the sender drops what it was not answered, and opens another stream for the next.
        use futures_util::StreamExt as _;
        let answers = futures_util::stream::unfold(
            (self.clone(), request.into_inner()),
            |(this, mut batches)| async move {
                let batch = batches.message().await.ok()??;
                let answer = this.deliver_all(batch).await;
                Some((Ok(answer), (this, batches)))
            },
        );
        Ok(tonic::Response::new(match &self.hub {
            Some(hub) => Box::pin(answers.take_until(hub.closed())),
            None => Box::pin(answers),
        }))
    }

    async fn reconfigure(
        &self,
        request: tonic::Request<pb::ReconfigureRequest>,
    ) -> Result<tonic::Response<pb::ReconfigureResponse>, tonic::Status> {
        let r = request.into_inner();
        // Only a running mesh: one started later loads the newest configuration anyway.
        if let Some(mesh) = self.local.mesh(&r.tenant) {
            mesh.refresh(r.config_version).await?;
        }
        Ok(tonic::Response::new(pb::ReconfigureResponse {}))
    }
}

impl ActorMeshGrpc {
    /// A batch's envelopes, each as `Deliver` would take it; the answer names the refused.
    async fn deliver_all(&self, batch: pb::DeliverBatchRequest) -> pb::DeliverBatchResponse {
        let mut refused = Vec::new();
        for (index, delivery) in batch.deliveries.into_iter().enumerate() {
            if let Err(status) = self.deliver_one(delivery).await {
                refused.push(pb::DeliveryRefusal {
                    index: index as u32,
                    code: status.code() as i32,
                    message: status.message().to_owned(),
                });
            }
        }
        pb::DeliverBatchResponse { refused }
    }

    /// One envelope into its actor's mailbox, or the status that says why not.
    async fn deliver_one(&self, request: pb::DeliverRequest) -> Result<(), tonic::Status> {
        let received = decode(&request)?;
        let tenant = request.tenant.as_str();
        let key = received.key(tenant);
        let shard = key.shard(self.ownership.shards());
        if !self.ownership.is_local(shard) {
            outcome("not_owner");
            return Err(Error::Unavailable(format!(
                "node {} does not own shard {shard} of the {key}; the sender resends once \
                 its view of the cluster changes",
                self.ownership.node_id()
            ))
            .into());
        }
        let mesh = match (self.local.mesh(tenant), &self.meshes) {
            (Some(mesh), _) => mesh,
            (None, Some(meshes)) => meshes.mesh(tenant).await.inspect_err(|_| {
                outcome("not_running");
            })?,
            (None, None) => {
                outcome("not_running");
                return Err(Error::Unavailable(format!(
                    "the actors of tenant {tenant} are not running on node {}; retry",
                    self.ownership.node_id()
                ))
                .into());
            }
        };
        // A sender with a newer configuration: this mesh takes it before the envelope is
        // handled (coalesced per tenant; a failed reload refuses the envelope, resent later).
        if request.config_version > mesh.config_version() {
            mesh.refresh(request.config_version).await?;
        }
        let Some(ticket) = mesh.admit(self.bound) else {
            outcome("exhausted");
            return Err(Error::ResourceExhausted(format!(
                "node {} holds {} envelopes of tenant {tenant} not yet handled; the sender \
                 resends this one later",
                self.ownership.node_id(),
                self.bound
            ))
            .into());
        };
        outcome("received");
        self.local.deliver(tenant, received, Some(ticket), None);
        Ok(())
    }
}

/// Tells every other live member that `tenant`'s configuration is at `version`, waiting at
/// most [`DELIVER_DEADLINE`] for each (concurrently). A member that does not answer in time
/// takes the change with the router's next envelope to its actors, which carries the
/// version: what it misses is logged, not an error of the configuration command (durable
/// already).
pub async fn reconfigure_peers(ownership: &Ownership, tenant: &str, version: u64) {
    let me = ownership.node_id().to_owned();
    let mut calls = tokio::task::JoinSet::new();
    for (node, addr) in ownership.view().members {
        if node == me {
            continue;
        }
        let Ok(channel) = ownership.peers().channel(&addr) else { continue };
        let request = pb::ReconfigureRequest { tenant: tenant.to_owned(), config_version: version };
        calls.spawn(async move {
            let mut client = ActorMeshServiceClient::new(channel);
            let mut request = tonic::Request::new(request);
            request.set_timeout(DELIVER_DEADLINE);
            let answered =
                tokio::time::timeout(DELIVER_DEADLINE, client.reconfigure(request)).await;
            (node, answered)
        });
    }
    while let Some(done) = calls.join_next().await {
        let Ok((node, answered)) = done else { continue };
        let failed = match answered {
            Ok(Ok(_)) => continue,
            Ok(Err(status)) => status.to_string(),
            Err(_) => format!("no answer within {DELIVER_DEADLINE:?}"),
        };
        tracing::warn!(
            tenant,
            node,
            version,
            error = failed,
            "a member did not take the new configuration now; it will with the next envelope"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_survives_the_wire_both_ways() {
        let to_router = Envelope {
            conversation: ConversationId(11),
            customer: CustomerId(7),
            epoch: 3,
            body: Body::Message { seq: 4, message: ToRouter::Raise { priority: 3 } },
        };
        let request = encode("acme", pb::MeshDirection::ToRouter, &to_router).unwrap();
        assert_eq!(request.tenant, "acme");
        assert_eq!(decode(&request).unwrap(), Wire::ToRouter(to_router));
        let ack: Envelope<ToConversation> = Envelope {
            conversation: ConversationId(11),
            customer: CustomerId(7),
            epoch: 9,
            body: Body::Ack { next: 5 },
        };
        let request = encode("acme", pb::MeshDirection::ToConversation, &ack).unwrap();
        assert_eq!(decode(&request).unwrap(), Wire::ToConversation(ack));
    }

    #[test]
    fn an_agents_envelope_survives_the_wire_both_ways() {
        use switchboard_core::AgentStatus;
        use switchboard_core::router::StatusCause;
        let from_agent = AgentEnvelope {
            agent: AgentId(5),
            epoch: 2,
            body: Body::Message {
                seq: 3,
                message: FromAgent::Status {
                    status: AgentStatus::Online,
                    cause: StatusCause::Agent,
                },
            },
        };
        let request = encode_agent("acme", pb::MeshDirection::FromAgent, &from_agent).unwrap();
        assert_eq!(request.envelope.as_ref().unwrap().agent, 5);
        assert_eq!(decode(&request).unwrap(), Wire::FromAgent(from_agent));
        let to_agent = AgentEnvelope {
            agent: AgentId(5),
            epoch: 4,
            body: Body::Message {
                seq: 1,
                message: ToAgent::Refused {
                    command: 3,
                    reason: "no".into(),
                    status: AgentStatus::Away,
                    kind: Some(switchboard_core::error::Kind {
                        code: switchboard_core::error::Code::ResourceExhausted,
                        reason: "AGENT_AT_CAPACITY".into(),
                    }),
                },
            },
        };
        let request = encode_agent("acme", pb::MeshDirection::ToAgent, &to_agent).unwrap();
        assert_eq!(decode(&request).unwrap(), Wire::ToAgent(to_agent));
        let ack: AgentEnvelope<ToAgent> =
            AgentEnvelope { agent: AgentId(5), epoch: 4, body: Body::Ack { next: 2 } };
        let request = encode_agent("acme", pb::MeshDirection::ToAgent, &ack).unwrap();
        assert_eq!(decode(&request).unwrap(), Wire::ToAgent(ack));
    }

    #[test]
    fn a_desk_links_envelope_of_an_older_node_is_refused() {
        let mut request = encode_agent(
            "acme",
            pb::MeshDirection::ToAgent,
            &AgentEnvelope::<ToAgent> { agent: AgentId(5), epoch: 4, body: Body::Ack { next: 2 } },
        )
        .unwrap();
        request.envelope.as_mut().unwrap().direction = pb::MeshDirection::ToDesk as i32;
        let refused = decode(&request);
        assert!(
            matches!(&refused, Err(Error::Field { field, .. }) if field == "envelope.direction"),
            "{refused:?}"
        );
    }

    #[test]
    fn a_malformed_envelope_is_refused_naming_its_field() {
        let envelope = Envelope {
            conversation: ConversationId(1),
            customer: CustomerId(1),
            epoch: 1,
            body: Body::Message { seq: 0, message: ToRouter::Leave },
        };
        let good = encode("acme", pb::MeshDirection::ToRouter, &envelope).unwrap();
        let refused = |mut r: pb::DeliverRequest, change: fn(&mut pb::DeliverRequest)| {
            change(&mut r);
            match decode(&r) {
                Err(Error::Field { field, .. }) => field,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(refused(good.clone(), |r| r.tenant.clear()), "tenant");
        assert_eq!(refused(good.clone(), |r| r.envelope = None), "envelope");
        let direction = |r: &mut pb::DeliverRequest| r.envelope.as_mut().unwrap().direction = 0;
        assert_eq!(refused(good.clone(), direction), "envelope.direction");
        let version = |r: &mut pb::DeliverRequest| match &mut r.envelope.as_mut().unwrap().body {
            Some(pb::mesh_envelope::Body::Message(m)) => m.payload_version = 2,
            _ => unreachable!(),
        };
        assert_eq!(refused(good.clone(), version), "envelope.message.payload_version");
        let garbage = |r: &mut pb::DeliverRequest| match &mut r.envelope.as_mut().unwrap().body {
            Some(pb::mesh_envelope::Body::Message(m)) => m.payload = vec![0xc1],
            _ => unreachable!(),
        };
        assert_eq!(refused(good.clone(), garbage), "envelope.message.payload");
        // A router's message decoded as a conversation's is refused too.
        let swapped = |r: &mut pb::DeliverRequest| {
            r.envelope.as_mut().unwrap().direction = pb::MeshDirection::ToConversation as i32;
        };
        assert_eq!(refused(good, swapped), "envelope.message.payload");
    }
}
