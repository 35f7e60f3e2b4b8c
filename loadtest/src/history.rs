//! `loadtest history`: how one tenant's cost on a node grows with its history.
//!
//! The command starts a `switchboard serve` of its own on a fresh data directory and drives
//! N conversations through one tenant, as fast as the node accepts them with bounded
//! concurrency: a customer posts (opening a conversation), an auto-accept agent gets it at once
//! (read from the answer), replies once and ends it. At each checkpoint it stops, lets the node
//! go idle and measures: resident memory, the store on disk and the tenant's snapshot, CPU time
//! per conversation and per command, throughput, and how long a restart on the same data takes
//! until the tenant answers again. A bounded-state node keeps memory and restart time flat
//! however long its history; the summary says whether this one does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::{OpenFlags, OptionalExtension};
use serde::Serialize;
use switchboard_proto::v1::{
    self as pb, admin_service_client::AdminServiceClient, agent_service_client::AgentServiceClient,
    channel_service_client::ChannelServiceClient,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::node::{self, NodeProcess, NodeSpec};

/// The one tenant of the run (the data directory is fresh).
const TENANT: &str = "history";
const GROUP: &str = "main";
/// The goals the verdict checks.
const RSS_GROWTH_GOAL: f64 = 0.25;
const RESTART_GOAL_S: f64 = 2.0;
/// Customers of the conversation each restart makes to see the tenant route again, past any
/// the drive numbers.
const PROBE_CUSTOMER: u64 = 1 << 60;
/// A node may take this long to start or to load its tenants: a bound, not a goal.
const START_PATIENCE: Duration = Duration::from_secs(600);
/// The run stops after this many failed calls.
const MAX_ERRORS: u64 = 100;

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// The `switchboard` binary; default: `switchboard` beside this binary.
    #[arg(long)]
    pub node_bin: Option<PathBuf>,
    /// Conversations ended at which to stop and measure (comma list).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    pub checkpoints: Vec<u64>,
    /// Conversations in all: the last checkpoint (checkpoints above it are dropped; it is
    /// added if missing). Default: the last of `--checkpoints`.
    #[arg(long)]
    pub conversations: Option<u64>,
    /// Conversations in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Reuse this many customers round-robin (customer n mod K); default: a new customer per
    /// conversation, as in a real center.
    #[arg(long)]
    pub customers: Option<u64>,
    /// Agents (auto-accept, online, all in the tenant's default group).
    #[arg(long, default_value_t = 8)]
    pub agents: u32,
    /// Conversations an agent may hold at once (at most 1000).
    #[arg(long, default_value_t = 1000)]
    pub capacity: u32,
    /// Restart the node (SIGTERM, start again on the same data) at every checkpoint and time
    /// it; `--restart-at-checkpoints false` measures growth in one process.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub restart_at_checkpoints: bool,
    /// Restart the node this many conversations before each checkpoint past the first, so
    /// every checkpoint is measured in a process that drove the same number since it started
    /// (its warm-up held equal; only the history behind it grows). CPU and throughput then
    /// cover those conversations. Default: off, each process runs from the checkpoint before.
    #[arg(long)]
    pub warm: Option<u64>,
    /// The node's `store.snapshot_every` (commands between snapshots); default: the node's
    /// (10000).
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// gRPC connections to the node.
    #[arg(long, default_value_t = 2)]
    pub connections: usize,
    /// Keep the temporary directory (data and node log) and print its path.
    #[arg(long)]
    pub keep_data: bool,
    /// Write the report as JSON to this file (`-`: stdout, after the text).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// Everything measured at one checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    /// Conversations ended so far.
    pub conversations: u64,
    /// `VmRSS` of the node after it went idle.
    pub rss_bytes: u64,
    /// (RSS − RSS at the first checkpoint) ÷ conversations since; `None` at the first.
    pub rss_delta_per_conversation_bytes: Option<f64>,
    /// Every file of the data directory (database, `-wal`, `-shm`).
    pub store_bytes: u64,
    /// The tenant's latest snapshot in the store.
    pub snapshot_bytes: Option<u64>,
    /// `process_resident_memory_bytes` of the node's `/metrics`, when exported.
    pub metrics_rss_bytes: Option<f64>,
    /// `process_cpu_seconds_total` of the node's `/metrics`, when exported.
    pub metrics_cpu_seconds: Option<f64>,
    /// Node CPU time (utime + stime) since the previous checkpoint (or since the setup),
    /// including the idle wait, excluding restarts.
    pub cpu_seconds: f64,
    pub cpu_us_per_conversation: f64,
    /// Per mutating call of the load generator (post, reply, end; a close when unassigned).
    pub cpu_us_per_command: f64,
    /// Conversations since the previous checkpoint ÷ the time it took to drive them.
    pub conversations_per_s: f64,
    pub drive_seconds: f64,
    /// Waited for the node to go idle before measuring.
    pub settle_seconds: f64,
    /// Failed calls, and conversations not assigned on their first message, so far.
    pub errors: u64,
    pub unassigned: u64,
    pub restart: Option<Restart>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    /// SIGTERM until the process exited (the node snapshots every tenant on the way out).
    pub shutdown_seconds: f64,
    pub clean_exit: bool,
    /// The snapshot the shutdown left.
    pub snapshot_bytes: Option<u64>,
    /// Spawn until a read of the tenant (GetTenant) succeeded.
    pub restart_seconds: f64,
    /// Spawn until the node printed its addresses.
    pub listening_seconds: f64,
    pub rss_after_bytes: Option<u64>,
    /// Spawn until a new customer's first message was answered assigned, with the agents
    /// online again: the tenant routes again (its router activated, what it had stored read
    /// back). `None`: that conversation was not assigned.
    pub routing_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// RSS at the last checkpoint ÷ RSS at the first − 1.
    pub rss_growth: Option<f64>,
    /// `rss_growth` within 25%.
    pub rss_held: Option<bool>,
    pub slowest_restart_seconds: Option<f64>,
    /// Every restart under 2 s.
    pub restart_held: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HistoryReport {
    pub node_bin: String,
    pub conversations: u64,
    pub concurrency: usize,
    pub customers: Option<u64>,
    pub agents: u32,
    pub capacity: u32,
    pub snapshot_every: Option<u64>,
    pub restart_at_checkpoints: bool,
    pub warm: Option<u64>,
    pub checkpoints: Vec<Checkpoint>,
    pub verdict: Verdict,
}

/// Counters shared by the workers of a run.
#[derive(Debug, Default)]
struct Counters {
    ended: AtomicU64,
    commands: AtomicU64,
    unassigned: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    fn error(&self, what: &str, e: &anyhow::Error) {
        let n = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        let mut first = self.first_error.lock().expect("error lock");
        if first.is_none() {
            *first = Some(format!("{what}: {e:#}"));
        }
        if n >= MAX_ERRORS {
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// The node and the load generator's view of it; replaced on restart.
struct Session {
    spec: NodeSpec,
    node: NodeProcess,
    channels: Vec<Channel>,
    connections: usize,
    agents: Vec<String>,
    /// Each agent's desktop stream: the task, and the last cursor it read (resumed from after
    /// a restart).
    streams: Vec<JoinHandle<()>>,
    cursors: Vec<Arc<AtomicU64>>,
    next_request: Arc<AtomicU64>,
    /// Restarts so far: each one's probe conversation has a customer of its own.
    restarts: u64,
}

impl Session {
    fn rid(&self) -> String {
        format!("h-{}", self.next_request.fetch_add(1, Ordering::Relaxed))
    }

    async fn connect(grpc: &str, connections: usize) -> anyhow::Result<Vec<Channel>> {
        let mut channels = Vec::new();
        for _ in 0..connections.max(1) {
            let c = Channel::from_shared(grpc.to_owned())?
                .connect()
                .await
                .with_context(|| format!("connect to {grpc}"))?;
            channels.push(c);
        }
        Ok(channels)
    }

    /// The tenant, its default group (auto-accept) and its agents, online.
    async fn setup(&self, capacity: u32) -> anyhow::Result<()> {
        let mut admin = AdminServiceClient::new(self.channels[0].clone());
        admin
            .create_tenant(pb::CreateTenantRequest {
                tenant_id: TENANT.into(),
                display_name: "history benchmark".into(),
                settings: None,
                request_id: self.rid(),
                routing: pb::TenantRouting::Unspecified.into(),
            })
            .await
            .context("create tenant")?;
        admin
            .put_group(pb::PutGroupRequest {
                name: format!("tenants/{TENANT}/groups/{GROUP}"),
                display_name: GROUP.into(),
                policy: Some(pb::RoutingPolicy {
                    strategy: pb::Strategy::LeastOccupied as i32,
                    offer_mode: pb::OfferMode::AutoAccept as i32,
                    ..Default::default()
                }),
                replies: None,
                request_id: self.rid(),
                update_mask: None,
            })
            .await
            .context("put group")?;
        // Default settings otherwise: no idle or no-response auto-end, no alerts; ended
        // conversations are kept for the default retention (60 days), i.e. for the whole run.
        admin
            .update_tenant(pb::UpdateTenantRequest {
                name: format!("tenants/{TENANT}"),
                settings: Some(pb::TenantSettings {
                    default_group: format!("tenants/{TENANT}/groups/{GROUP}"),
                    ..Default::default()
                }),
                display_name: String::new(),
                request_id: self.rid(),
                update_mask: None,
            })
            .await
            .context("set the default group")?;
        for (a, name) in self.agents.iter().enumerate() {
            admin
                .put_agent(pb::PutAgentRequest {
                    name: name.clone(),
                    nickname: format!("agent {a}"),
                    capacity,
                    groups: vec![format!("tenants/{TENANT}/groups/{GROUP}")],
                    replies: None,
                    supervisor: false,
                    request_id: self.rid(),
                    update_mask: None,
                    proficiencies: Vec::new(),
                })
                .await
                .context("put agent")?;
        }
        self.online().await
    }

    /// Every agent says it is online, all at once as desktops reconnecting do (one by one,
    /// a restart's `routing` time counted each call: 0.55 s with 300 agents).
    async fn online(&self) -> anyhow::Result<()> {
        let mut calls = tokio::task::JoinSet::new();
        for (a, name) in self.agents.iter().enumerate() {
            let mut client =
                AgentServiceClient::new(self.channels[a % self.channels.len()].clone());
            let request = pb::SetStatusRequest {
                agent: name.clone(),
                status: pb::AgentStatus::Online as i32,
                request_id: self.rid(),
            };
            calls.spawn(async move { client.set_status(request).await });
        }
        while let Some(done) = calls.join_next().await {
            done?.context("agent online")?;
        }
        Ok(())
    }

    /// Opens every agent's event stream (from its last cursor) and keeps reading it, as a
    /// desktop would; reconnects if the stream ends.
    fn open_streams(&mut self) {
        for (a, name) in self.agents.iter().enumerate() {
            let mut client =
                AgentServiceClient::new(self.channels[a % self.channels.len()].clone());
            let (name, cursor) = (name.clone(), self.cursors[a].clone());
            self.streams.push(tokio::spawn(async move {
                loop {
                    let request = pb::StreamAgentEventsRequest {
                        agent: name.clone(),
                        after_cursor: cursor.load(Ordering::Relaxed),
                    };
                    if let Ok(stream) = client.stream_events(request).await {
                        let mut stream = stream.into_inner();
                        while let Ok(Some(e)) = stream.message().await {
                            cursor.fetch_max(e.cursor, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }));
        }
    }

    fn close_streams(&mut self) {
        for s in self.streams.drain(..) {
            s.abort();
        }
    }

    /// SIGTERM, wait for the exit, start again on the same data and wait until the tenant
    /// answers.
    async fn restart(&mut self) -> anyhow::Result<Restart> {
        self.close_streams();
        let t = Instant::now();
        let mut old = std::mem::replace(&mut self.node, NodeProcess::stopped());
        let status = tokio::task::spawn_blocking(move || old.terminate()).await??;
        let shutdown_seconds = t.elapsed().as_secs_f64();
        let snapshot_bytes = snapshot_bytes(&self.spec.data_dir).ok().flatten();
        let spec = self.spec.clone();
        self.node = tokio::task::spawn_blocking(move || spec.start(START_PATIENCE)).await??;
        let listening_seconds = self.node.spawned_at.elapsed().as_secs_f64();
        self.channels = Session::connect(&self.node.grpc, self.connections).await?;
        let mut admin = AdminServiceClient::new(self.channels[0].clone());
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            match admin.get_tenant(pb::GetTenantRequest { name: format!("tenants/{TENANT}") }).await
            {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => {
                    bail!("the tenant did not answer after the restart: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        let restart_seconds = self.node.spawned_at.elapsed().as_secs_f64();
        let rss_after_bytes = node::rss_bytes(self.node.pid);
        // Desktops reconnect: streams resume from their cursors, agents say they are online.
        self.online().await?;
        self.open_streams();
        // A new customer, outside the range the drive numbers, and counted apart from it.
        self.restarts += 1;
        let probe = Counters::default();
        conversation(&self.channels[0], &probe, &self.next_request, PROBE_CUSTOMER + self.restarts)
            .await
            .context("the first conversation after the restart")?;
        let routing_seconds = (Counters::get(&probe.unassigned) == 0)
            .then(|| self.node.spawned_at.elapsed().as_secs_f64());
        Ok(Restart {
            routing_seconds,
            shutdown_seconds,
            clean_exit: status.success(),
            snapshot_bytes,
            restart_seconds,
            listening_seconds,
            rss_after_bytes,
        })
    }
}

/// The tenant's latest snapshot, read from the node's SQLite file without writing to it. An
/// actor tenant's live work is in its router's row (placements, agents, the decisions not
/// yet acknowledged), written on every router step: counted with the tenant's snapshot (its
/// configuration). Its conversation actors' rows are per customer, like the customers table.
fn snapshot_bytes(data_dir: &Path) -> anyhow::Result<Option<u64>> {
    let db = data_dir.join("switchboard.db");
    let conn = rusqlite::Connection::open_with_flags(
        &db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("open {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let len: Option<i64> = conn
        .query_row("SELECT length(bytes) FROM snapshots WHERE tenant = ?1", [TENANT], |r| r.get(0))
        .optional()?;
    let router: Option<i64> = conn
        .query_row(
            "SELECT length(body) FROM actors WHERE tenant = ?1 AND kind = 'router'",
            [TENANT],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match (len, router) {
        (None, None) => None,
        (len, router) => Some((len.unwrap_or(0) + router.unwrap_or(0)) as u64),
    })
}

/// Waits until the node uses (almost) no CPU: two half-second windows in a row under 4% of a
/// core, bounded by a minute. Returns the time waited.
async fn settle(pid: u32) -> f64 {
    let start = Instant::now();
    let mut prev = node::cpu_seconds(pid).unwrap_or(0.0);
    let mut quiet = 0;
    while quiet < 2 && start.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = node::cpu_seconds(pid).unwrap_or(prev);
        quiet = if now - prev <= 0.02 { quiet + 1 } else { 0 };
        prev = now;
    }
    start.elapsed().as_secs_f64()
}

/// One conversation: the customer posts, the assigned agent replies once and ends it.
async fn conversation(
    channel: &Channel,
    counters: &Counters,
    rid: &AtomicU64,
    customer: u64,
) -> anyhow::Result<()> {
    let next_rid = || format!("h-{}", rid.fetch_add(1, Ordering::Relaxed));
    let posted = ChannelServiceClient::new(channel.clone())
        .post_message(pb::PostMessageRequest {
            customer: format!("tenants/{TENANT}/customers/c{customer}"),
            channel: pb::Channel::Web as i32,
            text: "hello".into(),
            group: String::new(),
            priority: 0,
            nickname: String::new(),
            request_id: next_rid(),
        })
        .await
        .context("post")?
        .into_inner();
    counters.commands.fetch_add(1, Ordering::Relaxed);
    let conv = posted.conversation.context("no conversation in the answer")?;
    if conv.state != pb::ConversationState::Assigned as i32 || conv.agent.is_empty() {
        // Not assigned on arrival: the customer closes it, so nothing stays open.
        counters.unassigned.fetch_add(1, Ordering::Relaxed);
        ChannelServiceClient::new(channel.clone())
            .close_conversation(pb::ConversationRequest {
                conversation: conv.name,
                request_id: next_rid(),
            })
            .await
            .context("close")?;
        counters.commands.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let mut agent = AgentServiceClient::new(channel.clone());
    agent
        .send_message(pb::SendMessageRequest {
            agent: conv.agent.clone(),
            conversation: conv.name.clone(),
            text: "r".into(),
            tag: 0,
            request_id: next_rid(),
        })
        .await
        .context("reply")?;
    counters.commands.fetch_add(1, Ordering::Relaxed);
    agent
        .end_conversation(pb::AgentConversationRequest {
            agent: conv.agent,
            conversation: conv.name,
            request_id: next_rid(),
        })
        .await
        .context("end")?;
    counters.commands.fetch_add(1, Ordering::Relaxed);
    counters.ended.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Drives conversations `next..until` with `concurrency` workers; returns when all are done.
#[allow(clippy::too_many_arguments)]
async fn drive(
    channels: &[Channel],
    counters: &Arc<Counters>,
    rid: &Arc<AtomicU64>,
    next: &Arc<AtomicU64>,
    until: u64,
    concurrency: usize,
    customers: Option<&Arc<Vec<tokio::sync::Mutex<()>>>>,
) {
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency.max(1) {
        let channel = channels[w % channels.len()].clone();
        let (counters, rid, next) = (counters.clone(), rid.clone(), next.clone());
        let customers = customers.cloned();
        workers.spawn(async move {
            while !counters.stop.load(Ordering::Relaxed) {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= until {
                    next.fetch_min(until, Ordering::Relaxed);
                    break;
                }
                let result = match &customers {
                    // A reused customer talks in one conversation at a time.
                    Some(locks) => {
                        let c = n % locks.len() as u64;
                        let _turn = locks[c as usize].lock().await;
                        conversation(&channel, &counters, &rid, c).await
                    }
                    None => conversation(&channel, &counters, &rid, n).await,
                };
                if let Err(e) = result {
                    counters.error("conversation", &e);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

/// Normalised checkpoints: sorted, deduplicated, positive, ending at `--conversations`.
fn checkpoints(args: &HistoryArgs) -> anyhow::Result<Vec<u64>> {
    let mut cps: Vec<u64> = args.checkpoints.iter().copied().filter(|&c| c > 0).collect();
    if let Some(n) = args.conversations {
        if n == 0 {
            bail!("--conversations must be positive");
        }
        cps.retain(|&c| c <= n);
        cps.push(n);
    }
    cps.sort_unstable();
    cps.dedup();
    if cps.is_empty() {
        bail!("no checkpoint");
    }
    Ok(cps)
}

/// Runs the benchmark and prints each checkpoint, the summary and the verdict.
pub async fn run(args: &HistoryArgs) -> anyhow::Result<HistoryReport> {
    let cps = checkpoints(args)?;
    if args.agents == 0 || args.capacity == 0 {
        bail!("--agents and --capacity must be positive");
    }
    // Each agent's event stream holds a stream slot of its connection for the whole run:
    // past the node's 512 per connection every later call on it would wait for ever.
    let per_connection = crate::center::grpc::STREAMS_PER_CONNECTION;
    let connections = args.connections.max(1);
    if args.agents as usize > per_connection * connections {
        bail!(
            "--agents {} would put more than {per_connection} event streams on each of \
             --connections {connections}: pass --connections {} or more",
            args.agents,
            (args.agents as usize).div_ceil(per_connection)
        );
    }
    if args.customers == Some(0) {
        bail!("--customers must be positive");
    }
    let bin = args.node_bin.clone().unwrap_or_else(node::default_bin);
    let dir = tempfile::Builder::new().prefix("loadtest-history-").tempdir()?;
    let data_dir = dir.path().join("data");
    let mut spec = NodeSpec::new(bin.clone(), data_dir.clone(), dir.path().join("node.log"));
    if let Some(n) = args.snapshot_every {
        spec.env.push(("SWITCHBOARD_STORE__SNAPSHOT_EVERY".into(), n.to_string()));
    }
    let start_spec = spec.clone();
    let node = tokio::task::spawn_blocking(move || start_spec.start(START_PATIENCE)).await??;
    let channels = Session::connect(&node.grpc, args.connections).await?;
    let mut session = Session {
        spec,
        node,
        channels,
        connections: args.connections,
        agents: (0..args.agents).map(|a| format!("tenants/{TENANT}/agents/a{a}")).collect(),
        streams: Vec::new(),
        cursors: (0..args.agents).map(|_| Arc::new(AtomicU64::new(0))).collect(),
        next_request: Arc::new(AtomicU64::new(0)),
        restarts: 0,
    };
    println!(
        "history: node {} (pid {}) on {}; {} conversations through one tenant, {} in flight, {}; checkpoints {}{}",
        bin.display(),
        session.node.pid,
        data_dir.display(),
        cps.last().copied().unwrap_or(0),
        args.concurrency,
        match args.customers {
            Some(k) => format!("{k} customers reused round-robin"),
            None => "a new customer each".into(),
        },
        cps.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
        match args.warm {
            Some(w) => format!(", each measured in a process started {w} conversations before it"),
            None => String::new(),
        }
    );
    session.setup(args.capacity).await?;
    session.open_streams();

    let counters = Arc::new(Counters::default());
    let next = Arc::new(AtomicU64::new(0));
    let locks = args
        .customers
        .map(|k| Arc::new((0..k).map(|_| tokio::sync::Mutex::new(())).collect::<Vec<_>>()));
    let started = Instant::now();
    let progress = (!args.quiet).then(|| {
        let counters = counters.clone();
        let total = cps.last().copied().unwrap_or(0);
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0);
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let ended = Counters::get(&counters.ended);
                let rate = (ended - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), ended);
                eprintln!(
                    "[{:7.1} s] ended {ended}/{total}  {rate:.0} conv/s  errors {}",
                    started.elapsed().as_secs_f64(),
                    Counters::get(&counters.errors)
                );
            }
        })
    });

    let mut results: Vec<Checkpoint> = Vec::new();
    let mut prev = (0u64, 0u64); // (conversations, commands) at the previous checkpoint
    let mut outcome = Ok(());
    // Each conversation is started once: `next` counts conversations started, including
    // unassigned and failed ones, so a checkpoint is reached even if some fail.
    let next_request = session.next_request.clone();
    let drive_to = |channels: Vec<Channel>, to: u64| {
        let (counters, next_request, next, locks) = (&counters, &next_request, &next, &locks);
        async move {
            let locks = locks.as_ref();
            drive(&channels, counters, next_request, next, to, args.concurrency, locks).await;
        }
    };
    let stopped = || {
        counters.stop.load(Ordering::Relaxed).then(|| {
            let first = counters.first_error.lock().expect("error lock").clone();
            anyhow::anyhow!(
                "stopped after {MAX_ERRORS} failed calls; first: {}",
                first.unwrap_or_default()
            )
        })
    };
    for (i, &cp) in cps.iter().enumerate() {
        // `--warm`: the fresh process this checkpoint is measured in starts `warm` before it.
        if let Some(from) = args.warm.filter(|&w| i > 0 && w < cp).map(|w| cp - w) {
            drive_to(session.channels.clone(), from).await;
            if let Some(e) = stopped() {
                outcome = Err(e);
                break;
            }
            if let Err(e) = session.restart().await {
                outcome = Err(e.context("restart before a checkpoint (--warm)"));
                break;
            }
            prev = (next.load(Ordering::Relaxed).min(from), Counters::get(&counters.commands));
        }
        let cpu_base = node::cpu_seconds(session.node.pid).unwrap_or(0.0);
        let t = Instant::now();
        drive_to(session.channels.clone(), cp).await;
        let drive_seconds = t.elapsed().as_secs_f64();
        if let Some(e) = stopped() {
            outcome = Err(e);
            break;
        }
        let pid = session.node.pid;
        let settle_seconds = settle(pid).await;
        let measured = measure(&session).await;
        let cpu_seconds = node::cpu_seconds(pid).unwrap_or(cpu_base) - cpu_base;
        let done = next.load(Ordering::Relaxed).min(cp);
        let commands = Counters::get(&counters.commands);
        let (convs, cmds) = ((done - prev.0).max(1) as f64, (commands - prev.1).max(1) as f64);
        prev = (done, commands);
        let ended = Counters::get(&counters.ended);
        let rss = node::rss_bytes(pid).unwrap_or(0);
        let rss_delta = results.first().map(|first: &Checkpoint| {
            (rss as f64 - first.rss_bytes as f64)
                / (ended.saturating_sub(first.conversations)).max(1) as f64
        });
        let restart = if args.restart_at_checkpoints {
            match session.restart().await {
                Ok(r) => Some(r),
                Err(e) => {
                    outcome = Err(e.context("restart"));
                    None
                }
            }
        } else {
            None
        };
        let c = Checkpoint {
            conversations: ended,
            rss_bytes: rss,
            rss_delta_per_conversation_bytes: rss_delta,
            store_bytes: measured.store_bytes,
            snapshot_bytes: measured.snapshot_bytes,
            metrics_rss_bytes: measured.metrics_rss,
            metrics_cpu_seconds: measured.metrics_cpu,
            cpu_seconds,
            cpu_us_per_conversation: cpu_seconds * 1e6 / convs,
            cpu_us_per_command: cpu_seconds * 1e6 / cmds,
            conversations_per_s: convs / drive_seconds.max(1e-9),
            drive_seconds,
            settle_seconds,
            errors: Counters::get(&counters.errors),
            unassigned: Counters::get(&counters.unassigned),
            restart,
        };
        println!("{}", c.line());
        results.push(c);
        if outcome.is_err() {
            break;
        }
    }
    if let Some(p) = progress {
        p.abort();
    }
    session.close_streams();
    let mut node = std::mem::replace(&mut session.node, NodeProcess::stopped());
    // Not running if a restart failed half-way.
    let _ = tokio::task::spawn_blocking(move || node.terminate()).await;
    if let Some(e) = counters.first_error.lock().expect("error lock").as_ref() {
        println!("first error: {e}");
    }
    let report = HistoryReport {
        node_bin: bin.display().to_string(),
        conversations: cps.last().copied().unwrap_or(0),
        concurrency: args.concurrency,
        customers: args.customers,
        agents: args.agents,
        capacity: args.capacity,
        snapshot_every: args.snapshot_every,
        restart_at_checkpoints: args.restart_at_checkpoints,
        warm: args.warm,
        verdict: verdict(&results),
        checkpoints: results,
    };
    println!("{}", report.summary());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        if path.as_os_str() == "-" {
            println!("{json}");
        } else {
            std::fs::write(path, json).with_context(|| format!("write {}", path.display()))?;
        }
    }
    if args.keep_data {
        let kept = dir.keep();
        println!("kept {} (data/ and node.log)", kept.display());
    }
    outcome.map(|()| report)
}

/// What is read at a checkpoint besides RSS and CPU.
struct Measured {
    store_bytes: u64,
    snapshot_bytes: Option<u64>,
    metrics_rss: Option<f64>,
    metrics_cpu: Option<f64>,
}

async fn measure(session: &Session) -> Measured {
    let data_dir = session.spec.data_dir.clone();
    let metrics = session.node.metrics.clone();
    tokio::task::spawn_blocking(move || {
        let body = node::scrape(&metrics).unwrap_or_default();
        Measured {
            store_bytes: node::dir_size(&data_dir),
            snapshot_bytes: snapshot_bytes(&data_dir).ok().flatten(),
            metrics_rss: node::metric(&body, "process_resident_memory_bytes"),
            metrics_cpu: node::metric(&body, "process_cpu_seconds_total"),
        }
    })
    .await
    .unwrap_or(Measured {
        store_bytes: 0,
        snapshot_bytes: None,
        metrics_rss: None,
        metrics_cpu: None,
    })
}

fn verdict(cps: &[Checkpoint]) -> Verdict {
    let rss_growth = match (cps.first(), cps.last()) {
        (Some(f), Some(l)) if cps.len() > 1 && f.rss_bytes > 0 => {
            Some(l.rss_bytes as f64 / f.rss_bytes as f64 - 1.0)
        }
        _ => None,
    };
    // A restart is over when the tenant routes again, not merely answers a read.
    let slowest = cps
        .iter()
        .filter_map(|c| c.restart.as_ref())
        .map(|r| r.restart_seconds.max(r.routing_seconds.unwrap_or(0.0)))
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
    Verdict {
        rss_growth,
        rss_held: rss_growth.map(|g| g <= RSS_GROWTH_GOAL),
        slowest_restart_seconds: slowest,
        restart_held: slowest.map(|s| s < RESTART_GOAL_S && !unrouted(cps)),
    }
}

/// Whether some restart's first conversation was not assigned (the tenant did not route).
fn unrouted(cps: &[Checkpoint]) -> bool {
    cps.iter().filter_map(|c| c.restart.as_ref()).any(|r| r.routing_seconds.is_none())
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "n/a".into(), f)
}

impl Checkpoint {
    /// The checkpoint's line.
    pub fn line(&self) -> String {
        let mut out = format!(
            "checkpoint {}: rss {}{} | store {} | snapshot {} | cpu {:.0} µs/conv, {:.0} µs/cmd | {:.0} conv/s | metrics rss {}, cpu {} | errors {}, unassigned {}",
            self.conversations,
            mib(self.rss_bytes),
            self.rss_delta_per_conversation_bytes
                .map(|d| format!(" ({d:+.0} B/conv since the first checkpoint)"))
                .unwrap_or_default(),
            mib(self.store_bytes),
            opt(self.snapshot_bytes, mib),
            self.cpu_us_per_conversation,
            self.cpu_us_per_command,
            self.conversations_per_s,
            opt(self.metrics_rss_bytes, |b| mib(b as u64)),
            opt(self.metrics_cpu_seconds, |s| format!("{s:.2} s")),
            self.errors,
            self.unassigned,
        );
        if let Some(r) = &self.restart {
            out.push_str(&format!(
                " | restart {:.3} s (listening {:.3} s; routing {}; shutdown {:.3} s{}, snapshot {}), rss after {}",
                r.restart_seconds,
                r.listening_seconds,
                opt(r.routing_seconds, |s| format!("{s:.3} s")),
                r.shutdown_seconds,
                if r.clean_exit { "" } else { ", NOT clean" },
                opt(r.snapshot_bytes, mib),
                opt(r.rss_after_bytes, mib)
            ));
        }
        out
    }
}

impl HistoryReport {
    /// The table of every checkpoint and the verdict against the goals.
    pub fn summary(&self) -> String {
        let mut out = String::from(
            "summary (one tenant; sizes in MiB, CPU in µs of node time)\n  conversations      rss  Δrss B/conv    store  snapshot  cpu/conv  cpu/cmd   conv/s  restart s  routing s  rss after restart\n",
        );
        let m = |b: u64| format!("{:.1}", b as f64 / (1024.0 * 1024.0));
        for c in &self.checkpoints {
            let r = c.restart.as_ref();
            out.push_str(&format!(
                "  {:>13} {:>8} {:>12} {:>8} {:>9} {:>9.0} {:>8.0} {:>8.0} {:>10} {:>10} {:>18}\n",
                c.conversations,
                m(c.rss_bytes),
                opt(c.rss_delta_per_conversation_bytes, |d| format!("{d:+.0}")),
                m(c.store_bytes),
                opt(c.snapshot_bytes, m),
                c.cpu_us_per_conversation,
                c.cpu_us_per_command,
                c.conversations_per_s,
                opt(r.map(|r| r.restart_seconds), |s| format!("{s:.3}")),
                opt(r.and_then(|r| r.routing_seconds), |s| format!("{s:.3}")),
                opt(r.and_then(|r| r.rss_after_bytes), m),
            ));
        }
        let v = &self.verdict;
        let (first, last) = (self.checkpoints.first(), self.checkpoints.last());
        out.push_str("verdict vs the goals:\n");
        out.push_str(&match (v.rss_growth, first, last) {
            (Some(g), Some(f), Some(l)) => format!(
                "  memory: rss {} at {} → {} at {} ({:+.0}%): {} (goal: within {:.0}%)\n",
                mib(f.rss_bytes),
                f.conversations,
                mib(l.rss_bytes),
                l.conversations,
                g * 100.0,
                if g <= RSS_GROWTH_GOAL { "MET" } else { "NOT MET" },
                RSS_GROWTH_GOAL * 100.0
            ),
            _ => "  memory: n/a (needs two checkpoints)\n".into(),
        });
        out.push_str(&match v.slowest_restart_seconds {
            Some(s) => format!(
                "  restart: slowest {s:.3} s until routing again: {}{} (goal: under {RESTART_GOAL_S:.0} s)\n",
                if v.restart_held == Some(true) { "MET" } else { "NOT MET" },
                if unrouted(&self.checkpoints) {
                    ", a restart's first conversation was not assigned"
                } else {
                    ""
                }
            ),
            None => "  restart: n/a (no restart)\n".into(),
        });
        out.pop();
        out
    }
}
