//! The agent's own AgentService calls for a tenant created with `TENANT_ROUTING_ACTORS`
//! (issue 12, the cut-over), served by the agent's actor ([`crate::actors::agent`]) instead
//! of the tenant actor. Every other tenant is served as before (`service::agent`).
//!
//! - **Commands** (SetStatus, Accept, Decline, Pick, EndWrapUp): validated as the tenant
//!   actor validates them, then queued on the agent's link (durable in the agent actor's
//!   row) and answered once the router actor has decided them ([`AgentHandle::decision`]):
//!   applied, the call returns the agent or the conversation as the actors hold them now; a
//!   refusal is FAILED_PRECONDITION with the router's reason, in resource names
//!   (`refusal::rename_mesh`; the tenant actor's path gives some refusals other codes).
//!   Accept, Decline and Pick served on the router's node skip the link: one call on the
//!   router actor, decided and answered in one router write ([`Desk::by_router`]).
//! - **Reads**: ListAssigned from the router actor when it runs here (its durable view,
//!   which an accept it answered is part of), else from the agent actor (what the router
//!   last told it: offered and assigned), ListUnaccepted from the router actor (the agent
//!   actor does not know the queues; the forwarder routes it by tenant, to the router's
//!   node); each conversation from its conversation actor on whichever node it lives
//!   (`calls::held_many`, found by the router's `customer_of`), its position and estimated
//!   wait from the router.
//! - **The desk's StreamEvents** reads `agent/{id}`, a shared stream the router and
//!   conversation actors write (`actors::effects`), with the tenant actor's cursor contract
//!   (`serve_shared_stream`), on the node of the agent's actor.
//!
//! The agent is named `tenants/{t}/agents/{a}` and resolved through the mesh's configuration;
//! an agent it does not know is looked for again once after checking the stored
//! configuration version (`actors::config`: one created after the mesh loaded), then
//! NOT_FOUND.
//!
//! **Idempotency**: a command's `request_id` is stored with its number in the agent actor's
//! batch that queues it (`Batch::responses`, the per-actor table); a retry finds it there
//! before dispatching and waits for that command's decision again, queuing nothing, then
//! answers with the agent or conversation as they are now. Two copies racing before either
//! is durable are one command too (the actor remembers its newest request ids). An Accept,
//! Decline or Pick decided by the router keeps its word in the router's batch instead, and
//! its copies are one command by the router's own rules (`RouterHandle::call_public`).

use std::sync::Arc;
use std::time::Duration;

use switchboard_core::router::StatusCause;
use switchboard_core::{AgentId, ConversationId, CustomerId};
use switchboard_proto::v1 as pb;
use tonic::Status;

use super::page_token;
use crate::actors::Mesh;
use crate::actors::agent::{AgentHandle, AgentOp, Decision, parse_answer};
use crate::actors::effects::{Current, MeshNames};
use crate::actors::meshes::Meshes;
use crate::actors::numbers::Numbers;
use crate::actors::placement::ActorKey;
use crate::actors::router::{RouterAnswer, RouterCall, RouterCalled, RouterOp};
use crate::apply::Names as _;
use crate::convert::{self, refusal, resources, views};
use crate::error::Error;
use crate::names;

/// What the router keeps for an Accept, Decline or Pick it decided as a public call
/// ([`Desk::by_router`]): which agent, command and conversation (a retry of another call
/// under the same request id is told so).
fn by_router_body(agent: AgentId, kind: &str, c: ConversationId) -> Vec<u8> {
    format!("router:agent/{}/{kind}/{}", agent.0, c.0).into_bytes()
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
    /// Customers' names (their ids) by number.
    numbers: Arc<Numbers>,
}

impl Desk {
    /// The agent `id` of the mesh's tenant; NOT_FOUND if the configuration has no such agent,
    /// after one check that the mesh's configuration is the stored one (an agent created
    /// after the mesh loaded, `actors::config`).
    pub(super) async fn resolve(meshes: &Meshes, mesh: Mesh, id: &str) -> Result<Desk, Status> {
        let mut agent = mesh.config().agent_by_id(id);
        if agent.is_none() {
            mesh.refresh_stored().await?;
            agent = mesh.config().agent_by_id(id);
        }
        let agent = agent.ok_or_else(|| {
            Error::NotFound(format!("agent: agent {id:?} of tenant {}", mesh.tenant()))
        })?;
        Ok(Desk { mesh, agent, numbers: meshes.numbers().clone() })
    }

    pub(super) fn tenant(&self) -> &str {
        self.mesh.tenant()
    }

    /// Resolves once the agent's actor no longer lives on this node (`Mesh::moved_away`).
    pub(super) fn moved_away(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        self.mesh.moved_away(ActorKey::Agent { tenant: self.mesh.tenant(), agent: self.agent })
    }

    fn handle(&self) -> AgentHandle {
        self.mesh.agent(self.agent)
    }

    fn names(&self) -> MeshNames<'_> {
        MeshNames { tenant: self.mesh.tenant(), config: self.mesh.config() }
    }

    /// Queues `op` on the agent's link once per `request_id` and waits for the router's
    /// decision: applied, or refused with the router's reason, code and `ErrorInfo` reason
    /// as the tenant actor refuses it. A request id the
    /// agent actor answered before (`Batch::responses`, kept for the request retention) gets
    /// the decision on that command again, nothing queued; one another call used is
    /// FAILED_PRECONDITION. A failed lookup fails the call (retryable).
    async fn decided(&self, op: AgentOp, request_id: &str) -> Result<(), Status> {
        crate::registry::check_request_id(request_id)?;
        // The lookup and the router's check are both reads, so they run together (the
        // check's answer counts only for a request id not answered before).
        let (answered, admissible) =
            tokio::join!(self.answered(request_id, op.kind()), self.admissible(&op));
        let command = match answered? {
            Some(command) => {
                crate::metrics::replayed(self.mesh.tenant());
                command
            }
            None => {
                admissible?;
                let id = (!request_id.is_empty()).then(|| request_id.to_owned());
                self.handle().command(op, id).await?
            }
        };
        self.answer_decision(self.handle().decision(command).await?)
    }

    /// Accept, Decline or Pick with the router on this node: a public call on the router
    /// actor, decided and answered in one router write (the agent's link would add the agent
    /// actor's writes before and after it). The agent actor learns what it holds from the
    /// router's notes on its link, as it does for offers. Ordering with the agent's link holds
    /// for every command whose answer the caller has seen: both paths answer only once the
    /// router has decided. The request id keeps [`by_router_body`]'s word for the command (a
    /// refusal keeps nothing, as on the router's other calls); one kept by the agent's link
    /// (an earlier call when the router ran elsewhere) waits for that command's decision.
    async fn by_router(&self, op: AgentOp, request_id: &str) -> Result<(), Status> {
        crate::registry::check_request_id(request_id)?;
        let (agent, kind) = (self.agent, op.kind());
        let (router_op, c) = match op {
            AgentOp::Accept(c) => (RouterOp::Accept { agent, conversation: c }, c),
            AgentOp::Decline(c) => (RouterOp::Decline { agent, conversation: c }, c),
            AgentOp::Pick(c) => (RouterOp::Pick { agent, conversation: c }, c),
            AgentOp::SetStatus { .. } | AgentOp::EndWrapUp(_) => {
                return self.decided(op, request_id).await;
            }
        };
        let kept = by_router_body(agent, kind, c);
        let keep = kept.clone();
        let answer: RouterAnswer =
            Arc::new(move |results| results.iter().all(|r| r.is_ok()).then(|| keep.clone()));
        let call = RouterCall { ops: vec![router_op], request_id: request_id.to_owned(), answer };
        match self.mesh.router().call_public(call).await? {
            RouterCalled::Stored(body) if body == kept => Ok(()),
            RouterCalled::Stored(body) => match parse_answer(&body) {
                Some((a, k, command)) if a == agent && k == kind => {
                    self.answer_decision(self.handle().decision(command).await?)
                }
                _ => Err(Error::reused(request_id).into()),
            },
            RouterCalled::Decided { mut results, .. } => match results.pop() {
                Some(Err(switchboard_core::Error::UnknownConversation(_))) => {
                    Err(super::on_actors::not_held(&self.mesh, &self.names(), c, kind).await.into())
                }
                Some(Err(error)) => {
                    let message = refusal::describe_mesh(&self.names(), None, &error);
                    Err(Error::Refused { error, message }.into())
                }
                _ => Ok(()),
            },
        }
    }

    /// The caller's answer for the router's decision on a command of the agent's link.
    fn answer_decision(&self, decision: Decision) -> Result<(), Status> {
        match decision {
            Decision::Applied => Ok(()),
            Decision::Refused { reason, kind } => {
                let message = crate::convert::refusal::rename_mesh(&self.names(), None, &reason);
                Err(crate::error::refused(kind.as_ref(), message))
            }
        }
    }

    /// A new Accept, Decline or Pick names a conversation the router actor has (live):
    /// NOT_FOUND otherwise, as on the tenant actor's path.
    async fn admissible(&self, op: &AgentOp) -> Result<(), Status> {
        let (AgentOp::Accept(c) | AgentOp::Decline(c) | AgentOp::Pick(c)) = *op else {
            return Ok(());
        };
        if !self.router_here() {
            // The router refuses a conversation it does not have: FAILED_PRECONDITION with
            // its reason rather than NOT_FOUND (no read of another node's actor).
            return Ok(());
        }
        let live = move |side: &switchboard_core::mesh::RouterSide| {
            side.customer_of(c).is_some() && !side.has_left(c)
        };
        // As applied, not as durable: the check only refuses or sends the command on.
        if !self.mesh.router().peek(live).await? {
            return Err(super::on_actors::not_held(&self.mesh, &self.names(), c, op.kind())
                .await
                .into());
        }
        Ok(())
    }

    /// The command of this `kind` a request id queued for this agent before, if the store has
    /// it; FAILED_PRECONDITION if another call used the request id.
    async fn answered(&self, request_id: &str, kind: &str) -> Result<Option<u64>, Status> {
        if request_id.is_empty() {
            return Ok(None);
        }
        let store = self.mesh.inner().store.clone();
        let (tenant, id) = (self.mesh.tenant().to_owned(), request_id.to_owned());
        let found = tokio::task::spawn_blocking(move || store.actor_response(&tenant, &id))
            .await
            .map_err(|e| Status::unavailable(format!("request lookup interrupted: {e}")))?
            .map_err(Error::from)?;
        let Some(body) = found else { return Ok(None) };
        match parse_answer(&body) {
            Some((agent, k, command)) if agent == self.agent && k == kind => Ok(Some(command)),
            _ => Err(Error::reused(request_id).into()),
        }
    }

    pub(super) async fn set_status(&self, r: &pb::SetStatusRequest) -> Result<pb::Agent, Status> {
        let status = convert::status("status", r.status)?;
        let op = AgentOp::SetStatus { status, cause: StatusCause::Agent };
        self.decided(op, &r.request_id).await?;
        self.agent_view().await
    }

    /// Ends the wrap-up of the named ended conversation, or every one (empty name).
    pub(super) async fn end_wrap_up(&self, r: &pb::EndWrapUpRequest) -> Result<pb::Agent, Status> {
        // The conversation has ended: its name is checked, not its state.
        let c = if r.conversation.is_empty() {
            None
        } else {
            Some(self.conversation_ref("conversation", &r.conversation)?)
        };
        self.decided(AgentOp::EndWrapUp(c), &r.request_id).await?;
        self.agent_view().await
    }

    /// Accept, Decline or Pick of a live conversation (NOT_FOUND if the router has none of
    /// that number); answers with the conversation as its actor holds it afterwards.
    pub(super) async fn on_conversation(
        &self,
        r: &pb::AgentConversationRequest,
        command: Command,
    ) -> Result<pb::Conversation, Status> {
        let c = self.conversation_ref("conversation", &r.conversation)?;
        let op = match command {
            Command::Accept => AgentOp::Accept(c),
            Command::Decline => AgentOp::Decline(c),
            Command::Pick => AgentOp::Pick(c),
        };
        if self.router_here() {
            self.by_router(op, &r.request_id).await?;
        } else {
            self.decided(op, &r.request_id).await?;
        }
        // The decision is durable by now, so the router's side as applied holds it: a peek
        // answers without waiting for the router's next write (about one commit under load).
        let mut views = self.conversations(vec![c], Side::AsApplied).await?;
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
        let all: Vec<ConversationId> = if kind == "assigned" && self.router_here() {
            // The router's durable word, which an Accept or Pick answered by the router
            // (`by_router`) is part of before its caller hears it; the agent actor hears it a
            // message later.
            let read = move |side: &switchboard_core::mesh::RouterSide| {
                side.router().agent(a).map_or_else(Vec::new, |live| {
                    live.offered.iter().chain(live.assigned.iter()).copied().collect()
                })
            };
            self.mesh.router().read(read).await?
        } else if kind == "assigned" {
            let read = |side: &switchboard_core::mesh::AgentSide| {
                side.offered().iter().chain(side.assigned().iter()).copied().collect()
            };
            self.handle().read(read).await?
        } else if self.router_here() {
            let now = crate::clock::now();
            self.mesh.router().read(move |side| side.router().unaccepted(a, now)).await?
        } else {
            // Routed by tenant, so it lands where the router runs, unless that just moved.
            return Err(Status::unavailable(
                "the router of this tenant moved while ListUnaccepted was on its way; retry",
            ));
        };
        let end = (start + size).min(all.len());
        let page = all.get(start..end).unwrap_or_default().to_vec();
        let conversations = self.conversations(page, Side::Durable).await?;
        let next_page_token =
            if end < all.len() { page_token(kind, &end.to_string()) } else { String::new() };
        Ok(pb::ListConversationsResponse { conversations, next_page_token })
    }

    /// The agent as the actors hold it: settings from the mesh's configuration, status,
    /// load, wrap-ups and first sign-in from the router actor (the one kept, whichever day it
    /// was, as the tenant actor's path answers its commands: `resources::agent`). With the
    /// router on another node, the agent actor's own view: no wrap-ups, no first sign-in.
    pub(super) async fn agent_view(&self) -> Result<pb::Agent, Status> {
        let a = self.agent;
        let config = self.mesh.config();
        if !self.router_here() {
            // The router runs on another node: the agent actor's own view (its status as
            // set, what the router told it it holds), no wrap-ups.
            let read = |side: &switchboard_core::mesh::AgentSide| {
                (side.status(), (side.offered().len() + side.assigned().len()) as u32)
            };
            let (status, load) = self.handle().read(read).await?;
            let view = resources::agent_named(&self.names(), a, config.agents.get(&a), None);
            return Ok(pb::Agent {
                supervisor: config.supervisors.contains(&a),
                status: convert::status_to_pb(status) as i32,
                load,
                ..view
            });
        }
        let read = move |side: &switchboard_core::mesh::RouterSide| {
            (side.router().agent(a).cloned(), side.first_login(a))
        };
        let (live, first) = self.mesh.router().read(read).await?;
        let view = resources::agent_named(&self.names(), a, config.agents.get(&a), live.as_ref());
        Ok(pb::Agent {
            supervisor: config.supervisors.contains(&a),
            first_login_today: first.map(|f| convert::timestamp(f.at)),
            ..view
        })
    }

    /// Whether the tenant's router actor runs on this node (its reads are local only).
    fn router_here(&self) -> bool {
        self.mesh.is_here(ActorKey::Router { tenant: self.mesh.tenant() })
    }

    /// The customer of each conversation, from the durable owner rows (when the router
    /// runs on another node).
    async fn owners(&self, ids: &[ConversationId]) -> Result<Vec<Option<CustomerId>>, Status> {
        let store = self.mesh.inner().store.clone();
        let (tenant, ids) = (self.mesh.tenant().to_owned(), ids.to_vec());
        let found = tokio::task::spawn_blocking(move || {
            ids.iter()
                .map(|c| store.conversation_customer(&tenant, c.0).map(|u| u.map(CustomerId)))
                .collect::<switchboard_store::Result<Vec<_>>>()
        })
        .await
        .map_err(|e| Status::unavailable(format!("conversation lookup interrupted: {e}")))?
        .map_err(Error::from)?;
        Ok(found)
    }

    /// Each conversation as its actor holds it (found through the router's `customer_of`),
    /// with its position and estimated wait from the router (its side as `side` says); only
    /// its name if neither knows it any more (ended and gone).
    async fn conversations(
        &self,
        ids: Vec<ConversationId>,
        side: Side,
    ) -> Result<Vec<pb::Conversation>, Status> {
        let now = crate::clock::now();
        let wanted = ids.clone();
        let placed: Vec<(Option<CustomerId>, Option<usize>, Option<Duration>)> = if !self
            .router_here()
        {
            // No position or estimated wait from a router on another node.
            self.owners(&ids).await?.into_iter().map(|u| (u, None, None)).collect()
        } else {
            let read = move |side: &switchboard_core::mesh::RouterSide| {
                let router = side.router();
                wanted
                    .iter()
                    .map(|c| {
                        (side.customer_of(*c), router.position(*c), router.estimated_wait(now, *c))
                    })
                    .collect()
            };
            match side {
                Side::Durable => self.mesh.router().read(read).await?,
                Side::AsApplied => self.mesh.router().peek(read).await?,
            }
        };
        // Each from its actor, on whichever node it lives (one read per node for the lot).
        let wanted: Vec<(ConversationId, CustomerId)> =
            ids.iter().zip(&placed).filter_map(|(c, (u, _, _))| u.map(|u| (*c, u))).collect();
        let mut found = crate::service::calls::held_many(&self.mesh, &wanted).await?.into_iter();
        let names = self.names();
        let mut views = Vec::with_capacity(ids.len());
        for (c, (customer, position, wait)) in ids.into_iter().zip(placed) {
            let held = match customer {
                Some(u) => found.next().flatten().map(|h| (u, h)),
                None => None,
            };
            views.push(match held {
                Some((u, h)) => {
                    // By its id (the name bound to its number), as the channel calls show it.
                    let id = self.numbers.customer_name(self.mesh.tenant(), u).await?;
                    let shown = id.unwrap_or_else(|| u.0.to_string());
                    let customer = names::child_name(self.mesh.tenant(), "customers", &shown);
                    let extra = h.extra.as_ref();
                    let position = position.or(h.position);
                    views::render_named(
                        &Current(names.clone()),
                        &h.conversation,
                        extra,
                        customer,
                        position,
                        wait,
                    )
                }
                None => pb::Conversation { name: names.conversation_name(c), ..Default::default() },
            });
        }
        Ok(views)
    }

    /// A conversation named in this tenant (INVALID_ARGUMENT otherwise), by number.
    fn conversation_ref(&self, field: &str, name: &str) -> Result<ConversationId, Status> {
        let (t, n) = names::conversation_parts(field, name)?;
        let tenant = self.mesh.tenant();
        if t != tenant {
            return Err(Error::field(field, format!("{name:?} is not in tenant {tenant}")).into());
        }
        Ok(ConversationId(n))
    }
}

/// Which of the router's sides a conversation's view reads.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// Only durable decisions ([`crate::actors::router::RouterHandle::read`]).
    Durable,
    /// As applied ([`crate::actors::router::RouterHandle::peek`]): for the answer to a
    /// decision that is durable already, which the side as applied holds.
    AsApplied,
}
