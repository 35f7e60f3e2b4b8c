//! The contact-center scenario of `loadtest run --mode poisson|trace`, driven in real time
//! against a [`Backend`]: Switchboard over gRPC ([`grpc`]) or the PostgreSQL baseline
//! ([`postgres`]).
//!
//! Customers arrive open-loop at precomputed times ([`scenario`]): each posts a first message
//! (opening a conversation), waits up to its patience for an agent (else closes the
//! conversation: abandoned), then posts a message every `interval` until its handle time is
//! up. Agents log in and watch their event stream: they accept offers (or take auto
//! assignments), reply after `think` to the assignment and to every customer message, and end
//! the conversation one handle time after it was assigned. Every latency is measured from an
//! *intended* time — the scheduled arrival or the scheduled send of a message — so a slow
//! system cannot hide its backlog (no coordinated omission).

pub mod grpc;
pub mod postgres;
pub mod scenario;
pub mod stats;
pub mod streams;

use std::collections::HashMap;
use std::future::Future;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use self::scenario::{Arrival, Scenario};
use self::stats::{Report, Stats, Verdict};
use crate::node::{CpuProbe, CpuSample};

/// How long after the drain bound a customer message sent before it may still reach the
/// agent's stream and count as delivered (the slowest seen is well under a second).
const STRAGGLERS: Duration = Duration::from_secs(2);

/// What an agent's desktop receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Offered(String),
    Assigned(String),
    /// A customer message on a conversation the agent holds.
    Message(String, String),
}

/// A system that routes the scenario. Conversations are named by the backend.
pub trait Backend: Send + Sync + 'static {
    fn name(&self) -> String;
    /// Creates the groups and agents (offline).
    fn setup(&self, scenario: &Scenario) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Opens the agent's event stream, then signs it in (online).
    fn login(
        &self,
        agent: u32,
    ) -> impl Future<Output = anyhow::Result<mpsc::UnboundedReceiver<Event>>> + Send;
    /// A customer message; opens a conversation when the customer has none. Returns it.
    fn post(
        &self,
        customer: u64,
        group: usize,
        priority: u32,
        text: String,
    ) -> impl Future<Output = anyhow::Result<String>> + Send;
    /// The customer leaves (closes the conversation).
    fn abandon(&self, conversation: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    fn accept(
        &self,
        agent: u32,
        conversation: &str,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    fn reply(
        &self,
        agent: u32,
        conversation: &str,
        text: String,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
    fn end(
        &self,
        agent: u32,
        conversation: &str,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// One conversation as the customer and the agent both see it.
#[derive(Debug, Default)]
struct Conv {
    state: watch::Sender<ConvState>,
    /// Serialises the customer's posts and abandon against the agent's accept, assignment and
    /// end, so that what the run counts is what the system did: a late post never opens a
    /// second conversation, and a customer who leaves while the agent's accept is in flight
    /// waits for its outcome (accepted first: served; else the agent does not accept).
    gate: tokio::sync::Mutex<()>,
}

#[derive(Debug, Clone, Copy, Default)]
struct ConvState {
    /// Intended arrival time and handle time, set by the customer once its post returns.
    arrival: Option<(Instant, Duration)>,
    assigned_at: Option<Instant>,
    ended: bool,
    abandoned: bool,
}

struct Shared<B> {
    backend: B,
    stats: Stats,
    start: Instant,
    think: Duration,
    interval: Duration,
    offer: bool,
    /// The end of the arrival window: messages sent before it count towards the rate.
    window_end: Instant,
    convs: Mutex<HashMap<String, Arc<Conv>>>,
}

impl<B: Backend> Shared<B> {
    fn conv(&self, name: &str) -> Arc<Conv> {
        self.convs.lock().expect("conversations lock").entry(name.to_owned()).or_default().clone()
    }
}

/// Runs the scenario against `backend` and reports. `progress`: a live line on stderr.
/// `cpu`: where to read the node's CPU time, sampled after the setup and at the end.
pub async fn run<B: Backend>(
    backend: B,
    scenario: &Scenario,
    progress: bool,
    cpu: Option<&CpuProbe>,
) -> anyhow::Result<Report> {
    backend.setup(scenario).await?;
    let mut streams = Vec::new();
    for a in 0..scenario.agents {
        streams.push(backend.login(a).await?);
    }
    // Every run starts with the disk's backlog written, so a build before it does not stall
    // its commits (and so runs compare).
    let settled = tokio::task::spawn_blocking(crate::node::settle_disk).await.ok().flatten();
    let cpu_before = match cpu {
        Some(probe) => probe.read(None).await,
        None => None,
    };
    // Arrival times count from here; a little slack so the first ones are not already late.
    let start = Instant::now() + Duration::from_millis(200);
    let shared = Arc::new(Shared {
        backend,
        stats: Stats::default(),
        start,
        think: scenario.think,
        interval: scenario.interval,
        offer: scenario.offer,
        window_end: start + scenario.window,
        convs: Mutex::new(HashMap::new()),
    });
    let mut agents = JoinSet::new();
    for (a, events) in streams.into_iter().enumerate() {
        agents.spawn(agent(shared.clone(), a as u32, events));
    }
    let tty = std::io::stderr().is_terminal();
    let ticker = progress.then(|| {
        let shared = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let line = shared.stats.progress(shared.start.elapsed().as_secs_f64());
                if tty {
                    eprint!("\r{line}   ");
                } else {
                    eprintln!("{line}");
                }
            }
        })
    });

    let mut customers = JoinSet::new();
    let mut opened_by = Instant::now();
    for (n, a) in scenario.arrivals.iter().enumerate() {
        let due = start + a.at;
        tokio::time::sleep_until(due).await;
        customers.spawn(customer(shared.clone(), n as u64, *a, due));
        // Reap finished customers as we go, remembering when the last opening was acked.
        while let Some(done) = customers.try_join_next() {
            opened_by = opened_by.max(done.unwrap_or(start));
        }
    }
    let deadline = Instant::now() + scenario.drain;
    while let Ok(Some(done)) = tokio::time::timeout_at(deadline, customers.join_next()).await {
        opened_by = opened_by.max(done.unwrap_or(start));
    }
    customers.abort_all();
    // Let agents end what they hold and stragglers reach the streams, within the drain bound.
    // Customers still writing at the bound were cut off mid-conversation, so messages they
    // had sent just before it get a grace of their own to reach the streams: without it, one
    // in flight at the cut-off counted as never delivered (1 of 14,305 in a three-node run).
    let grace = deadline + STRAGGLERS;
    loop {
        let s = &shared.stats;
        let delivered = Stats::get(&s.messages_delivered) >= Stats::get(&s.messages_sent);
        let ended = Stats::get(&s.ended) + Stats::get(&s.abandoned) >= Stats::get(&s.opened);
        let now = Instant::now();
        if (delivered && (ended || now >= deadline)) || now >= grace {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    agents.abort_all();
    if let Some(t) = ticker {
        t.abort();
        let line = shared.stats.progress(start.elapsed().as_secs_f64());
        eprintln!("{}{line}", if tty { "\r" } else { "" });
    }
    let cpu_after = match (cpu, cpu_before) {
        (Some(probe), Some(before)) => probe.read(Some(before.source)).await,
        _ => None,
    };
    let s = &shared.stats;
    let window = scenario.window.as_secs_f64().max(1e-3);
    let phase = opened_by.saturating_duration_since(start).as_secs_f64().max(window);
    let commands = Stats::get(&s.commands);
    // How much a reading of the node grew over the run (never negative: a restarted node).
    let delta = |f: fn(&CpuSample) -> Option<f64>| {
        Some((f(cpu_after.as_ref()?)? - f(cpu_before.as_ref()?)?).max(0.0))
    };
    let node_cpu_seconds = delta(|s| Some(s.seconds));
    let mut report = Report {
        system: shared.backend.name(),
        scenario: scenario.name.clone(),
        agents: scenario.agents,
        capacity: scenario.capacity,
        window_s: window,
        arrival_phase_s: phase,
        offered_arrivals_per_s: scenario.arrivals.len() as f64 / window,
        achieved_arrivals_per_s: Stats::get(&s.opened) as f64 / phase,
        achieved_messages_per_s: Stats::get(&s.messages_in_window) as f64 / window,
        arrivals: Stats::get(&s.arrivals),
        opened: Stats::get(&s.opened),
        assigned: Stats::get(&s.assigned),
        abandoned: Stats::get(&s.abandoned),
        ended: Stats::get(&s.ended),
        messages_sent: Stats::get(&s.messages_sent),
        messages_delivered: Stats::get(&s.messages_delivered),
        replies: Stats::get(&s.replies),
        errors: Stats::get(&s.errors),
        first_error: s.first_error.lock().expect("error lock").clone(),
        message_to_agent: s.message_to_agent.summary(),
        arrival_to_assignment: s.arrival_to_assignment.summary(),
        first_response: s.first_response.summary(),
        post_ack: s.post_ack.summary(),
        offer_to_accepted: s.accept.summary(),
        commands,
        node_cpu_seconds,
        cpu_us_per_command: node_cpu_seconds
            .filter(|_| commands > 0)
            .map(|cpu| cpu * 1e6 / commands as f64),
        cpu_source: cpu_before.map(|b| b.source.label().to_owned()),
        store_commits_per_command: delta(|s| s.store_commits)
            .filter(|_| commands > 0)
            .map(|c| c / commands as f64),
        store_batches_per_command: delta(|s| s.store_batches)
            .filter(|_| commands > 0)
            .map(|b| b / commands as f64),
        // None where no mesh actor wrote (a tenant actor's load).
        actor_writes_per_command: match [
            delta(|s| s.actor_writes[0]),
            delta(|s| s.actor_writes[1]),
            delta(|s| s.actor_writes[2]),
        ] {
            [Some(r), Some(c), Some(a)] if commands > 0 && r + c + a > 0.0 => {
                Some([r, c, a].map(|w| w / commands as f64))
            }
            _ => None,
        },
        wal_pages_per_commit: {
            let commits = delta(|s| s.store_commits).filter(|c| *c > 0.0);
            delta(|s| s.wal_pages).zip(commits).map(|(p, c)| p / c)
        },
        store_threads_us_per_command: delta(|s| s.store_threads)
            .filter(|_| commands > 0)
            .map(|t| t * 1e6 / commands as f64),
        host_steal_seconds: delta(|s| s.host_steal),
        settled,
        verdict: Verdict::default(),
    };
    report.verdict = report.judge(scenario.hold_p99);
    Ok(report)
}

/// One customer: returns when its opening post was acknowledged.
async fn customer<B: Backend>(shared: Arc<Shared<B>>, n: u64, a: Arrival, due: Instant) -> Instant {
    let stats = &shared.stats;
    stats.count(&stats.arrivals);
    let name = match shared.backend.post(n, a.group, a.priority, "hello".into()).await {
        Ok(name) => name,
        Err(e) => {
            stats.error("open", &e);
            return Instant::now();
        }
    };
    let opened = Instant::now();
    stats.post_ack.record(opened.saturating_duration_since(due));
    stats.count(&stats.opened);
    stats.count(&stats.commands);
    let conv = shared.conv(&name);
    conv.state.send_modify(|s| s.arrival = Some((due, a.handle)));
    let mut rx = conv.state.subscribe();
    let assigned = rx.wait_for(|s| s.assigned_at.is_some());
    let assigned_at = match a.patience {
        Some(p) => tokio::time::timeout_at(due + p, assigned)
            .await
            .ok()
            .and_then(Result::ok)
            .and_then(|s| s.assigned_at),
        None => assigned.await.ok().and_then(|s| s.assigned_at),
    };
    let assigned_at = match assigned_at {
        Some(at) => at,
        None => {
            let _gate = conv.gate.lock().await;
            let raced = conv.state.borrow().assigned_at;
            match raced {
                Some(at) => at, // assigned while we were deciding to leave
                None => {
                    conv.state.send_modify(|s| s.abandoned = true);
                    stats.count(&stats.abandoned);
                    match shared.backend.abandon(&name).await {
                        Ok(()) => stats.count(&stats.commands),
                        Err(e) => stats.error("abandon", &e),
                    }
                    return opened;
                }
            }
        }
    };
    // Messages every `interval` while the conversation lasts, on a fixed schedule.
    let mut k = 1;
    loop {
        let due = assigned_at + shared.interval * k;
        if due >= assigned_at + a.handle {
            break;
        }
        tokio::time::sleep_until(due).await;
        let _gate = conv.gate.lock().await;
        if conv.state.borrow().ended {
            break;
        }
        let text = format!("m:{}", due.saturating_duration_since(shared.start).as_micros());
        match shared.backend.post(n, a.group, a.priority, text).await {
            Ok(_) => {
                stats.post_ack.record(due.elapsed());
                stats.count(&stats.messages_sent);
                stats.count(&stats.commands);
                if due < shared.window_end {
                    stats.count(&stats.messages_in_window);
                }
            }
            Err(e) => stats.error("post", &e),
        }
        k += 1;
    }
    opened
}

/// One agent: reads its stream until the run ends.
async fn agent<B: Backend>(
    shared: Arc<Shared<B>>,
    agent: u32,
    mut events: mpsc::UnboundedReceiver<Event>,
) {
    let mut tasks = JoinSet::new();
    while let Some(event) = events.recv().await {
        while tasks.try_join_next().is_some() {}
        let now = Instant::now();
        match event {
            Event::Message(conv, text) => {
                let Some(sent) = text.strip_prefix("m:").and_then(|t| t.parse::<u64>().ok()) else {
                    continue; // the opening message, delivered with the assignment
                };
                let stats = &shared.stats;
                let due = shared.start + Duration::from_micros(sent);
                stats.message_to_agent.record(now.saturating_duration_since(due));
                stats.count(&stats.messages_delivered);
                tasks.spawn(reply(shared.clone(), agent, conv, None));
            }
            Event::Offered(conv) if shared.offer => {
                tasks.spawn(accept(shared.clone(), agent, conv, now));
            }
            Event::Assigned(conv) if !shared.offer => {
                let shared = shared.clone();
                tasks.spawn(async move {
                    let c = shared.conv(&conv);
                    let gate = c.gate.lock().await;
                    if c.state.borrow().abandoned {
                        return;
                    }
                    assigned(shared, agent, conv, now, gate).await;
                });
            }
            Event::Offered(_) | Event::Assigned(_) => {}
        }
    }
}

/// Accepts an offer, holding the conversation's gate across the call: a customer whose
/// patience runs out meanwhile waits for the outcome. Without that, a customer could give up
/// (and close the conversation, counted abandoned) while the system had already assigned it,
/// and the accept that the system took was counted nowhere.
async fn accept<B: Backend>(shared: Arc<Shared<B>>, agent: u32, name: String, offered: Instant) {
    let conv = shared.conv(&name);
    let gate = conv.gate.lock().await;
    if conv.state.borrow().abandoned {
        return; // the customer left before the offer came: nothing to accept
    }
    match shared.backend.accept(agent, &name).await {
        Ok(()) => {
            let now = Instant::now();
            shared.stats.accept.record(now.saturating_duration_since(offered));
            shared.stats.count(&shared.stats.commands);
            assigned(shared.clone(), agent, name, now, gate).await;
        }
        Err(e) => shared.stats.error("accept", &e),
    }
}

/// The agent holds `name` from `at` (the caller holds the conversation's gate and saw it not
/// abandoned): first reply after the think time, end after the handle time.
async fn assigned<B: Backend>(
    shared: Arc<Shared<B>>,
    agent: u32,
    name: String,
    at: Instant,
    gate: tokio::sync::MutexGuard<'_, ()>,
) {
    let stats = &shared.stats;
    let conv = shared.conv(&name);
    conv.state.send_modify(|s| s.assigned_at = Some(at));
    drop(gate);
    stats.count(&stats.assigned);
    // The customer registers the conversation as soon as its post returns.
    let mut rx = conv.state.subscribe();
    let registered =
        tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| s.arrival.is_some()));
    let registered = registered.await.ok().and_then(Result::ok).and_then(|s| s.arrival);
    let Some((arrival, handle)) = registered else {
        stats.error("assigned", &anyhow::anyhow!("{name} was never registered by its customer"));
        return;
    };
    stats.arrival_to_assignment.record(at.saturating_duration_since(arrival));
    reply(shared.clone(), agent, name.clone(), Some(arrival)).await;
    tokio::time::sleep_until(at + handle).await;
    let _gate = conv.gate.lock().await;
    if conv.state.borrow().abandoned {
        return;
    }
    conv.state.send_modify(|s| s.ended = true);
    match shared.backend.end(agent, &name).await {
        Ok(()) => {
            stats.count(&stats.ended);
            stats.count(&stats.commands);
        }
        Err(e) => stats.error("end", &e),
    }
}

/// A reply after the think time, unless the conversation has ended. With `arrival`, this is
/// the first response.
async fn reply<B: Backend>(
    shared: Arc<Shared<B>>,
    agent: u32,
    name: String,
    arrival: Option<Instant>,
) {
    tokio::time::sleep(shared.think).await;
    let conv = shared.conv(&name);
    let _gate = conv.gate.lock().await;
    let s = *conv.state.borrow();
    if s.ended || s.abandoned {
        return;
    }
    let stats = &shared.stats;
    match shared.backend.reply(agent, &name, "r".into()).await {
        Ok(()) => {
            stats.count(&stats.replies);
            stats.count(&stats.commands);
            if let Some(arrival) = arrival {
                stats.first_response.record(arrival.elapsed());
            }
        }
        Err(e) => stats.error("reply", &e),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// One agent, one customer: the opening post offers the conversation to the agent.
    #[derive(Default)]
    struct Fake {
        agent: Mutex<Option<mpsc::UnboundedSender<Event>>>,
        /// Signalled when the agent's accept starts.
        accepting: tokio::sync::Notify,
        accepts: AtomicU32,
        closes: AtomicU32,
    }

    impl Fake {
        fn offer(&self) {
            let tx = self.agent.lock().unwrap().clone().unwrap();
            tx.send(Event::Offered("conv".into())).unwrap();
        }
    }

    impl Backend for Arc<Fake> {
        fn name(&self) -> String {
            "fake".into()
        }
        async fn setup(&self, _: &Scenario) -> anyhow::Result<()> {
            Ok(())
        }
        async fn login(&self, _: u32) -> anyhow::Result<mpsc::UnboundedReceiver<Event>> {
            let (tx, rx) = mpsc::unbounded_channel();
            *self.agent.lock().unwrap() = Some(tx);
            Ok(rx)
        }
        async fn post(&self, _: u64, _: usize, _: u32, text: String) -> anyhow::Result<String> {
            if text == "hello" {
                self.offer();
                // The opening post returns only once the accept is in flight, so the
                // customer's (tiny) patience runs out while it is.
                self.accepting.notified().await;
            }
            Ok("conv".into())
        }
        async fn abandon(&self, _: &str) -> anyhow::Result<()> {
            self.closes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn accept(&self, _: u32, _: &str) -> anyhow::Result<()> {
            self.accepts.fetch_add(1, Ordering::SeqCst);
            self.accepting.notify_one();
            // Slow enough that the customer, without the gate, would leave meanwhile.
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self.closes.load(Ordering::SeqCst) > 0 {
                anyhow::bail!("closed before the accept");
            }
            Ok(())
        }
        async fn reply(&self, _: u32, _: &str, _: String) -> anyhow::Result<()> {
            Ok(())
        }
        async fn end(&self, _: u32, _: &str) -> anyhow::Result<()> {
            Ok(())
        }
    }

    fn one_customer() -> Scenario {
        Scenario {
            name: "one".into(),
            groups: vec!["g".into()],
            arrivals: vec![Arrival {
                at: Duration::ZERO,
                group: 0,
                priority: 0,
                patience: Some(Duration::from_micros(1)),
                handle: Duration::from_millis(1),
            }],
            agents: 1,
            capacity: 1,
            think: Duration::from_millis(1),
            interval: Duration::from_secs(1),
            offer: true,
            window: Duration::from_millis(1),
            drain: Duration::from_secs(30),
            hold_p99: Duration::from_millis(50),
        }
    }

    /// The stray of issue 11: the customer gave up while the agent's accept was in flight,
    /// closed a conversation the system had assigned, and was counted abandoned, the accept
    /// nowhere. Now the customer waits for the accept's outcome and is served.
    #[tokio::test]
    async fn a_customer_leaving_during_the_accept_is_served_if_the_accept_won() {
        let fake = Arc::new(Fake::default());
        let report = run(fake.clone(), &one_customer(), false, None).await.unwrap();
        assert_eq!(fake.accepts.load(Ordering::SeqCst), 1);
        assert_eq!(fake.closes.load(Ordering::SeqCst), 0, "an assigned customer never leaves");
        assert_eq!((report.assigned, report.abandoned, report.errors), (1, 0, 0), "{report:?}");
    }
}
