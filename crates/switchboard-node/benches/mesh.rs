//! What the actor mesh costs on one node (issue 12's closing figures, before the public API
//! runs on it): a tenant's mesh over a real SQLite store, in-process transport. It prints:
//!
//! - opening N conversations (each one conversation-actor step, a route to the router, the
//!   router's decision, the `Placed` back): µs per opening, and the router's row size after;
//! - M customer messages to assigned conversations (conversation actors only): µs each, and
//!   how many envelopes reached the router meanwhile (the share of commands that touch it);
//! - memory per open conversation: the process's RSS growth over the N openings, per
//!   conversation, and the bytes of a conversation actor's row;
//! - three nodes over loopback gRPC (the conversations on A, the agent's actor on B, the
//!   router on C, agent actors on): K customer messages to assigned conversations, each
//!   timed from the call on A to its entry published by B's hub (durable on B's desk stream):
//!   p50, p99, max and the rate.
//!
//! `cargo bench -p switchboard-node --bench mesh`; `MESH_N` (default 2,000), `MESH_M`
//! (default 20,000) and `MESH_K` (default 2,000) change the sizes. Figures only, no
//! assertions on time.

#![allow(clippy::print_stdout, clippy::disallowed_methods)] // a benchmark: prints, reads the clock

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchboard_core::mesh::{
    AgentEnvelope, Body, Envelope, FromAgent, ToAgent, ToConversation, ToRouter,
};
use switchboard_core::router::StatusCause;
use switchboard_core::{Actor, AgentId, AgentStatus, CustomerId, State};
use switchboard_node::actors::transport::InProcess;
use switchboard_node::actors::{CONVERSATION, Mesh, MeshArgs, MeshOptions, ROUTER, Transport};
use switchboard_store::{SqliteOptions, SqliteStore, Store};
use tokio::task::JoinSet;

use self::support::{TENANT, message};

/// The in-process transport, counting what reaches the router: messages and
/// acknowledgements apart.
#[derive(Default)]
struct Counting {
    inner: InProcess,
    router_messages: AtomicU64,
    router_acks: AtomicU64,
}

impl Transport for Counting {
    fn to_router(&self, tenant: &str, envelope: Envelope<ToRouter>) {
        let count = match envelope.body {
            Body::Message { .. } => &self.router_messages,
            Body::Ack { .. } => &self.router_acks,
        };
        count.fetch_add(1, Ordering::Relaxed);
        self.inner.to_router(tenant, envelope);
    }

    fn to_conversation(&self, tenant: &str, envelope: Envelope<ToConversation>) {
        self.inner.to_conversation(tenant, envelope);
    }

    fn to_agent(&self, tenant: &str, envelope: AgentEnvelope<ToAgent>) {
        self.inner.to_agent(tenant, envelope);
    }

    fn to_router_from_agent(&self, tenant: &str, envelope: AgentEnvelope<FromAgent>) {
        self.inner.to_router_from_agent(tenant, envelope);
    }
}

/// Conversations opened or messages sent at once.
const IN_FLIGHT: usize = 64;

fn size(var: &str, default: u64) -> u64 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The process's resident set, KiB (Linux).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time the process has used (user + system), from /proc (Linux; clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after its closing ')'.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Runs `f(i)` for every `i` in `0..n`, `IN_FLIGHT` at a time.
async fn each<F, Fut>(n: u64, f: F)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = JoinSet::new();
    for i in 0..n {
        if set.len() >= IN_FLIGHT {
            set.join_next().await.unwrap().unwrap();
        }
        set.spawn(f(i));
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

/// Conversations the router has assigned, over agents 1..=50.
async fn assigned(mesh: &Mesh) -> usize {
    let count = |side: &switchboard_core::mesh::RouterSide| {
        let r = side.router();
        (1..=50).filter_map(|a| r.agent(AgentId(a))).map(|a| a.assigned.len()).sum()
    };
    mesh.router().read(count).await.unwrap()
}

fn main() {
    let n = size("MESH_N", 2_000);
    let m = size("MESH_M", 20_000);
    let k = size("MESH_K", 2_000);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(run(n, m));
    runtime.block_on(three_nodes(k));
}

async fn run(n: u64, m: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    // Room for every conversation: 50 agents sharing N.
    let agents: Vec<(AgentId, u32)> = (1..=50).map(|a| (AgentId(a), (n / 50 + 1) as u32)).collect();
    let (engine, config) = support::tenant(&agents);
    let transport = Arc::new(Counting::default());
    let mesh = Mesh::new(MeshArgs {
        tenant: TENANT.into(),
        store: store.clone(),
        fence: Default::default(),
        config,
        router: engine.router().clone(),
        transport: transport.clone(),
        // The node's defaults (resend after 1 s), never idle during the run.
        options: MeshOptions { idle: Duration::from_secs(3600), ..MeshOptions::default() },
        heard: None,
        hub: None,
    });
    transport.inner.attach(&mesh);
    for (agent, _) in &agents {
        mesh.router().set_status(*agent, AgentStatus::Online, StatusCause::Agent).await.unwrap();
    }

    let rss_before = rss_kib();
    let started = Instant::now();
    let opening = mesh.clone();
    each(n, move |i| {
        let mesh = opening.clone();
        async move {
            let customer = 1_000 + i;
            let outcome = mesh
                .conversation(CustomerId(customer))
                .customer_message(message(customer, customer, "hello"))
                .await
                .unwrap();
            assert!(outcome.opened);
        }
    })
    .await;
    while assigned(&mesh).await < n as usize {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Every conversation has heard its assignment.
    for i in 0..n {
        let customer = CustomerId(1_000 + i);
        loop {
            let state = mesh
                .conversation(customer)
                .read(|side| side.conversation().map(|c| c.state))
                .await
                .unwrap();
            if state == Some(State::Assigned) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let opened = started.elapsed();
    let rss_after = rss_kib();
    let router_row =
        store.actor(TENANT, ROUTER, "").unwrap().and_then(|r| r.body).map_or(0, |b| b.len());
    let conversation_row = store
        .actor(TENANT, CONVERSATION, "1000")
        .unwrap()
        .and_then(|r| r.body)
        .map_or(0, |b| b.len());
    println!(
        "opened {n} conversations (each routed and assigned) in {:.2} s: {:.0} µs each, {:.0}/s",
        opened.as_secs_f64(),
        opened.as_micros() as f64 / n as f64,
        n as f64 / opened.as_secs_f64()
    );
    println!(
        "memory: RSS {} → {} KiB, {:.2} KiB per open conversation; live actors {:?}",
        rss_before,
        rss_after,
        (rss_after.saturating_sub(rss_before)) as f64 / n as f64,
        mesh.live()
    );
    println!(
        "rows: router {router_row} B with {n} assigned; one conversation actor {conversation_row} B"
    );

    // Nothing happens for a few seconds: what do N open conversations cost at rest?
    let (cpu_before, rest) = (cpu_time(), Duration::from_secs(5));
    tokio::time::sleep(rest).await;
    let idle_cpu = cpu_time().saturating_sub(cpu_before);
    println!(
        "at rest with {n} open conversations: {:.1} ms of CPU per second \
         ({:.2} µs per conversation per second)",
        idle_cpu.as_secs_f64() * 1000.0 / rest.as_secs_f64(),
        idle_cpu.as_secs_f64() * 1e6 / rest.as_secs_f64() / n as f64
    );
    let routed = |t: &Counting| {
        (t.router_messages.load(Ordering::Relaxed), t.router_acks.load(Ordering::Relaxed))
    };
    let opening = routed(&transport);
    println!("to the router while opening: {opening:?} (messages, acknowledgements)");
    let before = routed(&transport);
    let started = Instant::now();
    let sending = mesh.clone();
    each(m, move |i| {
        let mesh = sending.clone();
        async move {
            let customer = 1_000 + i % n;
            let msg = message(customer, customer, "one more thing");
            mesh.conversation(CustomerId(customer)).customer_message(msg).await.unwrap();
        }
    })
    .await;
    let sent = started.elapsed();
    let after = routed(&transport);
    let (messages, acks) = (after.0 - before.0, after.1 - before.1);
    println!(
        "{m} customer messages to assigned conversations in {:.2} s: {:.0} µs each, {:.0}/s; \
         to the router meanwhile: {messages} messages, {acks} acknowledgements",
        sent.as_secs_f64(),
        sent.as_micros() as f64 / m as f64,
        m as f64 / sent.as_secs_f64()
    );

    // loadtest's contact-center scenario per conversation (defaults: handle 10 s, a customer
    // message every second, each answered by the agent): open, ten customer messages, ten
    // agent replies, the agent's end. The openings were counted above; here the rest, for
    // every open conversation, and the share of all these commands the router took part in.
    let before = routed(&transport);
    let ending = mesh.clone();
    each(n, move |i| {
        let mesh = ending.clone();
        async move {
            let customer = 1_000 + i;
            let conversation = mesh.conversation(CustomerId(customer));
            let (id, agent) = conversation
                .read(|side| side.conversation().map(|c| (c.id, c.agent)))
                .await
                .unwrap()
                .unwrap();
            let agent = agent.unwrap();
            for _ in 0..10 {
                let msg = message(customer, customer, "and another thing");
                conversation.customer_message(msg).await.unwrap();
                conversation.agent_message(id, agent, "noted", None).await.unwrap();
            }
            conversation.end(id, Actor::Agent(agent)).await.unwrap();
        }
    })
    .await;
    let after = routed(&transport);
    let commands = n * (1 + 20 + 1);
    let to_router = opening.0 + (after.0 - before.0);
    println!(
        "contact-center mix ({n} conversations: open, 10 customer messages, 10 agent replies, \
         end = {commands} commands): {to_router} messages to the router, {:.1}% of the commands",
        to_router as f64 * 100.0 / commands as f64
    );
    mesh.stop_all().await;
}

/// Conversations (one agent holding them all) whose customer messages run at once in the
/// three-node case: one message in flight per conversation.
const DESK_IN_FLIGHT: usize = 4;

/// The three-node case: customer message on A → the agent's desk stream on B.
async fn three_nodes(k: u64) {
    use switchboard_core::ConversationId;
    use switchboard_proto::internal::v1::stream_item::Item;
    use switchboard_proto::v1::agent_event::Event;

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    let agent = AgentId(1);
    let tenant = support::tenant(&[(agent, DESK_IN_FLIGHT as u32)]);
    // The node's defaults (resend after 1 s), never idle during the run.
    let timings = MeshOptions {
        agent_actors: true,
        idle: Duration::from_secs(3600),
        ..MeshOptions::default()
    };
    let [a, b, c] = support::nodes::three_apart(agent, store.clone(), tenant, timings).await;
    let customers = support::nodes::customers_on_a(agent, DESK_IN_FLIGHT);
    let online = b.mesh.agent(agent).set_status(AgentStatus::Online, StatusCause::Agent).await;
    b.mesh.agent(agent).decision(online.unwrap()).await.unwrap();
    for customer in &customers {
        let msg = message(*customer, *customer, "hello");
        a.mesh.conversation(CustomerId(*customer)).customer_message(msg).await.unwrap();
    }
    // Every conversation assigned, and its assignment on B's desk.
    for customer in &customers {
        loop {
            let side = a.mesh.conversation(CustomerId(*customer));
            let state = side.read(|s| s.conversation().map(|c| c.state)).await.unwrap();
            if state == Some(State::Assigned) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let desk = b.mesh.agent(agent);
    while desk.read(|s| s.assigned().len()).await.unwrap() < customers.len() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // B's hub: each customer message's entry as it is published (after its durable write).
    // Closed loop: a conversation's next message goes once its last one is on B's desk, so
    // DESK_IN_FLIGHT messages are in flight end to end.
    let arrived = Arc::new(std::sync::Mutex::new(vec![None::<Instant>; k as usize]));
    let (count, _) = tokio::sync::watch::channel(0_u64);
    let mut live = b.hub.subscribe(TENANT, "agent/1");
    let (stamp, counted) = (arrived.clone(), count.clone());
    let _arrivals = support::nodes::Task(tokio::spawn(async move {
        while let Ok(item) = live.recv().await {
            if let Some(Item::AgentEvent(e)) = &item.1.item
                && let Some(Event::CustomerMessage(m)) = &e.event
                && let Some(i) = m.text.strip_prefix('m').and_then(|i| i.parse::<usize>().ok())
            {
                stamp.lock().unwrap()[i] = Some(Instant::now());
                counted.send_modify(|n| *n += 1);
            }
        }
    }));
    let started = Instant::now();
    let mut senders = JoinSet::new();
    for (lane, customer) in customers.iter().copied().enumerate() {
        let (mesh, arrived, mut count) = (a.mesh.clone(), arrived.clone(), count.subscribe());
        senders.spawn(async move {
            let mut micros = Vec::new();
            for i in (lane..k as usize).step_by(DESK_IN_FLIGHT) {
                let msg = message(customer, customer, &format!("m{i}"));
                let sent = Instant::now();
                let outcome = mesh.conversation(CustomerId(customer)).customer_message(msg).await;
                assert_eq!(outcome.unwrap().conversation, ConversationId(customer));
                let on_desk = count.wait_for(|_| arrived.lock().unwrap()[i].is_some());
                tokio::time::timeout(Duration::from_secs(120), on_desk)
                    .await
                    .expect("every message reaches B's desk")
                    .unwrap();
                let at = arrived.lock().unwrap()[i].unwrap();
                micros.push(at.duration_since(sent).as_micros());
            }
            micros
        });
    }
    let mut micros = Vec::new();
    while let Some(lane) = senders.join_next().await {
        micros.extend(lane.unwrap());
    }
    let elapsed = started.elapsed();
    micros.sort_unstable();
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize] as f64 / 1000.0;
    println!(
        "three nodes (conversations on A, agent on B, router on C; loopback gRPC): {k} customer \
         messages, {DESK_IN_FLIGHT} in flight end to end, call on A → entry on B's desk: p50 \
         {:.2} ms, p99 {:.2} ms, max {:.2} ms; {:.0} messages/s; undelivered envelopes A {}, \
         B {}",
        at(0.5),
        at(0.99),
        at(1.0),
        k as f64 / elapsed.as_secs_f64(),
        a.transport.inner.undelivered(),
        b.transport.inner.undelivered(),
    );
    let entries = store.read_stream(TENANT, "agent/1", 0, 100_000).unwrap().len();
    let first = ConversationId(customers[0]);
    let routed = c.mesh.router().read(move |s| s.applied(first)).await.unwrap();
    println!(
        "B's desk stream: {entries} entries (sign-in, {} assignments, {k} messages); router \
         messages applied from one conversation's link: {routed}",
        customers.len()
    );
    for node in [&a, &b, &c] {
        node.mesh.stop_all().await;
    }
}
