//! One test per routing rule of SPEC §3.

use super::*;
use std::collections::BTreeMap;

use crate::config::Strategy;
use crate::time::secs;

const G1: GroupId = GroupId(1);
const G2: GroupId = GroupId(2);
const G3: GroupId = GroupId(3);
const G4: GroupId = GroupId(4);
const A1: AgentId = AgentId(1);
const A2: AgentId = AgentId(2);
const A3: AgentId = AgentId(3);

fn t(s: u64) -> Timestamp {
    Timestamp(s * 1000)
}

fn c(n: u64) -> ConversationId {
    ConversationId(n)
}

struct Fixture {
    r: Router,
    out: Vec<Effect>,
}

impl Fixture {
    fn new() -> Self {
        Self::with(secs(0), NotRespondingPolicy { after_misses: 0, status: AgentStatus::Away })
    }

    fn with(grace: std::time::Duration, nr: NotRespondingPolicy) -> Self {
        let mut f = Fixture { r: Router::new(grace, nr), out: Vec::new() };
        f.group(G1, GroupPolicy::default());
        f.group(G2, GroupPolicy::default());
        f
    }

    fn group(&mut self, id: GroupId, policy: GroupPolicy) {
        self.r.upsert_group(t(0), id, policy, &mut self.out);
    }

    fn agent(&mut self, id: AgentId, capacity: u32, groups: &[GroupId], status: AgentStatus) {
        self.r
            .upsert_agent(t(0), id, capacity, groups.to_vec(), BTreeMap::new(), &mut self.out)
            .unwrap();
        self.status(t(0), id, status);
    }

    fn status(&mut self, now: Timestamp, id: AgentId, status: AgentStatus) {
        self.r.set_status(now, id, status, StatusCause::Agent, &mut self.out).unwrap();
        self.check();
    }

    fn route(&mut self, now: Timestamp, conv: u64, group: GroupId, priority: Priority) {
        self.route_req(
            now,
            conv,
            RouteRequest { group, priority, entered_at: now, dedicated: None, last_agent: None },
        );
    }

    fn route_req(&mut self, now: Timestamp, conv: u64, req: RouteRequest) {
        self.r.route(now, c(conv), req, &mut self.out).unwrap();
        self.check();
    }

    fn end(&mut self, now: Timestamp, conv: u64) {
        self.r.remove(now, c(conv), &mut self.out).unwrap();
        self.check();
    }

    fn holder(&self, conv: u64) -> Option<AgentId> {
        self.r.placement(c(conv)).and_then(|p| p.agent())
    }

    fn assigned_to(&self, conv: u64) -> Option<AgentId> {
        match self.r.placement(c(conv)) {
            Some(Placement::Assigned { agent, .. }) => Some(*agent),
            _ => None,
        }
    }

    fn check(&self) {
        self.r.check_invariants().unwrap();
    }

    fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.out)
    }
}

#[test]
fn queue_orders_by_priority_then_entry_time_without_limit() {
    let mut f = Fixture::new();
    f.route(t(1), 1, G1, 0);
    f.route(t(2), 2, G1, 5);
    f.route(t(3), 3, G1, 0);
    f.route(t(4), 4, G1, 5);
    assert_eq!(f.r.position(c(2)), Some(1));
    assert_eq!(f.r.position(c(4)), Some(2));
    assert_eq!(f.r.position(c(1)), Some(3));
    assert_eq!(f.r.position(c(3)), Some(4));
    for n in 5..2_000 {
        f.route(t(5), n, G1, 0);
    }
    assert_eq!(f.r.queue_len(G1), 1_999);
    assert_eq!(f.r.position(c(1_999)), Some(1_999));
}

#[test]
fn positions_change_as_others_leave() {
    let mut f = Fixture::new();
    for n in 1..=5 {
        f.route(t(n), n, G1, 0);
    }
    f.end(t(6), 2);
    assert_eq!(f.r.position(c(5)), Some(4));
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    assert_eq!(f.assigned_to(1), Some(A1), "the head is served first");
    assert_eq!(f.r.position(c(5)), Some(3));
}

#[test]
fn an_agent_takes_the_best_waiting_across_its_groups() {
    let mut f = Fixture::new();
    f.route(t(1), 1, G1, 0);
    f.route(t(2), 2, G2, 0);
    f.route(t(3), 3, G2, 9);
    f.agent(A1, 1, &[G1, G2], AgentStatus::Online);
    assert_eq!(f.assigned_to(3), Some(A1), "priority first");
    f.end(t(4), 3);
    assert_eq!(f.assigned_to(1), Some(A1), "then the longest wait across groups");
    f.end(t(5), 1);
    assert_eq!(f.assigned_to(2), Some(A1));
}

#[test]
fn capacity_is_never_exceeded() {
    let mut f = Fixture::new();
    f.agent(A1, 2, &[G1], AgentStatus::Online);
    for n in 1..=5 {
        f.route(t(n), n, G1, 0);
    }
    assert_eq!(f.r.agent(A1).unwrap().load(), 2);
    assert_eq!(f.r.queue_len(G1), 3);
    assert_eq!(f.r.position(c(3)), Some(1));
}

#[test]
fn statuses_other_than_online_receive_no_pushed_work() {
    for status in
        [AgentStatus::Busy, AgentStatus::Away, AgentStatus::Invisible, AgentStatus::Offline]
    {
        let mut f = Fixture::new();
        f.agent(A1, 3, &[G1], status);
        f.route(t(1), 1, G1, 0);
        assert_eq!(f.holder(1), None, "{status} got pushed work");
        f.status(t(2), A1, AgentStatus::Online);
        assert_eq!(f.assigned_to(1), Some(A1), "{status} -> online takes the waiting conversation");
    }
}

#[test]
fn busy_keeps_current_conversations() {
    let mut f = Fixture::new();
    f.agent(A1, 3, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    f.status(t(2), A1, AgentStatus::Busy);
    assert_eq!(f.assigned_to(1), Some(A1));
}

#[test]
fn invisible_agents_pick_from_the_unaccepted_list() {
    let mut f = Fixture::new();
    f.agent(A1, 1, &[G1], AgentStatus::Invisible);
    f.route(t(1), 1, G1, 0);
    f.route(t(2), 2, G1, 0);
    assert_eq!(f.r.unaccepted(A1, t(100)), vec![c(1), c(2)]);
    f.r.pick(t(3), A1, c(2), &mut f.out).unwrap();
    assert_eq!(f.assigned_to(2), Some(A1), "any conversation of the list, not only the head");
    let err = f.r.pick(t(3), A1, c(1), &mut f.out).unwrap_err();
    assert!(matches!(err, Error::AgentFull { .. }), "{err}");
    f.agent(A2, 1, &[G2], AgentStatus::Invisible);
    let err = f.r.pick(t(3), A2, c(1), &mut f.out).unwrap_err();
    assert!(matches!(err, Error::NotPickable { .. }), "not in the picker's groups: {err}");
    f.status(t(4), A1, AgentStatus::Offline);
    f.check();
}

#[test]
fn pull_mode_pushes_nothing() {
    let mut f = Fixture::new();
    f.group(G1, GroupPolicy { offer: OfferMode::Pull, ..Default::default() });
    f.agent(A1, 2, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    assert_eq!(f.holder(1), None);
    f.r.pick(t(2), A1, c(1), &mut f.out).unwrap();
    assert_eq!(f.assigned_to(1), Some(A1));
    assert!(f.take_effects().contains(&Effect::Assigned {
        conversation: c(1),
        agent: A1,
        via: Via::Picked
    }));
}

#[test]
fn least_occupied_compares_load_to_capacity_and_breaks_ties_by_idle_then_id() {
    let mut f = Fixture::new();
    f.agent(A1, 4, &[G1], AgentStatus::Online);
    f.agent(A2, 2, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    // Both idle since t0, ties broken by id.
    assert_eq!(f.assigned_to(1), Some(A1));
    f.route(t(2), 2, G1, 0);
    assert_eq!(f.assigned_to(2), Some(A2), "A1 is at 1/4, A2 at 0/2");
    f.route(t(3), 3, G1, 0);
    assert_eq!(f.assigned_to(3), Some(A1), "A1 at 1/4 beats A2 at 1/2");
}

#[test]
fn longest_idle_prefers_who_waited_longest_for_work() {
    let mut f = Fixture::new();
    f.group(G1, GroupPolicy { strategy: Strategy::LongestIdle, ..Default::default() });
    f.agent(A1, 5, &[G1], AgentStatus::Online);
    f.agent(A2, 5, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    assert_eq!(f.assigned_to(1), Some(A1), "tie on idle time -> lowest id");
    f.route(t(2), 2, G1, 0);
    assert_eq!(f.assigned_to(2), Some(A2));
    f.route(t(3), 3, G1, 0);
    assert_eq!(f.assigned_to(3), Some(A1), "A1 received work at t1, A2 at t2");
}

#[test]
fn round_robin_rotates_in_id_order() {
    let mut f = Fixture::new();
    f.group(G1, GroupPolicy { strategy: Strategy::RoundRobin, ..Default::default() });
    for a in [A1, A2, A3] {
        f.agent(a, 5, &[G1], AgentStatus::Online);
    }
    let got: Vec<_> = (1..=5)
        .map(|n| {
            f.route(t(n), n, G1, 0);
            f.assigned_to(n).unwrap()
        })
        .collect();
    assert_eq!(got, vec![A1, A2, A3, A1, A2]);
}

#[test]
fn offers_time_out_back_to_their_place_and_apply_the_not_responding_policy() {
    let mut f =
        Fixture::with(secs(0), NotRespondingPolicy { after_misses: 1, status: AgentStatus::Away });
    f.group(
        G1,
        GroupPolicy { offer: OfferMode::Offer { timeout: secs(30) }, ..Default::default() },
    );
    f.route(t(1), 1, G1, 0);
    f.route(t(2), 2, G1, 0);
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    assert!(matches!(f.r.placement(c(1)), Some(Placement::Offered { agent: A1, .. })));
    assert_eq!(f.r.next_deadline(), Some(t(30)));
    f.r.advance(t(30), &mut f.out);
    f.check();
    assert_eq!(f.r.position(c(1)), Some(1), "keeps its place");
    assert_eq!(f.r.agent(A1).unwrap().status, AgentStatus::Away);
    assert!(f.take_effects().iter().any(|e| matches!(
        e,
        Effect::StatusChanged {
            agent: A1,
            to: AgentStatus::Away,
            cause: StatusCause::NotResponding,
            ..
        }
    )));
}

#[test]
fn a_declined_offer_goes_to_another_agent_not_back_to_the_decliner() {
    let mut f = Fixture::new();
    f.group(
        G1,
        GroupPolicy { offer: OfferMode::Offer { timeout: secs(30) }, ..Default::default() },
    );
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    f.route(t(2), 2, G1, 0);
    f.r.decline(t(3), A1, c(1), &mut f.out).unwrap();
    f.check();
    assert!(
        matches!(f.r.placement(c(2)), Some(Placement::Offered { agent: A1, .. })),
        "A1 gets the next one"
    );
    assert_eq!(f.r.position(c(1)), Some(1), "the declined one keeps its place");
    f.agent(A2, 1, &[G1], AgentStatus::Online);
    assert!(matches!(f.r.placement(c(1)), Some(Placement::Offered { agent: A2, .. })));
    f.r.accept(t(4), A2, c(1), &mut f.out).unwrap();
    assert_eq!(f.assigned_to(1), Some(A2));
    let err = f.r.accept(t(4), A2, c(2), &mut f.out).unwrap_err();
    assert!(matches!(err, Error::NotOffered { .. }));
}

#[test]
fn dedicated_agent_is_waited_for_while_online_but_full_then_the_group() {
    let mut f = Fixture::new();
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.agent(A2, 1, &[G1], AgentStatus::Online);
    f.route(t(0), 99, G2, 0); // occupy nobody: G2 has no members
    f.route_req(
        t(1),
        1,
        RouteRequest {
            group: G1,
            priority: 0,
            entered_at: t(1),
            dedicated: Some(A2),
            last_agent: None,
        },
    );
    assert_eq!(f.assigned_to(1), Some(A2), "dedicated agent free: goes straight there");
    f.route_req(
        t(2),
        2,
        RouteRequest {
            group: G1,
            priority: 0,
            entered_at: t(2),
            dedicated: Some(A2),
            last_agent: None,
        },
    );
    assert_eq!(f.holder(2), None, "waits for A2 although A1 is free");
    assert_eq!(f.r.position(c(2)), Some(1));
    assert_eq!(f.r.unaccepted(A2, t(100)), vec![c(2)]);
    f.end(t(10), 1);
    assert_eq!(f.assigned_to(2), Some(A2), "A2 frees up and takes its customer");

    f.route_req(
        t(20),
        3,
        RouteRequest {
            group: G1,
            priority: 0,
            entered_at: t(20),
            dedicated: Some(A2),
            last_agent: None,
        },
    );
    assert_eq!(f.holder(3), None);
    let timeout = GroupPolicy::default().dedicated_timeout;
    f.r.advance(t(20) + timeout, &mut f.out);
    f.check();
    assert_eq!(f.assigned_to(3), Some(A1), "after the affinity timeout the group serves it");
}

#[test]
fn a_waiting_conversation_follows_its_customers_new_dedicated_agent() {
    let mut f = Fixture::new();
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.agent(A2, 1, &[G1], AgentStatus::Online);
    f.agent(A3, 1, &[G1], AgentStatus::Online);
    let dedicated = |entered_at, agent| RouteRequest {
        group: G1,
        priority: 0,
        entered_at,
        dedicated: Some(agent),
        last_agent: None,
    };
    // A2 and A3 are full; conversation 3 waits for A2 though A1 is free.
    f.route_req(t(1), 1, dedicated(t(1), A2));
    f.route_req(t(1), 2, dedicated(t(1), A3));
    f.route_req(t(2), 3, dedicated(t(2), A2));
    assert_eq!(f.holder(3), None);
    // Its customer's dedicated agent becomes A3, full too: it waits for A3 now, until the
    // affinity timeout counted from its entry.
    f.r.reaffine(t(3), c(3), Some(A3), &mut f.out);
    f.check();
    assert_eq!(f.r.unaccepted(A3, t(3)), vec![c(3)]);
    assert!(f.r.unaccepted(A2, t(3)).is_empty());
    let timeout = GroupPolicy::default().dedicated_timeout;
    let pin = match f.r.placement(c(3)) {
        Some(Placement::Queued { pin: Some(p), .. }) => *p,
        other => panic!("not pinned: {other:?}"),
    };
    assert_eq!((pin.agent, pin.until), (A3, t(2) + timeout));
    // The same setting again changes nothing.
    f.take_effects();
    f.r.reaffine(t(4), c(3), Some(A3), &mut f.out);
    assert!(f.take_effects().is_empty());
    // Cleared: it falls back to its group, where A1 is free.
    f.r.reaffine(t(5), c(3), None, &mut f.out);
    f.check();
    assert_eq!(f.assigned_to(3), Some(A1));

    // A new dedicated agent who can take it gets it at once.
    f.route_req(t(6), 4, dedicated(t(6), A2));
    f.end(t(7), 2);
    assert_eq!(f.holder(4), None, "still waits for A2 while A3 is free");
    f.r.reaffine(t(8), c(4), Some(A3), &mut f.out);
    f.check();
    assert_eq!(f.assigned_to(4), Some(A3));

    // Past the affinity timeout, a new dedicated agent who is full is not waited for.
    f.route(t(9), 5, G1, 0);
    assert_eq!(f.holder(5), None, "everyone is full");
    f.r.reaffine(t(9) + timeout, c(5), Some(A2), &mut f.out);
    f.check();
    assert!(matches!(f.r.placement(c(5)), Some(Placement::Queued { pin: None, .. })));
    // An offline one is not either; nor are assigned conversations moved.
    f.status(t(400), A1, AgentStatus::Offline);
    f.r.reaffine(t(400), c(5), Some(A1), &mut f.out);
    assert!(matches!(f.r.placement(c(5)), Some(Placement::Queued { pin: None, .. })));
    f.r.reaffine(t(400), c(4), Some(A2), &mut f.out);
    assert_eq!(f.assigned_to(4), Some(A3));
}

#[test]
fn an_offline_dedicated_agent_is_never_routed_to() {
    let mut f = Fixture::new();
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.agent(A2, 1, &[G1], AgentStatus::Offline);
    f.route_req(
        t(1),
        1,
        RouteRequest {
            group: G1,
            priority: 0,
            entered_at: t(1),
            dedicated: Some(A2),
            last_agent: Some(A2),
        },
    );
    assert_eq!(f.assigned_to(1), Some(A1));
    // A dedicated agent that signs out releases its waiting customers to the group.
    f.status(t(2), A2, AgentStatus::Online);
    f.route(t(2), 9, G2, 0);
    f.r.upsert_agent(t(2), A2, 1, vec![G2], BTreeMap::new(), &mut f.out).unwrap();
    f.route_req(
        t(3),
        2,
        RouteRequest {
            group: G1,
            priority: 0,
            entered_at: t(3),
            dedicated: Some(A2),
            last_agent: None,
        },
    );
    assert_eq!(f.holder(2), None, "waits: A2 is online but full");
    f.status(t(4), A2, AgentStatus::Offline);
    assert_eq!(f.r.position(c(2)), Some(1), "back in G1's queue");
    f.end(t(5), 1);
    assert_eq!(f.assigned_to(2), Some(A1));
}

#[test]
fn last_agent_preference_is_weaker_than_dedicated() {
    let mut f = Fixture::new();
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.agent(A2, 1, &[G1], AgentStatus::Busy);
    // Busy last agent: no waiting, the group serves.
    f.route_req(
        t(1),
        1,
        RouteRequest {
            group: G1,
            priority: 0,
            entered_at: t(1),
            dedicated: None,
            last_agent: Some(A2),
        },
    );
    assert_eq!(f.assigned_to(1), Some(A1));
    // Busy dedicated agent: the customer waits for it.
    f.route_req(
        t(2),
        2,
        RouteRequest {
            group: G1,
            priority: 0,
            entered_at: t(2),
            dedicated: Some(A2),
            last_agent: None,
        },
    );
    assert_eq!(f.holder(2), None);
    f.status(t(3), A2, AgentStatus::Online);
    assert_eq!(f.assigned_to(2), Some(A2));
    // Online but full last agent: waits up to the last-agent timeout.
    f.route_req(
        t(4),
        3,
        RouteRequest {
            group: G1,
            priority: 0,
            entered_at: t(4),
            dedicated: None,
            last_agent: Some(A2),
        },
    );
    assert_eq!(f.holder(3), None);
    f.end(t(5), 1); // A1 frees up but 3 waits for A2
    assert_eq!(f.holder(3), None);
    f.r.advance(t(4) + GroupPolicy::default().last_agent_timeout.unwrap(), &mut f.out);
    f.check();
    assert_eq!(f.assigned_to(3), Some(A1));
}

#[test]
fn offline_policy_keeps_for_the_grace_period_then_requeues_at_the_front() {
    let mut f =
        Fixture::with(secs(60), NotRespondingPolicy { after_misses: 0, status: AgentStatus::Away });
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    f.route(t(2), 2, G1, 9);
    f.status(t(10), A1, AgentStatus::Offline);
    assert_eq!(f.assigned_to(1), Some(A1), "kept during the grace period");
    f.status(t(20), A1, AgentStatus::Online);
    f.status(t(30), A1, AgentStatus::Offline);
    f.r.advance(t(80), &mut f.out);
    assert_eq!(f.assigned_to(1), Some(A1), "the grace period restarted at t30");
    f.r.advance(t(90), &mut f.out);
    f.check();
    assert_eq!(f.r.position(c(1)), Some(1), "front of the queue, ahead of a higher priority");
    assert_eq!(f.r.position(c(2)), Some(2));
}

#[test]
fn supervisors_cannot_force_an_offline_agent_online() {
    let mut f = Fixture::new();
    f.agent(A1, 1, &[G1], AgentStatus::Offline);
    let err =
        f.r.set_status(t(1), A1, AgentStatus::Online, StatusCause::Supervisor, &mut f.out)
            .unwrap_err();
    assert_eq!(err, Error::CannotForceOnline(A1));
    f.status(t(1), A1, AgentStatus::Online);
    f.r.set_status(t(2), A1, AgentStatus::Busy, StatusCause::Supervisor, &mut f.out).unwrap();
    assert_eq!(f.r.agent(A1).unwrap().status, AgentStatus::Busy);
}

#[test]
fn transfer_to_a_group_keeps_the_entry_time_unless_told_otherwise() {
    let mut f = Fixture::new();
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    f.route(t(5), 2, G2, 0);
    f.r.transfer_to_group(t(10), c(1), G2, true, &mut f.out).unwrap();
    f.check();
    assert_eq!(f.r.position(c(1)), Some(1), "entered at t1, ahead of t5");
    f.r.transfer_to_group(t(11), c(1), G1, false, &mut f.out).unwrap();
    f.r.transfer_to_group(t(12), c(1), G2, false, &mut f.out).unwrap();
    f.check();
    assert_eq!(f.r.position(c(1)), Some(2), "re-entered at t12, behind t5");
}

#[test]
fn transfer_to_an_agent_needs_room_and_a_signed_in_agent() {
    let mut f = Fixture::new();
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.agent(A2, 1, &[G2], AgentStatus::Online);
    f.agent(A3, 1, &[G2], AgentStatus::Offline);
    f.route(t(1), 1, G1, 0);
    f.route(t(2), 2, G2, 0);
    assert!(matches!(
        f.r.transfer_to_agent(t(3), c(1), A2, &mut f.out),
        Err(Error::AgentFull { .. })
    ));
    assert!(matches!(
        f.r.transfer_to_agent(t(3), c(1), A3, &mut f.out),
        Err(Error::AgentOffline(_))
    ));
    f.end(t(4), 2);
    f.r.transfer_to_agent(t(5), c(1), A2, &mut f.out).unwrap();
    f.check();
    assert_eq!(f.assigned_to(1), Some(A2));
}

#[test]
fn work_is_conserved_when_capacity_or_groups_change() {
    let mut f = Fixture::new();
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    for n in 1..=3 {
        f.route(t(n), n, G1, 0);
        f.route(t(n), 10 + n, G2, 0);
    }
    f.r.upsert_agent(t(5), A1, 3, vec![G1], BTreeMap::new(), &mut f.out).unwrap();
    f.check();
    assert_eq!(f.r.agent(A1).unwrap().load(), 3);
    f.r.upsert_agent(t(6), A1, 6, vec![G1, G2], BTreeMap::new(), &mut f.out).unwrap();
    f.check();
    assert_eq!(f.r.agent(A1).unwrap().load(), 6);
    f.r.remove_agent(t(7), A1, &mut f.out).unwrap();
    f.check();
    assert_eq!(f.r.queue_len(G1) + f.r.queue_len(G2), 6);
}

#[test]
fn groups_in_use_cannot_be_removed() {
    let mut f = Fixture::new();
    f.route(t(1), 1, G1, 0);
    assert_eq!(f.r.remove_group(G1), Err(Error::GroupInUse(G1)));
    f.end(t(2), 1);
    f.r.remove_group(G1).unwrap();
    assert_eq!(f.r.remove_group(G1), Err(Error::UnknownGroup(G1)));
}

// ----- wrap-up (issue 14 item 4) -----------------------------------------------------------

fn wrap_up_group(f: &mut Fixture, seconds: u64, can_end_early: bool) {
    let policy = GroupPolicy {
        wrap_up: Some(crate::config::WrapUp { duration: secs(seconds), can_end_early }),
        ..GroupPolicy::default()
    };
    f.group(G1, policy);
}

#[test]
fn wrap_up_holds_the_slot_until_its_deadline() {
    let mut f = Fixture::new();
    wrap_up_group(&mut f, 30, false);
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    assert_eq!(f.assigned_to(1), Some(A1));
    f.end(t(10), 1);
    assert!(f.take_effects().contains(&Effect::WrappingUp {
        agent: A1,
        conversation: c(1),
        until: t(40)
    }));
    // The slot is taken: a new conversation waits, and the agent cannot pick it either.
    f.route(t(11), 2, G1, 0);
    assert_eq!(f.r.position(c(2)), Some(1));
    assert_eq!(f.r.agent(A1).unwrap().load(), 1);
    assert!(matches!(
        f.r.pick(t(12), A1, c(2), &mut f.out),
        Err(Error::AgentFull { agent: A1, capacity: 1 })
    ));
    assert_eq!(f.r.next_deadline(), Some(t(40)));
    f.r.advance(t(39), &mut f.out);
    assert_eq!(f.r.position(c(2)), Some(1));
    // Its deadline frees the slot and work conservation hands the waiting one over.
    f.r.advance(t(40), &mut f.out);
    f.check();
    assert_eq!(f.assigned_to(2), Some(A1));
    assert!(f.take_effects().contains(&Effect::WrapUpEnded {
        agent: A1,
        conversation: c(1),
        early: false
    }));
}

#[test]
fn optional_wrap_up_ends_early_when_the_agent_says_so() {
    let mut f = Fixture::new();
    wrap_up_group(&mut f, 600, true);
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    f.end(t(2), 1);
    f.route(t(3), 2, G1, 0);
    assert_eq!(f.r.position(c(2)), Some(1));
    assert!(matches!(
        f.r.end_wrap_up(t(4), A1, Some(c(9)), &mut f.out),
        Err(Error::NotWrappingUp { agent: A1, conversation: Some(_) })
    ));
    f.r.end_wrap_up(t(4), A1, None, &mut f.out).unwrap();
    f.check();
    assert_eq!(f.assigned_to(2), Some(A1));
    assert_eq!(f.r.next_deadline(), None, "the wrap-up's deadline went with it");
    assert!(matches!(
        f.r.end_wrap_up(t(5), A1, None, &mut f.out),
        Err(Error::NotWrappingUp { agent: A1, conversation: None })
    ));
}

#[test]
fn mandatory_wrap_up_cannot_be_ended_early() {
    let mut f = Fixture::new();
    wrap_up_group(&mut f, 60, false);
    f.agent(A1, 2, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    f.end(t(2), 1);
    let err = f.r.end_wrap_up(t(3), A1, Some(c(1)), &mut f.out).unwrap_err();
    assert_eq!(err, Error::WrapUpMandatory { agent: A1, until: t(62) });
    assert_eq!(err.code(), crate::error::Code::FailedPrecondition);
    // With capacity 2, one slot is still free.
    f.route(t(4), 2, G1, 0);
    assert_eq!(f.assigned_to(2), Some(A1));
}

#[test]
fn wrap_up_counts_in_occupancy_and_only_after_service() {
    let mut f = Fixture::new();
    wrap_up_group(&mut f, 60, true);
    f.agent(A1, 2, &[G1], AgentStatus::Online);
    f.agent(A2, 2, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    let first = f.holder(1).unwrap();
    f.end(t(2), 1);
    // Least occupied: the agent wrapping up counts as half full, so the other one gets it.
    f.route(t(3), 2, G1, 0);
    assert_ne!(f.holder(2), Some(first));
    // A conversation that ends while still waiting holds no slot.
    f.status(t(4), A1, AgentStatus::Busy);
    f.status(t(4), A2, AgentStatus::Busy);
    f.route(t(5), 3, G1, 0);
    f.end(t(6), 3);
    assert!(
        !f.take_effects()
            .iter()
            .any(|e| matches!(e, Effect::WrappingUp { conversation, .. } if *conversation == c(3)))
    );
}

#[test]
fn lowering_capacity_ends_wrap_ups_soonest_first() {
    let mut f = Fixture::new();
    wrap_up_group(&mut f, 60, false);
    f.agent(A1, 3, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    f.route(t(1), 2, G1, 0);
    f.end(t(2), 1);
    f.end(t(3), 2);
    f.route(t(4), 3, G1, 0);
    assert_eq!(f.r.agent(A1).unwrap().load(), 3);
    f.r.upsert_agent(t(5), A1, 2, vec![G1], BTreeMap::new(), &mut f.out).unwrap();
    f.check();
    let a = f.r.agent(A1).unwrap();
    assert_eq!(a.wrapping.keys().copied().collect::<Vec<_>>(), vec![c(2)]);
    assert_eq!(a.load(), 2);
}

#[test]
fn removing_an_agent_drops_its_wrap_up_deadlines() {
    let mut f = Fixture::new();
    wrap_up_group(&mut f, 60, false);
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    f.end(t(2), 1);
    f.r.remove_agent(t(3), A1, &mut f.out).unwrap();
    f.check();
    assert_eq!(f.r.next_deadline(), None);
}

#[test]
fn wrap_up_survives_a_snapshot() {
    let mut f = Fixture::new();
    wrap_up_group(&mut f, 60, false);
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.route(t(1), 1, G1, 0);
    f.end(t(2), 1);
    f.route(t(3), 2, G1, 0);
    let bytes = rmp_serde::to_vec(&f.r).unwrap();
    let mut r: Router = rmp_serde::from_slice(&bytes).unwrap();
    r.check_invariants().unwrap();
    assert_eq!(r.next_deadline(), Some(t(62)));
    let mut out = Vec::new();
    r.advance(t(62), &mut out);
    r.check_invariants().unwrap();
    assert!(matches!(r.placement(c(2)), Some(Placement::Assigned { agent: A1, .. })));
}

#[test]
fn an_agent_written_before_wrap_up_still_loads() {
    #[derive(Serialize)]
    struct Before {
        status: AgentStatus,
        capacity: u32,
        groups: Vec<GroupId>,
        assigned: BTreeSet<ConversationId>,
        offered: BTreeSet<ConversationId>,
        pinned: Vec<(QueueKey, ConversationId)>,
        idle_since: Timestamp,
        misses: u32,
        offline_since: Option<Timestamp>,
        listed: Option<(u64, Timestamp)>,
    }
    let before = Before {
        status: AgentStatus::Online,
        capacity: 3,
        groups: vec![G1],
        assigned: [c(1)].into(),
        offered: BTreeSet::new(),
        pinned: Vec::new(),
        idle_since: t(5),
        misses: 0,
        offline_since: None,
        listed: None,
    };
    let a: Agent = rmp_serde::from_slice(&rmp_serde::to_vec(&before).unwrap()).unwrap();
    assert_eq!((a.capacity, a.load()), (3, 1));
    assert!(a.wrapping.is_empty());
}

// ----- priority aging (issue 14 item 5) ----------------------------------------------------

fn aging(step_secs: Option<u64>) -> GroupPolicy {
    GroupPolicy { priority_aging: step_secs.map(secs), ..GroupPolicy::default() }
}

fn positions(f: &Fixture, convs: &[u64]) -> Vec<Option<usize>> {
    convs.iter().map(|n| f.r.position(c(*n))).collect()
}

#[test]
fn aging_lets_a_long_wait_overtake_higher_priority() {
    let mut f = Fixture::new();
    f.group(G1, aging(Some(10)));
    // Effective key e − p·step: c1 0, c2 5 − 10 = −5, c3 25 − 10 = 15, c4 26 − 0 = 26.
    f.route(t(0), 1, G1, 0);
    f.route(t(5), 2, G1, 1);
    f.route(t(25), 3, G1, 1);
    f.route(t(26), 4, G1, 0);
    assert_eq!(positions(&f, &[2, 1, 3, 4]), vec![Some(1), Some(2), Some(3), Some(4)]);
    // The order does not depend on the clock: no re-sorting as time passes.
    f.r.advance(t(100_000), &mut f.out);
    assert_eq!(positions(&f, &[2, 1, 3, 4]), vec![Some(1), Some(2), Some(3), Some(4)]);
    // Queue reads give the real keys, in the effective order.
    let order: Vec<_> = f.r.queue(G1, 0).map(|(k, conv)| (conv, k.priority())).collect();
    assert_eq!(order, vec![(c(2), 1), (c(1), 0), (c(3), 1), (c(4), 0)]);
    // Served in that order.
    f.agent(A1, 4, &[G1], AgentStatus::Online);
    let served: Vec<_> = f
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Assigned { conversation, .. } => Some(conversation),
            _ => None,
        })
        .collect();
    assert_eq!(served, vec![c(2), c(1), c(3), c(4)]);
}

#[test]
fn an_agent_of_several_groups_compares_effective_priority_now() {
    for (online_at, first) in [(10, 2), (40, 1)] {
        let mut f = Fixture::new();
        f.group(G1, aging(Some(10)));
        f.agent(A1, 1, &[G1, G2], AgentStatus::Offline);
        f.route(t(0), 1, G1, 0);
        f.route(t(5), 2, G2, 2);
        // At 10 s c1 is at 0 + 10/10 = 1 < 2; at 40 s at 4 > 2.
        f.status(t(online_at), A1, AgentStatus::Online);
        assert_eq!(f.assigned_to(first), Some(A1), "online at {online_at}");
        assert_eq!(f.r.unaccepted(A1, t(online_at)).len(), 1);
    }
    let mut f = Fixture::new();
    f.group(G1, aging(Some(10)));
    f.agent(A1, 1, &[G1, G2], AgentStatus::Invisible);
    f.route(t(0), 1, G1, 0);
    f.route(t(5), 2, G2, 2);
    assert_eq!(f.r.unaccepted(A1, t(10)), vec![c(2), c(1)]);
    assert_eq!(f.r.unaccepted(A1, t(40)), vec![c(1), c(2)]);
}

#[test]
fn changing_the_aging_step_rekeys_the_queue() {
    let mut f = Fixture::new();
    f.route(t(0), 1, G1, 0);
    f.route(t(5), 2, G1, 1);
    f.route(t(25), 3, G1, 1);
    assert_eq!(positions(&f, &[2, 3, 1]), vec![Some(1), Some(2), Some(3)]);
    f.group(G1, aging(Some(10)));
    f.check();
    assert_eq!(positions(&f, &[2, 1, 3]), vec![Some(1), Some(2), Some(3)]);
    f.group(G1, aging(None));
    f.check();
    assert_eq!(positions(&f, &[2, 3, 1]), vec![Some(1), Some(2), Some(3)]);
    // Leaving and requeueing go through the same keys.
    f.group(G1, aging(Some(10)));
    f.end(t(30), 1);
    // c3 at priority 4: 25 − 40 = −15, ahead of c2 (−5).
    f.r.raise_priority(t(31), c(3), 4, &mut f.out);
    f.check();
    assert_eq!(positions(&f, &[3, 2]), vec![Some(1), Some(2)]);
}

// ----- proficiency (issue 14 item 6) -------------------------------------------------------

fn rated(f: &mut Fixture, id: AgentId, capacity: u32, levels: &[(GroupId, u8)]) {
    let groups = levels.iter().map(|(g, _)| *g).collect();
    let levels = levels.iter().copied().filter(|(_, l)| *l > 0).collect();
    f.r.upsert_agent(t(0), id, capacity, groups, levels, &mut f.out).unwrap();
    f.status(t(0), id, AgentStatus::Online);
}

fn best_proficiency() -> GroupPolicy {
    GroupPolicy { strategy: Strategy::BestProficiency, ..GroupPolicy::default() }
}

#[test]
fn best_proficiency_first_then_least_occupied() {
    let mut f = Fixture::new();
    f.group(G1, best_proficiency());
    rated(&mut f, A1, 2, &[(G1, 2)]);
    rated(&mut f, A2, 2, &[(G1, 5)]);
    // Not rated: the lowest level.
    rated(&mut f, A3, 2, &[(G1, 0)]);
    for n in 1..=6 {
        f.route(t(n), n, G1, 0);
    }
    let holders: Vec<_> = (1..=6).map(|n| f.holder(n)).collect();
    assert_eq!(holders, [A2, A2, A1, A1, A3, A3].map(Some));
}

#[test]
fn equal_proficiency_goes_to_the_least_occupied() {
    let mut f = Fixture::new();
    f.group(G1, best_proficiency());
    rated(&mut f, A1, 3, &[(G1, 3)]);
    rated(&mut f, A2, 3, &[(G1, 3)]);
    rated(&mut f, A3, 3, &[(G1, 1)]);
    f.route(t(1), 1, G1, 0);
    f.route(t(2), 2, G1, 0);
    assert_eq!((f.holder(1), f.holder(2)), (Some(A1), Some(A2)));
}

#[test]
fn proficiency_is_per_group_and_follows_its_changes() {
    let mut f = Fixture::new();
    f.group(G1, best_proficiency());
    f.group(G2, best_proficiency());
    rated(&mut f, A1, 3, &[(G1, 5), (G2, 1)]);
    rated(&mut f, A2, 3, &[(G1, 1), (G2, 5)]);
    f.route(t(1), 1, G2, 0);
    f.route(t(2), 2, G1, 0);
    assert_eq!((f.holder(1), f.holder(2)), (Some(A2), Some(A1)));
    // A2 becomes the expert of G1 too (and a less occupied one is not preferred over it).
    let levels = [(G1, 5), (G2, 5)].into();
    f.r.upsert_agent(t(3), A2, 3, vec![G1, G2], levels, &mut f.out).unwrap();
    f.check();
    f.end(t(4), 2);
    f.route(t(5), 3, G1, 0);
    // Both at level 5 in G1 now; A1 (empty) is less occupied than A2 (one).
    assert_eq!(f.holder(3), Some(A1));
    f.route(t(6), 4, G1, 0);
    // Equal level and load (1 of 3 each): the longer idle, A2 (last work at 1 s; A1 at 5 s).
    assert_eq!(f.holder(4), Some(A2));
}

#[test]
fn an_availability_index_written_before_proficiency_is_rebuilt() {
    #[derive(Serialize)]
    struct Before {
        ids: BTreeSet<AgentId>,
        by_occupancy: BTreeSet<(u64, Timestamp, AgentId)>,
        by_idle: BTreeSet<(Timestamp, AgentId)>,
    }
    let before = Before {
        ids: [A1, A2].into(),
        by_occupancy: [(0, t(1), A1), (7, t(0), A2)].into(),
        by_idle: [(t(0), A2), (t(1), A1)].into(),
    };
    let bytes = rmp_serde::to_vec(&before).unwrap();
    let now: available::Available = rmp_serde::from_slice(&bytes).unwrap();
    assert!(now.holds_exactly(&[(A1, (0, t(1)), 1), (A2, (7, t(0)), 1)]));
    assert_eq!(now.best(Strategy::BestProficiency, None, |_| true), Some(A1));
}

// ----- steps: criteria that widen over time (issue 14 item 1) ------------------------------

fn stepping(after: u64, to: GroupId) -> GroupPolicy {
    GroupPolicy {
        steps: vec![crate::config::Step { after: secs(after), group: to, min_level: None }],
        ..GroupPolicy::default()
    }
}

#[test]
fn a_step_lets_another_groups_agents_take_it_after_the_wait() {
    let mut f = Fixture::new();
    f.group(G1, stepping(30, G2));
    f.agent(A2, 1, &[G2], AgentStatus::Online);
    f.route(t(0), 1, G1, 0);
    assert_eq!(f.r.position(c(1)), Some(1));
    assert_eq!(f.r.next_deadline(), Some(t(30)));
    f.r.advance(t(29), &mut f.out);
    assert_eq!(f.holder(1), None);
    f.r.advance(t(30), &mut f.out);
    f.check();
    assert_eq!(f.assigned_to(1), Some(A2), "work conservation at the step");
    assert!(f.r.widened_groups(c(1)).is_empty(), "taken from every queue");
}

#[test]
fn a_widened_conversation_keeps_its_place_in_line() {
    let mut f = Fixture::new();
    f.group(G1, stepping(30, G2));
    f.agent(A2, 1, &[G2], AgentStatus::Away);
    f.route(t(0), 1, G1, 0);
    f.route(t(10), 2, G2, 0);
    f.r.advance(t(30), &mut f.out);
    f.check();
    assert_eq!(f.r.widened_groups(c(1)), &[G2]);
    // Its position is still read in its own group; G2's own line is unchanged.
    assert_eq!((f.r.position(c(1)), f.r.position(c(2))), (Some(1), Some(1)));
    assert_eq!(f.r.unaccepted(A2, t(31)), vec![c(1), c(2)], "entered at 0 s, ahead of 10 s");
    f.status(t(40), A2, AgentStatus::Online);
    assert_eq!(f.assigned_to(1), Some(A2));
    assert_eq!(f.r.position(c(2)), Some(1));
}

#[test]
fn a_step_already_due_applies_at_once_and_its_agents_may_pick() {
    let mut f = Fixture::new();
    f.group(G1, stepping(30, G2));
    f.agent(A2, 1, &[G2], AgentStatus::Invisible);
    // Transferred in keeping an entry time 60 s old: past the step already.
    f.route(t(0), 1, G2, 0);
    f.r.transfer_to_group(t(60), c(1), G1, true, &mut f.out).unwrap();
    f.check();
    assert_eq!(f.r.widened_groups(c(1)), &[G2]);
    f.r.pick(t(61), A2, c(1), &mut f.out).unwrap();
    f.check();
    assert_eq!(f.assigned_to(1), Some(A2));
}

#[test]
fn steps_survive_a_snapshot_and_a_named_group_cannot_go() {
    let mut f = Fixture::new();
    f.group(G1, stepping(30, G2));
    f.route(t(0), 1, G1, 0);
    assert!(matches!(f.r.remove_group(G2), Err(Error::InvalidArgument(m)) if m.contains("step")));
    let mut r: Router = rmp_serde::from_slice(&rmp_serde::to_vec(&f.r).unwrap()).unwrap();
    r.check_invariants().unwrap();
    let mut out = Vec::new();
    r.advance(t(30), &mut out);
    r.check_invariants().unwrap();
    assert_eq!(r.widened_groups(c(1)), &[G2]);
    // Changing the steps starts over from the entry time.
    r.upsert_group(t(31), G1, stepping(60, G2), &mut out);
    r.check_invariants().unwrap();
    assert!(r.widened_groups(c(1)).is_empty());
    assert_eq!(r.next_deadline(), Some(t(60)));
}

// ----- estimated wait time (issue 14 item 7) -----------------------------------------------

#[test]
fn estimated_wait_follows_the_effective_order_and_survives_a_snapshot() {
    let mut f = Fixture::new();
    f.group(G1, aging(Some(10)));
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    // Served one at 60 s; the agent stays full.
    f.route(t(60), 1, G1, 0);
    assert_eq!(f.assigned_to(1), Some(A1));
    assert_eq!(f.r.estimated_wait(t(60), c(1)), None, "assigned");
    // As in the aging test: c2 ahead of c3 by effective priority though it came later.
    f.route(t(100), 3, G1, 0);
    f.route(t(105), 2, G1, 1);
    assert_eq!(positions(&f, &[2, 3]), vec![Some(1), Some(2)]);
    let (w2, w3) = (f.r.estimated_wait(t(110), c(2)), f.r.estimated_wait(t(110), c(3)));
    let (w2, w3) = (w2.unwrap(), w3.unwrap());
    assert!(w2 < w3, "position 1 before position 2: {w2:?} {w3:?}");
    assert_eq!(Some(w2), f.r.group_wait(t(110), G1, 1));
    // Waiting for one agent in particular: that agent's pace, not the group's; no estimate.
    f.route_req(
        t(110),
        4,
        RouteRequest {
            group: G1,
            priority: 0,
            entered_at: t(110),
            dedicated: Some(A1),
            last_agent: None,
        },
    );
    assert!(
        matches!(f.r.placement(c(4)), Some(Placement::Queued { pin: Some(p), .. }) if p.agent == A1)
    );
    assert_eq!(f.r.estimated_wait(t(110), c(4)), None);
    // A snapshot keeps the group's service history.
    let r: Router = rmp_serde::from_slice(&rmp_serde::to_vec(&f.r).unwrap()).unwrap();
    assert_eq!(r.estimated_wait(t(110), c(3)), Some(w3));
    assert_eq!(r.service_rate(t(110), G2), None, "G2 never served");
}

// ----- overflow and maximum queue size (issue 14 item 2) -----------------------------------

fn capped(max_waiting: Option<u32>, max_wait: Option<u64>, to: Option<GroupId>) -> GroupPolicy {
    GroupPolicy {
        overflow: Some(crate::config::Overflow {
            max_waiting,
            max_wait: max_wait.map(secs),
            group: to,
        }),
        ..GroupPolicy::default()
    }
}

#[test]
fn a_full_queue_sends_newcomers_to_its_overflow_group_keeping_their_entry_time() {
    let mut f = Fixture::new();
    f.group(G1, capped(Some(2), None, Some(G2)));
    f.route(t(1), 1, G1, 0);
    f.route(t(2), 2, G1, 0);
    f.route(t(3), 9, G2, 0);
    f.take_effects();
    f.route(t(4), 3, G1, 0);
    assert_eq!(f.r.placement(c(3)).map(Placement::group), Some(G2));
    assert!(f.take_effects().contains(&Effect::Overflowed {
        conversation: c(3),
        from: G1,
        to: G2
    }));
    assert_eq!(f.r.queue_len(G1), 2, "the waiting are never pushed out");
    assert_eq!(f.r.position(c(3)), Some(2), "its entry time (4 s) behind 3 s");
    // With an agent free, the cap does not apply: it is served at once.
    f.agent(A1, 3, &[G1], AgentStatus::Online);
    f.route(t(5), 4, G1, 0);
    assert_eq!(f.assigned_to(4), Some(A1));
}

#[test]
fn without_an_overflow_group_a_full_queue_refuses() {
    let mut f = Fixture::new();
    f.group(G1, capped(Some(1), None, None));
    f.route(t(1), 1, G1, 0);
    f.take_effects();
    f.route(t(2), 2, G1, 0);
    assert_eq!(f.r.placement(c(2)), None);
    assert_eq!(f.take_effects(), vec![Effect::Refused { conversation: c(2), group: G1 }]);
    // Pinned conversations are exempt: they wait for one agent.
    f.agent(A1, 1, &[G1], AgentStatus::Away);
    let req = RouteRequest {
        group: G1,
        priority: 0,
        entered_at: t(3),
        dedicated: Some(A1),
        last_agent: None,
    };
    f.route_req(t(3), 3, req);
    assert!(matches!(f.r.placement(c(3)), Some(Placement::Queued { pin: Some(_), .. })));
}

#[test]
fn max_wait_moves_a_waiting_conversation_on_and_agents_there_take_it() {
    let mut f = Fixture::new();
    f.group(G1, capped(None, Some(60), Some(G2)));
    f.agent(A2, 1, &[G2], AgentStatus::Online);
    f.route(t(0), 1, G1, 0);
    assert_eq!(f.r.next_deadline(), Some(t(60)));
    f.r.advance(t(59), &mut f.out);
    f.check();
    assert_eq!(f.r.placement(c(1)).map(Placement::group), Some(G1));
    f.r.advance(t(60), &mut f.out);
    f.check();
    assert_eq!(f.assigned_to(1), Some(A2), "work conservation after the move");
    // Refusal by wait, and the chain ends at a refusal: G2 (cap 1, wait 10 s) → refuse.
    f.group(G2, capped(None, Some(10), None));
    f.route(t(100), 2, G1, 0);
    f.r.advance(t(160), &mut f.out);
    f.check();
    assert_eq!(f.r.placement(c(2)), None, "60 s in G1, already past G2's 10 s: refused");
    let fx = f.take_effects();
    assert!(fx.contains(&Effect::Overflowed { conversation: c(2), from: G1, to: G2 }));
    assert!(fx.contains(&Effect::Refused { conversation: c(2), group: G2 }));
}

#[test]
fn max_wait_deadlines_survive_a_snapshot_and_follow_policy_changes() {
    let mut f = Fixture::new();
    f.group(G1, capped(None, Some(60), None));
    f.route(t(0), 1, G1, 0);
    f.route(t(30), 2, G1, 0);
    let mut r: Router = rmp_serde::from_slice(&rmp_serde::to_vec(&f.r).unwrap()).unwrap();
    r.check_invariants().unwrap();
    let mut out = Vec::new();
    r.advance(t(60), &mut out);
    r.check_invariants().unwrap();
    assert_eq!(out, vec![Effect::Refused { conversation: c(1), group: G1 }]);
    // A longer wait re-arms from the entry time; no limit drops the deadline.
    r.upsert_group(t(61), G1, capped(None, Some(120), None), &mut out);
    r.check_invariants().unwrap();
    assert_eq!(r.next_deadline(), Some(t(150)));
    r.upsert_group(t(62), G1, GroupPolicy::default(), &mut out);
    r.check_invariants().unwrap();
    assert_eq!(r.next_deadline(), None);
    // A group another's overflow names cannot go.
    r.upsert_group(t(63), G1, capped(Some(5), None, Some(G2)), &mut out);
    assert!(matches!(r.remove_group(G2), Err(Error::InvalidArgument(m)) if m.contains("overflow")));
}

#[test]
fn a_requeued_front_conversation_is_exempt_and_steps_start_over_in_the_overflow_group() {
    let mut f = Fixture::new();
    let g3 = GroupId(3);
    f.group(g3, GroupPolicy::default());
    f.group(G2, stepping(100, g3));
    f.group(G1, capped(None, Some(60), Some(G2)));
    f.agent(A3, 1, &[g3], AgentStatus::Away);
    f.route(t(0), 1, G1, 0);
    f.r.advance(t(60), &mut f.out);
    f.check();
    // In G2 since 60 s with entry time 0: G2's step at 100 s from entry.
    assert_eq!(f.r.placement(c(1)).map(Placement::group), Some(G2));
    assert_eq!(f.r.next_deadline(), Some(t(100)));
    f.r.advance(t(100), &mut f.out);
    f.check();
    assert_eq!(f.r.widened_groups(c(1)), &[g3]);
    // An agent going offline requeues at the front of G1: not refused, not moved.
    f.agent(A1, 1, &[G1], AgentStatus::Online);
    f.route(t(200), 2, G1, 0);
    assert_eq!(f.assigned_to(2), Some(A1));
    f.status(t(201), A1, AgentStatus::Offline);
    f.r.advance(t(400), &mut f.out);
    f.check();
    assert!(
        matches!(f.r.placement(c(2)), Some(Placement::Queued { group: G1, key, .. }) if key.front())
    );
}

// ----- steps that admit lower proficiency (issue 14 items 1 and 6) -------------------------

/// The group needs level 3; a step lowers it to 1 after 60 s, and one to 2 after 30 s.
fn leveled() -> GroupPolicy {
    use crate::config::Step;
    GroupPolicy {
        min_level: Some(3),
        steps: vec![
            Step { after: secs(30), group: G1, min_level: Some(2) },
            Step { after: secs(60), group: G1, min_level: Some(1) },
        ],
        ..GroupPolicy::default()
    }
}

#[test]
fn a_step_admits_lower_proficiency_after_its_wait() {
    let mut f = Fixture::new();
    f.group(G1, leveled());
    rated(&mut f, A1, 1, &[(G1, 1)]);
    f.route(t(0), 1, G1, 0);
    f.check();
    assert_eq!(f.holder(1), None, "level 1 is below the 3 the group needs");
    let why = f.r.refusal_of(A1, c(1));
    assert_eq!(why, Some(explain::Refusal::BelowLevel { level: 1, needs: 3, from: Some(t(60)) }));
    f.r.advance(t(30), &mut f.out);
    f.check();
    assert_eq!(f.holder(1), None, "2 is still above its level");
    f.r.advance(t(60), &mut f.out);
    f.check();
    assert_eq!(f.assigned_to(1), Some(A1), "work conservation at the step");

    // An agent at the level takes the next one at once.
    rated(&mut f, A2, 1, &[(G1, 3)]);
    f.route(t(61), 2, G1, 0);
    assert_eq!(f.assigned_to(2), Some(A2));
}

#[test]
fn levels_lower_only_and_need_a_base() {
    use crate::config::{GroupSettings, Step};
    let settings = |policy| GroupSettings { policy, ..Default::default() };
    let step = |after, l| Step { after: secs(after), group: G1, min_level: Some(l) };
    assert!(settings(leveled()).validate().is_ok());
    let raise = GroupPolicy { steps: vec![step(30, 2), step(60, 2)], ..leveled() };
    let e = settings(raise).validate().unwrap_err().to_string();
    assert!(e.contains("policy.steps[1].min_level: 2 does not lower"), "{e}");
    let no_base = GroupPolicy { min_level: None, ..leveled() };
    let e = settings(no_base).validate().unwrap_err().to_string();
    assert!(e.contains("set policy.min_level first"), "{e}");
    let e = settings(GroupPolicy { min_level: Some(6), ..leveled() }).validate().unwrap_err();
    assert!(e.to_string().contains("policy.min_level: 6 is outside 1 to 5"), "{e}");
}

// ----- business hours (issue 14 item 3, `hours.rs`) ----------------------------------------

/// Open 01:00-02:00 UTC every day (t(3600) to t(7200) on day 0).
#[test]
fn a_transfer_that_would_end_the_conversation_is_refused_and_moves_nothing() {
    use crate::config::WhenClosed;
    let mut f = Fixture::new();
    f.group(G1, capped(Some(1), None, None));
    f.route(t(1), 1, G1, 0);
    f.agent(A2, 1, &[G2], AgentStatus::Online);
    f.route(t(2), 2, G2, 0);
    assert_eq!(f.assigned_to(2), Some(A2));
    f.take_effects();
    // G1 is full and has no overflow group: moving c2 there would end it.
    let err = f.r.transfer_to_group(t(3), c(2), G1, true, &mut f.out).unwrap_err();
    assert!(matches!(err, Error::TransferWouldEnd { group: G1, closed: false, .. }), "{err}");
    assert!(err.to_string().contains("max_waiting"), "{err}");
    assert!(f.take_effects().is_empty(), "nothing moved");
    assert_eq!(f.assigned_to(2), Some(A2));
    f.check();
    // With an overflow group it goes on there instead.
    f.group(G3, GroupPolicy::default());
    f.group(G1, capped(Some(1), None, Some(G3)));
    f.r.transfer_to_group(t(4), c(2), G1, true, &mut f.out).unwrap();
    assert_eq!(f.r.placement(c(2)).map(Placement::group), Some(G3));
    f.check();
    // A group that is closed and ends what arrives refuses it too; one that waits takes it.
    f.group(G4, hours_policy(WhenClosed::End, None));
    let err = f.r.transfer_to_group(t(5), c(2), G4, true, &mut f.out).unwrap_err();
    assert!(matches!(err, Error::TransferWouldEnd { group: G4, closed: true, .. }), "{err}");
    assert_eq!(f.r.placement(c(2)).map(Placement::group), Some(G3));
    f.group(G4, hours_policy(WhenClosed::Wait, None));
    f.r.transfer_to_group(t(6), c(2), G4, true, &mut f.out).unwrap();
    assert_eq!(f.r.placement(c(2)).map(Placement::group), Some(G4));
    f.check();
}

fn one_am() -> crate::hours::Hours {
    let span = vec![crate::hours::Span { start: 60, end: 120 }];
    crate::hours::Hours { weekly: std::array::from_fn(|_| span.clone()), ..Default::default() }
}

fn hours_policy(when_closed: crate::config::WhenClosed, to: Option<GroupId>) -> GroupPolicy {
    GroupPolicy {
        hours: Some(one_am()),
        when_closed,
        overflow: to.map(|g| crate::config::Overflow {
            max_waiting: None,
            max_wait: None,
            group: Some(g),
        }),
        ..GroupPolicy::default()
    }
}

#[test]
fn a_closed_group_routes_nothing_tells_once_and_routes_when_it_opens() {
    use crate::config::WhenClosed;
    let mut f = Fixture::new();
    f.group(G1, hours_policy(WhenClosed::Wait, None));
    assert!(f.r.closed(G1));
    assert_eq!(f.r.next_deadline(), Some(t(3600)));
    f.agent(A1, 3, &[G1], AgentStatus::Online);
    f.route(t(10), 1, G1, 0);
    assert_eq!(f.assigned_to(1), None, "closed: its free agent is not free for it");
    assert!(f.take_effects().contains(&Effect::OutsideHours { conversation: c(1), group: G1 }));
    assert!(matches!(f.r.pick(t(11), A1, c(1), &mut f.out), Err(Error::NotPickable { .. })));
    assert!(f.r.unaccepted(A1, t(11)).is_empty());
    // A snapshot keeps the open state and its deadline.
    let mut r: Router = rmp_serde::from_slice(&rmp_serde::to_vec(&f.r).unwrap()).unwrap();
    r.check_invariants().unwrap();
    r.advance(t(3600), &mut f.out);
    f.r = r;
    f.check();
    assert!(!f.r.closed(G1));
    assert_eq!(f.assigned_to(1), Some(A1), "opens: work conservation again");
    f.r.advance(t(7200), &mut f.out);
    f.check();
    f.take_effects();
    f.route(t(7300), 2, G1, 0);
    assert_eq!(f.assigned_to(2), None);
    assert_eq!(f.r.next_deadline(), Some(t(86_400 + 3600)), "tomorrow 01:00");
}

#[test]
fn a_closed_group_ends_or_overflows_what_waits_and_what_arrives() {
    use crate::config::WhenClosed;
    let mut f = Fixture::new();
    f.group(G1, hours_policy(WhenClosed::End, None));
    f.route(t(10), 1, G1, 0);
    assert_eq!(f.r.placement(c(1)), None);
    assert_eq!(f.take_effects(), vec![Effect::Closed { conversation: c(1), group: G1 }]);
    // Waiting when it closes: ended then.
    f.r.advance(t(3600), &mut f.out);
    f.route(t(3700), 2, G1, 0);
    assert!(f.r.placement(c(2)).is_some());
    f.take_effects();
    f.r.advance(t(7200), &mut f.out);
    f.check();
    assert_eq!(f.take_effects(), vec![Effect::Closed { conversation: c(2), group: G1 }]);
    // Overflow: to G2's agent, keeping the entry time.
    f.group(G1, hours_policy(WhenClosed::Overflow, Some(G2)));
    f.agent(A2, 1, &[G2], AgentStatus::Online);
    f.route(t(7300), 3, G1, 0);
    assert_eq!(f.assigned_to(3), Some(A2));
    assert!(f.take_effects().contains(&Effect::Overflowed {
        conversation: c(3),
        from: G1,
        to: G2
    }));
    // Switching a closed group from wait to end ends those already waiting.
    f.group(G1, hours_policy(WhenClosed::Wait, None));
    f.route(t(7400), 4, G1, 0);
    f.take_effects();
    f.group(G1, hours_policy(WhenClosed::End, None));
    assert_eq!(f.take_effects(), vec![Effect::Closed { conversation: c(4), group: G1 }]);
}

#[test]
fn the_tenant_calendar_applies_to_groups_without_their_own() {
    let mut f = Fixture::new();
    f.group(
        G2,
        GroupPolicy { hours: Some(crate::hours::Hours::always_open()), ..Default::default() },
    );
    f.agent(A1, 2, &[G1, G2], AgentStatus::Online);
    f.r.set_calendar(t(0), Some(one_am()), crate::hours::Offsets::fixed(0), &mut f.out);
    f.check();
    assert!(f.r.closed(G1) && !f.r.closed(G2));
    f.route(t(1), 1, G1, 0);
    f.route(t(2), 2, G2, 0);
    assert_eq!((f.assigned_to(1), f.assigned_to(2)), (None, Some(A1)));
    // Shifting the zone one hour east opens it at 00:00 UTC, that is now.
    f.r.set_calendar(t(3), Some(one_am()), crate::hours::Offsets::fixed(3600), &mut f.out);
    f.check();
    assert_eq!(f.assigned_to(1), Some(A1), "00:00:03 UTC is 01:00:03 there: open");
}

#[test]
fn explain_says_a_closed_group_keeps_its_free_agents_from_its_conversations() {
    use crate::config::WhenClosed;
    let mut f = Fixture::new();
    f.group(G1, hours_policy(WhenClosed::Wait, None));
    f.agent(A1, 3, &[G1], AgentStatus::Online);
    f.route(t(10), 1, G1, 0);
    let why = f.r.refusal_of(A1, c(1));
    assert_eq!(why, Some(explain::Refusal::OutsideHours { group: G1, until: Some(t(3600)) }));
    f.r.advance(t(3600), &mut f.out);
    f.check();
    assert_eq!(f.assigned_to(1), Some(A1), "open: taken at once");
}

#[test]
fn a_closed_groups_estimate_counts_the_time_until_it_opens() {
    use crate::config::WhenClosed;
    let mut f = Fixture::new();
    f.group(G1, hours_policy(WhenClosed::Wait, None));
    f.agent(A1, 100, &[G1], AgentStatus::Online);
    f.r.advance(t(3600), &mut f.out);
    // Served while open (01:00-02:00), so the group has a rate.
    for n in 1..=20 {
        f.route(t(3600 + 150 * n), n, G1, 0);
    }
    assert_eq!(f.assigned_to(20), Some(A1));
    f.r.advance(t(7200), &mut f.out);
    assert!(f.r.closed(G1));
    f.route(t(7201), 21, G1, 0);
    let until_open = t(86_400 + 3600).since(t(7201));
    let wait = f.r.estimated_wait(t(7201), c(21)).expect("an estimate");
    assert!(wait > until_open && wait < until_open + secs(3600), "{wait:?} vs {until_open:?}");
}
