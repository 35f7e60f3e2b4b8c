//! The conversation actor: one per tenant and customer with an open conversation (or links
//! the router has not acknowledged), a thin shell around the core's [`ConversationSide`]
//! (lifecycle, messages, replies, timers, budget). Calls on the customer's conversation come
//! through its [`ConversationHandle`]; the router's decisions come as envelopes.
//!
//! Each step: the side changes state and queues messages; the actor writes the side as its
//! row, with the conversations that ended in the step as archive rows and the step's effects
//! as durable entries (replies to `outbox`, events to `events`, transcript rows:
//! `actors::effects`), in one batch, and awaits durability; then `outgoing()` goes to the
//! transport and the caller is answered.
//!
//! **Message steps leave the row as it was** when the step's transcript rows say all it
//! changed: the side as this incarnation last wrote it, folded with those rows
//! (`ConversationSide::fold`), equals the side the step left ([`Written`]); an activation
//! folds the rows written after its row's transcript number. A customer's message or an
//! agent's reply in an assigned conversation writes its transcript row, not the side's
//! (ARCHITECTURE.md, "A conversation's row not rewritten by its message steps").
//!
//! **Desk notes** (with agent actors, `MeshOptions::agent_actors`): the side is built
//! `with_desk()`, so a step's notes for the agent holding the conversation (customer
//! messages, whispers, read-unreplied, bot hosting) are entries of that agent's desk stream
//! in the step's own write (`effects::Rows::desk`): a customer's message reaches the desk
//! with one commit, no agent actor in between (`switchboard_core::mesh::desk`: why the desk's
//! order holds).
//!
//! **Held responses**: a public call that asks the router (an opening, a request for a human,
//! a raise) is answered once the router's answer is applied, as on one node ([`Held`]).
//!
//! Passivation: once nothing is open and the router acknowledged everything, the actor
//! stores the customer's record (last agent, settings) and deletes its row in one batch,
//! then drains (what is already in its mailbox is still handled; later sends are refused and
//! the handle sends them to the next incarnation).

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchboard_core::mesh::conversation::Line;
use switchboard_core::mesh::{Body, ConversationSide, DeskEvent, Envelope, ToConversation};
use switchboard_core::router::Standing;
use switchboard_core::session::Customer;
use switchboard_core::{
    AgentId, Channel, Conversation, ConversationId, CustomerId, CustomerMessage, Effect,
    MessageTag, Outcome, Timestamp,
};
use switchboard_proto::v1 as pb;
use switchboard_store::{
    ActorState, Archived, Batch, ConversationOwner, CustomerRecord, Fence, Response,
};
use tracing::warn;

use super::effects::{Current, CustomerNamed, MeshNames, Rows, Step, Transcript};
use super::placement::ActorKey;
use super::transport::Wire;
use super::{
    Beside, BesideRef, CONVERSATION, Counted, Exit, Generation, Later, Mesh, Outbox, Timers,
    decode_with, encode_with,
};
use crate::archive;
use crate::clock;
use crate::error::{Error, Result};
use crate::state::{ConversationExtra, Profile};

/// The first byte of a stored answer that keeps what its call asked ([`stored_body`]): wire
/// type 6, which starts no protobuf message, so an answer stored before is told apart. The
/// store keeps such an answer when another call writes its own under the same request id
/// (`Response::replaces`).
const KEPT_CALL: u8 = Response::KEPT_CALL;

/// What a call asked, as its stored answer keeps it: the first 16 bytes of the SHA-256 of
/// the operation as the actor takes it, without the conversation number a first post is
/// given (its retry asks again for one). A later call with the same request id that asked
/// something else is refused, not answered with this one's answer.
fn call_digest(op: &ConversationOp) -> [u8; Response::CALL_LEN] {
    let asked = match op {
        ConversationOp::CustomerMessage { msg, nickname } => {
            let msg = CustomerMessage { new_conversation: NO_NUMBER, ..msg.clone() };
            format!("{:?}", ConversationOp::CustomerMessage { msg, nickname: nickname.clone() })
        }
        ConversationOp::OpenService { channel, .. } => {
            let op = ConversationOp::OpenService { channel: *channel, new_conversation: NO_NUMBER };
            format!("{op:?}")
        }
        other => format!("{other:?}"),
    };
    crate::registry::call_digest(asked.as_bytes())
}

/// A call's answer as stored: [`KEPT_CALL`], what it asked, the answer.
fn stored_body(call: &[u8; Response::CALL_LEN], answer: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(1 + call.len() + answer.len());
    body.push(KEPT_CALL);
    body.extend_from_slice(call);
    body.extend_from_slice(answer);
    body
}

/// A call naming a conversation reaches its customer's actor by the owner row its opening
/// wrote: one this side no longer holds has ended (refused as the tenant actor refuses an act
/// on an ended conversation, not as unknown).
fn ended(e: switchboard_core::Error, id: ConversationId) -> switchboard_core::Error {
    match e {
        switchboard_core::Error::UnknownConversation(c) if c == id => {
            switchboard_core::Error::InvalidTransition {
                conversation: id,
                state: switchboard_core::State::Ended,
                action: "act on an ended conversation",
            }
        }
        other => other,
    }
}

/// An agent may touch a conversation it serves or served, a supervisor any
/// (`scope::conversation`'s rule; `by` is the viewer as `scope::viewer` makes it).
fn in_scope(names: &MeshNames<'_>, c: &Conversation, by: switchboard_core::Actor) -> Result<()> {
    if c.visible_until(by).is_some() {
        return Ok(());
    }
    use crate::apply::Names as _;
    let agent = match by {
        switchboard_core::Actor::Agent(a) | switchboard_core::Actor::Supervisor(a) => {
            names.agent_name(a)
        }
        _ => "the caller".to_owned(),
    };
    Err(Error::PermissionDenied(format!(
        "agent {agent} never served conversation {}; only its agents and supervisors can read \
         or change it",
        names.conversation_name(c.id)
    )))
}

/// An operation on a customer's conversation, as [`ConversationHandle`] builds it. `Rate`
/// and `Update` (tags and note, by an agent in its data scope) act on the open conversation
/// or on an ended one (its archive row, rewritten in the step's batch); the open one's tags
/// and note are kept in the row beside the side. `BotHosting` is by the agent holding it or
/// a supervisor; `InviteRating` is the rating invitation, sent as the agent's message.
/// `Whisper`: a supervisor's guidance to the holder, a `whisper` transcript row, never sent;
/// `EndInBatch`: one item of a supervisor's EndBatch, the batch-end reply.
///
/// `CustomerMessage` carries the nickname its channel reports (empty: none), which goes in
/// before the message and only if the message is accepted. `PutCustomer` and
/// `UpdateProfile` change the customer, not a conversation: what an administrator sets
/// (settings: the core's side checks them; language and customer groups in the profile) and
/// an agent's edit of its contact data and tags (in the agent's data scope, the
/// `scope::customer` rule); both write the customer's `customers` row in the step's batch.
#[derive(Debug, Clone)]
pub enum ConversationOp {
    CustomerMessage { msg: CustomerMessage, nickname: String },
    OpenService { channel: Channel, new_conversation: ConversationId },
    RequestHuman(ConversationId),
    ChannelClosed(ConversationId),
    AgentMessage { id: ConversationId, agent: AgentId, text: String, tag: Option<MessageTag> },
    MarkRead { id: ConversationId, agent: AgentId },
    End { id: ConversationId, by: switchboard_core::Actor },
    Whisper { id: ConversationId, from: AgentId, text: String },
    EndInBatch(ConversationId),
    Rate { id: ConversationId, score: u8, comment: String },
    BotHosting { id: ConversationId, on: bool, by: switchboard_core::Actor },
    InviteRating { id: ConversationId, agent: AgentId },
    Update { id: ConversationId, by: switchboard_core::Actor, patch: Patch },
    PutCustomer(Box<pb::PutCustomerRequest>),
    UpdateProfile { by: AgentId, request: Box<pb::UpdateCustomerProfileRequest> },
}

/// What UpdateConversation changes (`None`: left as it is).
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub tags: Option<Vec<String>>,
    pub note: Option<String>,
}

impl Patch {
    fn apply(&self, extra: &mut ConversationExtra) {
        if let Some(tags) = &self.tags {
            extra.tags.clone_from(tags);
        }
        if let Some(note) = &self.note {
            extra.note.clone_from(note);
        }
    }
}

impl ConversationOp {
    /// The command's kind, as the tenant actor names its commands (`tenant::op_kind`), for
    /// the refusals counter.
    pub fn kind(&self) -> &'static str {
        match self {
            ConversationOp::CustomerMessage { .. } => "post_message",
            ConversationOp::OpenService { .. } => "open_service",
            ConversationOp::RequestHuman(_) => "request_human",
            ConversationOp::ChannelClosed(_) => "close_conversation",
            ConversationOp::AgentMessage { .. } => "send_message",
            ConversationOp::MarkRead { .. } => "mark_read",
            ConversationOp::End { .. } => "end_conversation",
            ConversationOp::Whisper { .. } => "whisper",
            ConversationOp::EndInBatch(_) => "end_batch",
            ConversationOp::Rate { .. } => "rate_conversation",
            ConversationOp::BotHosting { .. } => "set_bot_hosting",
            ConversationOp::InviteRating { .. } => "invite_rating",
            ConversationOp::Update { .. } => "update_conversation",
            ConversationOp::PutCustomer(_) => "put_customer",
            ConversationOp::UpdateProfile { .. } => "update_customer_profile",
        }
    }

    /// The conversation of a call that may act on it after its end (a rating, tags, a note).
    fn after_end(&self) -> Option<ConversationId> {
        match self {
            ConversationOp::Rate { id, .. } | ConversationOp::Update { id, .. } => Some(*id),
            _ => None,
        }
    }
}

/// How many request ids a fresh conversation actor remembers to skip their store lookup
/// ([`ConversationRun::first_sight`]).
const FRESH_IDS: usize = 1024;

/// How a public call is answered once its step is applied: its response, encoded.
pub type Answer = Arc<dyn Fn(Answered<'_>) -> Vec<u8> + Send + Sync>;

/// What an [`Answer`] is made from.
#[derive(Debug, Clone, Copy)]
pub struct Answered<'a> {
    /// The conversation the call named or opened (live, or ended in this step; `None` if
    /// neither).
    pub conversation: Option<&'a Conversation>,
    /// Where it stands, as the router last told it.
    pub standing: Option<Standing>,
    pub outcome: &'a Outcome,
    /// The last transcript row the step wrote (an agent's message: its own row).
    pub last_row: Option<&'a switchboard_store::Message>,
    /// The conversation's tags and note.
    pub extra: Option<&'a ConversationExtra>,
    /// The customer as it is after the step, and its profile.
    pub customer: &'a Customer,
    pub profile: &'a Profile,
}

/// A call of the public API on the customer's conversation (issue 12's cut-over): the
/// operation, its request id (empty: none) and how to answer it. A request id already
/// answered is answered again from the store and applies nothing; a new one's response is
/// written in the same batch as the step ([`switchboard_store::Batch::responses`]).
#[derive(Clone)]
#[allow(missing_debug_implementations)] // carries a closure
pub struct Call {
    pub op: ConversationOp,
    pub request_id: String,
    pub answer: Answer,
    /// The customer's id (its name), if the caller knows it: the actor keeps it in its row
    /// and names the customer by it in what it writes.
    pub customer: Option<String>,
}

/// How a public call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Called {
    /// Its encoded response (applied now, or stored by an earlier copy of the request).
    Answered(Vec<u8>),
    /// It would open a conversation and carries no number for it
    /// ([`NO_NUMBER`]): nothing was applied; call again with a fresh number.
    NumberWanted,
}

/// The conversation number a customer message or an open-service call carries when the
/// caller has not taken one: the actor takes the call only if a conversation is open (so a
/// number is spent only on an opening).
pub const NO_NUMBER: ConversationId = ConversationId(0);

/// The outcome of a step no public call asked for (a router's message, a timer).
const NO_STEP: Outcome =
    Outcome { conversation: ConversationId(0), opened: false, effects: vec![] };

/// A read of the side with the open conversation's tags and note.
pub type ReadTagged = Box<dyn FnOnce(&ConversationSide, Option<&ConversationExtra>) + Send>;

#[allow(missing_debug_implementations)] // carries closures and reply ports
pub enum ConversationMsg {
    /// An envelope from the router actor (counted against the receiving node's bound when
    /// it came from another node), with the generation it was sent early under, if it was
    /// ([`super::Generation`]).
    Deliver(Envelope<ToConversation>, Option<super::Ticket>, Option<u64>),
    /// An operation; answered once durable.
    Op(ConversationOp, RpcReplyPort<Result<Outcome>>),
    /// A public call; answered with its encoded response once durable (or found stored).
    Call(Call, RpcReplyPort<Result<Called>>),
    /// A read of the side's current state.
    Read(super::ReadSide<ConversationSide>),
    /// A read of the side with the open conversation's tags and note.
    ReadTagged(ReadTagged),
    /// Its one timer fired: a deadline, a resend or the end of its idle time may be due.
    Wake,
}

#[derive(Debug)]
pub struct ConversationArgs {
    pub mesh: Mesh,
    pub customer: CustomerId,
    /// Told when it passivates, for its supervisor.
    pub(crate) exit: Arc<Exit>,
}

#[derive(Debug)]
pub struct ConversationActor;

#[allow(missing_debug_implementations)] // the side is large; see `Read`
pub struct ConversationRun {
    mesh: Mesh,
    customer: CustomerId,
    key: String,
    /// Its key's shard and epoch on this node when it activated: every write carries it.
    fence: Fence,
    side: ConversationSide,
    /// The transcript's numbering, kept in the row beside the side.
    transcript: Transcript,
    /// The customer's id (its name), kept in the row once a public call told it.
    name: Option<String>,
    /// The open conversation's tags and note (its number and them), kept in the row; they go
    /// to its archive row when it ends.
    extra: Option<(ConversationId, ConversationExtra)>,
    /// The customer's profile, kept in the row and in its `customers` record.
    profile: Profile,
    /// The customer's record as the store's `customers` row last had it (written by this
    /// incarnation, or read at its activation): a step that changes the customer (its
    /// settings, last agent, open conversation) or its profile writes the row again in its own
    /// batch, so reads of the table lag nothing.
    recorded: Option<(Customer, Profile)>,
    /// The customer is known: it had an actor row or a stored record, or a step was written.
    known: bool,
    epoch: u64,
    last_now: Timestamp,
    last_active: tokio::time::Instant,
    timers: Timers,
    /// The store holds a row of this actor (loaded, or written since).
    stored: bool,
    /// It drained itself (passivation): work that came in meanwhile needs a successor.
    drained: bool,
    /// A write failed: it stops, and its supervisor activates it again after a backoff.
    failed: bool,
    exit: Arc<Exit>,
    /// Responses of calls that asked the router, held for its answer ([`Held`]).
    held: Vec<Held>,
    /// The request ids of the calls this incarnation took, while it can vouch that no other
    /// response of its key is stored ([`ConversationRun::first_sight`]); `None`: it cannot.
    fresh: Option<rustc_hash::FxHashSet<String>>,
    /// The request id of the last call, if it was answered [`Called::NumberWanted`] with no
    /// response stored, having been looked up (or vouched for) first: the caller comes back
    /// with a number and that id, which nothing can have answered meanwhile (every call
    /// takes this slot, and only this incarnation writes its key's responses), so a known
    /// customer's opening post is looked up once, not twice.
    wanted: Option<String>,
    /// What it heard early: its next batch's generation.
    generation: Generation,
    /// Its row as this incarnation last wrote it, with the steps since that left it as it
    /// was folded in; `None` until this incarnation writes its row.
    written: Option<Box<Written>>,
    _counted: Counted,
    id: ractor::ActorId,
}

/// What a conversation actor's row holds, as its incarnation last wrote it and folded the
/// transcript rows of the steps since ([`ConversationSide::fold`]). A step whose rows fold this
/// into the actor's state leaves the row as it was; its next activation does the same fold
/// on the rows written after the row's transcript number.
struct Written {
    side: ConversationSide,
    transcript: Transcript,
    name: Option<String>,
    extra: Option<(ConversationId, ConversationExtra)>,
    profile: Profile,
}

impl Written {
    /// Folds in the step's transcript rows; whether that gives `run`'s state (then its row
    /// may stay as it was).
    fn folds(&mut self, messages: &[switchboard_store::Message], run: &ConversationRun) -> bool {
        let open = run.side.conversation().map(|c| c.id.0);
        if messages.iter().any(|m| Some(m.conversation) != open) {
            return false;
        }
        self.side.fold(messages.iter().map(line));
        if let Some(last) = messages.last() {
            self.transcript = Transcript::after(last);
        }
        self.side == run.side
            && self.transcript == run.transcript
            && self.name == run.name
            && self.extra == run.extra
            && self.profile == run.profile
    }
}

/// A transcript row as the side's fold reads it (by its sender, as `Rows` writes it).
fn line(m: &switchboard_store::Message) -> Line {
    let at = Timestamp(m.at_ms);
    match m.sender.as_str() {
        "customer" => Line::Customer(at),
        "agent" => Line::Agent(at),
        "automatic" => Line::Automatic(at),
        _ => Line::Other,
    }
}

/// How many transcript rows an activation reads at a time while it folds them.
const FOLD_PAGE: usize = 256;

impl Drop for ConversationRun {
    fn drop(&mut self) {
        self.mesh.forget_conversation(self.customer, self.id);
        // Stopped (failed, moved, drained) before the router answered: what is stored.
        for held in self.held.drain(..) {
            held.answer_first();
        }
    }
}

/// How long a call's response waits for the router's answer at most (its caller waits 30 s,
/// `actors::CALL_TIMEOUT`): the router's node failing over takes its lease's TTL and more.
const HOLD: std::time::Duration = std::time::Duration::from_secs(10);

/// The response of a call that asked the router (an opening, a request for a human, a message
/// that raised the priority), held until the router's answer is applied
/// ([`ConversationSide::awaits_router`]): on one node the call's response shows where routing
/// put the conversation, and so it does here. Rendered then, it is stored again under the
/// request id in the same batch as that answer, and the caller is answered once it is durable.
/// If the answer does not come within [`HOLD`], or the actor stops first, the caller gets the
/// response its own step stored (the conversation opened, not yet placed).
struct Held {
    id: ConversationId,
    answer: Answer,
    request_id: String,
    /// What the call asked ([`call_digest`]), kept with its response.
    call: [u8; 16],
    /// The step's conversation and whether it opened it.
    outcome: Outcome,
    /// The response as the call's own step rendered and stored it.
    first: Vec<u8>,
    /// The caller, and retries of the same request that came while it was held.
    replies: Vec<RpcReplyPort<Result<Called>>>,
    until: tokio::time::Instant,
}

impl Held {
    fn answer_with(self, body: &[u8]) {
        for reply in self.replies {
            let _ = reply.send(Ok(Called::Answered(body.to_vec())));
        }
    }

    fn answer_first(mut self) {
        let first = std::mem::take(&mut self.first);
        self.answer_with(&first);
    }
}

impl Actor for ConversationActor {
    type Msg = ConversationMsg;
    type State = ConversationRun;
    type Arguments = ConversationArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ConversationMsg>,
        args: ConversationArgs,
    ) -> Result<ConversationRun, ActorProcessingErr> {
        let ConversationArgs { mesh, customer, exit } = args;
        // It runs only where its key's shard is owned, under that shard's fence.
        let fence = mesh.fence_of(ActorKey::Conversation { tenant: mesh.tenant(), customer })?;
        let key = customer.0.to_string();
        // A customer a call here just numbered has nothing stored: no row, no record.
        let new = mesh.take_new_customer(customer, fence);
        let row = match new {
            Some(_) => None,
            None => mesh.load(CONVERSATION, key.clone()).await?,
        };
        let had_row = row.is_some();
        let mut recorded = None;
        let (at, mut side, stored, beside) = match row {
            Some(ActorState { epoch, body: Some(body), .. }) => {
                let (at, side, beside) = decode_with::<ConversationSide>(&body)?;
                (at, side, epoch, beside)
            }
            _ => {
                let (name, record) = match new {
                    Some(name) => (Some(name.as_ref().to_owned()), None),
                    None => stored_customer(&mesh, customer).await?,
                };
                let (customer_record, profile) = match record {
                    Some(r) => {
                        recorded = Some((r.customer.clone(), r.profile.clone()));
                        (r.customer, Some(r.profile))
                    }
                    None => Default::default(),
                };
                let side = ConversationSide::new(customer, customer_record);
                let beside = Beside { customer: name, profile, ..Beside::default() };
                (Timestamp(0), side, 0, beside)
            }
        };
        let known = had_row || recorded.is_some();
        let Beside { transcript, customer: name, extra, profile } = beside;
        let mut transcript = transcript.unwrap_or_default();
        // The message steps that left the row as it was: their transcript rows.
        let mut at = at;
        if let Some(open) = side.conversation().map(|c| c.id.0) {
            let mut after = if transcript.conversation == open { transcript.last } else { 0 };
            loop {
                let (store, tenant) = (mesh.inner().store.clone(), mesh.tenant().to_owned());
                let page = super::blocking(move || store.messages(&tenant, open, after, FOLD_PAGE))
                    .await?;
                side.fold(page.iter().map(line));
                if let Some(last) = page.last() {
                    transcript = Transcript::after(last);
                    at = at.max(Timestamp(last.at_ms));
                    after = last.seq;
                }
                if page.len() < FOLD_PAGE {
                    break;
                }
            }
        }
        let extra = extra.map(|(n, e)| (ConversationId(n), e));
        let profile = profile.unwrap_or_default();
        // Agent actors run: the conversation's own notes go on the holding agent's desk
        // stream, written here.
        if mesh.inner().options.agent_actors {
            side = side.with_desk();
        }
        let epoch = stored + 1;
        side.restart(epoch);
        let every = mesh.inner().options.retransmit;
        let mut run = ConversationRun {
            id: myself.get_id(),
            mesh,
            customer,
            key,
            fence,
            side,
            transcript,
            name,
            extra,
            profile,
            recorded,
            known,
            epoch,
            last_now: clock::now().max(at),
            last_active: tokio::time::Instant::now(),
            timers: Timers::new(every),
            stored: had_row,
            drained: false,
            failed: false,
            exit,
            held: Vec::new(),
            // Nothing was ever stored for an unknown key: every step writes the actor's row,
            // which goes only at passivation, with the customer's record.
            fresh: (!known).then(Default::default),
            wanted: None,
            generation: Generation::default(),
            written: None,
            _counted: Counted::new(CONVERSATION),
        };
        // A restarted side resends everything unacknowledged at once.
        run.send();
        run.arm(&myself);
        Ok(run)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<ConversationMsg>,
        run: &mut ConversationRun,
    ) -> Result<(), ActorProcessingErr> {
        // Something it drained after deciding to stop opened a conversation again or left a
        // deadline or a resend: those need a live actor (the next one starts once this one
        // is gone). A killed actor gets no `post_stop`: its supervisor restarts it.
        if run.drained && !run.failed {
            run.exit.passivated();
        }
        if run.drained && !run.failed && run.needs_live() {
            let (mesh, customer) = (run.mesh.clone(), run.customer);
            tokio::spawn(async move { mesh.conversation_ref(customer).await.map(|_| ()) });
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<ConversationMsg>,
        msg: ConversationMsg,
        run: &mut ConversationRun,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ConversationMsg::Deliver(envelope, _ticket, early) => {
                run.last_active = tokio::time::Instant::now();
                if !run.generation.hear(&run.mesh, early) {
                    // Its sender's batch is refused: its restart resends what is durable.
                    return run.settle(&myself).await;
                }
                let now = run.now();
                let ack = matches!(envelope.body, Body::Ack { .. });
                // Kept for the folded copy of the row, should the step write nothing.
                let acked = ack.then(|| envelope.clone());
                let effects = run.side.receive(run.mesh.config().cfg(), now, envelope);
                let rows = run.rows(now, None, &effects);
                // An acknowledgement changes only what is resent (after a restart the router
                // drops the resent copies as duplicates); one that leaves the actor with
                // nothing to do is followed by its passivation below. (One whose effects
                // write something is written all the same.) The router's answer a held
                // response waited for is written with that response.
                let mut released = Vec::new();
                if !ack || !rows.is_empty() || run.releasing() {
                    let ended = run.side.take_ended();
                    released = run.release(&ended);
                    let responses = released
                        .iter()
                        .filter(|(held, body)| !held.request_id.is_empty() && *body != held.first)
                        .map(|(held, body)| Response {
                            request_id: held.request_id.clone(),
                            at_ms: now.as_millis(),
                            body: stored_body(&held.call, body),
                        })
                        .collect();
                    if let Err(e) = run.write(rows, ended, responses, &NO_STEP, vec![]).await {
                        for (held, _) in released {
                            held.answer_first();
                        }
                        return run.fail(&myself, e);
                    }
                } else if let (Some(w), Some(envelope)) = (run.written.as_deref_mut(), acked) {
                    // Unwritten, as before: the copy the next step's fold starts from hears it
                    // too, so an acknowledgement alone does not make that step write its row.
                    w.side.receive(run.mesh.config().cfg(), now, envelope);
                }
                run.send();
                run.heard(effects);
                for (held, body) in released {
                    held.answer_with(&body);
                }
                if ack {
                    run.acknowledged();
                }
            }
            ConversationMsg::Op(op, reply) => {
                run.last_active = tokio::time::Instant::now();
                let now = run.now();
                // The customer's own message is the transcript's too.
                let said = match &op {
                    ConversationOp::CustomerMessage { msg, .. } => Some(msg.text.clone()),
                    _ => None,
                };
                match run.apply(now, op) {
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                    Ok(outcome) => {
                        let said = said.as_deref().map(|text| (outcome.conversation, text));
                        let rows = run.rows(now, said, &outcome.effects);
                        let ended = run.side.take_ended();
                        if let Err(e) = run.write(rows, ended, vec![], &outcome, vec![]).await {
                            let _ = reply.send(Err(e.clone()));
                            return run.fail(&myself, e);
                        }
                        run.send();
                        run.heard(outcome.effects.clone());
                        let _ = reply.send(Ok(outcome));
                    }
                }
            }
            ConversationMsg::Call(call, reply) => {
                run.last_active = tokio::time::Instant::now();
                // A retry of a call whose response is held: answered with it.
                // Kept and compared only under a request id (a call without one stores nothing).
                let digest =
                    if call.request_id.is_empty() { [0; 16] } else { call_digest(&call.op) };
                if let Some(held) = run
                    .held
                    .iter_mut()
                    .find(|h| !call.request_id.is_empty() && h.request_id == call.request_id)
                {
                    if held.call != digest {
                        let _ = reply.send(Err(Error::reused(&call.request_id)));
                        run.arm(&myself);
                        return Ok(());
                    }
                    crate::metrics::replayed(run.mesh.tenant());
                    held.replies.push(reply);
                    run.arm(&myself);
                    return Ok(());
                }
                // A request id answered before (by any incarnation): the same answer, nothing
                // applied. A failed lookup fails the call (retryable), never applies it. An id
                // this incarnation can vouch was never answered skips the store.
                // `first_sight` notes every id it is asked about (a retry of this call must
                // not pass for a first sight), so it is asked even when the slot vouches.
                let wanted = run.wanted.take().is_some_and(|id| id == call.request_id);
                if !call.request_id.is_empty() && !run.first_sight(&call.request_id) && !wanted {
                    match run.answered(&call.request_id, &digest).await {
                        Err(e) => {
                            let _ = reply.send(Err(e));
                            run.arm(&myself);
                            return Ok(());
                        }
                        Ok(Some(body)) => {
                            crate::metrics::replayed(run.mesh.tenant());
                            let _ = reply.send(Ok(Called::Answered(body)));
                            run.arm(&myself);
                            return Ok(());
                        }
                        Ok(None) => {}
                    }
                }
                let opening = match &call.op {
                    ConversationOp::CustomerMessage { msg, .. } => {
                        msg.new_conversation == NO_NUMBER
                    }
                    ConversationOp::OpenService { new_conversation, .. } => {
                        *new_conversation == NO_NUMBER
                    }
                    _ => false,
                };
                if opening && run.side.conversation().is_none() {
                    // Kept live (no passivation here): the caller comes back with a number
                    // and the same request id, which nothing answered yet.
                    run.unsee(&call.request_id);
                    run.wanted = (!call.request_id.is_empty()).then(|| call.request_id.clone());
                    let _ = reply.send(Ok(Called::NumberWanted));
                    run.arm(&myself);
                    return Ok(());
                }
                if run.name.is_none() {
                    run.name.clone_from(&call.customer);
                }
                let now = run.now();
                if let Some(id) = call.op.after_end()
                    && run.side.conversation().is_none_or(|c| c.id != id)
                {
                    // A rating or an update after the end: applied to the archived copy.
                    match run.on_archived(now, id, &call).await {
                        Err(e) => {
                            let _ = reply.send(Err(e));
                        }
                        Ok(ready) => {
                            let (rows, archived, response, body) = ready;
                            let step = Outcome { conversation: id, opened: false, effects: vec![] };
                            let responses = response.into_iter().collect();
                            if let Err(e) =
                                run.write(rows, vec![], responses, &step, archived).await
                            {
                                let _ = reply.send(Err(e.clone()));
                                return run.fail(&myself, e);
                            }
                            let _ = reply.send(Ok(Called::Answered(body)));
                        }
                    }
                    return run.settle(&myself).await;
                }
                let kind = call.op.kind();
                if let Err(e) = run.check(&call.op) {
                    crate::metrics::refused(run.mesh.tenant(), kind, &e);
                    let _ = reply.send(Err(e));
                    run.arm(&myself);
                    return Ok(());
                }
                let said = match &call.op {
                    ConversationOp::CustomerMessage { msg, .. } => Some(msg.text.clone()),
                    _ => None,
                };
                let whispered = match &call.op {
                    ConversationOp::Whisper { from, text, .. } => Some((*from, text.clone())),
                    _ => None,
                };
                let invitation = matches!(call.op, ConversationOp::InviteRating { .. });
                // Calls whose response on one node shows where routing put the conversation.
                let asks_router = matches!(
                    call.op,
                    ConversationOp::CustomerMessage { .. }
                        | ConversationOp::OpenService { .. }
                        | ConversationOp::RequestHuman(_)
                );
                match run.apply(now, call.op) {
                    Err(e) => {
                        crate::metrics::refused(run.mesh.tenant(), kind, &e);
                        let _ = reply.send(Err(e));
                    }
                    Ok(outcome) => {
                        let ended = run.side.take_ended();
                        let said = said.as_deref().map(|text| (outcome.conversation, text));
                        let mut rows = run.rows(now, said, &outcome.effects);
                        if invitation {
                            rows.rating_invitation();
                        }
                        let id = outcome.conversation;
                        if let Some((from, text)) = whispered {
                            run.whispered(&mut rows, now, id, from, &text);
                        }
                        let conversation = run
                            .side
                            .conversation()
                            .filter(|c| c.id == id)
                            .or_else(|| ended.iter().find(|c| c.id == id));
                        let body = (call.answer)(Answered {
                            conversation,
                            standing: run.side.standing(),
                            outcome: &outcome,
                            last_row: rows.last_message(),
                            extra: run.extra.as_ref().filter(|(n, _)| *n == id).map(|(_, e)| e),
                            customer: run.side.customer(),
                            profile: &run.profile,
                        });
                        let response = (!call.request_id.is_empty()).then(|| Response {
                            request_id: call.request_id.clone(),
                            at_ms: now.as_millis(),
                            body: stored_body(&digest, &body),
                        });
                        let responses = response.into_iter().collect();
                        let written = run.write(rows, ended, responses, &outcome, vec![]).await;
                        if let Err(e) = written {
                            let _ = reply.send(Err(e.clone()));
                            return run.fail(&myself, e);
                        }
                        run.send();
                        let Outcome { conversation, opened, effects } = outcome;
                        run.heard(effects);
                        if asks_router && run.side.awaits_router(conversation) {
                            run.held.push(Held {
                                id: conversation,
                                answer: call.answer,
                                request_id: call.request_id,
                                call: digest,
                                outcome: Outcome { conversation, opened, effects: vec![] },
                                first: body,
                                replies: vec![reply],
                                until: tokio::time::Instant::now() + HOLD,
                            });
                        } else {
                            let _ = reply.send(Ok(Called::Answered(body)));
                        }
                    }
                }
            }
            ConversationMsg::Read(read) => read(&run.side),
            ConversationMsg::ReadTagged(read) => {
                let open = run.side.conversation().map(|c| c.id);
                read(
                    &run.side,
                    run.extra.as_ref().filter(|(n, _)| Some(*n) == open).map(|(_, e)| e),
                );
            }
            ConversationMsg::Wake => {
                run.timers.fired();
                run.mesh.woke();
                let due = tokio::time::Instant::now();
                for held in run.held.extract_if(.., |h| h.until <= due) {
                    held.answer_first();
                }
                if let Err(e) = run.mesh.holds(run.fence) {
                    // Its shard moved (`Mesh::stop_unowned` stops it too, as the move is
                    // seen): the new owner activates it from its row.
                    return run.fail(&myself, e);
                }
                let now = run.now();
                let cfg = run.mesh.config();
                if run.side.next_deadline(cfg.cfg()).is_some_and(|at| at <= now) {
                    let effects = run.side.advance(cfg.cfg(), now);
                    let rows = run.rows(now, None, &effects);
                    if let Err(e) = run.commit(rows).await {
                        return run.fail(&myself, e);
                    }
                    run.send();
                    run.heard(effects);
                }
                if run.timers.resend_due() {
                    let wire = run.side.retransmit();
                    run.timers.resent(!wire.is_empty());
                    let (transport, tenant) = (&run.mesh.inner().transport, run.mesh.tenant());
                    for envelope in wire {
                        transport.to_router(tenant, envelope);
                    }
                }
                if run.idle() && run.side.next_deadline(cfg.cfg()).is_none() {
                    if run.settled() {
                        // Its row is durable; the next message activates it again. Draining:
                        // what is in the mailbox is still handled, later sends go to the next.
                        run.drained = true;
                        let _ = myself.drain();
                        return Ok(());
                    }
                    run.timers.sent();
                }
            }
        }
        run.settle(&myself).await
    }
}

/// The customer's name (bound to its number by the channel services), and its stored
/// record (its settings, last agent and profile) if a previous actor stored one: keyed by the
/// name, as the tenant actor keys its customers, so the reads of customers work alike; by its
/// number for a customer no name was bound to.
async fn stored_customer(
    mesh: &Mesh,
    customer: CustomerId,
) -> Result<(Option<String>, Option<archive::CustomerRecord>)> {
    let (store, tenant) = (mesh.inner().store.clone(), mesh.tenant().to_owned());
    let (name, body) = super::blocking(move || {
        let name = store.customer_name(&tenant, customer.0)?;
        let key = name.clone().unwrap_or_else(|| customer.0.to_string());
        Ok((name, store.customer(&tenant, &key)?))
    })
    .await?;
    let record = body.map(|b| archive::decode_customer(&b)).transpose()?;
    Ok((name, record))
}

impl ConversationRun {
    /// After a message: passivates if its work is over, else arms its wake-up.
    async fn settle(
        &mut self,
        myself: &ActorRef<ConversationMsg>,
    ) -> Result<(), ActorProcessingErr> {
        // A held response whose conversation no longer waits for the router, but that no
        // answer of the router released (the conversation ended meanwhile): as stored.
        let side = &self.side;
        for held in self.held.extract_if(.., |h| !side.awaits_router(h.id)) {
            held.answer_first();
        }
        if self.finished() {
            // Its work is over (again, if something it drained opened a conversation).
            if let Err(e) = self.passivate().await {
                return self.fail(myself, e);
            }
            self.drained = true;
            let _ = myself.drain();
            return Ok(());
        }
        self.arm(myself);
        Ok(())
    }

    /// Time only moves forward within the actor, whatever the wall clock does.
    fn now(&mut self) -> Timestamp {
        self.last_now = self.last_now.max(clock::now());
        self.last_now
    }

    /// Nothing open and nothing unacknowledged on its router link: the actor's work is over.
    fn finished(&self) -> bool {
        self.side.conversation().is_none() && self.settled()
    }

    /// Nothing it sent is unacknowledged.
    fn settled(&self) -> bool {
        self.side.retransmit().is_empty()
    }

    /// A deadline or a resend is due some time: something must run it.
    fn needs_live(&self) -> bool {
        self.side.next_deadline(self.mesh.config().cfg()).is_some() || !self.settled()
    }

    fn apply(&mut self, now: Timestamp, op: ConversationOp) -> Result<Outcome> {
        let config = self.mesh.config();
        let cfg = config.cfg();
        let side = &mut self.side;
        let done =
            |id: ConversationId, effects| Outcome { conversation: id, opened: false, effects };
        let stepped = match op {
            ConversationOp::CustomerMessage { msg, nickname } => {
                side.customer_message_named(cfg, now, msg, &nickname)
            }
            ConversationOp::OpenService { channel, new_conversation } => {
                side.open_service(cfg, now, channel, new_conversation)
            }
            ConversationOp::RequestHuman(id) => {
                side.request_human(cfg, now, id).map(|e| done(id, e)).map_err(|e| ended(e, id))
            }
            ConversationOp::ChannelClosed(id) => {
                side.channel_closed(cfg, now, id).map(|e| done(id, e)).map_err(|e| ended(e, id))
            }
            ConversationOp::AgentMessage { id, agent, text, tag } => side
                .agent_message(cfg, now, id, agent, &text, tag)
                .map(|e| done(id, e))
                .map_err(|e| ended(e, id)),
            ConversationOp::MarkRead { id, agent } => {
                side.mark_read(cfg, now, id, agent).map(|e| done(id, e)).map_err(|e| ended(e, id))
            }
            ConversationOp::End { id, by } => {
                side.end(cfg, now, id, by).map(|e| done(id, e)).map_err(|e| ended(e, id))
            }
            ConversationOp::Whisper { id, from, text } => {
                side.whisper(cfg, id, from, &text).map(|e| done(id, e)).map_err(|e| ended(e, id))
            }
            ConversationOp::EndInBatch(id) => {
                side.end_in_batch(cfg, now, id).map(|e| done(id, e)).map_err(|e| ended(e, id))
            }
            ConversationOp::Rate { id, score, comment } => {
                side.rate(cfg, id, score, &comment).map(|e| done(id, e))
            }
            ConversationOp::BotHosting { id, on, by } => side
                .set_bot_hosting_by(cfg, id, on, by)
                .map(|(_, e)| done(id, e))
                .map_err(|e| ended(e, id)),
            ConversationOp::InviteRating { id, agent } => {
                let text = crate::apply::agent::RATING_INVITATION;
                let sent = side.agent_message(cfg, now, id, agent, text, None);
                sent.map(|e| done(id, e)).map_err(|e| ended(e, id))
            }
            ConversationOp::Update { id, by: _, patch } => {
                // Checked in `check`: the open conversation, in the agent's data scope.
                let extra = match &mut self.extra {
                    Some((n, extra)) if *n == id => extra,
                    slot => &mut slot.insert((id, ConversationExtra::default())).1,
                };
                patch.apply(extra);
                Ok(done(id, Vec::new()))
            }
            ConversationOp::PutCustomer(r) => {
                // PutCustomer's rule (the tenant actor's): merged into the customer as it is,
                // checked; the settings then by the core's side, which refuses an unknown group
                // or agent as the engine does.
                let tenant = self.mesh.tenant();
                // An agent or group deleted since shows empty, so it is dropped here (as the
                // tenant actor releases a deleted agent's customers).
                let names = Current(MeshNames { tenant, config: config.clone() });
                let id = self.name.clone().unwrap_or_else(|| self.key.clone());
                let current = crate::convert::resources::customer_named(
                    &names,
                    tenant,
                    &id,
                    Some(side.customer()),
                    Some(&self.profile),
                );
                let put = crate::apply::admin::customer_put(
                    &r,
                    Some(current),
                    |field, name| config.group_ref(tenant, field, name),
                    |field, name| config.agent_ref(tenant, field, name),
                )?;
                side.put_customer(cfg, put.settings.clone())?;
                put.apply_profile(&mut self.profile);
                Ok(self.customer_step())
            }
            ConversationOp::UpdateProfile { request, .. } => {
                // Checked in `check`: a known customer, in the agent's data scope.
                let mut profile = self.profile.clone();
                crate::apply::agent::profile_update(&request, &mut profile)?;
                self.profile = profile;
                Ok(self.customer_step())
            }
        };
        stepped.map_err(Into::into)
    }

    /// The outcome of a step on the customer (no conversation's).
    fn customer_step(&self) -> Outcome {
        let conversation = self.side.conversation().map_or(ConversationId(0), |c| c.id);
        Outcome { conversation, opened: false, effects: Vec::new() }
    }

    /// What the node checks before a step (the core's rules are the side's): an update of
    /// the open conversation by an agent in its data scope (`scope::conversation`'s rule).
    /// An agent's edit of the customer's profile: a customer it knows (as the tenant actor
    /// refuses one it never saw), in the agent's data scope (`scope::customer`'s rule, with
    /// the open conversation this actor holds).
    fn check(&self, op: &ConversationOp) -> Result<()> {
        match op {
            ConversationOp::Update { id, by, .. } => {
                let Some(c) = self.side.conversation().filter(|c| c.id == *id) else {
                    return Err(switchboard_core::Error::UnknownConversation(*id).into());
                };
                let names = MeshNames { tenant: self.mesh.tenant(), config: self.mesh.config() };
                in_scope(&names, c, *by)
            }
            ConversationOp::UpdateProfile { by, request } => {
                let id = self.customer_id();
                if !self.known {
                    return Err(Error::NotFound(format!("customer {id:?}")));
                }
                let config = self.mesh.config();
                let groups = config.agents.get(by).map(|s| s.groups.as_slice()).unwrap_or_default();
                let supervisor = config.supervisors.contains(by);
                let customer = Some(self.side.customer());
                let open = self.side.conversation();
                if crate::scope::customer_in_scope(supervisor, groups, *by, customer, open) {
                    return Ok(());
                }
                use crate::apply::Names as _;
                let names = MeshNames { tenant: self.mesh.tenant(), config };
                Err(crate::scope::out_of_customer_scope(&request.customer, &names.agent_name(*by)))
            }
            _ => Ok(()),
        }
    }

    /// A rating or an update of an ended conversation: its archive row read, the step applied
    /// to it (the core's rule, `mesh::conversation::rate_ended`), and what to write: the
    /// step's rows, the rewritten archive row, the response; and the encoded answer.
    async fn on_archived(
        &mut self,
        now: Timestamp,
        id: ConversationId,
        call: &Call,
    ) -> Result<(Rows, Vec<Archived>, Option<Response>, Vec<u8>)> {
        let (store, tenant) = (self.mesh.inner().store.clone(), self.mesh.tenant().to_owned());
        let row = super::blocking(move || store.archived(&tenant, id.0)).await?;
        let Some(row) = row.filter(|r| r.customer == self.key) else {
            return Err(switchboard_core::Error::UnknownConversation(id).into());
        };
        let mut archived = archive::decode(&row.body)?;
        let config = self.mesh.config();
        let effects = match &call.op {
            ConversationOp::Rate { score, comment, .. } => {
                let c = &mut archived.conversation;
                switchboard_core::mesh::conversation::rate_ended(config.cfg(), c, *score, comment)?
            }
            ConversationOp::Update { by, patch, .. } => {
                let names = MeshNames { tenant: self.mesh.tenant(), config: config.clone() };
                in_scope(&names, &archived.conversation, *by)?;
                patch.apply(&mut archived.extra);
                Vec::new()
            }
            _ => return Err(Error::Internal("not a call on an ended conversation".into())),
        };
        let rows = self.rows(now, None, &effects);
        let outcome = Outcome { conversation: id, opened: false, effects };
        let body = (call.answer)(Answered {
            conversation: Some(&archived.conversation),
            standing: None,
            outcome: &outcome,
            last_row: None,
            extra: Some(&archived.extra),
            customer: self.side.customer(),
            profile: &self.profile,
        });
        let response = (!call.request_id.is_empty()).then(|| Response {
            request_id: call.request_id.clone(),
            at_ms: now.as_millis(),
            body: stored_body(&call_digest(&call.op), &body),
        });
        let rewritten = Archived { body: archive::encode(&archived), ..row };
        Ok((rows, vec![rewritten], response, body))
    }

    /// A whisper's transcript row (sender `whisper`, the supervisor as its agent), as the
    /// tenant actor writes it.
    fn whispered(
        &mut self,
        rows: &mut Rows,
        now: Timestamp,
        id: ConversationId,
        from: AgentId,
        text: &str,
    ) {
        use crate::apply::Names as _;
        let names = MeshNames { tenant: self.mesh.tenant(), config: self.mesh.config() };
        rows.note_row(&mut self.transcript, now, id, "whisper", &names.agent_name(from), text);
    }

    /// What a step writes besides the row: the customer's message (`said`, in the
    /// conversation it went to) and the effects, as transcript rows and shared-stream entries.
    fn rows(
        &mut self,
        now: Timestamp,
        said: Option<(ConversationId, &str)>,
        effects: &[Effect],
    ) -> Rows {
        let (inner, config) = (self.mesh.inner(), self.mesh.config());
        let names = MeshNames { tenant: &inner.tenant, config: config.clone() };
        let mut rows = Rows::default();
        if let Some((conversation, text)) = said {
            rows.customer_message(&mut self.transcript, now, conversation, text);
        }
        // The estimated wait its queue replies were rendered with, as the router last told it.
        let step =
            Step { now, customer: self.customer, wait: self.side.standing().and_then(|s| s.wait) };
        match &self.name {
            Some(name) => {
                let named = CustomerNamed { names, customer: self.customer, name };
                rows.conversation(&named, &mut self.transcript, step, effects);
            }
            None => rows.conversation(&names, &mut self.transcript, step, effects),
        }
        rows
    }

    /// Makes the side durable: its row, the conversations that ended in this step as archive
    /// rows, and the step's `rows`, in one batch; then those entries go to the node's hub.
    async fn commit(&mut self, rows: Rows) -> Result<()> {
        let ended = self.side.take_ended();
        self.write(rows, ended, vec![], &NO_STEP, vec![]).await
    }

    /// [`commit`](Self::commit) with the conversations that ended in the step taken out
    /// already, public calls' `responses`, and, when the step `opened` a conversation, its
    /// owner (this customer), so a call naming the conversation finds this actor.
    async fn write(
        &mut self,
        mut rows: Rows,
        ended: Vec<Conversation>,
        responses: Vec<Response>,
        step: &Outcome,
        rewritten: Vec<Archived>,
    ) -> Result<()> {
        self.mesh.holds(self.fence)?;
        let (inner, config) = (self.mesh.inner(), self.mesh.config());
        let cfg = config.cfg();
        let archive: Vec<Archived> = ended
            .into_iter()
            .map(|c| {
                // Its tags and note go with it to its archive row.
                let extra = match &self.extra {
                    Some((n, extra)) if *n == c.id => extra.clone(),
                    _ => Default::default(),
                };
                let purge_at = c.purge_at(&cfg.thresholds(&c)).unwrap_or(c.opened_at);
                Archived {
                    conversation: c.id.0,
                    customer: self.key.clone(),
                    opened_at_ms: c.opened_at.as_millis(),
                    ended_at_ms: c.ended_at.unwrap_or(c.opened_at).as_millis(),
                    purge_at_ms: purge_at.as_millis(),
                    body: archive::encode(&archive::Archived {
                        conversation: c,
                        customer: self.key.clone(),
                        extra,
                        purge_at,
                    }),
                }
            })
            .chain(rewritten)
            .collect();
        if self
            .extra
            .as_ref()
            .is_some_and(|(n, _)| self.side.conversation().is_none_or(|c| c.id != *n))
        {
            self.extra = None;
        }
        // The row stays as it was if the step's transcript rows say all it changed. (A step
        // with none writes its row: the row's time, or its last transcript row's, is then
        // never behind a step's, and the next incarnation's clock starts from it.)
        let mut written = self.written.take();
        let unchanged = archive.is_empty()
            && !step.opened
            && !rows.messages().is_empty()
            && written.as_mut().is_some_and(|w| w.folds(rows.messages(), self));
        let row = if unchanged {
            self.written = written;
            self.mesh.inner().counters.conversation_rows_kept.increment(1);
            None
        } else {
            self.written = Some(Box::new(Written {
                side: self.side.clone(),
                transcript: self.transcript,
                name: self.name.clone(),
                extra: self.extra.clone(),
                profile: self.profile.clone(),
            }));
            Some(ActorState {
                kind: CONVERSATION.into(),
                key: self.key.clone(),
                epoch: self.epoch,
                body: Some(encode_with(
                    self.last_now,
                    &self.side,
                    BesideRef {
                        transcript: Some(self.transcript),
                        customer: self.name.as_deref(),
                        extra: self.extra.as_ref().map(|(n, e)| (n.0, e)),
                        profile: Some(&self.profile),
                    },
                )?),
            })
        };
        // The customer changed in this step (or was never written by this incarnation): its
        // `customers` row too, so reads of customers lag nothing.
        let changed = self.unrecorded();
        let customers: Vec<CustomerRecord> = changed.then(|| self.record()).into_iter().collect();
        let owners = step.opened.then_some(ConversationOwner {
            conversation: step.conversation.0,
            customer: self.customer.0,
        });
        let generation = self.generation.next(&self.mesh);
        let mut batch = Batch {
            tenant: inner.tenant.clone(),
            fence: self.fence,
            generation,
            archive,
            actors: row.into_iter().collect(),
            responses,
            owners: owners.into_iter().collect(),
            customers,
            ..Batch::default()
        };
        // Its notes for the holder's desk, in the write of the steps that made them.
        let desk = self.side.take_desk();
        if !desk.is_empty() {
            let names = MeshNames { tenant: &inner.tenant, config: config.clone() };
            let desk = desk.into_iter().map(|(agent, note)| (agent, DeskEvent::Note(note)));
            rows.desk(&names, self.last_now, desk);
        }
        let published = rows.into_batch(&mut batch);
        let pending = inner.store.append_assigned(batch);
        inner.counters.conversation_writes.increment(1);
        // Queued: its messages to actors here may go now (`Generation`).
        let later = generation.map(|g| self.send_with(Some(g)));
        let positions = pending.await?;
        later.unwrap_or_default().send(&self.mesh);
        self.stored = true;
        self.known = true;
        if changed {
            self.recorded = Some((self.side.customer().clone(), self.profile.clone()));
        }
        published.publish(&self.mesh, positions);
        Ok(())
    }

    /// Whether `request_id` certainly has no stored response, so its lookup can be skipped:
    /// this incarnation activated on a key nothing was ever stored for (no row, no customer
    /// record) and has not taken a call with this id before. Notes the id; past
    /// [`FRESH_IDS`] ids it stops vouching (every later call asks the store). Responses are
    /// stored per tenant, but a retry names the same customer, so it reaches this key. A
    /// call under an id another customer's call used is therefore applied here (knowing
    /// would cost every call of a new customer a lookup); the store keeps the first call's
    /// answer (`Response::replaces`), so that call's retry is still answered with it, and
    /// this one's retry is refused as the reuse it is.
    fn first_sight(&mut self, request_id: &str) -> bool {
        let Some(seen) = &mut self.fresh else { return false };
        if seen.len() >= FRESH_IDS {
            self.fresh = None;
            return false;
        }
        seen.insert(request_id.to_owned())
    }

    /// Forgets that this incarnation took a call with `request_id`: the call stored nothing,
    /// so a later one with that id (the caller coming back with a number) skips the lookup.
    fn unsee(&mut self, request_id: &str) {
        if let Some(seen) = &mut self.fresh {
            seen.remove(request_id);
        }
    }

    /// The stored response to `request_id`, if a step answered it before (read off the
    /// runtime; an error is `Unavailable`: the caller retries); refused if the call that got
    /// it asked something else than `call` ([`call_digest`]).
    async fn answered(&self, request_id: &str, call: &[u8; 16]) -> Result<Option<Vec<u8>>> {
        let Some(body) = self.mesh.stored_response(request_id).await? else { return Ok(None) };
        match body.split_first() {
            Some((&KEPT_CALL, rest)) if rest.len() >= call.len() => {
                let (asked, answer) = rest.split_at(call.len());
                if asked != call {
                    return Err(Error::reused(request_id));
                }
                Ok(Some(answer.to_vec()))
            }
            // Stored before answers kept their call: answered as before.
            _ => Ok(Some(body)),
        }
    }

    /// The work is over: the row goes, with the customer's record if it lags what the steps
    /// wrote, in one batch.
    async fn passivate(&mut self) -> Result<()> {
        if !self.stored {
            // Activated by a late envelope or a read, and nothing changed: nothing to store.
            return Ok(());
        }
        self.mesh.holds(self.fence)?;
        let inner = self.mesh.inner();
        // The steps wrote the customer's row as it changed: again only if it lags.
        let changed = self.unrecorded();
        let batch = Batch {
            tenant: inner.tenant.clone(),
            fence: self.fence,
            generation: self.generation.next(&self.mesh),
            customers: changed.then(|| self.record()).into_iter().collect(),
            actors: vec![ActorState {
                kind: CONVERSATION.into(),
                key: self.key.clone(),
                epoch: self.epoch,
                body: None,
            }],
            ..Batch::default()
        };
        inner.counters.conversation_writes.increment(1);
        inner.store.append(batch).await?;
        self.stored = false;
        if changed {
            self.recorded = Some((self.side.customer().clone(), self.profile.clone()));
        }
        Ok(())
    }

    /// The customer's `customers` row: the tenant actor's encoding (`archive::CustomerRecord`,
    /// contact data in the indexed columns), keyed by its name (by its number if no name was
    /// bound to it), so GetCustomer, ListCustomers and the searches read it as they read the
    /// tenant actor's.
    fn record(&self) -> CustomerRecord {
        archive::customer_row(&archive::CustomerRecord {
            id: self.customer_id(),
            num: self.customer.0,
            customer: self.side.customer().clone(),
            profile: self.profile.clone(),
        })
    }

    /// The customer's id: the name bound to its number, else the number.
    fn customer_id(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.key.clone())
    }

    /// Whether the customer or its profile differ from what its `customers` row holds.
    fn unrecorded(&self) -> bool {
        let now = (self.side.customer(), &self.profile);
        self.recorded.as_ref().is_none_or(|(c, p)| (c, p) != now)
    }

    /// Puts what is durable on the network, to the router; a message among them is resent
    /// until acknowledged.
    fn send(&mut self) {
        self.send_with(None).send(&self.mesh);
    }

    /// [`send`](Self::send), or, with the step's batch queued under `early` and not yet
    /// durable, what may go now ([`Outbox`]); the rest is handed back.
    fn send_with(&mut self, early: Option<u64>) -> Later {
        let mut outbox = Outbox::new(&self.mesh, early);
        let mut unacked = false;
        for envelope in self.side.outgoing() {
            unacked |= super::awaits_ack(&envelope.body);
            outbox.put(Wire::ToRouter(envelope));
        }
        if unacked {
            self.timers.sent();
        }
        outbox.later()
    }

    /// An acknowledgement came: once nothing is unacknowledged, no resend is due.
    fn acknowledged(&mut self) {
        if self.timers.resending() && self.settled() {
            self.timers.acknowledged();
        }
    }

    /// Its idle time passed since the last message or operation.
    fn idle(&self) -> bool {
        self.last_active.elapsed() >= self.mesh.inner().options.idle
    }

    fn fail(
        &mut self,
        myself: &ActorRef<ConversationMsg>,
        e: Error,
    ) -> Result<(), ActorProcessingErr> {
        warn!(tenant = %self.mesh.tenant(), error = %e, "conversation actor cannot write here (failed, fenced or moved); stopping");
        self.failed = true;
        myself.stop(Some("write failed".into()));
        Ok(())
    }

    /// Arms its one wake-up: the side's next deadline, the next resend, or (with neither)
    /// the end of its idle time.
    fn arm(&mut self, myself: &ActorRef<ConversationMsg>) {
        let (next, now) = (self.side.next_deadline(self.mesh.config().cfg()), self.now());
        let idle_at = self.last_active + self.mesh.inner().options.idle;
        // A held response is answered at its `until` at the latest.
        let wake_at = self.held.iter().map(|h| h.until).fold(idle_at, std::cmp::min);
        self.timers.arm(myself, next, now, Some(wake_at), || ConversationMsg::Wake);
    }

    /// Lets a step's effects be heard (after its write), counted against the open
    /// conversation's channel.
    fn heard(&self, effects: Vec<Effect>) {
        let channel = self.side.conversation().map(|c| c.channel);
        self.mesh.heard_on(Some(self.customer), channel, effects);
    }

    /// Whether a held response's conversation no longer waits for the router.
    fn releasing(&self) -> bool {
        self.held.iter().any(|h| !self.side.awaits_router(h.id))
    }

    /// Takes the held responses whose router answer was applied in this step, each rendered
    /// as the conversation stands now (`ended`: those that ended in the step).
    fn release(&mut self, ended: &[Conversation]) -> Vec<(Held, Vec<u8>)> {
        let side = &self.side;
        let ready: Vec<Held> = self.held.extract_if(.., |h| !side.awaits_router(h.id)).collect();
        ready
            .into_iter()
            .map(|held| {
                let conversation = self
                    .side
                    .conversation()
                    .filter(|c| c.id == held.id)
                    .or_else(|| ended.iter().find(|c| c.id == held.id));
                let body = match conversation {
                    Some(conversation) => (held.answer)(Answered {
                        conversation: Some(conversation),
                        standing: self.side.standing(),
                        outcome: &held.outcome,
                        last_row: None,
                        extra: self.extra.as_ref().filter(|(n, _)| *n == held.id).map(|(_, e)| e),
                        customer: self.side.customer(),
                        profile: &self.profile,
                    }),
                    None => held.first.clone(),
                };
                (held, body)
            })
            .collect()
    }
}

/// The typed way to a customer's conversation actor: activates it if needed.
#[derive(Debug, Clone)]
pub struct ConversationHandle {
    mesh: Mesh,
    customer: CustomerId,
}

impl ConversationHandle {
    pub(crate) fn new(mesh: Mesh, customer: CustomerId) -> Self {
        ConversationHandle { mesh, customer }
    }

    /// A customer message: opens a conversation (`msg.new_conversation`) when none is open.
    pub async fn customer_message(&self, msg: CustomerMessage) -> Result<Outcome> {
        self.call(ConversationOp::CustomerMessage { msg, nickname: String::new() }).await
    }

    pub async fn open_service(
        &self,
        channel: Channel,
        new_conversation: ConversationId,
    ) -> Result<Outcome> {
        self.call(ConversationOp::OpenService { channel, new_conversation }).await
    }

    pub async fn request_human(&self, id: ConversationId) -> Result<Vec<Effect>> {
        Ok(self.call(ConversationOp::RequestHuman(id)).await?.effects)
    }

    pub async fn channel_closed(&self, id: ConversationId) -> Result<Vec<Effect>> {
        Ok(self.call(ConversationOp::ChannelClosed(id)).await?.effects)
    }

    pub async fn agent_message(
        &self,
        id: ConversationId,
        agent: AgentId,
        text: &str,
        tag: Option<MessageTag>,
    ) -> Result<Vec<Effect>> {
        let op = ConversationOp::AgentMessage { id, agent, text: text.to_owned(), tag };
        Ok(self.call(op).await?.effects)
    }

    pub async fn mark_read(&self, id: ConversationId, agent: AgentId) -> Result<Vec<Effect>> {
        Ok(self.call(ConversationOp::MarkRead { id, agent }).await?.effects)
    }

    pub async fn end(
        &self,
        id: ConversationId,
        by: switchboard_core::Actor,
    ) -> Result<Vec<Effect>> {
        Ok(self.call(ConversationOp::End { id, by }).await?.effects)
    }

    /// A public call: its encoded response once durable, or the stored one if its request id
    /// was answered before (see [`Call`]).
    pub async fn call_public(&self, call: Call) -> Result<Called> {
        let op = |reply| ConversationMsg::Call(call.clone(), reply);
        super::call(|| self.mesh.conversation_ref(self.customer), op).await
    }

    /// Reads the side's current state with the open conversation's tags and note.
    pub async fn read_tagged<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ConversationSide, Option<&ConversationExtra>) -> T + Send + 'static,
    ) -> Result<T> {
        let read = super::Taken::new(read);
        let build = |reply: RpcReplyPort<T>| {
            let read = read.clone();
            let read: ReadTagged =
                Box::new(move |side, extra| read.answer(reply, |read| read(side, extra)));
            ConversationMsg::ReadTagged(read)
        };
        super::read_retrying(|| self.mesh.conversation_ref(self.customer), build).await
    }

    /// Reads the side's current state (activating the actor if needed).
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&ConversationSide) -> T + Send + 'static,
    ) -> Result<T> {
        super::read(|| self.mesh.conversation_ref(self.customer), ConversationMsg::Read, read).await
    }

    async fn call(&self, op: ConversationOp) -> Result<Outcome> {
        let op = |reply| ConversationMsg::Op(op.clone(), reply);
        super::call(|| self.mesh.conversation_ref(self.customer), op).await
    }
}
