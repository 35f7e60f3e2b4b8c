//! The discrete-event loop: arrivals, bot stages, abandonment, service ends and shift changes
//! as future events keyed by virtual time, interleaved with the engine's own deadlines
//! (`next_deadline` / `advance`). Everything goes straight through `switchboard_core::Engine`;
//! assignments are read back from its `Event::Assigned` effects.
//!
//! Memory stays flat however many contacts a run has: a contact's record lives only while it
//! is open and goes into the streaming statistics ([`Stats`]) when the engine reports its end;
//! at that moment the driver also takes the ended conversation out of the engine
//! (`take_ended`) and forgets its customer (`evict_customer`), as a node hands them to its
//! store.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use switchboard_core::config::{AgentSettings, GroupSettings, TenantSettings};
use switchboard_core::{
    Actor, AgentId, AgentStatus, Cause, Channel, ConversationId, CustomerId, CustomerMessage,
    Effect, Engine, Event, GroupId, Timestamp,
};

use crate::report::{Fate, Stats};
use crate::{Error, Result};

/// One contact, as a scenario describes it. Times are virtual milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub at: u64,
    pub group: u32,
    pub priority: u8,
    /// Time in the bot stage before asking for a human; `None` routes at once.
    pub bot: Option<u64>,
    /// The customer leaves at the end of the bot stage instead of asking for a human.
    pub leaves_in_bot: bool,
    /// Handle time once an agent has it.
    pub handle: u64,
    /// Time in the queue after which the customer leaves; `None` waits forever.
    pub patience: Option<u64>,
}

/// An agent coming online (`true`) or going busy at the end of its shift (`false`): it keeps
/// and finishes what it holds but receives no new work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shift {
    pub at: u64,
    pub agent: u32,
    pub online: bool,
}

/// The center being simulated: the core's own settings, so a tenant's real configuration
/// runs as it is. Group number `g` (what arrivals and [`Stats`] name) is the core's
/// [`group_id`]`(g)`, agent number `a` is [`agent_id`]`(a)`.
#[derive(Debug, Clone)]
pub struct Center {
    /// `transfer_to_human` opens conversations in the bot stage (needed when arrivals have a
    /// `bot` time).
    pub tenant: TenantSettings,
    /// One per skill group, in group-number order.
    pub groups: Vec<GroupSettings>,
    /// One per agent, in agent-number order; `groups` holds [`group_id`]s.
    pub agents: Vec<AgentSettings>,
    /// Measure from here to `window.1` (virtual ms): contacts by queue-entry time, agent time
    /// clipped to the window.
    pub window: (u64, u64),
    /// Service-level target, ms.
    pub target_ms: u64,
    /// Batches of the window, for the batch-means standard errors.
    pub batches: u32,
    /// Per agent (by number), how long it takes over a contact relative to the contact's
    /// handle time (e.g. 0.8 for an expert); agents beyond the list take 1.0.
    pub pace: Vec<f64>,
}

impl Center {
    /// `groups` skill groups with the core's default policy, and agents of capacity 1 in the
    /// given groups (by number): the centers the Erlang models describe.
    pub fn uniform(
        groups: usize,
        agents: &[Vec<u32>],
        window: (u64, u64),
        target_ms: u64,
        batches: u32,
    ) -> Self {
        let groups = (0..groups)
            .map(|g| GroupSettings { name: format!("g{g}"), ..GroupSettings::default() })
            .collect();
        let agents = agents
            .iter()
            .map(|gs| AgentSettings {
                capacity: 1,
                groups: gs.iter().map(|g| group_id(*g)).collect(),
                ..AgentSettings::default()
            })
            .collect();
        Center {
            tenant: TenantSettings::default(),
            groups,
            agents,
            window,
            target_ms,
            batches,
            pace: Vec::new(),
        }
    }
}

/// What happened to one contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Open,
    Served,
    Abandoned,
    LeftInBot,
    /// Ended by the core for another reason (e.g. the reply window closed while queued).
    Unserved,
}

/// What the driver knows of an open contact, keyed by arrival number; dropped at its end.
#[derive(Debug, Clone, Copy)]
struct Track {
    group: u32,
    priority: u8,
    queued_at: Option<u64>,
    assigned_at: Option<u64>,
    outcome: Outcome,
    handle: u64,
    patience: Option<u64>,
    /// The core's estimated wait (ms) when it entered the queue and was not taken at once.
    predicted: Option<u64>,
}

/// How well the core's estimated wait (issue 14 item 7) predicted the realised wait, over
/// contacts queued within the window that were served after waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EwtAccuracy {
    /// Served contacts that had an estimate at queue entry.
    pub estimated: u64,
    /// Their summed |predicted − realised| wait, ms.
    pub abs_error_ms: u64,
    pub predicted_ms: u64,
    pub realised_ms: u64,
    /// Served after waiting, with no estimate at queue entry (the group had served nobody).
    pub without: u64,
}

impl EwtAccuracy {
    /// Mean absolute error, seconds.
    pub fn mae_secs(&self) -> Option<f64> {
        (self.estimated > 0).then(|| self.abs_error_ms as f64 / self.estimated as f64 / 1000.0)
    }

    /// Mean predicted and mean realised wait, seconds.
    pub fn means_secs(&self) -> Option<(f64, f64)> {
        let n = self.estimated as f64;
        (self.estimated > 0)
            .then(|| (self.predicted_ms as f64 / n / 1000.0, self.realised_ms as f64 / n / 1000.0))
    }

    fn add(&mut self, predicted: Option<u64>, realised: u64) {
        match predicted {
            Some(p) => {
                self.estimated += 1;
                self.abs_error_ms += p.abs_diff(realised);
                self.predicted_ms += p;
                self.realised_ms += realised;
            }
            None => self.without += 1,
        }
    }
}

impl Track {
    /// Counts the contact in `stats` and, by its priority, in `by_priority` (if it reached
    /// the queue).
    fn settle(&self, stats: &mut Stats, by_priority: &mut Stats, ewt: &mut EwtAccuracy) {
        if self.outcome == Outcome::LeftInBot {
            stats.add_left_in_bot(self.group);
        }
        let Some(queued) = self.queued_at else { return };
        if let Some(at) = self.assigned_at
            && (at > queued || self.predicted.is_some())
            && stats.in_window(queued)
        {
            ewt.add(self.predicted, at - queued);
        }
        let fate = match (self.assigned_at, self.outcome) {
            (Some(at), _) => Fate::Served { wait: at - queued },
            (None, Outcome::Abandoned) => Fate::Abandoned,
            (None, _) => Fate::Unserved,
        };
        stats.add(self.group, queued, fate);
        by_priority.add(u32::from(self.priority), queued, fate);
    }
}

/// The most the run held at once (sampled at every arrival): what must not grow with the
/// number of contacts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    /// Open contacts' records in the driver.
    pub tracks: usize,
    /// Pending events (bot stages, patience timers, service ends).
    pub events: usize,
    pub engine_customers: usize,
    pub engine_conversations: usize,
}

impl Retained {
    fn max(self, o: Retained) -> Retained {
        Retained {
            tracks: self.tracks.max(o.tracks),
            events: self.events.max(o.events),
            engine_customers: self.engine_customers.max(o.engine_customers),
            engine_conversations: self.engine_conversations.max(o.engine_conversations),
        }
    }
}

/// Busy and available time of the agents, clipped to the window.
#[derive(Debug, Clone, Default)]
struct AgentTime {
    online: bool,
    load: u32,
    capacity: u32,
    since: u64,
    /// Per batch of the window.
    slots: Vec<Slots>,
}

/// One agent's conversation slots over the window, in slot-milliseconds: `busy` is the sum
/// of its load over time, `available` its capacity over the time it was online or still
/// serving. `busy / available` is its occupancy as a chat center counts it (a capacity-3
/// agent with one conversation is a third occupied).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Slots {
    pub busy: u64,
    pub available: u64,
}

/// What a run leaves behind for the report.
#[derive(Debug, Clone)]
pub struct Run {
    pub stats: Stats,
    /// The same figures by the arrivals' priority (0-255) instead of their group, all
    /// groups together: what priority aging changes.
    pub by_priority: Stats,
    /// How well the core's estimated wait predicted the realised one.
    pub ewt: EwtAccuracy,
    /// Contacts that arrived.
    pub arrived: u64,
    pub peak: Retained,
    pub busy_ms: u64,
    pub available_ms: u64,
    /// Engine calls made (operations plus `advance`).
    pub engine_calls: u64,
    /// `slots[agent][batch]`: each agent's slot time in each batch of the window (the
    /// batches of [`Stats`]).
    pub slots: Vec<Vec<Slots>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Human(u64),
    LeaveBot(u64),
    Abandon(u64),
    EndService(u64, u32),
    /// The agent's wrap-up after a conversation ends (the core frees the slot by its own
    /// deadline at the same instant; this only keeps the slot-time bookkeeping).
    WrapUpEnd(u32),
}

struct Sim {
    engine: Engine,
    events: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    arrived: u64,
    open: HashMap<u64, Track>,
    stats: Stats,
    by_priority: Stats,
    ewt: EwtAccuracy,
    peak: Retained,
    agents: Vec<AgentTime>,
    window: (u64, u64),
    busy_ms: u64,
    available_ms: u64,
    calls: u64,
    pace: Vec<f64>,
}

fn conv_id(i: u64) -> ConversationId {
    ConversationId(i + 1)
}

fn customer_id(i: u64) -> CustomerId {
    CustomerId(i + 1)
}

/// The core's id of agent number `a`.
pub fn agent_id(a: u32) -> AgentId {
    AgentId(u64::from(a) + 1)
}

/// The core's id of group number `g`.
pub fn group_id(g: u32) -> GroupId {
    GroupId(u64::from(g) + 1)
}

/// Runs every arrival and shift (each sorted by time) to completion; returns the figures.
pub fn run(
    center: &Center,
    arrivals: impl IntoIterator<Item = Arrival>,
    shifts: &[Shift],
) -> Result<Run> {
    run_with_progress(center, arrivals, shifts, |_| {})
}

/// How many loop steps pass between two calls of the progress callback.
const PROGRESS_EVERY: u64 = 1 << 14;

/// [`run`], calling `progress` with the virtual time (ms) every few thousand steps and once
/// at the end.
pub fn run_with_progress(
    center: &Center,
    arrivals: impl IntoIterator<Item = Arrival>,
    shifts: &[Shift],
    mut progress: impl FnMut(u64),
) -> Result<Run> {
    if !shifts.is_sorted_by_key(|s| s.at) {
        return Err(Error::Invalid("shifts must be sorted by time".into()));
    }
    let too_many = |what: &str| Error::Invalid(format!("more than {} {what}", u32::MAX));
    if let Some(a) = shifts.iter().find(|s| s.agent as usize >= center.agents.len()) {
        return Err(Error::Invalid(format!(
            "a shift names agent {} of {}",
            a.agent,
            center.agents.len()
        )));
    }
    // Ended conversations leave the engine at once (`take_ended`): retention never runs.
    let mut engine = Engine::new(center.tenant.clone())?;
    // A step or an overflow may name a later group: every group first, then those.
    for (g, settings) in center.groups.iter().enumerate() {
        let g = u32::try_from(g).map_err(|_| too_many("groups"))?;
        let mut plain = settings.clone();
        plain.policy.steps.clear();
        plain.policy.overflow = None;
        plain.policy.when_closed = switchboard_core::config::WhenClosed::Wait;
        engine.upsert_group(Timestamp::ZERO, group_id(g), plain)?;
    }
    for (g, settings) in center.groups.iter().enumerate().filter(|(_, s)| {
        !s.policy.steps.is_empty()
            || s.policy.overflow.is_some()
            || s.policy.when_closed != switchboard_core::config::WhenClosed::Wait
    }) {
        let g = u32::try_from(g).map_err(|_| too_many("groups"))?;
        engine.upsert_group(Timestamp::ZERO, group_id(g), settings.clone())?;
    }
    let mut agents = Vec::with_capacity(center.agents.len());
    for (a, settings) in center.agents.iter().enumerate() {
        let a = u32::try_from(a).map_err(|_| too_many("agents"))?;
        engine.upsert_agent(Timestamp::ZERO, agent_id(a), settings.clone())?;
        let slots = vec![Slots::default(); center.batches.max(1) as usize];
        agents.push(AgentTime { capacity: settings.capacity, slots, ..AgentTime::default() });
    }
    let mut sim = Sim {
        engine,
        events: BinaryHeap::new(),
        seq: 0,
        arrived: 0,
        open: HashMap::new(),
        stats: Stats::new(center.groups.len(), center.window, center.target_ms, center.batches),
        by_priority: Stats::new(256, center.window, center.target_ms, center.batches),
        ewt: EwtAccuracy::default(),
        peak: Retained::default(),
        agents,
        window: center.window,
        busy_ms: 0,
        available_ms: 0,
        calls: 0,
        pace: center.pace.clone(),
    };
    // Shifts and arrivals are read as time comes, like the engine's deadlines; the event
    // queue holds only what open contacts have pending. At one instant: deadlines, shifts,
    // events, arrivals.
    let mut arrivals = arrivals.into_iter().peekable();
    let mut shifts = shifts.iter().peekable();
    let mut now = 0;
    let mut steps = 0u64;
    loop {
        steps += 1;
        if steps.is_multiple_of(PROGRESS_EVERY) {
            progress(now);
        }
        let next_event = sim.events.peek().map(|Reverse((t, ..))| *t);
        let next_deadline = sim.engine.next_deadline().map(Timestamp::as_millis);
        let next_shift = shifts.peek().map(|s| s.at);
        let next_arrival = arrivals.peek().map(|a| a.at);
        let next = [next_deadline, next_shift, next_event, next_arrival];
        let Some(t) = next.into_iter().flatten().min() else {
            break;
        };
        // Business hours always have a next opening or closing: once nothing else is left
        // and the window has passed, stop.
        if next_shift.is_none()
            && next_event.is_none()
            && next_arrival.is_none()
            && sim.open.is_empty()
            && t > center.window.1
        {
            break;
        }
        now = t.max(now);
        if next_deadline == Some(t) {
            sim.calls += 1;
            let effects = sim.engine.advance(Timestamp(now));
            sim.absorb(now, effects)?;
        } else if next_shift == Some(t) {
            let Some(s) = shifts.next() else { break };
            sim.shift(now, *s)?;
        } else if next_event == Some(t) {
            let Some(Reverse((_, _, ev))) = sim.events.pop() else { break };
            sim.fire(now, ev)?;
        } else if let Some(a) = arrivals.next() {
            sim.arrive(now, a)?;
        }
    }
    for a in 0..sim.agents.len() {
        sim.accrue(a, now);
    }
    progress(now);
    // Still open at the end: served if an agent has it, unserved otherwise.
    for t in sim.open.values() {
        t.settle(&mut sim.stats, &mut sim.by_priority, &mut sim.ewt);
    }
    Ok(Run {
        stats: sim.stats,
        by_priority: sim.by_priority,
        ewt: sim.ewt,
        arrived: sim.arrived,
        peak: sim.peak,
        busy_ms: sim.busy_ms,
        available_ms: sim.available_ms,
        engine_calls: sim.calls,
        slots: sim.agents.into_iter().map(|a| a.slots).collect(),
    })
}

impl Sim {
    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, ev)));
    }

    fn arrive(&mut self, now: u64, a: Arrival) -> Result<()> {
        let i = self.arrived;
        self.arrived += 1;
        let track = Track {
            group: a.group,
            priority: a.priority,
            queued_at: None,
            assigned_at: None,
            outcome: Outcome::Open,
            handle: a.handle,
            patience: a.patience,
            predicted: None,
        };
        self.open.insert(i, track);
        self.peak = self.peak.max(Retained {
            tracks: self.open.len(),
            events: self.events.len(),
            engine_customers: self.engine.customer_count(),
            engine_conversations: self.engine.conversation_count(),
        });
        let msg = CustomerMessage {
            customer: customer_id(i),
            channel: Channel::Web,
            text: "hello".into(),
            new_conversation: conv_id(i),
            group: Some(group_id(a.group)),
            priority: Some(a.priority),
        };
        match a.bot {
            Some(bot) => self
                .schedule(now + bot, if a.leaves_in_bot { Ev::LeaveBot(i) } else { Ev::Human(i) }),
            None => self.enter_queue(now, i),
        }
        self.calls += 1;
        let out = self.engine.customer_message(Timestamp(now), msg)?;
        self.absorb(now, out.effects)?;
        self.predict(now, i);
        Ok(())
    }

    /// Notes the core's estimated wait of contact `i` if it entered the queue at `now` and
    /// still waits.
    fn predict(&mut self, now: u64, i: u64) {
        let Some(t) = self.open.get(&i) else { return };
        if t.queued_at != Some(now) || t.assigned_at.is_some() {
            return;
        }
        let wait = self.engine.estimated_wait(Timestamp(now), conv_id(i));
        let ms = wait.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX));
        if let Some(t) = self.open.get_mut(&i) {
            t.predicted = ms;
        }
    }

    /// Notes the queue entry (before the routing call, which may assign at once) and arms
    /// the customer's patience.
    fn enter_queue(&mut self, now: u64, i: u64) {
        let Some(t) = self.open.get_mut(&i) else { return };
        t.queued_at = Some(now);
        if let Some(p) = t.patience {
            self.schedule(now + p, Ev::Abandon(i));
        }
    }

    /// The open contact `i`'s outcome, if it is still open and `Outcome::Open`.
    fn pending(&mut self, i: u64) -> Option<&mut Track> {
        self.open.get_mut(&i).filter(|t| t.outcome == Outcome::Open)
    }

    fn shift(&mut self, now: u64, Shift { agent, online, .. }: Shift) -> Result<()> {
        self.accrue(agent as usize, now);
        self.agents[agent as usize].online = online;
        let status = if online { AgentStatus::Online } else { AgentStatus::Busy };
        let id = agent_id(agent);
        let effects = self.engine.set_agent_status(Timestamp(now), id, status, Actor::Agent(id))?;
        self.calls += 1;
        self.absorb(now, effects)
    }

    fn fire(&mut self, now: u64, ev: Ev) -> Result<()> {
        let at = Timestamp(now);
        let effects = match ev {
            Ev::Human(i) => {
                if self.pending(i).is_none() {
                    return Ok(());
                }
                self.enter_queue(now, i);
                self.engine.request_human(at, conv_id(i))?
            }
            Ev::LeaveBot(i) => {
                let Some(t) = self.pending(i) else { return Ok(()) };
                t.outcome = Outcome::LeftInBot;
                self.engine.channel_closed(at, conv_id(i))?
            }
            Ev::Abandon(i) => {
                let Some(t) = self.pending(i).filter(|t| t.assigned_at.is_none()) else {
                    return Ok(());
                };
                t.outcome = Outcome::Abandoned;
                self.engine.channel_closed(at, conv_id(i))?
            }
            Ev::EndService(i, agent) => {
                let Some(t) = self.pending(i) else { return Ok(()) };
                t.outcome = Outcome::Served;
                self.engine.end(at, conv_id(i), Actor::Agent(agent_id(agent)))?
            }
            Ev::WrapUpEnd(agent) => {
                self.accrue(agent as usize, now);
                self.agents[agent as usize].load -= 1;
                return Ok(());
            }
        };
        self.calls += 1;
        self.absorb(now, effects)?;
        if let Ev::Human(i) = ev {
            self.predict(now, i);
        }
        Ok(())
    }

    /// Reads assignments and ends off the engine's effects. An ended contact is counted and
    /// forgotten, by the driver and by the engine. An offer (groups in offer mode) is
    /// accepted at once: simulated agents never let one expire or decline it.
    fn absorb(&mut self, now: u64, effects: Vec<Effect>) -> Result<()> {
        let mut ended = false;
        let mut offers = Vec::new();
        for e in effects {
            match e {
                Effect::Event(Event::Offered { conversation, agent }) => {
                    offers.push((conversation, agent));
                }
                Effect::Event(Event::Assigned { conversation, agent, .. }) => {
                    let i = conversation.0 - 1;
                    let a = (agent.0 - 1) as u32;
                    let Some(t) = self.open.get_mut(&i) else { continue };
                    t.assigned_at = Some(now);
                    let pace = self.pace.get(a as usize).copied().unwrap_or(1.0);
                    let end = now + (t.handle as f64 * pace).round() as u64;
                    self.schedule(end, Ev::EndService(i, a));
                    self.accrue(a as usize, now);
                    self.agents[a as usize].load += 1;
                }
                Effect::Event(Event::Ended { conversation, cause, agent, .. }) => {
                    let i = conversation.0 - 1;
                    let Some(mut t) = self.open.remove(&i) else { continue };
                    if let Some(agent) = agent
                        && t.assigned_at.is_some()
                    {
                        let a = (agent.0 - 1) as usize;
                        // A wrap-up keeps the slot taken (its group's `wrap_up`).
                        let wrap = self
                            .engine
                            .router()
                            .agent(agent)
                            .and_then(|x| x.wrapping.get(&conversation))
                            .map(|w| w.until.as_millis());
                        match wrap {
                            Some(until) => self.schedule(until, Ev::WrapUpEnd(a as u32)),
                            None => {
                                self.accrue(a, now);
                                self.agents[a].load -= 1;
                            }
                        }
                    }
                    if t.outcome == Outcome::Open {
                        t.outcome = match cause {
                            Cause::EndedByAgent => Outcome::Served,
                            _ => Outcome::Unserved,
                        };
                    }
                    t.settle(&mut self.stats, &mut self.by_priority, &mut self.ewt);
                    self.engine.evict_customer(customer_id(i));
                    ended = true;
                }
                _ => {}
            }
        }
        if ended {
            // History belongs to a store; the simulation keeps none.
            drop(self.engine.take_ended());
        }
        for (conversation, agent) in offers {
            self.calls += 1;
            let effects = self.engine.accept(Timestamp(now), agent, conversation)?;
            self.absorb(now, effects)?;
        }
        Ok(())
    }

    /// Adds agent `a`'s busy and available time since its last change, within the window.
    fn accrue(&mut self, a: usize, now: u64) {
        let s = &mut self.agents[a];
        let (from, to) = (s.since.max(self.window.0), now.min(self.window.1));
        let dt = to.saturating_sub(from);
        if s.online || s.load > 0 {
            self.available_ms += dt;
        }
        if s.load > 0 {
            self.busy_ms += dt;
        }
        let available = if s.online || s.load > 0 { s.capacity.max(s.load) } else { 0 };
        if available > 0 {
            // Split [from, to) over the batches it crosses, as `Stats` cuts the window.
            let (start, len) = (self.window.0, (self.window.1 - self.window.0).max(1));
            let n = s.slots.len() as u128;
            let mut t = from;
            while t < to {
                let b =
                    ((u128::from(t - start) * n / u128::from(len)) as usize).min(s.slots.len() - 1);
                let end = start + (((b as u128 + 1) * u128::from(len)).div_ceil(n)) as u64;
                let end = if b + 1 == s.slots.len() { to } else { end.min(to).max(t + 1) };
                let slot = &mut s.slots[b];
                slot.available += (end - t) * u64::from(available);
                slot.busy += (end - t) * u64::from(s.load);
                t = end;
            }
        }
        s.since = now;
    }
}
