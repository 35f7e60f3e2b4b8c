//! `AdminService`: mutations go through the tenant's command log (`Registry::command`),
//! reads run on the tenant's current state (`Registry::read`) with the views of
//! `convert::resources`.

use switchboard_core::{AgentId, GroupId};
use switchboard_proto::internal::v1::command::Op;
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::admin_service_server::AdminService;
use tonic::{Request, Response, Status};

use prost::Message as _;
use switchboard_proto::internal::v1::StreamItem;
use switchboard_proto::internal::v1::stream_item::Item;

use super::{numeric_page, page, page_token, variant};
use crate::actors::router::RouterOp;
use crate::apply::webhooks;
use crate::auth::Call;
use crate::convert::resources;
use crate::error::Error;
use crate::names;
use crate::registry::Registry;
use crate::state::{Ids, TenantState};

#[derive(Debug)]
pub struct Admin {
    pub registry: Registry,
    /// The node's actor meshes: a configuration change of an actor tenant reaches its mesh
    /// here before the call is answered (`Admin::configured`).
    pub meshes: Option<std::sync::Arc<crate::actors::meshes::Meshes>>,
}

impl Admin {
    /// After a durable configuration command of `tenant`: [`configured`].
    async fn configured(&self, tenant: &str) {
        if let Some(meshes) = &self.meshes {
            configured(meshes, tenant).await;
        }
    }
}

/// After a durable configuration command of `tenant`: its mesh on this node (the tenant
/// actor's node, where its router actor runs) takes the new configuration before the call
/// is answered, so the next call here sees it (`actors::config`), and so do its meshes on
/// the other live members (`Reconfigure`, waited for up to 2 s each). A failed reload is
/// logged, not the call's failure: the command is durable, and the next envelope or call
/// naming what changed reloads again.
pub(super) async fn configured(meshes: &crate::actors::meshes::Meshes, tenant: &str) {
    let version = match meshes.running(tenant) {
        Some(mesh) if !mesh.config().actor_routing => return,
        Some(mesh) => match mesh.refresh_stored().await {
            Ok(()) => mesh.config_version(),
            Err(e) => {
                tracing::warn!(tenant, error = %e, "the mesh could not reload the tenant's configuration");
                return;
            }
        },
        // No mesh here: other members may still run one.
        None => {
            if !matches!(meshes.actor_routing(tenant).await, Ok(true)) {
                return;
            }
            let (store, name) = (meshes.store().clone(), tenant.to_owned());
            let read = move || crate::actors::config::stored(store.as_ref(), &name);
            match tokio::task::spawn_blocking(read).await {
                Ok(Ok(version)) => version,
                Ok(Err(e)) => {
                    tracing::warn!(tenant, error = %e, "the configuration version could not be read");
                    return;
                }
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "the configuration version could not be read");
                    return;
                }
            }
        }
    };
    // The other members' meshes (their conversation and agent actors) take it now too.
    crate::actors::grpc::reconfigure_peers(meshes.ownership(), tenant, version).await;
}

/// One page of the ids after `token` that `view` shows (ids whose resource is gone show
/// nothing), and the next token: empty when nothing follows.
fn page_of<T>(
    ids: &Ids,
    (size, token): (usize, String),
    mut view: impl FnMut(u64) -> Option<T>,
) -> (Vec<T>, String) {
    let mut items = Vec::new();
    let mut last = String::new();
    for (name, n) in ids.names_after(&token) {
        let Some(item) = view(n) else { continue };
        if items.len() == size {
            return (items, last);
        }
        items.push(item);
        last = name.clone();
    }
    (items, String::new())
}

impl Admin {
    /// The agents as a tenant on actors holds them: status, load, wrap-ups and first sign-in
    /// are its router actor's (the tenant actor only keeps their configuration), each view
    /// as the agent board shows it. Other tenants' views are returned as they are.
    async fn live(&self, tenant: &str, agents: Vec<pb::Agent>) -> Result<Vec<pb::Agent>, Status> {
        let Some(meshes) = &self.meshes else { return Ok(agents) };
        let Some(mesh) = super::on_actors::served(meshes, tenant).await? else {
            return Ok(agents);
        };
        let board = super::supervisor_reads_actors::agent_board(&mesh).await?;
        let mut live: std::collections::HashMap<String, pb::Agent> =
            board.agents.into_iter().map(|a| (a.name.clone(), a)).collect();
        Ok(agents.into_iter().map(|a| live.remove(&a.name).unwrap_or(a)).collect())
    }
}

impl Admin {
    /// A configuration command of a tenant on actors that the router must agree to first
    /// (`op`, from the mesh's configuration; `None`: nothing to agree), since the router
    /// holds the load and the queues the tenant actor's configuration cannot see: refused
    /// as the tenant actor refuses it on its own routing. Runs `command` once agreed, and
    /// brings the router back to the stored configuration if the command fails.
    async fn agreed<T>(
        &self,
        tenant: &str,
        op: impl FnOnce(&crate::actors::TenantConfig) -> Option<RouterOp>,
        command: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let Some(meshes) = &self.meshes else { return command.await };
        let Some(mesh) = super::on_actors::served(meshes, tenant).await? else {
            return command.await;
        };
        let Some(op) = op(&mesh.config()) else { return command.await };
        if let Err(e) = mesh.router().agree(op).await {
            return Err(match e {
                Error::Core(error) => {
                    let names = crate::actors::effects::MeshNames {
                        tenant: mesh.tenant(),
                        config: mesh.config(),
                    };
                    let message = crate::convert::refusal::describe_mesh(&names, None, &error);
                    Error::Refused { error, message }
                }
                e => e,
            }
            .into());
        }
        let done = command.await;
        if done.is_err()
            && let Err(e) = mesh.router().reconcile().await
        {
            tracing::warn!(tenant, error = %e, "the router could not take the configuration again");
        }
        done
    }

    /// The groups' live figures as the router actor of a tenant on actors holds them (the
    /// tenant actor only keeps their configuration). Other tenants' views are returned as
    /// they are.
    async fn live_groups(
        &self,
        tenant: &str,
        mut groups: Vec<pb::Group>,
    ) -> Result<Vec<pb::Group>, Status> {
        let Some(meshes) = &self.meshes else { return Ok(groups) };
        let Some(mesh) = super::on_actors::served(meshes, tenant).await? else {
            return Ok(groups);
        };
        let config = mesh.config();
        let ids: Vec<Option<GroupId>> = groups
            .iter()
            .map(|g| names::child_id_in("name", &g.name, "groups", tenant).ok())
            .map(|id| id.and_then(|id| config.group_by_id(id)))
            .collect();
        let waiting = super::supervisor_reads_actors::on_router(&mesh, move |side| {
            ids.iter().map(|g| g.map(|g| side.router().queue_len(g) as u64)).collect::<Vec<_>>()
        })
        .await?;
        for (group, waiting) in groups.iter_mut().zip(waiting) {
            group.waiting = waiting.unwrap_or_default();
        }
        Ok(groups)
    }
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let (call, r) = Call::split(request);
        names::check_id("tenant_id", &r.tenant_id).map_err(Status::from)?;
        call.allow(&r.tenant_id, None)?;
        let result = self.registry.create_tenant(r).await?;
        Ok(Response::new(variant!(result, Tenant)?))
    }

    async fn get_tenant(
        &self,
        request: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let (call, r) = Call::split(request);
        let t = names::tenant("name", &r.name).map_err(Status::from)?;
        call.allow(&t, None)?;
        Ok(Response::new(self.registry.read(&t, resources::tenant).await?))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        // Tenants on other nodes are read from their owners with the caller's credentials.
        let credentials = request.metadata().get("authorization").cloned();
        let (call, r) = Call::split(request);
        call.allow("", None)?;
        let (size, token) = page(r.page.as_ref(), "tenants")?;
        let mut tenants = Vec::new();
        let mut last = String::new();
        let mut next_page_token = String::new();
        for t in self.registry.tenants().await?.into_iter().filter(|t| *t > token) {
            if tenants.len() == size {
                next_page_token = page_token("tenants", &last);
                break;
            }
            match self.registry.tenant_resource(&t, credentials.as_ref()).await {
                Ok(tenant) => tenants.push(tenant),
                // Deleted or moved between listing and reading: not part of this page.
                Err(s) if s.code() == tonic::Code::NotFound => continue,
                Err(s) => return Err(s),
            }
            last = t;
        }
        Ok(Response::new(pb::ListTenantsResponse { tenants, next_page_token }))
    }

    async fn update_tenant(
        &self,
        request: Request<pb::UpdateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let (call, r) = Call::split(request);
        let t = names::tenant("name", &r.name).map_err(Status::from)?;
        call.allow(&t, None)?;
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::UpdateTenant(r), &request_id).await?;
        self.configured(&t).await;
        Ok(Response::new(variant!(result, Tenant)?))
    }

    async fn put_group(
        &self,
        request: Request<pb::PutGroupRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let (call, r) = Call::split(request);
        let (t, _) = names::child("name", &r.name, "groups").map_err(Status::from)?;
        call.allow(&t, None)?;
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::PutGroup(r), &request_id).await?;
        self.configured(&t).await;
        Ok(Response::new(variant!(result, Group)?))
    }

    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let (call, r) = Call::split(request);
        let (t, id) = names::child("name", &r.name, "groups").map_err(Status::from)?;
        call.allow(&t, None)?;
        let group = self
            .registry
            .read(&t, move |s| s.group("name", &id).map(|g| resources::group(s, g)))
            .await?
            .map_err(Status::from)?;
        Ok(Response::new(self.live_groups(&t, vec![group]).await?.pop().unwrap_or_default()))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let (call, r) = Call::split(request);
        let t = names::tenant("tenant", &r.tenant).map_err(Status::from)?;
        call.allow(&t, None)?;
        let page = page(r.page.as_ref(), "groups")?;
        let (groups, last) = self
            .registry
            .read(&t, move |s: &TenantState| {
                page_of(&s.groups, page, |n| {
                    let g = GroupId(n);
                    s.engine.group_settings(g).map(|_| resources::group(s, g))
                })
            })
            .await?;
        let groups = self.live_groups(&t, groups).await?;
        let next_page_token = page_token("groups", &last);
        Ok(Response::new(pb::ListGroupsResponse { groups, next_page_token }))
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        let (call, r) = Call::split(request);
        let (t, id) = names::child("name", &r.name, "groups").map_err(Status::from)?;
        call.allow(&t, None)?;
        let request_id = r.request_id.clone();
        let retire = |c: &crate::actors::TenantConfig| {
            c.group_by_id(&id).map(|group| RouterOp::RetireGroup { group })
        };
        let command = self.registry.command(&t, Op::DeleteGroup(r), &request_id);
        let result = self.agreed(&t, retire, command).await?;
        self.configured(&t).await;
        variant!(result, Empty)?;
        Ok(Response::new(pb::DeleteGroupResponse {}))
    }

    async fn put_agent(
        &self,
        request: Request<pb::PutAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let (call, r) = Call::split(request);
        let (t, id) = names::child("name", &r.name, "agents").map_err(Status::from)?;
        call.allow(&t, None)?;
        let request_id = r.request_id.clone();
        // A capacity the request sets (under its mask, or without one when given).
        let capacity = (r.capacity != 0
            && r.update_mask.as_ref().is_none_or(|m| m.paths.iter().any(|p| p == "capacity")))
        .then_some(r.capacity);
        let lower = |c: &crate::actors::TenantConfig| {
            let agent = c.agent_by_id(&id)?;
            Some(RouterOp::LowerCapacity { agent, capacity: capacity? })
        };
        let command = self.registry.command(&t, Op::PutAgent(r), &request_id);
        let result = self.agreed(&t, lower, command).await?;
        self.configured(&t).await;
        Ok(Response::new(variant!(result, Agent)?))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let (call, r) = Call::split(request);
        let (t, id) = names::child("name", &r.name, "agents").map_err(Status::from)?;
        call.allow(&t, None)?;
        let now = crate::clock::now();
        let agent = self
            .registry
            .read(&t, move |s| s.agent("name", &id).map(|a| resources::agent_on(s, a, now)))
            .await?
            .map_err(Status::from)?;
        Ok(Response::new(self.live(&t, vec![agent]).await?.pop().unwrap_or_default()))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let (call, r) = Call::split(request);
        let t = names::tenant("tenant", &r.tenant).map_err(Status::from)?;
        call.allow(&t, None)?;
        let page = page(r.page.as_ref(), "agents")?;
        let now = crate::clock::now();
        let (agents, last) = self
            .registry
            .read(&t, move |s: &TenantState| {
                page_of(&s.agents, page, |n| {
                    let a = AgentId(n);
                    s.engine.agent_settings(a).map(|_| resources::agent_on(s, a, now))
                })
            })
            .await?;
        let agents = self.live(&t, agents).await?;
        let next_page_token = page_token("agents", &last);
        Ok(Response::new(pb::ListAgentsResponse { agents, next_page_token }))
    }

    async fn delete_agent(
        &self,
        request: Request<pb::DeleteAgentRequest>,
    ) -> Result<Response<pb::DeleteAgentResponse>, Status> {
        let (call, r) = Call::split(request);
        let (t, _) = names::child("name", &r.name, "agents").map_err(Status::from)?;
        call.allow(&t, None)?;
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::DeleteAgent(r), &request_id).await?;
        self.configured(&t).await;
        variant!(result, Empty)?;
        Ok(Response::new(pb::DeleteAgentResponse {}))
    }

    async fn put_customer(
        &self,
        request: Request<pb::PutCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let (call, r) = Call::split(request);
        let (t, _) = names::child("name", &r.name, "customers").map_err(Status::from)?;
        call.allow(&t, None)?;
        // A tenant on actors: the customer's conversation actor holds its settings.
        if let Some(meshes) = &self.meshes
            && let Some(mesh) = super::on_actors::served(meshes, &t).await?
        {
            let on = super::on_actors::OnActors { meshes, mesh };
            return Ok(Response::new(on.put_customer(&r).await?));
        }
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::PutCustomer(r), &request_id).await?;
        Ok(Response::new(variant!(result, Customer)?))
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let (call, r) = Call::split(request);
        let (t, id) = names::child("name", &r.name, "customers").map_err(Status::from)?;
        call.allow(&t, None)?;
        let customer = self.registry.customer(&t, &id).await?;
        Ok(Response::new(customer))
    }

    async fn list_customers(
        &self,
        request: Request<pb::ListCustomersRequest>,
    ) -> Result<Response<pb::ListCustomersResponse>, Status> {
        let (call, r) = Call::split(request);
        let t = names::tenant("parent", &r.parent).map_err(Status::from)?;
        call.allow(&t, None)?;
        let page = super::search::customers(
            &self.registry,
            None,
            &t,
            None,
            &r.filter,
            r.page_size,
            &r.page_token,
        )
        .await?;
        Ok(Response::new(page))
    }

    async fn put_shared_quick_replies(
        &self,
        request: Request<pb::PutSharedQuickRepliesRequest>,
    ) -> Result<Response<pb::QuickReplies>, Status> {
        let (call, r) = Call::split(request);
        let t = names::tenant("tenant", &r.tenant).map_err(Status::from)?;
        call.allow(&t, None)?;
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::PutSharedQuickReplies(r), &request_id).await?;
        Ok(Response::new(variant!(result, QuickReplies)?))
    }

    async fn put_webhook(
        &self,
        request: Request<pb::PutWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let (call, r) = Call::split(request);
        let (t, _) = names::child("name", &r.name, "webhooks").map_err(Status::from)?;
        call.allow(&t, None)?;
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::PutWebhook(r), &request_id).await?;
        Ok(Response::new(variant!(result, Webhook)?))
    }

    async fn get_webhook(
        &self,
        request: Request<pb::GetWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let (call, r) = Call::split(request);
        let (t, id) = names::child("name", &r.name, "webhooks").map_err(Status::from)?;
        call.allow(&t, None)?;
        let found = self
            .registry
            .read(&t, move |s: &TenantState| {
                s.webhooks.get(&id).map(|w| webhooks::view(s, &id, w)).ok_or_else(|| {
                    Error::NotFound(format!("name: webhook {id:?} of tenant {}", s.id))
                })
            })
            .await??;
        Ok(Response::new(found))
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let (call, r) = Call::split(request);
        let t = names::tenant("tenant", &r.tenant).map_err(Status::from)?;
        call.allow(&t, None)?;
        let (size, token) = page(r.page.as_ref(), "webhooks")?;
        let (webhooks, next) = self
            .registry
            .read(&t, move |s: &TenantState| {
                let after = (std::ops::Bound::Excluded(token), std::ops::Bound::Unbounded);
                let mut page: Vec<_> = s
                    .webhooks
                    .range(after)
                    .take(size + 1)
                    .map(|(id, w)| webhooks::view(s, id, w))
                    .collect();
                let next = if page.len() > size {
                    page.truncate(size);
                    page.last()
                        .and_then(|w| w.name.rsplit('/').next())
                        .unwrap_or_default()
                        .to_owned()
                } else {
                    String::new()
                };
                (page, next)
            })
            .await?;
        let next_page_token = page_token("webhooks", &next);
        Ok(Response::new(pb::ListWebhooksResponse { webhooks, next_page_token }))
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::DeleteWebhookResponse>, Status> {
        let (call, r) = Call::split(request);
        let (t, _) = names::child("name", &r.name, "webhooks").map_err(Status::from)?;
        call.allow(&t, None)?;
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::DeleteWebhook(r), &request_id).await?;
        variant!(result, Empty)?;
        Ok(Response::new(pb::DeleteWebhookResponse {}))
    }

    async fn list_webhook_dead_letters(
        &self,
        request: Request<pb::ListWebhookDeadLettersRequest>,
    ) -> Result<Response<pb::ListWebhookDeadLettersResponse>, Status> {
        let (call, r) = Call::split(request);
        let (t, id) = names::child("name", &r.name, "webhooks").map_err(Status::from)?;
        call.allow(&t, None)?;
        let (size, after) = numeric_page(r.page.as_ref(), "dead_letters")?;
        let known = id.clone();
        self.registry
            .read(&t, move |s: &TenantState| {
                if s.webhooks.contains_key(&known) {
                    Ok(())
                } else {
                    Err(Error::NotFound(format!("name: webhook {known:?} of tenant {}", s.id)))
                }
            })
            .await??;
        let (store, tenant, stream) =
            (self.registry.store().clone(), t.clone(), crate::webhooks::dead_letter_stream(&id));
        let entries = tokio::task::spawn_blocking(move || {
            store.read_stream(&tenant, &stream, after, size + 1)
        })
        .await
        .map_err(|e| Status::unavailable(format!("store read interrupted: {e}")))?
        .map_err(Error::from)?;
        let mut dead_letters = Vec::new();
        for entry in &entries {
            let item = StreamItem::decode(entry.payload.as_slice())
                .map_err(|e| Status::internal(format!("dead letter {}: {e}", entry.seq)))?;
            if let Some(Item::WebhookDeadLetter(d)) = item.item {
                dead_letters.push(d);
            }
        }
        let next_page_token = if dead_letters.len() > size {
            dead_letters.truncate(size);
            let last = dead_letters.last().map(|d| d.cursor.to_string()).unwrap_or_default();
            page_token("dead_letters", &last)
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListWebhookDeadLettersResponse { dead_letters, next_page_token }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

    #[test]
    fn page_sizes_default_and_clamp() {
        assert_eq!(page(None, "groups").unwrap().0, DEFAULT_PAGE_SIZE);
        let p = pb::PageRequest { page_size: 5000, page_token: page_token("groups", "b") };
        assert_eq!(page(Some(&p), "groups").unwrap(), (MAX_PAGE_SIZE, "b".to_owned()));
    }

    #[test]
    fn pages_resume_after_the_token_and_end_empty() {
        let mut ids = Ids::default();
        for n in ["a", "b", "c", "d", "e"] {
            ids.intern(n);
        }
        // "c" no longer exists: skipped without taking a slot.
        let view = |n: u64| (n != 3).then_some(n);
        let (first, token) = page_of(&ids, (2, String::new()), view);
        assert_eq!((first, token.as_str()), (vec![1, 2], "b"));
        let (second, token) = page_of(&ids, (2, token), view);
        assert_eq!((second, token.as_str()), (vec![4, 5], ""));
    }
}
