//! Ratings, the rating invitation, bot hosting and a conversation's tags and note for a
//! tenant created with `TENANT_ROUTING_ACTORS`: served by the customer's conversation actor
//! (issue 12's cut-over), with the tenant actor's validation and response shapes
//! (`apply::channel::rate`, `apply::agent`'s `bot_hosting`, `invite_rating`,
//! `update_conversation`, `apply::supervisor::set_bot_hosting`).
//!
//! - A rating, tags or a note of an ended conversation go to the actor of its customer
//!   (found by the owner row, else the archive row), which reads the archive row, applies the
//!   step to it and rewrites the row in the step's own batch with the response
//!   (`actors::conversation`, `ConversationOp::Rate` / `Update`): durable before the answer,
//!   a retry answered from the per-actor `responses` table.
//! - The supervisor's SetBotHosting is one call per conversation on its actor, each under its
//!   own request id (`{request_id}#{number}`, so each actor's stored answer is its own), and
//!   answers the sum (each on whichever node its actor lives, `calls`); by agent or for
//!   all, the conversations are the router actor's
//!   (its read; the router must run on this node), and the whole answer is kept under the
//!   request id too (in the router's write: a call of no operation), so a retry answers the
//!   first call's sum and switches nothing assigned since.

use prost::Message as _;
use switchboard_core::{Actor, ConversationId, CustomerId};
use switchboard_proto::v1 as pb;

use super::calls::{Selected, Selection};
use super::on_actors::{OnActors, undecodable};
use crate::actors::conversation::{ConversationOp, Patch};
use crate::actors::placement::ActorKey;
use crate::error::{Error, Result};

/// The answer kept for `asked`, or a refusal: the request id was another call's.
fn answer_of(asked: &[u8], body: &[u8], request_id: &str) -> Result<pb::SetBotHostingResponse> {
    match body.strip_prefix(asked) {
        Some(answer) => Ok(pb::SetBotHostingResponse::decode(answer).map_err(undecodable)?),
        None => Err(Error::reused(request_id)),
    }
}

impl OnActors<'_> {
    /// RateConversation: as `apply::channel::rate`, open or ended.
    pub async fn rate(&self, r: &pb::RateConversationRequest) -> Result<pb::Conversation> {
        let (id, customer) = self.named_conversation("conversation", &r.conversation).await?;
        let score = u8::try_from(r.score).map_err(|_| Error::field("score", "must be 1 to 5"))?;
        let op = ConversationOp::Rate { id, score, comment: r.comment.clone() };
        self.conversation_call(customer, id, op, &r.request_id).await
    }

    /// AgentService.SetBotHosting: as `apply::agent::bot_hosting` (the agent holding it, or a
    /// supervisor).
    pub async fn agent_bot_hosting(
        &self,
        r: &pb::AgentBotHostingRequest,
    ) -> Result<pb::Conversation> {
        let a = self.acting(&r.agent).await?;
        let (id, customer) = self.named_conversation("conversation", &r.conversation).await?;
        let op = ConversationOp::BotHosting { id, on: r.on, by: self.viewer(a) };
        self.conversation_call(customer, id, op, &r.request_id).await
    }

    /// InviteRating: as `apply::agent::invite_rating` (the agent's own message path, marked
    /// as the invitation).
    pub async fn invite_rating(
        &self,
        r: &pb::AgentConversationRequest,
    ) -> Result<pb::Conversation> {
        let agent = self.acting(&r.agent).await?;
        let (id, customer) = self.named_conversation("conversation", &r.conversation).await?;
        let op = ConversationOp::InviteRating { id, agent };
        self.conversation_call(customer, id, op, &r.request_id).await
    }

    /// UpdateConversation: as `apply::agent::update_conversation` (the same mask and checks),
    /// open or ended.
    pub async fn update_conversation(
        &self,
        r: &pb::UpdateConversationRequest,
    ) -> Result<pb::Conversation> {
        let a = self.acting(&r.agent).await?;
        let (id, customer) = self.named_conversation("conversation", &r.conversation).await?;
        let mask = crate::apply::agent::conversation_update(r)?;
        let tags = mask.covers("tags").then(|| r.tags.clone());
        let note = mask.covers("note").then(|| r.note.clone());
        let op = ConversationOp::Update { id, by: self.viewer(a), patch: Patch { tags, note } };
        self.conversation_call(customer, id, op, &r.request_id).await
    }

    /// SupervisorService.SetBotHosting: as `apply::supervisor::set_bot_hosting` (a bad
    /// conversation name refuses the whole request; a conversation not assigned, or ended,
    /// does not count).
    pub async fn set_bot_hosting(
        &self,
        r: &pb::SetBotHostingRequest,
    ) -> Result<pb::SetBotHostingResponse> {
        use pb::set_bot_hosting_request::Selection as S;
        let s = self.acting_supervisor(&r.supervisor).await?;
        crate::registry::check_request_id(&r.request_id)?;
        // By agent or for all, the selection is the router's now: a retry answers the first
        // call's sum and switches nothing it did not select (`whole`).
        let whole =
            !r.request_id.is_empty() && matches!(r.selection, Some(S::Agent(_) | S::All(true)));
        let asked = whole.then(|| super::on_actors::asked(b"set_bot_hosting:", r));
        if let Some(asked) = &asked
            && let Some(body) = self.mesh.stored_response(&r.request_id).await?
        {
            return answer_of(asked, &body, &r.request_id);
        }
        let mut targets: Vec<(ConversationId, Option<CustomerId>)> = match &r.selection {
            Some(S::Conversations(list)) => {
                let max = crate::apply::supervisor::MAX_BATCH;
                if list.conversations.is_empty() || list.conversations.len() > max {
                    return Err(Error::field(
                        "conversations.conversations",
                        format!("name 1 to {max} conversations, got {}", list.conversations.len()),
                    ));
                }
                let mut found = Vec::with_capacity(list.conversations.len());
                for (i, name) in list.conversations.iter().enumerate() {
                    let field = format!("conversations.conversations[{i}]");
                    let (id, customer) = self.named_conversation(&field, name).await?;
                    found.push((id, Some(customer)));
                }
                found
            }
            Some(S::Agent(name)) => {
                let a = self.acting(name).await?;
                self.assigned(Some(a)).await?
            }
            Some(S::All(true)) => self.assigned(None).await?,
            Some(S::All(false)) | None => {
                return Err(Error::field(
                    "selection",
                    "choose conversations, an agent, or all = true",
                ));
            }
        };
        targets.sort_by_key(|(id, _)| *id);
        targets.dedup_by_key(|(id, _)| *id);
        // A retry (same request id) answers each conversation's stored answer again, so the
        // sum is the same. Each conversation is switched by its own actor, on whichever node
        // it lives (`calls`).
        let mut changed = 0u32;
        for (id, customer) in targets {
            let Some(customer) = customer else { continue };
            let request_id = if r.request_id.is_empty() {
                String::new()
            } else {
                format!("{}#{}", r.request_id, id.0)
            };
            let selection = Selection::BotHosting { on: r.on, supervisor: s };
            match self.on_selection(customer, id, selection, &request_id).await? {
                Selected::Answered(body) => {
                    let one =
                        pb::SetBotHostingResponse::decode(body.as_slice()).map_err(undecodable)?;
                    changed = changed.saturating_add(one.changed);
                }
                // Not open (ended meanwhile, or gone): it does not count, as on one node.
                Selected::Refused(_) => {}
            }
        }
        let answer = pb::SetBotHostingResponse { changed };
        let Some(asked) = asked else { return Ok(answer) };
        // Kept by the router (a call of no operation), in its next write.
        let mut kept = asked.clone();
        kept.extend_from_slice(&answer.encode_to_vec());
        match super::on_actors::kept_by_router(&self.mesh, &r.request_id, kept).await? {
            Some(body) => answer_of(&asked, &body, &r.request_id),
            None => Ok(answer),
        }
    }

    /// The conversations the router actor has assigned (to `agent`, or to anyone), with their
    /// customers. The router's read: it must run on this node.
    async fn assigned(
        &self,
        agent: Option<switchboard_core::AgentId>,
    ) -> Result<Vec<(ConversationId, Option<CustomerId>)>> {
        let key = ActorKey::Router { tenant: self.mesh.tenant() };
        if !self.mesh.is_here(key) {
            return Err(Error::FailedPrecondition(
                "bot hosting by agent or for all reads the tenant's router actor, which runs on \
                 another node (name the conversations instead)"
                    .into(),
            ));
        }
        let read = move |side: &switchboard_core::mesh::RouterSide| {
            let router = side.router();
            let mut ids: Vec<ConversationId> = match agent {
                Some(a) => router.agent(a).map(|x| x.assigned.iter().copied().collect()),
                None => {
                    Some(router.agents().flat_map(|(_, x)| x.assigned.iter().copied()).collect())
                }
            }
            .unwrap_or_default();
            ids.sort();
            ids.into_iter().map(|c| (c, side.customer_of(c))).collect::<Vec<_>>()
        };
        self.mesh.router().read(read).await
    }

    /// The acting agent, required to be a supervisor (`apply::supervisor`'s rule).
    pub(super) async fn acting_supervisor(&self, name: &str) -> Result<switchboard_core::AgentId> {
        let a = self.acting_as("supervisor", name).await?;
        if !self.mesh.config().supervisors.contains(&a) {
            return Err(Error::PermissionDenied(format!(
                "{name} is not a supervisor; an administrator grants the flag with PutAgent"
            )));
        }
        Ok(a)
    }

    /// How `a` acts on a conversation: as a supervisor if it is one (`scope::viewer`).
    pub(super) fn viewer(&self, a: switchboard_core::AgentId) -> Actor {
        if self.mesh.config().supervisors.contains(&a) {
            Actor::Supervisor(a)
        } else {
            Actor::Agent(a)
        }
    }

    /// A conversation a call names and its customer: by the owner its opening step wrote,
    /// else by its archive row (NOT_FOUND if neither).
    async fn named_conversation(
        &self,
        field: &str,
        name: &str,
    ) -> Result<(ConversationId, CustomerId)> {
        let n = self.conversation_number(field, name)?;
        let id = ConversationId(n);
        if let Some(customer) = self.owner(n).await? {
            return Ok((id, customer));
        }
        let row = self.archived(n).await?;
        match row.and_then(|row| row.customer.parse::<u64>().ok()) {
            Some(customer) => Ok((id, CustomerId(customer))),
            None => Err(self.unknown(id)),
        }
    }
}
