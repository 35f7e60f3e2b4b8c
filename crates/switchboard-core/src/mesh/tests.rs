//! One conversation's life across the two sides, with the network misbehaving by hand. The
//! simulation (`tests/mesh.rs`) does the same at random; these are the cases to read first.

use std::time::Duration;

use rustc_hash::FxHashMap;

use super::unaccepted::{Change, Gone};
use super::{
    AgentSide, Body, ConversationSide, DeskEvent, Envelope, Holding, RouterSide, ToAgent, ToRouter,
    Tombstone,
};
use crate::channel::Channel;
use crate::config::{
    AgentSettings, AutoAcceptReply, GroupPolicy, GroupSettings, OfferMode, TenantSettings,
};
use crate::conversation::State;
use crate::engine::customer_message::CustomerMessage;
use crate::engine::{Actor, Effect, Note};
use crate::ids::{AgentId, ConversationId, CustomerId, GroupId};
use crate::router::{AgentStatus, Router, StatusCause, Via};
use crate::session::{Config, Customer};
use crate::time::{Timestamp, secs};

const G1: GroupId = GroupId(1);
const A1: AgentId = AgentId(1);
const U1: CustomerId = CustomerId(1);
const C1: ConversationId = ConversationId(1);
const LINGER: Duration = Duration::from_secs(600);

struct Tenant {
    settings: TenantSettings,
    groups: FxHashMap<GroupId, GroupSettings>,
    agents: FxHashMap<AgentId, AgentSettings>,
}

impl Tenant {
    fn cfg(&self) -> Config<'_> {
        Config { settings: &self.settings, groups: &self.groups, agents: &self.agents }
    }
}

/// One group that assigns at once, one online agent with room for one, an auto-accept reply.
fn setup() -> (Tenant, RouterSide, ConversationSide) {
    let mut settings = TenantSettings { default_group: Some(G1), ..Default::default() };
    settings.replies.auto_accept =
        Some(AutoAcceptReply { texts: vec!["hello".into()], also_from_queue: true });
    let agent = AgentSettings { capacity: 1, groups: vec![G1], ..Default::default() };
    let tenant = Tenant {
        settings,
        groups: [(G1, GroupSettings::default())].into_iter().collect(),
        agents: [(A1, agent)].into_iter().collect(),
    };
    let t0 = Timestamp(0);
    let mut router = Router::new(secs(60), Default::default());
    let mut out = Vec::new();
    router.upsert_group(t0, G1, Default::default(), &mut out);
    router.upsert_agent(t0, A1, 1, vec![G1], Default::default(), &mut out).unwrap();
    router.set_status(t0, A1, AgentStatus::Online, StatusCause::Agent, &mut out).unwrap();
    let side = ConversationSide::new(U1, Customer::default());
    (tenant, RouterSide::new(router, LINGER), side)
}

fn message(text: &str) -> CustomerMessage {
    CustomerMessage {
        customer: U1,
        channel: Channel::Web,
        text: text.into(),
        new_conversation: C1,
        group: None,
        priority: None,
    }
}

fn replies(effects: &[Effect]) -> usize {
    effects.iter().filter(|e| matches!(e, Effect::Send { .. })).count()
}

#[test]
fn a_decision_is_resent_until_acknowledged_and_applied_once() {
    let (t, mut router, mut side) = setup();
    let now = Timestamp(1_000);
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    // The opening waits for the router's answer (a shell holds its call's response).
    assert!(side.awaits_router(C1));
    assert!(!side.awaits_router(ConversationId(2)));
    for e in side.outgoing() {
        router.receive(now, e);
    }
    // The assignment is lost on the way; the retransmission timer sends it again, and a
    // duplicate of it arrives too.
    let lost = router.outgoing();
    assert!(lost.iter().any(|e| matches!(e.body, Body::Message { seq: 1, .. })));
    let again = router.retransmit();
    let mut sent = Vec::new();
    for e in again.iter().chain(again.iter()) {
        sent.extend(side.receive(t.cfg(), now, e.clone()));
    }
    assert_eq!(side.conversation().unwrap().state, State::Assigned);
    assert!(!side.awaits_router(C1), "answered");
    assert_eq!(replies(&sent), 1, "one auto-accept reply: {sent:?}");
    // The acknowledgement stops the retransmissions.
    for e in side.outgoing() {
        router.receive(now, e);
    }
    assert!(router.retransmit().is_empty());
    // Without agent links and desks, nothing is written on a desk.
    assert!(router.take_desk().is_empty() && side.take_desk().is_empty());
}

/// C1 opens at `now` (its route reaches the router and the answer comes back) and is ended
/// by its agent 5 s later, the leave reaching the router; returns the route as first sent.
fn routed_then_ended(
    t: &Tenant,
    router: &mut RouterSide,
    side: &mut ConversationSide,
    now: Timestamp,
) -> Vec<Envelope<ToRouter>> {
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    let route = side.outgoing();
    router.receive(now, route[0].clone());
    for e in router.outgoing() {
        side.receive(t.cfg(), now, e);
    }
    side.end(t.cfg(), now + secs(5), C1, Actor::Agent(A1)).unwrap();
    for e in side.outgoing() {
        router.receive(now + secs(5), e);
    }
    route
}

#[test]
fn a_late_copy_of_a_route_does_not_place_an_ended_conversation_again() {
    let (t, mut router, mut side) = setup();
    let now = Timestamp(1_000);
    let route = routed_then_ended(&t, &mut router, &mut side, now);
    assert!(matches!(route[0].body, Body::Message { seq: 1, message: ToRouter::Route { .. } }));
    assert!(router.router().placement(C1).is_none());
    assert!(router.router().agent(A1).unwrap().assigned.is_empty());
    // A copy of the route that was still in the network arrives: recognised, acknowledged,
    // not applied.
    router.receive(now + secs(6), route[0].clone());
    assert!(router.router().placement(C1).is_none());
    let answer: Vec<Envelope<_>> = router.outgoing();
    assert!(answer.iter().all(|e| matches!(e.body, Body::Ack { .. })), "{answer:?}");
    // After `linger` (and up to a sixteenth of it more) the tombstone goes.
    assert!(router.has_left(C1));
    router.advance(now + secs(6) + LINGER - secs(1));
    assert!(router.has_left(C1), "kept at least `linger`");
    router.advance(now + secs(6) + LINGER + LINGER / 16);
    assert!(!router.has_left(C1));
}

/// Once its last acknowledgement is out, a conversation that left is kept as a tombstone,
/// its id only (not its link): a late copy is still recognised and acknowledged, across a
/// snapshot of the side too, and the tombstone goes after `linger`.
#[test]
fn a_conversation_put_away_after_leaving_still_answers_a_late_copy() {
    let (t, mut router, mut side) = setup();
    let now = Timestamp(1_000);
    let route = routed_then_ended(&t, &mut router, &mut side, now);
    // The acknowledgement of the leave goes out, and the link with it.
    let acks = router.outgoing();
    assert!(acks.iter().all(|e| matches!(e.body, Body::Ack { .. })), "{acks:?}");
    // The tombstone is stored as a row of its own; the side's own row does not hold it.
    let (fresh, expired) = router.take_tombstones();
    assert_eq!(fresh.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [C1]);
    assert!(expired.is_empty());
    assert_eq!(router.take_tombstones(), (vec![], vec![]), "taken once");
    let bytes = rmp_serde::to_vec_named(&router).unwrap();
    let mut router: RouterSide = rmp_serde::from_slice(&bytes).unwrap();
    assert!(!router.has_left(C1), "not in the row");
    router.restore_tombstones(fresh);
    assert_eq!(router.take_tombstones(), (vec![], vec![]), "nothing new to store");
    router.restart(2, now + secs(6));
    assert!(router.has_left(C1));
    assert!(router.customer_of(C1).is_none(), "no link kept");
    assert!(router.outgoing().is_empty());
    // The copy of the route still in the network: acknowledged as far as itself (the side
    // resends its newest unacknowledged message with any other), not applied.
    router.receive(now + secs(6), route[0].clone());
    assert!(router.router().placement(C1).is_none());
    let answer = router.outgoing();
    assert!(
        matches!(answer[..], [Envelope { body: Body::Ack { next: 2 }, customer, .. }] if customer == route[0].customer),
        "{answer:?}"
    );
    router.advance(now + secs(6) + LINGER + LINGER / 16);
    assert!(!router.has_left(C1));
    assert_eq!(router.take_tombstones(), (vec![], vec![C1]), "its row is deleted");
}

/// The router's row does not grow with the conversations that left (their tombstones are
/// rows of their own); a row of the earlier encoding, which held them, still loads them, and
/// they are stored as rows with the next step.
#[test]
fn the_routers_row_does_not_grow_with_tombstones() {
    let (t, mut router, _) = setup();
    let now = Timestamp(1_000);
    let empty = rmp_serde::to_vec_named(&router).unwrap().len();
    for n in 1..=200u64 {
        let mut side = ConversationSide::new(CustomerId(n), Default::default());
        let mut m = message("hi");
        m.customer = CustomerId(n);
        m.new_conversation = ConversationId(n);
        side.customer_message(t.cfg(), now, m).unwrap();
        for e in side.outgoing() {
            router.receive(now, e);
        }
        for e in router.outgoing() {
            side.receive(t.cfg(), now, e);
        }
        side.end(t.cfg(), now + secs(1), ConversationId(n), Actor::Agent(A1)).unwrap();
        for e in side.outgoing() {
            router.receive(now + secs(1), e);
        }
        router.outgoing();
    }
    let (fresh, _) = router.take_tombstones();
    assert_eq!(fresh.len(), 200);
    assert!((1..=200).all(|n| router.has_left(ConversationId(n))));
    let row = rmp_serde::to_vec_named(&router).unwrap().len();
    assert!(row <= empty + 64, "{row} bytes for 200 tombstones, {empty} with none");

    // The earlier encoding: the same side with its tombstones in the row.
    #[derive(serde::Serialize)]
    struct Earlier<'a> {
        #[serde(flatten)]
        side: &'a RouterSide,
        gone: std::collections::BTreeMap<ConversationId, Tombstone>,
    }
    let gone = fresh.iter().copied().collect();
    let bytes = rmp_serde::to_vec_named(&Earlier { side: &router, gone }).unwrap();
    let mut loaded: RouterSide = rmp_serde::from_slice(&bytes).unwrap();
    loaded.restore_tombstones(vec![]);
    assert!((1..=200).all(|n| loaded.has_left(ConversationId(n))));
    assert_eq!(loaded.take_tombstones().0.len(), 200, "stored as rows with the next step");
}

/// A conversation opened with its bot is open work the router lists (the supervisor's reads
/// walk `open_after`) and decides nothing about; asking for a human routes it on the same
/// link; ending it with its bot (never routed) leaves, so it is listed no more.
#[test]
fn a_conversation_with_its_bot_is_listed_by_the_router_until_it_ends() {
    let (mut t, mut router, mut side) = setup();
    t.settings.transfer_to_human = true;
    let now = Timestamp(1_000);
    let open = |r: &RouterSide| r.open_after(ConversationId(0)).collect::<Vec<_>>();
    let exchange = |router: &mut RouterSide, side: &mut ConversationSide, at| {
        for e in side.outgoing() {
            router.receive(at, e);
        }
        for e in router.outgoing() {
            side.receive(t.cfg(), at, e);
        }
    };
    side.customer_message(t.cfg(), now, message("hi bot")).unwrap();
    exchange(&mut router, &mut side, now);
    assert_eq!(open(&router), [(C1, U1)]);
    assert_eq!(router.with_bot(), 1);
    assert_eq!(router.router().placement(C1), None, "nothing routed");
    assert_eq!(side.conversation().unwrap().state, State::Bot);

    side.request_human(t.cfg(), now + secs(1), C1).unwrap();
    exchange(&mut router, &mut side, now + secs(1));
    assert_eq!(router.with_bot(), 0);
    let placed = router.router().placement(C1);
    assert!(matches!(placed, Some(crate::router::Placement::Assigned { .. })), "{placed:?}");
    assert_eq!(side.conversation().unwrap().state, State::Assigned);
    assert_eq!(open(&router), [(C1, U1)]);

    // Another customer's conversation ends with its bot: it leaves.
    let (u2, c2) = (CustomerId(2), ConversationId(2));
    let mut other = ConversationSide::new(u2, Customer::default());
    let msg = CustomerMessage { customer: u2, new_conversation: c2, ..message("hi bot") };
    other.customer_message(t.cfg(), now, msg).unwrap();
    exchange(&mut router, &mut other, now);
    assert_eq!(open(&router), [(C1, U1), (c2, u2)]);
    other.channel_closed(t.cfg(), now + secs(2), c2).unwrap();
    exchange(&mut router, &mut other, now + secs(2));
    assert!(router.has_left(c2));
    assert_eq!((open(&router), router.with_bot()), (vec![(C1, U1)], 0));
}

#[test]
fn the_open_links_are_those_routed_and_not_left() {
    let (t, mut router, mut side) = setup();
    let now = Timestamp(1_000);
    let open = |r: &RouterSide, after| r.open_after(ConversationId(after)).collect::<Vec<_>>();
    assert!(open(&router, 0).is_empty());
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    for e in side.outgoing() {
        router.receive(now, e);
    }
    assert_eq!(open(&router, 0), [(C1, U1)]);
    assert!(open(&router, C1.0).is_empty(), "only those above `after`");
    for e in router.outgoing() {
        side.receive(t.cfg(), now, e);
    }
    side.end(t.cfg(), now + secs(5), C1, Actor::Agent(A1)).unwrap();
    for e in side.outgoing() {
        router.receive(now + secs(5), e);
    }
    assert!(router.has_left(C1));
    assert!(open(&router, 0).is_empty(), "a tombstone is not open");
}

/// A customer who writes while waiting hears the position the router says now, however
/// long ago it last said one: the message's replies wait for the router's answer
/// (`ToRouter::Where`), which comes even when nothing changed.
#[test]
fn the_queue_reply_waits_for_the_position_now() {
    let (mut t, mut router, mut side) = setup();
    t.settings.replies.queue = Some(crate::config::QueueReply {
        rules: vec![crate::config::QueueRule { above: 0, texts: vec!["#{{queue_num}}".into()] }],
        min_interval: Duration::ZERO,
    });
    let now = Timestamp(1_000);
    let texts = crate::engine::tests::sent_texts;
    // Customer 2 takes the agent; customer 3 waits first, our customer second.
    let mut others = Vec::new();
    for n in [2, 3] {
        let mut other = ConversationSide::new(CustomerId(n), Customer::default());
        let mut first = message("first");
        first.customer = CustomerId(n);
        first.new_conversation = ConversationId(n);
        other.customer_message(t.cfg(), now, first).unwrap();
        for e in other.outgoing() {
            router.receive(now, e);
        }
        others.push(other);
    }
    side.customer_message(t.cfg(), now, message("second")).unwrap();
    for e in side.outgoing() {
        router.receive(now, e);
    }
    let answer = |router: &mut RouterSide, side: &mut ConversationSide, at| {
        let mut out = Vec::new();
        for e in router.outgoing() {
            if e.customer == U1 {
                out.extend(side.receive(t.cfg(), at, e));
            }
        }
        out
    };
    answer(&mut router, &mut side, now);
    assert_eq!(side.standing().unwrap().position, Some(2));
    // Customer 3 gives up: our customer is first now, and nobody told it.
    let mut third = others.pop().unwrap();
    third.end(t.cfg(), now + secs(1), ConversationId(3), Actor::Supervisor(AgentId(9))).unwrap();
    for e in third.outgoing() {
        router.receive(now + secs(1), e);
    }
    assert_eq!(side.standing().unwrap().position, Some(2), "not pushed");
    let at = now + secs(60);
    let out = side.customer_message(t.cfg(), at, message("still there?")).unwrap();
    assert!(texts(&out.effects).is_empty(), "the replies wait: {:?}", out.effects);
    assert!(!side.awaits_router(C1), "the call is answered at once; only its replies wait");
    let asked = side.outgoing();
    assert!(asked.iter().any(|e| matches!(e.body, Body::Message { message: ToRouter::Where, .. })));
    for e in asked {
        router.receive(at, e);
    }
    assert_eq!(texts(&answer(&mut router, &mut side, at)), ["#1"]);
    // Asked again with nothing changed, the router still answers.
    side.customer_message(t.cfg(), at + secs(1), message("hello?")).unwrap();
    for e in side.outgoing() {
        router.receive(at + secs(1), e);
    }
    assert_eq!(texts(&answer(&mut router, &mut side, at + secs(1))), ["#1"]);
}

/// The router side's desk entries since its last write, as the shell writes them with its
/// row (every one A1's here).
fn router_desk(router: &mut RouterSide) -> Vec<DeskEvent> {
    let entries = router.take_desk();
    assert!(entries.iter().all(|(a, _)| *a == A1), "{entries:?}");
    entries.into_iter().map(|(_, e)| e).collect()
}

/// The conversation side's notes since its last write, as the desk entries the shell writes
/// with its row (every one for A1 here).
fn side_desk(side: &mut ConversationSide) -> Vec<DeskEvent> {
    let notes = side.take_desk();
    assert!(notes.iter().all(|(a, _)| *a == A1), "{notes:?}");
    notes.into_iter().map(|(_, n)| DeskEvent::Note(n)).collect()
}

/// The desk events a message of the router side to an agent stands for.
fn told(message: &ToAgent) -> Vec<DeskEvent> {
    match message {
        ToAgent::Decided { notes } => notes.iter().cloned().map(DeskEvent::Note).collect(),
        ToAgent::Refused { command, reason, .. } => {
            vec![DeskEvent::Refused { command: *command, reason: reason.clone() }]
        }
        ToAgent::Unaccepted { changes } => {
            changes.iter().copied().map(DeskEvent::Unaccepted).collect()
        }
        ToAgent::Done { .. } => Vec::new(),
    }
}

/// Delivers everything the agent side sends; the router side writes (its desk entries with
/// its row) and then sends, and everything it sends reaches the agent side twice (a
/// duplicate of each). Returns the desk entries the router wrote: exactly, in order, those
/// of the messages it sent the agent.
fn exchange(now: Timestamp, router: &mut RouterSide, desk: &mut AgentSide) -> Vec<DeskEvent> {
    for e in desk.outgoing() {
        router.receive_agent(now, e);
    }
    let written = router_desk(router);
    let back = router.outgoing_agents();
    let sent: Vec<DeskEvent> = back
        .iter()
        .flat_map(|e| match &e.body {
            Body::Message { message, .. } => told(message),
            Body::Ack { .. } => Vec::new(),
        })
        .collect();
    assert_eq!(written, sent, "the router's entries are its messages' to the agent");
    for e in back.iter().chain(back.iter()) {
        desk.receive(e.clone());
    }
    assert!(router.take_desk().is_empty(), "written once");
    written
}

#[test]
fn an_agent_changes_status_on_its_side_and_its_desk_hears_the_router_decide() {
    let (t, router, mut side) = setup();
    let mut router = router.with_agent_links();
    let mut desk = AgentSide::new(A1, AgentStatus::Online);
    let now = Timestamp(1_000);
    desk.set_status(AgentStatus::Away, StatusCause::Agent);
    assert_eq!(desk.status(), AgentStatus::Away, "the desk shows it at once");
    assert_eq!(
        router.router().agent(A1).unwrap().status,
        AgentStatus::Online,
        "one message behind"
    );
    let events = exchange(now, &mut router, &mut desk);
    let away = Note::StatusChanged { status: AgentStatus::Away, cause: StatusCause::Agent };
    assert_eq!(events, [DeskEvent::Note(away)]);
    assert_eq!(router.router().agent(A1).unwrap().status, AgentStatus::Away);
    // A customer waits; the agent comes back and the router assigns it the conversation.
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    for e in side.outgoing() {
        router.receive(now, e);
    }
    desk.set_status(AgentStatus::Online, StatusCause::Agent);
    let events = exchange(now + secs(1), &mut router, &mut desk);
    let online = Note::StatusChanged { status: AgentStatus::Online, cause: StatusCause::Agent };
    let assigned = Note::Assigned { conversation: C1, via: Via::Auto };
    // Away is signed in: the waiting customer was on its unaccepted list until assigned.
    let waits = Change::Added { conversation: C1, group: G1, pinned: false };
    let taken = Change::Removed { conversation: C1, gone: Gone::Assigned };
    assert_eq!(
        events,
        [
            DeskEvent::Unaccepted(waits),
            DeskEvent::Note(online),
            DeskEvent::Note(assigned),
            DeskEvent::Unaccepted(taken)
        ]
    );
    assert!(desk.assigned().contains(&C1));
    // Named by the router's message that assigned it (its fourth: a note and a `Done` for
    // the first command, the unaccepted list, then this one).
    assert_eq!(desk.holding(C1), Some(4));
    // The acknowledgements stop the retransmissions both ways.
    for e in desk.outgoing() {
        router.receive_agent(now + secs(1), e);
    }
    assert!(router.retransmit_agents().is_empty() && desk.retransmit().is_empty());
}

#[test]
fn a_refused_command_reaches_the_desk_and_a_refused_status_does_not_hold() {
    let (_, router, _) = setup();
    let mut router = router.with_agent_links();
    let mut desk = AgentSide::new(A1, AgentStatus::Online);
    let now = Timestamp(1_000);
    desk.set_status(AgentStatus::Offline, StatusCause::Agent);
    exchange(now, &mut router, &mut desk);
    // A supervisor may not force a signed-out agent online: the router refuses (and writes
    // the refusal on the desk), and the agent side goes back to the router's status.
    let command = desk.set_status(AgentStatus::Online, StatusCause::Supervisor);
    let events = exchange(now, &mut router, &mut desk);
    let [DeskEvent::Refused { command: c, reason }] = &events[..] else {
        panic!("{events:?}");
    };
    assert_eq!(*c, command);
    assert_eq!(desk.status(), AgentStatus::Offline);
    assert_eq!(desk.decision(command), Some(Some(reason.as_str())), "the side knows why");
    // So is an acceptance of something never offered.
    let accept = desk.accept(C1);
    let refused = router.outgoing_agents();
    assert!(refused.is_empty(), "nothing arrived yet");
    assert!(router.take_desk().is_empty(), "nor was anything written");
    for e in desk.outgoing() {
        router.receive_agent(now, e);
    }
    let written = router_desk(&mut router);
    assert!(
        matches!(&written[..], [DeskEvent::Refused { command: c, .. }] if *c == accept),
        "{written:?}"
    );
    let back = router.outgoing_agents();
    assert!(back.iter().any(|e| matches!(
        &e.body,
        Body::Message { message: ToAgent::Refused { status: AgentStatus::Offline, .. }, .. }
    )));
    for e in back {
        desk.receive(e);
    }
    assert!(matches!(desk.decision(accept), Some(Some(_))), "refused");
    assert_eq!(desk.status(), AgentStatus::Offline);
}

#[test]
fn a_restarted_agent_side_resends_its_command_and_the_router_writes_its_decision_once() {
    let (_, router, _) = setup();
    let mut router = router.with_agent_links();
    let mut desk = AgentSide::new(A1, AgentStatus::Online);
    let now = Timestamp(1_000);
    desk.set_status(AgentStatus::Away, StatusCause::Agent);
    assert_eq!(exchange(now, &mut router, &mut desk).len(), 1);
    // The next command is written (durable) and lost on the way; then the side restarts.
    desk.set_status(AgentStatus::Busy, StatusCause::Agent);
    let lost = desk.outgoing();
    assert_eq!(lost.len(), 2, "the command and the acknowledgement of the router's message");
    let bytes = rmp_serde::to_vec_named(&desk).unwrap();
    let mut desk: AgentSide = rmp_serde::from_slice(&bytes).unwrap();
    desk.restart(2);
    let events = exchange(now, &mut router, &mut desk);
    let busy = Note::StatusChanged { status: AgentStatus::Busy, cause: StatusCause::Agent };
    assert_eq!(events, [DeskEvent::Note(busy)]);
    assert_eq!((desk.status(), desk.decided()), (AgentStatus::Busy, 2));
    // A late copy of the first incarnation's command changes nothing, and writes nothing.
    for e in lost {
        router.receive_agent(now, e);
    }
    assert!(router.take_desk().is_empty(), "decided once, written once");
    assert_eq!(router.router().agent(A1).unwrap().status, AgentStatus::Busy);
    assert_eq!(router.applied_agent(A1), 2);
}

/// The router's desk entries go with its row: taken at its write and not in its encoding,
/// lost with a write that is lost (its step is made again from the resent input, and they
/// with it), and not made again by a rebuild from its journal (the rows it replays were
/// written with them).
#[test]
fn the_routers_desk_entries_are_written_once_with_its_row() {
    use super::journal::{self, RouterInput};
    let (t, router, mut side) = setup();
    let mut router = router.with_agent_links();
    let checkpoint = rmp_serde::to_vec(&router).unwrap();
    let now = Timestamp(1_000);
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    for e in side.outgoing() {
        router.receive(now, e);
    }
    assert_eq!(router.take_decisions(), 1);
    // Its write is lost: restarted from its last row, it has neither the decision nor its
    // entry.
    let mut router: RouterSide = rmp_serde::from_slice(&checkpoint).unwrap();
    router.restart(2, now);
    let mut log = vec![RouterInput::Restart { epoch: 2, at: now }];
    assert!(router.take_desk().is_empty());
    assert!(router.router().placement(C1).is_none());
    // The route comes again: decided again, its entry made again, once.
    for e in side.retransmit() {
        router.receive(now, e.clone());
        log.push(RouterInput::Deliver { at: now, envelope: e });
    }
    let assigned = DeskEvent::Note(Note::Assigned { conversation: C1, via: Via::Auto });
    assert_eq!(router_desk(&mut router), [assigned]);
    // Written with its row: a copy decoded from that row has nothing to write.
    let row = rmp_serde::to_vec_named(&router).unwrap();
    let mut decoded: RouterSide = rmp_serde::from_slice(&row).unwrap();
    assert!(decoded.take_desk().is_empty());
    // Nor has the side its journal rebuilds (the checkpoint and the inputs after it).
    let mut replayed: RouterSide = rmp_serde::from_slice(&checkpoint).unwrap();
    journal::rebuild(&mut replayed, Vec::new(), 0, log, |_| 0);
    assert_eq!(durable(&replayed), durable(&router));
    assert!(replayed.take_desk().is_empty());
    // Entries not taken yet are what a restart loses.
    router.set_status(now, A1, AgentStatus::Away, StatusCause::Agent).unwrap();
    router.forget_volatile();
    assert!(router.take_desk().is_empty());
}

/// A router with agent links, a conversation side that writes its own notes on its
/// holder's desk, and the agent's side.
fn with_desks() -> (Tenant, RouterSide, ConversationSide, AgentSide) {
    let (t, router, side) = setup();
    (t, router.with_agent_links(), side.with_desk(), AgentSide::new(A1, AgentStatus::Online))
}

/// "hi" opens C1 and the router gives it to A1, each side writing before it sends; returns
/// the desk stream: the router's offer or assignment, then the side's note of the message.
/// The router's messages reach the agent side (its acknowledgements are not delivered).
fn opened_on_the_desk(
    t: &Tenant,
    now: Timestamp,
    router: &mut RouterSide,
    side: &mut ConversationSide,
    desk: &mut AgentSide,
) -> Vec<DeskEvent> {
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    let mut stream = side_desk(side);
    assert!(stream.is_empty(), "no holding yet: the message's note waits for the route");
    for e in side.outgoing() {
        router.receive(now, e);
    }
    stream.extend(router_desk(router));
    for e in router.outgoing() {
        side.receive(t.cfg(), now, e);
    }
    for e in router.outgoing_agents() {
        desk.receive(e);
    }
    stream.extend(side_desk(side));
    assert_eq!(stream.len(), 2, "{stream:?}");
    assert_eq!(stream[1], customer_note("hi"));
    stream
}

fn customer_note(text: &str) -> DeskEvent {
    DeskEvent::Note(Note::CustomerMessage {
        conversation: C1,
        text: text.into(),
        bot_hosting: false,
    })
}

#[test]
fn a_customer_message_is_written_on_the_desk_by_its_side_after_the_placement_naming_the_holding() {
    let (t, mut router, mut side, mut desk) = with_desks();
    let now = Timestamp(1_000);
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    assert!(side.take_desk().is_empty(), "its note waits for the route, with its replies");
    for e in side.outgoing() {
        router.receive(now, e);
    }
    // The router's write: the assignment goes on the desk with the decision.
    let assigned = DeskEvent::Note(Note::Assigned { conversation: C1, via: Via::Auto });
    let mut stream = router_desk(&mut router);
    assert_eq!(stream, std::slice::from_ref(&assigned));
    // The conversation side hears of the holding only from the router's message, which
    // leaves after that write.
    assert_eq!(side.holding(), None);
    let placed = router.outgoing();
    let mut heard = Vec::new();
    for e in &placed {
        heard.extend(side.receive(t.cfg(), now, e.clone()));
    }
    assert_eq!(side.holding(), Some(Holding { agent: A1, since: 1 }));
    // Its note of the opening message, for that holding, in its own write: after the
    // assignment. (Still an effect too.)
    let hi = Note::CustomerMessage { conversation: C1, text: "hi".into(), bot_hosting: false };
    assert!(heard.contains(&Effect::Notify { agent: A1, note: hi }), "{heard:?}");
    stream.extend(side_desk(&mut side));
    assert_eq!(stream, [assigned, customer_note("hi")]);
    // A copy of the router's message makes nothing again.
    for e in placed {
        side.receive(t.cfg(), now, e);
    }
    assert!(side.take_desk().is_empty(), "made once");
    // The agent side names the holding alike.
    for e in router.outgoing_agents() {
        desk.receive(e);
    }
    assert_eq!(desk.holding(C1), Some(1));
    // The next message goes on the desk without the router, once.
    side.customer_message(t.cfg(), now + secs(1), message("more")).unwrap();
    assert!(side.outgoing().iter().all(|e| matches!(e.body, Body::Ack { .. })), "no router");
    assert_eq!(side_desk(&mut side), [customer_note("more")]);
    assert!(side.take_desk().is_empty(), "handed over once");
    assert!(router.take_desk().is_empty(), "nothing of the router's");
}

#[test]
fn an_ended_conversations_leave_goes_at_once_and_its_release_is_written_after_its_notes() {
    use crate::router::Release;
    let (t, mut router, mut side, mut desk) = with_desks();
    let now = Timestamp(1_000);
    let mut stream = opened_on_the_desk(&t, now, &mut router, &mut side, &mut desk);
    // The customer writes: the side's write holds the note.
    side.customer_message(t.cfg(), now + secs(1), message("late")).unwrap();
    stream.extend(side_desk(&mut side));
    side.outgoing();
    // The agent ends the conversation: its leave goes with the next write, waiting for
    // nothing (no desk acknowledges anything).
    side.end(t.cfg(), now + secs(2), C1, Actor::Agent(A1)).unwrap();
    stream.extend(side_desk(&mut side));
    let leave = side.outgoing();
    assert!(
        leave.iter().any(|e| matches!(e.body, Body::Message { message: ToRouter::Leave, .. })),
        "{leave:?}"
    );
    // The router's release, written when it hears the leave, comes after every note.
    for e in leave {
        router.receive(now + secs(2), e);
    }
    stream.extend(router_desk(&mut router));
    let released = Note::Released { conversation: C1, reason: Release::Ended };
    assert_eq!(
        stream[1..],
        [customer_note("hi"), customer_note("late"), DeskEvent::Note(released)]
    );
    for e in router.outgoing_agents() {
        desk.receive(e);
    }
    assert_eq!(desk.holding(C1), None);
    assert!(side.take_desk().is_empty(), "nothing more of it");
}

#[test]
fn a_restarted_side_writes_a_note_again_only_if_its_step_was_lost() {
    let (t, mut router, mut side, _) = with_desks();
    let now = Timestamp(1_000);
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    assert!(side.take_desk().is_empty());
    let row = rmp_serde::to_vec_named(&side).unwrap();
    for e in side.outgoing() {
        router.receive(now, e);
    }
    router.take_desk();
    let placed = router.outgoing();
    // The side applies the router's message and makes the note, but its write is lost:
    // restarted from its row, it has neither.
    for e in &placed {
        side.receive(t.cfg(), now, e.clone());
    }
    assert_eq!(side.take_desk().len(), 1);
    let mut side: ConversationSide = rmp_serde::from_slice(&row).unwrap();
    side.restart(2);
    assert!(side.take_desk().is_empty());
    assert_eq!(side.holding(), None, "the step is lost");
    // Unacknowledged, the router's message comes again: the step is made again, its note
    // with it.
    for e in router.retransmit() {
        side.receive(t.cfg(), now, e);
    }
    assert_eq!(side_desk(&mut side), [customer_note("hi")]);
    // Written this time; its acknowledgement is lost, and the side restarts from that row.
    let row = rmp_serde::to_vec_named(&side).unwrap();
    side.outgoing();
    let mut side: ConversationSide = rmp_serde::from_slice(&row).unwrap();
    side.restart(3);
    assert!(side.take_desk().is_empty(), "not in its row");
    // The router's message comes again: a duplicate now, it makes nothing.
    for e in router.retransmit() {
        side.receive(t.cfg(), now, e);
    }
    assert!(side.take_desk().is_empty(), "written once");
    assert_eq!(side.holding(), Some(Holding { agent: A1, since: 1 }));
    side.customer_message(t.cfg(), now + secs(1), message("again")).unwrap();
    assert_eq!(side_desk(&mut side), [customer_note("again")]);
}

/// A conversation transferred into a group that offers: its `transferred` event comes
/// before its `offered`, as on one node. The conversation reports both (the transfer as it
/// stood before the move); the router, which decides the offer, leaves that event to it.
#[test]
fn a_transferred_conversations_offer_is_reported_after_its_transfer() {
    use crate::engine::{Event, Target};
    const G2: GroupId = GroupId(2);
    const A2: AgentId = AgentId(2);
    let (mut t, _, mut side) = setup();
    t.groups.insert(G2, GroupSettings::default());
    let t0 = Timestamp(0);
    let mut r = Router::new(secs(60), Default::default());
    let mut out = Vec::new();
    let offer = OfferMode::Offer { timeout: secs(30) };
    r.upsert_group(t0, G1, Default::default(), &mut out);
    r.upsert_group(t0, G2, GroupPolicy { offer, ..Default::default() }, &mut out);
    for (a, g) in [(A1, G1), (A2, G2)] {
        r.upsert_agent(t0, a, 1, vec![g], Default::default(), &mut out).unwrap();
        r.set_status(t0, a, AgentStatus::Online, StatusCause::Agent, &mut out).unwrap();
    }
    let mut router = RouterSide::new(r, LINGER);
    let now = Timestamp(1_000);
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    for e in side.outgoing() {
        router.receive(now, e);
    }
    for e in router.outgoing() {
        side.receive(t.cfg(), now, e);
    }
    assert_eq!(side.conversation().unwrap().agent, Some(A1));
    let to = Target::Group { group: G2, keep_entry_time: false };
    let at = now + secs(5);
    let by_router = router.transfer(at, C1, to, Actor::Supervisor(AgentId(9))).unwrap();
    let event = |e: &Effect| match e {
        Effect::Event(Event::Transferred { .. }) => Some("transferred"),
        Effect::Event(Event::Offered { .. }) => Some("offered"),
        _ => None,
    };
    assert!(by_router.iter().all(|e| event(e).is_none()), "{by_router:?}");
    let mut by_side = Vec::new();
    for e in router.outgoing() {
        by_side.extend(side.receive(t.cfg(), at, e));
    }
    let events: Vec<_> = by_side.iter().filter_map(event).collect();
    assert_eq!(events, ["transferred", "offered"]);
    assert_eq!(side.conversation().unwrap().state, State::Offered);
}

#[test]
fn an_offered_agent_sees_the_customer_and_a_note_written_as_the_offer_ends_follows_its_release() {
    let (t, _, side) = setup();
    let t0 = Timestamp(0);
    let mut r = Router::new(secs(60), Default::default());
    let mut out = Vec::new();
    let offer = OfferMode::Offer { timeout: secs(30) };
    r.upsert_group(t0, G1, GroupPolicy { offer, ..Default::default() }, &mut out);
    r.upsert_agent(t0, A1, 1, vec![G1], Default::default(), &mut out).unwrap();
    r.set_status(t0, A1, AgentStatus::Online, StatusCause::Agent, &mut out).unwrap();
    let mut router = RouterSide::new(r, LINGER).with_agent_links();
    let mut side = side.with_desk();
    let mut desk = AgentSide::new(A1, AgentStatus::Online);
    let now = Timestamp(1_000);
    // Only offered, the agent's desk shows the customer's message, as on one node.
    let mut stream = opened_on_the_desk(&t, now, &mut router, &mut side, &mut desk);
    assert!(matches!(stream[0], DeskEvent::Note(Note::Offered { conversation: C1, .. })));
    assert!(desk.offered().contains(&C1));
    assert_eq!(side.holding(), Some(Holding { agent: A1, since: 1 }));
    // The offer times out: the router releases the agent, and writes so; its word to the
    // conversation is still on the way when the customer writes again.
    router.advance(now + secs(31));
    let released = router_desk(&mut router);
    // Requeued in its group: back on the agent's unaccepted list.
    let back = Change::Added { conversation: C1, group: G1, pinned: false };
    assert!(
        matches!(&released[..], [DeskEvent::Note(Note::Released { conversation: C1, .. }), DeskEvent::Unaccepted(b)] if *b == back),
        "{released:?}"
    );
    stream.extend(released);
    let in_flight = router.outgoing();
    side.customer_message(t.cfg(), now + secs(31), message("still there?")).unwrap();
    // The side still holds the offer as it last heard: its note goes to that agent, after
    // the release (one message stale; a desk shows notes only of what it holds).
    stream.extend(side_desk(&mut side));
    assert!(matches!(stream[2], DeskEvent::Note(Note::Released { .. })), "{stream:?}");
    assert_eq!(stream[4..], [customer_note("still there?")]);
    for e in in_flight {
        side.receive(t.cfg(), now + secs(31), e);
    }
    for e in router.outgoing_agents() {
        desk.receive(e);
    }
    assert_eq!((side.holding(), desk.holding(C1)), (None, None));
    // Waiting in the queue, its messages go on no desk.
    side.customer_message(t.cfg(), now + secs(31), message("anyone?")).unwrap();
    assert!(side.take_desk().is_empty());
    // The agent picks it from the queue: a new holding, named by the router's message
    // that began it.
    desk.pick(C1);
    for e in desk.outgoing() {
        router.receive_agent(now + secs(32), e);
    }
    let picked = router_desk(&mut router);
    let assigned = DeskEvent::Note(Note::Assigned { conversation: C1, via: Via::Picked });
    assert_eq!(picked.first(), Some(&assigned), "{picked:?}");
    for e in router.outgoing() {
        side.receive(t.cfg(), now + secs(32), e);
    }
    for e in router.outgoing_agents() {
        desk.receive(e);
    }
    let again = side.holding().expect("picked");
    assert_eq!(desk.holding(C1), Some(again.since));
    // Its fourth message: the third put the conversation back on the unaccepted list.
    assert_eq!(again.since, 4, "the router's fourth message to the desk");
    // The new holding's notes go on the desk.
    side.customer_message(t.cfg(), now + secs(32), message("hello?")).unwrap();
    assert_eq!(side_desk(&mut side), [customer_note("hello?")]);
}

/// Bot hosting by the agent holding the conversation or a supervisor (another agent is
/// refused), and a rating with the engine's rule (`Conversation::rate`), open or ended.
/// C1 opens at `now` with "hi" and is assigned to A1 (the route and its answer delivered).
fn opened_and_assigned(
    t: &Tenant,
    router: &mut RouterSide,
    side: &mut ConversationSide,
    now: Timestamp,
) {
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    for e in side.outgoing() {
        router.receive(now, e);
    }
    for e in router.outgoing() {
        side.receive(t.cfg(), now, e);
    }
    assert_eq!(side.conversation().unwrap().state, State::Assigned);
}

#[test]
fn bot_hosting_and_ratings_follow_the_engines_rules_on_the_side() {
    use crate::error::Error;
    let (t, mut router, mut side) = setup();
    let now = Timestamp(1_000);
    opened_and_assigned(&t, &mut router, &mut side, now);
    let other = AgentId(2);
    let e = side.set_bot_hosting_by(t.cfg(), C1, true, Actor::Agent(other)).unwrap_err();
    assert!(matches!(e, Error::NotAssigned { .. }), "{e:?}");
    let (changed, fx) = side.set_bot_hosting_by(t.cfg(), C1, true, Actor::Agent(A1)).unwrap();
    assert!(changed);
    assert!(fx.iter().any(|e| matches!(e, Effect::Notify { note: Note::BotHosting { .. }, .. })));
    let (changed, _) =
        side.set_bot_hosting_by(t.cfg(), C1, true, Actor::Supervisor(other)).unwrap();
    assert!(!changed, "already on");
    assert!(side.conversation().unwrap().bot_hosting);

    assert!(matches!(side.rate(t.cfg(), C1, 0, ""), Err(Error::InvalidArgument(_))));
    side.rate(t.cfg(), C1, 4, "ok").unwrap();
    assert_eq!(side.conversation().unwrap().rating.as_ref().map(|r| r.score), Some(4));
    side.end(t.cfg(), now, C1, Actor::Agent(A1)).unwrap();
    let mut ended = side.take_ended().pop().expect("ended");
    assert!(side.rate(t.cfg(), C1, 5, "").is_err(), "the side no longer holds it");
    super::conversation::rate_ended(t.cfg(), &mut ended, 5, "great").unwrap();
    let rating = ended.rating.expect("rated");
    assert_eq!((rating.score, rating.credited), (5, vec![A1]));
}

/// `RouterSide::reconfigure`: a new agent joins routing and takes the waiting conversation,
/// a capacity change holds, a removed agent's conversation is requeued, and the same
/// configuration again changes nothing.
#[test]
fn reconfigure_brings_the_router_to_a_newer_configuration() {
    let (mut t, mut router, mut side) = setup();
    let now = Timestamp(1_000);
    // A1 goes away: the conversation waits in G1.
    router.set_status(now, A1, AgentStatus::Away, StatusCause::Agent).unwrap();
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    for e in side.outgoing() {
        router.receive(now, e);
    }
    assert!(router.router().position(C1).is_some(), "queued");

    // A2 appears in the configuration, capacity 2: the router has it after reconfigure.
    const A2: AgentId = AgentId(2);
    let a2 = AgentSettings { capacity: 2, groups: vec![G1], ..Default::default() };
    t.agents.insert(A2, a2);
    router.reconfigure(now, t.cfg());
    assert_eq!(router.router().agent(A2).map(|a| a.capacity), Some(2));
    router.set_status(now, A2, AgentStatus::Online, StatusCause::Agent).unwrap();
    assert_eq!(router.router().placement(C1).and_then(|p| p.agent()), Some(A2));

    // Its capacity lowered to 1 and a proficiency level set, then the same configuration
    // again: nothing more changes.
    t.agents.get_mut(&A2).unwrap().capacity = 1;
    t.agents.get_mut(&A2).unwrap().proficiency.insert(G1, 4);
    router.reconfigure(now, t.cfg());
    assert_eq!(router.router().agent(A2).map(|a| a.capacity), Some(1));
    let levels = router.router().agent(A2).map(|a| a.proficiency.clone());
    assert_eq!(levels, Some([(G1, 4)].into_iter().collect()), "its level in G1");
    assert!(router.reconfigure(now, t.cfg()).is_empty(), "idempotent");

    // A2 removed: signed out and forgotten, its conversation back in the queue.
    t.agents.remove(&A2);
    router.reconfigure(now, t.cfg());
    assert!(router.router().agent(A2).is_none());
    assert_eq!(router.router().placement(C1).and_then(|p| p.agent()), None);
    assert!(router.router().position(C1).is_some(), "requeued");
}

/// An administrator's change the router must agree to first: a capacity below what the
/// agent serves is refused and changes nothing; one it can take holds at once, and a
/// configuration that did not follow brings the old one back. A group a conversation is in
/// cannot be retired; an empty one is forgotten, and comes back with a configuration that
/// kept it.
#[test]
fn the_router_agrees_first_to_a_lower_capacity_and_a_deleted_group() {
    use super::RouterOp;
    use crate::error::Error;

    let (mut t, mut router, mut side) = setup();
    let now = Timestamp(1_000);
    t.agents.get_mut(&A1).unwrap().capacity = 2;
    router.reconfigure(now, t.cfg());
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    for e in side.outgoing() {
        router.receive(now, e);
    }
    assert_eq!(router.router().placement(C1).and_then(|p| p.agent()), Some(A1));

    // A1 serves one: 0 is no capacity, and the group is in use.
    let op = RouterOp::LowerCapacity { agent: A1, capacity: 0 };
    assert!(router.apply_op(now, op).is_err());
    assert_eq!(router.router().agent(A1).map(|a| a.capacity), Some(2), "unchanged");
    let e = router.apply_op(now, RouterOp::RetireGroup { group: G1 }).unwrap_err();
    assert!(matches!(e, Error::GroupInUse(G1)), "{e:?}");
    assert!(router.router().group_policy(G1).is_some(), "kept");

    // 1 holds at once; a configuration still saying 2 brings 2 back.
    router.apply_op(now, RouterOp::LowerCapacity { agent: A1, capacity: 1 }).unwrap();
    assert_eq!(router.router().agent(A1).map(|a| a.capacity), Some(1));
    router.reconfigure(now, t.cfg());
    assert_eq!(router.router().agent(A1).map(|a| a.capacity), Some(2));
    // Raising, or an agent the router does not have: the configuration's to bring.
    assert!(router.lower_capacity(now, A1, 3).unwrap().is_empty());
    assert!(router.lower_capacity(now, AgentId(9), 1).unwrap().is_empty());
    assert_eq!(router.router().agent(A1).map(|a| a.capacity), Some(2));

    // An empty group nobody is in: retired at once, and back with a configuration keeping it.
    const G2: GroupId = GroupId(2);
    t.groups.insert(G2, GroupSettings::default());
    router.reconfigure(now, t.cfg());
    assert!(router.router().group_policy(G2).is_some());
    router.apply_op(now, RouterOp::RetireGroup { group: G2 }).unwrap();
    assert!(router.router().group_policy(G2).is_none(), "retired");
    router.apply_op(now, RouterOp::RetireGroup { group: G2 }).unwrap();
    router.reconfigure(now, t.cfg());
    assert!(router.router().group_policy(G2).is_some(), "the configuration kept it");
}

/// The router side keeps each agent's first sign-in of the day from its own status changes
/// (`crate::login`), in its durable state; an agent removed from the configuration is
/// forgotten with it.
#[test]
fn the_router_side_keeps_first_sign_ins_in_its_durable_state() {
    use crate::login::FirstLogin;
    let (t, mut router, _) = setup();
    let day = 20_000;
    // A1 signs out and in again: its sign-in is the router's status change.
    let out = router.set_status(Timestamp(1_000), A1, AgentStatus::Offline, StatusCause::Agent);
    router.note_logins(Timestamp(1_000), &out.unwrap(), || panic!("signing out is no sign-in"));
    assert_eq!(router.first_login(A1), None);
    let back = router.set_status(Timestamp(2_000), A1, AgentStatus::Away, StatusCause::Agent);
    router.note_logins(Timestamp(2_000), &back.unwrap(), || day);
    let first = Some(FirstLogin { day, at: Timestamp(2_000) });
    assert_eq!(router.first_login(A1), first);

    // Through the encoding of its row: still there.
    let bytes = rmp_serde::to_vec_named(&router).unwrap();
    let mut router: RouterSide = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(router.first_login(A1), first);

    // Removed from the configuration: forgotten.
    let mut none =
        Tenant { settings: t.settings.clone(), groups: t.groups.clone(), agents: t.agents };
    none.agents.clear();
    router.reconfigure(Timestamp(3_000), none.cfg());
    assert_eq!(router.first_login(A1), None);
}

/// What an administrator sets on a customer, on its conversation side: refused as the
/// engine refuses it (an unknown group or dedicated agent; nothing changes), else the
/// customer's next route carries its priority (the higher of its own and its customer
/// groups') and its dedicated agent, and opens in its group.
#[test]
fn customer_settings_are_checked_as_the_engine_checks_them_and_reach_the_next_route() {
    use crate::config::CustomerSettings;
    use crate::error::Error;

    let (mut t, _, mut side) = setup();
    t.settings.customer_group_priorities.insert("vip".into(), 7);
    let mut engine = crate::Engine::new(t.settings.clone()).unwrap();
    engine.upsert_group(Timestamp(0), G1, GroupSettings::default()).unwrap();
    engine.upsert_agent(Timestamp(0), A1, t.agents[&A1].clone()).unwrap();

    let unknown_group = CustomerSettings { group: Some(GroupId(9)), ..Default::default() };
    let unknown_agent =
        CustomerSettings { dedicated_agent: Some(AgentId(9)), ..Default::default() };
    for bad in [unknown_group, unknown_agent] {
        let on_side = side.put_customer(t.cfg(), bad.clone()).unwrap_err();
        let on_engine = engine.upsert_customer(Timestamp(0), U1, bad).unwrap_err();
        assert_eq!(on_side, on_engine);
        assert!(matches!(on_side, Error::UnknownGroup(_) | Error::UnknownAgent(_)), "{on_side}");
        assert_eq!(side.customer(), &Customer::default(), "a refusal changes nothing");
    }

    let vip = CustomerSettings {
        priority: 3,
        group: Some(G1),
        dedicated_agent: Some(A1),
        customer_groups: vec!["vip".into()],
        ..Default::default()
    };
    side.put_customer(t.cfg(), vip.clone()).unwrap();
    assert_eq!(side.customer().settings, vip);
    let now = Timestamp(1_000);
    side.customer_message(t.cfg(), now, CustomerMessage { group: None, ..message("hi") }).unwrap();
    let route = side.outgoing();
    let Body::Message { message: ToRouter::Route { request, .. }, .. } = &route[0].body else {
        panic!("{route:?}");
    };
    assert_eq!((request.group, request.priority, request.dedicated), (G1, 7, Some(A1)));
}

/// A conversation waiting for its customer's dedicated agent (signed in, busy) while A1 is
/// free: clearing the dedicated agent tells the router, which serves it from the group at
/// once, as the engine does (`engine/tests.rs`).
#[test]
fn a_cleared_dedicated_agent_reaches_the_router_and_releases_the_wait() {
    use crate::config::CustomerSettings;

    const A2: AgentId = AgentId(2);
    let (mut t, _, mut side) = setup();
    let agent = AgentSettings { capacity: 1, groups: vec![G1], ..Default::default() };
    t.agents.insert(A2, agent);
    let t0 = Timestamp(0);
    let mut r = Router::new(secs(60), Default::default());
    let mut out = Vec::new();
    r.upsert_group(t0, G1, Default::default(), &mut out);
    for (a, status) in [(A1, AgentStatus::Online), (A2, AgentStatus::Busy)] {
        r.upsert_agent(t0, a, 1, vec![G1], Default::default(), &mut out).unwrap();
        r.set_status(t0, a, status, StatusCause::Agent, &mut out).unwrap();
    }
    let mut router = RouterSide::new(r, LINGER);
    let exchange = |now, router: &mut RouterSide, side: &mut ConversationSide| {
        for e in side.outgoing() {
            router.receive(now, e);
        }
        for e in router.outgoing() {
            side.receive(t.cfg(), now, e);
        }
    };
    let loyal = CustomerSettings { dedicated_agent: Some(A2), ..Default::default() };
    side.put_customer(t.cfg(), loyal).unwrap();
    assert!(side.outgoing().is_empty(), "nothing open: nothing for the router");
    let now = Timestamp(1_000);
    side.customer_message(t.cfg(), now, message("hi")).unwrap();
    exchange(now, &mut router, &mut side);
    assert_eq!(side.conversation().unwrap().state, State::Queued, "waits for A2");
    side.put_customer(t.cfg(), CustomerSettings::default()).unwrap();
    exchange(now + secs(1), &mut router, &mut side);
    let conversation = side.conversation().unwrap();
    assert_eq!((conversation.state, conversation.agent), (State::Assigned, Some(A1)));
    // The same settings again send nothing.
    side.put_customer(t.cfg(), CustomerSettings::default()).unwrap();
    assert!(side.outgoing().iter().all(|e| matches!(e.body, Body::Ack { .. })));
}

/// A customer's group deleted since (a tenant on actors keeps customers' settings where
/// the deletion cannot see them) counts as none: the conversation opens in the tenant's
/// default group instead of being refused.
#[test]
fn a_customers_deleted_group_routes_as_none() {
    use crate::config::CustomerSettings;

    let (mut t, _, mut side) = setup();
    const G2: GroupId = GroupId(2);
    t.groups.insert(G2, GroupSettings::default());
    side.put_customer(t.cfg(), CustomerSettings { group: Some(G2), ..Default::default() }).unwrap();
    t.groups.remove(&G2);
    let now = Timestamp(1_000);
    side.customer_message(t.cfg(), now, CustomerMessage { group: None, ..message("hi") }).unwrap();
    let route = side.outgoing();
    let Body::Message { message: ToRouter::Route { request, .. }, .. } = &route[0].body else {
        panic!("{route:?}");
    };
    assert_eq!(request.group, G1, "the tenant's default group");
}

/// The nickname a channel reports with a message goes in before the message (its replies
/// greet by it) and only if the message is accepted, as on one node.
#[test]
fn a_reported_nickname_is_kept_only_with_an_accepted_message() {
    use crate::config::MessageReceivedReply;

    let (mut t, mut router, mut side) = setup();
    t.settings.message_received = Some(MessageReceivedReply {
        texts: vec!["hi {{nick_name}}".into()],
        also_in_session: true,
    });
    let now = Timestamp(1_000);
    // Refused (an empty text): the nickname is not kept.
    side.customer_message_named(t.cfg(), now, message(" "), "Ann").unwrap_err();
    assert_eq!(side.customer().settings.nickname, None);
    // Refused (no group anywhere): not kept either.
    let groupless = Tenant {
        settings: TenantSettings { default_group: None, ..t.settings.clone() },
        groups: t.groups.clone(),
        agents: t.agents.clone(),
    };
    side.customer_message_named(groupless.cfg(), now, message("hello"), "Ann").unwrap_err();
    assert_eq!(side.customer().settings.nickname, None);

    // Accepted: kept, and the message's own reply greets by it.
    side.customer_message_named(t.cfg(), now, message("hello"), "Ann").unwrap();
    assert_eq!(side.customer().settings.nickname.as_deref(), Some("Ann"));
    for e in side.outgoing() {
        router.receive(now, e);
    }
    let mut sent = Vec::new();
    for e in router.outgoing() {
        sent.extend(side.receive(t.cfg(), now, e));
    }
    let texts: Vec<&str> = sent
        .iter()
        .filter_map(|e| match e {
            Effect::Send { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert!(texts.contains(&"hi Ann"), "{texts:?}");
    // No nickname reported: the known one stays.
    side.customer_message_named(t.cfg(), now, message("again"), "").unwrap();
    assert_eq!(side.customer().settings.nickname.as_deref(), Some("Ann"));
}

/// A standing carries its estimated wait across the wire; one written before the wait was
/// (three elements) still reads, without an estimate.
#[test]
fn a_standing_carries_its_wait_and_reads_without_one() {
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Told(#[serde(with = "super::standing")] crate::router::Standing);
    let told = crate::router::Standing {
        position: Some(3),
        offline: Some(Some(A1)),
        wait: Some(Duration::from_millis(90_500)),
    };
    let bytes = rmp_serde::to_vec_named(&Told(told)).unwrap();
    assert_eq!(rmp_serde::from_slice::<Told>(&bytes).unwrap().0, told);
    let earlier = rmp_serde::to_vec_named(&(Some(3usize), true, Some(A1))).unwrap();
    let read = rmp_serde::from_slice::<Told>(&earlier).unwrap().0;
    assert_eq!(read, crate::router::Standing { wait: None, ..told });
    let none = rmp_serde::to_vec_named(&(None::<usize>, false, None::<AgentId>)).unwrap();
    assert_eq!(rmp_serde::from_slice::<Told>(&none).unwrap().0, Default::default());
}

/// The side's durable state as an order-free value (its hash maps compare by content).
fn durable(router: &RouterSide) -> serde_json::Value {
    serde_json::to_value(router).expect("the side encodes")
}

/// A router side driven directly (as the shell drives it), every input logged; a checkpoint
/// taken mid-way (with an early message held back on a link), a restart, tombstones that
/// appear and expire: the checkpoint plus the inputs logged after it, replayed, give the
/// same durable state.
#[test]
fn a_checkpoint_and_the_inputs_after_it_replay_to_the_same_side() {
    use super::journal::{self, RouterInput, RouterOp};
    let (t, mut router, _) = setup();
    let a2 = AgentId(2);
    let mut log: Vec<RouterInput> = Vec::new();
    let mut now = Timestamp(1_000);
    let mut sides: Vec<(CustomerId, ConversationSide)> = Vec::new();
    let mut checkpoint: Option<(Vec<u8>, usize)> = None;
    let mut stored: std::collections::BTreeMap<ConversationId, Tombstone> = Default::default();
    let day = |at: Timestamp| at.as_millis() / 86_400_000;
    let op = |router: &mut RouterSide, log: &mut Vec<RouterInput>, at: Timestamp, op: RouterOp| {
        let fx = router.apply_op(at, op.clone()).unwrap_or_default();
        router.note_logins(at, &fx, || day(at));
        log.push(RouterInput::Op { at, op });
    };
    let deliver =
        |router: &mut RouterSide, log: &mut Vec<RouterInput>, at, e: Envelope<ToRouter>| {
            let ack = matches!(e.body, Body::Ack { .. });
            let fx = router.receive(at, e.clone());
            if !ack {
                router.note_logins(at, &fx, || day(at));
            }
            log.push(RouterInput::Deliver { at, envelope: e });
        };
    op(&mut router, &mut log, now, RouterOp::SetAgent { agent: a2, capacity: 2, groups: vec![G1] });
    let mut late: Vec<Envelope<ToRouter>> = Vec::new();
    for n in 1..=40u64 {
        now = now + secs(1);
        for e in std::mem::take(&mut late) {
            deliver(&mut router, &mut log, now, e);
        }
        let mut side = ConversationSide::new(CustomerId(n), Customer::default());
        let mut m = message("hi");
        m.customer = CustomerId(n);
        m.new_conversation = ConversationId(n);
        side.customer_message(t.cfg(), now, m.clone()).unwrap();
        for e in side.outgoing() {
            deliver(&mut router, &mut log, now, e);
        }
        if n == 10 {
            op(
                &mut router,
                &mut log,
                now,
                RouterOp::SetStatus {
                    agent: a2,
                    status: AgentStatus::Online,
                    cause: StatusCause::Agent,
                },
            );
        }
        if n == 25 {
            router.forget_volatile();
            router.restart(2, now);
            log.push(RouterInput::Restart { epoch: 2, at: now });
        }
        sides.push((CustomerId(n), side));
        // What the router decided reaches the sides; their acknowledgements come back.
        for e in router.outgoing() {
            if let Some((_, side)) = sides.iter_mut().find(|(u, _)| *u == e.customer) {
                side.receive(t.cfg(), now, e);
            }
        }
        log.push(RouterInput::Sent);
        let queued =
            |s: &ConversationSide| s.conversation().is_some_and(|c| c.state == State::Queued);
        for (u, side) in sides.iter_mut().filter(|(u, s)| u.0 % 7 == 3 && queued(s)) {
            // It writes twice while it waits, the second time raising its priority: the
            // raise overtakes the first message's question, which arrives a second later.
            let mut m = message("again");
            m.customer = *u;
            m.new_conversation = ConversationId(u.0);
            side.customer_message(t.cfg(), now, m.clone()).unwrap();
            m.priority = Some(n as u8);
            side.customer_message(t.cfg(), now, m).unwrap();
            let mut out = side.outgoing();
            if out.len() == 2 {
                late.push(out.remove(0));
            }
            for e in out {
                deliver(&mut router, &mut log, now, e);
            }
        }
        // Assigned conversations end, but for the first and the fifth (each agent keeps
        // one; the other agent's second slot serves the rest, so conversations that began
        // after the checkpoint end and are put away too).
        for (_, side) in sides.iter_mut() {
            let assigned =
                side.conversation().filter(|c| c.state == State::Assigned).map(|c| (c.id, c.agent));
            if let Some((id, Some(agent))) = assigned
                && id.0 != 1
                && id.0 != 5
            {
                side.end(t.cfg(), now, id, Actor::Agent(agent)).unwrap();
            }
            for e in side.outgoing() {
                deliver(&mut router, &mut log, now, e);
            }
        }
        if n % 5 == 0 && n != 10 && n < 30 {
            now = now + LINGER;
            let fx = router.advance(now);
            router.note_logins(now, &fx, || day(now));
            log.push(RouterInput::Advance { at: now });
        }
        // Two rounds more: the router's answers reach the sides, their acknowledgements
        // come back, and settled links of conversations that left become tombstones.
        for _ in 0..2 {
            for e in router.outgoing() {
                if let Some((_, side)) = sides.iter_mut().find(|(u, _)| *u == e.customer) {
                    side.receive(t.cfg(), now, e);
                }
            }
            router.outgoing_agents();
            log.push(RouterInput::Sent);
            for (_, side) in sides.iter_mut() {
                for e in side.outgoing() {
                    deliver(&mut router, &mut log, now, e);
                }
            }
        }
        // Stored with a log row once the checkpoint is taken (a row per round here).
        let row = checkpoint.as_ref().map(|_| n);
        let (fresh, expired) = router.take_tombstones();
        stored.extend(fresh.into_iter().map(|(id, t)| (id, t.stored_with(row))));
        for id in expired {
            stored.remove(&id);
        }
        if n >= 5 && checkpoint.is_none() && !late.is_empty() {
            // A conversation's second message waits held back at the checkpoint.
            let bytes = rmp_serde::to_vec(&router).unwrap();
            log.clear();
            log.extend(journal::after_checkpoint(&router));
            assert!(!log.is_empty(), "something is held back");
            checkpoint = Some((bytes, 0));
        }
    }
    let (bytes, _) = checkpoint.expect("taken");
    // Conversations that began after the checkpoint were put away too: the replay must not
    // start with their tombstones.
    assert!(stored.values().any(|t| !t.precedes(0)), "a tombstone of the log's own");
    let mut replayed: RouterSide = rmp_serde::from_slice(&bytes).unwrap();
    journal::rebuild(&mut replayed, stored.into_iter().collect(), 0, log, day);
    assert_eq!(durable(&replayed), durable(&router));
    for c in (1..=40).map(ConversationId) {
        assert_eq!(replayed.has_left(c), router.has_left(c), "{c}");
    }
    assert!(router.router().check_invariants().is_ok());
}

/// The transcript rows a shell writes for a step (the customer's own message first, then the
/// replies that went out), as `ConversationSide::fold` reads them.
fn lines(now: Timestamp, said: bool, effects: &[Effect]) -> Vec<super::conversation::Line> {
    use super::conversation::Line;
    use crate::engine::Sender;
    let replies = effects.iter().filter_map(|e| match e {
        Effect::Send { from: Sender::Agent(_), .. } => Some(Line::Agent(now)),
        Effect::Send { .. } => Some(Line::Automatic(now)),
        _ => None,
    });
    said.then_some(Line::Customer(now)).into_iter().chain(replies).collect()
}

#[test]
fn the_fold_of_a_steps_transcript_rows_reproduces_a_plain_message_step_and_nothing_else() {
    use super::conversation::Line;
    let (t, mut router, mut side) = setup();
    let now = Timestamp(1_000);
    opened_and_assigned(&t, &mut router, &mut side, now);
    for e in side.outgoing() {
        router.receive(now, e);
    }
    // The side as its row last had it; the plain message steps after it fold onto it.
    let mut written = side.clone();
    let t1 = Timestamp(2_000);
    let fx = side.customer_message(t.cfg(), t1, message("one more thing")).unwrap().effects;
    assert_ne!(written, side, "the step changed the side");
    written.fold(lines(t1, true, &fx));
    assert_eq!(written, side, "a customer's message");
    // The agent's reply timer counts from the first unanswered message, "hi".
    assert_eq!(side.conversation().unwrap().agent_no_response_from, Some(now));
    let t2 = Timestamp(3_000);
    let fx = side.agent_message(t.cfg(), t2, C1, A1, "sure", None).unwrap();
    written.fold(lines(t2, false, &fx));
    assert_eq!(written, side, "the agent's reply");
    let fx = side.whisper(t.cfg(), C1, AgentId(2), "be nice").unwrap();
    written.fold([Line::Other]);
    assert!(lines(t2, false, &fx).is_empty());
    assert_eq!(written, side, "a whisper changes nothing the row keeps");
    // What the rows do not say, the fold does not guess: reading writes the row.
    let t3 = Timestamp(4_000);
    side.customer_message(t.cfg(), t3, message("hello?")).unwrap();
    side.mark_read(t.cfg(), t3, C1, A1).unwrap();
    written.fold([Line::Customer(t3)]);
    assert_ne!(written, side, "read_at is not in the transcript");
    // A new incarnation is another row (its epoch numbers what it sends).
    let mut restarted = side.clone();
    restarted.restart(7);
    assert_ne!(restarted, side);
}
