//! How envelopes travel between conversation and router actors. The protocol asks little of
//! a transport: at-most-once-per-send delivery, in any order, possibly duplicated or lost
//! (the links' sequence numbers, hold-back and retransmission do the rest), and no envelope
//! later than the router's `linger` after it was sent. So the trait is fire-and-forget.
//!
//! [`InProcess`] delivers to actors of the same node; [`super::grpc::GrpcTransport`] between
//! nodes implements the same trait (and delivers through an `InProcess` on each end).

use std::sync::{PoisonError, RwLock, Weak};

use rustc_hash::FxHashMap;
use switchboard_core::mesh::{Envelope, ToConversation, ToRouter};

use super::conversation::ConversationMsg;
use super::router::RouterMsg;
use super::{Inner, Mesh, Ticket};

/// Carries envelopes to the actor that holds the other end of a link, activating it if
/// needed. Never blocks and never fails: an envelope it cannot deliver is dropped (the sender
/// resends what stays unacknowledged).
pub trait Transport: Send + Sync + 'static {
    /// To the tenant's router actor.
    fn to_router(&self, tenant: &str, envelope: Envelope<ToRouter>);
    /// To the conversation actor of `envelope.customer`.
    fn to_conversation(&self, tenant: &str, envelope: Envelope<ToConversation>);
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
    /// node.
    pub(crate) fn deliver_to_router(
        &self,
        tenant: &str,
        envelope: Envelope<ToRouter>,
        ticket: Option<Ticket>,
    ) {
        let Some(mesh) = self.mesh(tenant) else { return };
        let (envelope, ticket) = match mesh.live_router() {
            Some(router) => match router.cast(RouterMsg::Deliver(envelope, ticket)) {
                Ok(()) => return,
                // It stopped meanwhile: the next incarnation takes it.
                Err(ractor::MessagingErr::SendErr(RouterMsg::Deliver(envelope, ticket))) => {
                    (envelope, ticket)
                }
                // Lost; the sender resends what stays unacknowledged.
                Err(_) => return,
            },
            None => (envelope, ticket),
        };
        tokio::spawn(async move {
            if let Ok(router) = mesh.router_ref().await {
                let _ = router.cast(RouterMsg::Deliver(envelope, ticket));
            }
        });
    }

    /// To the conversation actor of `envelope.customer`, with its ticket as above.
    pub(crate) fn deliver_to_conversation(
        &self,
        tenant: &str,
        envelope: Envelope<ToConversation>,
        ticket: Option<Ticket>,
    ) {
        let Some(mesh) = self.mesh(tenant) else { return };
        let customer = envelope.customer;
        let (envelope, ticket) = match mesh.live_conversation(customer) {
            Some(actor) => match actor.cast(ConversationMsg::Deliver(envelope, ticket)) {
                Ok(()) => return,
                Err(ractor::MessagingErr::SendErr(ConversationMsg::Deliver(envelope, ticket))) => {
                    (envelope, ticket)
                }
                Err(_) => return,
            },
            None => (envelope, ticket),
        };
        tokio::spawn(async move {
            if let Ok(actor) = mesh.conversation_ref(customer).await {
                let _ = actor.cast(ConversationMsg::Deliver(envelope, ticket));
            }
        });
    }
}

impl Transport for InProcess {
    fn to_router(&self, tenant: &str, envelope: Envelope<ToRouter>) {
        self.deliver_to_router(tenant, envelope, None);
    }

    fn to_conversation(&self, tenant: &str, envelope: Envelope<ToConversation>) {
        self.deliver_to_conversation(tenant, envelope, None);
    }
}
