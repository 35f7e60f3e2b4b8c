//! The routing core under random event sequences: the input chooses a tenant setup and up to
//! 250 operations (arrivals, messages, status changes, offers, accepts, declines, picks,
//! transfers, ends, batch operations, capacity changes, clock advances, wrap-up ends,
//! aging steps); every invariant the
//! property tests check is checked after every step, and a snapshot must restore an engine
//! that behaves the same.

#![no_main]

#[path = "../../crates/switchboard-core/tests/model/mod.rs"]
#[allow(dead_code)]
mod model;

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use model::{AGENTS, CUSTOMERS, GROUPS, GroupRules, Op, Setup};

fn setup(u: &mut Unstructured) -> Result<Setup> {
    let mut groups = Vec::new();
    for _ in 0..GROUPS {
        groups.push((u.int_in_range(0..=3usize)?, u.int_in_range(0..=2usize)?, u.arbitrary()?));
    }
    let mut agents = Vec::new();
    for _ in 0..AGENTS {
        let capacity = u.int_in_range(1..=3u32)?;
        let mut member = vec![u.int_in_range(0..=GROUPS - 1)?];
        if u.arbitrary()? {
            member.push(u.int_in_range(0..=GROUPS - 1)?);
        }
        agents.push((capacity, member));
    }
    let mut customers = Vec::new();
    for _ in 0..CUSTOMERS {
        let dedicated = if u.ratio(3, 10)? { Some(u.int_in_range(0..=AGENTS - 1)?) } else { None };
        customers.push((u.int_in_range(0..=2u8)?, dedicated));
    }
    let mut rules = Vec::new();
    for _ in 0..GROUPS {
        let wrap_up = if u.arbitrary()? {
            Some((u.int_in_range(1..=299u64)?, u.arbitrary()?))
        } else {
            None
        };
        let aging = if u.arbitrary()? { Some(u.int_in_range(1..=600u64)?) } else { None };
        let step = if u.arbitrary()? {
            Some((u.int_in_range(0..=599u64)?, u.int_in_range(1..=GROUPS - 1)?))
        } else {
            None
        };
        rules.push(GroupRules { wrap_up, aging, step, ..Default::default() });
    }
    let mut levels = Vec::new();
    for _ in 0..AGENTS {
        levels.push(u.int_in_range(0..=5u8)?);
    }
    Ok(Setup {
        transfer_to_human: u.arbitrary()?,
        groups,
        agents,
        customers,
        reserve: u.int_in_range(0..=2)?,
        grace: if u.arbitrary()? { 60 } else { 0 },
        misses: u.int_in_range(0..=2)?,
        rules,
        levels,
        tenant_hours: None,
        zone: (0, None),
    })
}

fn op(u: &mut Unstructured) -> Result<Op> {
    let customer = |u: &mut Unstructured| u.int_in_range(0..=CUSTOMERS - 1);
    let agent = |u: &mut Unstructured| u.int_in_range(0..=AGENTS - 1);
    let group = |u: &mut Unstructured| u.int_in_range(0..=GROUPS - 1);
    Ok(match u.int_in_range(0..=16u8)? {
        0 => Op::Message {
            customer: customer(u)?,
            channel: u.int_in_range(0..=5)?,
            keyword: u.arbitrary()?,
            group: if u.ratio(1, 5)? { Some(group(u)?) } else { None },
            priority: if u.ratio(1, 5)? { Some(u.int_in_range(0..=3)?) } else { None },
        },
        1 => Op::RequestHuman { customer: customer(u)? },
        2 => Op::Status {
            agent: agent(u)?,
            status: u.int_in_range(0..=4)?,
            supervisor: u.arbitrary()?,
        },
        3 => Op::Accept { agent: agent(u)?, pick: u.arbitrary()? },
        4 => Op::Decline { agent: agent(u)?, pick: u.arbitrary()? },
        5 => Op::Pick { agent: agent(u)?, pick: u.arbitrary()? },
        6 => Op::AgentMessage { agent: agent(u)?, pick: u.arbitrary()? },
        7 => Op::TransferToAgent { pick: u.arbitrary()?, agent: agent(u)? },
        8 => Op::TransferToGroup { pick: u.arbitrary()?, group: group(u)?, keep: u.arbitrary()? },
        9 => Op::End { pick: u.arbitrary()?, by_agent: u.arbitrary()? },
        10 => {
            let n = u.int_in_range(0..=3usize)?;
            let mut picks = Vec::with_capacity(n);
            for _ in 0..n {
                picks.push(u.arbitrary()?);
            }
            Op::EndBatch { picks }
        }
        11 => Op::Hosting { on: u.arbitrary()? },
        12 => Op::Capacity { agent: agent(u)?, capacity: u.int_in_range(1..=3)? },
        13 => Op::ChannelClosed { pick: u.arbitrary()? },
        14 => Op::EndWrapUp {
            agent: agent(u)?,
            pick: if u.arbitrary()? { Some(u.arbitrary()?) } else { None },
        },
        15 => Op::Aging {
            group: group(u)?,
            step: if u.arbitrary()? { Some(u.int_in_range(1..=600u64)?) } else { None },
        },
        _ => Op::Advance {
            secs: match u.int_in_range(0..=2u8)? {
                0 => u.int_in_range(0..=29)?,
                1 => u.int_in_range(30..=399)?,
                _ => 3 * 86_400,
            },
        },
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(setup) = setup(&mut u) else { return };
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < 250 {
        match op(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    if ops.is_empty() {
        return;
    }
    if let Err(why) = model::run(&setup, &ops) {
        panic!("invariant broken: {why}\nsetup: {setup:?}\nops: {ops:?}");
    }
});
