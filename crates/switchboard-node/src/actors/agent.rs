//! The agent actor: one per tenant and agent, a thin shell around the core's [`AgentSide`]
//! (the agent's status as set, what it holds as the router told it, the router's answers to
//! its commands). The agent's commands (status, accept, decline, pick) come through its
//! [`AgentHandle`] and go to the router actor on the agent's link; the router's decisions
//! about the agent come back as envelopes.
//!
//! **It does not write the desk stream.** The agent's desk stream (`state::agent_stream`, a
//! shared stream) is written by the actors that make its entries, each in its own batch: the
//! router actor its decisions about the agent, a conversation actor its notes for the agent
//! holding it (`actors::effects`, `switchboard_core::mesh::desk`). So a customer's message
//! reaches the desk with its conversation's one commit, and an assignment with the router's.
//!
//! Each step: the side changes state; the actor writes the side as its row (with the answers
//! it keeps by request id) and awaits durability; then hands `outgoing()` to the transport
//! and answers the caller. Steps are batched as the router actor's are: a step schedules a
//! `Flush` behind whatever is already in the mailbox, so every message that queued up
//! meanwhile is applied before one write makes them all durable. Until that flush nothing of
//! them is heard: no envelope, no acknowledgement, no answer, no read, no resend.
//!
//! **What a command's caller learns.** A command is answered with its number on the link
//! once it is durably queued to the router (the side's row holds it; it is resent until the
//! router acknowledges it). The router's decision comes later, on the link, as a message of
//! its own: the router answers every command it decides, `ToAgent::Done` after the
//! decision's notes or `ToAgent::Refused`, in the step that decides it, in command order.
//! The side applies those messages in order, once (the link's exactly-once delivery), and
//! keeps in its row the newest command answered and the newest 64 refusals' reasons.
//! [`AgentHandle::decision`] waits until the command is answered and written here:
//! [`Decision::Applied`] or [`Decision::Refused`] with the router's reason, whatever order
//! the network delivered the router's acknowledgement and answer in (the acknowledgement
//! says only that the router took the command). By then the decision's notes (an
//! `Assigned`, a `Released`, a status the router changed) are on the desk stream: the
//! router wrote them in the batch that decided, before its answer was heard. A
//! number not issued yet is INVALID_ARGUMENT; one whose refusal is too old to be
//! remembered is FAILED_PRECONDITION (the desk stream has it). Waiters are volatile: a
//! stopped actor drops them, and [`AgentHandle::decision`] asks the next incarnation, which
//! answers from its row (`Unavailable` if three in a row stop).
//!
//! **Activation** on the first message (a handle call or a router envelope): from its row
//! (`ActorState` kind [`AGENT`], key = the agent's number), incarnation = stored epoch + 1,
//! resending what is unacknowledged at once. Without a row it starts from the agent's status
//! in the router the mesh was created with ([`super::MeshArgs::router`], the store's view of
//! the tenant when the mesh loaded), offline if the agent is unknown there; the router
//! actor's own status, if it differs, reaches the desk with the next decision about the
//! agent, and the agent's next status command supersedes both.
//!
//! **Passivation**: idle for [`super::MeshOptions::idle`] with nothing unacknowledged, it
//! drains and keeps its row (an agent's link is never forgotten).

use std::collections::BTreeMap;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use switchboard_core::mesh::{AgentEnvelope, AgentSide, Body, ToAgent};
use switchboard_core::router::StatusCause;
use switchboard_core::{AgentId, AgentStatus, ConversationId, Timestamp};
use switchboard_store::{ActorState, Batch, Fence, Response};
use tracing::warn;

use super::placement::ActorKey;
use super::transport::Wire;
use super::{AGENT, Counted, Exit, Generation, Later, Mesh, Outbox, Timers, decode, encode};
use crate::clock;
use crate::error::{Error, Result};

/// An agent command, as [`AgentHandle`] builds it.
#[derive(Debug, Clone)]
pub enum AgentOp {
    SetStatus {
        status: AgentStatus,
        cause: StatusCause,
    },
    Accept(ConversationId),
    Decline(ConversationId),
    Pick(ConversationId),
    /// Ends the wrap-up of an ended conversation, or every one it may end early.
    EndWrapUp(Option<ConversationId>),
}

impl AgentOp {
    /// The command's kind, as its answer is kept by request id ([`answer_body`]).
    pub fn kind(&self) -> &'static str {
        match self {
            AgentOp::SetStatus { .. } => "status",
            AgentOp::Accept(_) => "accept",
            AgentOp::Decline(_) => "decline",
            AgentOp::Pick(_) => "pick",
            AgentOp::EndWrapUp(_) => "end_wrap_up",
        }
    }
}

/// The router's decision on one command (see the module's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The router applied the command.
    Applied,
    /// The router refused it, for this reason; `kind`, its code and machine reason (none
    /// from a router of a node before them).
    Refused { reason: String, kind: Option<switchboard_core::error::Kind> },
}

#[allow(missing_debug_implementations)] // carries closures and reply ports
pub enum AgentMsg {
    /// An envelope from the router actor (counted against the receiving node's bound when it
    /// came from another node), with the generation it was sent early under, if it was
    /// ([`super::Generation`]).
    Deliver(AgentEnvelope<ToAgent>, Option<super::Ticket>, Option<u64>),
    /// A command, with the caller's request id if any; answered with its number once
    /// durably queued (a request id this incarnation already queued: that command's number).
    Op(AgentOp, Option<String>, RpcReplyPort<Result<u64>>),
    /// Wait for the router's decision on a command number.
    Decision(u64, RpcReplyPort<Result<Decision>>),
    /// A read of the side's current state.
    Read(super::ReadSide<AgentSide>),
    /// Its one timer fired: a resend or the end of its idle time may be due.
    Wake,
    /// Make the steps applied since the last write durable, then let them be heard.
    Flush,
}

#[derive(Debug)]
pub struct AgentArgs {
    pub mesh: Mesh,
    pub agent: AgentId,
    /// Told when it passivates, for its supervisor.
    pub(crate) exit: Arc<Exit>,
}

#[derive(Debug)]
pub struct AgentActor;

#[allow(missing_debug_implementations)] // reply ports; see `Read`
pub struct AgentRun {
    mesh: Mesh,
    agent: AgentId,
    key: String,
    /// Its key's shard and epoch on this node when it activated: every write carries it.
    fence: Fence,
    side: AgentSide,
    epoch: u64,
    last_now: Timestamp,
    last_active: tokio::time::Instant,
    timers: Timers,
    /// Callers waiting for a command's decision (volatile).
    waiting: BTreeMap<u64, Vec<RpcReplyPort<Result<Decision>>>>,
    /// The newest [`KEEP_ANSWERS`] request ids this incarnation queued a command for, and
    /// its number (volatile; the store keeps them all, `Batch::responses`).
    answered: super::Newest<u64>,
    /// It drained itself (passivation): work that came in meanwhile needs a successor.
    drained: bool,
    /// A write failed: it stops, and its supervisor activates it again after a backoff.
    failed: bool,
    /// Steps applied and not yet durable (a `Flush` is in the mailbox while this is `Some`).
    batch: Option<Unflushed>,
    /// What it heard early: its next batch's generation.
    generation: Generation,
    exit: Arc<Exit>,
    _counted: Counted,
    id: ractor::ActorId,
}

/// Where a command's caller hears its number.
type OpReply = RpcReplyPort<Result<u64>>;

/// What waits for the next write: the answers the steps keep by request id, the callers to
/// answer and the reads to run.
#[derive(Default)]
struct Unflushed {
    responses: Vec<Response>,
    replies: Vec<(OpReply, u64)>,
    reads: Vec<super::ReadSide<AgentSide>>,
}

impl Drop for AgentRun {
    fn drop(&mut self) {
        self.mesh.forget_agent(self.agent, self.id);
    }
}

impl Actor for AgentActor {
    type Msg = AgentMsg;
    type State = AgentRun;
    type Arguments = AgentArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AgentMsg>,
        args: AgentArgs,
    ) -> Result<AgentRun, ActorProcessingErr> {
        let AgentArgs { mesh, agent, exit } = args;
        // It runs only where its key's shard is owned, under that shard's fence.
        let fence = mesh.fence_of(ActorKey::Agent { tenant: mesh.tenant(), agent })?;
        let key = agent.0.to_string();
        let (at, mut side, stored) = match mesh.load(AGENT, key.clone()).await? {
            Some(ActorState { epoch, body: Some(body), .. }) => {
                let (at, side) = decode::<AgentSide>(&body)?;
                (at, side, epoch)
            }
            _ => {
                let router = &mesh.inner().router;
                let status = router.agent(agent).map_or(AgentStatus::Offline, |a| a.status);
                (Timestamp(0), AgentSide::new(agent, status), 0)
            }
        };
        let epoch = stored + 1;
        side.restart(epoch);
        let every = mesh.inner().options.retransmit;
        let mut run = AgentRun {
            id: myself.get_id(),
            mesh,
            agent,
            key,
            fence,
            side,
            epoch,
            last_now: clock::now().max(at),
            last_active: tokio::time::Instant::now(),
            timers: Timers::new(every),
            waiting: BTreeMap::new(),
            answered: super::Newest::new(KEEP_ANSWERS),
            drained: false,
            failed: false,
            batch: None,
            generation: Generation::default(),
            exit,
            _counted: Counted::new(AGENT),
        };
        // A restarted side resends everything unacknowledged at once.
        run.send();
        run.arm(&myself);
        Ok(run)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AgentMsg>,
        run: &mut AgentRun,
    ) -> Result<(), ActorProcessingErr> {
        // Something it drained after deciding to stop left a resend due: the next
        // incarnation runs it (it starts once this one is gone).
        if run.drained && !run.failed {
            run.exit.passivated();
            if !run.side.settled() {
                let (mesh, agent) = (run.mesh.clone(), run.agent);
                tokio::spawn(async move { mesh.agent_ref(agent).await.map(|_| ()) });
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        run: &mut AgentRun,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentMsg::Deliver(envelope, _ticket, early) => {
                run.last_active = tokio::time::Instant::now();
                if !run.generation.hear(&run.mesh, early) {
                    // Its sender's batch is refused: its restart resends what is durable.
                    return Ok(());
                }
                let acked = match envelope.body {
                    Body::Ack { next } => Some(next),
                    Body::Message { .. } => None,
                };
                run.side.receive(envelope);
                // An acknowledgement changes only what is resent: no write (after a restart
                // the router drops the resent copies as duplicates and acknowledges again).
                if acked.is_none() {
                    return run.step(&myself, Vec::new(), None).await;
                }
                if run.batch.is_none() {
                    run.send();
                    if run.side.settled() {
                        // Nothing it sent is unacknowledged: no resend is due.
                        run.timers.acknowledged();
                    }
                }
            }
            AgentMsg::Op(op, request_id, reply) => {
                run.last_active = tokio::time::Instant::now();
                // A retry racing its original (both missed the store's lookup): one command,
                // answered once it is durable.
                if let Some(command) = request_id.as_ref().and_then(|r| run.answered.get(r)) {
                    crate::metrics::replayed(run.mesh.tenant());
                    match &mut run.batch {
                        Some(batch) => batch.replies.push((reply, *command)),
                        None => {
                            let _ = reply.send(Ok(*command));
                        }
                    }
                    run.arm(&myself);
                    return Ok(());
                }
                let kind = op.kind();
                let side = &mut run.side;
                let command = match op {
                    AgentOp::SetStatus { status, cause } => side.set_status(status, cause),
                    AgentOp::Accept(c) => side.accept(c),
                    AgentOp::Decline(c) => side.decline(c),
                    AgentOp::Pick(c) => side.pick(c),
                    AgentOp::EndWrapUp(c) => side.end_wrap_up(c),
                };
                let at_ms = run.now().as_millis();
                let mut responses = Vec::new();
                if let Some(r) = request_id {
                    let body = answer_body(run.agent, kind, command);
                    responses.push(Response { request_id: r.clone(), at_ms, body });
                    run.answered.insert(r, command);
                }
                return run.step(&myself, responses, Some((reply, command))).await;
            }
            AgentMsg::Decision(command, waiter) => run.wait(command, waiter),
            AgentMsg::Read(read) => match &mut run.batch {
                // A read sees only durable state.
                Some(batch) => batch.reads.push(read),
                None => read(&run.side),
            },
            AgentMsg::Flush => return run.flush(&myself).await,
            AgentMsg::Wake => {
                run.timers.fired();
                run.mesh.woke();
                if let Err(e) = run.mesh.holds(run.fence) {
                    // Its shard moved (`Mesh::stop_unowned` stops it too, as the move is
                    // seen): the new owner activates it from its row.
                    return run.fail(&myself, e);
                }
                if run.timers.resend_due() {
                    if run.batch.is_some() {
                        // Undurable commands are in the outbox: the flush sends them; resend
                        // one period later.
                        run.timers.resent(true);
                    } else {
                        let wire = run.side.retransmit();
                        run.timers.resent(!wire.is_empty());
                        let (transport, tenant) = (&run.mesh.inner().transport, run.mesh.tenant());
                        for envelope in wire {
                            transport.to_router_from_agent(tenant, envelope);
                        }
                    }
                }
                let idle = run.last_active.elapsed() >= run.mesh.inner().options.idle;
                if idle && run.waiting.is_empty() && run.batch.is_none() {
                    if run.side.settled() {
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
        run.arm(&myself);
        Ok(())
    }
}

impl AgentRun {
    /// Time only moves forward within the actor, whatever the wall clock does.
    fn now(&mut self) -> Timestamp {
        self.last_now = self.last_now.max(clock::now());
        self.last_now
    }

    /// One applied step: it (and the caller, with its command's number) joins the batch the
    /// next `Flush` makes durable, scheduling that flush behind what is already in the
    /// mailbox. A drained actor cannot send itself the flush, so it writes at once.
    async fn step(
        &mut self,
        myself: &ActorRef<AgentMsg>,
        responses: Vec<Response>,
        reply: Option<(OpReply, u64)>,
    ) -> Result<(), ActorProcessingErr> {
        let scheduled = self.batch.is_some();
        let batch = self.batch.get_or_insert_default();
        batch.responses.extend(responses);
        batch.replies.extend(reply);
        if scheduled || myself.send_message(AgentMsg::Flush).is_ok() {
            return Ok(());
        }
        self.flush(myself).await
    }

    /// Writes the batch's steps (the side as its row, the kept answers) in one batch, then
    /// lets them be heard: envelopes and acknowledgements, answers, decisions, reads.
    async fn flush(&mut self, myself: &ActorRef<AgentMsg>) -> Result<(), ActorProcessingErr> {
        let Some(batch) = self.batch.take() else { return Ok(()) };
        if let Err(e) = self.write(batch.responses).await {
            for (reply, _) in batch.replies {
                let _ = reply.send(Err(e.clone()));
            }
            return self.fail(myself, e);
        }
        self.send();
        if self.side.settled() {
            // An acknowledgement taken while the batch was open may have settled the links.
            self.timers.acknowledged();
        }
        self.answer();
        for (reply, command) in batch.replies {
            let _ = reply.send(Ok(command));
        }
        for read in batch.reads {
            read(&self.side);
        }
        self.arm(myself);
        Ok(())
    }

    /// Makes the side durable: its row, with the batch's kept answers.
    async fn write(&mut self, responses: Vec<Response>) -> Result<()> {
        self.mesh.holds(self.fence)?;
        let now = self.now();
        let row = ActorState {
            kind: AGENT.into(),
            key: self.key.clone(),
            epoch: self.epoch,
            body: Some(encode(now, &self.side)?),
        };
        let generation = self.generation.next(&self.mesh);
        let batch = Batch {
            tenant: self.mesh.tenant().to_owned(),
            fence: self.fence,
            generation,
            actors: vec![row],
            responses,
            ..Batch::default()
        };
        let pending = self.mesh.inner().store.append(batch);
        self.mesh.inner().counters.agent_writes.increment(1);
        // Queued: its messages to actors here may go now (`Generation`).
        let later = generation.map(|g| self.send_with(Some(g)));
        pending.await?;
        later.unwrap_or_default().send(&self.mesh);
        Ok(())
    }

    /// Puts what is durable on the network: to the router.
    fn send(&mut self) {
        self.send_with(None).send(&self.mesh);
    }

    /// [`send`](Self::send), or, with the step's batch queued under `early` and not yet
    /// durable, what may go now ([`Outbox`]); the rest is handed back.
    fn send_with(&mut self, early: Option<u64>) -> Later {
        let mut outbox = Outbox::new(&self.mesh, early);
        for envelope in self.side.outgoing() {
            if super::awaits_ack(&envelope.body) {
                self.timers.sent();
            }
            outbox.put(Wire::FromAgent(envelope));
        }
        outbox.later()
    }

    /// Arms its one wake-up: the next resend, or (with none due, and no caller waiting for
    /// a decision) the end of its idle time. An agent side has no deadlines.
    fn arm(&mut self, myself: &ActorRef<AgentMsg>) {
        let now = self.now();
        let idle_at = self.last_active + self.mesh.inner().options.idle;
        let idle_at = self.waiting.is_empty().then_some(idle_at);
        self.timers.arm(myself, None, now, idle_at, || AgentMsg::Wake);
    }

    /// The callers waiting for commands the router has answered (durably, here).
    fn answer(&mut self) {
        let decided = self.side.decided();
        let later = self.waiting.split_off(&(decided + 1));
        for (command, waiters) in std::mem::replace(&mut self.waiting, later) {
            for waiter in waiters {
                let _ = waiter.send(self.decision(command));
            }
        }
    }

    /// The decision on `command`, if the router has answered it.
    fn decision(&self, command: u64) -> Result<Decision> {
        match self.side.decision(command) {
            Some(None) => Ok(Decision::Applied),
            Some(Some(reason)) => Ok(Decision::Refused {
                reason: reason.to_owned(),
                kind: self.side.refusal_kind(command).cloned(),
            }),
            None if command == 0 || command > self.side.commands() => Err(Error::Field {
                field: "command".into(),
                message: format!(
                    "{command} was not issued by agent {}: its commands are numbered 1 to {}",
                    self.agent.0,
                    self.side.commands()
                ),
            }),
            None => Err(Error::FailedPrecondition(format!(
                "command {command} of agent {} was decided too long ago to tell here; its desk stream keeps any refusal",
                self.agent.0
            ))),
        }
    }

    fn wait(&mut self, command: u64, waiter: RpcReplyPort<Result<Decision>>) {
        let issued = command > 0 && command <= self.side.commands();
        // With a batch open the side may hold a decision not durable yet: the flush answers.
        let pending = issued && (command > self.side.decided() || self.batch.is_some());
        if pending {
            self.waiting.entry(command).or_default().push(waiter);
        } else {
            let _ = waiter.send(self.decision(command));
        }
    }

    /// A write failed: the memory is ahead of the store, so the actor stops; its supervisor
    /// activates it from its row after a backoff (a message may do so sooner).
    fn fail(&mut self, myself: &ActorRef<AgentMsg>, e: Error) -> Result<(), ActorProcessingErr> {
        warn!(tenant = %self.mesh.tenant(), error = %e, "agent actor cannot write here (failed, fenced or moved); stopping");
        self.failed = true;
        myself.stop(Some("write failed".into()));
        Ok(())
    }
}

/// How many request ids an agent actor remembers in memory (beside the store's).
const KEEP_ANSWERS: usize = 1024;

/// How an agent actor's answer to a request is kept by request id (`Batch::responses`): the
/// agent, the command's kind ([`AgentOp::kind`]) and the number it got, so a retry waits
/// for that command's decision instead of queuing a second one.
pub fn answer_body(agent: AgentId, kind: &str, command: u64) -> Vec<u8> {
    format!("agent/{}/{kind}/{command}", agent.0).into_bytes()
}

/// The agent, kind and command of an [`answer_body`]; `None` for any other call's response.
pub fn parse_answer(body: &[u8]) -> Option<(AgentId, &str, u64)> {
    let text = std::str::from_utf8(body).ok()?;
    let (agent, rest) = text.strip_prefix("agent/")?.split_once('/')?;
    let (kind, command) = rest.split_once('/')?;
    Some((AgentId(agent.parse().ok()?), kind, command.parse().ok()?))
}

/// The typed way to an agent's actor: activates it if needed.
#[derive(Debug, Clone)]
pub struct AgentHandle {
    mesh: Mesh,
    agent: AgentId,
}

impl AgentHandle {
    pub(crate) fn new(mesh: Mesh, agent: AgentId) -> Self {
        AgentHandle { mesh, agent }
    }

    /// Sets the agent's status (the desk shows it at once) and sends it to the router.
    /// Returns the command's number once it is durably queued; [`AgentHandle::decision`]
    /// tells whether the router refused it.
    pub async fn set_status(&self, status: AgentStatus, cause: StatusCause) -> Result<u64> {
        self.call(AgentOp::SetStatus { status, cause }).await
    }

    /// Accepts an offer (the router decides); the command's number once durably queued.
    pub async fn accept(&self, conversation: ConversationId) -> Result<u64> {
        self.call(AgentOp::Accept(conversation)).await
    }

    /// Declines an offer (the router decides); the command's number once durably queued.
    pub async fn decline(&self, conversation: ConversationId) -> Result<u64> {
        self.call(AgentOp::Decline(conversation)).await
    }

    /// Picks from the unaccepted list (the router decides); the command's number once
    /// durably queued.
    pub async fn pick(&self, conversation: ConversationId) -> Result<u64> {
        self.call(AgentOp::Pick(conversation)).await
    }

    /// Ends the agent's wrap-up of an ended conversation, or every one it may end early
    /// (`None`; the router decides); the command's number once durably queued.
    pub async fn end_wrap_up(&self, conversation: Option<ConversationId>) -> Result<u64> {
        self.call(AgentOp::EndWrapUp(conversation)).await
    }

    /// Waits for the router's decision on `command` (a number a command above returned), as
    /// the module's documentation says. `Unavailable` if the actor keeps stopping;
    /// INVALID_ARGUMENT for a number not issued, FAILED_PRECONDITION for one decided too
    /// long ago to tell.
    pub async fn decision(&self, command: u64) -> Result<Decision> {
        // Waiting changes nothing: one the actor dropped (it stopped) asks the next
        // incarnation, which answers from its row.
        let wait = |reply| AgentMsg::Decision(command, reply);
        super::read_retrying(|| self.mesh.agent_ref(self.agent), wait).await?
    }

    /// Reads the side's current state (activating the actor if needed).
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&AgentSide) -> T + Send + 'static,
    ) -> Result<T> {
        super::read(|| self.mesh.agent_ref(self.agent), AgentMsg::Read, read).await
    }

    /// Any command, with the caller's request id: a request id this incarnation already
    /// queued a command for answers that command's number (the service looks older ones up
    /// in the store first).
    pub async fn command(&self, op: AgentOp, request_id: Option<String>) -> Result<u64> {
        let op = |reply| AgentMsg::Op(op.clone(), request_id.clone(), reply);
        super::call(|| self.mesh.agent_ref(self.agent), op).await
    }

    async fn call(&self, op: AgentOp) -> Result<u64> {
        let op = |reply| AgentMsg::Op(op.clone(), None, reply);
        super::call(|| self.mesh.agent_ref(self.agent), op).await
    }
}
