//! Reads of, and calls on, an actor tenant's conversation actors wherever they live (issue 12
//! item 3). A public call naming one conversation is forwarded whole to its actor's node; the
//! calls that span many conversations land on one node for all of them (the supervisor's
//! boards and listings, an agent's lists, Transfer's answer on the router's node, EndBatch,
//! SetBotHosting). Those go through here:
//!
//! - [`held`] / [`held_many`]: each conversation as its actor holds it, read straight from
//!   the actor when it lives on this node, else from its owner over the internal
//!   `ConversationCallService` (`proto/switchboard/internal/v1/calls.proto`), one call per
//!   owning node for a whole page;
//! - [`OnActors::on_selection`]: one supervisor call of a selection (an EndBatch item, a
//!   conversation of a bot-hosting selection), run by the owner, applied once per request id
//!   there as it would be here ([`OnActors::selection_here`] on both ends);
//! - [`ConversationCalls`]: that service on the owner. It serves only keys whose shard this
//!   node owns (UNAVAILABLE otherwise: the caller answers UNAVAILABLE, its client retries),
//!   and never passes a call on.
//!
//! Reads across nodes are as fresh as a read on the owner at the moment it answers; a
//! conversation that moves in between is UNAVAILABLE for that call, never read twice.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use serde::{Deserialize, Serialize};
use switchboard_core::{Actor, AgentId, Conversation, ConversationId, CustomerId};
use switchboard_proto::internal::v1 as ipb;
use switchboard_proto::v1 as pb;
use tonic::transport::Channel;

use ipb::conversation_call_service_client::ConversationCallServiceClient;
use ipb::conversation_call_service_server::{
    ConversationCallService, ConversationCallServiceServer,
};

use super::on_actors::OnActors;
use crate::actors::Mesh;
use crate::actors::conversation::{Answer, Answered, ConversationOp};
use crate::actors::meshes::Meshes;
use crate::actors::placement::{self, ActorKey};
use crate::cluster::Route;
use crate::error::{Error, Result};
use crate::state::ConversationExtra;

/// `HeldConversation.payload_version`: MessagePack of [`Held`], fields by name.
pub const PAYLOAD_VERSION: u32 = 1;
/// How long a read or a call on another node may take before this node gives up on it
/// (UNAVAILABLE: the client retries; a call is applied at most once per request id anyway).
pub const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// Conversations per read from one node.
pub const MAX_READ: usize = 1000;

/// A conversation as its actor holds it: what boards, listings and answers render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    pub conversation: Conversation,
    /// Its tags and note, when the actor has them.
    pub extra: Option<ConversationExtra>,
    /// Its queue position as its actor last heard it from the router (while it waits).
    pub position: Option<usize>,
}

/// Where a conversation actor lives, from this node's view.
enum Place {
    Here,
    /// On the node at this address.
    There(String),
}

fn place(mesh: &Mesh, customer: CustomerId) -> Result<Place> {
    let Some(ownership) = &mesh.inner().ownership else { return Ok(Place::Here) };
    let key = ActorKey::Conversation { tenant: mesh.tenant(), customer };
    match placement::resolve(ownership, key) {
        Route::Local(_) => Ok(Place::Here),
        Route::Remote { addr, .. } => Ok(Place::There(addr)),
        Route::Unowned { shard } => Err(Error::Unavailable(format!(
            "shard {shard} of the {key} has no owner right now (a handover or failover is in \
             progress); retry"
        ))),
    }
}

fn client(mesh: &Mesh, addr: &str) -> Result<ConversationCallServiceClient<Channel>> {
    let ownership = mesh.inner().ownership.as_ref().ok_or_else(|| {
        Error::Internal("a call to another node on a node without a cluster".into())
    })?;
    let channel = ownership
        .peers()
        .channel(addr)
        .map_err(|s| Error::Internal(format!("peer {addr}: {}", s.message())))?;
    Ok(ConversationCallServiceClient::new(channel))
}

/// The caller's error for a failed call to the node at `addr`: retryable when the peer was
/// unreachable, slow, moving or older (UNIMPLEMENTED during a rolling upgrade).
fn peer_error(addr: &str, status: &tonic::Status) -> Error {
    use tonic::Code;
    let message = format!("node at {addr}: {}", status.message());
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Aborted
        | Code::Unimplemented => Error::Unavailable(message),
        Code::ResourceExhausted => Error::ResourceExhausted(message),
        code => Error::Internal(format!("{message} ({code:?})")),
    }
}

async fn answered<T>(
    addr: &str,
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(CALL_DEADLINE, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(peer_error(addr, &status)),
        Err(_) => Err(Error::Unavailable(format!(
            "node at {addr} did not answer within {CALL_DEADLINE:?}; retry"
        ))),
    }
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(CALL_DEADLINE);
    request
}

/// The conversation as the actor of `customer` holds it, if it holds it open.
pub(crate) async fn held(
    mesh: &Mesh,
    id: ConversationId,
    customer: CustomerId,
) -> Result<Option<Held>> {
    Ok(held_many(mesh, &[(id, customer)]).await?.pop().flatten())
}

/// Each conversation as the actor of its customer holds it (`None`: not open there), in
/// order: the ones here read from their actors, the others in one call per owning node.
pub(crate) async fn held_many(
    mesh: &Mesh,
    wanted: &[(ConversationId, CustomerId)],
) -> Result<Vec<Option<Held>>> {
    let mut out: Vec<Option<Held>> = vec![None; wanted.len()];
    let mut remote: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
    for (i, &(id, customer)) in wanted.iter().enumerate() {
        match place(mesh, customer)? {
            Place::Here => out[i] = held_here(mesh, id, customer).await?,
            Place::There(addr) => remote.entry(addr).or_default().push(i),
        }
    }
    for (addr, indices) in remote {
        for chunk in indices.chunks(MAX_READ) {
            let conversations = chunk
                .iter()
                .map(|&i| ipb::ConversationKey {
                    customer: wanted[i].1.0,
                    conversation: wanted[i].0.0,
                })
                .collect();
            let read =
                ipb::ReadConversationsRequest { tenant: mesh.tenant().to_owned(), conversations };
            let mut client = client(mesh, &addr)?;
            let answer = answered(&addr, client.read_conversations(request(read))).await?;
            if answer.conversations.len() != chunk.len() {
                return Err(Error::Internal(format!(
                    "node at {addr} answered {} conversations for {}",
                    answer.conversations.len(),
                    chunk.len()
                )));
            }
            for (&i, found) in chunk.iter().zip(answer.conversations) {
                out[i] = decode_held(&addr, &found)?;
            }
        }
    }
    Ok(out)
}

/// Read from the actor on this node (activating it if it is passivated).
async fn held_here(mesh: &Mesh, id: ConversationId, customer: CustomerId) -> Result<Option<Held>> {
    let read = move |side: &switchboard_core::mesh::ConversationSide,
                     extra: Option<&ConversationExtra>| {
        let conversation = side.conversation().filter(|c| c.id == id)?.clone();
        let position = side.standing().and_then(|s| s.position);
        Some(Held { conversation, extra: extra.cloned(), position })
    };
    mesh.conversation(customer).read_tagged(read).await
}

fn encode_held(held: Option<&Held>) -> Result<ipb::HeldConversation> {
    let Some(held) = held else { return Ok(ipb::HeldConversation::default()) };
    let payload = rmp_serde::to_vec_named(held)
        .map_err(|e| Error::Internal(format!("a conversation did not encode: {e}")))?;
    Ok(ipb::HeldConversation { found: true, payload_version: PAYLOAD_VERSION, payload })
}

fn decode_held(addr: &str, found: &ipb::HeldConversation) -> Result<Option<Held>> {
    if !found.found {
        return Ok(None);
    }
    if found.payload_version != PAYLOAD_VERSION {
        return Err(Error::Unavailable(format!(
            "node at {addr} sent conversations in encoding {} (this node reads \
             {PAYLOAD_VERSION}); retry once the upgrade is through",
            found.payload_version
        )));
    }
    rmp_serde::from_slice(&found.payload).map(Some).map_err(|e| {
        Error::Internal(format!("a conversation from node at {addr} did not decode: {e}"))
    })
}

/// One supervisor call of a selection on a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selection {
    /// An item of EndBatch: the batch-end reply; answered `ended`.
    EndInBatch,
    /// Bot hosting switched by a supervisor; answered with `SetBotHostingResponse` (1 if it
    /// changed).
    BotHosting { on: bool, supervisor: AgentId },
}

/// What a selection's call came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Selected {
    /// Applied (or answered again from the store): the stored answer.
    Answered(Vec<u8>),
    /// The routing core refused it: the message, in resource names.
    Refused(String),
}

impl Selection {
    fn op(self, id: ConversationId) -> (ConversationOp, Answer) {
        match self {
            Selection::EndInBatch => {
                let answer: Answer = Arc::new(|_: Answered<'_>| b"ended".to_vec());
                (ConversationOp::EndInBatch(id), answer)
            }
            Selection::BotHosting { on, supervisor } => {
                let answer: Answer = Arc::new(|a: Answered<'_>| {
                    let hosted = a.outcome.effects.iter().any(|e| {
                        matches!(
                            e,
                            switchboard_core::Effect::Notify {
                                note: switchboard_core::engine::Note::BotHosting { .. },
                                ..
                            }
                        )
                    });
                    pb::SetBotHostingResponse { changed: u32::from(hosted) }.encode_to_vec()
                });
                let op = ConversationOp::BotHosting { id, on, by: Actor::Supervisor(supervisor) };
                (op, answer)
            }
        }
    }

    fn wire(self) -> ipb::call_conversation_request::Op {
        use ipb::call_conversation_request::Op;
        match self {
            Selection::EndInBatch => Op::EndInBatch(ipb::EndInBatch {}),
            Selection::BotHosting { on, supervisor } => {
                Op::BotHosting(ipb::BotHosting { on, supervisor: supervisor.0 })
            }
        }
    }

    fn from_wire(op: Option<ipb::call_conversation_request::Op>) -> Result<Self> {
        use ipb::call_conversation_request::Op;
        match op {
            Some(Op::EndInBatch(_)) => Ok(Selection::EndInBatch),
            Some(Op::BotHosting(b)) => {
                Ok(Selection::BotHosting { on: b.on, supervisor: AgentId(b.supervisor) })
            }
            None => Err(Error::field("op", "name the call: end_in_batch or bot_hosting")),
        }
    }
}

impl OnActors<'_> {
    /// A selection's call on conversation `id` of `customer`, on whichever node its actor
    /// lives.
    pub(crate) async fn on_selection(
        &self,
        customer: CustomerId,
        id: ConversationId,
        selection: Selection,
        request_id: &str,
    ) -> Result<Selected> {
        let addr = match place(&self.mesh, customer)? {
            Place::Here => return self.selection_here(customer, id, selection, request_id).await,
            Place::There(addr) => addr,
        };
        let call = ipb::CallConversationRequest {
            tenant: self.mesh.tenant().to_owned(),
            customer: customer.0,
            conversation: id.0,
            request_id: request_id.to_owned(),
            config_version: self.mesh.config_version(),
            op: Some(selection.wire()),
        };
        let mut client = client(&self.mesh, &addr)?;
        let answer = answered(&addr, client.call_conversation(request(call))).await?;
        use ipb::call_conversation_response::Outcome;
        match answer.outcome {
            Some(Outcome::Answer(body)) => Ok(Selected::Answered(body)),
            Some(Outcome::Refused(message)) => Ok(Selected::Refused(message)),
            None => Err(Error::Internal(format!("node at {addr} answered a call with nothing"))),
        }
    }

    /// A selection's call on an actor of this node.
    pub(crate) async fn selection_here(
        &self,
        customer: CustomerId,
        id: ConversationId,
        selection: Selection,
        request_id: &str,
    ) -> Result<Selected> {
        let (op, answer) = selection.op(id);
        match self.answered_call(customer, op, request_id, answer).await {
            Ok(body) => Ok(Selected::Answered(body)),
            Err(Error::Refused { message, .. }) => Ok(Selected::Refused(message)),
            Err(e) => Err(e),
        }
    }
}

/// `ConversationCallService` on the node that owns the conversations asked about.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // the node's meshes
pub struct ConversationCalls {
    meshes: Arc<Meshes>,
}

impl ConversationCalls {
    pub fn new(meshes: Arc<Meshes>) -> Self {
        ConversationCalls { meshes }
    }

    /// The service, ready for `Server::add_service`.
    pub fn server(self) -> ConversationCallServiceServer<ConversationCalls> {
        ConversationCallServiceServer::new(self)
    }

    /// The tenant's mesh here, once every customer's actor is known to live here.
    async fn mesh_owning(&self, tenant: &str, customers: &[CustomerId]) -> Result<Mesh> {
        if tenant.is_empty() {
            return Err(Error::field("tenant", "the tenant id is required"));
        }
        let ownership = self.meshes.ownership();
        for &customer in customers {
            let key = ActorKey::Conversation { tenant, customer };
            if !matches!(placement::resolve(ownership, key), Route::Local(_)) {
                return Err(Error::Unavailable(format!(
                    "node {} does not own shard {} of the {key}; retry",
                    ownership.node_id(),
                    key.shard(ownership.shards())
                )));
            }
        }
        self.meshes.mesh(tenant).await
    }
}

#[tonic::async_trait]
impl ConversationCallService for ConversationCalls {
    async fn read_conversations(
        &self,
        request: tonic::Request<ipb::ReadConversationsRequest>,
    ) -> Result<tonic::Response<ipb::ReadConversationsResponse>, tonic::Status> {
        crate::auth::require_node(&request)?;
        let r = request.into_inner();
        if r.conversations.len() > MAX_READ {
            return Err(Error::field(
                "conversations",
                format!("at most {MAX_READ} per read, got {}", r.conversations.len()),
            )
            .into());
        }
        let customers: Vec<CustomerId> =
            r.conversations.iter().map(|k| CustomerId(k.customer)).collect();
        let mesh = self.mesh_owning(&r.tenant, &customers).await?;
        let mut conversations = Vec::with_capacity(r.conversations.len());
        for key in &r.conversations {
            let found =
                held_here(&mesh, ConversationId(key.conversation), CustomerId(key.customer))
                    .await?;
            conversations.push(encode_held(found.as_ref())?);
        }
        Ok(tonic::Response::new(ipb::ReadConversationsResponse { conversations }))
    }

    async fn call_conversation(
        &self,
        request: tonic::Request<ipb::CallConversationRequest>,
    ) -> Result<tonic::Response<ipb::CallConversationResponse>, tonic::Status> {
        crate::auth::require_node(&request)?;
        let r = request.into_inner();
        let selection = Selection::from_wire(r.op)?;
        let customer = CustomerId(r.customer);
        let mesh = self.mesh_owning(&r.tenant, &[customer]).await?;
        // A sender with a newer configuration (a supervisor added since): this mesh takes it
        // before the call, as for an envelope.
        if r.config_version > mesh.config_version() {
            mesh.refresh(r.config_version).await?;
        }
        let on = OnActors { meshes: &self.meshes, mesh };
        let id = ConversationId(r.conversation);
        use ipb::call_conversation_response::Outcome;
        let outcome = match on.selection_here(customer, id, selection, &r.request_id).await? {
            Selected::Answered(body) => Outcome::Answer(body),
            Selected::Refused(message) => Outcome::Refused(message),
        };
        Ok(tonic::Response::new(ipb::CallConversationResponse { outcome: Some(outcome) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_conversation_survives_the_wire() {
        let conversation = crate::archive::tests::minimal();
        let extra = ConversationExtra { tags: vec!["vip".into()], ..Default::default() };
        let held = Held { conversation, extra: Some(extra), position: Some(4) };
        let wire = encode_held(Some(&held)).unwrap();
        assert_eq!(decode_held("n2", &wire).unwrap(), Some(held));
        assert_eq!(decode_held("n2", &encode_held(None).unwrap()).unwrap(), None);
        let newer = ipb::HeldConversation { payload_version: PAYLOAD_VERSION + 1, ..wire };
        let refused = decode_held("n2", &newer).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
    }

    #[test]
    fn a_selection_survives_the_wire() {
        for s in [
            Selection::EndInBatch,
            Selection::BotHosting { on: true, supervisor: AgentId(9) },
            Selection::BotHosting { on: false, supervisor: AgentId(1) },
        ] {
            assert_eq!(Selection::from_wire(Some(s.wire())).unwrap(), s);
        }
        assert_eq!(Selection::from_wire(None).unwrap_err().code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn a_peer_that_is_away_or_older_is_retryable_and_a_broken_one_is_not() {
        use tonic::Code;
        for code in [Code::Unavailable, Code::DeadlineExceeded, Code::Unimplemented] {
            let e = peer_error("n2", &tonic::Status::new(code, "x"));
            assert_eq!(e.code(), Code::Unavailable, "{code:?}");
        }
        let e = peer_error("n2", &tonic::Status::invalid_argument("bad"));
        assert_eq!(e.code(), Code::Internal);
    }
}
