//! The model the property tests and the `routing` fuzz target share: a tenant setup, the
//! operations a run interleaves, and `run`, which applies them to an engine and checks every
//! invariant of the routing core after every step (see `properties.rs` for the list). The
//! fuzz crate includes this file with `#[path]`, so both hunt with the same checks.

use std::time::Duration;

use switchboard_core::config::{
    AgentSettings, AutoAcceptReply, CustomerSettings, GroupPolicy, GroupSettings, KeywordRule,
    MessageReceivedReply, NotRespondingPolicy, OfferMode, OfflineReply, Overflow, QueueReply,
    QueueRule, ReplySettings, Step, Strategy as Pick, TenantSettings, TimedReply, WhenClosed,
    WrapUp,
};
use switchboard_core::engine::customer_message::CustomerMessage;
use switchboard_core::hours::{Hours, Offsets, Span};
use switchboard_core::router::Via;
use switchboard_core::router::{Placement, Router};
use switchboard_core::{
    Actor, AgentId, AgentStatus, Channel, ConversationId, CustomerId, Effect, Engine, Event,
    GroupId, Selection, State, Target, Timestamp,
};

pub const GROUPS: u64 = 3;
pub const AGENTS: u64 = 5;
pub const CUSTOMERS: u64 = 8;

#[derive(Debug, Clone)]
pub enum Op {
    /// `priority`: raises the conversation's priority (SPEC §3), also while it waits.
    Message {
        customer: u64,
        channel: usize,
        keyword: bool,
        group: Option<u64>,
        priority: Option<u8>,
    },
    RequestHuman {
        customer: u64,
    },
    Status {
        agent: u64,
        status: usize,
        supervisor: bool,
    },
    Accept {
        agent: u64,
        pick: usize,
    },
    Decline {
        agent: u64,
        pick: usize,
    },
    Pick {
        agent: u64,
        pick: usize,
    },
    AgentMessage {
        agent: u64,
        pick: usize,
    },
    TransferToAgent {
        pick: usize,
        agent: u64,
    },
    TransferToGroup {
        pick: usize,
        group: u64,
        keep: bool,
    },
    End {
        pick: usize,
        by_agent: bool,
    },
    EndBatch {
        picks: Vec<usize>,
    },
    Hosting {
        on: bool,
    },
    Capacity {
        agent: u64,
        capacity: u32,
    },
    ChannelClosed {
        pick: usize,
    },
    Advance {
        secs: u64,
    },
    /// The agent ends its wrap-up: of its `pick`th wrapping conversation, or all (`None`).
    EndWrapUp {
        agent: u64,
        pick: Option<usize>,
    },
    /// An administrator changes a group's priority aging step (seconds; `None`: off).
    Aging {
        group: u64,
        step: Option<u64>,
    },
    /// An administrator changes a group's overflow rule (`None`: off); any target, so a
    /// loop must be refused.
    Overflow {
        group: u64,
        rule: Option<OverflowRule>,
    },
    /// An administrator changes a group's business hours (`None`: the tenant's).
    Hours {
        group: u64,
        rule: Option<HoursRule>,
    },
}

/// Overflow: cap, max wait (seconds), and the target group this many groups on (0: refuse).
pub type OverflowRule = (Option<u32>, Option<u64>, u64);

fn overflow(g: u64, (max_waiting, max_wait, on): OverflowRule) -> Overflow {
    Overflow {
        // At least one limit, as validation wants.
        max_waiting: max_waiting.or(max_wait.is_none().then_some(1)),
        max_wait: max_wait.map(Duration::from_secs),
        group: (on % GROUPS != 0).then(|| GroupId((g + on) % GROUPS)),
    }
}

/// Issue 14's per-group rules, each off (`None`) or on with short times so they act within
/// a run.
#[derive(Debug, Clone, Default)]
pub struct GroupRules {
    /// Wrap-up seconds and whether the agent may end it early.
    pub wrap_up: Option<(u64, bool)>,
    /// Priority aging: seconds of waiting per priority level.
    pub aging: Option<u64>,
    /// A step: after this many seconds, also the agents of the group this many groups on.
    pub step: Option<(u64, u64)>,
    /// Overflow to a later group only (so the setup has no loop), or refusal.
    pub overflow: Option<OverflowRule>,
    /// The level the group's own agents need (2-5), and what a step lowers it to after this
    /// many seconds (the group's step, or a step of its own when it has none).
    pub levels: Option<(u8, u8, u64)>,
    /// Business hours of its own (else the tenant's, if any).
    pub hours: Option<HoursRule>,
}

/// A calendar: spans (weekday 0-6, start minute, minutes long; overlapping ones are
/// dropped), day 1 (a Friday; runs start on Thursday 1970-01-01) a holiday or not, and the
/// closed policy (0 wait, 1 overflow when the group has an overflow group, else wait; 2 end).
/// No spans: always closed; a 1440-minute span on every day: always open.
#[derive(Debug, Clone, Default)]
pub struct HoursRule {
    pub spans: Vec<(usize, u16, u16)>,
    pub holiday: bool,
    pub when_closed: u8,
}

/// The tenant zone's offsets: seconds east of UTC, and a change to another offset at a
/// second of the run (a DST-like jump either way).
pub type Zone = (i32, Option<(u64, i32)>);

pub fn calendar(rule: &HoursRule) -> Hours {
    let mut h = Hours::default();
    for &(day, start, len) in &rule.spans {
        let span = Span { start: start.min(1439), end: (start.min(1439) + len.max(1)).min(1440) };
        let spans = &mut h.weekly[day % 7];
        if spans.iter().all(|o| o.end <= span.start || span.end <= o.start) {
            spans.push(span);
        }
    }
    if rule.holiday {
        h.exceptions.insert(1, Vec::new());
    }
    h
}

pub fn offsets((first, change): Zone) -> Offsets {
    let mut changes = vec![(Timestamp::ZERO, first)];
    if let Some((at, to)) = change {
        changes.push((Timestamp(at * 1000), to));
    }
    Offsets { changes }
}

/// Sets a group's hours and closed policy as the rule says (`None`: the tenant's).
fn set_hours(policy: &mut GroupPolicy, rule: Option<&HoursRule>) {
    policy.hours = rule.map(calendar);
    policy.when_closed = match rule.map_or(0, |r| r.when_closed % 3) {
        1 if policy.overflow.is_some_and(|o| o.group.is_some()) => WhenClosed::Overflow,
        2 => WhenClosed::End,
        _ => WhenClosed::Wait,
    };
}

/// A tenant configuration: offer modes, strategies, affinity and every reply kind with short
/// timers so they fire within a run.
#[derive(Debug, Clone)]
pub struct Setup {
    pub transfer_to_human: bool,
    pub groups: Vec<(usize, usize, bool)>,
    pub agents: Vec<(u32, Vec<u64>)>,
    pub customers: Vec<(u8, Option<u64>)>,
    pub reserve: u32,
    pub grace: u64,
    pub misses: u32,
    /// One per group (missing: all off).
    pub rules: Vec<GroupRules>,
    /// Per agent: 0 not rated, else a base from which each of its groups gets a level 1-5.
    pub levels: Vec<u8>,
    /// The tenant's business hours (`None`: always open, for groups without their own).
    pub tenant_hours: Option<HoursRule>,
    pub zone: Zone,
}

fn texts(t: &str) -> Vec<String> {
    vec![t.to_owned()]
}

fn replies() -> ReplySettings {
    ReplySettings {
        auto_accept: Some(AutoAcceptReply {
            texts: texts("hi {{nick_name}}, {{staff_name}} here"),
            also_from_queue: true,
        }),
        queue: Some(QueueReply {
            rules: vec![QueueRule { above: 0, texts: texts("{{queue_num}} ahead") }],
            min_interval: Duration::from_secs(20),
        }),
        agent_no_response: Some(TimedReply {
            after: Duration::from_secs(60),
            texts: texts("one moment"),
        }),
        customer_no_response: Some(TimedReply {
            after: Duration::from_secs(120),
            texts: texts("still there?"),
        }),
        customer_no_response_end: Some(TimedReply {
            after: Duration::from_secs(600),
            texts: texts("bye"),
        }),
        idle_end: Some(TimedReply { after: Duration::from_secs(900), texts: texts("idle bye") }),
        manual_end: Some(texts("thanks")),
        batch_end: Some(texts("closing")),
        offline: Some(OfflineReply {
            texts: vec!["offline".into(), "later".into()],
            min_interval: Duration::ZERO,
        }),
        queue_full: Some(texts("all busy, sorry {{nick_name}}")),
        closed: Some(texts("closed now, {{nick_name}}")),
    }
}

pub fn build(s: &Setup) -> Engine {
    let settings = TenantSettings {
        transfer_to_human: s.transfer_to_human,
        replies: replies(),
        keywords: vec![KeywordRule {
            keywords: texts("price"),
            texts: vec!["p1".into(), "p2".into()],
        }],
        message_received: Some(MessageReceivedReply {
            texts: texts("got it"),
            also_in_session: false,
        }),
        open_service: Some(texts("welcome")),
        human_reserve: s.reserve,
        unreplied_alert: Some(Duration::from_secs(90)),
        offline_grace: Duration::from_secs(s.grace),
        not_responding: NotRespondingPolicy { after_misses: s.misses, status: AgentStatus::Away },
        default_group: Some(GroupId(0)),
        // Every third customer is a VIP.
        customer_group_priorities: [("vip".to_owned(), 2)].into(),
        hours: s.tenant_hours.as_ref().map(calendar),
        ..Default::default()
    };
    let mut e = Engine::new(settings).unwrap();
    let t0 = Timestamp(0);
    let mut stepped = Vec::new();
    for (g, (strategy, offer, last_agent)) in s.groups.iter().enumerate() {
        let policy = GroupPolicy {
            strategy: [
                Pick::LeastOccupied,
                Pick::LongestIdle,
                Pick::RoundRobin,
                Pick::BestProficiency,
            ][*strategy],
            offer: [
                OfferMode::AutoAccept,
                OfferMode::Offer { timeout: Duration::from_secs(25) },
                OfferMode::Pull,
            ][*offer],
            dedicated_timeout: Duration::from_secs(200),
            last_agent_timeout: last_agent.then_some(Duration::from_secs(45)),
            wrap_up: s.rules.get(g).and_then(|r| r.wrap_up).map(|(secs, can_end_early)| WrapUp {
                duration: Duration::from_secs(secs),
                can_end_early,
            }),
            priority_aging: s.rules.get(g).and_then(|r| r.aging).map(Duration::from_secs),
            steps: {
                let rules = s.rules.get(g);
                let lowered = rules.and_then(|r| r.levels).map(|(need, to, _)| to.min(need - 1));
                match (rules.and_then(|r| r.step), rules.and_then(|r| r.levels)) {
                    (Some((after, on)), _) => vec![Step {
                        after: Duration::from_secs(after),
                        group: GroupId((g as u64 + on.clamp(1, GROUPS - 1)) % GROUPS),
                        min_level: lowered,
                    }],
                    // A step that only lowers the level.
                    (None, Some((_, _, after))) => vec![Step {
                        after: Duration::from_secs(after),
                        group: GroupId(g as u64),
                        min_level: lowered,
                    }],
                    (None, None) => Vec::new(),
                }
            },
            overflow: s.rules.get(g).and_then(|r| r.overflow).map(|(w, t, on)| {
                // Only to a later group: a setup never loops.
                let on = if g as u64 + on % GROUPS < GROUPS { on % GROUPS } else { 0 };
                overflow(g as u64, (w, t, on))
            }),
            min_level: s.rules.get(g).and_then(|r| r.levels).map(|(need, _, _)| need),
            hours: None,
            when_closed: WhenClosed::Wait,
        };
        let mut policy = policy;
        set_hours(&mut policy, s.rules.get(g).and_then(|r| r.hours.as_ref()));
        // A step may name a group created later: every group first, then the steps.
        let steps = policy.steps.clone();
        let id = GroupId(g as u64);
        let plain = GroupPolicy {
            steps: Vec::new(),
            overflow: None,
            when_closed: WhenClosed::Wait,
            ..policy.clone()
        };
        e.upsert_group(t0, id, GroupSettings { policy: plain, ..Default::default() }).unwrap();
        if !steps.is_empty() || policy.overflow.is_some() || policy.when_closed != WhenClosed::Wait
        {
            stepped.push((id, policy));
        }
    }
    for (id, policy) in stepped {
        e.upsert_group(t0, id, GroupSettings { policy, ..Default::default() }).unwrap();
    }
    for (a, (capacity, groups)) in s.agents.iter().enumerate() {
        let settings = AgentSettings {
            nickname: format!("agent{a}"),
            capacity: *capacity,
            groups: groups.iter().map(|g| GroupId(*g)).collect(),
            replies: ReplySettings::default(),
            // Level 0 in the setup: not rated (the lowest); otherwise a level per group.
            proficiency: match s.levels.get(a).copied().unwrap_or(0) {
                0 => Default::default(),
                base => groups.iter().map(|g| (GroupId(*g), (base + *g as u8) % 5 + 1)).collect(),
            },
        };
        e.upsert_agent(t0, AgentId(a as u64), settings).unwrap();
    }
    for (u, (priority, dedicated)) in s.customers.iter().enumerate() {
        let settings = CustomerSettings {
            nickname: (u % 2 == 0).then(|| format!("cust{u}")),
            priority: *priority,
            group: None,
            dedicated_agent: dedicated.map(AgentId),
            customer_groups: if u % 3 == 0 { vec!["vip".into()] } else { Vec::new() },
        };
        e.upsert_customer(t0, CustomerId(u as u64), settings).unwrap();
    }
    e.set_calendar(t0, offsets(s.zone));
    e
}

/// Every open conversation, in id order, so `pick` indexes are stable.
fn open(e: &Engine) -> Vec<ConversationId> {
    let mut ids: Vec<ConversationId> =
        e.conversations().filter(|c| c.is_open()).map(|c| c.id).collect();
    ids.sort();
    ids
}

fn nth(e: &Engine, pick: usize) -> Option<ConversationId> {
    let ids = open(e);
    (!ids.is_empty()).then(|| ids[pick % ids.len()])
}

/// The `pick`-th conversation in `state`, with the agent holding it.
fn held(e: &Engine, state: State, pick: usize) -> Option<(ConversationId, AgentId)> {
    let ids: Vec<_> = open(e)
        .into_iter()
        .filter_map(|c| {
            e.conversation(c).filter(|c| c.state == state).and_then(|c| Some((c.id, c.agent?)))
        })
        .collect();
    (!ids.is_empty()).then(|| ids[pick % ids.len()])
}

/// Positions must be the exact rank: 1 + the number of entries ahead in the same queue.
fn check_positions(e: &Engine) -> Result<(), String> {
    check_ranks(e.router())?;
    for c in e.conversations() {
        let placed = e.router().placement(c.id);
        let queued = matches!(placed, Some(Placement::Queued { .. }));
        if queued != e.position(c.id).is_some() {
            return Err(format!(
                "{} reports a position while not waiting, or none while waiting",
                c.id
            ));
        }
        // Its group is the one the router holds it in (a transfer or overflow taken at once
        // moves it too).
        if let Some(p) = placed
            && p.group() != c.group
        {
            return Err(format!(
                "{} is of {} but the router holds it in {}",
                c.id,
                c.group,
                p.group()
            ));
        }
    }
    Ok(())
}

/// Estimated waits (issue 14 item 7): only for conversations waiting in their group's queue
/// (not pinned), finite, the group's estimate for the exact position, and within a group at
/// one instant present up to some position (the cap) and monotone in position.
fn check_waits(e: &Engine, now: Timestamp) -> Result<(), String> {
    let mut by_group: std::collections::BTreeMap<GroupId, Vec<(usize, Option<Duration>)>> =
        Default::default();
    for c in e.conversations() {
        let wait = e.estimated_wait(now, c.id);
        match e.router().placement(c.id) {
            Some(Placement::Queued { group, pin: None, .. }) => {
                let position = e.position(c.id).ok_or("a waiting conversation has no position")?;
                if wait != e.router().group_wait(now, *group, position) {
                    return Err(format!("{}: wait {wait:?} is not its position's", c.id));
                }
                if wait.is_some_and(|w| w > switchboard_core::router::MAX_ESTIMATE) {
                    return Err(format!("{}: wait {wait:?} above the maximum", c.id));
                }
                by_group.entry(*group).or_default().push((position, wait));
            }
            _ if wait.is_some() => {
                return Err(format!("{} has an estimated wait while not in a group queue", c.id));
            }
            _ => {}
        }
    }
    for (group, mut waits) in by_group {
        waits.sort_by_key(|(p, _)| *p);
        // Present up to some position (the cap may cut off the tail), and never decreasing.
        let reappears = waits.iter().skip_while(|(_, w)| w.is_some()).any(|(_, w)| w.is_some());
        let decreases = waits.windows(2).any(|w| w[1].1.is_some() && w[0].1 > w[1].1);
        if reappears || decreases {
            return Err(format!("group {group}: waits not monotone in position: {waits:?}"));
        }
    }
    Ok(())
}

/// Every waiting conversation's position is its exact rank in the queue it waits in.
/// Explain agrees with dispatch: every agent of a waiting conversation's groups is refused
/// by the predicate dispatch uses (work conservation at rest: one it admitted would have
/// been given work, so "takes others first" never shows here, let alone for a conversation
/// nothing is ahead of), each reason matches the agent's and conversation's state, and every
/// conversation an agent holds has the record of why it got it.
pub fn check_explain(r: &Router, now: Timestamp) -> Result<(), String> {
    use switchboard_core::router::explain::{ConversationExplanation as X, Refusal, Verdict};
    for (id, a) in r.agents() {
        let x = r.explain_agent(now, id).ok_or("a known agent has no explanation")?;
        if x.refusal.is_none() != a.can_push() {
            return Err(format!(
                "{id}: explained refusal {:?} but can push: {}",
                x.refusal,
                a.can_push()
            ));
        }
        for c in a.assigned.iter().chain(&a.offered) {
            match r.explain_conversation(now, *c) {
                Some(X::Held(h)) if h.agent == id && h.decision.is_some() => {}
                other => return Err(format!("{c} held by {id} is explained as {other:?}")),
            }
        }
        for (c, v) in &x.waiting {
            if r.verdict(now, id, *c).as_ref() != Some(v) {
                return Err(format!("{id}'s listed verdict on {c} is not its verdict"));
            }
        }
    }
    for (_, a) in r.agents() {
        for (_, c) in a.pinned.iter() {
            check_waiting(r, now, c)?;
        }
    }
    for g in 0..GROUPS {
        for (_, c) in r.queue(GroupId(g), 0) {
            check_waiting(r, now, c)?;
        }
    }
    return Ok(());

    fn check_waiting(r: &Router, now: Timestamp, c: ConversationId) -> Result<(), String> {
        let Some(X::Waiting(w)) = r.explain_conversation(now, c) else {
            return Err(format!("{c} waits but is not explained as waiting"));
        };
        if w.position != r.position(c) {
            return Err(format!(
                "{c}: explained position {:?}, is {:?}",
                w.position,
                r.position(c)
            ));
        }
        let Some(Placement::Queued { declined, pin, .. }) = r.placement(c) else {
            return Err(format!("{c} is explained as waiting but is not queued"));
        };
        for v in &w.agents {
            let a = r.agent(v.agent).ok_or("an explained agent is unknown")?;
            let why = match &v.verdict {
                Verdict::CannotTake(why) => *why,
                Verdict::TakesOthersFirst { ahead } => {
                    return Err(format!(
                        "{} could take {c} (ahead: {ahead:?}) yet is not given work",
                        v.agent
                    ));
                }
            };
            let fits = match why {
                Refusal::Offline => a.status == AgentStatus::Offline,
                Refusal::NotOnline(s) => {
                    a.status == s && !matches!(s, AgentStatus::Online | AgentStatus::Offline)
                }
                Refusal::AtCapacity { load, capacity } => {
                    load == a.load() && capacity == a.capacity && load >= capacity
                }
                Refusal::WrappingUp { load, capacity, until } => {
                    load >= capacity && a.wrapping.values().any(|w| w.until == until)
                }
                Refusal::GroupPulls(g) => {
                    r.group_policy(g).is_some_and(|p| p.offer == OfferMode::Pull)
                }
                Refusal::WaitsForAgent(p) => pin.is_some_and(|pin| pin.agent == p && p != v.agent),
                Refusal::NotAdmitted { .. } => {
                    pin.is_none()
                        && !a.groups.contains(&w.group)
                        && !w.widened.iter().any(|g| a.groups.contains(g))
                }
                Refusal::Declined => declined.contains(&v.agent),
                Refusal::OutsideHours { group, until } => {
                    r.closed(group)
                        && until == r.hours_change(group)
                        && (group == w.group || a.groups.contains(&group))
                }
                Refusal::BelowLevel { level, needs, .. } => {
                    let policy = r.group_policy(w.group).ok_or("its group is unknown")?;
                    pin.is_none()
                        && a.groups.contains(&w.group)
                        && level == a.level(w.group)
                        && policy.min_level_after(w.steps_reached) == Some(needs)
                        && level < needs
                        // Not admitted through a group its steps reached that serves it.
                        && !w.widened.iter().any(|g| {
                            a.groups.contains(g)
                                && r.group_policy(*g).is_some_and(|p| p.offer != OfferMode::Pull)
                                && !r.closed(*g)
                        })
                }
            };
            if !fits {
                return Err(format!(
                    "{c}: {} refused as {why:?}, which its state contradicts",
                    v.agent
                ));
            }
        }
        Ok(())
    }
}

pub fn check_ranks(r: &Router) -> Result<(), String> {
    for g in 0..GROUPS {
        for (rank, (_, conv)) in r.queue(GroupId(g), 0).enumerate() {
            if r.position(conv) != Some(rank + 1) {
                return Err(format!(
                    "{conv} is at rank {} of g{g} but reports {:?}",
                    rank + 1,
                    r.position(conv)
                ));
            }
        }
    }
    for (id, a) in r.agents() {
        for (rank, (_, conv)) in a.pinned.iter().enumerate() {
            if r.position(conv) != Some(rank + 1) {
                return Err(format!(
                    "{conv} waits for {id} at rank {} but reports {:?}",
                    rank + 1,
                    r.position(conv)
                ));
            }
        }
    }
    Ok(())
}

/// FIFO within a priority: in each queue, entries of the same front class and priority are
/// in order of entry time. Under priority aging, FIFO within the effective order: entries of
/// one front class are in order of `entered_at − priority × step` (the effective priority at
/// any instant, highest first), ties in arrival order.
pub fn check_fifo(r: &Router) -> Result<(), String> {
    for g in 0..GROUPS {
        let keys: Vec<_> = r.queue(GroupId(g), 0).map(|(k, _)| k).collect();
        let aging = r.group_policy(GroupId(g)).and_then(|p| p.priority_aging);
        if let Some(step) = aging {
            let step = step.as_millis() as i128;
            let effective = |k: switchboard_core::queue::QueueKey| {
                k.entered_at().0 as i128 - i128::from(k.priority()) * step
            };
            for w in keys.windows(2) {
                let (a, b) = (w[0], w[1]);
                if a.front() == b.front() && (effective(a), a.seq()) > (effective(b), b.seq()) {
                    return Err(format!("g{g} (aging {step} ms): {a:?} ahead of {b:?}"));
                }
                if !a.front() && b.front() {
                    return Err(format!("g{g}: {a:?} ahead of the front class {b:?}"));
                }
            }
            continue;
        }
        for w in keys.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a.front() == b.front()
                && a.priority() == b.priority()
                && a.entered_at() > b.entered_at()
            {
                return Err(format!("g{g}: {a:?} ahead of {b:?}"));
            }
            if a.front() == b.front() && a.priority() < b.priority() {
                return Err(format!("g{g}: lower priority {a:?} ahead of {b:?}"));
            }
        }
    }
    Ok(())
}

/// Once the clock has run (`advance`), every conversation waiting in its group stands in
/// the group of each step whose wait has passed since its entry time, and in no other.
fn check_steps(e: &Engine, now: Timestamp) -> Result<(), String> {
    for g in 0..GROUPS {
        let steps =
            e.group_settings(GroupId(g)).map(|s| s.policy.steps.clone()).unwrap_or_default();
        for (key, conv) in e.router().queue(GroupId(g), 0) {
            let due: Vec<GroupId> = steps
                .iter()
                // A step naming the group itself only lowers the level it needs.
                .filter(|s| key.entered_at() + s.after <= now && s.group != GroupId(g))
                .map(|s| s.group)
                .collect();
            if e.router().widened_groups(conv) != due.as_slice() {
                return Err(format!(
                    "{conv} of g{g} (entered {:?}) stands in {:?}, its due steps are {due:?}",
                    key.entered_at(),
                    e.router().widened_groups(conv)
                ));
            }
        }
    }
    Ok(())
}

/// The target an overflow op names.
fn s_target(rule: &Option<OverflowRule>, g: u64) -> Option<GroupId> {
    rule.and_then(|r| overflow(g, r).group)
}

/// Whether pointing `from`'s overflow at `to` closes a loop in the engine's configuration.
fn loops(e: &Engine, from: GroupId, to: Option<GroupId>) -> bool {
    let mut at = to;
    for _ in 0..=GROUPS {
        match at {
            Some(g) if g == from => return true,
            Some(g) => at = e.group_settings(g).and_then(|s| s.policy.overflow?.group),
            None => return false,
        }
    }
    true
}

/// Once the clock has run (`advance`), no conversation waits in a group past its max wait (requeued-at-the-front ones are
/// exempt). The cap is checked on entry only, so queue lengths are not checked here: the
/// waiting are never pushed out (a declined offer or a policy change may exceed it).
fn check_limits(e: &Engine, now: Timestamp) -> Result<(), String> {
    for g in 0..GROUPS {
        let Some(wait) =
            e.group_settings(GroupId(g)).and_then(|s| s.policy.overflow).and_then(|o| o.max_wait)
        else {
            continue;
        };
        for (key, conv) in e.router().queue(GroupId(g), 0) {
            if !key.front() && key.entered_at() + wait <= now {
                return Err(format!(
                    "{conv} waits in g{g} since {:?}, past its max wait {wait:?}",
                    key.entered_at()
                ));
            }
        }
    }
    Ok(())
}

/// Once the clock has run, every group is open exactly when its calendar (its own, else
/// the tenant's; none: always) says so.
fn check_hours(e: &Engine, now: Timestamp, setup: &Setup) -> Result<(), String> {
    let zone = offsets(setup.zone);
    for g in 0..GROUPS {
        let own = e.group_settings(GroupId(g)).and_then(|s| s.policy.hours.clone());
        let open = own.or(e.settings().hours.clone()).is_none_or(|h| h.open_at(&zone, now));
        if e.router().closed(GroupId(g)) == open {
            return Err(format!(
                "g{g} is {} at {now:?}, its calendar says otherwise",
                if open { "closed" } else { "open" }
            ));
        }
    }
    Ok(())
}

/// A closed group offers nothing and assigns nothing by itself (an agent may still accept
/// an offer made before it closed; a transfer to an agent is an explicit act).
fn check_closed_serve_nothing(e: &Engine, effects: &[Effect]) -> Result<(), String> {
    for fx in effects {
        let (conv, what) = match fx {
            Effect::Event(Event::Offered { conversation, .. }) => (*conversation, "offered"),
            Effect::Event(Event::Assigned {
                conversation, via: Via::Auto | Via::Picked, ..
            }) => (*conversation, "assigned"),
            _ => continue,
        };
        if let Some(g) = e.router().placement(conv).map(|p| p.group())
            && e.router().closed(g)
        {
            return Err(format!("{conv} {what} while its group {g} is closed"));
        }
    }
    Ok(())
}

/// Budgets, observed on the effects: count service messages per conversation since the
/// customer last wrote, and refuse any run over the channel's limit.
#[derive(Default)]
pub struct BudgetWatch {
    since_customer: std::collections::HashMap<ConversationId, u32>,
}

impl BudgetWatch {
    pub fn customer_wrote(&mut self, c: ConversationId) {
        self.since_customer.insert(c, 0);
    }

    pub fn observe(&mut self, effects: &[Effect]) -> Result<(), String> {
        for e in effects {
            if let Effect::Send { conversation, channel, .. } = e {
                let n = self.since_customer.entry(*conversation).or_default();
                *n += 1;
                if channel.reply_budget().is_some_and(|limit| *n > limit) {
                    return Err(format!(
                        "{conversation} on {channel} got {n} service messages in a row"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Ends a wrap-up and checks the rule: refused exactly when there is none to end, or when
/// every one it names is mandatory; otherwise the slots it may end are free afterwards.
fn end_wrap_up(
    e: &mut Engine,
    now: Timestamp,
    agent: u64,
    conv: Option<ConversationId>,
) -> Result<Vec<Effect>, String> {
    let id = AgentId(agent);
    let named: Vec<(ConversationId, bool)> = e
        .router()
        .agent(id)
        .map(|a| {
            a.wrapping
                .iter()
                .filter(|(c, _)| conv.is_none_or(|x| x == **c))
                .map(|(c, w)| (*c, w.can_end_early))
                .collect()
        })
        .unwrap_or_default();
    let may_end = named.iter().any(|(_, early)| *early);
    match e.end_wrap_up(now, id, conv) {
        Ok(fx) if may_end => {
            let left = e.router().agent(id).map(|a| a.wrapping.clone()).unwrap_or_default();
            if let Some((c, _)) = named.iter().find(|(c, early)| *early && left.contains_key(c)) {
                return Err(format!("{id}'s optional wrap-up of {c} survived its end"));
            }
            Ok(fx)
        }
        Ok(_) => Err(format!("{id} ended a wrap-up it had no right to end: {named:?}")),
        Err(_) if may_end => Err(format!("{id} was refused ending {named:?}")),
        Err(_) => Ok(Vec::new()),
    }
}

pub fn run(setup: &Setup, ops: &[Op]) -> Result<(), String> {
    let mut e = build(setup);
    let mut now = Timestamp(1_000);
    let mut next_conv = 0u64;
    let mut budget = BudgetWatch::default();
    let statuses = [
        AgentStatus::Online,
        AgentStatus::Busy,
        AgentStatus::Away,
        AgentStatus::Invisible,
        AgentStatus::Offline,
    ];
    for (step, op) in ops.iter().enumerate() {
        now = now + Duration::from_millis(250);
        // Errors are expected (random ops are often invalid); invariants must hold anyway.
        let effects: Vec<Effect> = match op {
            Op::Message { customer, channel, keyword, group, priority } => {
                next_conv += 1;
                let msg = CustomerMessage {
                    customer: CustomerId(*customer),
                    channel: Channel::ALL[*channel],
                    text: if *keyword { "what is the price?".into() } else { "hello".into() },
                    new_conversation: ConversationId(next_conv),
                    group: group.map(GroupId),
                    priority: *priority,
                };
                match e.customer_message(now, msg) {
                    Ok(o) => {
                        budget.customer_wrote(o.conversation);
                        o.effects
                    }
                    Err(_) => Vec::new(),
                }
            }
            Op::RequestHuman { customer } => {
                match e.customer(CustomerId(*customer)).and_then(|u| u.open) {
                    Some(c) => e.request_human(now, c).unwrap_or_default(),
                    None => Vec::new(),
                }
            }
            Op::Status { agent, status, supervisor } => {
                let by = if *supervisor {
                    Actor::Supervisor(AgentId(99))
                } else {
                    Actor::Agent(AgentId(*agent))
                };
                e.set_agent_status(now, AgentId(*agent), statuses[*status], by).unwrap_or_default()
            }
            Op::Accept { agent, pick } => match held(&e, State::Offered, *pick) {
                Some((c, holder)) => e
                    .accept(now, if *agent == 0 { AgentId(9) } else { holder }, c)
                    .unwrap_or_default(),
                None => Vec::new(),
            },
            Op::Decline { agent, pick } => match held(&e, State::Offered, *pick) {
                Some((c, holder)) => e
                    .decline(now, if *agent == 0 { AgentId(9) } else { holder }, c)
                    .unwrap_or_default(),
                None => Vec::new(),
            },
            Op::Pick { agent, pick } => nth(&e, *pick)
                .map(|c| e.pick(now, AgentId(*agent), c).unwrap_or_default())
                .unwrap_or_default(),
            Op::AgentMessage { agent, pick } => match held(&e, State::Assigned, *pick) {
                // Mostly the holder; now and then someone else, who must be refused.
                Some((c, holder)) => {
                    let from = if *agent == 0 { AgentId((holder.0 + 1) % AGENTS) } else { holder };
                    e.agent_message(now, from, c, "hello from the desk", None).unwrap_or_default()
                }
                None => Vec::new(),
            },
            Op::TransferToAgent { pick, agent } => nth(&e, *pick)
                .map(|c| {
                    e.transfer(
                        now,
                        c,
                        Target::Agent(AgentId(*agent)),
                        Actor::Supervisor(AgentId(99)),
                    )
                    .unwrap_or_default()
                })
                .unwrap_or_default(),
            Op::TransferToGroup { pick, group, keep } => nth(&e, *pick)
                .map(|c| {
                    let target = Target::Group { group: GroupId(*group), keep_entry_time: *keep };
                    e.transfer(now, c, target, Actor::Supervisor(AgentId(99))).unwrap_or_default()
                })
                .unwrap_or_default(),
            Op::End { pick, by_agent } => nth(&e, *pick)
                .map(|c| {
                    let by = match (by_agent, e.conversation(c).and_then(|c| c.agent)) {
                        (true, Some(a)) => Actor::Agent(a),
                        _ => Actor::Supervisor(AgentId(99)),
                    };
                    e.end(now, c, by).unwrap_or_default()
                })
                .unwrap_or_default(),
            Op::EndBatch { picks } => {
                let ids: Vec<_> = picks.iter().filter_map(|p| nth(&e, *p)).collect();
                e.end_batch(now, &ids).1
            }
            Op::Hosting { on } => e.set_bot_hosting(now, &Selection::All, *on).1,
            Op::Capacity { agent, capacity } => {
                let mut s = e.agent_settings(AgentId(*agent)).cloned().unwrap();
                s.capacity = *capacity;
                match e.upsert_agent(now, AgentId(*agent), s) {
                    Ok(fx) => fx,
                    Err(err) => {
                        let held =
                            e.router().agent(AgentId(*agent)).map_or(0, |a| a.assigned.len());
                        if held <= *capacity as usize {
                            return Err(format!(
                                "capacity {capacity} refused with {held} assigned: {err}"
                            ));
                        }
                        Vec::new()
                    }
                }
            }
            Op::ChannelClosed { pick } => nth(&e, *pick)
                .map(|c| e.channel_closed(now, c).unwrap_or_default())
                .unwrap_or_default(),
            Op::Advance { secs } => {
                now = now + Duration::from_secs(*secs);
                e.advance(now)
            }
            Op::EndWrapUp { agent, pick } => {
                let wrapping: Vec<ConversationId> = e
                    .router()
                    .agent(AgentId(*agent))
                    .map(|a| a.wrapping.keys().copied().collect())
                    .unwrap_or_default();
                let conv = pick.map(|p| wrapping.get(p % wrapping.len().max(1)).copied());
                match conv {
                    // A pick among none: the refusal is checked below.
                    Some(None) => Vec::new(),
                    Some(Some(c)) => end_wrap_up(&mut e, now, *agent, Some(c))?,
                    None => end_wrap_up(&mut e, now, *agent, None)?,
                }
            }
            Op::Overflow { group, rule } => {
                let id = GroupId(*group);
                let mut s = e.group_settings(id).cloned().unwrap();
                s.policy.overflow = rule.map(|r| overflow(*group, r));
                match e.upsert_group(now, id, s.clone()) {
                    Ok(fx) => fx,
                    Err(err) if loops(&e, id, s_target(rule, *group)) => {
                        if !err.to_string().contains("loops") {
                            return Err(format!("a loop refused without naming it: {err}"));
                        }
                        Vec::new()
                    }
                    // Closed conversations overflow there: it must stay named.
                    Err(err)
                        if s.policy.when_closed == WhenClosed::Overflow
                            && s_target(rule, *group).is_none()
                            && err.to_string().contains("policy.when_closed") =>
                    {
                        Vec::new()
                    }
                    Err(err) => return Err(format!("overflow {rule:?}: {err}")),
                }
            }
            Op::Hours { group, rule } => {
                let id = GroupId(*group);
                let mut s = e.group_settings(id).cloned().unwrap();
                set_hours(&mut s.policy, rule.as_ref());
                e.upsert_group(now, id, s).map_err(|err| format!("hours {rule:?}: {err}"))?
            }
            Op::Aging { group, step } => {
                let id = GroupId(*group);
                let mut s = e.group_settings(id).cloned().unwrap();
                s.policy.priority_aging = step.map(Duration::from_secs);
                e.upsert_group(now, id, s).map_err(|err| format!("aging {step:?}: {err}"))?
            }
        };
        let checks = e
            .check_invariants()
            .and_then(|()| check_positions(&e))
            .and_then(|()| check_waits(&e, now))
            .and_then(|()| check_fifo(e.router()))
            .and_then(|()| check_explain(e.router(), now))
            .and_then(|()| {
                if matches!(op, Op::Advance { .. }) {
                    check_steps(&e, now)
                        .and_then(|()| check_limits(&e, now))
                        .and_then(|()| check_hours(&e, now, setup))
                } else {
                    check_closed_serve_nothing(&e, &effects)
                }
            })
            .and_then(|()| budget.observe(&effects));
        if let Err(why) = checks {
            return Err(format!("after step {step} ({op:?}): {why}"));
        }
        // Nothing is left due once advance has run.
        if let Op::Advance { .. } = op
            && e.next_deadline().is_some_and(|d| d <= now)
        {
            return Err(format!(
                "after step {step}: a deadline at {:?} is still due",
                e.next_deadline()
            ));
        }
        // An ended conversation is nowhere.
        for c in e.conversations().filter(|c| c.state == State::Ended) {
            if e.router().placement(c.id).is_some() {
                return Err(format!("ended {} still placed", c.id));
            }
        }
    }
    // A snapshot restores an engine that behaves exactly like the original from then on:
    // what the node relies on to rebuild a tenant after a crash.
    let bytes = rmp_serde::to_vec_named(&e).map_err(|err| format!("snapshot: {err}"))?;
    let mut restored: Engine =
        rmp_serde::from_slice(&bytes).map_err(|err| format!("restore: {err}"))?;
    restored.check_invariants().map_err(|why| format!("restored engine: {why}"))?;
    for (i, op) in [Op::Advance { secs: 30 }, Op::Advance { secs: 3 * 86_400 }].iter().enumerate() {
        let Op::Advance { secs } = op else { unreachable!() };
        let later = now + Duration::from_secs(*secs * (i as u64 + 1));
        if e.advance(later) != restored.advance(later) {
            return Err(format!("restored engine diverged at {later:?}"));
        }
    }
    Ok(())
}
