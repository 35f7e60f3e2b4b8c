//! The supervisor's reads of a tenant created with `TENANT_ROUTING_ACTORS` (issue 12's
//! cut-over): GetLiveBoard, GetQueueStats, GetAgentBoard, ExplainConversation and
//! ExplainAgent, and ListConversations of the whole tenant (and, in an agent's scope, the
//! agent's SearchConversations), served from the tenant's router actor, with the same
//! response shapes and the same rules as the tenant actor's path (`supervisor.rs`: one
//! `live_conversation`, one `long_waits`; the core's `Router::explain_*`;
//! `resources::agent_named`; `search`'s matching and paging).
//!
//! These calls are routed by tenant, so they land on the node that runs the router actor.
//! Each read of the router copies only what the response needs, in the actor's turn
//! (`RouterHandle::read`): the explanation, the agents' views, or the open conversations'
//! (number, customer, state, agent) — O(live work), never the retained history.
//!
//! What the router does not keep comes from elsewhere:
//! - a conversation's counts, first response and queue history (transitions): its
//!   conversation actor, here or on another node (`calls::held_many`, one read per node for
//!   a page);
//! - ended conversations: the archive, read by the service as on the tenant actor's path.
//!
//! A conversation still with its bot is known to the router by its link (`ToRouter::Bot`):
//! listed and counted with the open ones, its details from its actor.

use rustc_hash::FxHashSet;
use switchboard_core::router::Placement;
use switchboard_core::{AgentId, Conversation, ConversationId, CustomerId, State, Timestamp};
use switchboard_proto::v1 as pb;
use tonic::Status;

use super::supervisor::{live_conversation, long_waits};
use super::{filter, on_actors, page_token, search};
use crate::actors::Mesh;
use crate::actors::effects::{Current, MeshNames};
use crate::actors::meshes::Meshes;
use crate::actors::placement::ActorKey;
use crate::apply::Names;
use crate::convert::{self, resources, views};
use crate::error::Error;
use crate::state::ConversationExtra;

fn names(mesh: &Mesh) -> MeshNames<'_> {
    MeshNames { tenant: mesh.tenant(), config: mesh.config() }
}

/// Reads the tenant's router actor, which must run on this node (calls routed by tenant
/// land there; while its shard moves they do not: UNAVAILABLE, retry).
pub(super) async fn on_router<T: Send + 'static>(
    mesh: &Mesh,
    read: impl FnOnce(&switchboard_core::mesh::RouterSide) -> T + Send + 'static,
) -> Result<T, Status> {
    if !mesh.is_here(ActorKey::Router { tenant: mesh.tenant() }) {
        return Err(Status::unavailable(format!(
            "the router of tenant {} does not run on this node (its shard is moving); retry",
            mesh.tenant()
        )));
    }
    Ok(mesh.router().read(read).await?)
}

/// An open conversation as the router holds it.
#[derive(Debug, Clone, Copy)]
struct Routed {
    id: ConversationId,
    customer: CustomerId,
    state: Option<State>,
    agent: Option<AgentId>,
}

/// The open conversations after `after` the router holds, ascending, at most `limit`; and
/// how many it holds open in all.
async fn routed(mesh: &Mesh, after: u64, limit: usize) -> Result<(Vec<Routed>, u64), Status> {
    on_router(mesh, move |side| {
        let router = side.router();
        let page = side
            .open_after(ConversationId(after))
            .take(limit)
            .map(|(id, customer)| {
                let (state, agent) = match router.placement(id) {
                    Some(Placement::Queued { .. }) => (Some(State::Queued), None),
                    Some(Placement::Offered { agent, .. }) => (Some(State::Offered), Some(*agent)),
                    Some(Placement::Assigned { agent, .. }) => {
                        (Some(State::Assigned), Some(*agent))
                    }
                    None => (None, None),
                };
                Routed { id, customer, state, agent }
            })
            .collect();
        let open = side.open_after(ConversationId(0)).count() as u64;
        (page, open)
    })
    .await
}

/// Each open conversation as its actor holds it (`None`: it ended meanwhile), wherever that
/// actor lives (`calls`: one read per node for the lot).
async fn held(mesh: &Mesh, routed: &[Routed]) -> Result<Vec<Option<Conversation>>, Status> {
    let wanted: Vec<(ConversationId, CustomerId)> =
        routed.iter().map(|r| (r.id, r.customer)).collect();
    let found = super::calls::held_many(mesh, &wanted).await?;
    Ok(found.into_iter().map(|h| h.map(|h| h.conversation)).collect())
}

/// GetLiveBoard: open conversations from the router (their details from their actors),
/// ended ones from the archive (`archived`: its page after the token; `archived_total`: its
/// size), by id after the token; totals over all of them.
pub(super) async fn live_board(
    mesh: &Mesh,
    size: usize,
    after: u64,
    archived: Vec<Conversation>,
    archived_total: u64,
) -> Result<pb::LiveBoard, Status> {
    let (open, in_progress) = routed(mesh, after, size + 1).await?;
    // One that ended is in the archive even while its `Leave` is still on the way.
    let ended_ids: FxHashSet<ConversationId> = archived.iter().map(|c| c.id).collect();
    let mut rest: Vec<Result<Routed, Conversation>> =
        open.into_iter().filter(|r| !ended_ids.contains(&r.id)).map(Ok).collect();
    rest.extend(archived.into_iter().map(Err));
    let id = |r: &Result<Routed, Conversation>| match r {
        Ok(r) => r.id,
        Err(c) => c.id,
    };
    rest.sort_unstable_by_key(id);
    let more = rest.len() > size;
    rest.truncate(size);
    let next_page_token = match rest.last() {
        Some(last) if more => page_token("live_board", &id(last).0.to_string()),
        _ => String::new(),
    };
    let names = names(mesh);
    let routed: Vec<Routed> = rest.iter().filter_map(|r| r.as_ref().ok().copied()).collect();
    let mut found = held(mesh, &routed).await?.into_iter();
    let mut conversations = Vec::with_capacity(rest.len());
    for r in rest {
        conversations.push(match r {
            Err(c) => live_conversation(&names, &c),
            Ok(r) => match found.next().flatten() {
                Some(c) => live_conversation(&names, &c),
                // It just ended (its archive row not yet read): the router's view.
                None => pb::LiveConversation {
                    conversation: names.conversation_name(r.id),
                    state: r.state.map_or(0, |s| convert::state_to_pb(s) as i32),
                    agent: r.agent.map(|a| names.agent_name(a)).unwrap_or_default(),
                    ..Default::default()
                },
            },
        });
    }
    Ok(pb::LiveBoard {
        in_progress,
        ended: archived_total,
        total: in_progress + archived_total,
        conversations,
        next_page_token,
    })
}

/// GetQueueStats: the waits of the open conversations (from their actors, wherever they live) and
/// of `archived` (the archive's conversations that may have waited in the window), by the
/// tenant actor's rule.
pub(super) async fn queue_stats(
    mesh: &Mesh,
    now: Timestamp,
    from: Timestamp,
    to: Timestamp,
    threshold: std::time::Duration,
    archived: Vec<Conversation>,
) -> Result<pb::QueueStats, Status> {
    let (open, _) = routed(mesh, 0, usize::MAX).await?;
    let ended_ids: FxHashSet<ConversationId> = archived.iter().map(|c| c.id).collect();
    let mut live = Vec::new();
    let open: Vec<Routed> = open.into_iter().filter(|r| !ended_ids.contains(&r.id)).collect();
    live.extend(held(mesh, &open).await?.into_iter().flatten());
    Ok(long_waits(&names(mesh), live.iter().chain(&archived), now, from, to, threshold))
}

/// GetAgentBoard: every agent of the configuration by id, its status, load, wrap-ups and
/// today's first sign-in (in the tenant's time zone, as on the tenant actor's path) from the
/// router (built in the router's turn: nothing but the views is copied).
pub(super) async fn agent_board(mesh: &Mesh) -> Result<pb::AgentBoard, Status> {
    let config = mesh.config().clone();
    let mut ids: Vec<(String, AgentId)> = config
        .agent_names
        .iter()
        .filter(|(a, _)| config.agents.contains_key(a))
        .map(|(a, n)| (n.clone(), *a))
        .collect();
    ids.sort_unstable();
    let tenant = mesh.tenant().to_owned();
    let now = crate::clock::now();
    let agents = on_router(mesh, move |side| {
        let names = MeshNames { tenant: &tenant, config: config.clone() };
        let zone = &config.settings.time_zone;
        ids.into_iter()
            .map(|(_, a)| {
                let live = side.router().agent(a);
                let view = resources::agent_named(&names, a, config.agents.get(&a), live);
                pb::Agent {
                    supervisor: config.supervisors.contains(&a),
                    first_login_today: resources::first_login_today(zone, side.first_login(a), now),
                    ..view
                }
            })
            .collect()
    })
    .await?;
    Ok(pb::AgentBoard { agents })
}

/// ExplainConversation: the router's explanation; a conversation it does not hold is not
/// routed (FAILED_PRECONDITION, as on the tenant actor) if the store knows it (its opening
/// step's owner row, or the archive), else NOT_FOUND.
pub(super) async fn explain_conversation(
    mesh: &Mesh,
    n: u64,
) -> Result<pb::ConversationExplanation, Status> {
    let id = ConversationId(n);
    let now = crate::clock::now();
    let explained = on_router(mesh, move |side| side.router().explain_conversation(now, id));
    if let Some(x) = explained.await? {
        return Ok(convert::explain::conversation(&names(mesh), id, &x));
    }
    let (store, tenant) = (mesh.inner().store.clone(), mesh.tenant().to_owned());
    let known = crate::actors::blocking(move || {
        Ok::<_, switchboard_store::Error>(
            store.conversation_customer(&tenant, n)?.is_some()
                || store.archived(&tenant, n)?.is_some(),
        )
    });
    let name = names(mesh).conversation_name(id);
    Err(if known.await? {
        super::supervisor::not_routed(&name)
    } else {
        Error::NotFound(format!("conversation {name}"))
    }
    .into())
}

/// ExplainAgent: the router's explanation of an agent of the configuration.
pub(super) async fn explain_agent(mesh: &Mesh, id: &str) -> Result<pb::AgentExplanation, Status> {
    let tenant = mesh.tenant();
    let a = mesh
        .config()
        .agent_by_id(id)
        .filter(|a| mesh.config().agents.contains_key(a))
        .ok_or_else(|| Error::NotFound(format!("agent: agent {id:?} of tenant {tenant}")))?;
    let now = crate::clock::now();
    let x = on_router(mesh, move |side| side.router().explain_agent(now, a)).await?;
    let names = names(mesh);
    let x = x.ok_or_else(|| {
        Error::NotFound(format!("agent: {} has no routing state", names.agent_name(a)))
    })?;
    Ok(convert::explain::agent(&names, a, &x))
}

/// An open conversation a listing found, its customer, and its tags and note as its actor
/// holds them.
type Listed = (Conversation, CustomerId, Option<ConversationExtra>);

/// ListConversations of the whole tenant (the supervisor's, `viewer` `None`) and an agent's
/// SearchConversations (`viewer`: the agent, unless it has the supervisor flag): the open
/// matches from the router's open conversations, newest first, read from their actors
/// (wherever they live, a page at a time) until a page is full; the ended ones from the archive; one page of both as the
/// tenant actor's path pages them (`search::merge`, the same tokens), with its matching rule
/// (`search::Resolved`: an agent sees what it serves or served, `Conversation::
/// visible_until`). The actors' archive rows and links name a customer by its number: a
/// `customer` filter is looked up as one.
pub(super) async fn list_conversations(
    meshes: &Meshes,
    mesh: &Mesh,
    viewer: Option<AgentId>,
    filter_text: &str,
    page_size: u32,
    page_token: &str,
) -> Result<pb::ListConversationsResponse, Status> {
    let tenant = mesh.tenant().to_owned();
    let mut f = filter::conversations(&tenant, filter_text)?;
    let size = search::size(page_size);
    let before = match search::position("conversations", page_token, filter_text)? {
        None => u64::MAX,
        Some(at) => at.parse::<u64>().map_err(|_| super::bad_token())?,
    };
    let config = mesh.config().clone();
    let agent = f.agent.as_deref().map(|a| config.agent_by_id(a));
    let group = f.group.as_deref().map(|g| config.group_by_id(g));
    let customer = match f.customer.clone() {
        None => None,
        Some(id) => {
            let (store, t) = (mesh.inner().store.clone(), tenant.clone());
            Some(crate::actors::blocking(move || store.customer_number(&t, &id)).await?)
        }
    };
    if let Some(Some(number)) = customer {
        f.customer = Some(number.to_string());
    }
    let mut r = search::Resolved::of(&f, agent, group, viewer);
    r.nothing |= customer == Some(None);

    let mut live: Vec<(u64, Listed)> = Vec::new();
    let mut live_complete = true;
    if let Some(n) = f.conversation {
        // The `name = …` lookup: that one, open or ended, if it matches.
        if !r.nothing && n < before {
            let owner = on_actors::OnActors { meshes, mesh: mesh.clone() }.owner(n).await?;
            if let Some(u) = owner
                && let Some(h) = super::calls::held(mesh, ConversationId(n), u).await?
                && r.matches(&h.conversation, &u.0.to_string())
            {
                live.push((n, (h.conversation, u, h.extra)));
            }
        }
    } else if !r.nothing {
        let open = on_router(mesh, move |side| {
            let below = side.open_after(ConversationId(0)).rev();
            below.skip_while(|(id, _)| id.0 >= before).collect::<Vec<_>>()
        })
        .await?;
        // Read a page's worth at a time (one read per node for each), newest first, until
        // the page is full.
        'pages: for chunk in open.chunks(size + 1) {
            let wanted: Vec<(ConversationId, CustomerId)> = chunk.to_vec();
            let found = super::calls::held_many(mesh, &wanted).await?;
            for (&(id, u), h) in chunk.iter().zip(found) {
                let Some(h) = h else { continue };
                if !r.matches(&h.conversation, &u.0.to_string()) {
                    continue;
                }
                if live.len() == size {
                    live_complete = false;
                    break 'pages;
                }
                live.push((id.0, (h.conversation, u, h.extra)));
            }
        }
    }
    let store = mesh.inner().store.clone();
    let (archived, archive_low) = match f.conversation {
        Some(n) if live.is_empty() && !r.nothing && n < before => {
            let (s, t) = (store.clone(), tenant.clone());
            let row = crate::actors::blocking(move || s.archived(&t, n)).await?;
            let found = match row {
                Some(row) => Some(crate::archive::decode(&row.body)?),
                None => None,
            };
            let found = found.filter(|a| r.matches(&a.conversation, &a.customer));
            (found.map(|a| (n, a)).into_iter().collect(), 0)
        }
        Some(_) => (Vec::new(), 0),
        None => search::archive_matches(store, &tenant, &f, &r, before, size).await?,
    };
    let (page, next) = search::merge(live, live_complete, archived, archive_low, size);

    // Positions and estimated waits of the open ones on the page, from the router.
    let waiting: Vec<ConversationId> =
        page.iter().filter_map(|(_, v)| v.as_ref().ok()).map(|(c, _, _)| c.id).collect();
    let now = crate::clock::now();
    let placed: Vec<(Option<usize>, Option<std::time::Duration>)> = on_router(mesh, move |side| {
        let router = side.router();
        waiting.iter().map(|c| (router.position(*c), router.estimated_wait(now, *c))).collect()
    })
    .await?;
    let mut placed = placed.into_iter();
    let names = names(mesh);
    let mut conversations = Vec::with_capacity(page.len());
    for (_, v) in page {
        conversations.push(match v {
            Ok((c, u, extra)) => {
                let (position, wait) = placed.next().unwrap_or_default();
                let position = position.filter(|_| c.state == State::Queued);
                let customer = customer_resource(meshes, &tenant, u).await?;
                views::render_named(
                    &Current(names.clone()),
                    &c,
                    extra.as_ref(),
                    customer,
                    position,
                    wait,
                )
            }
            Err(a) => {
                let customer = match a.customer.parse::<u64>() {
                    Ok(number) => customer_resource(meshes, &tenant, CustomerId(number)).await?,
                    Err(_) => crate::names::child_name(&tenant, "customers", &a.customer),
                };
                views::render_named(
                    &Current(names.clone()),
                    &a.conversation,
                    Some(&a.extra),
                    customer,
                    None,
                    None,
                )
            }
        });
    }
    let next_page_token = if next == 0 {
        String::new()
    } else {
        search::token("conversations", filter_text, &next.to_string())
    };
    Ok(pb::ListConversationsResponse { conversations, next_page_token })
}

/// A customer's resource name by its id (the name bound to its number), else its number.
async fn customer_resource(
    meshes: &Meshes,
    tenant: &str,
    customer: CustomerId,
) -> Result<String, Status> {
    let id = meshes.numbers().customer_name(tenant, customer).await?;
    let shown = id.unwrap_or_else(|| customer.0.to_string());
    Ok(crate::names::child_name(tenant, "customers", &shown))
}
