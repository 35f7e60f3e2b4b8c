//! The simulated tenant: one router side, one conversation side per customer, one agent side
//! per agent, and a network between them, in virtual time, driven by one seeded generator.
//!
//! Each side is a [`Node`]: its live state (what the actor holds now), its durable state (the
//! last commit) and what it did since then (effects, which leave only at the commit). A
//! commit makes the live state durable, with the entries the side made for agents' desk
//! streams (the router side's decisions, a conversation side's own notes for its holder:
//! each stream is a shared one, in the order of those writes), and then puts the side's
//! outgoing envelopes on the network; a crash throws the live state away and rebuilds it
//! from the durable one through a serde round trip (volatile fields are lost, as on a real
//! restart), with a new epoch.
//! The router also keeps a [`Journal`] as the node's router actor does (a checkpoint now and
//! then, each commit's inputs after it): each of its crashes rebuilds it from that journal,
//! which must give the durable side exactly.
//! The network holds envelopes in flight: delivery picks any of them (reordering), may keep a
//! copy (duplicates), may lose one, and drops those older than [`MAX_AGE`] (a call deadline).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use switchboard_core::config::{AgentSettings, GroupSettings, TenantSettings};
use switchboard_core::engine::customer_message::CustomerMessage;
use switchboard_core::mesh::{
    AgentEnvelope, AgentSide, Body, ConversationSide, Envelope, FromAgent, RouterInput, RouterSide,
    ToAgent, ToConversation, ToRouter, Tombstone, journal,
};
use switchboard_core::router::StatusCause;
use switchboard_core::session::Config;
use switchboard_core::{
    AgentId, AgentStatus, Channel, ConversationId, CustomerId, Effect, Engine, GroupId, Target,
    Timestamp,
};

mod ops;

use crate::checks;
use crate::model::{self, AGENTS, BudgetWatch, CUSTOMERS, GROUPS, Setup};

/// No envelope is delivered later than this after it was sent.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// How long the router keeps a left conversation's link; far above [`MAX_AGE`] and any
/// single clock jump of the run, which quiesces the network first.
pub const LINGER: Duration = Duration::from_secs(4 * 86_400);

/// SplitMix64: small, fast, and the same sequence everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The read-only tenant configuration every side holds a copy of.
pub struct Tenant {
    settings: TenantSettings,
    groups: FxHashMap<GroupId, GroupSettings>,
    agents: FxHashMap<AgentId, AgentSettings>,
}

impl Tenant {
    /// The configuration an engine built by the model holds.
    pub fn of(engine: &Engine) -> Self {
        Tenant {
            settings: engine.settings().clone(),
            groups: (0..GROUPS)
                .map(|g| (GroupId(g), engine.group_settings(GroupId(g)).unwrap().clone()))
                .collect(),
            agents: (0..AGENTS)
                .map(|a| (AgentId(a), engine.agent_settings(AgentId(a)).unwrap().clone()))
                .collect(),
        }
    }

    pub fn cfg(&self) -> Config<'_> {
        Config { settings: &self.settings, groups: &self.groups, agents: &self.agents }
    }
}

/// What a side did that only counts once it is durable.
enum Done {
    /// A customer message was accepted (budgets count from it).
    Wrote(ConversationId),
    Effect(Effect),
}

pub struct Node<S> {
    pub live: S,
    durable: S,
    dirty: bool,
    done: Vec<Done>,
}

impl<S: Clone + Serialize + DeserializeOwned> Node<S> {
    fn new(state: S) -> Self {
        Node { durable: state.clone(), live: state, dirty: false, done: Vec::new() }
    }

    fn did(&mut self, effects: Vec<Effect>) {
        self.dirty = true;
        self.done.extend(effects.into_iter().map(Done::Effect));
    }

    /// A restart: the durable state, through the encoding a snapshot uses.
    fn crash(&mut self) {
        let bytes = rmp_serde::to_vec_named(&self.durable).expect("a side serializes");
        self.live = rmp_serde::from_slice(&bytes).expect("a side deserializes");
        self.dirty = false;
        self.done.clear();
    }
}

#[derive(Clone)]
enum Wire {
    ToRouter(Envelope<ToRouter>),
    ToConversation(Envelope<ToConversation>),
    ToAgent(AgentEnvelope<ToAgent>),
    FromAgent(AgentEnvelope<FromAgent>),
}

/// Which side.
#[derive(Clone, Copy, Debug)]
enum Who {
    Router,
    Side(usize),
    Agent(usize),
}

/// The router's rows as a journaling shell writes them (the node's router actor): a
/// checkpoint of the side, the log rows after it (the first ones, from `covers` on), each a
/// commit's inputs, and the inputs applied since the last commit.
struct Journal {
    checkpoint: Vec<u8>,
    covers: u64,
    rows: Vec<Vec<RouterInput>>,
    pending: Vec<RouterInput>,
    /// The next commit writes a checkpoint (a restarted router's first does).
    due: bool,
    /// When the checkpoint was taken (`RouterSide::checkpoint_due`).
    at: Timestamp,
}

impl Journal {
    fn new(side: &RouterSide) -> Self {
        let checkpoint = rmp_serde::to_vec(side).expect("a side encodes");
        Journal {
            checkpoint,
            covers: 0,
            rows: Vec::new(),
            pending: Vec::new(),
            due: false,
            at: Timestamp(0),
        }
    }

    /// The sequence number of the next log row.
    fn next(&self) -> u64 {
        self.covers + self.rows.len() as u64
    }
}

/// The local day of a time, for sign-ins (the simulated tenant's zone is UTC).
fn day(at: Timestamp) -> u64 {
    at.as_millis() / 86_400_000
}

/// A side's durable state as an order-free value (its hash maps compare by content).
fn durable(side: &RouterSide) -> serde_json::Value {
    serde_json::to_value(side).expect("the side encodes")
}

pub struct Sim {
    pub seed: u64,
    rng: Rng,
    now: Timestamp,
    tenant: Rc<Tenant>,
    pub router: Node<RouterSide>,
    /// The router's stored tombstones (rows of their own beside its state).
    tombstones: BTreeMap<ConversationId, Tombstone>,
    journal: Journal,
    pub sides: Vec<Node<ConversationSide>>,
    pub agents: Vec<Node<AgentSide>>,
    net: Vec<(Timestamp, Wire)>,
    next_conversation: u64,
    next_epoch: u64,
    budget: BudgetWatch,
    /// Every message ever put on the network, by link direction and sequence number: a
    /// sequence number must never carry two different messages.
    pub to_router: BTreeMap<(ConversationId, u64), ToRouter>,
    pub to_conversation: BTreeMap<(ConversationId, u64), ToConversation>,
    /// The same for the agents' links.
    pub to_agent: BTreeMap<(AgentId, u64), ToAgent>,
    pub from_agent: BTreeMap<(AgentId, u64), FromAgent>,
    /// Each agent's desk stream, as the router side's and the conversation sides' writes
    /// appended to it, and what the checks of those writes keep.
    pub desks: checks::Desks,
    /// Per agent side, what it holds as the router's messages it applied durably say.
    pub heard: Vec<checks::Heard>,
    /// The last actions, printed on failure.
    trace: Vec<String>,
    pub stats: Stats,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub steps: u64,
    pub delivered: u64,
    pub duplicated: u64,
    pub lost: u64,
    pub crashes: u64,
    /// Router crashes whose rebuild from the journal replayed log rows.
    pub replays: u64,
    pub quiesced: u64,
    pub assigned: u64,
    /// Conversations the router was asked to route, and decisions it sent.
    pub routed: u64,
    pub decisions: u64,
    /// Entries written on desk streams (the router's and the conversation sides'), and agent
    /// commands the router refused and applied.
    pub desk_events: u64,
    pub agent_refused: u64,
    pub agent_done: u64,
    /// Conversation notes the conversation sides wrote on desks; of those, the ones written
    /// while the desk held their conversation (shown), and the others (stale: written while
    /// the release of their holding was on its way to the side).
    pub desk_sent: u64,
    pub desk_shown: u64,
    pub desk_stale: u64,
    /// Which kinds of conversation note were shown on a desk (a bit each: customer message,
    /// whisper, read-but-unreplied, bot hosting).
    pub desk_kinds: u32,
    /// Which kinds of operation succeeded at least once (a bit each, see `ops.rs`).
    pub kinds: u32,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, s: Stats) {
        let fields = [
            (&mut self.steps, s.steps),
            (&mut self.delivered, s.delivered),
            (&mut self.duplicated, s.duplicated),
            (&mut self.lost, s.lost),
            (&mut self.crashes, s.crashes),
            (&mut self.replays, s.replays),
            (&mut self.quiesced, s.quiesced),
            (&mut self.assigned, s.assigned),
            (&mut self.routed, s.routed),
            (&mut self.decisions, s.decisions),
            (&mut self.desk_events, s.desk_events),
            (&mut self.agent_refused, s.agent_refused),
            (&mut self.agent_done, s.agent_done),
            (&mut self.desk_sent, s.desk_sent),
            (&mut self.desk_shown, s.desk_shown),
            (&mut self.desk_stale, s.desk_stale),
        ];
        for (total, n) in fields {
            *total += n;
        }
        self.kinds |= s.kinds;
        self.desk_kinds |= s.desk_kinds;
    }
}

impl Sim {
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let setup = random_setup(&mut rng);
        let engine = model::build(&setup);
        let tenant = Tenant::of(&engine);
        let mut router = RouterSide::new(engine.router().clone(), LINGER);
        // Most agents start signed in.
        for a in 0..AGENTS {
            if rng.percent(70) {
                let t0 = Timestamp(1_000);
                router.set_status(t0, AgentId(a), AgentStatus::Online, StatusCause::Agent).unwrap();
            }
        }
        // From here on, agent commands go through the agent sides.
        let router = router.with_agent_links();
        let agents = (0..AGENTS)
            .map(|a| {
                let status = router.router().agent(AgentId(a)).expect("the model's agent").status;
                Node::new(AgentSide::new(AgentId(a), status))
            })
            .collect();
        let sides = (0..CUSTOMERS)
            .map(|u| {
                let customer = engine.customer(CustomerId(u)).cloned().unwrap_or_default();
                Node::new(ConversationSide::new(CustomerId(u), customer).with_desk())
            })
            .collect();
        Sim {
            seed,
            rng,
            now: Timestamp(1_000),
            tenant: Rc::new(tenant),
            journal: Journal::new(&router),
            router: Node::new(router),
            tombstones: BTreeMap::new(),
            sides,
            agents,
            net: Vec::new(),
            next_conversation: 0,
            next_epoch: 1,
            budget: BudgetWatch::default(),
            to_router: BTreeMap::new(),
            to_conversation: BTreeMap::new(),
            to_agent: BTreeMap::new(),
            from_agent: BTreeMap::new(),
            desks: checks::Desks {
                agents: vec![checks::Desk::default(); AGENTS as usize],
                ..Default::default()
            },
            heard: vec![checks::Heard::default(); AGENTS as usize],
            trace: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Runs `steps` random steps, checking every invariant after each; quiesces and checks
    /// the eventual ones now and then and at the end.
    pub fn run(&mut self, steps: usize) -> Result<(), String> {
        for step in 0..steps {
            self.stats.steps += 1;
            self.step().map_err(|why| self.failure(step, &why))?;
            checks::always(self).map_err(|why| self.failure(step, &why))?;
        }
        self.quiesce().map_err(|why| self.failure(steps, &why))?;
        checks::quiet(self).map_err(|why| self.failure(steps, &why))?;
        self.stats.routed =
            self.to_router.values().filter(|m| matches!(m, ToRouter::Route { .. })).count() as u64;
        self.stats.decisions = self
            .to_conversation
            .values()
            .filter(|m| matches!(m, ToConversation::Placed { .. }))
            .count() as u64;
        let desks = &self.desks.agents;
        self.stats.desk_events = desks.iter().map(|d| d.entries.len() as u64).sum();
        self.stats.agent_refused =
            self.to_agent.values().filter(|m| matches!(m, ToAgent::Refused { .. })).count() as u64;
        self.stats.agent_done =
            self.to_agent.values().filter(|m| matches!(m, ToAgent::Done { .. })).count() as u64;
        self.stats.kinds |= ops::agent_kinds(self.to_agent.values());
        self.stats.desk_sent = desks.iter().map(|d| d.notes).sum();
        self.stats.desk_shown = desks.iter().map(|d| d.shown).sum();
        self.stats.desk_stale = self.stats.desk_sent - self.stats.desk_shown;
        self.stats.desk_kinds = desks.iter().fold(0, |k, d| k | d.kinds);
        Ok(())
    }

    fn failure(&self, step: usize, why: &str) -> String {
        let mut s = format!(
            "seed {} failed at step {step}: {why}\nreplay: SIM_SEED={} cargo test -p switchboard-core --test mesh\nlast actions:\n",
            self.seed, self.seed
        );
        for t in self.trace.iter().rev().take(40).rev() {
            let _ = writeln!(s, "  {t}");
        }
        s
    }

    fn note(&mut self, what: String) {
        if self.trace.len() > 200 {
            self.trace.drain(..100);
        }
        let line = format!("t={} {what}", self.now.0);
        self.trace.push(line);
    }

    fn step(&mut self) -> Result<(), String> {
        match self.rng.below(100) {
            0..=34 => self.operation(),
            35..=64 => self.deliver(),
            65..=79 => {
                let who = self.random_node();
                self.commit(who)
            }
            80..=82 => {
                let who = self.random_node();
                self.crash(who)
            }
            83..=85 => {
                if !self.net.is_empty() {
                    let i = self.rng.index(self.net.len());
                    self.net.swap_remove(i);
                    self.stats.lost += 1;
                    self.note("lost an envelope".into());
                }
                Ok(())
            }
            86..=98 => {
                let secs = match self.rng.below(24) {
                    0..=11 => self.rng.below(10),
                    12..=17 => 10 + self.rng.below(50),
                    _ if self.rng.percent(80) => 60 + self.rng.below(400),
                    _ => 3 * 86_400,
                };
                self.advance(Duration::from_secs(secs))
            }
            _ => {
                self.quiesce()?;
                checks::quiet(self)
            }
        }
    }

    fn random_node(&mut self) -> Who {
        match self.rng.below(CUSTOMERS + AGENTS + 1) {
            0 => Who::Router,
            u if u <= CUSTOMERS => Who::Side(u as usize - 1),
            a => Who::Agent((a - CUSTOMERS) as usize - 1),
        }
    }

    // ----- the network -------------------------------------------------------------------------

    fn send(&mut self, wire: Wire) -> Result<(), String> {
        match &wire {
            Wire::ToRouter(e) => {
                once(&mut self.to_router, e.conversation, &e.body, "to the router")?
            }
            Wire::ToConversation(e) => {
                once(&mut self.to_conversation, e.conversation, &e.body, "to its conversation")?
            }
            Wire::ToAgent(e) => once(&mut self.to_agent, e.agent, &e.body, "to its agent side")?,
            Wire::FromAgent(e) => {
                once(&mut self.from_agent, e.agent, &e.body, "from its agent side")?
            }
        }
        self.net.push((self.now, wire));
        Ok(())
    }

    fn deliver(&mut self) -> Result<(), String> {
        if self.net.is_empty() {
            return Ok(());
        }
        let i = self.rng.index(self.net.len());
        let (sent_at, wire) = if self.rng.percent(10) {
            self.stats.duplicated += 1;
            self.net[i].clone()
        } else {
            self.net.swap_remove(i)
        };
        if self.now.since(sent_at) > MAX_AGE {
            self.note("an envelope expired".into());
            return Ok(());
        }
        self.deliver_one(wire);
        if self.rng.percent(50) {
            let who = self.random_node();
            self.commit(who)?;
        }
        Ok(())
    }

    fn deliver_one(&mut self, wire: Wire) {
        self.stats.delivered += 1;
        let now = self.now;
        match wire {
            Wire::ToRouter(e) => {
                self.note(format!("router <- {} {:?} e{}", e.conversation, e.body, e.epoch));
                let fx = self.router_input(RouterInput::Deliver { at: now, envelope: e });
                self.router.did(fx.expect("an envelope is never refused"));
            }
            Wire::ToConversation(e) => {
                self.note(format!(
                    "u{} <- {} {:?} e{}",
                    e.customer.0, e.conversation, e.body, e.epoch
                ));
                let tenant = self.tenant.clone();
                let side = &mut self.sides[e.customer.0 as usize];
                let fx = side.live.receive(tenant.cfg(), now, e);
                side.did(fx);
                side.live.take_ended();
            }
            Wire::ToAgent(e) => {
                self.note(format!("{} <- {:?} e{}", e.agent, e.body, e.epoch));
                let side = &mut self.agents[e.agent.0 as usize];
                side.live.receive(e);
                side.did(Vec::new());
            }
            Wire::FromAgent(e) => {
                self.note(format!("router <- {} {:?} e{}", e.agent, e.body, e.epoch));
                let fx = self.router_input(RouterInput::FromAgent { at: now, envelope: e });
                self.router.did(fx.expect("an envelope is never refused"));
            }
        }
    }

    // ----- durability --------------------------------------------------------------------------

    /// Makes a side's live state durable, with its entries for desk streams (checked), then
    /// lets out what it did: effects (checked) and envelopes.
    fn commit(&mut self, who: Who) -> Result<(), String> {
        // What the write puts on desk streams: the router's entries, or a conversation
        // side's notes (with its open conversation and holding after the write).
        let mut router_desk = None;
        let mut side_desk = None;
        let (done, wire) = match who {
            Who::Router => {
                let n = &mut self.router;
                if !n.dirty {
                    return Ok(());
                }
                // Its tombstones are rows of their own, written with its state (as the
                // node's router actor writes them).
                // Its journal's rows: now and then a checkpoint (the log before it goes;
                // what waits held back on its links follows it), else the inputs as a row.
                let j = &mut self.journal;
                let inputs = std::mem::take(&mut j.pending);
                // As the node's router actor: when due, by chance (the node's rule is by
                // size), and when the checkpoint is half a `linger` old.
                let row = if j.due || self.rng.percent(15) || n.live.checkpoint_due(j.at, self.now)
                {
                    j.due = false;
                    j.at = self.now;
                    j.checkpoint = rmp_serde::to_vec(&n.live).expect("a side encodes");
                    j.covers = j.next();
                    j.rows.clear();
                    let held = journal::after_checkpoint(&n.live);
                    if !held.is_empty() {
                        j.rows.push(held);
                    }
                    None
                } else {
                    j.rows.push(inputs);
                    Some(j.next() - 1)
                };
                let (fresh, expired) = n.live.take_tombstones();
                self.tombstones.extend(fresh.into_iter().map(|(id, t)| (id, t.stored_with(row))));
                for id in expired {
                    self.tombstones.remove(&id);
                }
                // Its desk entries go in the same write as the decisions that made them.
                router_desk = Some(n.live.take_desk());
                n.durable = n.live.clone();
                n.dirty = false;
                let mut wire: Vec<Wire> =
                    n.live.outgoing().into_iter().map(Wire::ToConversation).collect();
                wire.extend(n.live.outgoing_agents().into_iter().map(Wire::ToAgent));
                // `outgoing()` changes the side: a settled link that left is put away.
                self.journal.pending.push(RouterInput::Sent);
                (std::mem::take(&mut n.done), wire)
            }
            Who::Agent(a) => {
                let n = &mut self.agents[a];
                if !n.dirty {
                    return Ok(());
                }
                n.durable = n.live.clone();
                n.dirty = false;
                checks::agent_committed(&mut self.heard[a], &self.to_agent, &n.durable)?;
                let wire = n.live.outgoing().into_iter().map(Wire::FromAgent).collect();
                (Vec::new(), wire)
            }
            Who::Side(u) => {
                let n = &mut self.sides[u];
                if !n.dirty {
                    return Ok(());
                }
                // Its notes for its holder's desk go in the same write as the steps that
                // made them.
                let written = n.live.take_desk();
                n.durable = n.live.clone();
                n.dirty = false;
                let open = n.durable.conversation().map(|c| (c.id, n.durable.holding()));
                side_desk = Some((u, written, open));
                let wire = n.live.outgoing().into_iter().map(Wire::ToRouter).collect();
                (std::mem::take(&mut n.done), wire)
            }
        };
        // The conversation notes among the effects (only a conversation side makes them).
        let mut notified = Vec::new();
        for d in done {
            match d {
                Done::Wrote(c) => {
                    self.budget.customer_wrote(c);
                    *self.desks.wrote.entry(c).or_default() += 1;
                }
                Done::Effect(e) => {
                    if let Effect::Notify { agent, note } = &e
                        && let Some(c) = checks::conversation_note(note)
                    {
                        notified.push((*agent, note.clone()));
                        self.desks.produced.entry((c, *agent)).or_default().push(note.clone());
                    }
                    if matches!(
                        e,
                        Effect::Notify { note: switchboard_core::Note::Assigned { .. }, .. }
                    ) {
                        self.stats.assigned += 1;
                    }
                    self.budget.observe(std::slice::from_ref(&e))?;
                }
            }
        }
        if let Some((u, written, open)) = side_desk {
            if !written.is_empty() {
                self.note(format!("u{u} writes on desks {written:?}"));
            }
            checks::side_wrote(&mut self.desks, CustomerId(u as u64), written, &notified, open)?;
        }
        for w in wire {
            self.send(w)?;
        }
        if let Some(written) = router_desk {
            if !written.is_empty() {
                self.note(format!("router writes on desks {written:?}"));
            }
            // Appended at the write; checked against the messages that left after it.
            checks::router_wrote(&mut self.desks, &self.to_agent, written)?;
            let durable = &self.router.durable;
            let left = (1..=self.next_conversation).map(ConversationId);
            self.desks.left.extend(left.filter(|c| durable.has_left(*c)));
        }
        Ok(())
    }

    fn commit_all(&mut self) -> Result<(), String> {
        self.commit(Who::Router)?;
        for u in 0..self.sides.len() {
            self.commit(Who::Side(u))?;
        }
        for a in 0..self.agents.len() {
            self.commit(Who::Agent(a))?;
        }
        Ok(())
    }

    /// Loses the live state and every envelope on its way to the side; restarts it from its
    /// durable state with a new epoch, which is durable before it sends anything.
    fn crash(&mut self, who: Who) -> Result<(), String> {
        self.stats.crashes += 1;
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.note(format!("crash {who:?}, restart at epoch {epoch}"));
        match who {
            Who::Router => {
                self.net.retain(|(_, w)| !matches!(w, Wire::ToRouter(_) | Wire::FromAgent(_)));
                let n = &mut self.router;
                n.crash();
                n.live.restore_tombstones(self.tombstones.clone());
                // The journal gives the same side: its checkpoint, the stored tombstones and
                // the log rows after it, replayed.
                let j = &mut self.journal;
                j.pending.clear();
                let mut side: RouterSide =
                    rmp_serde::from_slice(&j.checkpoint).expect("a checkpoint decodes");
                let stored = self.tombstones.iter().map(|(id, t)| (*id, *t)).collect();
                let inputs = j.rows.iter().flatten().cloned();
                self.stats.replays += u64::from(!j.rows.is_empty());
                journal::rebuild(&mut side, stored, j.covers, inputs, day);
                if durable(&side) != durable(&n.live) {
                    return Err(format!(
                        "the journal's replay differs from the durable side:\n{}",
                        differences(&durable(&side), &durable(&n.live))
                    ));
                }
                for c in (0..self.next_conversation).map(ConversationId) {
                    if side.has_left(c) != n.live.has_left(c) {
                        return Err(format!("the journal's replay differs on whether {c} left"));
                    }
                }
                j.due = true;
                n.live = side;
                n.live.restart(epoch, self.now);
                n.durable = n.live.clone();
            }
            Who::Side(u) => {
                self.net.retain(|(_, w)| match w {
                    Wire::ToConversation(e) => e.customer.0 as usize != u,
                    _ => true,
                });
                let n = &mut self.sides[u];
                n.crash();
                n.live.restart(epoch);
                n.durable = n.live.clone();
            }
            Who::Agent(a) => {
                self.net.retain(|(_, w)| match w {
                    Wire::ToAgent(e) => e.agent.0 as usize != a,
                    _ => true,
                });
                let n = &mut self.agents[a];
                n.crash();
                n.live.restart(epoch);
                n.durable = n.live.clone();
            }
        }
        // What was not acknowledged goes out again at once.
        self.router.dirty |= matches!(who, Who::Router);
        match who {
            Who::Side(u) => self.sides[u].dirty = true,
            Who::Agent(a) => self.agents[a].dirty = true,
            Who::Router => {}
        }
        self.commit(who)
    }

    /// Commits everything, resends what is unacknowledged, and delivers every envelope
    /// (shuffled, none lost or doubled) until nothing is in flight and nothing is owed.
    pub fn quiesce(&mut self) -> Result<(), String> {
        self.stats.quiesced += 1;
        self.note("quiesce".into());
        for _round in 0..50 {
            self.commit_all()?;
            while !self.net.is_empty() {
                let i = self.rng.index(self.net.len());
                let (_, wire) = self.net.swap_remove(i);
                self.deliver_one(wire);
                self.commit_all()?;
            }
            if !self.retransmit()? {
                return Ok(());
            }
        }
        Err("the network never went quiet: something is never acknowledged".into())
    }

    // ----- time --------------------------------------------------------------------------------

    /// Moves the clock (commits happen within it; a long jump lets the network settle first,
    /// as its retransmissions would have), fires every side's timers and resends what is
    /// unacknowledged.
    fn advance(&mut self, by: Duration) -> Result<(), String> {
        if by >= MAX_AGE {
            self.quiesce()?;
        } else {
            self.commit_all()?;
        }
        self.now = self.now + by;
        let now = self.now;
        self.note(format!("advance {}s", by.as_secs()));
        let fx = self.router_input(RouterInput::Advance { at: now });
        self.router.did(fx.expect("an advance is never refused"));
        let tenant = self.tenant.clone();
        for side in &mut self.sides {
            let fx = side.live.advance(tenant.cfg(), now);
            side.did(fx);
            side.live.take_ended();
        }
        if let Some(at) = self.router.live.next_deadline().filter(|at| *at <= now) {
            return Err(format!("the router still has a deadline at {at:?} due"));
        }
        for (u, side) in self.sides.iter().enumerate() {
            if let Some(at) = side.live.next_deadline(tenant.cfg()).filter(|at| *at <= now) {
                return Err(format!("customer {u} still has a deadline at {at:?} due"));
            }
        }
        self.commit_all()?;
        self.retransmit()?;
        Ok(())
    }

    /// Applies one input of the router side as the node's router actor does (its sign-ins
    /// noted in the side), and logs it for the journal, refused or not.
    pub(super) fn router_input(
        &mut self,
        input: RouterInput,
    ) -> switchboard_core::Result<Vec<Effect>> {
        let side = &mut self.router.live;
        let (at, fx) = match input.clone() {
            RouterInput::Deliver { at, envelope } => (at, Ok(side.receive(at, envelope))),
            RouterInput::FromAgent { at, envelope } => (at, Ok(side.receive_agent(at, envelope))),
            RouterInput::Op { at, op } => (at, side.apply_op(at, op)),
            RouterInput::Advance { at } => (at, Ok(side.advance(at))),
            other => unreachable!("not an input the simulation applies: {other:?}"),
        };
        self.journal.pending.push(input);
        let fx = fx?;
        side.note_logins(at, &fx, || day(at));
        Ok(fx)
    }

    /// Every side resends what is unacknowledged (as of its last commit); true if anything was.
    fn retransmit(&mut self) -> Result<bool, String> {
        let router = &self.router.durable;
        let mut wire: Vec<Wire> =
            router.retransmit().into_iter().map(Wire::ToConversation).collect();
        wire.extend(router.retransmit_agents().into_iter().map(Wire::ToAgent));
        for side in &self.sides {
            wire.extend(side.durable.retransmit().into_iter().map(Wire::ToRouter));
        }
        for agent in &self.agents {
            wire.extend(agent.durable.retransmit().into_iter().map(Wire::FromAgent));
        }
        let resent = !wire.is_empty();
        for w in wire {
            self.send(w)?;
        }
        Ok(resent)
    }
}

/// Records a message put on a link; a sequence number must never carry two different ones.
fn once<K: Ord + Copy + std::fmt::Display, M: Clone + PartialEq + std::fmt::Debug>(
    sent: &mut BTreeMap<(K, u64), M>,
    link: K,
    body: &Body<M>,
    direction: &str,
) -> Result<(), String> {
    if let Body::Message { seq, message } = body {
        let old = sent.entry((link, *seq)).or_insert_with(|| message.clone());
        if old != message {
            return Err(format!("{link} seq {seq} {direction} carried {old:?}, now {message:?}"));
        }
    }
    Ok(())
}

/// A customer message: a keyword now and then, a group or a priority now and then.
pub fn random_message(rng: &mut Rng, customer: CustomerId, id: ConversationId) -> CustomerMessage {
    CustomerMessage {
        customer,
        channel: Channel::ALL[rng.index(Channel::ALL.len())],
        text: if rng.percent(30) { "what is the price?" } else { "hello" }.into(),
        new_conversation: id,
        group: rng.percent(20).then(|| GroupId(rng.below(GROUPS))),
        priority: rng.percent(20).then(|| rng.below(4) as u8),
    }
}

/// Where a random transfer sends a conversation.
pub fn random_target(rng: &mut Rng) -> Target {
    if rng.percent(50) {
        Target::Agent(AgentId(rng.below(AGENTS)))
    } else {
        Target::Group { group: GroupId(rng.below(GROUPS)), keep_entry_time: rng.percent(50) }
    }
}

/// A tenant setup drawn like the property tests draw theirs.
pub fn random_setup(rng: &mut Rng) -> Setup {
    Setup {
        transfer_to_human: rng.percent(50),
        groups: (0..GROUPS).map(|_| (rng.index(3), rng.index(3), rng.percent(50))).collect(),
        agents: (0..AGENTS)
            .map(|_| {
                let n = 1 + rng.index(2);
                (1 + rng.below(3) as u32, (0..n).map(|_| rng.below(GROUPS)).collect())
            })
            .collect(),
        customers: (0..CUSTOMERS)
            .map(|_| (rng.below(3) as u8, rng.percent(30).then(|| rng.below(AGENTS))))
            .collect(),
        reserve: rng.below(3) as u32,
        grace: if rng.percent(50) { 0 } else { 60 },
        misses: rng.below(3) as u32,
        // Of issue 14's rules the mesh draws only overflow (item 2: a refusal ends the
        // conversation on the router's word); no proficiency levels.
        rules: (0..GROUPS)
            .map(|_| model::GroupRules {
                overflow: rng.percent(40).then(|| {
                    let cap = rng.percent(60).then(|| 1 + rng.below(4) as u32);
                    let wait = rng.percent(60).then(|| 1 + rng.below(300));
                    (cap, wait, rng.below(GROUPS))
                }),
                ..Default::default()
            })
            .collect(),
        levels: Vec::new(),
        tenant_hours: None,
        zone: (0, None),
    }
}

/// Where two values differ, as paths (for a failure's message).
fn differences(a: &serde_json::Value, b: &serde_json::Value) -> String {
    fn walk(a: &serde_json::Value, b: &serde_json::Value, path: String, out: &mut Vec<String>) {
        use serde_json::Value::{Array, Object};
        match (a, b) {
            (Object(x), Object(y)) => {
                let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let null = serde_json::Value::Null;
                    let (u, v) = (x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null));
                    walk(u, v, format!("{path}.{k}"), out);
                }
            }
            (Array(x), Array(y)) if x.len() == y.len() => {
                for (i, (u, v)) in x.iter().zip(y).enumerate() {
                    walk(u, v, format!("{path}[{i}]"), out);
                }
            }
            _ if a != b => out.push(format!("{path}: replayed {a}, durable {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(a, b, String::new(), &mut out);
    out.truncate(20);
    out.join("\n")
}
