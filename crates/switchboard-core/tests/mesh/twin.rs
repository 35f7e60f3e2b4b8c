//! The engine and the three kinds of side (router, conversations, agents) side by side, over a perfect network (every message delivered
//! at once, in order, once). The protocol must then change nothing the engine decides: the
//! same refusals, the same conversations in the same states with the same transitions, times,
//! counters and budgets, the same placements and agents, the same effects (replies, agent
//! notes, events) for every operation, and per conversation the same replies in the same
//! order, except for the digits of a text: a queue position shown in a reply may be one
//! message stale on the sides (ARCHITECTURE.md, "Cross-actor protocol"). Agent commands go
//! through the agent sides, and each agent side must end every step with the engine's status
//! and holdings of its agent. Each agent's desk stream is what the router side and the
//! conversation sides write on it (their `take_desk`, at each write: here, before each one
//! sends), in write order, and must show the engine's notes for the agent.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use switchboard_core::config::CustomerSettings;
use switchboard_core::mesh::desk::is_conversation_note;
use switchboard_core::mesh::{AgentSide, Body, ConversationSide, DeskEvent, RouterSide, ToAgent};
use switchboard_core::router::StatusCause;
use switchboard_core::{
    Actor, AgentId, AgentStatus, Channel, ConversationId, CustomerId, Effect, Engine, Note,
    Selection, Sender, Timestamp,
};

use crate::checks;
use crate::model::{self, AGENTS, CUSTOMERS};
use crate::sim::{LINGER, Rng, Tenant, random_message, random_setup, random_target};

/// What one operation returned: its effects, or why it was refused.
type Outcome = Result<Vec<Effect>, String>;

/// Per conversation, who sent what, with digits masked (a queue position may differ).
type Sends = BTreeMap<ConversationId, Vec<(Sender, String)>>;

/// An agent's notes per conversation (`None`: its own status).
type NotesByKey = BTreeMap<Option<ConversationId>, Vec<Note>>;

struct Twin {
    rng: Rng,
    now: Timestamp,
    engine: Engine,
    tenant: Rc<Tenant>,
    router: RouterSide,
    sides: Vec<ConversationSide>,
    agents: Vec<AgentSide>,
    engine_sends: Sends,
    mesh_sends: Sends,
    /// Replies compared, and those whose digits differed (a stale queue position).
    replies: u64,
    stale: u64,
    /// Per agent, the engine's `Notify` notes, and the notes of its desk stream as the router
    /// side and the conversation sides wrote it (refusals are the commands' refusals), with
    /// how much of each the last step compared.
    engine_desks: Vec<Vec<Note>>,
    mesh_desks: Vec<Vec<Note>>,
    compared: Vec<(usize, usize)>,
    /// The same per conversation (`None`: the agent's own status), engine and desk.
    by_key: Vec<(NotesByKey, NotesByKey)>,
    /// Steps whose new desk notes came in another order across conversations, and those
    /// among them where the conversation sides' own notes alone did.
    reordered: u64,
    reordered_links: u64,
    next_conversation: u64,
    trace: Vec<String>,
}

/// Runs one seed; returns what it compared.
pub fn run(seed: u64, steps: usize) -> Result<Compared, String> {
    let mut rng = Rng::new(seed);
    let setup = random_setup(&mut rng);
    let mut engine = model::build(&setup);
    let t0 = Timestamp(1_000);
    for a in 0..AGENTS {
        if rng.percent(70) {
            let agent = AgentId(a);
            engine.set_agent_status(t0, agent, AgentStatus::Online, Actor::Agent(agent)).unwrap();
        }
    }
    let tenant = Tenant::of(&engine);
    let router = RouterSide::new(engine.router().clone(), LINGER).with_agent_links();
    let agents = (0..AGENTS)
        .map(|a| AgentSide::new(AgentId(a), engine.router().agent(AgentId(a)).unwrap().status))
        .collect();
    let sides = (0..CUSTOMERS)
        .map(|u| {
            let customer = engine.customer(CustomerId(u)).cloned().unwrap_or_default();
            ConversationSide::new(CustomerId(u), customer).with_desk()
        })
        .collect();
    let mut twin = Twin {
        rng,
        now: t0,
        engine,
        tenant: Rc::new(tenant),
        router,
        sides,
        agents,
        engine_sends: Sends::new(),
        mesh_sends: Sends::new(),
        replies: 0,
        stale: 0,
        engine_desks: vec![Vec::new(); AGENTS as usize],
        mesh_desks: vec![Vec::new(); AGENTS as usize],
        compared: vec![(0, 0); AGENTS as usize],
        by_key: vec![Default::default(); AGENTS as usize],
        reordered: 0,
        reordered_links: 0,
        next_conversation: 0,
        trace: Vec::new(),
    };
    for step in 0..steps {
        let checked = twin.step().and_then(|()| twin.compare());
        if let Err(why) = checked {
            let mut s = format!(
                "twin seed {seed} diverged at step {step}: {why}\nreplay: SIM_SEED={seed} cargo test -p switchboard-core --test mesh\nlast actions:\n"
            );
            for t in twin.trace.iter().rev().take(30).rev() {
                s.push_str(&format!("  {t}\n"));
            }
            return Err(s);
        }
    }
    Ok(Compared {
        replies: twin.replies,
        stale: twin.stale,
        reordered: twin.reordered,
        reordered_links: twin.reordered_links,
    })
}

/// What one seed compared.
#[derive(Debug, Default, Clone, Copy)]
pub struct Compared {
    /// Replies compared, and those whose digits differed (a stale queue position).
    pub replies: u64,
    pub stale: u64,
    /// Steps whose new desk notes for one agent came in another order across conversations
    /// (each conversation's own order being the engine's), and those where the conversation
    /// sides' own notes alone did.
    pub reordered: u64,
    pub reordered_links: u64,
}

/// Every effect as text, the digits of reply texts masked, for comparing as multisets.
/// `Purge` is left out: the sides hand an ended conversation out with its retention deadline
/// (as the node does with the engine's `take_ended`), where this engine keeps it until it
/// purges it.
fn masked(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter(|e| !matches!(e, Effect::Purge { .. }))
        .map(|e| match e {
            Effect::Send { conversation, channel, text, from, tag } => {
                let text = mask(text);
                format!(
                    "{:?}",
                    Effect::Send {
                        conversation: *conversation,
                        channel: *channel,
                        text,
                        from: *from,
                        tag: *tag
                    }
                )
            }
            e => format!("{e:?}"),
        })
        .collect()
}

fn mask(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).collect()
}

fn sends(effects: &[Effect]) -> Vec<(ConversationId, Sender, &str)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { conversation, from, text, .. } => Some((*conversation, *from, &**text)),
            _ => None,
        })
        .collect()
}

fn record(sends: &mut Sends, list: &[(ConversationId, Sender, &str)]) {
    for (conversation, from, text) in list {
        sends.entry(*conversation).or_default().push((*from, mask(text)));
    }
}

impl Twin {
    fn step(&mut self) -> Result<(), String> {
        self.now = self.now + Duration::from_millis(250);
        let now = self.now;
        let u = self.rng.index(CUSTOMERS as usize);
        let open = self.engine.customer(CustomerId(u as u64)).and_then(|c| c.open);
        let tenant = self.tenant.clone();
        let cfg = tenant.cfg();
        let supervisor = Actor::Supervisor(AgentId(99));
        // Each arm runs the same operation on the engine and on the sides.
        let (what, engine, mesh): (String, Outcome, Outcome) = match self.rng.below(25) {
            0..=5 => {
                self.next_conversation += 1;
                let id = ConversationId(self.next_conversation);
                let msg = random_message(&mut self.rng, CustomerId(u as u64), id);
                let e = self.engine.customer_message(now, msg.clone()).map(|o| o.effects);
                let m = self.sides[u].customer_message(cfg, now, msg).map(|o| o.effects);
                ("customer message".into(), err(e), err(m))
            }
            6 => {
                self.next_conversation += 1;
                let channel = Channel::ALL[self.rng.index(Channel::ALL.len())];
                let id = ConversationId(self.next_conversation);
                let customer = CustomerId(u as u64);
                let e = self.engine.open_service(now, customer, channel, id).map(|o| o.effects);
                let m = self.sides[u].open_service(cfg, now, channel, id).map(|o| o.effects);
                ("open service".into(), err(e), err(m))
            }
            7..=9 => {
                let Some(c) = open else { return Ok(()) };
                let e = self.engine.request_human(now, c);
                let m = self.sides[u].request_human(cfg, now, c);
                (format!("{c} request human"), err(e), err(m))
            }
            10 => {
                let Some(c) = open else { return Ok(()) };
                let agent = self.engine.conversation(c).and_then(|c| c.agent);
                let by = match agent {
                    Some(a) if self.rng.percent(60) => Actor::Agent(a),
                    _ => supervisor,
                };
                let e = self.engine.end(now, c, by);
                let m = self.sides[u].end(cfg, now, c, by);
                (format!("{c} end by {by:?}"), err(e), err(m))
            }
            11 => {
                let Some(c) = open else { return Ok(()) };
                if self.rng.percent(50) {
                    let (results, fx) = self.engine.end_batch(now, &[c]);
                    let e = results[0].1.clone().map(|()| fx);
                    let m = self.sides[u].end_in_batch(cfg, now, c);
                    (format!("{c} end in batch"), err(e), err(m))
                } else {
                    let e = self.engine.channel_closed(now, c);
                    let m = self.sides[u].channel_closed(cfg, now, c);
                    (format!("{c} channel closed"), err(e), err(m))
                }
            }
            12..=14 => {
                let held = checks::held(self.engine.router(), true);
                if held.is_empty() {
                    return Ok(());
                }
                let (c, holder) = held[self.rng.index(held.len())];
                let from =
                    if self.rng.percent(15) { AgentId((holder.0 + 1) % AGENTS) } else { holder };
                let text = "hello from the desk";
                let e = self.engine.agent_message(now, from, c, text, None);
                let side = self.router.customer_of(c).map(|u| u.0 as usize);
                let m = match side {
                    Some(u) => self.sides[u].agent_message(cfg, now, c, from, text, None),
                    None => Err(switchboard_core::Error::UnknownConversation(c)),
                };
                (format!("{from} writes in {c}"), err(e), err(m))
            }
            15 => {
                let Some(c) = open else { return Ok(()) };
                let on = self.rng.percent(50);
                let (_, e) =
                    self.engine.set_bot_hosting(now, &Selection::Conversations(vec![c]), on);
                let m = self.sides[u].set_bot_hosting(cfg, c, on).map(|(_, fx)| fx);
                (format!("{c} bot hosting {on}"), Ok(e), err(m))
            }
            16 | 17 => {
                let agent = AgentId(self.rng.below(AGENTS));
                let status = if self.rng.percent(50) {
                    AgentStatus::Online
                } else {
                    AgentStatus::ALL[self.rng.index(5)]
                };
                let (by, cause) = if self.rng.percent(30) {
                    (supervisor, StatusCause::Supervisor)
                } else {
                    (Actor::Agent(agent), StatusCause::Agent)
                };
                let e = self.engine.set_agent_status(now, agent, status, by);
                let m = self.desk(agent, |d| d.set_status(status, cause));
                (format!("{agent} {status:?}"), err(e), m)
            }
            18 | 19 => {
                let held = checks::held(self.engine.router(), false);
                if held.is_empty() {
                    return Ok(());
                }
                let (c, holder) = held[self.rng.index(held.len())];
                if self.rng.percent(60) {
                    let e = self.engine.accept(now, holder, c);
                    let m = self.desk(holder, |d| d.accept(c));
                    (format!("{holder} accepts {c}"), err(e), m)
                } else {
                    let e = self.engine.decline(now, holder, c);
                    let m = self.desk(holder, |d| d.decline(c));
                    (format!("{holder} declines {c}"), err(e), m)
                }
            }
            20 => {
                let waiting = checks::waiting(self.engine.router());
                if waiting.is_empty() {
                    return Ok(());
                }
                let c = waiting[self.rng.index(waiting.len())];
                let agent = AgentId(self.rng.below(AGENTS));
                let e = self.engine.pick(now, agent, c);
                let m = self.desk(agent, |d| d.pick(c));
                (format!("{agent} picks {c}"), err(e), m)
            }
            21 => {
                let placed = checks::placed(self.engine.router());
                if placed.is_empty() {
                    return Ok(());
                }
                let c = placed[self.rng.index(placed.len())];
                let target = random_target(&mut self.rng);
                // Mostly a supervisor; now and then an agent, who must hold it.
                let by = if self.rng.percent(30) {
                    Actor::Agent(AgentId(self.rng.below(AGENTS)))
                } else {
                    supervisor
                };
                let e = self.engine.transfer(now, c, target, by);
                let m = self.router.transfer(now, c, target, by);
                (format!("{by:?} transfers {c} to {target:?}"), err(e), err(m))
            }
            22 => {
                let agent = AgentId(self.rng.below(AGENTS));
                let mut settings = self.engine.agent_settings(agent).unwrap().clone();
                settings.capacity = 1 + self.rng.below(3) as u32;
                let (capacity, groups) = (settings.capacity, settings.groups.clone());
                let e = self.engine.upsert_agent(now, agent, settings);
                let m = self.router.set_agent(now, agent, capacity, groups);
                (format!("{agent} capacity {capacity}"), err(e), err(m))
            }
            23 => {
                // An administrator changes the customer's dedicated agent (PutCustomer).
                let dedicated = (!self.rng.percent(30)).then(|| AgentId(self.rng.below(AGENTS)));
                let customer = CustomerId(u as u64);
                let settings = CustomerSettings {
                    dedicated_agent: dedicated,
                    ..self.sides[u].customer().settings.clone()
                };
                let e = self.engine.upsert_customer(now, customer, settings.clone());
                let m = self.sides[u].put_customer(cfg, settings).map(|()| Vec::new());
                (format!("{customer} dedicated agent {dedicated:?}"), err(e), err(m))
            }
            _ => {
                let secs = match self.rng.below(10) {
                    0..=6 => self.rng.below(60),
                    7 | 8 => 60 + self.rng.below(900),
                    _ => 3 * 86_400,
                };
                // Deadline by deadline, so that both fire each at its own time.
                let target = self.now + Duration::from_secs(secs);
                let (mut e, mut m) = (Vec::new(), Vec::new());
                while let Some(at) = self.next_deadline().filter(|at| *at <= target) {
                    self.now = self.now.max(at);
                    let now = self.now;
                    e.extend(self.engine.advance(now));
                    // Router deadlines first, then the conversations' in id order, as the
                    // engine does at one instant.
                    loop {
                        if self.router.next_deadline().is_some_and(|at| at <= now) {
                            m.extend(self.router.advance(now));
                        } else if let Some(u) = (0..self.sides.len())
                            .filter(|u| {
                                self.sides[*u].next_deadline(cfg).is_some_and(|at| at <= now)
                            })
                            .min_by_key(|u| self.sides[*u].conversation().map(|c| c.id))
                        {
                            m.extend(self.sides[u].advance(cfg, now));
                        } else {
                            break;
                        }
                        m.extend(self.flush());
                    }
                }
                self.now = target;
                (format!("advance {secs}s"), Ok(e), Ok(m))
            }
        };
        let mut mesh = mesh;
        if let Ok(fx) = &mut mesh {
            fx.extend(self.flush());
        }
        self.trace.push(format!("t={} {what}: engine {engine:?}\n     sides {mesh:?}", self.now.0));
        match (engine, mesh) {
            (Ok(e), Ok(m)) => {
                for fx in &e {
                    if let Effect::Notify { agent, note } = fx {
                        self.engine_desks[agent.0 as usize].push(note.clone());
                    }
                }
                let (mut all_e, mut all_m) = (masked(&e), masked(&m));
                all_e.sort();
                all_m.sort();
                if all_e != all_m {
                    return Err(format!(
                        "{what}: other effects\n  engine {all_e:?}\n  sides  {all_m:?}"
                    ));
                }
                let (e, m) = (sends(&e), sends(&m));
                record(&mut self.engine_sends, &e);
                record(&mut self.mesh_sends, &m);
                // Same conversations in another order across conversations: compare per one.
                for (c, from, text) in &e {
                    self.replies += 1;
                    let theirs = m.iter().filter(|(d, f, _)| d == c && f == from);
                    if theirs.clone().count() > 0 && !theirs.clone().any(|(_, _, t)| t == text) {
                        self.stale += 1;
                    }
                }
                Ok(())
            }
            (Err(_), Err(_)) => Ok(()),
            (e, m) => Err(format!("{what}: the engine says {e:?}, the sides say {m:?}")),
        }
    }

    /// An agent command on its agent side, delivered at once to the router and its answer
    /// back: the router's refusal of it is the command's refusal.
    fn desk(&mut self, agent: AgentId, command: impl FnOnce(&mut AgentSide) -> u64) -> Outcome {
        let a = agent.0 as usize;
        let n = command(&mut self.agents[a]);
        let mut out = Vec::new();
        for e in self.agents[a].outgoing() {
            out.extend(self.router.receive_agent(self.now, e));
        }
        self.router_writes();
        let mut refused = None;
        for e in self.router.outgoing_agents() {
            if let Body::Message { message: ToAgent::Refused { command, reason, .. }, .. } = &e.body
                && e.agent == agent
                && *command == n
            {
                refused = Some(reason.clone());
            }
            self.agents[e.agent.0 as usize].receive(e);
        }
        // The agent side heard the answer (a `Done` or that refusal) on its link.
        let heard = self.agents[a].decision(n).map(|r| r.map(str::to_owned));
        assert_eq!(heard, Some(refused.clone()), "command {n} of {agent} answered on its link");
        match refused {
            Some(why) => Err(why),
            None => Ok(out),
        }
    }

    /// The earliest deadline of the engine or any side.
    fn next_deadline(&self) -> Option<Timestamp> {
        let cfg = self.tenant.cfg();
        let sides = self.sides.iter().filter_map(|s| s.next_deadline(cfg));
        [self.engine.next_deadline(), self.router.next_deadline()]
            .into_iter()
            .flatten()
            .chain(sides)
            .min()
    }

    /// The router side's write: its desk entries go on its agents' streams (their notes are
    /// what is compared; refusals are the commands' refusals, changes of an unaccepted list
    /// are not notes).
    fn router_writes(&mut self) {
        for (agent, event) in self.router.take_desk() {
            if let DeskEvent::Note(note) = event {
                self.mesh_desks[agent.0 as usize].push(note);
            }
        }
    }

    /// Customer `u`'s side's write: its notes go on its holder's stream.
    fn side_writes(&mut self, u: usize) {
        for (agent, note) in self.sides[u].take_desk() {
            self.mesh_desks[agent.0 as usize].push(note);
        }
    }

    /// Delivers every envelope at once, in order, until nothing is owed; each side writes
    /// (its desk entries) before it sends.
    fn flush(&mut self) -> Vec<Effect> {
        let tenant = self.tenant.clone();
        let cfg = tenant.cfg();
        let mut out = Vec::new();
        loop {
            let mut any = false;
            self.router_writes();
            for e in self.router.outgoing() {
                any = true;
                let u = e.customer.0 as usize;
                out.extend(self.sides[u].receive(cfg, self.now, e));
            }
            for e in self.router.outgoing_agents() {
                any = true;
                self.agents[e.agent.0 as usize].receive(e);
            }
            for u in 0..self.sides.len() {
                self.side_writes(u);
                for e in self.sides[u].outgoing() {
                    any = true;
                    out.extend(self.router.receive(self.now, e));
                }
            }
            for desk in &mut self.agents {
                for e in desk.outgoing() {
                    any = true;
                    out.extend(self.router.receive_agent(self.now, e));
                }
            }
            if !any {
                return out;
            }
        }
    }

    /// An agent's desk stream against the engine's notes for that agent: the same notes of
    /// each conversation (and of the agent itself) in the same order. Across conversations
    /// the order may differ (counted): a conversation's own notes are its side's writes.
    fn compare_desk(&mut self, a: usize) -> Result<(), String> {
        let key = Note::conversation;
        let (from_e, from_m) = self.compared[a];
        let (e, m) = (&self.engine_desks[a], &self.mesh_desks[a]);
        let (ke, km) = &mut self.by_key[a];
        let mut touched = Vec::new();
        for (notes, map) in [(&e[from_e..], &mut *ke), (&m[from_m..], &mut *km)] {
            for n in notes {
                touched.push(key(n));
                map.entry(key(n)).or_default().push(n.clone());
            }
        }
        if let Some(k) = touched.into_iter().find(|k| ke.get(k) != km.get(k)) {
            return Err(format!(
                "a{a}'s desk differs from the engine's notes about {k:?}: engine {:?}, desk {:?}",
                ke.get(&k),
                km.get(&k)
            ));
        }
        if e[from_e..] != m[from_m..] {
            self.reordered += 1;
            let links = |notes: &[Note]| -> Vec<Note> {
                notes.iter().filter(|n| is_conversation_note(n)).cloned().collect()
            };
            if links(&e[from_e..]) != links(&m[from_m..]) {
                self.reordered_links += 1;
            }
        }
        self.compared[a] = (e.len(), m.len());
        Ok(())
    }

    fn compare(&mut self) -> Result<(), String> {
        for (u, side) in self.sides.iter_mut().enumerate() {
            side.take_ended();
            let customer = self.engine.customer(CustomerId(u as u64));
            let open = customer.and_then(|c| c.open);
            if open != side.conversation().map(|c| c.id) {
                return Err(format!(
                    "customer {u}: the engine has {open:?} open, the side {:?}",
                    side.conversation().map(|c| c.id)
                ));
            }
            let last = customer.and_then(|c| c.last_agent);
            if last != side.customer().last_agent {
                return Err(format!(
                    "customer {u}: last agent {last:?} in the engine, {:?} on the side",
                    side.customer().last_agent
                ));
            }
            let Some(c) = open else { continue };
            if self.engine.conversation(c) != side.conversation() {
                return Err(format!(
                    "{c} differs:\n  engine {:?}\n  sides  {:?}",
                    self.engine.conversation(c),
                    side.conversation()
                ));
            }
            let (e, m) = (self.engine.router().placement(c), self.router.router().placement(c));
            if e != m {
                return Err(format!("{c} placed {e:?} by the engine, {m:?} by the router side"));
            }
        }
        for a in 0..AGENTS {
            let e = self.engine.router().agent(AgentId(a)).unwrap();
            let m = self.router.router().agent(AgentId(a)).unwrap();
            if (e.status, &e.assigned, &e.offered) != (m.status, &m.assigned, &m.offered) {
                return Err(format!("a{a}: {e:?} in the engine, {m:?} on the router side"));
            }
            let d = &self.agents[a as usize];
            let (offered, assigned) = (d.offered().iter(), d.assigned().iter());
            if d.status() != e.status
                || !offered.eq(e.offered.iter().collect::<std::collections::BTreeSet<_>>())
                || !assigned.eq(e.assigned.iter().collect::<std::collections::BTreeSet<_>>())
            {
                return Err(format!(
                    "a{a}: {e:?} in the engine; its desk: {:?}, offered {:?}, assigned {:?}",
                    d.status(),
                    d.offered(),
                    d.assigned()
                ));
            }
        }
        for a in 0..AGENTS as usize {
            self.compare_desk(a)?;
        }
        if self.engine_sends != self.mesh_sends {
            let diff = self
                .engine_sends
                .iter()
                .find(|(c, s)| self.mesh_sends.get(*c) != Some(*s))
                .map(|(c, s)| (c, s.clone(), self.mesh_sends.get(c).cloned()));
            return Err(format!("replies differ: (conversation, engine, sides) {diff:?}"));
        }
        Ok(())
    }
}

fn err(r: switchboard_core::Result<Vec<Effect>>) -> Result<Vec<Effect>, String> {
    r.map_err(|e| e.to_string())
}
