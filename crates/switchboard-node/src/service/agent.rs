//! AgentService: what agent desktops call.

use switchboard_proto::internal::v1::{command::Op, response::Result as R, stream_item::Item};
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::agent_service_server::AgentService;
use tonic::{Request, Response, Status};

use super::agent_actors::{Command, Desk};
use super::on_actors::OnActors;
use super::{
    ItemStream, numeric_page, page_token, serve_hinted_stream, serve_stream, transcript_message,
    variant,
};
use crate::auth::Call;
use crate::convert::{resources, views};
use crate::error::Error;
use crate::names;
use crate::registry::Registry;
use crate::state::{TenantState, agent_stream};

#[derive(Debug, Clone)]
pub struct Agents {
    pub registry: Registry,
    /// The actors of tenants created with actor routing (the cut-over of issue 12).
    pub meshes: std::sync::Arc<crate::actors::meshes::Meshes>,
    /// In a cluster: how a DeskCommands stream's command reaches the node that serves it
    /// (`command_stream`). `None` on a single node.
    pub forward: Option<crate::cluster::forward::ForwardLayer>,
}

/// The answer of a conversation-named call an actor tenant's actors do not serve yet.
fn not_yet_on_actors(op: &Op) -> Status {
    let call = match op {
        Op::Transfer(_) => "Transfer",
        _ => "this call",
    };
    Status::failed_precondition(format!(
        "{call} is not yet served by actors (a tenant created with TENANT_ROUTING_ACTORS): see \
         ARCHITECTURE.md, the cut-over"
    ))
}

/// (tenant, agent id) of an acting agent's name.
fn agent_name(name: &str) -> Result<(String, String), Status> {
    Ok(names::child("agent", name, "agents")?)
}

/// Who serves an agent's own call: its agent actor (a tenant created with actor routing) or
/// its tenant actor (every other tenant; the tenant's name).
enum Path {
    Actors(Desk),
    Tenant(String),
}

impl Agents {
    /// Checks the caller may act as `agent`, then finds who serves its calls.
    async fn path(&self, call: &Call, agent: &str) -> Result<Path, Status> {
        let (tenant, id) = agent_name(agent)?;
        call.allow(&tenant, Some(&id))?;
        match super::on_actors::served(&self.meshes, &tenant).await? {
            Some(mesh) => Ok(Path::Actors(Desk::resolve(&self.meshes, mesh, &id).await?)),
            None => Ok(Path::Tenant(tenant)),
        }
    }

    /// Accept, Decline or Pick, on whichever path serves the agent.
    async fn offer(
        &self,
        req: Request<pb::AgentConversationRequest>,
        command: Command,
        op: fn(pb::AgentConversationRequest) -> Op,
    ) -> Result<Response<pb::Conversation>, Status> {
        let (call, r) = Call::split(req);
        match self.path(&call, &r.agent).await? {
            Path::Actors(desk) => desk.on_conversation(&r, command).await.map(Response::new),
            Path::Tenant(tenant) => {
                let request_id = r.request_id.clone();
                let result = self.registry.command(&tenant, op(r), &request_id).await?;
                variant!(result, Conversation).map(Response::new)
            }
        }
    }

    async fn run(&self, call: &Call, agent: &str, op: Op, request_id: &str) -> Result<R, Status> {
        let (tenant, id) = agent_name(agent)?;
        call.allow(&tenant, Some(&id))?;
        self.registry.command(&tenant, op, request_id).await
    }

    async fn conversation(
        &self,
        call: &Call,
        agent: &str,
        op: Op,
        request_id: &str,
    ) -> Result<Response<pb::Conversation>, Status> {
        if let Some(on) = self.on_actors(call, agent, &op).await? {
            let served = match &op {
                Op::MarkRead(r) => on.agent_on_conversation(r, false).await?,
                Op::EndConversation(r) => on.agent_on_conversation(r, true).await?,
                Op::Transfer(r) => super::supervisor_actors::transfer(&on, r).await?,
                Op::AgentBotHosting(r) => on.agent_bot_hosting(r).await?,
                Op::InviteRating(r) => on.invite_rating(r).await?,
                Op::UpdateConversation(r) => on.update_conversation(r).await?,
                _ => return Err(not_yet_on_actors(&op)),
            };
            return Ok(Response::new(served));
        }
        variant!(self.run(call, agent, op, request_id).await?, Conversation).map(Response::new)
    }

    /// The tenant's actors, if it is served by actors and `op` is one of the
    /// conversation-named calls served there (the others stay as they are here).
    async fn on_actors(
        &self,
        call: &Call,
        agent: &str,
        op: &Op,
    ) -> Result<Option<OnActors<'_>>, Status> {
        let ours = matches!(
            op,
            Op::SendMessage(_)
                | Op::MarkRead(_)
                | Op::EndConversation(_)
                | Op::Transfer(_)
                | Op::AgentBotHosting(_)
                | Op::InviteRating(_)
                | Op::UpdateConversation(_)
        );
        if !ours {
            return Ok(None);
        }
        let (tenant, id) = names::child_parts("agent", agent, "agents")?;
        call.allow(tenant, Some(id))?;
        let mesh = super::on_actors::served(&self.meshes, tenant).await?;
        Ok(mesh.map(|mesh| OnActors { meshes: &self.meshes, mesh }))
    }

    async fn list(
        &self,
        (call, r): (Call, pb::ListAgentConversationsRequest),
        kind: &'static str,
        which: fn(&TenantState, switchboard_core::AgentId) -> Vec<switchboard_core::ConversationId>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        let path = self.path(&call, &r.agent).await?;
        let (size, start) = numeric_page(r.page.as_ref(), kind)?;
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let (tenant, id) = match path {
            Path::Actors(desk) => return desk.list(kind, size, start).await.map(Response::new),
            Path::Tenant(tenant) => (tenant, agent_name(&r.agent)?.1),
        };
        let page = self
            .registry
            .read(&tenant, move |state| -> Result<_, Error> {
                let a = state.agent("agent", &id)?;
                let all = which(state, a);
                let end = (start + size).min(all.len());
                let conversations = all
                    .get(start..end)
                    .unwrap_or_default()
                    .iter()
                    .map(|c| views::conversation(state, *c))
                    .collect();
                let next = if end < all.len() {
                    page_token(kind, &end.to_string())
                } else {
                    String::new()
                };
                Ok(pb::ListConversationsResponse { conversations, next_page_token: next })
            })
            .await??;
        Ok(Response::new(page))
    }
}

macro_rules! request_fields {
    ($r:ident) => {
        ($r.agent.clone(), $r.request_id.clone())
    };
}

#[tonic::async_trait]
impl AgentService for Agents {
    async fn set_status(
        &self,
        req: Request<pb::SetStatusRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let (call, r) = Call::split(req);
        let tenant = match self.path(&call, &r.agent).await? {
            Path::Actors(desk) => return desk.set_status(&r).await.map(Response::new),
            Path::Tenant(tenant) => tenant,
        };
        let request_id = r.request_id.clone();
        variant!(self.registry.command(&tenant, Op::SetStatus(r), &request_id).await?, Agent)
            .map(Response::new)
    }

    type StreamEventsStream = ItemStream<pb::AgentEvent>;

    async fn stream_events(
        &self,
        req: Request<pb::StreamAgentEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        let (call, r) = Call::split(req);
        let (_, id) = agent_name(&r.agent)?;
        let path = self.path(&call, &r.agent).await?;
        let tenant = match &path {
            Path::Actors(desk) => desk.tenant().to_owned(),
            Path::Tenant(tenant) => tenant.clone(),
        };
        let slot = call.stream_slot(&tenant, &id)?;
        if let Path::Tenant(_) = path {
            let check = id.clone();
            self.registry
                .read(&tenant, move |state| state.agent("agent", &check).map(|_| ()))
                .await??;
        }
        let pick = |item: switchboard_proto::internal::v1::StreamItem| match item.item {
            Some(Item::AgentEvent(e)) => Some(e),
            _ => None,
        };
        let (stream, cursor) = (agent_stream(&id), r.after_cursor);
        let mut stream = match &path {
            // The tenant actor is the desk stream's one writer.
            Path::Tenant(_) => serve_stream(&self.registry, tenant, stream, cursor, pick),
            // On actors the router and conversation actors write it, on every node: a
            // shared stream, same cursor contract, whose entries written elsewhere are sent
            // here (re-read from the store only when one is lost).
            Path::Actors(_) => serve_hinted_stream(&self.registry, tenant, stream, cursor, pick),
        };
        if let Path::Actors(desk) = &path {
            // Its writers' entries reach this node's hub where the agent's actor runs
            // (`actors::Mesh::published`): when the actor moves to another node, the client
            // must follow it there.
            let why = format!(
                "agent {} moved to another node; reconnect after your last cursor (any node forwards)",
                r.agent
            );
            stream = super::until_moved(stream, desk.moved_away(), why);
        }
        // The agent's stream place is given back when the client goes away.
        let stream = tokio_stream::StreamExt::map(stream, move |item| {
            let _held = &slot;
            item
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn accept(
        &self,
        req: Request<pb::AgentConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        self.offer(req, Command::Accept, Op::Accept).await
    }

    async fn decline(
        &self,
        req: Request<pb::AgentConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        self.offer(req, Command::Decline, Op::Decline).await
    }

    async fn pick(
        &self,
        req: Request<pb::AgentConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        self.offer(req, Command::Pick, Op::Pick).await
    }

    async fn list_unaccepted(
        &self,
        req: Request<pb::ListAgentConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        self.list(Call::split(req), "unaccepted", |state, a| {
            state.engine.router().unaccepted(a, state.last_at)
        })
        .await
    }

    async fn list_assigned(
        &self,
        req: Request<pb::ListAgentConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        self.list(Call::split(req), "assigned", |state, a| {
            state
                .engine
                .router()
                .agent(a)
                .map(|x| x.offered.iter().chain(x.assigned.iter()).copied().collect())
                .unwrap_or_default()
        })
        .await
    }

    type DeskCommandsStream = ItemStream<pb::DeskCommandResult>;

    async fn desk_commands(
        &self,
        req: Request<tonic::Streaming<pb::DeskCommand>>,
    ) -> Result<Response<Self::DeskCommandsStream>, Status> {
        let desk = |call, metadata| super::command_stream::Desk::new(self.clone(), call, metadata);
        Ok(super::command_stream::serve(req, desk, self.registry.hub()))
    }

    async fn send_message(
        &self,
        req: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let (call, r) = Call::split(req);
        let (agent, request_id) = request_fields!(r);
        let op = Op::SendMessage(r);
        if let (Some(on), Op::SendMessage(r)) = (self.on_actors(&call, &agent, &op).await?, &op) {
            return Ok(Response::new(on.send_message(r).await?));
        }
        variant!(self.run(&call, &agent, op, &request_id).await?, SendMessage).map(Response::new)
    }

    async fn mark_read(
        &self,
        req: Request<pb::AgentConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let (call, r) = Call::split(req);
        let (agent, request_id) = request_fields!(r);
        self.conversation(&call, &agent, Op::MarkRead(r), &request_id).await
    }

    async fn transfer(
        &self,
        req: Request<pb::TransferRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let (call, r) = Call::split(req);
        let (agent, request_id) = request_fields!(r);
        self.conversation(&call, &agent, Op::Transfer(r), &request_id).await
    }

    async fn end_conversation(
        &self,
        req: Request<pb::AgentConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let (call, r) = Call::split(req);
        let (agent, request_id) = request_fields!(r);
        self.conversation(&call, &agent, Op::EndConversation(r), &request_id).await
    }

    async fn end_wrap_up(
        &self,
        req: Request<pb::EndWrapUpRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let (call, r) = Call::split(req);
        let tenant = match self.path(&call, &r.agent).await? {
            Path::Actors(desk) => return desk.end_wrap_up(&r).await.map(Response::new),
            Path::Tenant(tenant) => tenant,
        };
        let request_id = r.request_id.clone();
        variant!(self.registry.command(&tenant, Op::EndWrapUp(r), &request_id).await?, Agent)
            .map(Response::new)
    }

    async fn set_bot_hosting(
        &self,
        req: Request<pb::AgentBotHostingRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let (call, r) = Call::split(req);
        let (agent, request_id) = request_fields!(r);
        self.conversation(&call, &agent, Op::AgentBotHosting(r), &request_id).await
    }

    async fn invite_rating(
        &self,
        req: Request<pb::AgentConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let (call, r) = Call::split(req);
        let (agent, request_id) = request_fields!(r);
        self.conversation(&call, &agent, Op::InviteRating(r), &request_id).await
    }

    async fn get_history(
        &self,
        req: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::GetHistoryResponse>, Status> {
        let (call, r) = Call::split(req);
        let (tenant, id) = agent_name(&r.agent)?;
        call.allow(&tenant, Some(&id))?;
        let (t, n) = names::conversation("conversation", &r.conversation)?;
        if t != tenant {
            return Err(Error::field("conversation", "is in another tenant than the agent").into());
        }
        // What this agent may see (SPEC §7): everything, up to its handover, or nothing.
        let cutoff = match super::on_actors::served(&self.meshes, &tenant).await? {
            Some(mesh) => {
                let on = OnActors { meshes: &self.meshes, mesh };
                on.history_cutoff(&r.agent, n).await?
            }
            None => {
                self.registry
                    .with_conversation(&tenant, n, move |state, c, _, _| -> Result<_, Error> {
                        let a = state.agent("agent", &id)?;
                        crate::scope::conversation(state, a, c)?;
                        Ok(c.visible_until(crate::scope::viewer(state, a)).flatten())
                    })
                    .await??
            }
        };
        let (size, after) = numeric_page(r.page.as_ref(), "history")?;
        let (store, name) = (self.registry.store().clone(), tenant.clone());
        let rows = tokio::task::spawn_blocking(move || store.messages(&name, n, after, size + 1))
            .await
            .map_err(|e| Status::unavailable(format!("store read interrupted: {e}")))?
            .map_err(Error::from)?;
        let mut messages: Vec<pb::Message> = rows
            .iter()
            .filter(|row| cutoff.is_none_or(|until| row.at_ms <= until.as_millis()))
            .map(transcript_message)
            .collect();
        let more = messages.len() > size;
        messages.truncate(size);
        let next_page_token = if more {
            messages.last().map(|m| page_token("history", &m.seq.to_string())).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::GetHistoryResponse { messages, next_page_token }))
    }

    async fn update_conversation(
        &self,
        req: Request<pb::UpdateConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let (call, r) = Call::split(req);
        let (agent, request_id) = request_fields!(r);
        self.conversation(&call, &agent, Op::UpdateConversation(r), &request_id).await
    }

    async fn update_customer_profile(
        &self,
        req: Request<pb::UpdateCustomerProfileRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let (call, r) = Call::split(req);
        let (agent, request_id) = request_fields!(r);
        let (tenant, id) = agent_name(&agent)?;
        call.allow(&tenant, Some(&id))?;
        // A tenant on actors: the customer's conversation actor holds its profile.
        if let Some(mesh) = super::on_actors::served(&self.meshes, &tenant).await? {
            let on = OnActors { meshes: &self.meshes, mesh };
            return Ok(Response::new(on.update_customer_profile(&r).await?));
        }
        variant!(
            self.run(&call, &agent, Op::UpdateCustomerProfile(r), &request_id).await?,
            Customer
        )
        .map(Response::new)
    }

    async fn search_conversations(
        &self,
        req: Request<pb::SearchConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        let (call, r) = Call::split(req);
        let (tenant, agent) = agent_name(&r.agent)?;
        call.allow(&tenant, Some(&agent))?;
        if let Some(mesh) = super::on_actors::served(&self.meshes, &tenant).await? {
            // The router actor's open conversations and the archive, with the tenant actor's
            // rules (routed by tenant, so on the router's node); the agent in the mesh's
            // configuration, its scope by its supervisor flag there.
            let on = OnActors { meshes: &self.meshes, mesh };
            let a = on.acting(&r.agent).await?;
            let viewer = (!on.mesh.config().supervisors.contains(&a)).then_some(a);
            let (filter, size, token) = (&r.filter, r.page_size, &r.page_token);
            let list = super::supervisor_reads_actors::list_conversations(
                &self.meshes,
                &on.mesh,
                viewer,
                filter,
                size,
                token,
            );
            return Ok(Response::new(list.await?));
        }
        let page = super::search::conversations(
            &self.registry,
            &tenant,
            Some(agent),
            &r.filter,
            r.page_size,
            &r.page_token,
        )
        .await?;
        Ok(Response::new(page))
    }

    async fn search_customers(
        &self,
        req: Request<pb::SearchCustomersRequest>,
    ) -> Result<Response<pb::ListCustomersResponse>, Status> {
        let (call, r) = Call::split(req);
        let (tenant, agent) = agent_name(&r.agent)?;
        call.allow(&tenant, Some(&agent))?;
        let mesh = super::on_actors::served(&self.meshes, &tenant).await?;
        let page = super::search::customers(
            &self.registry,
            mesh.as_ref(),
            &tenant,
            Some(agent),
            &r.filter,
            r.page_size,
            &r.page_token,
        )
        .await?;
        Ok(Response::new(page))
    }

    async fn get_customer_profile(
        &self,
        req: Request<pb::GetCustomerProfileRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let (call, r) = Call::split(req);
        let (tenant, agent) = agent_name(&r.agent)?;
        call.allow(&tenant, Some(&agent))?;
        let (t, id) = names::child("customer", &r.customer, "customers")?;
        if t != tenant {
            return Err(Error::field("customer", "is in another tenant than the agent").into());
        }
        // A tenant on actors: the customer's stored record, which its actor writes in every
        // step that changes it.
        if let Some(mesh) = super::on_actors::served(&self.meshes, &tenant).await? {
            let on = OnActors { meshes: &self.meshes, mesh };
            return Ok(Response::new(on.customer_profile(&agent, &r).await?));
        }
        let name = r.customer.clone();
        let check = move |state: &TenantState, c: Option<&switchboard_core::engine::Customer>| {
            let a = state.agent("agent", &agent)?;
            crate::scope::customer(state, a, &name, c)
        };
        Ok(Response::new(self.registry.customer_checked(&tenant, &id, check).await?))
    }

    async fn update_agent_replies(
        &self,
        req: Request<pb::UpdateAgentRepliesRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let (call, r) = Call::split(req);
        let (agent, request_id) = request_fields!(r);
        let result = self.run(&call, &agent, Op::UpdateAgentReplies(r), &request_id).await?;
        // The agent level of the replies is configuration: a tenant on actors' meshes take
        // it before the call is answered, as after PutAgent.
        if let Ok((tenant, _)) = agent_name(&agent) {
            super::admin::configured(&self.meshes, &tenant).await;
        }
        variant!(result, Agent).map(Response::new)
    }

    async fn list_quick_replies(
        &self,
        req: Request<pb::ListQuickRepliesRequest>,
    ) -> Result<Response<pb::QuickReplies>, Status> {
        let (call, r) = Call::split(req);
        let (tenant, id) = agent_name(&r.agent)?;
        call.allow(&tenant, Some(&id))?;
        let replies = self
            .registry
            .read(&tenant, move |state| {
                state.agent("agent", &id).map(|a| resources::quick_replies(state, Some(a)))
            })
            .await??;
        Ok(Response::new(replies))
    }

    async fn put_personal_quick_replies(
        &self,
        req: Request<pb::PutPersonalQuickRepliesRequest>,
    ) -> Result<Response<pb::QuickReplies>, Status> {
        let (call, r) = Call::split(req);
        let (agent, request_id) = request_fields!(r);
        variant!(
            self.run(&call, &agent, Op::PutPersonalQuickReplies(r), &request_id).await?,
            QuickReplies
        )
        .map(Response::new)
    }
}
