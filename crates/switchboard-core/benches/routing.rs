#![allow(clippy::disallowed_methods, clippy::print_stdout)] // a benchmark measures wall-clock time and prints figures

//! Routing throughput, queue-position latency and memory per waiting conversation.
//!
//! Run with `cargo bench -p switchboard-core --bench routing`. A plain `main` (no harness):
//! the figures that matter are throughput under a deep queue held at a constant depth, which
//! a per-iteration harness cannot set up, so each scenario is built once and driven in a loop.
//!
//! Every scenario is one skill group (auto-accept, least-occupied) with 100 agents of
//! capacity 10, all full, and `waiting` conversations queued behind them. One cycle routes a
//! new conversation (it queues at the tail) and ends one assigned conversation; the freed agent
//! takes the queue head. That is three routing operations (enqueue, release, assign) and leaves
//! the queue depth unchanged.

use std::collections::VecDeque;
use std::hint::black_box;
use std::ops::Range;
use std::process::Command;
use std::time::{Duration, Instant};

use switchboard_core::config::{
    AgentSettings, GroupPolicy, GroupSettings, NotRespondingPolicy, OfferMode, Strategy,
    TenantSettings,
};
use switchboard_core::router::{self, RouteRequest, Router, StatusCause};
use switchboard_core::{
    Actor, AgentId, AgentStatus, Channel, ConversationId, CustomerId, CustomerMessage, Effect,
    Engine, Event, GroupId, Timestamp,
};

const AGENTS: u64 = 100;
const CAPACITY: u32 = 10;
const GROUP: GroupId = GroupId(1);
/// Routing operations in one cycle: enqueue, release, assign.
const OPS_PER_CYCLE: u64 = 3;
/// Each measurement runs at least this long (in whole batches), but never past `MAX_CYCLES`.
const MIN_TIME: Duration = Duration::from_millis(1500);
const MAX_CYCLES: u64 = 5_000_000;
const BATCH: u64 = 1_000;
/// Untimed cycles first, so the queue's blocks and the maps are in their steady shape.
const WARMUP: u64 = 20_000;
const POSITION_QUERIES: usize = 1_000_000;
const MILLION: usize = 1_000_000;
/// A realistic epoch-millisecond start, so queue keys carry full-width timestamps.
const START_MS: u64 = 1_700_000_000_000;

const TARGET_OPS_AT_100K: f64 = 1_000_000.0;
const TARGET_POSITION_NS: f64 = 2_000.0;

/// Memory is measured in a fresh child process: RSS growth in a process whose allocator
/// already holds freed memory from earlier scenarios would undercount.
const MEMORY_CHILD: &str = "--memory-child";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == MEMORY_CHILD) {
        match args.get(i + 1).map(String::as_str) {
            Some("router") => router_memory(),
            Some("engine") => engine_memory(),
            other => panic!("{MEMORY_CHILD} takes `router` or `engine`, got {other:?}"),
        }
        return;
    }

    println!("Switchboard routing benchmark (switchboard-core, one thread)");
    println!(
        "Scenario: 1 skill group, auto-accept, least-occupied; {AGENTS} agents x capacity \
         {CAPACITY}, all full."
    );
    println!(
        "Cycle: route a new conversation (queues at the tail), end one assigned conversation \
         (its agent takes the head) = {OPS_PER_CYCLE} routing operations; queue depth stays \
         constant."
    );

    println!();
    println!("1. Router cycles (Router::route + Router::remove)");
    print_cycle_header();
    let mut deepest = None;
    for waiting in [1_000, 100_000, MILLION] {
        let (mut load, setup) = timed(|| RouterLoad::new(waiting));
        let (cycles, elapsed) = measure(|| load.cycle());
        load.check(waiting);
        let target = (waiting == 100_000).then_some(TARGET_OPS_AT_100K);
        print_cycle_row(waiting, setup, cycles, elapsed, target);
        if waiting == MILLION {
            deepest = Some(load);
        }
    }

    println!();
    println!(
        "2. Engine cycles (Engine::customer_message for a new customer + Engine::end by the agent)"
    );
    print_cycle_header();
    let mut deepest_engine = None;
    for waiting in [1_000, 100_000, MILLION] {
        let (mut load, setup) = timed(|| EngineLoad::new(waiting));
        let (cycles, elapsed) = measure(|| load.cycle());
        load.check(waiting);
        print_cycle_row(waiting, setup, cycles, elapsed, None);
        if waiting == MILLION {
            deepest_engine = Some(load);
        }
    }
    println!(
        "   Engine figures include growth: the engine keeps ended conversations (retention, 60"
    );
    println!(
        "   days by default) and every customer it has seen, so its maps rehash during the run."
    );

    println!();
    println!(
        "3. Position query at {} waiting ({} random queued conversations)",
        thousands(MILLION as u64),
        thousands(POSITION_QUERIES as u64)
    );
    let router = deepest.expect("the 1M router scenario ran");
    let ns = position_ns(router.queued(), |id| router.router.position(id));
    print_position_row("Router::position", ns);
    drop(router);
    let engine = deepest_engine.expect("the 1M engine scenario ran");
    let ns = position_ns(engine.queued(), |id| engine.engine.position(id));
    print_position_row("Engine::position", ns);
    drop(engine);

    println!();
    println!(
        "4. Memory per waiting conversation ({} waiting, RSS growth in a fresh process)",
        thousands(MILLION as u64)
    );
    for kind in ["router", "engine"] {
        let exe = std::env::current_exe().expect("the benchmark knows its own path");
        let status =
            Command::new(exe).args([MEMORY_CHILD, kind]).status().expect("the memory child starts");
        assert!(status.success(), "the {kind} memory child failed: {status}");
    }

    println!();
    println!("5. Assignment into a team with idle agents (route, then end; nothing waits)");
    println!("   {:>8}  {:>16}  {:>12}", "agents", "strategy", "ns/cycle");
    for agents in [100, 1_000, 10_000] {
        for strategy in [Strategy::LeastOccupied, Strategy::LongestIdle, Strategy::RoundRobin] {
            let ns = idle_team_ns(agents, strategy);
            println!("   {:>8}  {:>16}  {ns:>12.0}", thousands(agents), format!("{strategy:?}"));
        }
    }
}

// ----- scenarios -------------------------------------------------------------------------------

fn policy() -> GroupPolicy {
    GroupPolicy {
        strategy: Strategy::LeastOccupied,
        offer: OfferMode::AutoAccept,
        ..GroupPolicy::default()
    }
}

fn agent_index(agent: AgentId) -> usize {
    usize::try_from(agent.0).expect("agent ids are small")
}

/// A router with every agent full and `waiting` conversations queued behind them.
struct RouterLoad {
    router: Router,
    out: Vec<router::Effect>,
    /// Conversations each agent holds, oldest first; indexed by agent id.
    held: Vec<VecDeque<ConversationId>>,
    next_conv: u64,
    now: u64,
    turn: usize,
}

impl RouterLoad {
    fn new(waiting: usize) -> Self {
        let mut router = Router::new(Duration::from_secs(120), NotRespondingPolicy::default());
        let mut out = Vec::new();
        let now = Timestamp(START_MS);
        router.upsert_group(now, GROUP, policy(), &mut out);
        for a in 0..AGENTS {
            let id = AgentId(a);
            router
                .upsert_agent(now, id, CAPACITY, vec![GROUP], Default::default(), &mut out)
                .expect("valid agent");
            router
                .set_status(now, id, AgentStatus::Online, StatusCause::Agent, &mut out)
                .expect("agent exists");
        }
        out.clear();
        let mut load = RouterLoad {
            router,
            out,
            held: (0..AGENTS).map(|_| VecDeque::with_capacity(CAPACITY as usize + 1)).collect(),
            next_conv: 0,
            now: START_MS,
            turn: 0,
        };
        for _ in 0..full_load() + waiting {
            load.route_new();
        }
        load.check(waiting);
        load
    }

    fn route_new(&mut self) {
        let conv = ConversationId(self.next_conv);
        self.next_conv += 1;
        let now = Timestamp(self.now);
        let req = RouteRequest {
            group: GROUP,
            priority: 0,
            entered_at: now,
            dedicated: None,
            last_agent: None,
        };
        self.router.route(now, conv, req, &mut self.out).expect("a new conversation routes");
        self.collect();
    }

    /// Learns from the router's effects which agent now holds which conversation.
    fn collect(&mut self) {
        for e in self.out.drain(..) {
            if let router::Effect::Assigned { conversation, agent, .. } = e {
                self.held[agent_index(agent)].push_back(conversation);
            }
        }
    }

    fn cycle(&mut self) {
        self.now += 1;
        self.route_new();
        let agent = self.turn;
        self.turn = (self.turn + 1) % self.held.len();
        let conv = self.held[agent].pop_front().expect("every agent is full");
        self.router
            .remove(Timestamp(self.now), conv, &mut self.out)
            .expect("an assigned conversation is placed");
        self.collect();
    }

    /// The scenario held: every agent full, the queue at its depth.
    fn check(&self, waiting: usize) {
        assert_eq!(self.router.queue_len(GROUP), waiting, "queue depth drifted");
        assert!(self.held.iter().all(|h| h.len() == CAPACITY as usize), "an agent is not full");
    }

    /// FIFO at a constant depth: the queue holds exactly the newest `waiting` conversations.
    fn queued(&self) -> Range<u64> {
        self.next_conv - self.router.queue_len(GROUP) as u64..self.next_conv
    }
}

/// The same load through the engine: conversations opened by customer messages.
struct EngineLoad {
    engine: Engine,
    held: Vec<VecDeque<ConversationId>>,
    next_conv: u64,
    now: u64,
    turn: usize,
}

impl EngineLoad {
    fn new(waiting: usize) -> Self {
        let settings = TenantSettings { default_group: Some(GROUP), ..TenantSettings::default() };
        let mut engine = Engine::new(settings).expect("valid tenant settings");
        let now = Timestamp(START_MS);
        let group = GroupSettings { policy: policy(), ..GroupSettings::default() };
        engine.upsert_group(now, GROUP, group).expect("valid group");
        for a in 0..AGENTS {
            let id = AgentId(a);
            let agent = AgentSettings {
                capacity: CAPACITY,
                groups: vec![GROUP],
                ..AgentSettings::default()
            };
            engine.upsert_agent(now, id, agent).expect("valid agent");
            engine
                .set_agent_status(now, id, AgentStatus::Online, Actor::Agent(id))
                .expect("agent exists");
        }
        let mut load = EngineLoad {
            engine,
            held: (0..AGENTS).map(|_| VecDeque::with_capacity(CAPACITY as usize + 1)).collect(),
            next_conv: 0,
            now: START_MS,
            turn: 0,
        };
        for _ in 0..full_load() + waiting {
            load.open_new();
        }
        load.check(waiting);
        load
    }

    /// A first message from a new customer: opens a conversation, which is routed at once.
    fn open_new(&mut self) {
        let id = self.next_conv;
        self.next_conv += 1;
        let msg = CustomerMessage {
            customer: CustomerId(id),
            channel: Channel::Web,
            text: "hello, I need help with my order".to_owned(),
            new_conversation: ConversationId(id),
            group: None,
            priority: None,
        };
        let outcome =
            self.engine.customer_message(Timestamp(self.now), msg).expect("the message is valid");
        self.collect(outcome.effects);
    }

    fn collect(&mut self, effects: Vec<Effect>) {
        for e in effects {
            if let Effect::Event(Event::Assigned { conversation, agent, .. }) = e {
                self.held[agent_index(agent)].push_back(conversation);
            }
        }
    }

    fn cycle(&mut self) {
        self.now += 1;
        self.open_new();
        let agent = self.turn;
        self.turn = (self.turn + 1) % self.held.len();
        let conv = self.held[agent].pop_front().expect("every agent is full");
        let by = Actor::Agent(AgentId(agent as u64));
        let effects = self.engine.end(Timestamp(self.now), conv, by).expect("its agent ends it");
        self.collect(effects);
    }

    fn check(&self, waiting: usize) {
        assert_eq!(self.engine.router().queue_len(GROUP), waiting, "queue depth drifted");
        assert!(self.held.iter().all(|h| h.len() == CAPACITY as usize), "an agent is not full");
    }

    fn queued(&self) -> Range<u64> {
        self.next_conv - self.engine.router().queue_len(GROUP) as u64..self.next_conv
    }
}

/// Conversations it takes to fill every agent.
fn full_load() -> usize {
    (AGENTS * u64::from(CAPACITY)) as usize
}

// ----- measurements ----------------------------------------------------------------------------

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed())
}

/// Runs `step` in whole batches until `MIN_TIME` has passed (or `MAX_CYCLES` ran), after an
/// untimed warm-up; reading the clock per batch keeps its cost out of the figure.
fn measure(mut step: impl FnMut()) -> (u64, Duration) {
    for _ in 0..WARMUP {
        step();
    }
    let start = Instant::now();
    let mut cycles = 0;
    loop {
        for _ in 0..BATCH {
            step();
        }
        cycles += BATCH;
        let elapsed = start.elapsed();
        if elapsed >= MIN_TIME || cycles >= MAX_CYCLES {
            return (cycles, elapsed);
        }
    }
}

/// xorshift64: deterministic and dependency-free; quality is irrelevant for picking ids.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Average ns per position query over random queued conversations. Ids are drawn before the
/// clock starts so only the lookups are timed.
fn position_ns(queued: Range<u64>, position: impl Fn(ConversationId) -> Option<usize>) -> f64 {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let span = queued.end - queued.start;
    let ids: Vec<ConversationId> =
        (0..POSITION_QUERIES).map(|_| ConversationId(queued.start + rng.next() % span)).collect();
    let start = Instant::now();
    let mut sum = 0usize;
    for &id in &ids {
        sum += position(black_box(id)).expect("a queued conversation has a position");
    }
    let elapsed = start.elapsed();
    black_box(sum);
    // Positions are 1-based ranks; their mean sits near the middle of the queue.
    let mean = sum as f64 / ids.len() as f64;
    assert!((1.0..=span as f64).contains(&mean), "positions out of range");
    elapsed.as_nanos() as f64 / ids.len() as f64
}

/// Resident set size: `/proc/self/statm`'s second field, in 4 KiB pages.
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc is mounted");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm has a resident field");
    pages * 4096
}

fn router_memory() {
    let mut load = RouterLoad::new(0);
    let before = rss_bytes();
    for _ in 0..MILLION {
        load.route_new();
    }
    let after = rss_bytes();
    load.check(MILLION);
    let grown = after.saturating_sub(before) as f64 / MILLION as f64;
    let structural = load.router.heap_bytes() as f64 / MILLION as f64;
    println!(
        "   Router   RSS growth {:>7.0} B/conversation   Router::heap_bytes() {:>5.0} B/conversation",
        grown, structural
    );
}

fn engine_memory() {
    let mut load = EngineLoad::new(0);
    let before = rss_bytes();
    for _ in 0..MILLION {
        load.open_new();
    }
    let after = rss_bytes();
    load.check(MILLION);
    let grown = after.saturating_sub(before) as f64 / MILLION as f64;
    println!("   Engine   RSS growth {grown:>7.0} B/conversation");
}

// ----- output ----------------------------------------------------------------------------------

fn print_cycle_header() {
    println!(
        "   {:>9}  {:>8}  {:>10}  {:>11}  {:>15}  target",
        "waiting", "setup s", "cycles", "cycles/s", "routing ops/s"
    );
}

fn print_cycle_row(
    waiting: usize,
    setup: Duration,
    cycles: u64,
    elapsed: Duration,
    target_ops: Option<f64>,
) {
    let per_sec = cycles as f64 / elapsed.as_secs_f64();
    let ops = per_sec * OPS_PER_CYCLE as f64;
    let target = target_ops.map_or(String::new(), |t| {
        let verdict = if ops >= t { "ok" } else { "MISSED" };
        format!(">= {} ops/s  {verdict}", thousands(t as u64))
    });
    println!(
        "   {:>9}  {:>8.2}  {:>10}  {:>11}  {:>15}  {target}",
        thousands(waiting as u64),
        setup.as_secs_f64(),
        thousands(cycles),
        thousands(per_sec as u64),
        thousands(ops as u64),
    );
}

fn print_position_row(what: &str, ns: f64) {
    let verdict = if ns < TARGET_POSITION_NS { "ok" } else { "MISSED" };
    println!(
        "   {what:<17} {ns:>8.0} ns/query   target < {} ns  {verdict}",
        thousands(TARGET_POSITION_NS as u64)
    );
}

/// 1234567 -> "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut s = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            s.push(',');
        }
        s.push(c);
    }
    s
}

/// One route (straight to the agent the strategy picks) plus one end, with `agents` online
/// and mostly idle: the cost of choosing among many free agents.
fn idle_team_ns(agents: u64, strategy: Strategy) -> f64 {
    let mut router = Router::new(Duration::ZERO, NotRespondingPolicy::default());
    let mut out = Vec::new();
    let t0 = Timestamp(START_MS);
    router.upsert_group(t0, GROUP, GroupPolicy { strategy, ..policy() }, &mut out);
    for a in 0..agents {
        router
            .upsert_agent(t0, AgentId(a), CAPACITY, vec![GROUP], Default::default(), &mut out)
            .unwrap();
        router
            .set_status(t0, AgentId(a), AgentStatus::Online, StatusCause::Agent, &mut out)
            .unwrap();
    }
    let mut next = 0u64;
    let mut now = t0;
    let (cycles, elapsed) = measure(|| {
        next += 1;
        now = Timestamp(now.0 + 1);
        out.clear();
        let req = RouteRequest {
            group: GROUP,
            priority: 0,
            entered_at: now,
            dedicated: None,
            last_agent: None,
        };
        router.route(now, ConversationId(next), req, &mut out).unwrap();
        black_box(router.remove(now, ConversationId(next), &mut out));
    });
    elapsed.as_nanos() as f64 / cycles as f64
}
