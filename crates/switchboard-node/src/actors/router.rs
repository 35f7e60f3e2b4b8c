//! The router actor: one per tenant, a thin shell around the core's
//! [`RouterSide`] (queues, agents' status, capacity, load, offers, affinity; the single
//! writer of capacity). Operations of agents and supervisors come through its
//! [`RouterHandle`]; conversations' messages come as envelopes through the transport, and so
//! do agent actors' commands when the mesh runs them (`MeshOptions::agent_actors`: the side
//! is then built `with_agent_links()` and its decisions about agents go back on their links).
//!
//! Each step: the side changes state and queues decisions; the actor logs the step's inputs
//! and writes them as one row (or, now and then, a checkpoint of the whole side instead:
//! [`Journal`]) with the step's events (`events` entries, `actors::effects`) and the
//! tombstones that appeared or expired since the last step (rows of kind [`TOMBSTONE`], read
//! back on activation: the checkpoint would otherwise grow with every conversation that left
//! within `linger`), and awaits durability; then `outgoing()` goes to the transport and the
//! caller is answered. Steps are batched: a message that changes the side schedules a
//! `Flush` behind whatever is already in the mailbox, so every message that queued up while
//! the previous write was in flight is applied before one write makes them all durable.
//! Until that flush nothing of them is heard: no envelope, no answer, no read, no resend. A failed write stops the actor (its memory is ahead of the
//! store); its supervisor (or the next message, if sooner) activates it from its row again,
//! and every caller of the batch gets the error.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rustc_hash::FxHashSet;
use switchboard_core::engine::Target;
use switchboard_core::mesh::journal::{self, after_checkpoint};
use switchboard_core::mesh::{
    AgentEnvelope, Body, Envelope, FromAgent, RouterInput, RouterSide, ToRouter, Tombstone,
};
use switchboard_core::router::StatusCause;
use switchboard_core::{AgentId, AgentStatus, ConversationId, Effect, GroupId, Timestamp};
use switchboard_store::{ActorState, Batch, Fence, Response};
use tracing::warn;

use super::effects::{MeshNames, Rows};
use super::placement::ActorKey;
use super::transport::Wire;
use super::{
    Counted, Exit, Generation, Later, Mesh, Outbox, ROUTER, TOMBSTONE, Timers, decode, encode,
    encode_journaled,
};
use crate::clock;
use crate::error::{Error, Result};

/// How many public calls' answers an incarnation keeps in memory ([`RouterRun::recent`]): a
/// copy of a call finds its original's answer there if it looked the store up before that
/// write and reached the router within this many calls after it.
const KEEP_RESPONSES: usize = 4096;

/// A router operation, as [`RouterHandle`] builds it (the core's, so it can be logged).
pub use switchboard_core::mesh::RouterOp;

/// A public call on the router (issue 12's cut-over: transfers and the supervisor's
/// commands): its operations, applied in order in one step (each succeeds or fails on its
/// own), and its request id (empty: none). A request id answered before is answered from
/// the store (`Batch::responses`, the per-actor table) and applies nothing; a new one's
/// response, made by `answer` from the results, is written in the step's own batch (none
/// when `answer` keeps nothing: a refused command stores nothing, as the tenant actor's log
/// keeps no refused command).
#[derive(Clone)]
#[allow(missing_debug_implementations)] // carries a closure
pub struct RouterCall {
    pub ops: Vec<RouterOp>,
    pub request_id: String,
    pub answer: RouterAnswer,
}

/// What a [`RouterCall`] keeps for its request id, from its operations' results.
pub type RouterAnswer =
    Arc<dyn Fn(&[switchboard_core::Result<()>]) -> Option<Vec<u8>> + Send + Sync>;

/// How a [`RouterCall`] ended.
#[derive(Debug, Clone)]
pub enum RouterCalled {
    /// Its request id was answered before: that answer, nothing applied.
    Stored(Vec<u8>),
    /// Applied now (durable): each operation's result, and the answer kept.
    Decided { results: Vec<switchboard_core::Result<()>>, kept: Option<Vec<u8>> },
}

type CallReply = RpcReplyPort<Result<RouterCalled>>;

#[allow(missing_debug_implementations)] // carries closures and reply ports
pub enum RouterMsg {
    /// An envelope from a conversation actor (counted against the receiving node's bound
    /// when it came from another node), with the generation it was sent early under, if it
    /// was ([`super::Generation`]).
    Deliver(Envelope<ToRouter>, Option<super::Ticket>, Option<u64>),
    /// An envelope from an agent actor (with agent actors on, `MeshOptions::agent_actors`),
    /// counted as above.
    FromAgent(AgentEnvelope<FromAgent>, Option<super::Ticket>, Option<u64>),
    /// An operation; answered once its decisions are durable.
    Op(RouterOp, RpcReplyPort<Result<Vec<Effect>>>),
    /// A public call with its request id; answered once durable (or found stored). With the
    /// instant its caller began looking the request id up in the store and found nothing
    /// (`RouterHandle::call_public`): an incarnation activated before that instant need not
    /// look again.
    Call(RouterCall, Option<tokio::time::Instant>, CallReply),
    /// A read of the side's current state.
    Read(super::ReadSide<RouterSide>),
    /// A read of the side as it is now, steps not yet durable included ([`RouterHandle::peek`]).
    Peek(super::ReadSide<RouterSide>),
    /// Its one timer fired: a deadline, a resend or the end of its idle time may be due.
    Wake,
    /// Make the steps applied since the last write durable, then let them be heard.
    Flush,
    /// The mesh took a newer configuration: apply it now (every message does first).
    Reconfigure,
    /// Apply the mesh's configuration again, even the one applied already: an operation
    /// taken ahead of a configuration command that did not follow ([`RouterHandle::agree`])
    /// left the side apart from it.
    Reconcile,
    /// Sample the tenant's queue, agent and conversation gauges (every
    /// `metrics::GAUGE_INTERVAL` while it runs; not activity: it still passivates).
    Gauges,
}

#[derive(Debug)]
pub struct RouterArgs {
    pub mesh: Mesh,
    /// Told when it passivates, for its supervisor.
    pub(crate) exit: Arc<Exit>,
}

#[derive(Debug)]
pub struct RouterActor;

#[allow(missing_debug_implementations)] // the side is large; see `Read`
pub struct RouterRun {
    mesh: Mesh,
    /// The transfers of the open batch: target and who asked (the reassignments counter's
    /// labels, counted once the batch is durable).
    moved: Vec<(&'static str, &'static str)>,
    /// `switchboard_router_inputs_total` of this tenant: from conversations, agents, calls
    /// (registered once, not per message).
    inputs: [metrics::Counter; 3],
    /// The tenant's shard and epoch on this node when it activated: every write carries it.
    fence: Fence,
    side: RouterSide,
    epoch: u64,
    last_now: Timestamp,
    last_active: tokio::time::Instant,
    timers: Timers,
    /// The conversations' links a message went on since they last acknowledged everything
    /// (maybe fewer now: an acknowledgement removes its link once the side says it settled).
    owed: FxHashSet<ConversationId>,
    /// The same for the agents' links.
    owed_agents: FxHashSet<AgentId>,
    /// It drained itself (passivation): work that came in meanwhile needs a successor.
    drained: bool,
    /// A write failed: it stops, and its supervisor activates it again after a backoff.
    failed: bool,
    /// Steps applied and not yet durable (a `Flush` is in the mailbox while this is `Some`).
    batch: Option<Unflushed>,
    /// What it heard early: its next batch's generation.
    generation: Generation,
    /// When this incarnation activated: a caller's store lookup begun since saw every
    /// response an earlier incarnation wrote ([`RouterMsg::Call`]).
    activated: tokio::time::Instant,
    /// The responses of the newest [`KEEP_RESPONSES`] public calls this incarnation made
    /// durable, by request id (volatile): a copy of a call that looked the store up before its
    /// original's write finds its answer here.
    recent: super::Newest<Vec<u8>>,
    /// The inputs since the last write, and what the log since the checkpoint holds.
    journal: Journal,
    /// The mesh's configuration the side was last brought to (`RouterSide::reconfigure`);
    /// `None`: not yet in this incarnation. Before each message the actor compares it with
    /// the mesh's (one pointer comparison) and applies a newer one as a step of its own.
    applied: Option<Arc<super::TenantConfig>>,
    /// The task that asks for [`RouterMsg::Gauges`]; stopped with the actor.
    sampler: tokio::task::JoinHandle<()>,
    exit: Arc<Exit>,
    _counted: Counted,
    id: ractor::ActorId,
}

/// Where an operation's caller hears its answer.
type Reply = RpcReplyPort<Result<Vec<Effect>>>;

/// What waits for the next write: the callers to answer and the effects to report.
#[derive(Default)]
struct Unflushed {
    /// Callers, with their answers (a refusal too: it was decided on undurable state).
    replies: Vec<(Reply, Result<Vec<Effect>>)>,
    /// Every step's effects, in order.
    effects: Vec<Effect>,
    /// Their events as `events` entries, each at its step's time.
    rows: Rows,
    reads: Vec<super::ReadSide<RouterSide>>,
    /// Public calls, with their answers, and the responses they keep by request id.
    calls: Vec<(CallReply, RouterCalled)>,
    responses: Vec<Response>,
}

/// The router's rows: a checkpoint of the side (key `""`) and, after it, one log row per
/// write holding that write's inputs (key: its sequence number, 20 digits, so keys sort as
/// numbers). A write logs its inputs unless the log since the checkpoint would outweigh the
/// checkpoint (so the rows hold at most about twice the side), the configuration changed (a
/// replay has only the newest), it is an incarnation's first, or the checkpoint is half a
/// `linger` old (`RouterSide::checkpoint_due`: a replay must not meet the envelopes of a
/// conversation whose tombstone expired since): then it writes a checkpoint
/// and deletes the log rows before it, in the same batch. Activation replays the log on the
/// checkpoint (`switchboard_core::mesh::journal`).
#[derive(Default)]
struct Journal {
    /// Inputs applied since the last write, in order.
    pending: Vec<RouterInput>,
    /// Sequence numbers of the log rows since the checkpoint.
    rows: Vec<u64>,
    /// The next log row's sequence number.
    next: u64,
    /// Bytes of those log rows, and of the checkpoint.
    logged: usize,
    checkpoint: usize,
    /// When the checkpoint was taken (the side's clock).
    checkpoint_at: Timestamp,
    /// The next write is a checkpoint.
    due: bool,
}

impl Journal {
    fn log(&mut self, input: RouterInput) {
        self.pending.push(input);
    }

    fn key(seq: u64) -> String {
        format!("{seq:020}")
    }
}

impl Drop for RouterRun {
    fn drop(&mut self) {
        self.sampler.abort();
        self.mesh.forget_router(self.id);
    }
}

/// The tenant's rows of `kind` whose key is a number, `page` at a time (a primary-key walk):
/// number, epoch, body.
async fn numbered_rows(
    mesh: &Mesh,
    kind: &'static str,
    page: usize,
) -> Result<Vec<(u64, u64, Vec<u8>)>> {
    numbered_rows_as(mesh, kind, page, |n, epoch, body| Ok((n, epoch, body))).await
}

/// [`numbered_rows`], each row turned into a `T` as its page arrives, so that a long kind (the
/// router's tombstones: as many as conversations end within `linger`) never holds every
/// row's body at once, only the result.
async fn numbered_rows_as<T>(
    mesh: &Mesh,
    kind: &'static str,
    page: usize,
    mut row_as: impl FnMut(u64, u64, Vec<u8>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut all = Vec::new();
    let mut after = String::new();
    loop {
        let (store, tenant, from) = (mesh.inner().store.clone(), mesh.tenant().to_owned(), after);
        let rows = super::blocking(move || store.list_actors(&tenant, kind, &from, page)).await?;
        let Some(last) = rows.last() else { break };
        after = last.key.clone();
        for row in rows {
            let (Ok(n), Some(body)) = (row.key.parse::<u64>(), row.body) else { continue };
            all.push(row_as(n, row.epoch, body)?);
        }
    }
    Ok(all)
}

/// The router's stored tombstones.
async fn tombstones(mesh: &Mesh) -> Result<Vec<(ConversationId, Tombstone)>> {
    numbered_rows_as(mesh, TOMBSTONE, 1024, |n, _, body| {
        let (_, tombstone) = decode::<Tombstone>(&body)?;
        Ok((ConversationId(n), tombstone))
    })
    .await
}

impl Actor for RouterActor {
    type Msg = RouterMsg;
    type State = RouterRun;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RouterMsg>,
        args: RouterArgs,
    ) -> Result<RouterRun, ActorProcessingErr> {
        let mesh = args.mesh;
        // It runs only where the tenant's shard is owned, under that shard's fence.
        let fence = mesh.fence_of(ActorKey::Router { tenant: mesh.tenant() })?;
        let inner = mesh.inner();
        // The log first, then the checkpoint: a checkpoint that lands between the two reads
        // (its writer stopped with it queued) deleted rows read here, which it covers.
        let logged = numbered_rows(&mesh, ROUTER, 256).await?;
        let (at, covers, mut side, stored_epoch, checkpoint) =
            match mesh.load(ROUTER, String::new()).await? {
                Some(ActorState { epoch, body: Some(body), .. }) if super::journaled(&body) => {
                    let (at, (covers, side)) = decode::<(u64, RouterSide)>(&body)?;
                    (at, covers, side, epoch, body.len())
                }
                Some(ActorState { epoch, body: Some(body), .. }) => {
                    let (at, side) = decode::<RouterSide>(&body)?;
                    (at, 0, side, epoch, body.len())
                }
                _ => {
                    let side = RouterSide::new(inner.router.clone(), inner.options.linger);
                    (Timestamp(0), 0, side, 0, 0)
                }
            };
        // Agent actors run: decisions about agents go on their links too (kept in the row).
        if inner.options.agent_actors {
            side = side.with_agent_links();
        }
        let stored = tombstones(&mesh).await?;
        let mut journal = Journal {
            checkpoint,
            checkpoint_at: at,
            due: true,
            next: covers,
            ..Journal::default()
        };
        let mut newest = stored_epoch;
        let mut inputs = Vec::new();
        for (seq, epoch, body) in logged {
            // Deleted with the next checkpoint, like every row after this one.
            journal.rows.push(seq);
            journal.next = journal.next.max(seq + 1);
            // Below `covers`: the checkpoint holds it. Older than the checkpoint's
            // incarnation: it landed after the checkpoint (its writer stopped with it
            // queued) and was never heard of, so the replay skips it too.
            if seq < covers || epoch < stored_epoch {
                continue;
            }
            let (_, row) = decode::<Vec<RouterInput>>(&body)?;
            inputs.extend(row);
            newest = newest.max(epoch);
            journal.logged += body.len();
        }
        let zone = mesh.config().settings.time_zone.clone();
        let day = |at| crate::calendar::day(&zone, at);
        // The checkpoint, the tombstones and the log rows after it, replayed: the side as the
        // last write left it, less what a restart loses.
        let replayed = journal::rebuild(&mut side, stored, covers, inputs, day);
        let at = replayed.map_or(at, |r| r.max(at));
        let epoch = newest + 1;
        let now = clock::now().max(at);
        side.restart(epoch, now);
        journal.log(RouterInput::Restart { epoch, at: now });
        let every = mesh.inner().options.retransmit;
        let input = |source: &'static str| {
            let tenant = mesh.tenant().to_owned();
            metrics::counter!(crate::metrics::ROUTER_INPUTS, "tenant" => tenant, "source" => source)
        };
        let inputs = [input("conversation"), input("agent"), input("call")];
        let mut run = RouterRun {
            moved: Vec::new(),
            id: myself.get_id(),
            inputs,
            mesh: mesh.clone(),
            fence,
            side,
            epoch,
            last_now: now,
            last_active: tokio::time::Instant::now(),
            timers: Timers::new(every),
            owed: FxHashSet::default(),
            owed_agents: FxHashSet::default(),
            drained: false,
            failed: false,
            batch: None,
            generation: Generation::default(),
            activated: tokio::time::Instant::now(),
            recent: super::Newest::new(KEEP_RESPONSES),
            journal,
            // A mesh loaded from the store (version above 0) has the tenant's whole
            // configuration, which may be newer than this row: the first message applies it.
            // One built by hand (tests) is taken as the router's own.
            applied: (mesh.config_version() == 0).then(|| mesh.config()),
            sampler: {
                let me = myself.clone();
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(crate::metrics::GAUGE_INTERVAL);
                    loop {
                        every.tick().await;
                        if me.cast(RouterMsg::Gauges).is_err() {
                            return;
                        }
                    }
                })
            },
            exit: args.exit,
            _counted: Counted::new(ROUTER),
        };
        if run.applied.is_none() {
            let _ = myself.send_message(RouterMsg::Reconfigure);
        }
        // A restarted side resends everything unacknowledged at once: what it had sent
        // before is volatile.
        run.send();
        run.arm(&myself);
        Ok(run)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RouterMsg>,
        run: &mut RouterRun,
    ) -> Result<(), ActorProcessingErr> {
        // Something it drained after deciding to stop left a deadline or a resend due: the
        // next incarnation runs it (it starts once this one is gone).
        let due = run.side.next_deadline().is_some() || run.unsettled();
        if run.drained && !run.failed {
            run.exit.passivated();
        }
        if run.drained && !run.failed && due {
            let mesh = run.mesh.clone();
            tokio::spawn(async move { mesh.router_ref().await.map(|_| ()) });
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<RouterMsg>,
        msg: RouterMsg,
        run: &mut RouterRun,
    ) -> Result<(), ActorProcessingErr> {
        let source = match &msg {
            RouterMsg::Deliver(..) => Some(0),
            RouterMsg::FromAgent(..) => Some(1),
            RouterMsg::Op(..) | RouterMsg::Call(..) => Some(2),
            _ => None,
        };
        if let Some(source) = source {
            run.inputs[source].increment(1);
        }
        if matches!(msg, RouterMsg::Reconcile) {
            run.applied = None;
        }
        // No step acts on a configuration older than the mesh's.
        run.reconfigure(&myself).await?;
        if run.failed {
            return Ok(());
        }
        match msg {
            RouterMsg::Reconfigure | RouterMsg::Reconcile => {}
            RouterMsg::Deliver(envelope, _ticket, early) => {
                run.last_active = tokio::time::Instant::now();
                if !run.generation.hear(&run.mesh, early) {
                    // Its sender's batch is refused: its restart resends what is durable.
                    return Ok(());
                }
                let now = run.now();
                // An acknowledgement changes only what is resent: no write needed (after a
                // restart the receiver drops the resent copies as duplicates).
                let ack = matches!(envelope.body, Body::Ack { .. });
                let from = envelope.conversation;
                run.journal.log(RouterInput::Deliver { at: now, envelope: envelope.clone() });
                let started = tokio::time::Instant::now();
                let effects = run.side.receive(now, envelope);
                crate::metrics::mesh_decided(started.elapsed(), run.side.take_decisions());
                if ack && run.owed.contains(&from) && run.side.settled_with(from) {
                    run.owed.remove(&from);
                    run.settle();
                }
                return run.received(&myself, ack, effects).await;
            }
            RouterMsg::FromAgent(envelope, _ticket, early) => {
                run.last_active = tokio::time::Instant::now();
                if !run.generation.hear(&run.mesh, early) {
                    return Ok(());
                }
                let now = run.now();
                let ack = matches!(envelope.body, Body::Ack { .. });
                let from = envelope.agent;
                run.journal.log(RouterInput::FromAgent { at: now, envelope: envelope.clone() });
                let started = tokio::time::Instant::now();
                let effects = run.side.receive_agent(now, envelope);
                crate::metrics::mesh_decided(started.elapsed(), run.side.take_decisions());
                if ack && run.owed_agents.contains(&from) && run.side.settled_with_agent(from) {
                    run.owed_agents.remove(&from);
                    run.settle();
                }
                return run.received(&myself, ack, effects).await;
            }
            RouterMsg::Op(op, reply) => {
                run.last_active = tokio::time::Instant::now();
                let now = run.now();
                match (run.apply(now, op), &mut run.batch) {
                    (Err(e), Some(batch)) => batch.replies.push((reply, Err(e.into()))),
                    (Err(e), None) => {
                        let _ = reply.send(Err(e.into()));
                    }
                    (Ok(effects), _) => return run.step(&myself, effects, Some(reply)).await,
                }
            }
            RouterMsg::Call(call, checked, reply) => {
                run.last_active = tokio::time::Instant::now();
                return run.call(&myself, call, checked, reply).await;
            }
            RouterMsg::Read(read) => match &mut run.batch {
                // A read sees only durable decisions.
                Some(batch) => batch.reads.push(read),
                None => read(&run.side),
            },
            RouterMsg::Peek(read) => read(&run.side),
            RouterMsg::Flush => return run.flush(&myself).await,
            RouterMsg::Gauges => {
                let config = run.mesh.config();
                let groups = config.groups.keys().map(|g| (*g, config.group_name(*g).into_owned()));
                let now = run.now();
                crate::metrics::router_gauges(run.mesh.tenant(), groups, &run.side, now);
            }
            RouterMsg::Wake => {
                run.timers.fired();
                run.mesh.woke();
                if let Err(e) = run.mesh.holds(run.fence) {
                    // Its shard moved (`Mesh::stop_unowned` stops it too, as the move is
                    // seen): the new owner activates it from its row.
                    return run.fail(&myself, e);
                }
                let now = run.now();
                if run.side.next_deadline().is_some_and(|at| at <= now) {
                    run.journal.log(RouterInput::Advance { at: now });
                    let effects = run.side.advance(now);
                    run.step(&myself, effects, None).await?;
                    if run.failed {
                        return Ok(());
                    }
                }
                if run.timers.resend_due() {
                    if run.batch.is_some() {
                        // Undurable decisions are in the outbox: the flush sends them; resend
                        // one period later.
                        run.timers.resent(true);
                    } else {
                        run.resend();
                    }
                }
                let idle = run.last_active.elapsed() >= run.mesh.inner().options.idle;
                if idle && run.batch.is_none() && run.side.next_deadline().is_none() {
                    if !run.unsettled() {
                        // Everything is durable and nothing is owed: the next message
                        // activates it again from its row. Draining: what is in the mailbox
                        // is still handled, later sends go to the next incarnation.
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

impl RouterRun {
    /// Time only moves forward within the actor, whatever the wall clock does.
    fn now(&mut self) -> Timestamp {
        self.last_now = self.last_now.max(clock::now());
        self.last_now
    }

    /// Applies one operation; a refusal is counted (`switchboard_commands_refused_total`, with
    /// the tenant actor's command kinds).
    fn apply(&mut self, now: Timestamp, op: RouterOp) -> switchboard_core::Result<Vec<Effect>> {
        let kind = op.kind();
        // Who moved it where, for the reassignments counter (as the tenant actor labels its
        // Transfer and ReassignBatch commands), once it succeeds.
        let moved = match &op {
            RouterOp::Transfer { target, by, .. } => {
                let reason = match by {
                    switchboard_core::Actor::Agent(_) => "agent_transfer",
                    switchboard_core::Actor::Supervisor(_) => "supervisor",
                    _ => "other",
                };
                let to = match target {
                    Target::Agent(_) => "agent",
                    Target::Group { .. } => "group",
                };
                Some((to, reason))
            }
            _ => None,
        };
        self.journal.log(RouterInput::Op { at: now, op: op.clone() });
        let applied = self.side.apply_op(now, op);
        if let (Ok(_), Some(moved)) = (&applied, moved) {
            self.moved.push(moved);
        }
        if let Err(e) = &applied {
            crate::metrics::refused(self.mesh.tenant(), kind, &e.clone().into());
        }
        applied
    }

    /// A public call: answered from the store if its request id was (one probe, or the
    /// undurable batch), else its operations are applied in one step whose batch keeps the
    /// answer.
    async fn call(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        call: RouterCall,
        checked: Option<tokio::time::Instant>,
        reply: CallReply,
    ) -> Result<(), ActorProcessingErr> {
        if !call.request_id.is_empty() {
            let pending = self.batch.as_mut().and_then(|b| {
                let found = b.responses.iter().find(|r| r.request_id == call.request_id);
                found.map(|r| r.body.clone()).map(|body| (b, body))
            });
            if let Some((batch, body)) = pending {
                // A copy of a call not yet durable: answered with it, at its flush.
                batch.calls.push((reply, RouterCalled::Stored(body)));
                return Ok(());
            }
            if let Some(body) = self.recent.get(&call.request_id) {
                // A copy that looked the store up before its original was written.
                let _ = reply.send(Ok(RouterCalled::Stored(body.clone())));
                self.arm(myself);
                return Ok(());
            }
            // The caller's lookup began after this incarnation activated: the store had
            // every earlier incarnation's answers then, and this one's are in `recent`. So
            // the router waits on no read in the common case.
            if checked.is_some_and(|at| at >= self.activated) {
                return self.decide_call(myself, call, reply).await;
            }
            match self.mesh.stored_response(&call.request_id).await {
                Err(e) => {
                    let _ = reply.send(Err(e));
                    self.arm(myself);
                    return Ok(());
                }
                Ok(Some(body)) => {
                    let _ = reply.send(Ok(RouterCalled::Stored(body)));
                    self.arm(myself);
                    return Ok(());
                }
                Ok(None) => {}
            }
        }
        self.decide_call(myself, call, reply).await
    }

    /// Applies a public call whose request id (if any) was answered nowhere before.
    async fn decide_call(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        call: RouterCall,
        reply: CallReply,
    ) -> Result<(), ActorProcessingErr> {
        let now = self.now();
        let mut effects = Vec::new();
        let mut results = Vec::with_capacity(call.ops.len());
        for op in call.ops {
            results.push(self.apply(now, op).map(|mut fx| effects.append(&mut fx)));
        }
        let kept = (call.answer)(&results);
        let response = kept.clone().filter(|_| !call.request_id.is_empty()).map(|body| Response {
            request_id: call.request_id.clone(),
            at_ms: now.as_millis(),
            body,
        });
        let answer = RouterCalled::Decided { results, kept };
        self.step_call(myself, effects, (reply, answer), response).await
    }

    /// [`step`](Self::step) for a public call: its answer and kept response join the batch.
    async fn step_call(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        effects: Vec<Effect>,
        call: (CallReply, RouterCalled),
        response: Option<Response>,
    ) -> Result<(), ActorProcessingErr> {
        let mut batch = match self.batch.take() {
            Some(batch) => batch,
            None if myself.send_message(RouterMsg::Flush).is_ok() => Unflushed::default(),
            None => {
                let mut batch = Unflushed::default();
                batch.calls.push(call);
                batch.responses.extend(response);
                self.batch = Some(batch);
                self.push(effects, None);
                return self.flush(myself).await;
            }
        };
        batch.calls.push(call);
        batch.responses.extend(response);
        self.batch = Some(batch);
        self.push(effects, None);
        Ok(())
    }

    /// Brings the side to the mesh's configuration if it changed since the last time, as a
    /// step of its own (written with the batch it joins).
    async fn reconfigure(
        &mut self,
        myself: &ActorRef<RouterMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let config = self.mesh.config();
        if self.applied.as_ref().is_some_and(|a| Arc::ptr_eq(a, &config)) {
            return Ok(());
        }
        self.applied = Some(config.clone());
        let now = self.now();
        // A replay would have only the newest configuration: the next write is a checkpoint.
        self.journal.due = true;
        let effects = self.side.reconfigure(now, config.cfg());
        self.step(myself, effects, None).await
    }

    /// The rest of a step on an envelope (a conversation's or an agent's): it joins the
    /// batch unless it was only an acknowledgement, which sends what is owed at once when
    /// nothing undurable is queued (else the flush does).
    async fn received(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        ack: bool,
        effects: Vec<Effect>,
    ) -> Result<(), ActorProcessingErr> {
        if !ack {
            return self.step(myself, effects, None).await;
        }
        if self.batch.is_none() {
            self.send();
        }
        self.arm(myself);
        Ok(())
    }

    /// One applied step: it joins the batch the next `Flush` makes durable (scheduling that
    /// flush behind what is already in the mailbox). A drained actor cannot send itself the
    /// flush, so it writes at once.
    async fn step(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        effects: Vec<Effect>,
        reply: Option<Reply>,
    ) -> Result<(), ActorProcessingErr> {
        let batch = match self.batch.take() {
            Some(batch) => batch,
            None if myself.send_message(RouterMsg::Flush).is_ok() => Unflushed::default(),
            None => {
                self.batch = Some(Unflushed::default());
                self.push(effects, reply);
                return self.flush(myself).await;
            }
        };
        self.batch = Some(batch);
        self.push(effects, reply);
        Ok(())
    }

    fn push(&mut self, effects: Vec<Effect>, reply: Option<Reply>) {
        let batch = self.batch.as_mut().expect("a batch is open");
        let (inner, config) = (self.mesh.inner(), self.mesh.config());
        // `last_now` is this step's time (`now()` just set it). Its sign-ins go into the side
        // (each agent's first of the day, in the tenant's time zone), so into this batch's row.
        let (now, zone) = (self.last_now, &config.settings.time_zone);
        self.side.note_logins(now, &effects, || crate::calendar::day(zone, now));
        let names = MeshNames { tenant: &inner.tenant, config };
        batch.rows.router(&names, self.last_now, &effects);
        match reply {
            Some(reply) => {
                batch.effects.extend(effects.iter().cloned());
                batch.replies.push((reply, Ok(effects)));
            }
            None => batch.effects.extend(effects),
        }
    }

    /// Writes the batch's steps in one row, then lets them be heard: envelopes, effects,
    /// answers, reads.
    async fn flush(&mut self, myself: &ActorRef<RouterMsg>) -> Result<(), ActorProcessingErr> {
        let Some(batch) = self.batch.take() else { return Ok(()) };
        let kept: Vec<(String, Vec<u8>)> =
            batch.responses.iter().map(|r| (r.request_id.clone(), r.body.clone())).collect();
        if let Err(e) = self.commit(batch.rows, batch.responses).await {
            for (reply, _) in batch.replies {
                let _ = reply.send(Err(e.clone()));
            }
            for (reply, _) in batch.calls {
                let _ = reply.send(Err(e.clone()));
            }
            return self.fail(myself, e);
        }
        self.send();
        // The answers just made durable, for copies that looked the store up before.
        for (request_id, body) in kept {
            self.recent.insert(request_id, body);
        }
        crate::metrics::mesh_moved(self.mesh.tenant(), &std::mem::take(&mut self.moved));
        self.mesh.heard(None, batch.effects);
        for (reply, answer) in batch.replies {
            let _ = reply.send(answer);
        }
        for (reply, answer) in batch.calls {
            let _ = reply.send(Ok(answer));
        }
        for read in batch.reads {
            read(&self.side);
        }
        self.arm(myself);
        Ok(())
    }

    /// Makes the side durable: its row (placements and the decisions in its outbox), one
    /// upsert in the store's group commit, with the batch's `events` entries
    /// (`actors::effects`); then those entries go to the node's hub.
    async fn commit(&mut self, mut rows: Rows, responses: Vec<Response>) -> Result<()> {
        self.mesh.holds(self.fence)?;
        // What its decisions put on agents' desks, in the same write as the decisions.
        let desk = self.side.take_desk();
        if !desk.is_empty() {
            let names = MeshNames { tenant: &self.mesh.inner().tenant, config: self.mesh.config() };
            rows.desk(&names, self.last_now, desk);
        }
        let (mut actors, row) = self.journal_rows()?;
        let inner = self.mesh.inner();
        // Tombstones are rows of their own (the side's row would grow with every
        // conversation that left within `linger`): new ones stored, expired ones deleted.
        let (fresh, expired) = self.side.take_tombstones();
        actors.reserve(fresh.len() + expired.len());
        for (id, tombstone) in fresh {
            // Put away by this write's inputs (the `Sent` among them): a replay from the
            // checkpoint before this row must not start with it (`journal::rebuild`).
            let body = Some(encode(self.last_now, &tombstone.stored_with(row))?);
            actors.push(ActorState {
                kind: TOMBSTONE.into(),
                key: id.0.to_string(),
                epoch: 0,
                body,
            });
        }
        for id in expired {
            actors.push(ActorState {
                kind: TOMBSTONE.into(),
                key: id.0.to_string(),
                epoch: 0,
                body: None,
            });
        }
        let generation = self.generation.next(&self.mesh);
        let mut batch = Batch {
            tenant: inner.tenant.clone(),
            fence: self.fence,
            generation,
            actors,
            responses,
            ..Batch::default()
        };
        let published = rows.into_batch(&mut batch);
        let pending = inner.store.append_assigned(batch);
        inner.counters.router_writes.increment(1);
        // Queued: its messages to actors here may go now (`Generation`).
        let later = generation.map(|g| self.send_with(Some(g)));
        let positions = pending.await?;
        published.publish(&self.mesh, positions);
        later.unwrap_or_default().send(&self.mesh);
        Ok(())
    }

    /// The router's rows for this write: its inputs as a log row (and that row's sequence
    /// number), or a checkpoint of the side that replaces the log (see [`Journal`]). The
    /// journal is updated as if the write succeeds (a failed one stops the actor).
    fn journal_rows(&mut self) -> Result<(Vec<ActorState>, Option<u64>)> {
        let (at, epoch) = (self.last_now, self.epoch);
        let j = &mut self.journal;
        let row = |key: String, body: Option<Vec<u8>>| ActorState {
            kind: ROUTER.into(),
            key,
            epoch,
            body,
        };
        let inputs = std::mem::take(&mut j.pending);
        if !j.due && !self.side.checkpoint_due(j.checkpoint_at, at) {
            if inputs.is_empty() {
                return Ok((Vec::new(), None));
            }
            let body = encode(at, &inputs)?;
            if j.logged + body.len() < j.checkpoint {
                let seq = j.next;
                j.next += 1;
                j.rows.push(seq);
                j.logged += body.len();
                return Ok((vec![row(Journal::key(seq), Some(body))], Some(seq)));
            }
        }
        // The rows from `next` on follow it (the held-back ones first).
        let body = encode_journaled(at, &(j.next, &self.side))?;
        j.due = false;
        j.checkpoint = body.len();
        j.checkpoint_at = at;
        j.logged = 0;
        let mut rows = vec![row(String::new(), Some(body))];
        rows.extend(j.rows.drain(..).map(|seq| row(Journal::key(seq), None)));
        // What waits held back on its links is not in the checkpoint: it follows it.
        let held = after_checkpoint(&self.side);
        if !held.is_empty() {
            let body = encode(at, &held)?;
            let seq = j.next;
            j.next += 1;
            j.rows.push(seq);
            j.logged = body.len();
            rows.push(row(Journal::key(seq), Some(body)));
        }
        Ok((rows, None))
    }

    /// Puts what is durable on the network; the links a message went on owe an
    /// acknowledgement, and it is resent until they acknowledge.
    fn send(&mut self) {
        self.send_with(None).send(&self.mesh);
    }

    /// [`send`](Self::send), or, with the step's batch queued under `early` and not yet
    /// durable, what may go now ([`Outbox`]); the rest is handed back.
    fn send_with(&mut self, early: Option<u64>) -> Later {
        // `outgoing()` changes the side (a settled link that left becomes a tombstone).
        self.journal.log(RouterInput::Sent);
        let mut outbox = Outbox::new(&self.mesh, early);
        for envelope in self.side.outgoing() {
            if super::awaits_ack(&envelope.body) {
                self.owed.insert(envelope.conversation);
            }
            outbox.put(Wire::ToConversation(envelope));
        }
        for envelope in self.side.outgoing_agents() {
            if super::awaits_ack(&envelope.body) {
                self.owed_agents.insert(envelope.agent);
            }
            outbox.put(Wire::ToAgent(envelope));
        }
        if !self.owed.is_empty() || !self.owed_agents.is_empty() {
            self.timers.sent();
        }
        outbox.later()
    }

    /// Resends everything unacknowledged (its resend wake-up, outside a batch).
    fn resend(&mut self) {
        let wire = self.side.retransmit();
        let desks = self.side.retransmit_agents();
        let side = &self.side;
        self.owed.retain(|c| !side.settled_with(*c));
        self.owed_agents.retain(|a| !side.settled_with_agent(*a));
        self.timers.resent(!wire.is_empty() || !desks.is_empty());
        let (transport, tenant) = (&self.mesh.inner().transport, self.mesh.tenant());
        for envelope in wire {
            self.owed.insert(envelope.conversation);
            transport.to_conversation(tenant, envelope);
        }
        for envelope in desks {
            self.owed_agents.insert(envelope.agent);
            transport.to_agent(tenant, envelope);
        }
    }

    /// Every link that owed an acknowledgement has given it: no resend is due.
    fn settle(&mut self) {
        if self.owed.is_empty() && self.owed_agents.is_empty() {
            self.timers.acknowledged();
        }
    }

    /// Something it sent (to a conversation or an agent) is unacknowledged.
    fn unsettled(&self) -> bool {
        !self.side.retransmit().is_empty() || !self.side.retransmit_agents().is_empty()
    }

    /// A write failed: the memory is ahead of the store, so the actor stops; its supervisor
    /// activates it from its row after a backoff (a message may do so sooner).
    fn fail(&mut self, myself: &ActorRef<RouterMsg>, e: Error) -> Result<(), ActorProcessingErr> {
        warn!(tenant = %self.mesh.tenant(), error = %e, "router actor cannot write here (failed, fenced or moved); stopping");
        self.failed = true;
        myself.stop(Some("write failed".into()));
        Ok(())
    }

    /// Arms its one wake-up: the side's next deadline, the next resend, or (with neither)
    /// the end of its idle time.
    fn arm(&mut self, myself: &ActorRef<RouterMsg>) {
        let (next, now) = (self.side.next_deadline(), self.now());
        let idle_at = self.last_active + self.mesh.inner().options.idle;
        self.timers.arm(myself, next, now, Some(idle_at), || RouterMsg::Wake);
    }
}

/// The typed way to the tenant's router actor: activates it if needed.
#[derive(Debug, Clone)]
pub struct RouterHandle {
    mesh: Mesh,
}

impl RouterHandle {
    pub(crate) fn new(mesh: Mesh) -> Self {
        RouterHandle { mesh }
    }

    pub async fn set_status(
        &self,
        agent: AgentId,
        status: AgentStatus,
        cause: StatusCause,
    ) -> Result<Vec<Effect>> {
        self.call(RouterOp::SetStatus { agent, status, cause }).await
    }

    /// Creates or updates an agent's capacity and groups.
    pub async fn set_agent(
        &self,
        agent: AgentId,
        capacity: u32,
        groups: Vec<GroupId>,
    ) -> Result<Vec<Effect>> {
        self.call(RouterOp::SetAgent { agent, capacity, groups }).await
    }

    /// An administrator's change that the router must agree to before the tenant actor
    /// commits it (`RouterOp::LowerCapacity`, `RouterOp::RetireGroup`): the router holds the
    /// load the configuration cannot see. Agreed, the router has taken it; the caller runs
    /// the configuration command and, if that fails, calls [`reconcile`](Self::reconcile).
    pub async fn agree(&self, op: RouterOp) -> Result<()> {
        self.call(op).await.map(drop)
    }

    /// Brings the router back to the stored configuration after [`agree`](Self::agree) was
    /// not followed by it (a crash meanwhile does the same: every incarnation starts by
    /// applying the configuration).
    pub async fn reconcile(&self) -> Result<()> {
        let router = self.mesh.router_ref().await?;
        router.send_message(RouterMsg::Reconcile).map_err(|_| {
            Error::Unavailable("the tenant's router stopped; it reconciles as it starts".into())
        })
    }

    pub async fn accept(
        &self,
        agent: AgentId,
        conversation: ConversationId,
    ) -> Result<Vec<Effect>> {
        self.call(RouterOp::Accept { agent, conversation }).await
    }

    pub async fn decline(
        &self,
        agent: AgentId,
        conversation: ConversationId,
    ) -> Result<Vec<Effect>> {
        self.call(RouterOp::Decline { agent, conversation }).await
    }

    pub async fn pick(&self, agent: AgentId, conversation: ConversationId) -> Result<Vec<Effect>> {
        self.call(RouterOp::Pick { agent, conversation }).await
    }

    pub async fn transfer(
        &self,
        conversation: ConversationId,
        target: Target,
        by: switchboard_core::Actor,
    ) -> Result<Vec<Effect>> {
        self.call(RouterOp::Transfer { conversation, target, by }).await
    }

    /// A public call ([`RouterCall`]): applied once per request id. The id is looked up in
    /// the store here, on the caller's task (found: that answer, nothing sent), so the router
    /// does not wait on the read; the router then checks only what it wrote since (see
    /// [`RouterMsg::Call`]).
    pub async fn call_public(&self, call: RouterCall) -> Result<RouterCalled> {
        let mut checked = None;
        if !call.request_id.is_empty() {
            let began = tokio::time::Instant::now();
            if let Some(body) = self.mesh.stored_response(&call.request_id).await? {
                crate::metrics::replayed(self.mesh.tenant());
                return Ok(RouterCalled::Stored(body));
            }
            checked = Some(began);
        }
        let msg = |reply| RouterMsg::Call(call.clone(), checked, reply);
        let called = super::call(|| self.mesh.router_ref(), msg).await?;
        // The router found it: a copy racing its original, or an earlier incarnation's.
        if matches!(called, RouterCalled::Stored(_)) {
            crate::metrics::replayed(self.mesh.tenant());
        }
        Ok(called)
    }

    /// Reads the side's current state.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&RouterSide) -> T + Send + 'static,
    ) -> Result<T> {
        super::read(|| self.mesh.router_ref(), RouterMsg::Read, read).await
    }

    /// Reads the side as it is now, including steps whose write is still to come (a
    /// [`read`](Self::read) waits for that write: up to two of the router's commits under
    /// load). Only for checks whose outcome is a refusal, which changes nothing, or a command
    /// sent on for the router to decide: the tenant actor refuses from its applied state
    /// the same way, before that state is durable.
    pub async fn peek<T: Send + 'static>(
        &self,
        read: impl FnOnce(&RouterSide) -> T + Send + 'static,
    ) -> Result<T> {
        super::read(|| self.mesh.router_ref(), RouterMsg::Peek, read).await
    }

    async fn call(&self, op: RouterOp) -> Result<Vec<Effect>> {
        let op = |reply| RouterMsg::Op(op.clone(), reply);
        super::call(|| self.mesh.router_ref(), op).await
    }
}
