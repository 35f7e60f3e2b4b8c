//! The channel API, and the conversation-named calls of the agent API, of a tenant created
//! with `TENANT_ROUTING_ACTORS`: served by its conversation actors (issue 12's cut-over),
//! with the same validation and the same response shapes as the tenant actor's
//! (`apply::channel`, `convert::views`), so a client tells the two modes apart only by the
//! numbers.
//!
//! - A call naming a customer (PostMessage, OpenService) finds the customer's number
//!   (`Numbers::customer`, bound on first use) and so its conversation actor; a conversation
//!   number is taken (`Numbers::conversation`) only when the actor, called without one,
//!   answers that the customer has nothing open.
//! - A call naming a conversation finds its customer by the durable owner the opening step
//!   wrote (`Numbers::owner`: one primary-key probe, then cached), else the archive (an
//!   ended conversation: GetConversation only).
//! - Every mutating call carries its request id to the actor, which answers a repeated one
//!   from the store and writes a new one's response in the step's own batch
//!   (`actors::conversation::Call`).

use std::sync::{Arc, Mutex, PoisonError};

use switchboard_core::router::Standing;
use switchboard_core::{
    AgentId, Conversation, ConversationId, CustomerId, CustomerMessage, GroupId,
};
use switchboard_proto::v1 as pb;
use tonic::Status;

use crate::actors::conversation::{Answer, Answered, Call, Called, ConversationOp, NO_NUMBER};
use crate::actors::effects::{Current, MeshNames};
use crate::actors::meshes::Meshes;
use crate::actors::placement::ActorKey;
use crate::actors::router::{RouterCall, RouterCalled};
use crate::actors::{Mesh, TenantConfig};
use crate::apply::Names;
use crate::convert::{self, refusal, views};
use crate::error::{Error, Result};
use crate::names;
use crate::state::ConversationExtra;

/// The tenant's mesh if the tenant is served by actors; `None`: by its tenant actor (every
/// tenant created without `routing`, and a tenant the store does not know, whose call the
/// tenant actor's path refuses as before).
pub(crate) async fn served(meshes: &Meshes, tenant: &str) -> Result<Option<Mesh>, Status> {
    match meshes.actor_routing(tenant).await {
        Ok(true) => Ok(Some(meshes.mesh(tenant).await?)),
        Ok(false) | Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The calls on one actor tenant.
pub(crate) struct OnActors<'a> {
    pub meshes: &'a Meshes,
    pub mesh: Mesh,
}

/// A customer as the actors know it (its number) and as clients do (its id, its resource
/// name; a number never bound to a name shows as the number).
pub(super) struct Customer {
    number: CustomerId,
    id: Option<String>,
    resource: String,
}

/// Which conversation-named call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Named {
    RequestHuman,
    Close,
}

impl OnActors<'_> {
    pub(super) fn tenant(&self) -> &str {
        self.mesh.tenant()
    }

    pub(super) fn names(&self) -> MeshNames<'_> {
        MeshNames { tenant: self.mesh.tenant(), config: self.mesh.config() }
    }

    /// PostMessage: as `apply::channel::post_message`.
    pub async fn post_message(
        &self,
        r: &pb::PostMessageRequest,
    ) -> Result<pb::PostMessageResponse> {
        let tenant = self.tenant();
        let id = names::child_id_in("customer", &r.customer, "customers", tenant)?;
        let channel = convert::channel("channel", r.channel)?;
        crate::apply::channel::check_text("text", &r.text)?;
        crate::registry::check_request_id(&r.request_id)?;
        let group = if r.group.is_empty() {
            None
        } else {
            match group_ref(&self.mesh.config(), tenant, &r.group) {
                // A group created after the mesh loaded: one check of the stored version.
                Err(Error::NotFound(_)) => {
                    self.mesh.refresh_stored().await?;
                    Some(group_ref(&self.mesh.config(), tenant, &r.group)?)
                }
                found => Some(found?),
            }
        };
        let priority = u8::try_from(r.priority).map_err(|_| {
            Error::field("priority", format!("{} is above the highest priority, 255", r.priority))
        })?;
        if r.nickname.len() > 256 {
            return Err(Error::field("nickname", "longer than 256 bytes"));
        }
        let customer = self.number(id).await?;
        let msg = CustomerMessage {
            customer,
            channel,
            text: r.text.clone(),
            new_conversation: NO_NUMBER,
            group,
            priority: (priority > 0).then_some(priority),
        };
        // The nickname goes in with the message, in its step, only if it is accepted.
        let op = ConversationOp::CustomerMessage { msg, nickname: r.nickname.clone() };
        self.post(customer, id, op, &r.request_id).await
    }

    /// OpenService: as `apply::channel::open_service`.
    pub async fn open_service(
        &self,
        r: &pb::OpenServiceRequest,
    ) -> Result<pb::PostMessageResponse> {
        let tenant = self.tenant();
        let id = names::child_id_in("customer", &r.customer, "customers", tenant)?;
        let channel = convert::channel("channel", r.channel)?;
        crate::registry::check_request_id(&r.request_id)?;
        let customer = self.number(id).await?;
        let op = ConversationOp::OpenService { channel, new_conversation: NO_NUMBER };
        self.post(customer, id, op, &r.request_id).await
    }

    /// The number of the customer named `id`, bound on first use. One bound by this call is
    /// noted new in the mesh, so the first activation of its actor here reads nothing.
    pub(super) async fn number(&self, id: &str) -> Result<CustomerId> {
        let mesh = &self.mesh;
        let note = |customer, new| mesh.note_new_customer(customer, id, new);
        self.meshes.numbers().customer_noting(self.tenant(), id, note).await
    }

    /// A call that may open a conversation, answered with `PostMessageResponse`. It goes
    /// without a conversation number first; only if the customer has nothing open does the
    /// actor ask for one, and a fresh number is taken then (never one per message).
    async fn post(
        &self,
        customer: CustomerId,
        id: &str,
        op: ConversationOp,
        request_id: &str,
    ) -> Result<pb::PostMessageResponse> {
        let who = self.named_customer(customer, Some(id.to_owned()));
        let render = self.renderer(who.resource.clone());
        let (answer, kept) = Kept::answer(move |a: Answered<'_>| {
            let conversation =
                Some(render(a.conversation, a.standing, a.outcome.conversation, a.extra));
            pb::PostMessageResponse { conversation, opened: a.outcome.opened }
        });
        let body = match self.call_on(&who, op.clone(), request_id, answer.clone()).await? {
            Called::Answered(body) => body,
            Called::NumberWanted => {
                let fresh = self.meshes.numbers().conversation(self.tenant(), customer).await?;
                let numbered = match op {
                    ConversationOp::CustomerMessage { msg, nickname } => {
                        let msg = CustomerMessage { new_conversation: fresh, ..msg };
                        ConversationOp::CustomerMessage { msg, nickname }
                    }
                    ConversationOp::OpenService { channel, .. } => {
                        ConversationOp::OpenService { channel, new_conversation: fresh }
                    }
                    other => other,
                };
                match self.call_on(&who, numbered, request_id, answer).await? {
                    Called::Answered(body) => body,
                    Called::NumberWanted => {
                        return Err(Error::Internal(
                            "a numbered opening asked for a number".into(),
                        ));
                    }
                }
            }
        };
        let response = kept.take(&body)?;
        if let Some(opened) = response.conversation.as_ref().filter(|_| response.opened)
            && let Ok(n) = self.conversation_number("conversation", &opened.name)
        {
            // Its opening step is durable (the answer waits for it): the agent's calls on it
            // find its actor without reading the owner row.
            self.meshes.numbers().remember_owner(self.tenant(), n, customer);
        }
        Ok(response)
    }

    /// RequestHuman, CloseConversation: as `apply::channel`'s, on the conversation's actor.
    pub async fn on_conversation(
        &self,
        field: &str,
        name: &str,
        which: Named,
        request_id: &str,
    ) -> Result<pb::Conversation> {
        let n = self.conversation_number(field, name)?;
        let id = ConversationId(n);
        let Some(customer) = self.owner(n).await? else {
            return Err(self.unknown(id));
        };
        let op = match which {
            Named::RequestHuman => ConversationOp::RequestHuman(id),
            Named::Close => ConversationOp::ChannelClosed(id),
        };
        self.conversation_call(customer, id, op, request_id).await
    }

    /// An operation on a conversation whose customer is known, answered with the
    /// conversation as it is after the step.
    pub(super) async fn conversation_call(
        &self,
        customer: CustomerId,
        id: ConversationId,
        op: ConversationOp,
        request_id: &str,
    ) -> Result<pb::Conversation> {
        crate::registry::check_request_id(request_id)?;
        let who = self.who(customer).await?;
        let render = self.renderer(who.resource.clone());
        let (answer, kept) =
            Kept::answer(move |a: Answered<'_>| render(a.conversation, a.standing, id, a.extra));
        let body = self.answered(self.call_on(&who, op, request_id, answer).await?)?;
        kept.take(&body)
    }

    /// A call on the customer's conversation actor: its encoded answer.
    pub(super) async fn call_on(
        &self,
        who: &Customer,
        op: ConversationOp,
        request_id: &str,
        answer: Answer,
    ) -> Result<Called> {
        let (request_id, customer) = (request_id.to_owned(), who.id.clone());
        let call = Call { op, request_id, answer, customer };
        let called = self.mesh.conversation(who.number).call_public(call).await;
        called.map_err(|e| self.named(e, who.number, &who.resource))
    }

    /// SendMessage: as `apply::agent::send_message`; answered with the message's transcript
    /// row.
    pub async fn send_message(
        &self,
        r: &pb::SendMessageRequest,
    ) -> Result<pb::SendMessageResponse> {
        let agent = self.acting(&r.agent).await?;
        let n = self.conversation_number("conversation", &r.conversation)?;
        crate::apply::channel::check_text("text", &r.text)?;
        crate::registry::check_request_id(&r.request_id)?;
        let tag = convert::tag("tag", r.tag)?;
        let id = ConversationId(n);
        let customer = self.owner(n).await?.ok_or_else(|| self.unknown(id))?;
        let who = self.who(customer).await?;
        let op = ConversationOp::AgentMessage { id, agent, text: r.text.clone(), tag };
        let (answer, kept) = Kept::answer(|a: Answered<'_>| {
            let message = a.last_row.map(crate::service::transcript_message);
            pb::SendMessageResponse { message }
        });
        let body = self.answered(self.call_on(&who, op, &r.request_id, answer).await?)?;
        kept.take(&body)
    }

    /// MarkRead and EndConversation of the acting agent: as `apply::agent`'s (an agent ends
    /// the conversation it serves; a supervisor any, its own as its agent: the core's rule).
    pub async fn agent_on_conversation(
        &self,
        r: &pb::AgentConversationRequest,
        end: bool,
    ) -> Result<pb::Conversation> {
        let agent = self.acting(&r.agent).await?;
        let n = self.conversation_number("conversation", &r.conversation)?;
        let id = ConversationId(n);
        let customer = self.owner(n).await?.ok_or_else(|| self.unknown(id))?;
        let op = if end {
            ConversationOp::End { id, by: self.viewer(agent) }
        } else {
            ConversationOp::MarkRead { id, agent }
        };
        self.conversation_call(customer, id, op, &r.request_id).await
    }

    /// The acting agent, as `TenantState::agent_ref` finds it, in the mesh's configuration.
    pub(super) async fn acting(&self, name: &str) -> Result<AgentId> {
        self.acting_as("agent", name).await
    }

    /// The agent a reference field names, in the mesh's configuration. An agent unknown to
    /// the mesh is looked for again once after checking the stored configuration version
    /// (`actors::config`).
    pub(super) async fn acting_as(&self, field: &str, name: &str) -> Result<AgentId> {
        let tenant = self.tenant();
        let id = names::child_id_in(field, name, "agents", tenant)?;
        if let Some(agent) = self.mesh.config().agent_by_id(id) {
            return Ok(agent);
        }
        self.mesh.refresh_stored().await?;
        self.mesh
            .config()
            .agent_by_id(id)
            .ok_or_else(|| Error::NotFound(format!("{field}: agent {id:?} of tenant {tenant}")))
    }

    /// GetConversation: a live conversation from its actor (wherever it lives), an ended one
    /// from the archive.
    pub async fn get(&self, name: &str) -> Result<pb::Conversation> {
        let n = self.conversation_number("conversation", name)?;
        let id = ConversationId(n);
        if let Some(customer) = self.owner(n).await? {
            // From its actor, on whichever node it lives.
            if let Some(held) = super::calls::held(&self.mesh, id, customer).await? {
                let who = self.who(customer).await?;
                let render = self.renderer(who.resource);
                let standing = self.standing(id, held.position).await?;
                return Ok(render(
                    Some(&held.conversation),
                    Some(standing),
                    id,
                    held.extra.as_ref(),
                ));
            }
        }
        let Some(row) = self.archived(n).await? else { return Err(self.unknown(id)) };
        let archived = crate::archive::decode(&row.body)?;
        let customer = match row.customer.parse::<u64>() {
            Ok(number) => self.who(CustomerId(number)).await?.resource,
            Err(_) => names::child_name(self.tenant(), "customers", &row.customer),
        };
        let names = self.names();
        Ok(views::render_named(
            &Current(names.clone()),
            &archived.conversation,
            Some(&archived.extra),
            customer,
            None,
            None,
        ))
    }

    /// GetHistory's check (SPEC §7): what the acting agent may read of conversation `n`:
    /// everything (`None`), up to its handover (`Some(t)`), or nothing (PERMISSION_DENIED).
    /// The conversation as its actor holds it (on whichever node), else from the archive.
    pub async fn history_cutoff(
        &self,
        agent: &str,
        n: u64,
    ) -> Result<Option<switchboard_core::Timestamp>> {
        let a = self.acting(agent).await?;
        let id = ConversationId(n);
        let mut found = None;
        if let Some(customer) = self.owner(n).await? {
            found = super::calls::held(&self.mesh, id, customer).await?.map(|h| h.conversation);
        }
        if found.is_none()
            && let Some(row) = self.archived(n).await?
        {
            found = Some(crate::archive::decode(&row.body)?.conversation);
        }
        let c = found.ok_or_else(|| self.unknown(id))?;
        c.visible_until(self.viewer(a)).ok_or_else(|| {
            let names = self.names();
            Error::PermissionDenied(format!(
                "agent {} never served conversation {}; only its agents and supervisors can \
                 read or change it",
                names.agent_name(a),
                names.conversation_name(id)
            ))
        })
    }

    /// The archive row of conversation `n`, if it ended and is retained.
    pub(super) async fn archived(&self, n: u64) -> Result<Option<switchboard_store::Archived>> {
        let (store, tenant) = (self.mesh.inner().store.clone(), self.tenant().to_owned());
        crate::actors::blocking(move || store.archived(&tenant, n)).await
    }

    /// The conversation number a call names, checked to be this tenant's.
    pub fn conversation_number(&self, field: &str, name: &str) -> Result<u64> {
        let (t, n) = names::conversation_parts(field, name)?;
        if t != self.tenant() {
            return Err(Error::field(
                field,
                format!("{name:?} is not in tenant {}", self.tenant()),
            ));
        }
        Ok(n)
    }

    /// The customer a conversation number belongs to, by the owner its opening step wrote
    /// (cached by the node's numbers).
    pub async fn owner(&self, n: u64) -> Result<Option<CustomerId>> {
        self.meshes.numbers().owner(self.tenant(), n).await
    }

    pub fn unknown(&self, id: ConversationId) -> Error {
        Error::NotFound(format!("conversation {}", self.names().conversation_name(id)))
    }

    /// A call on a conversation whose customer is known, answered as `answer` renders it.
    pub(super) async fn answered_call(
        &self,
        customer: CustomerId,
        op: ConversationOp,
        request_id: &str,
        answer: Answer,
    ) -> Result<Vec<u8>> {
        let who = self.who(customer).await?;
        self.answered(self.call_on(&who, op, request_id, answer).await?)
    }

    /// The response of a call that opens nothing.
    pub(super) fn answered(&self, called: Called) -> Result<Vec<u8>> {
        match called {
            Called::Answered(body) => Ok(body),
            Called::NumberWanted => {
                Err(Error::Internal("a call on a conversation asked for a number".into()))
            }
        }
    }

    /// The customer of a number, by the name bound to it.
    pub(super) async fn who(&self, customer: CustomerId) -> Result<Customer> {
        let id = self.meshes.numbers().customer_name(self.tenant(), customer).await?;
        Ok(self.named_customer(customer, id))
    }

    /// The customer of a number with its id (its name), if known.
    pub(super) fn named_customer(&self, number: CustomerId, id: Option<String>) -> Customer {
        let shown = id.clone().unwrap_or_else(|| number.0.to_string());
        let resource = names::child_name(self.tenant(), "customers", &shown);
        Customer { number, id, resource }
    }

    /// Where a live conversation stands for GetConversation: its position and estimated wait
    /// now, from the router when it runs here (as on the tenant actor; a public call of the
    /// tenant lands on the router's node unless its shard is moving), else its position as
    /// its actor last heard it (`held`), without an estimate.
    async fn standing(&self, id: ConversationId, held: Option<usize>) -> Result<Standing> {
        if !self.mesh.is_here(ActorKey::Router { tenant: self.tenant() }) {
            return Ok(Standing { position: held, ..Default::default() });
        }
        let now = crate::clock::now();
        let read = move |side: &switchboard_core::mesh::RouterSide| {
            let router = side.router();
            Standing {
                position: router.position(id),
                wait: router.estimated_wait(now, id),
                ..Default::default()
            }
        };
        self.mesh.router().read(read).await
    }

    /// Renders a conversation as the API shows it, with the mesh's names: its position and
    /// estimated wait (while it waits) as `standing` tells them, its tags and note (`extra`)
    /// when the actor has them.
    pub(super) fn renderer(
        &self,
        customer: String,
    ) -> impl Fn(
        Option<&Conversation>,
        Option<Standing>,
        ConversationId,
        Option<&ConversationExtra>,
    ) -> pb::Conversation
    + Send
    + Sync
    + 'static {
        let (tenant, config) = (self.tenant().to_owned(), self.mesh.config().clone());
        move |c, standing, id, extra| {
            let names = MeshNames { tenant: &tenant, config: config.clone() };
            match c {
                Some(c) => {
                    let waiting = c.state == switchboard_core::State::Queued;
                    let standing = standing.filter(|_| waiting).unwrap_or_default();
                    let (position, wait) = (standing.position, standing.wait);
                    views::render_named(
                        &Current(names.clone()),
                        c,
                        extra,
                        customer.clone(),
                        position,
                        wait,
                    )
                }
                None => {
                    pb::Conversation { name: names.conversation_name(id), ..Default::default() }
                }
            }
        }
    }

    /// A refusal of the core in resource names (the customer by its name, not its number).
    fn named(&self, e: Error, customer: CustomerId, resource: &str) -> Error {
        match e {
            Error::Core(error) => {
                let message =
                    refusal::describe_mesh(&self.names(), Some((customer, resource)), &error);
                Error::Refused { error, message }
            }
            other => other,
        }
    }
}

/// A conversation the router does not hold, named by a call that would `action` it: ended
/// (its archive row: FAILED_PRECONDITION, as the tenant actor refuses an act on an ended
/// conversation), open (its opening's owner row: still with its bot, which the router never
/// sees; FAILED_PRECONDITION too), else NOT_FOUND. Read only on that refusal's path.
pub(super) async fn not_held(
    mesh: &Mesh,
    names: &MeshNames<'_>,
    c: ConversationId,
    action: &'static str,
) -> Error {
    let (store, tenant) = (mesh.inner().store.clone(), mesh.tenant().to_owned());
    let found = crate::actors::blocking(move || {
        if store.archived(&tenant, c.0)?.is_some() {
            return Ok(Some(switchboard_core::State::Ended));
        }
        Ok(store.conversation_customer(&tenant, c.0)?.map(|_| switchboard_core::State::Bot))
    });
    match found.await {
        Ok(Some(state)) => {
            let action = if state == switchboard_core::State::Ended {
                "act on an ended conversation"
            } else {
                action
            };
            let error =
                switchboard_core::Error::InvalidTransition { conversation: c, state, action };
            let message = refusal::describe_mesh(names, None, &error);
            Error::Refused { error, message }
        }
        Ok(None) => Error::NotFound(format!("conversation {}", names.conversation_name(c))),
        Err(e) => e,
    }
}

/// What a call answered by the router keeps for its request id: its `kind`, then the digest
/// of its request (`registry::call_digest`), so another call under the id (another
/// conversation, another status, another selection) is told from a retry.
pub(super) fn asked(kind: &[u8], request: &impl prost::Message) -> Vec<u8> {
    [kind, &crate::registry::call_digest(&request.encode_to_vec())].concat()
}

/// Keeps `body` under `request_id` in the router's next write (a router call of no
/// operation), unless an answer is stored under it already: then that one.
pub(super) async fn kept_by_router(
    mesh: &Mesh,
    request_id: &str,
    body: Vec<u8>,
) -> Result<Option<Vec<u8>>> {
    let call = RouterCall {
        ops: Vec::new(),
        request_id: request_id.to_owned(),
        answer: Arc::new(move |_| Some(body.clone())),
    };
    match mesh.router().call_public(call).await? {
        RouterCalled::Stored(stored) => Ok(Some(stored)),
        RouterCalled::Decided { .. } => Ok(None),
    }
}

/// A group named by a reference field, as `TenantState::group_ref` finds it, in the mesh's
/// configuration.
pub(super) fn group_ref(config: &TenantConfig, tenant: &str, name: &str) -> Result<GroupId> {
    config.group_ref(tenant, "group", name)
}

/// An [`Answer`] whose message is kept beside its bytes as the actor built it, so a call that
/// gets those very bytes back takes the message instead of decoding them (a post's answer
/// holds the conversation's view: a dozen strings, each a copy when decoded). Bytes that
/// differ (an answer stored for a repeated request id, or built again for a held call) are
/// decoded.
struct Kept<T>(Arc<Mutex<Option<Built<T>>>>);

/// An answer's bytes and the message they encode.
type Built<T> = (Vec<u8>, T);

impl<T: prost::Message + Default + 'static> Kept<T> {
    fn answer(build: impl Fn(Answered<'_>) -> T + Send + Sync + 'static) -> (Answer, Kept<T>) {
        let slot = Arc::new(Mutex::new(None));
        let kept = slot.clone();
        let answer: Answer = Arc::new(move |a: Answered<'_>| {
            let message = build(a);
            let bytes = message.encode_to_vec();
            *kept.lock().unwrap_or_else(PoisonError::into_inner) = Some((bytes.clone(), message));
            bytes
        });
        (answer, Kept(slot))
    }

    /// The message `body` encodes.
    fn take(&self, body: &[u8]) -> Result<T> {
        match self.0.lock().unwrap_or_else(PoisonError::into_inner).take() {
            Some((bytes, message)) if bytes == body => Ok(message),
            _ => T::decode(body).map_err(undecodable),
        }
    }
}

/// A stored answer that is not this call's kind: its request id was answered before for
/// another call. Refused, never applied.
pub(super) fn undecodable(_e: prost::DecodeError) -> Error {
    Error::reused("")
}

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use switchboard_core::engine::Outcome;

    use super::*;

    /// The message a call takes is the one its bytes encode: the kept one when the bytes that
    /// come back are those the answer built, decoded from them otherwise.
    #[test]
    fn a_kept_answer_is_taken_only_for_its_own_bytes() {
        let (customer, profile) = (Default::default(), Default::default());
        let outcome = Outcome { conversation: ConversationId(7), opened: true, effects: vec![] };
        let answered = Answered {
            conversation: None,
            standing: None,
            outcome: &outcome,
            last_row: None,
            extra: None,
            customer: &customer,
            profile: &profile,
        };
        let (answer, kept) = Kept::answer(|a: Answered<'_>| pb::PostMessageResponse {
            conversation: None,
            opened: a.outcome.opened,
        });
        let bytes = answer(answered);
        assert_eq!(kept.take(&bytes).unwrap(), pb::PostMessageResponse::decode(&*bytes).unwrap());
        // Taken once: a second call with the same bytes decodes them.
        assert!(kept.take(&bytes).unwrap().opened);
        // Other bytes (an answer stored for the request id) are decoded, not the kept message.
        let stored = pb::PostMessageResponse { conversation: None, opened: false }.encode_to_vec();
        let _ = answer(answered);
        assert!(!kept.take(&stored).unwrap().opened);
        assert!(kept.take(b"\xff").is_err(), "bytes that do not decode are an error");
    }
}
