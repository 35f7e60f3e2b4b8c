//! How envelopes travel between conversation, agent and router actors. The protocol asks
//! little of
//! a transport: at-most-once-per-send delivery, in any order, possibly duplicated or lost
//! (the links' sequence numbers, hold-back and retransmission do the rest), and no envelope
//! later than the router's `linger` after it was sent. So the trait is fire-and-forget.
//!
//! [`InProcess`] delivers to actors of the same node; [`super::grpc::GrpcTransport`] between
//! nodes implements the same trait (and delivers through an `InProcess` on each end).

use std::sync::{PoisonError, RwLock, Weak};

use ractor::ActorRef;
use rustc_hash::FxHashMap;
use switchboard_core::AgentId;
use switchboard_core::mesh::{
    AgentEnvelope, Envelope, FromAgent, ToAgent, ToConversation, ToRouter,
};
use switchboard_proto::internal::v1::StreamItem;

use super::agent::AgentMsg;
use super::conversation::ConversationMsg;
use super::placement::ActorKey;
use super::router::RouterMsg;
use super::{Found, Inner, Mesh, Ticket, awaits_ack};
use crate::error::Result;

/// Carries envelopes to the actor that holds the other end of a link, activating it if
/// needed. Never blocks and never fails: an envelope it cannot deliver is dropped (the sender
/// resends what stays unacknowledged).
pub trait Transport: Send + Sync + 'static {
    /// To the tenant's router actor.
    fn to_router(&self, tenant: &str, envelope: Envelope<ToRouter>);
    /// To the conversation actor of `envelope.customer`.
    fn to_conversation(&self, tenant: &str, envelope: Envelope<ToConversation>);
    /// On an agent's link, to the agent actor of `envelope.agent`.
    fn to_agent(&self, tenant: &str, envelope: AgentEnvelope<ToAgent>);
    /// On an agent's link, from the agent actor to the tenant's router actor.
    fn to_router_from_agent(&self, tenant: &str, envelope: AgentEnvelope<FromAgent>);

    /// Delivers a message *before* its sender's batch is durable, tagged with the
    /// generation that batch carries ([`switchboard_store::Batch::generation`]), if its
    /// receiver runs in this process: its batches go through the same writer, queued after
    /// the sender's, so they are durable only if the sender's is (see
    /// [`super::Generation`]). Hands it back if not (another node's writer is not this
    /// one): the sender sends it the usual way once durable. Only messages come here
    /// (`actors::Outbox`), never acknowledgements. By default nothing goes early.
    fn early(&self, _tenant: &str, _generation: u64, wire: Wire) -> Option<Wire> {
        Some(wire)
    }

    /// A durable entry of `entry.agent`'s desk stream, written here, for the live readers on
    /// the node of the agent's actor (`AgentService.StreamEvents` is served there) when that
    /// is another node: a hint, never resent (those readers re-read the store anyway). This
    /// node's own readers heard it from its hub already; by default nothing more happens.
    fn desk_entry(&self, _tenant: &str, _agent: AgentId, _seq: u64, _item: &StreamItem) {}
}

/// A durable entry of an agent's desk stream at its position, for that stream's live readers
/// on another node ([`Transport::desk_entry`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DeskEntry {
    pub agent: AgentId,
    pub seq: u64,
    pub item: StreamItem,
}

/// An envelope on any of the links, as a step's sender hands it to [`Transport::early`] or
/// another node's receives it (`grpc::decode`).
#[derive(Debug, Clone, PartialEq)]
pub enum Wire {
    ToRouter(Envelope<ToRouter>),
    ToConversation(Envelope<ToConversation>),
    ToAgent(AgentEnvelope<ToAgent>),
    FromAgent(AgentEnvelope<FromAgent>),
    /// Not on a link: a desk entry for the live readers where its agent's actor runs.
    DeskEntry(DeskEntry),
}

impl Wire {
    /// Whether it carries a message (which awaits an acknowledgement), not one.
    pub fn message(&self) -> bool {
        match self {
            Wire::ToRouter(e) => awaits_ack(&e.body),
            Wire::ToConversation(e) => awaits_ack(&e.body),
            Wire::ToAgent(e) => awaits_ack(&e.body),
            Wire::FromAgent(e) => awaits_ack(&e.body),
            Wire::DeskEntry(_) => false,
        }
    }

    /// The key of the actor it is for.
    pub fn key<'a>(&self, tenant: &'a str) -> ActorKey<'a> {
        match self {
            Wire::ToRouter(_) | Wire::FromAgent(_) => ActorKey::Router { tenant },
            Wire::ToConversation(e) => ActorKey::Conversation { tenant, customer: e.customer },
            Wire::ToAgent(e) => ActorKey::Agent { tenant, agent: e.agent },
            Wire::DeskEntry(e) => ActorKey::Agent { tenant, agent: e.agent },
        }
    }

    /// Sends it through `transport` the usual way.
    pub fn send(self, transport: &dyn Transport, tenant: &str) {
        match self {
            Wire::ToRouter(e) => transport.to_router(tenant, e),
            Wire::ToConversation(e) => transport.to_conversation(tenant, e),
            Wire::ToAgent(e) => transport.to_agent(tenant, e),
            Wire::FromAgent(e) => transport.to_router_from_agent(tenant, e),
            Wire::DeskEntry(e) => transport.desk_entry(tenant, e.agent, e.seq, &e.item),
        }
    }
}

/// Delivery inside one node: straight into the live actor's mailbox, or through an
/// activation (on a task of its own) when it is not live.
#[derive(Debug, Default)]
pub struct InProcess {
    meshes: RwLock<FxHashMap<String, Weak<Inner>>>,
}

impl InProcess {
    /// Delivers to this tenant's actors from now on.
    pub fn attach(&self, mesh: &Mesh) {
        let mut meshes = self.meshes.write().unwrap_or_else(PoisonError::into_inner);
        meshes.insert(mesh.tenant().to_owned(), mesh.downgrade());
    }

    /// Whether this tenant's actors run here (a mesh attached and not dropped).
    pub fn serves(&self, tenant: &str) -> bool {
        self.mesh(tenant).is_some()
    }

    /// The tenant's mesh on this node, if attached and not dropped.
    pub(crate) fn mesh(&self, tenant: &str) -> Option<Mesh> {
        let meshes = self.meshes.read().unwrap_or_else(PoisonError::into_inner);
        meshes.get(tenant).and_then(Mesh::upgrade)
    }
}

impl InProcess {
    /// To the tenant's router actor, with the ticket that counts it if it came from another
    /// node, or the generation it was sent early under ([`Transport::early`]).
    pub(crate) fn deliver_to_router(
        &self,
        tenant: &str,
        envelope: Envelope<ToRouter>,
        ticket: Option<Ticket>,
        early: Option<u64>,
    ) {
        let Some(mesh) = self.mesh(tenant) else { return };
        let message = awaits_ack(&envelope.body);
        let msg = RouterMsg::Deliver(envelope, ticket, early);
        cast_or_activate(mesh, Mesh::find_router, msg, message, |mesh| async move {
            mesh.router_ref().await
        });
    }

    /// To the tenant's router actor from an agent actor, with its ticket as above.
    pub(crate) fn deliver_from_agent(
        &self,
        tenant: &str,
        envelope: AgentEnvelope<FromAgent>,
        ticket: Option<Ticket>,
        early: Option<u64>,
    ) {
        let Some(mesh) = self.mesh(tenant) else { return };
        let message = awaits_ack(&envelope.body);
        let msg = RouterMsg::FromAgent(envelope, ticket, early);
        cast_or_activate(mesh, Mesh::find_router, msg, message, |mesh| async move {
            mesh.router_ref().await
        });
    }

    /// To the conversation actor of `envelope.customer`, with its ticket as above.
    pub(crate) fn deliver_to_conversation(
        &self,
        tenant: &str,
        envelope: Envelope<ToConversation>,
        ticket: Option<Ticket>,
        early: Option<u64>,
    ) {
        let Some(mesh) = self.mesh(tenant) else { return };
        let customer = envelope.customer;
        let message = awaits_ack(&envelope.body);
        let msg = ConversationMsg::Deliver(envelope, ticket, early);
        let find = move |mesh: &Mesh| mesh.find_conversation(customer);
        cast_or_activate(mesh, find, msg, message, move |mesh| async move {
            mesh.conversation_ref(customer).await
        });
    }

    /// To the agent actor of `envelope.agent`, with its ticket as above.
    pub(crate) fn deliver_to_agent(
        &self,
        tenant: &str,
        envelope: AgentEnvelope<ToAgent>,
        ticket: Option<Ticket>,
        early: Option<u64>,
    ) {
        let Some(mesh) = self.mesh(tenant) else { return };
        let agent = envelope.agent;
        let message = awaits_ack(&envelope.body);
        let msg = AgentMsg::Deliver(envelope, ticket, early);
        let find = move |mesh: &Mesh| mesh.find_agent(agent);
        cast_or_activate(mesh, find, msg, message, move |mesh| async move {
            mesh.agent_ref(agent).await
        });
    }
}

impl InProcess {
    /// Any envelope to its actor, with its ticket and early generation as above.
    pub(crate) fn deliver(
        &self,
        tenant: &str,
        wire: Wire,
        ticket: Option<Ticket>,
        early: Option<u64>,
    ) {
        match wire {
            Wire::ToRouter(e) => self.deliver_to_router(tenant, e, ticket, early),
            Wire::ToConversation(e) => self.deliver_to_conversation(tenant, e, ticket, early),
            Wire::ToAgent(e) => self.deliver_to_agent(tenant, e, ticket, early),
            Wire::FromAgent(e) => self.deliver_from_agent(tenant, e, ticket, early),
            // Received from the node that wrote it: to this node's live readers.
            Wire::DeskEntry(e) => {
                if let Some(mesh) = self.mesh(tenant) {
                    mesh.publish_desk_entry(e);
                }
            }
        }
    }
}

/// Casts into the live actor's mailbox; if there is none, or it stopped meanwhile, the message
/// goes to an activation on a task of its own (the next incarnation takes it) if it may wake
/// the actor, and is dropped if not. Lost if the activation fails: the sender resends what
/// stays unacknowledged.
///
/// A message (`message`: the body awaits an acknowledgement) always may; an acknowledgement
/// only to an actor being activated (what it acknowledges may be that incarnation's first
/// sends). An actor with no incarnation either passivated with nothing unacknowledged or will
/// be activated anyway (restarted by its supervisor, recovered by its shard's new owner, or
/// by the next message), and every activation resends all that is unacknowledged at once,
/// which the other side acknowledges again. So an acknowledgement to it is dropped: that
/// saves an activation (a store read), and keeps a shard that moved from being woken, ahead
/// of its new owner's recovery, by acknowledgements of copies its old owner resent before
/// letting go.
///
/// `find` looks at the directory once per decision: asking "live?" then "activating?" could
/// see neither while an activation completed between the two, and drop the acknowledgement
/// of that incarnation's first sends, which nothing resends before its resend timer (a
/// recovery test stalled so, about 1 run in 200). A live actor that refuses the cast is
/// stopping; it is looked up again, since its successor may be starting by then.
pub(super) fn cast_or_activate<C, M, F, Fut>(
    mesh: C,
    find: impl Fn(&C) -> Found<M>,
    mut msg: M,
    message: bool,
    activate: F,
) where
    C: Clone + Send + 'static,
    M: ractor::Message,
    F: Fn(C) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<ActorRef<M>>> + Send,
{
    let mut starting = false;
    for _ in 0..2 {
        match find(&mesh) {
            Found::Live(actor) => match actor.cast(msg) {
                Ok(()) => return,
                Err(ractor::MessagingErr::SendErr(refused)) => msg = refused,
                Err(_) => return,
            },
            Found::Starting => {
                starting = true;
                break;
            }
            Found::None => break,
        }
    }
    if !message && !starting {
        return;
    }
    tokio::spawn(async move {
        // An activation can hand out an actor in the moment its drain closes the mailbox:
        // the message goes to its successor, instead of lying lost until the sender's
        // resend timer.
        for _ in 0..3 {
            let Ok(actor) = activate(mesh.clone()).await else { return };
            match super::cast_or_outlive(&actor, msg).await {
                Err(ractor::MessagingErr::SendErr(refused)) => msg = refused,
                _ => return,
            }
        }
    });
}

impl Transport for InProcess {
    fn to_router(&self, tenant: &str, envelope: Envelope<ToRouter>) {
        self.deliver_to_router(tenant, envelope, None, None);
    }

    fn to_conversation(&self, tenant: &str, envelope: Envelope<ToConversation>) {
        self.deliver_to_conversation(tenant, envelope, None, None);
    }

    fn to_agent(&self, tenant: &str, envelope: AgentEnvelope<ToAgent>) {
        self.deliver_to_agent(tenant, envelope, None, None);
    }

    fn to_router_from_agent(&self, tenant: &str, envelope: AgentEnvelope<FromAgent>) {
        self.deliver_from_agent(tenant, envelope, None, None);
    }

    fn early(&self, tenant: &str, generation: u64, wire: Wire) -> Option<Wire> {
        self.deliver(tenant, wire, None, Some(generation));
        None
    }
}
