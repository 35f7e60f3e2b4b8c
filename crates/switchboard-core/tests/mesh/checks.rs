//! The invariants of the simulation: those the core's property tests check on one engine,
//! stated for a router side and conversation sides that only hear of each other by message.

use std::collections::{BTreeMap, BTreeSet};

use switchboard_core::mesh::{AgentSide, DeskEvent, Holding, ToAgent, ToConversation};
use switchboard_core::router::{Placement, Router};
use switchboard_core::session::Placed;
use switchboard_core::{AgentId, ConversationId, CustomerId, GroupId, Note, State};

use crate::model::{AGENTS, GROUPS, check_fifo, check_ranks};
use crate::sim::Sim;

/// After every step, whatever is in flight:
/// - the router's own invariants: no agent over capacity, every routed conversation in
///   exactly one place, work conservation (the router settles every operation), exact ranks,
///   FIFO within a priority;
/// - no conversation over its channel's budget (the effects are checked as they commit);
/// - exactly once: the assignments a conversation side applied are, in order, the ones among
///   the router's durable decisions it acknowledged having heard of, so no assignment is
///   applied twice, skipped or invented;
/// - every agent's desk stream (a shared stream, in the order of the writes of the router
///   side and the conversation sides) keeps the desk's guarantees, checked at each write,
///   the only time a stream moves ([`router_wrote`], [`side_wrote`]);
/// - every agent side holds what the router's messages it applied durably say
///   ([`agent_committed`], at each of its commits).
pub fn always(sim: &Sim) -> Result<(), String> {
    let r = sim.router.live.router();
    r.check_invariants()?;
    check_ranks(r)?;
    check_fifo(r)?;
    for side in &sim.sides {
        let Some(c) = side.live.conversation() else { continue };
        if let Some(limit) = c.channel.reply_budget()
            && c.consecutive_service > limit
        {
            return Err(format!(
                "{} sent {} service messages on a budget of {limit}",
                c.id, c.consecutive_service
            ));
        }
        let heard: Vec<AgentId> = (1..=side.live.applied())
            .flat_map(|seq| match sim.to_conversation.get(&(c.id, seq)) {
                Some(ToConversation::Placed { facts, .. }) => facts.clone(),
                _ => Vec::new(),
            })
            .filter_map(|f| match f {
                Placed::Assigned { agent, .. } => Some(agent),
                _ => None,
            })
            .collect();
        let applied: Vec<AgentId> = c
            .transitions
            .iter()
            .filter(|t| t.to == State::Assigned)
            .filter_map(|t| t.agent)
            .collect();
        if heard != applied {
            return Err(format!(
                "{} applied assignments {applied:?}, the router decided {heard:?}",
                c.id
            ));
        }
    }
    Ok(())
}

/// Once the network is quiet (nothing in flight, nothing unacknowledged), the sides agree as
/// the engine's own parts agree on one node:
/// - every open conversation is where the router placed it (or in the bot stage and placed
///   nowhere), with the same agent, and knows SPEC §4.5's offline condition exactly;
/// - every conversation the router holds is open on its customer's side (nothing ended stays
///   placed, nothing is lost between the sides: work conservation across them);
/// - each side applied everything the other sent;
/// - every agent side holds what the router says the agent holds, and has the router's
///   status of the agent (each may have been one message stale while the network was not);
/// - every agent's desk stream has every message the router sent the agent (exactly their
///   events, in order), holds what the router says the agent holds, under the holding the
///   agent side and the conversation side name, and has every note the conversation sides'
///   committed effects made for the agent, once, in the order they were made.
pub fn quiet(sim: &Sim) -> Result<(), String> {
    let r = sim.router.live.router();
    for (a, node) in sim.agents.iter().enumerate() {
        let agent = AgentId(a as u64);
        let side = &node.live;
        let at_router = r.agent(agent).expect("the model's agent");
        if side.status() != at_router.status {
            return Err(format!(
                "quiet, yet {agent}'s side says {:?}, the router {:?}",
                side.status(),
                at_router.status
            ));
        }
        let mut offered: Vec<_> = at_router.offered.iter().copied().collect();
        let mut assigned: Vec<_> = at_router.assigned.iter().copied().collect();
        offered.sort();
        assigned.sort();
        let holds = (
            side.offered().iter().copied().collect::<Vec<_>>(),
            side.assigned().iter().copied().collect::<Vec<_>>(),
        );
        if holds != (offered.clone(), assigned.clone()) {
            return Err(format!(
                "quiet, yet {agent}'s side holds (offered, assigned) {holds:?}, the router {:?}",
                (offered, assigned)
            ));
        }
        let sent = sim.to_agent.keys().filter(|(x, _)| *x == agent).map(|(_, s)| *s).max();
        if side.applied() != sent.unwrap_or(0) {
            return Err(format!(
                "quiet, yet {agent}'s side applied {} of the router's {sent:?} messages",
                side.applied()
            ));
        }
        // Its desk stream: every message the router sent it, exactly their events in order
        // (guarantee 4, complete once the network is quiet).
        let desk = &sim.desks.agents[a];
        let sent = sent.unwrap_or(0);
        let by_router: Vec<(u64, DeskEvent)> = desk
            .entries
            .iter()
            .filter_map(|e| match e {
                Entry::Router { seq, event } => Some((*seq, event.clone())),
                Entry::Side { .. } => None,
            })
            .collect();
        if desk.written != sent || by_router != told(&sim.to_agent, agent, 1..=sent) {
            return Err(format!(
                "quiet, yet {agent}'s desk has the router's entries {by_router:?} (of its messages 1..={}), its {sent} messages make {:?}",
                desk.written,
                told(&sim.to_agent, agent, 1..=sent)
            ));
        }
        // What it holds as its stream says is what the router says.
        let on_desk = |assigned: bool| -> Vec<ConversationId> {
            desk.held.iter().filter(|(_, (_, a))| *a == assigned).map(|(c, _)| *c).collect()
        };
        if (on_desk(false), on_desk(true)) != (offered.clone(), assigned.clone()) {
            return Err(format!(
                "quiet, yet {agent}'s desk stream holds (offered, assigned) {:?}, the router {:?}",
                (on_desk(false), on_desk(true)),
                (offered, assigned)
            ));
        }
        // Every conversation it holds: the same holding on all three sides.
        for &c in at_router.offered.iter().chain(at_router.assigned.iter()) {
            let since = side.holding(c);
            let stream = desk.held.get(&c).map(|(since, _)| *since);
            if since.is_none() || since != stream {
                return Err(format!(
                    "quiet, yet {agent}'s side holds {c} since {since:?}, its stream says since {stream:?}"
                ));
            }
            let since = since.unwrap_or_default();
            let Some(customer) = sim.router.live.customer_of(c) else { continue };
            let told = sim.sides[customer.0 as usize].live.holding();
            if told != Some(Holding { agent, since }) {
                return Err(format!(
                    "quiet, yet {c}'s side says it is held by {told:?}, {agent}'s side since {since}"
                ));
            }
        }
        // Every note the conversation sides made for it (their committed `Notify` effects)
        // is on its desk, once, in the order made (guarantee 2).
        let mut notes: BTreeMap<ConversationId, Vec<Note>> = BTreeMap::new();
        for e in &desk.entries {
            if let Entry::Side { note } = e {
                let c = conversation_note(note).expect("a conversation's note");
                notes.entry(c).or_default().push(note.clone());
            }
        }
        let produced: BTreeMap<ConversationId, Vec<Note>> = sim
            .desks
            .produced
            .iter()
            .filter(|((_, x), _)| *x == agent)
            .map(|((c, _), n)| (*c, n.clone()))
            .collect();
        if notes != produced {
            let c = produced.keys().chain(notes.keys()).find(|c| notes.get(c) != produced.get(c));
            return Err(format!(
                "quiet, yet {agent}'s desk has the notes {:?} of {c:?}, its side made {:?}",
                c.and_then(|c| notes.get(c)),
                c.and_then(|c| produced.get(c))
            ));
        }
        let asked = sim.from_agent.keys().filter(|(x, _)| *x == agent).map(|(_, s)| *s).max();
        if sim.router.live.applied_agent(agent) != asked.unwrap_or(0) {
            return Err(format!(
                "quiet, yet the router applied {} of {agent}'s {asked:?} commands",
                sim.router.live.applied_agent(agent)
            ));
        }
        // Every command got exactly one answer, and the agent side heard them all.
        let answers: Vec<u64> = sim
            .to_agent
            .iter()
            .filter(|((x, _), _)| *x == agent)
            .filter_map(|(_, m)| match m {
                ToAgent::Done { command } | ToAgent::Refused { command, .. } => Some(*command),
                ToAgent::Decided { .. } | ToAgent::Unaccepted { .. } => None,
            })
            .collect();
        let expected: Vec<u64> = (1..=asked.unwrap_or(0)).collect();
        if answers != expected {
            return Err(format!(
                "quiet, yet the router answered {agent}'s commands {answers:?}, not {expected:?}"
            ));
        }
        let decided = node.live.decided();
        if decided != asked.unwrap_or(0) {
            return Err(format!(
                "quiet, yet {agent}'s side knows {decided} of its {asked:?} commands decided"
            ));
        }
    }
    for (u, side) in sim.sides.iter().enumerate() {
        let Some(c) = side.live.conversation() else { continue };
        let placement = r.placement(c.id);
        let consistent = match (c.state, placement) {
            (State::Bot, None) => true,
            (State::Queued, Some(Placement::Queued { group, .. })) => *group == c.group,
            (State::Offered, Some(Placement::Offered { agent, .. })) => c.agent == Some(*agent),
            (State::Assigned, Some(Placement::Assigned { agent, .. })) => c.agent == Some(*agent),
            _ => false,
        };
        if !consistent {
            return Err(format!(
                "quiet, yet {} is {:?} with agent {:?} on customer {u}'s side but placed {placement:?}",
                c.id, c.state, c.agent
            ));
        }
        let dedicated = side.live.customer().settings.dedicated_agent;
        let want = r.standing(c.id, dedicated).offline;
        let told = side.live.standing().and_then(|s| s.offline);
        if want != told {
            return Err(format!(
                "quiet, yet {} believes offline = {told:?}, the router says {want:?}",
                c.id
            ));
        }
        let sent = last_seq(sim.to_conversation.keys(), c.id);
        if side.live.applied() != sent {
            return Err(format!(
                "quiet, yet {} applied {} of the router's {sent} messages",
                c.id,
                side.live.applied()
            ));
        }
        let asked = last_seq(sim.to_router.keys(), c.id);
        if sim.router.live.applied(c.id) != asked {
            return Err(format!(
                "quiet, yet the router applied {} of {}'s {asked} messages",
                sim.router.live.applied(c.id),
                c.id
            ));
        }
    }
    for c in placed(r) {
        let Some(customer) = sim.router.live.customer_of(c) else {
            return Err(format!("the router holds {c} without a link"));
        };
        let open = sim.sides[customer.0 as usize].live.conversation().map(|c| c.id);
        if open != Some(c) {
            return Err(format!(
                "quiet, yet the router holds {c}, while customer {customer}'s open conversation is {open:?}"
            ));
        }
    }
    Ok(())
}

/// The desk events the router's messages `seqs` to `agent` make, in order, each with the
/// number of its message.
pub fn told(
    to_agent: &BTreeMap<(AgentId, u64), ToAgent>,
    agent: AgentId,
    seqs: std::ops::RangeInclusive<u64>,
) -> Vec<(u64, DeskEvent)> {
    seqs.flat_map(|seq| {
        let events = match to_agent.get(&(agent, seq)) {
            Some(ToAgent::Decided { notes }) => {
                notes.iter().cloned().map(DeskEvent::Note).collect()
            }
            Some(ToAgent::Refused { command, reason, .. }) => {
                vec![DeskEvent::Refused { command: *command, reason: reason.clone() }]
            }
            Some(ToAgent::Done { .. }) => Vec::new(),
            Some(ToAgent::Unaccepted { changes }) => {
                changes.iter().copied().map(DeskEvent::Unaccepted).collect()
            }
            None => {
                vec![DeskEvent::Refused { command: 0, reason: format!("seq {seq} never sent") }]
            }
        };
        events.into_iter().map(move |e| (seq, e))
    })
    .collect()
}

/// The conversation of one of a conversation's own notes (those its side writes on its
/// holder's desk).
pub fn conversation_note(note: &Note) -> Option<ConversationId> {
    match note {
        Note::CustomerMessage { conversation, .. }
        | Note::Whisper { conversation, .. }
        | Note::ReadUnreplied { conversation, .. }
        | Note::BotHosting { conversation, .. } => Some(*conversation),
        _ => None,
    }
}

/// One entry of an agent's desk stream, with the side that wrote it.
#[derive(Debug, Clone)]
pub enum Entry {
    /// The router side's: an event of its message `seq` to the agent.
    Router { seq: u64, event: DeskEvent },
    /// A conversation side's own note.
    Side { note: Note },
}

/// An agent's desk stream as the writes of the router side and of the conversation sides
/// built it (a shared stream: in the order of those writes), and what the checks read off
/// it.
#[derive(Debug, Default, Clone)]
pub struct Desk {
    pub entries: Vec<Entry>,
    /// The router's messages to the agent whose entries are on it: `1..=written`.
    pub written: u64,
    /// What the agent holds as its stream says: since which of the router's messages, and
    /// whether assigned (else offered).
    pub held: BTreeMap<ConversationId, (u64, bool)>,
    /// Every holding the stream began: (conversation, since).
    pub began: BTreeSet<(ConversationId, u64)>,
    /// The conversation notes written on it, and of those, the ones written while the
    /// stream held their conversation (the others are stale: written while the release of
    /// their holding was on its way to the side), with their kinds (a bit each: customer
    /// message, whisper, read-but-unreplied, bot hosting).
    pub notes: u64,
    pub shown: u64,
    pub kinds: u32,
}

impl Desk {
    /// Appends an entry of the router's message `seq`; what the agent holds follows it (the
    /// router side's and the agent side's rule: `mesh::desk::change`).
    fn router(&mut self, seq: u64, event: DeskEvent) {
        if let DeskEvent::Note(note) = &event {
            match *note {
                Note::Offered { conversation, .. } => {
                    let (since, _) = *self.held.entry(conversation).or_insert((seq, false));
                    self.began.insert((conversation, since));
                }
                Note::Assigned { conversation, .. } => {
                    let held = self.held.entry(conversation).or_insert((seq, true));
                    held.1 = true;
                    self.began.insert((conversation, held.0));
                }
                Note::Released { conversation, .. } => {
                    self.held.remove(&conversation);
                }
                _ => {}
            }
        }
        self.entries.push(Entry::Router { seq, event });
    }
}

/// Every agent's desk stream, and what the checks of the conversation sides' writes need.
#[derive(Debug, Default)]
pub struct Desks {
    pub agents: Vec<Desk>,
    /// The conversations whose end the router side wrote (it let go of them), as of its
    /// last write.
    pub left: BTreeSet<ConversationId>,
    /// Per conversation, the customer messages its side accepted (committed), and the notes
    /// of customer messages written of it on desks.
    pub wrote: BTreeMap<ConversationId, u64>,
    pub noted: BTreeMap<ConversationId, u64>,
    /// Per (conversation, agent), the conversation's own notes for that agent among its
    /// side's committed effects (`Notify`), in order.
    pub produced: BTreeMap<(ConversationId, AgentId), Vec<Note>>,
}

/// The newest of the router's messages to `agent` put on the network (0: none).
fn last_sent(to_agent: &BTreeMap<(AgentId, u64), ToAgent>, agent: AgentId) -> u64 {
    to_agent.range((agent, 0)..=(agent, u64::MAX)).next_back().map_or(0, |((_, seq), _)| *seq)
}

/// One write of the router side: its desk entries (`written`, from its `take_desk` at the
/// write, in the order its decisions made them) are appended to their agents' streams.
/// Guarantee 4: for each agent they are exactly, in order, the events of the router's
/// messages to it that went on the network for the first time after that write (`to_agent`
/// holds every message ever sent), so every router entry is on its desk once, in the order
/// of the decisions, and an agent's are those of the messages first sent to it.
pub fn router_wrote(
    desks: &mut Desks,
    to_agent: &BTreeMap<(AgentId, u64), ToAgent>,
    written: Vec<(AgentId, DeskEvent)>,
) -> Result<(), String> {
    let mut by_agent: BTreeMap<AgentId, Vec<DeskEvent>> = BTreeMap::new();
    for (agent, event) in written {
        by_agent.entry(agent).or_default().push(event);
    }
    for (a, desk) in desks.agents.iter_mut().enumerate() {
        let agent = AgentId(a as u64);
        let sent = last_sent(to_agent, agent).max(desk.written);
        let expected = told(to_agent, agent, desk.written + 1..=sent);
        let got = by_agent.remove(&agent).unwrap_or_default();
        if !got.iter().eq(expected.iter().map(|(_, e)| e)) {
            return Err(format!(
                "the router wrote {got:?} on {agent}'s desk; its messages {}..={sent} to it, sent after that write, make {expected:?}",
                desk.written + 1
            ));
        }
        for (seq, event) in expected {
            desk.router(seq, event);
        }
        desk.written = sent;
    }
    if let Some((agent, events)) = by_agent.first_key_value() {
        return Err(format!("the router wrote {events:?} on the desk of {agent}, no agent here"));
    }
    Ok(())
}

/// One write of customer `customer`'s conversation side: its notes for desks (`written`,
/// from its `take_desk` at the write), against the conversation notes among the effects
/// this write commits (`notified`, its `Notify` effects in order), and `open`, its open
/// conversation and who holds it as the side says after the write:
/// - every note it made for its holder is written, once, in the order made, and nothing
///   else (guarantee 2: the notes go with the write of the step that made them, so a lost
///   write loses both and the step is made again from its resent input);
/// - the holding it names began on that agent's stream, and each note goes on a stream
///   with an offer or assignment of its conversation before it (guarantee 1: a side hears of
///   a holding only from the router's message, which leaves after the router's write);
/// - no note of a conversation whose end the router wrote (guarantee 3: its `Leave` leaves
///   after the write of its last notes, so the router's `Released` comes after them);
/// - a note on a stream that no longer holds its conversation is stale (guarantee 5:
///   written while the release was on its way to the side): allowed, and counted.
pub fn side_wrote(
    desks: &mut Desks,
    customer: CustomerId,
    written: Vec<(AgentId, Note)>,
    notified: &[(AgentId, Note)],
    open: Option<(ConversationId, Option<Holding>)>,
) -> Result<(), String> {
    if written != notified {
        return Err(format!(
            "customer {customer}'s side wrote {written:?} on desks; the effects of that write notified {notified:?}"
        ));
    }
    if let Some((c, Some(Holding { agent, since }))) = open
        && !desks.agents[agent.0 as usize].began.contains(&(c, since))
    {
        return Err(format!(
            "customer {customer}'s side says {agent} holds {c} since the router's message {since}, which began no holding of it on {agent}'s desk"
        ));
    }
    for (agent, note) in written {
        let Some(c) = conversation_note(&note) else {
            return Err(format!("customer {customer}'s side wrote {note:?}, not one of its own"));
        };
        if desks.left.contains(&c) {
            return Err(format!(
                "customer {customer}'s side wrote {note:?} on {agent}'s desk after the router wrote the end of {c}"
            ));
        }
        if let Note::CustomerMessage { .. } = note {
            let noted = desks.noted.entry(c).or_default();
            *noted += 1;
            let wrote = desks.wrote.get(&c).copied().unwrap_or(0);
            if *noted > wrote {
                return Err(format!(
                    "{noted} notes of customer messages of {c} written, of {wrote} messages"
                ));
            }
        }
        let desk = &mut desks.agents[agent.0 as usize];
        if desk.began.range((c, 0)..=(c, u64::MAX)).next().is_none() {
            return Err(format!(
                "customer {customer}'s side wrote {note:?} on {agent}'s desk, before any offer or assignment of {c} there"
            ));
        }
        desk.notes += 1;
        if desk.held.contains_key(&c) {
            desk.shown += 1;
            desk.kinds |= match note {
                Note::CustomerMessage { .. } => 1,
                Note::Whisper { .. } => 2,
                Note::ReadUnreplied { .. } => 4,
                Note::BotHosting { .. } => 8,
                _ => 0,
            };
        }
        desk.entries.push(Entry::Side { note });
    }
    Ok(())
}

/// What an agent side holds as the router's messages it applied say.
#[derive(Debug, Default, Clone)]
pub struct Heard {
    applied: u64,
    held: BTreeMap<ConversationId, u64>,
    offered: BTreeSet<ConversationId>,
    assigned: BTreeSet<ConversationId>,
}

/// One commit of an agent side (`side`, durable now): what it holds (offered, assigned,
/// and since which of the router's messages) is what the router's messages it applied say,
/// in order.
pub fn agent_committed(
    heard: &mut Heard,
    to_agent: &BTreeMap<(AgentId, u64), ToAgent>,
    side: &AgentSide,
) -> Result<(), String> {
    let agent = side.agent();
    for seq in heard.applied + 1..=side.applied() {
        let notes = match to_agent.get(&(agent, seq)) {
            Some(ToAgent::Decided { notes }) => notes,
            Some(_) => continue,
            None => return Err(format!("{agent}'s side applied message {seq}, never sent")),
        };
        for note in notes {
            match *note {
                Note::Offered { conversation, .. } => {
                    heard.held.entry(conversation).or_insert(seq);
                    heard.offered.insert(conversation);
                }
                Note::Assigned { conversation, .. } => {
                    heard.held.entry(conversation).or_insert(seq);
                    heard.offered.remove(&conversation);
                    heard.assigned.insert(conversation);
                }
                Note::Released { conversation, .. } => {
                    heard.held.remove(&conversation);
                    heard.offered.remove(&conversation);
                    heard.assigned.remove(&conversation);
                }
                _ => {}
            }
        }
    }
    heard.applied = heard.applied.max(side.applied());
    if side.offered() != &heard.offered || side.assigned() != &heard.assigned {
        return Err(format!(
            "{agent}'s side holds (offered, assigned) {:?}; the router's messages it applied say {:?}",
            (side.offered(), side.assigned()),
            (&heard.offered, &heard.assigned)
        ));
    }
    if let Some((c, since)) =
        heard.held.iter().find(|(c, since)| side.holding(**c) != Some(**since))
    {
        return Err(format!(
            "{agent}'s side holds {c} since {:?}; the router's messages it applied say since {since}",
            side.holding(*c)
        ));
    }
    Ok(())
}

fn last_seq<'a>(keys: impl Iterator<Item = &'a (ConversationId, u64)>, id: ConversationId) -> u64 {
    keys.filter(|(c, _)| *c == id).map(|(_, seq)| *seq).max().unwrap_or(0)
}

/// Every conversation waiting in a queue (its group's, or an agent's pinned one).
pub fn waiting(r: &Router) -> Vec<ConversationId> {
    let mut list: Vec<ConversationId> =
        (0..GROUPS).flat_map(|g| r.queue(GroupId(g), 0).map(|(_, c)| c)).collect();
    for a in 0..AGENTS {
        if let Some(agent) = r.agent(AgentId(a)) {
            list.extend(agent.pinned.iter().map(|(_, c)| c));
        }
    }
    list
}

/// Every offered (`assigned` false) or assigned conversation with the agent holding it, in
/// id order.
pub fn held(r: &Router, assigned: bool) -> Vec<(ConversationId, AgentId)> {
    let mut list: Vec<(ConversationId, AgentId)> = r
        .agents()
        .flat_map(|(id, a)| {
            let set = if assigned { &a.assigned } else { &a.offered };
            set.iter().map(move |c| (*c, id))
        })
        .collect();
    list.sort();
    list
}

/// Every conversation the router holds.
pub fn placed(r: &Router) -> Vec<ConversationId> {
    let mut list = waiting(r);
    for (_, a) in r.agents() {
        list.extend(a.offered.iter().chain(a.assigned.iter()).copied());
    }
    list.sort();
    list
}
