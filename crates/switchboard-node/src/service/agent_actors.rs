//! The agent's own AgentService calls for a tenant created with `TENANT_ROUTING_ACTORS`
//! (issue 12, the cut-over), served by the agent's actor ([`crate::actors::agent`]) instead
//! of the tenant actor. Every other tenant is served as before (`service::agent`).
//!
//! - **Commands** (SetStatus, Accept, Decline, Pick, EndWrapUp): validated as the tenant
//!   actor validates them, then queued on the agent's link (durable in the agent actor's
//!   row) and answered once the router actor has decided them ([`AgentHandle::decision`]):
//!   applied, the call returns the agent or the conversation as the actors hold them now; a
//!   refusal is FAILED_PRECONDITION with the router's reason (the tenant actor's path gives
//!   some refusals other codes and names in its messages; the router's reason names numbers).
//! - **Reads**: ListAssigned from the agent actor (what the router last told it: offered and
//!   assigned), ListUnaccepted from the router actor (the agent actor does not know the
//!   queues); each conversation from its conversation actor (found by the router's
//!   `customer_of`), its position and estimated wait from the router.
//! - **The desk's StreamEvents** reads `agent/{id}`, which the agent actor alone writes and
//!   numbers, with the tenant actor's cursor contract (`serve_stream`).
//!
//! The agent is named `tenants/{t}/agents/{a}` and resolved through the mesh's configuration
//! (as loaded with the mesh: an agent created after that is NOT_FOUND here until
//! configuration versions reach running meshes). `request_id` is checked but not
//! deduplicated yet (per-actor idempotency is the "channel" step's): a retried SetStatus sets
//! the same status again (a second command, applied, answered alike); a retried Accept,
//! Decline or Pick is a second command the router refuses (the offer is gone):
//! FAILED_PRECONDITION although the first one was applied.

use std::time::Duration;

use switchboard_core::router::StatusCause;
use switchboard_core::{AgentId, ConversationId, CustomerId};
use switchboard_proto::v1 as pb;
use tonic::Status;

use super::page_token;
use crate::actors::Mesh;
use crate::actors::agent::{AgentHandle, Decision};
use crate::actors::effects::MeshNames;
use crate::actors::meshes::Meshes;
use crate::apply::Names as _;
use crate::convert::{self, resources, views};
use crate::error::Error;
use crate::names;

/// The tenant's mesh if the tenant was created with actor routing. `None`: its tenant actor
/// serves it (a tenant the store does not know is the tenant actor's path to refuse, as it
/// always did).
pub(super) async fn actor_mesh(meshes: &Meshes, tenant: &str) -> Result<Option<Mesh>, Status> {
    match meshes.actor_routing(tenant).await {
        Ok(true) => Ok(Some(meshes.mesh(tenant).await?)),
        Ok(false) | Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An agent command on actors.
#[derive(Debug, Clone, Copy)]
pub(super) enum Command {
    Accept,
    Decline,
    Pick,
}

/// One agent of an actor tenant, resolved.
#[derive(Debug, Clone)]
pub(super) struct Desk {
    mesh: Mesh,
    agent: AgentId,
}

impl Desk {
    /// The agent `id` of the mesh's tenant; NOT_FOUND if the configuration has no such agent.
    pub(super) fn resolve(mesh: Mesh, id: &str) -> Result<Desk, Status> {
        let config = mesh.config();
        let agent = config
            .agent_names
            .iter()
            .find(|(a, name)| name.as_str() == id && config.agents.contains_key(a))
            .map(|(a, _)| *a)
            .ok_or_else(|| {
                Error::NotFound(format!("agent: agent {id:?} of tenant {}", mesh.tenant()))
            })?;
        Ok(Desk { mesh, agent })
    }

    pub(super) fn tenant(&self) -> &str {
        self.mesh.tenant()
    }

    fn handle(&self) -> AgentHandle {
        self.mesh.agent(self.agent)
    }

    fn names(&self) -> MeshNames<'_> {
        MeshNames { tenant: self.mesh.tenant(), config: self.mesh.config() }
    }

    /// Waits for the router's decision on a queued command: applied, or FAILED_PRECONDITION
    /// with the router's reason.
    async fn decided(&self, command: crate::error::Result<u64>) -> Result<(), Status> {
        match self.handle().decision(command?).await? {
            Decision::Applied => Ok(()),
            Decision::Refused { reason } => Err(Status::failed_precondition(reason)),
        }
    }

    pub(super) async fn set_status(&self, r: &pb::SetStatusRequest) -> Result<pb::Agent, Status> {
        crate::registry::check_request_id(&r.request_id)?;
        let status = convert::status("status", r.status)?;
        self.decided(self.handle().set_status(status, StatusCause::Agent).await).await?;
        self.agent_view().await
    }

    /// Ends the wrap-up of the named ended conversation, or every one (empty name).
    pub(super) async fn end_wrap_up(&self, r: &pb::EndWrapUpRequest) -> Result<pb::Agent, Status> {
        crate::registry::check_request_id(&r.request_id)?;
        // The conversation has ended: its name is checked, not its state.
        let c = if r.conversation.is_empty() {
            None
        } else {
            Some(self.conversation_ref("conversation", &r.conversation)?)
        };
        self.decided(self.handle().end_wrap_up(c).await).await?;
        self.agent_view().await
    }

    /// Accept, Decline or Pick of a live conversation (NOT_FOUND if the router has none of
    /// that number); answers with the conversation as its actor holds it afterwards.
    pub(super) async fn on_conversation(
        &self,
        r: &pb::AgentConversationRequest,
        command: Command,
    ) -> Result<pb::Conversation, Status> {
        crate::registry::check_request_id(&r.request_id)?;
        let c = self.conversation_ref("conversation", &r.conversation)?;
        let live = move |side: &switchboard_core::mesh::RouterSide| {
            side.customer_of(c).is_some() && !side.has_left(c)
        };
        if !self.mesh.router().read(live).await? {
            return Err(Error::NotFound(format!("conversation {}", r.conversation)).into());
        }
        let handle = self.handle();
        let queued = match command {
            Command::Accept => handle.accept(c).await,
            Command::Decline => handle.decline(c).await,
            Command::Pick => handle.pick(c).await,
        };
        self.decided(queued).await?;
        let mut views = self.conversations(vec![c]).await?;
        Ok(views.pop().unwrap_or_default())
    }

    /// One page of the agent's assigned (offered first, then assigned, as the tenant actor
    /// lists them) or unaccepted conversations, from rank `start`.
    pub(super) async fn list(
        &self,
        kind: &'static str,
        size: usize,
        start: usize,
    ) -> Result<pb::ListConversationsResponse, Status> {
        let a = self.agent;
        let all: Vec<ConversationId> = if kind == "assigned" {
            let read = |side: &switchboard_core::mesh::AgentSide| {
                side.offered().iter().chain(side.assigned().iter()).copied().collect()
            };
            self.handle().read(read).await?
        } else {
            let now = crate::clock::now();
            self.mesh.router().read(move |side| side.router().unaccepted(a, now)).await?
        };
        let end = (start + size).min(all.len());
        let page = all.get(start..end).unwrap_or_default().to_vec();
        let conversations = self.conversations(page).await?;
        let next_page_token =
            if end < all.len() { page_token(kind, &end.to_string()) } else { String::new() };
        Ok(pb::ListConversationsResponse { conversations, next_page_token })
    }

    /// The agent as the actors hold it: settings from the mesh's configuration, status,
    /// load and wrap-ups from the router actor. `first_login_today` is not kept by the
    /// actors (unset).
    async fn agent_view(&self) -> Result<pb::Agent, Status> {
        let a = self.agent;
        let live = self.mesh.router().read(move |side| side.router().agent(a).cloned()).await?;
        let config = self.mesh.config();
        let view = resources::agent_named(&self.names(), a, config.agents.get(&a), live.as_ref());
        Ok(pb::Agent { supervisor: config.supervisors.contains(&a), ..view })
    }

    /// Each conversation as its actor holds it (found through the router's `customer_of`),
    /// with its position and estimated wait from the router; only its name if neither
    /// knows it any more (ended and gone). Tags and notes are not kept by the actors yet.
    async fn conversations(
        &self,
        ids: Vec<ConversationId>,
    ) -> Result<Vec<pb::Conversation>, Status> {
        let now = crate::clock::now();
        let wanted = ids.clone();
        let placed: Vec<(Option<CustomerId>, Option<usize>, Option<Duration>)> = self
            .mesh
            .router()
            .read(move |side| {
                let router = side.router();
                wanted
                    .iter()
                    .map(|c| {
                        (side.customer_of(*c), router.position(*c), router.estimated_wait(now, *c))
                    })
                    .collect()
            })
            .await?;
        let names = self.names();
        let mut views = Vec::with_capacity(ids.len());
        for (c, (customer, position, wait)) in ids.into_iter().zip(placed) {
            let held = match customer {
                Some(u) => {
                    let read = move |side: &switchboard_core::mesh::ConversationSide| {
                        side.conversation().filter(|x| x.id == c).cloned()
                    };
                    self.mesh.conversation(u).read(read).await?.map(|conv| (u, conv))
                }
                None => None,
            };
            views.push(match held {
                Some((u, conv)) => {
                    let customer = names.customer_name(u);
                    views::render_named(&names, &conv, None, customer, position, wait)
                }
                None => pb::Conversation { name: names.conversation_name(c), ..Default::default() },
            });
        }
        Ok(views)
    }

    /// A conversation named in this tenant (INVALID_ARGUMENT otherwise), by number.
    fn conversation_ref(&self, field: &str, name: &str) -> Result<ConversationId, Status> {
        let (t, n) = names::conversation(field, name)?;
        let tenant = self.mesh.tenant();
        if t != tenant {
            return Err(Error::field(field, format!("{name:?} is not in tenant {tenant}")).into());
        }
        Ok(ConversationId(n))
    }
}
