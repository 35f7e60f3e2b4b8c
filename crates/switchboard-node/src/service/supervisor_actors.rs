//! Transfers and the supervisor's commands of a tenant created with `TENANT_ROUTING_ACTORS`
//! (issue 12's cut-over), served by its router and conversation actors with the tenant
//! actor's validation and response shapes (`apply::agent::transfer`, `apply::supervisor`).
//! Every rule is the core's: the router side's (`RouterSide::transfer`, `set_status` with
//! `StatusCause::Supervisor`) and the conversation side's (`end`, `end_in_batch`,
//! `whisper`); this file only resolves names and renders answers.
//!
//! - **On the router actor** (the forwarder routes these by tenant, so they land on the
//!   router's node): Transfer, SetAgentStatus of another agent, ReassignBatch (every item
//!   one transfer, all in one router step, each succeeding or failing on its own). They go
//!   as one [`RouterCall`] carrying the request id: the router looks it up in the per-actor
//!   `responses` table and writes the new answer in the step's own batch, so a retry applies
//!   nothing and answers the same (a batch its stored results; a transfer or a status change
//!   the conversation or agent as they are now, as the agent actor's calls answer). A refused
//!   transfer or status change stores nothing (the tenant actor's log keeps no refused
//!   command either).
//! - **On conversation actors**: EndConversation, Whisper (routed by the conversation,
//!   `cluster::forward`), EndBatch (every item one conversation call, its request id the
//!   batch's with `#i`, so each item is applied once; an item whose conversation's actor
//!   runs on another node fails alone, saying so).
//! - A supervisor setting its own status does so as an agent (its agent actor's path,
//!   signing in included), and ending the conversation it serves ends it as its agent.

use std::sync::Arc;

use prost::Message as _;
use switchboard_core::engine::Target;
use switchboard_core::router::StatusCause;
use switchboard_core::{Actor, ConversationId};
use switchboard_proto::v1 as pb;

use super::agent_actors::Desk;
use super::calls::{Selected, Selection};
use super::on_actors::{OnActors, undecodable};
use crate::actors::conversation::{Answer, Answered, ConversationOp};
use crate::actors::placement::ActorKey;
use crate::actors::router::{RouterAnswer, RouterCall, RouterCalled, RouterOp};
use crate::apply::supervisor::{batch_result, batch_size};
use crate::convert::{self, refusal};
use crate::error::{Error, Result};
use crate::names;

type R<T> = std::result::Result<T, tonic::Status>;

/// What the router keeps for a transfer or a status change: which call it was (the answer is
/// the conversation or agent as it is when asked again).
const TRANSFERRED: &[u8] = b"router:transfer";
const STATUS_SET: &[u8] = b"router:status";

/// The target of a transfer, as `apply::agent::target` finds it, in the mesh's configuration.
async fn target(
    on: &OnActors<'_>,
    to_agent: Option<&str>,
    to_group: Option<&str>,
    reset: bool,
) -> Result<Target> {
    match (to_agent, to_group) {
        (Some(name), None) => Ok(Target::Agent(on.acting_as("to_agent", name).await?)),
        (None, Some(name)) => {
            let tenant = on.mesh.tenant();
            let group = match on.mesh.config().group_ref(tenant, "to_group", name) {
                // A group created after the mesh loaded: one check of the stored version.
                Err(Error::NotFound(_)) => {
                    on.mesh.refresh_stored().await?;
                    on.mesh.config().group_ref(tenant, "to_group", name)?
                }
                found => found?,
            };
            Ok(Target::Group { group, keep_entry_time: !reset })
        }
        _ => Err(Error::field("to", "name exactly one of to_agent or to_group")),
    }
}

/// The router runs here: the forwarder routes these calls by tenant, which is its shard.
fn router_here(on: &OnActors<'_>) -> Result<()> {
    if on.mesh.is_here(ActorKey::Router { tenant: on.mesh.tenant() }) {
        return Ok(());
    }
    Err(Error::Unavailable(format!(
        "the router of tenant {} runs on another node; retry (the call is forwarded there)",
        on.mesh.tenant()
    )))
}

/// A refusal of the core in the mesh's resource names.
fn refused(on: &OnActors<'_>, error: switchboard_core::Error) -> Error {
    let message = refusal::describe_mesh(&on.names(), None, &error);
    Error::Refused { error, message }
}

/// One router command with a request id: applied once, refused with the core's code. `kind`
/// alone is what was kept before requests were (a retry of such a call is answered).
async fn router_command(
    on: &OnActors<'_>,
    op: RouterOp,
    request_id: &str,
    (kind, request): (&'static [u8], &impl prost::Message),
) -> Result<()> {
    crate::registry::check_request_id(request_id)?;
    router_here(on)?;
    let kept = super::on_actors::asked(kind, request);
    let keep = kept.clone();
    let answer: RouterAnswer = Arc::new(move |results| {
        results.iter().all(std::result::Result::is_ok).then(|| keep.clone())
    });
    let call = RouterCall { ops: vec![op], request_id: request_id.to_owned(), answer };
    match on.mesh.router().call_public(call).await? {
        RouterCalled::Stored(body) if body == kept || body == kind => Ok(()),
        RouterCalled::Stored(_) => Err(Error::reused(request_id)),
        RouterCalled::Decided { mut results, .. } => match results.pop() {
            Some(Err(e)) => Err(refused(on, e)),
            _ => Ok(()),
        },
    }
}

/// AgentService.Transfer: as `apply::agent::transfer` (an agent moves only what it holds; a
/// supervisor any routed conversation); answered with the conversation as it is after.
pub(super) async fn transfer(on: &OnActors<'_>, r: &pb::TransferRequest) -> R<pb::Conversation> {
    use pb::transfer_request::To;
    let agent = on.acting(&r.agent).await?;
    let n = on.conversation_number("conversation", &r.conversation)?;
    let (to_agent, to_group) = match &r.to {
        Some(To::ToAgent(n)) => (Some(n.as_str()), None),
        Some(To::ToGroup(n)) => (None, Some(n.as_str())),
        None => (None, None),
    };
    let target = target(on, to_agent, to_group, r.reset_entry_time).await?;
    let id = ConversationId(n);
    // One that never opened is NOT_FOUND before the router is asked.
    on.owner(n).await?.ok_or_else(|| on.unknown(id))?;
    let op = RouterOp::Transfer { conversation: id, target, by: on.viewer(agent) };
    match router_command(on, op, &r.request_id, (TRANSFERRED, r)).await {
        Err(Error::Refused { error: switchboard_core::Error::UnknownConversation(c), .. })
            if c == id =>
        {
            return Err(super::on_actors::not_held(&on.mesh, &on.names(), id, "transfer")
                .await
                .into());
        }
        done => done?,
    }
    // As its actor holds it, on whichever node (the router's answer reaches it on its link).
    Ok(on.get(&r.conversation).await?)
}

/// SupervisorService.SetAgentStatus: another agent's status on the router
/// (`StatusCause::Supervisor`: never out of offline; its agent actor hears it on its link);
/// its own as an agent. Answered with the agent as the actors hold it after.
pub(super) async fn set_agent_status(
    on: &OnActors<'_>,
    r: &pb::SupervisorSetStatusRequest,
) -> R<pb::Agent> {
    let sup = on.acting_supervisor(&r.supervisor).await?;
    let a = on.acting(&r.agent).await?;
    let status = convert::status("status", r.status)?;
    let id = names::child_in("agent", &r.agent, "agents", on.mesh.tenant())?;
    let desk = Desk::resolve(on.meshes, on.mesh.clone(), &id).await?;
    if a == sup {
        let own = pb::SetStatusRequest {
            agent: r.agent.clone(),
            status: r.status,
            request_id: r.request_id.clone(),
        };
        return desk.set_status(&own).await;
    }
    let op = RouterOp::SetStatus { agent: a, status, cause: StatusCause::Supervisor };
    router_command(on, op, &r.request_id, (STATUS_SET, r)).await?;
    desk.agent_view().await
}

/// SupervisorService.EndConversation: `ended_by_supervisor` with the manual-end reply; the
/// conversation the supervisor serves it ends as its agent.
pub(super) async fn end_conversation(
    on: &OnActors<'_>,
    r: &pb::SupervisorConversationRequest,
) -> R<pb::Conversation> {
    let sup = on.acting_supervisor(&r.supervisor).await?;
    let n = on.conversation_number("conversation", &r.conversation)?;
    let id = ConversationId(n);
    let customer = on.owner(n).await?.ok_or_else(|| on.unknown(id))?;
    // Its own conversation a supervisor ends as its agent: the side decides, by the holder
    // it knows (the core's rule), so no read goes first.
    let op = ConversationOp::End { id, by: Actor::Supervisor(sup) };
    Ok(on.conversation_call(customer, id, op, &r.request_id).await?)
}

/// SupervisorService.Whisper: a note to the holding agent's desk and a `whisper` transcript
/// row, never on the customer's outbox.
pub(super) async fn whisper(on: &OnActors<'_>, r: &pb::WhisperRequest) -> R<pb::WhisperResponse> {
    let sup = on.acting_supervisor(&r.supervisor).await?;
    let n = on.conversation_number("conversation", &r.conversation)?;
    crate::apply::channel::check_text("text", &r.text)?;
    crate::registry::check_request_id(&r.request_id)?;
    let id = ConversationId(n);
    let customer = on.owner(n).await?.ok_or_else(|| on.unknown(id))?;
    let op = ConversationOp::Whisper { id, from: sup, text: r.text.clone() };
    let answer: Answer = Arc::new(|a: Answered<'_>| {
        let message = a.last_row.map(crate::service::transcript_message);
        pb::WhisperResponse { message }.encode_to_vec()
    });
    let body = on.answered_call(customer, op, &r.request_id, answer).await?;
    Ok(pb::WhisperResponse::decode(body.as_slice()).map_err(undecodable)?)
}

/// The items of a batch, each parsed on its own (a bad name fails that item only), as
/// `apply::supervisor::batch_items`.
fn batch_items(
    on: &OnActors<'_>,
    names: &[String],
) -> Result<Vec<std::result::Result<ConversationId, String>>> {
    batch_size(names)?;
    Ok(names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            on.conversation_number(&format!("conversations[{i}]"), name)
                .map(ConversationId)
                .map_err(|e| e.to_string())
        })
        .collect())
}

/// SupervisorService.ReassignBatch: every well-formed item one transfer by the supervisor,
/// all in one router step; results per item, in order (kept for the request id whole).
pub(super) async fn reassign_batch(
    on: &OnActors<'_>,
    r: &pb::ReassignBatchRequest,
) -> R<pb::BatchResponse> {
    use pb::reassign_batch_request::To;
    let sup = on.acting_supervisor(&r.supervisor).await?;
    let (to_agent, to_group) = match &r.to {
        Some(To::ToAgent(n)) => (Some(n.as_str()), None),
        Some(To::ToGroup(n)) => (None, Some(n.as_str())),
        None => (None, None),
    };
    let target = target(on, to_agent, to_group, r.reset_entry_time).await?;
    let items = batch_items(on, &r.conversations)?;
    crate::registry::check_request_id(&r.request_id)?;
    router_here(on)?;
    let ops: Vec<RouterOp> = items
        .iter()
        .filter_map(|c| c.as_ref().ok())
        .map(|&conversation| RouterOp::Transfer {
            conversation,
            target,
            by: Actor::Supervisor(sup),
        })
        .collect();
    let (tenant, config) = (on.mesh.tenant().to_owned(), on.mesh.config().clone());
    let (requested, parsed) = (r.conversations.clone(), items.clone());
    let answer: RouterAnswer = Arc::new(move |results| {
        let names = crate::actors::effects::MeshNames { tenant: &tenant, config: config.clone() };
        let mut results = results.iter();
        let out = requested
            .iter()
            .zip(&parsed)
            .map(|(name, item)| {
                let outcome = match item {
                    Ok(_) => match results.next() {
                        Some(Ok(())) => Ok(()),
                        Some(Err(e)) => Err(refusal::describe_mesh(&names, None, e)),
                        None => Err("internal error: no result for this conversation".to_owned()),
                    },
                    Err(e) => Err(e.clone()),
                };
                batch_result(name.clone(), outcome)
            })
            .collect();
        Some(pb::BatchResponse { results: out }.encode_to_vec())
    });
    let call = RouterCall { ops, request_id: r.request_id.clone(), answer };
    let body = match on.mesh.router().call_public(call).await? {
        RouterCalled::Stored(body) => body,
        RouterCalled::Decided { kept, .. } => kept.unwrap_or_default(),
    };
    // A stored answer names the conversations of its call: another list under the same id
    // is another call.
    match pb::BatchResponse::decode(body.as_slice()) {
        Ok(batch) if batch.results.iter().map(|x| &x.conversation).eq(&r.conversations) => {
            Ok(batch)
        }
        _ => Err(Error::reused(&r.request_id).into()),
    }
}

/// SupervisorService.EndBatch: every well-formed item ended in its own conversation call
/// (`ended_in_batch`, the batch-end reply; request id `{request_id}#{i}`, so each is applied
/// once); results per item, in order. The request id is claimed for this batch first, so
/// that the same id with another list is refused whole, as on one node, before any item
/// runs.
pub(super) async fn end_batch(on: &OnActors<'_>, r: &pb::EndBatchRequest) -> R<pb::BatchResponse> {
    on.acting_supervisor(&r.supervisor).await?;
    let items = batch_items(on, &r.conversations)?;
    crate::registry::check_request_id(&r.request_id)?;
    if !r.request_id.is_empty() {
        claim(on, &r.request_id, super::on_actors::asked(b"end_batch:", r)).await?;
    }
    let mut results = Vec::with_capacity(items.len());
    for (i, (name, item)) in r.conversations.iter().zip(items).enumerate() {
        let outcome = match item {
            Ok(id) => end_item(on, id, &r.request_id, i).await,
            Err(e) => Err(e),
        };
        results.push(batch_result(name.clone(), outcome));
    }
    Ok(pb::BatchResponse { results })
}

/// Claims `request_id` for the call whose kind and digest are `asked`: the router keeps
/// them (a call of no operation) in its next write. A retry of that call passes; another
/// call under the id is refused.
async fn claim(on: &OnActors<'_>, request_id: &str, asked: Vec<u8>) -> Result<()> {
    router_here(on)?;
    match super::on_actors::kept_by_router(&on.mesh, request_id, asked.clone()).await? {
        Some(body) if body != asked => Err(Error::reused(request_id)),
        _ => Ok(()),
    }
}

/// One item of an EndBatch, on whichever node its conversation's actor lives: its refusal
/// as the item's error.
async fn end_item(
    on: &OnActors<'_>,
    id: ConversationId,
    request_id: &str,
    i: usize,
) -> std::result::Result<(), String> {
    let Some(customer) = on.owner(id.0).await.map_err(|e| e.to_string())? else {
        return Err(on.unknown(id).to_string());
    };
    let item_id = if request_id.is_empty() { String::new() } else { format!("{request_id}#{i}") };
    match on.on_selection(customer, id, Selection::EndInBatch, &item_id).await {
        Ok(Selected::Answered(_)) => Ok(()),
        Ok(Selected::Refused(message)) => Err(message),
        Err(e) => Err(e.to_string()),
    }
}
