//! The discrete-event loop: arrivals, bot stages, abandonment, service ends and shift changes
//! as future events keyed by virtual time, interleaved with the engine's own deadlines
//! (`next_deadline` / `advance`). Everything goes straight through `switchboard_core::Engine`;
//! assignments are read back from its `Event::Assigned` effects.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use switchboard_core::config::{AgentSettings, GroupSettings, TenantSettings};
use switchboard_core::{
    Actor, AgentId, AgentStatus, Cause, Channel, ConversationId, CustomerId, CustomerMessage,
    Effect, Engine, Event, GroupId, Timestamp,
};

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

/// The center being simulated.
#[derive(Debug, Clone)]
pub struct Center {
    pub groups: usize,
    /// The skill groups (indexes) of each agent; every agent has capacity 1.
    pub agents: Vec<Vec<u32>>,
    /// Open conversations in the bot stage (needed when arrivals have a `bot` time).
    pub transfer_to_human: bool,
    /// Measure from here to `window.1` (virtual ms): contacts by queue-entry time, agent time
    /// clipped to the window.
    pub window: (u64, u64),
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

/// Per-contact record, indexed by arrival number.
#[derive(Debug, Clone, Copy)]
pub struct Track {
    pub group: u32,
    pub queued_at: Option<u64>,
    pub assigned_at: Option<u64>,
    pub outcome: Outcome,
    handle: u64,
    patience: Option<u64>,
}

/// Busy and available time of the agents, clipped to the window.
#[derive(Debug, Clone, Copy, Default)]
struct AgentTime {
    online: bool,
    load: u32,
    since: u64,
}

/// What a run leaves behind for the report.
#[derive(Debug, Clone)]
pub struct Run {
    pub tracks: Vec<Track>,
    pub busy_ms: u64,
    pub available_ms: u64,
    /// Engine calls made (operations plus `advance`).
    pub engine_calls: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Shift(usize),
    Human(usize),
    LeaveBot(usize),
    Abandon(usize),
    EndService(usize, u32),
}

struct Sim {
    engine: Engine,
    events: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    tracks: Vec<Track>,
    agents: Vec<AgentTime>,
    window: (u64, u64),
    busy_ms: u64,
    available_ms: u64,
    calls: u64,
}

fn conv_id(i: usize) -> ConversationId {
    ConversationId(i as u64 + 1)
}

fn agent_id(a: u32) -> AgentId {
    AgentId(u64::from(a) + 1)
}

fn group_id(g: u32) -> GroupId {
    GroupId(u64::from(g) + 1)
}

/// Runs every arrival (sorted by time) and shift to completion; returns the records.
pub fn run(
    center: &Center,
    arrivals: impl IntoIterator<Item = Arrival>,
    shifts: &[Shift],
) -> anyhow::Result<Run> {
    let settings = TenantSettings {
        transfer_to_human: center.transfer_to_human,
        // Ended conversations are only kept for the report's sake here; purge them at once.
        retention_unaccepted: Duration::from_secs(1),
        retention_accepted: Duration::from_secs(1),
        ..TenantSettings::default()
    };
    let mut engine = Engine::new(settings)?;
    for g in 0..center.groups {
        let g = u32::try_from(g)?;
        let settings = GroupSettings { name: format!("g{g}"), ..GroupSettings::default() };
        engine.upsert_group(Timestamp::ZERO, group_id(g), settings)?;
    }
    for (a, groups) in center.agents.iter().enumerate() {
        let settings = AgentSettings {
            capacity: 1,
            groups: groups.iter().map(|g| group_id(*g)).collect(),
            ..AgentSettings::default()
        };
        engine.upsert_agent(Timestamp::ZERO, agent_id(u32::try_from(a)?), settings)?;
    }
    let mut sim = Sim {
        engine,
        events: BinaryHeap::new(),
        seq: 0,
        tracks: Vec::new(),
        agents: vec![AgentTime::default(); center.agents.len()],
        window: center.window,
        busy_ms: 0,
        available_ms: 0,
        calls: 0,
    };
    for (i, s) in shifts.iter().enumerate() {
        sim.schedule(s.at, Ev::Shift(i));
    }
    let mut arrivals = arrivals.into_iter().peekable();
    let mut now = 0;
    loop {
        let next_event = sim.events.peek().map(|Reverse((t, ..))| *t);
        let next_deadline = sim.engine.next_deadline().map(Timestamp::as_millis);
        let next_arrival = arrivals.peek().map(|a| a.at);
        let Some(t) = [next_deadline, next_event, next_arrival].into_iter().flatten().min() else {
            break;
        };
        now = t.max(now);
        if next_deadline == Some(t) {
            sim.calls += 1;
            let effects = sim.engine.advance(Timestamp(now));
            sim.absorb(now, effects);
        } else if next_event == Some(t) {
            let Some(Reverse((_, _, ev))) = sim.events.pop() else { break };
            sim.fire(now, ev, shifts)?;
        } else if let Some(a) = arrivals.next() {
            sim.arrive(now, a)?;
        }
    }
    for a in 0..sim.agents.len() {
        sim.accrue(a, now);
    }
    Ok(Run {
        tracks: sim.tracks,
        busy_ms: sim.busy_ms,
        available_ms: sim.available_ms,
        engine_calls: sim.calls,
    })
}

impl Sim {
    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((at, self.seq, ev)));
    }

    fn arrive(&mut self, now: u64, a: Arrival) -> anyhow::Result<()> {
        let i = self.tracks.len();
        self.tracks.push(Track {
            group: a.group,
            queued_at: None,
            assigned_at: None,
            outcome: Outcome::Open,
            handle: a.handle,
            patience: a.patience,
        });
        let msg = CustomerMessage {
            customer: CustomerId(i as u64 + 1),
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
        self.absorb(now, out.effects);
        Ok(())
    }

    /// Notes the queue entry (before the routing call, which may assign at once) and arms
    /// the customer's patience.
    fn enter_queue(&mut self, now: u64, i: usize) {
        self.tracks[i].queued_at = Some(now);
        if let Some(p) = self.tracks[i].patience {
            self.schedule(now + p, Ev::Abandon(i));
        }
    }

    fn fire(&mut self, now: u64, ev: Ev, shifts: &[Shift]) -> anyhow::Result<()> {
        let at = Timestamp(now);
        let effects = match ev {
            Ev::Shift(s) => {
                let Shift { agent, online, .. } = shifts[s];
                self.accrue(agent as usize, now);
                self.agents[agent as usize].online = online;
                let status = if online { AgentStatus::Online } else { AgentStatus::Busy };
                let id = agent_id(agent);
                self.engine.set_agent_status(at, id, status, Actor::Agent(id))?
            }
            Ev::Human(i) => {
                if self.tracks[i].outcome != Outcome::Open {
                    return Ok(());
                }
                self.enter_queue(now, i);
                self.engine.request_human(at, conv_id(i))?
            }
            Ev::LeaveBot(i) => {
                if self.tracks[i].outcome != Outcome::Open {
                    return Ok(());
                }
                self.tracks[i].outcome = Outcome::LeftInBot;
                self.engine.channel_closed(at, conv_id(i))?
            }
            Ev::Abandon(i) => {
                let t = self.tracks[i];
                if t.outcome != Outcome::Open || t.assigned_at.is_some() {
                    return Ok(());
                }
                self.tracks[i].outcome = Outcome::Abandoned;
                self.engine.channel_closed(at, conv_id(i))?
            }
            Ev::EndService(i, agent) => {
                if self.tracks[i].outcome != Outcome::Open {
                    return Ok(());
                }
                self.tracks[i].outcome = Outcome::Served;
                self.engine.end(at, conv_id(i), Actor::Agent(agent_id(agent)))?
            }
        };
        self.calls += 1;
        self.absorb(now, effects);
        Ok(())
    }

    /// Reads assignments and ends off the engine's effects.
    fn absorb(&mut self, now: u64, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Event(Event::Assigned { conversation, agent, .. }) => {
                    let i = (conversation.0 - 1) as usize;
                    let a = (agent.0 - 1) as u32;
                    self.accrue(a as usize, now);
                    self.agents[a as usize].load += 1;
                    let t = &mut self.tracks[i];
                    t.assigned_at = Some(now);
                    let end = now + t.handle;
                    self.schedule(end, Ev::EndService(i, a));
                }
                Effect::Event(Event::Ended { conversation, cause, agent, .. }) => {
                    let i = (conversation.0 - 1) as usize;
                    if let Some(agent) = agent
                        && self.tracks[i].assigned_at.is_some()
                    {
                        let a = (agent.0 - 1) as usize;
                        self.accrue(a, now);
                        self.agents[a].load -= 1;
                    }
                    let t = &mut self.tracks[i];
                    if t.outcome == Outcome::Open {
                        t.outcome = match cause {
                            Cause::EndedByAgent => Outcome::Served,
                            _ => Outcome::Unserved,
                        };
                    }
                }
                _ => {}
            }
        }
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
        s.since = now;
    }
}
