//! The invariants of the simulation: those the core's property tests check on one engine,
//! stated for a router side and conversation sides that only hear of each other by message.

use std::collections::BTreeMap;

use switchboard_core::mesh::{DeskEvent, Holding, ToAgent, ToConversation, ToDesk};
use switchboard_core::router::{Placement, Router};
use switchboard_core::session::Placed;
use switchboard_core::{AgentId, ConversationId, GroupId, Note, State};

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
/// - every agent's desk stream is gap-free and is, in order, the router's durable decisions
///   about that agent (offered, assigned, released, status, alerts) and its refusals of the
///   agent's commands, exactly those its agent side applied durably ([`desk`], checked on
///   each commit of an agent side, the only time its stream and durable state move).
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
///   status of the agent (each may have been one message stale while the network was not).
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
        let desk = (
            side.offered().iter().copied().collect::<Vec<_>>(),
            side.assigned().iter().copied().collect::<Vec<_>>(),
        );
        if desk != (offered.clone(), assigned.clone()) {
            return Err(format!(
                "quiet, yet {agent}'s desk holds (offered, assigned) {desk:?}, the router {:?}",
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
        // Every conversation it holds: the same holding on all three sides, and every note
        // its conversation sent on that holding's link on its desk.
        for &c in at_router.offered.iter().chain(at_router.assigned.iter()) {
            let since = side.holding(c);
            if since.is_none() || since != sim.held[a].get(&c).copied() {
                return Err(format!(
                    "quiet, yet {agent} holds {c} since {since:?}, its stream says since {:?}",
                    sim.held[a].get(&c)
                ));
            }
            let since = since.unwrap_or_default();
            let link = (c, agent, since);
            let sent = sent_notes(&sim.to_desk, link);
            let on_desk = sim.shown.get(&link).cloned().unwrap_or_default();
            if sent != on_desk {
                return Err(format!(
                    "quiet, yet {agent}'s desk shows {on_desk:?} of {c}, its link carried {sent:?}"
                ));
            }
            let produced = sim.produced.get(&(c, agent)).cloned().unwrap_or_default();
            if !produced.ends_with(&sent) {
                return Err(format!(
                    "quiet, yet {c} produced {produced:?} for {agent}, its current link carried {sent:?}"
                ));
            }
            let Some(customer) = sim.router.live.customer_of(c) else { continue };
            let told = sim.sides[customer.0 as usize].live.holding();
            if told != Some(Holding { agent, since }) {
                return Err(format!(
                    "quiet, yet {c}'s side says it is held by {told:?}, {agent}'s side since {since}"
                ));
            }
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
pub fn desk(
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

/// A desk link: (conversation, agent, holding).
pub type DeskLink = (ConversationId, AgentId, u64);

/// The conversation of one of a conversation's own notes (those a desk link carries).
pub fn conversation_note(note: &Note) -> Option<ConversationId> {
    match note {
        Note::CustomerMessage { conversation, .. }
        | Note::Whisper { conversation, .. }
        | Note::ReadUnreplied { conversation, .. }
        | Note::BotHosting { conversation, .. } => Some(*conversation),
        _ => None,
    }
}

/// Every note sent on a desk link, in order.
fn sent_notes(to_desk: &BTreeMap<(DeskLink, u64), ToDesk>, link: DeskLink) -> Vec<Note> {
    to_desk.range((link, 0)..=(link, u64::MAX)).flat_map(|(_, m)| m.notes.iter().cloned()).collect()
}

/// One commit of an agent side's desk stream (`desk`): its router events are, in order,
/// exactly those of the router's messages it applied (`heard`, with their numbers); each of
/// its conversation notes belongs to a conversation the agent held at that point of the
/// stream (counted here from the committed stream: `held`), and per holding the notes shown
/// are a prefix of the notes sent on its desk link: none twice, none out of order, none of
/// another holding, none invented.
pub fn committed_desk(
    agent: AgentId,
    desk: &[(u64, DeskEvent)],
    heard: &[(u64, DeskEvent)],
    to_desk: &BTreeMap<(DeskLink, u64), ToDesk>,
    held: &mut BTreeMap<ConversationId, u64>,
    shown: &mut BTreeMap<DeskLink, Vec<Note>>,
) -> Result<(), String> {
    let mut router = heard.iter();
    for (_, event) in desk {
        if let DeskEvent::Note(note) = event
            && let Some(c) = conversation_note(note)
        {
            let Some(&since) = held.get(&c) else {
                return Err(format!(
                    "{agent}'s desk shows {note:?} of {c}, which it does not hold"
                ));
            };
            let link = (c, agent, since);
            let list = shown.entry(link).or_default();
            list.push(note.clone());
            let sent = sent_notes(to_desk, link);
            if !sent.starts_with(list) {
                return Err(format!(
                    "{agent}'s desk shows {list:?} for {c} held since {since}; its link carried {sent:?}"
                ));
            }
            continue;
        }
        let Some((seq, expected)) = router.next() else {
            return Err(format!(
                "{agent} committed {event:?}, which no router message it applied made"
            ));
        };
        if event != expected {
            return Err(format!(
                "{agent} committed {event:?} where the router's message {seq} it applied makes {expected:?}"
            ));
        }
        match event {
            DeskEvent::Note(
                Note::Offered { conversation, .. } | Note::Assigned { conversation, .. },
            ) => {
                held.entry(*conversation).or_insert(*seq);
            }
            DeskEvent::Note(Note::Released { conversation, .. }) => {
                held.remove(conversation);
            }
            _ => {}
        }
    }
    if let Some((seq, missing)) = router.next() {
        return Err(format!(
            "{agent} applied the router's message {seq} but did not show {missing:?}"
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
