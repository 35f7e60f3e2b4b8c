//! `SupervisorService`: commands through the tenant's log (the apply layer checks the
//! supervisor flag), and the three boards of SPEC §8 computed from the tenant's state.

use std::time::Duration;

use switchboard_core::{AgentId, Conversation, State, Timestamp};
use switchboard_proto::internal::v1::command::Op;
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::supervisor_service_server::SupervisorService;
use switchboard_store::ArchiveQuery;
use tonic::{Request, Response, Status};

use super::on_actors::{self, OnActors};
use super::supervisor_actors as on;
use super::supervisor_reads_actors as actors;
use super::{numeric_page, page_token, variant};
use crate::apply::Names;
use crate::archive;
use crate::auth::Call;
use crate::convert::{self, resources};
use crate::error::Error;
use crate::names;
use crate::registry::Registry;
use crate::state::TenantState;

/// Queue statistics: waits longer than this count unless the request says otherwise.
pub const DEFAULT_QUEUE_THRESHOLD: Duration = Duration::from_secs(60);
/// Queue statistics: the window of queue entries unless the request says otherwise.
pub const DEFAULT_QUEUE_WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// Most waits listed in one `QueueStats` (the count covers them all): keeps the answer well
/// under gRPC's default message limit.
pub const MAX_QUEUE_WAITS: usize = 10_000;

#[derive(Debug)]
pub struct Supervisor {
    pub registry: Registry,
    /// The actors of tenants created with actor routing (the cut-over of issue 12).
    pub meshes: std::sync::Arc<crate::actors::meshes::Meshes>,
}

impl Supervisor {
    /// The tenant's actors, if it is served by actors (`supervisor_actors`).
    async fn on_actors(&self, tenant: &str) -> Result<Option<OnActors<'_>>, Status> {
        let mesh = super::on_actors::served(&self.meshes, tenant).await?;
        Ok(mesh.map(|mesh| OnActors { meshes: &self.meshes, mesh }))
    }
}

/// Archived conversations read per store query.
const ARCHIVE_PAGE: usize = 1000;

impl Supervisor {
    /// Archived conversations matching `query`, decoded off the actor: one page, or (with
    /// `one_page` false) every page up to [`MAX_QUEUE_WAITS`] conversations. With `one_page`,
    /// also the archive's size.
    async fn archived(
        &self,
        tenant: &str,
        mut query: ArchiveQuery,
        one_page: bool,
    ) -> Result<(Vec<Conversation>, u64), Status> {
        let (store, tenant) = (std::sync::Arc::clone(self.registry.store()), tenant.to_owned());
        let read = move || -> Result<(Vec<Conversation>, u64), Error> {
            let mut out = Vec::new();
            loop {
                let rows = store.list_archived(&tenant, &query)?;
                let full = rows.len() == query.limit;
                query.after_conversation = rows.last().map_or(0, |r| r.conversation);
                for row in rows {
                    out.push(archive::decode(&row.body)?.conversation);
                }
                if one_page || !full || out.len() >= MAX_QUEUE_WAITS {
                    break;
                }
            }
            let total = if one_page { store.count_archived(&tenant)? } else { 0 };
            Ok((out, total))
        };
        tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| Status::unavailable(format!("archive read interrupted: {e}")))?
            .map_err(Status::from)
    }
}

/// The tenant of the acting supervisor (`tenants/{t}/agents/{a}`), once the caller may act
/// as that supervisor.
/// ExplainConversation of a conversation the router does not hold.
pub(super) fn not_routed(conversation: &str) -> Error {
    Error::FailedPrecondition(format!(
        "conversation: {conversation} is not routed (it is with the bot or has ended); only \
         queued, offered and assigned conversations have a routing explanation"
    ))
}

fn tenant_of(call: &Call, supervisor: &str) -> Result<String, Status> {
    let (t, a) = names::child("supervisor", supervisor, "agents").map_err(Status::from)?;
    call.allow(&t, Some(&a))?;
    Ok(t)
}

pub(super) fn live_conversation(s: &dyn Names, c: &Conversation) -> pb::LiveConversation {
    pb::LiveConversation {
        conversation: s.conversation_name(c.id),
        state: convert::state_to_pb(c.state) as i32,
        agent: c.agent.map(|a| s.agent_name(a)).unwrap_or_default(),
        messages: c.customer_messages + c.agent_messages + c.auto_messages,
        customer_messages: c.customer_messages,
        agent_messages: c.agent_messages,
        first_response: c.first_response_at.map(|t| convert::duration(t.since(c.opened_at))),
    }
}

/// Conversations by id, after the token, live or archived (`archived`: the archive's page
/// after the token, `archived_total` its size); totals over all of them.
fn live_board(
    s: &TenantState,
    size: usize,
    after: u64,
    archived: &[Conversation],
    archived_total: u64,
) -> pb::LiveBoard {
    let (mut in_progress, mut ended) = (0, archived_total);
    let mut rest: Vec<&Conversation> =
        archived.iter().filter(|c| s.engine.conversation(c.id).is_none()).collect();
    for c in s.engine.conversations() {
        if c.is_open() {
            in_progress += 1;
        } else {
            ended += 1;
        }
        if c.id.0 > after {
            rest.push(c);
        }
    }
    // Only the page needs sorting.
    let more = rest.len() > size;
    if more {
        rest.select_nth_unstable_by_key(size, |c| c.id);
        rest.truncate(size);
    }
    rest.sort_unstable_by_key(|c| c.id);
    let next_page_token = match rest.last() {
        Some(c) if more => page_token("live_board", &c.id.0.to_string()),
        _ => String::new(),
    };
    pb::LiveBoard {
        in_progress,
        ended,
        total: in_progress + ended,
        conversations: rest.into_iter().map(|c| live_conversation(s, c)).collect(),
        next_page_token,
    }
}

/// Every wait of a conversation in a queue: (entered, waited). A wait runs from a
/// transition into `queued` to the next transition out of it (a move between queues is one
/// wait), or until `now` while it still waits.
fn waits(c: &Conversation, now: Timestamp) -> Vec<(Timestamp, Duration)> {
    let mut out = Vec::new();
    let mut entered = None;
    for t in &c.transitions {
        match (entered, t.to == State::Queued) {
            (None, true) => entered = Some(t.at),
            (Some(e), false) => {
                out.push((e, t.at.since(e)));
                entered = None;
            }
            _ => {}
        }
    }
    if let Some(e) = entered {
        out.push((e, now.since(e)));
    }
    out
}

/// Waits that entered within `[from, to)` and lasted longer than `threshold`, oldest first.
fn queue_stats(
    s: &TenantState,
    now: Timestamp,
    from: Timestamp,
    to: Timestamp,
    threshold: Duration,
    archived: &[Conversation],
) -> pb::QueueStats {
    let live = s.engine.conversations();
    let gone = archived.iter().filter(|c| s.engine.conversation(c.id).is_none());
    long_waits(s, live.chain(gone), now, from, to, threshold)
}

/// [`queue_stats`] of these conversations (each once), named by `s`: the tenant actor's
/// and the actors' (`supervisor_reads_actors`) one rule.
pub(super) fn long_waits<'a>(
    s: &dyn Names,
    conversations: impl Iterator<Item = &'a Conversation>,
    now: Timestamp,
    from: Timestamp,
    to: Timestamp,
    threshold: Duration,
) -> pb::QueueStats {
    let mut long: Vec<(Timestamp, &Conversation, Duration)> = conversations
        .flat_map(|c| waits(c, now).into_iter().map(move |(at, waited)| (at, c, waited)))
        .filter(|(at, _, waited)| (from..to).contains(at) && *waited > threshold)
        .collect();
    long.sort_unstable_by_key(|(at, c, _)| (*at, c.id));
    let count = long.len() as u64;
    long.truncate(MAX_QUEUE_WAITS);
    pb::QueueStats {
        count,
        waits: long
            .into_iter()
            .map(|(at, c, waited)| pb::QueuedWait {
                conversation: s.conversation_name(c.id),
                // Transitions do not record the group; a wait shows the conversation's
                // current one.
                group: s.group_name(c.group),
                entered: Some(convert::timestamp(at)),
                waited: Some(convert::duration(waited)),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl SupervisorService for Supervisor {
    async fn whisper(
        &self,
        request: Request<pb::WhisperRequest>,
    ) -> Result<Response<pb::WhisperResponse>, Status> {
        let (call, r) = Call::split(request);
        let t = tenant_of(&call, &r.supervisor)?;
        if let Some(actors) = self.on_actors(&t).await? {
            return on::whisper(&actors, &r).await.map(Response::new);
        }
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::Whisper(r), &request_id).await?;
        Ok(Response::new(variant!(result, Whisper)?))
    }

    async fn set_agent_status(
        &self,
        request: Request<pb::SupervisorSetStatusRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let (call, r) = Call::split(request);
        let t = tenant_of(&call, &r.supervisor)?;
        if let Some(actors) = self.on_actors(&t).await? {
            return on::set_agent_status(&actors, &r).await.map(Response::new);
        }
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::SupervisorSetStatus(r), &request_id).await?;
        Ok(Response::new(variant!(result, Agent)?))
    }

    async fn reassign_batch(
        &self,
        request: Request<pb::ReassignBatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let (call, r) = Call::split(request);
        let t = tenant_of(&call, &r.supervisor)?;
        if let Some(actors) = self.on_actors(&t).await? {
            return on::reassign_batch(&actors, &r).await.map(Response::new);
        }
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::ReassignBatch(r), &request_id).await?;
        Ok(Response::new(variant!(result, Batch)?))
    }

    async fn end_batch(
        &self,
        request: Request<pb::EndBatchRequest>,
    ) -> Result<Response<pb::BatchResponse>, Status> {
        let (call, r) = Call::split(request);
        let t = tenant_of(&call, &r.supervisor)?;
        if let Some(actors) = self.on_actors(&t).await? {
            return on::end_batch(&actors, &r).await.map(Response::new);
        }
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::EndBatch(r), &request_id).await?;
        Ok(Response::new(variant!(result, Batch)?))
    }

    async fn end_conversation(
        &self,
        request: Request<pb::SupervisorConversationRequest>,
    ) -> Result<Response<pb::Conversation>, Status> {
        let (call, r) = Call::split(request);
        let t = tenant_of(&call, &r.supervisor)?;
        if let Some(actors) = self.on_actors(&t).await? {
            return on::end_conversation(&actors, &r).await.map(Response::new);
        }
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::SupervisorEnd(r), &request_id).await?;
        Ok(Response::new(variant!(result, Conversation)?))
    }

    async fn set_bot_hosting(
        &self,
        request: Request<pb::SetBotHostingRequest>,
    ) -> Result<Response<pb::SetBotHostingResponse>, Status> {
        let (call, r) = Call::split(request);
        let t = tenant_of(&call, &r.supervisor)?;
        if let Some(mesh) = super::on_actors::served(&self.meshes, &t).await? {
            let on = super::on_actors::OnActors { meshes: &self.meshes, mesh };
            return Ok(Response::new(on.set_bot_hosting(&r).await?));
        }
        let request_id = r.request_id.clone();
        let result = self.registry.command(&t, Op::SetBotHosting(r), &request_id).await?;
        Ok(Response::new(variant!(result, BotHosting)?))
    }

    async fn get_live_board(
        &self,
        request: Request<pb::GetLiveBoardRequest>,
    ) -> Result<Response<pb::LiveBoard>, Status> {
        let (call, r) = Call::split(request);
        let t = names::tenant("tenant", &r.tenant).map_err(Status::from)?;
        call.allow(&t, None)?;
        let (size, after) = numeric_page(r.page.as_ref(), "live_board")?;
        let query =
            ArchiveQuery { after_conversation: after, limit: size + 1, ..Default::default() };
        let (archived, total) = self.archived(&t, query, true).await?;
        if let Some(mesh) = on_actors::served(&self.meshes, &t).await? {
            return Ok(Response::new(
                actors::live_board(&mesh, size, after, archived, total).await?,
            ));
        }
        let board =
            self.registry.read(&t, move |s| live_board(s, size, after, &archived, total)).await?;
        Ok(Response::new(board))
    }

    async fn get_queue_stats(
        &self,
        request: Request<pb::GetQueueStatsRequest>,
    ) -> Result<Response<pb::QueueStats>, Status> {
        let (call, r) = Call::split(request);
        let t = names::tenant("tenant", &r.tenant).map_err(Status::from)?;
        call.allow(&t, None)?;
        let threshold = match &r.threshold {
            Some(d) => convert::from_duration("threshold", d).map_err(Status::from)?,
            None => DEFAULT_QUEUE_THRESHOLD,
        };
        let now = crate::clock::now();
        let to = match &r.end_time {
            Some(t) => convert::from_timestamp("end_time", t).map_err(Status::from)?,
            None => now,
        };
        let from = match &r.start_time {
            Some(t) => convert::from_timestamp("start_time", t).map_err(Status::from)?,
            None => to - DEFAULT_QUEUE_WINDOW,
        };
        if from > to {
            return Err(Status::from(Error::field("start_time", "must not be after end_time")));
        }
        // Waits that entered in [from, to) belong to conversations opened by `to` that ended
        // at or after `from`.
        let query = ArchiveQuery {
            ended_from_ms: Some(from.as_millis()),
            opened_before_ms: Some(to.as_millis()),
            limit: ARCHIVE_PAGE,
            ..Default::default()
        };
        let (archived, _) = self.archived(&t, query, false).await?;
        if let Some(mesh) = on_actors::served(&self.meshes, &t).await? {
            let stats = actors::queue_stats(&mesh, now, from, to, threshold, archived);
            return Ok(Response::new(stats.await?));
        }
        let stats = self
            .registry
            .read(&t, move |s| queue_stats(s, now, from, to, threshold, &archived))
            .await?;
        Ok(Response::new(stats))
    }

    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Result<Response<pb::ListConversationsResponse>, Status> {
        let (call, r) = Call::split(request);
        let t = names::tenant("parent", &r.parent).map_err(Status::from)?;
        call.allow(&t, None)?;
        if let Some(mesh) = on_actors::served(&self.meshes, &t).await? {
            let list = actors::list_conversations(
                &self.meshes,
                &mesh,
                None,
                &r.filter,
                r.page_size,
                &r.page_token,
            );
            return Ok(Response::new(list.await?));
        }
        let page = super::search::conversations(
            &self.registry,
            &t,
            None,
            &r.filter,
            r.page_size,
            &r.page_token,
        )
        .await?;
        Ok(Response::new(page))
    }

    async fn explain_conversation(
        &self,
        request: Request<pb::ExplainConversationRequest>,
    ) -> Result<Response<pb::ConversationExplanation>, Status> {
        let (call, r) = Call::split(request);
        let (t, n) = names::conversation("conversation", &r.conversation)?;
        call.allow(&t, None)?;
        if let Some(mesh) = on_actors::served(&self.meshes, &t).await? {
            return Ok(Response::new(actors::explain_conversation(&mesh, n).await?));
        }
        let explained = self
            .registry
            .read(&t, move |s| {
                let c = s.conversation(n)?;
                let now = crate::clock::now().max(s.last_at);
                match s.engine.router().explain_conversation(now, c) {
                    Some(x) => Ok(convert::explain::conversation(s, c, &x)),
                    None => Err(not_routed(&s.conversation_name(c))),
                }
            })
            .await?
            .map_err(Status::from)?;
        Ok(Response::new(explained))
    }

    async fn explain_agent(
        &self,
        request: Request<pb::ExplainAgentRequest>,
    ) -> Result<Response<pb::AgentExplanation>, Status> {
        let (call, r) = Call::split(request);
        let (t, id) = names::child("agent", &r.agent, "agents").map_err(Status::from)?;
        call.allow(&t, None)?;
        if let Some(mesh) = on_actors::served(&self.meshes, &t).await? {
            return Ok(Response::new(actors::explain_agent(&mesh, &id).await?));
        }
        let explained = self
            .registry
            .read(&t, move |s| {
                let a = s.agent("agent", &id)?;
                let now = crate::clock::now().max(s.last_at);
                let x = s.engine.router().explain_agent(now, a).ok_or_else(|| {
                    Error::NotFound(format!("agent: {} has no routing state", s.agent_name(a)))
                })?;
                Ok::<_, Error>(convert::explain::agent(s, a, &x))
            })
            .await?
            .map_err(Status::from)?;
        Ok(Response::new(explained))
    }

    async fn get_agent_board(
        &self,
        request: Request<pb::GetAgentBoardRequest>,
    ) -> Result<Response<pb::AgentBoard>, Status> {
        let (call, r) = Call::split(request);
        let t = names::tenant("tenant", &r.tenant).map_err(Status::from)?;
        call.allow(&t, None)?;
        if let Some(mesh) = on_actors::served(&self.meshes, &t).await? {
            return Ok(Response::new(actors::agent_board(&mesh).await?));
        }
        let now = crate::clock::now();
        let agents = self
            .registry
            .read(&t, move |s: &TenantState| {
                s.agents
                    .names_after("")
                    .map(|(_, n)| AgentId(n))
                    .filter(|a| s.engine.agent_settings(*a).is_some())
                    .map(|a| resources::agent_on(s, a, now))
                    .collect()
            })
            .await?;
        Ok(Response::new(pb::AgentBoard { agents }))
    }
}

#[cfg(test)]
mod tests {
    use switchboard_core::{AgentId, Cause, ConversationId, CustomerId, GroupId};

    use super::*;

    fn conversation(transitions: &[(u64, State)]) -> Conversation {
        let mut c = Conversation::open(
            ConversationId(1),
            CustomerId(1),
            switchboard_core::Channel::Web,
            GroupId(1),
            0,
            Timestamp(0),
        );
        for &(at, to) in transitions {
            let agent = matches!(to, State::Offered | State::Assigned).then_some(AgentId(1));
            c.transition(Timestamp(at), to, Cause::Routed, agent);
        }
        c
    }

    #[test]
    fn a_wait_runs_from_entering_the_queue_to_leaving_it() {
        let c = conversation(&[
            (0, State::Queued),
            (5_000, State::Offered),
            (7_000, State::Queued),
            (8_000, State::Queued),
            (20_000, State::Assigned),
        ]);
        assert_eq!(
            waits(&c, Timestamp(99_000)),
            vec![
                (Timestamp(0), Duration::from_secs(5)),
                (Timestamp(7_000), Duration::from_secs(13))
            ]
        );
        let still = conversation(&[(1_000, State::Bot), (2_000, State::Queued)]);
        assert_eq!(
            waits(&still, Timestamp(62_000)),
            vec![(Timestamp(2_000), Duration::from_secs(60))]
        );
    }
}
