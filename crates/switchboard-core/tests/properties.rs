//! Property tests: random interleavings of arrivals, messages, status changes, offers,
//! accepts, declines, picks, transfers, ends and clock advances, with every invariant of the
//! routing core checked after every step:
//!
//! - no agent holds more than its capacity;
//! - every conversation is in exactly one place (a queue, an offer, an agent, or ended);
//! - each queue is FIFO within a priority (under priority aging, within the effective order);
//! - every reported position is the exact rank;
//! - no eligible agent is idle while its group has a waiting conversation;
//! - wrap-ups hold a slot each until their deadline, and the agent ends only optional ones;
//! - a waiting conversation stands in exactly the groups of the steps its wait has reached,
//!   and no agent of those groups that could take it stays idle;
//! - no conversation waits in a group past its max wait (overflow moved or refused it), and
//!   an overflow change that would loop is refused naming the loop;
//! - Explain agrees with dispatch: every agent of a waiting conversation's groups is refused
//!   by dispatch's own predicate for a reason its state bears out, and every held
//!   conversation has the record of why its agent got it;
//! - the service side never exceeds a channel's budget.

mod model;

use model::{AGENTS, CUSTOMERS, GROUPS, GroupRules, Op, Setup, run};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    let customer = 0..CUSTOMERS;
    let agent = 0..AGENTS;
    prop_oneof![
        8 => (customer.clone(), 0..6usize, any::<bool>(), proptest::option::weighted(0.2, 0..GROUPS), proptest::option::weighted(0.2, 0..4u8))
            .prop_map(|(customer, channel, keyword, group, priority)| Op::Message { customer, channel, keyword, group, priority }),
        2 => customer.prop_map(|customer| Op::RequestHuman { customer }),
        4 => (agent.clone(), 0..5usize, any::<bool>())
            .prop_map(|(agent, status, supervisor)| Op::Status { agent, status, supervisor }),
        3 => (agent.clone(), any::<usize>()).prop_map(|(agent, pick)| Op::Accept { agent, pick }),
        2 => (agent.clone(), any::<usize>()).prop_map(|(agent, pick)| Op::Decline { agent, pick }),
        2 => (agent.clone(), any::<usize>()).prop_map(|(agent, pick)| Op::Pick { agent, pick }),
        4 => (agent.clone(), any::<usize>()).prop_map(|(agent, pick)| Op::AgentMessage { agent, pick }),
        1 => (any::<usize>(), agent.clone()).prop_map(|(pick, agent)| Op::TransferToAgent { pick, agent }),
        1 => (any::<usize>(), 0..GROUPS, any::<bool>())
            .prop_map(|(pick, group, keep)| Op::TransferToGroup { pick, group, keep }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(pick, by_agent)| Op::End { pick, by_agent }),
        1 => proptest::collection::vec(any::<usize>(), 0..4).prop_map(|picks| Op::EndBatch { picks }),
        1 => any::<bool>().prop_map(|on| Op::Hosting { on }),
        1 => (agent.clone(), 1..4u32).prop_map(|(agent, capacity)| Op::Capacity { agent, capacity }),
        2 => (agent, proptest::option::of(any::<usize>())).prop_map(|(agent, pick)| Op::EndWrapUp { agent, pick }),
        1 => (0..GROUPS, proptest::option::of(1..120u64)).prop_map(|(group, step)| Op::Aging { group, step }),
        1 => any::<usize>().prop_map(|pick| Op::ChannelClosed { pick }),
        1 => (0..GROUPS, proptest::option::of(overflow_rule())).prop_map(|(group, rule)| Op::Overflow { group, rule }),
        1 => (0..GROUPS, proptest::option::of(hours_rule())).prop_map(|(group, rule)| Op::Hours { group, rule }),
        5 => prop_oneof![0..30u64, 30..400u64, Just(3 * 86_400)].prop_map(|secs| Op::Advance { secs }),
    ]
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        any::<bool>(),
        proptest::collection::vec((0..4usize, 0..3usize, any::<bool>()), GROUPS as usize),
        proptest::collection::vec(
            (1..4u32, proptest::collection::vec(0..GROUPS, 1..3)),
            AGENTS as usize,
        ),
        proptest::collection::vec(
            (0..3u8, proptest::option::weighted(0.3, 0..AGENTS)),
            CUSTOMERS as usize,
        ),
        0..3u32,
        prop_oneof![Just(0u64), Just(60)],
        0..3u32,
        proptest::collection::vec(group_rules(), GROUPS as usize),
        proptest::collection::vec(0..6u8, AGENTS as usize),
        proptest::option::weighted(0.3, hours_rule()),
        zone(),
    )
        .prop_map(
            |(
                transfer_to_human,
                groups,
                agents,
                customers,
                reserve,
                grace,
                misses,
                rules,
                levels,
                tenant_hours,
                zone,
            )| {
                Setup {
                    transfer_to_human,
                    groups,
                    agents,
                    customers,
                    reserve,
                    grace,
                    misses,
                    rules,
                    levels,
                    tenant_hours,
                    zone,
                }
            },
        )
}

/// Issue 14's group rules, each on in about half the groups.
fn group_rules() -> impl Strategy<Value = GroupRules> {
    (
        proptest::option::of((prop_oneof![1..30u64, 30..300u64], any::<bool>())),
        proptest::option::of(prop_oneof![1..10u64, 10..600u64]),
        proptest::option::of((prop_oneof![0..30u64, 30..600u64], 1..GROUPS)),
        proptest::option::of(overflow_rule()),
        proptest::option::of((2..=5u8, 1..=4u8, prop_oneof![0..30u64, 30..600u64])),
        proptest::option::weighted(0.4, hours_rule()),
    )
        .prop_map(|(wrap_up, aging, step, overflow, levels, hours)| GroupRules {
            wrap_up,
            aging,
            step,
            overflow,
            levels,
            hours,
        })
}

/// A random calendar: always closed, always open, or spans that open and close within the
/// first hours of each day (which runs reach), or anywhere in it; a holiday or not.
fn hours_rule() -> impl Strategy<Value = model::HoursRule> {
    let span = (0..7usize, prop_oneof![0..90u16, 0..1440u16], prop_oneof![1..30u16, 30..600u16]);
    (
        prop_oneof![
            1 => Just(Vec::new()),
            1 => Just((0..7).map(|d| (d, 0, 1440)).collect()),
            4 => proptest::collection::vec(span, 1..12),
        ],
        any::<bool>(),
        0..3u8,
    )
        .prop_map(|(spans, holiday, when_closed)| model::HoursRule {
            spans,
            holiday,
            when_closed,
        })
}

/// UTC, a fixed offset, or one that changes an hour either way within the run's first hours.
fn zone() -> impl Strategy<Value = model::Zone> {
    (
        prop_oneof![Just(0i32), (-12..14i32).prop_map(|h| h * 3600)],
        proptest::option::of((1..7200u64, prop_oneof![Just(3600i32), Just(-3600)])),
    )
        .prop_map(|(first, change)| (first, change.map(|(at, d)| (at, first + d))))
}

/// A cap of 1-4 waiting and/or a wait of 1-300 s, to a group 0-2 on (0: refuse).
fn overflow_rule() -> impl Strategy<Value = model::OverflowRule> {
    (proptest::option::of(1..5u32), proptest::option::of(1..300u64), 0..GROUPS)
}

proptest! {
    // 256 cases by default; PROPTEST_CASES raises it for a longer hunt.
    #![proptest_config(ProptestConfig { max_shrink_iters: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_step(setup in setup(), ops in proptest::collection::vec(op(), 1..250)) {
        if let Err(why) = run(&setup, &ops) {
            prop_assert!(false, "{}", why);
        }
    }
}
