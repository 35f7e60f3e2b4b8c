#![allow(dead_code)] // not every test uses every part

//! Harness of the cluster tests: a real etcd (Debian's `etcd-server`), a real PostgreSQL
//! (`switchboard_store::testing::PgServer`) and real `switchboard serve` processes, all on
//! ephemeral loopback ports. Every process is stopped by the PID this harness started; nothing
//! is killed by name. Waits are bounded; nothing asserts on time.

#[path = "../../../crates/switchboard/tests/support/process.rs"]
mod process;
#[path = "../../../crates/switchboard/tests/support/traffic.rs"]
pub mod traffic;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchboard_proto::v1::{
    admin_service_client::AdminServiceClient, agent_service_client::AgentServiceClient,
    channel_service_client::ChannelServiceClient, event_service_client::EventServiceClient,
    supervisor_service_client::SupervisorServiceClient,
};
use tonic::transport::Channel;

/// Bound on any one wait (a debug build on a busy 2-core machine): not a timed assertion.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The lease TTL the tests run with, so failovers take seconds rather than the default 10.
pub const TEST_TTL_SECONDS: u64 = 4;

/// A free loopback port (released before use; a clash shows up as a failed start).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status();
}

/// One etcd member of its own, in a temporary directory.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
}

impl Etcd {
    pub fn start() -> Etcd {
        // A free port can be taken between our probe and etcd's bind: try fresh ports then.
        for _ in 0..5 {
            let dir =
                tempfile::Builder::new().prefix("switchboard-etcd-").tempdir().expect("tempdir");
            let mut etcd =
                Etcd { child: None, dir, client_port: free_port(), peer_port: free_port() };
            if etcd.try_start() {
                return etcd;
            }
        }
        panic!("etcd did not start on five pairs of free ports");
    }

    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts (again) on the same ports and data.
    pub fn restart(&mut self) {
        assert!(self.try_start(), "etcd did not start again on port {}", self.client_port);
    }

    /// Starts etcd and waits until it listens; `false` if it exited first.
    fn try_start(&mut self) -> bool {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd (scripts/setup installs etcd-server)");
        self.child = Some(child);
        let step = Duration::from_millis(50);
        let mut waited = Duration::ZERO;
        while std::net::TcpStream::connect(("127.0.0.1", self.client_port)).is_err() {
            let exited = self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited {
                self.child = None;
                return false;
            }
            assert!(waited < PATIENCE, "etcd did not listen");
            std::thread::sleep(step);
            waited += step;
        }
        true
    }

    /// SIGKILL, by PID.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Prometheus server (Debian's `prometheus`, installed by `scripts/setup`) on a free loopback
/// port with its own storage in `dir`, started from the configuration file `config`; stopped
/// by PID. Its HTTP API is read with [`Prometheus::api`].
pub struct Prometheus {
    child: Option<Child>,
    port: u16,
}

impl Prometheus {
    pub fn start(dir: &std::path::Path, config: &std::path::Path) -> Prometheus {
        // A free port can be taken between our probe and the bind: try fresh ports then.
        for _ in 0..5 {
            let port = free_port();
            let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn prometheus (scripts/setup installs Debian's prometheus)");
            let mut prometheus = Prometheus { child: Some(child), port };
            let step = Duration::from_millis(100);
            let mut waited = Duration::ZERO;
            loop {
                if prometheus.get("/-/ready").is_some_and(|(code, _)| code == 200) {
                    return prometheus;
                }
                let exited =
                    prometheus.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
                if exited {
                    break;
                }
                assert!(waited < PATIENCE, "prometheus did not become ready");
                std::thread::sleep(step);
                waited += step;
            }
        }
        let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
        panic!("prometheus did not start on five free ports:\n{log}");
    }

    /// GET over HTTP/1.0: the status code and body, or `None` when nothing answers.
    fn get(&self, path: &str) -> Option<(u16, String)> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(PATIENCE)).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let (head, body) = out.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_owned()))
    }

    /// `GET /api/v1/<path>?<query>` (the query's values percent-encoded here); the `data` of
    /// a successful answer, or the error Prometheus gave.
    pub fn api(&self, path: &str, query: &[(&str, &str)]) -> Result<serde_json::Value, String> {
        let query: Vec<String> =
            query.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect();
        let url = format!("/api/v1/{path}?{}", query.join("&"));
        let (code, body) = self.get(&url).ok_or_else(|| format!("no answer to {url}"))?;
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{url}: {e}: {body}"))?;
        if code != 200 || json["status"] != "success" {
            return Err(format!("{url}: {code} {}: {}", json["errorType"], json["error"]));
        }
        Ok(json["data"].clone())
    }

    /// Prometheus's clock (seconds since the epoch): the tests take time from the server
    /// they query rather than read a clock of their own.
    pub fn time(&self) -> f64 {
        let data = self.api("query", &[("query", "time()")]).expect("time()");
        data["result"][1].as_str().and_then(|t| t.parse().ok()).expect("a scalar")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One `switchboard serve` in cluster mode.
pub struct Node {
    pub id: String,
    child: Option<Child>,
    pub grpc: String,
    pub metrics: String,
    etcd: String,
    store: String,
    dir: PathBuf,
    ttl: u64,
    /// More `serve` arguments (such as `--config PATH`), kept for restarts.
    extra: Vec<String>,
}

impl Node {
    /// Starts a node and waits until it listens (not until it serves: see [`Node::ready`]).
    pub fn start(id: &str, etcd: &Etcd, store_url: &str, dir: &std::path::Path) -> Node {
        Node::start_with_ttl(id, etcd, store_url, dir, TEST_TTL_SECONDS)
    }

    /// Starts a node with a lease TTL of its own.
    pub fn start_with_ttl(
        id: &str,
        etcd: &Etcd,
        store_url: &str,
        dir: &std::path::Path,
        ttl: u64,
    ) -> Node {
        Node::launch(id, etcd, store_url, dir, ttl, &[])
    }

    /// Starts a node with more `serve` arguments.
    pub fn start_with_args(
        id: &str,
        etcd: &Etcd,
        store_url: &str,
        dir: &std::path::Path,
        extra: &[String],
    ) -> Node {
        Node::launch(id, etcd, store_url, dir, TEST_TTL_SECONDS, extra)
    }

    fn launch(
        id: &str,
        etcd: &Etcd,
        store_url: &str,
        dir: &std::path::Path,
        ttl: u64,
        extra: &[String],
    ) -> Node {
        let mut node = Node {
            id: id.to_owned(),
            child: None,
            grpc: String::new(),
            metrics: String::new(),
            etcd: etcd.endpoint(),
            store: store_url.to_owned(),
            dir: dir.join(id),
            ttl,
            extra: extra.to_vec(),
        };
        node.restart();
        node
    }

    /// Starts the node again (same id, etcd and store; new ports).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "node {} is running", self.id);
        // A restart keeps its gRPC address, as a pod keeps its name behind the headless Service.
        let grpc = self.grpc.strip_prefix("http://").unwrap_or("127.0.0.1:0").to_owned();
        let grpc = if grpc.is_empty() { "127.0.0.1:0".to_owned() } else { grpc };
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard-under-test"));
        command
            .args(["serve", "--grpc-addr", &grpc, "--metrics-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--etcd", &self.etcd, "--store", &self.store, "--node-id", &self.id])
            .args(&self.extra)
            .env("SWITCHBOARD_CLUSTER__LEASE_TTL_SECONDS", self.ttl.to_string())
            .env("RUST_LOG", std::env::var("NODE_LOG").unwrap_or_else(|_| "warn".into()));
        let started = process::start(command, Stdio::inherit(), PATIENCE);
        self.grpc = started.grpc;
        self.metrics = started.metrics;
        self.child = Some(started.child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Waits until the node reports SERVING: joined, and serving its shards.
    pub async fn ready(&self) {
        self.ready_over(Channel::from_shared(self.grpc.clone()).unwrap()).await;
    }

    /// Like [`Node::ready`], over a given endpoint (TLS, say).
    pub async fn ready_over(&self, endpoint: tonic::transport::Endpoint) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(channel) = endpoint.connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let req = tonic_health::pb::HealthCheckRequest { service: String::new() };
                if let Ok(r) = health.check(req).await
                    && r.into_inner().status
                        == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "node {} never became ready", self.id);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no handover, no snapshot.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait; whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        signal(child.id(), "TERM");
        child.wait().map(|s| s.success()).unwrap_or(false)
    }

    pub fn stop_process(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn continue_process(&self) {
        signal(self.pid(), "CONT");
    }

    pub async fn clients(&self) -> Clients {
        Clients::connect(&self.grpc).await
    }

    /// The value of a metric series (first line starting with `series`), or 0.
    pub fn metric(&self, series: &str) -> f64 {
        scrape(&self.metrics)
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[derive(Clone)]
pub struct Clients {
    pub admin: AdminServiceClient<Channel>,
    pub channel: ChannelServiceClient<Channel>,
    pub agent: AgentServiceClient<Channel>,
    pub events: EventServiceClient<Channel>,
    pub supervisor: SupervisorServiceClient<Channel>,
}

impl Clients {
    pub async fn connect(uri: &str) -> Clients {
        let channel = Channel::from_shared(uri.to_owned())
            .expect("uri")
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        Clients {
            admin: AdminServiceClient::new(channel.clone()),
            channel: ChannelServiceClient::new(channel.clone()),
            agent: AgentServiceClient::new(channel.clone()),
            events: EventServiceClient::new(channel.clone()),
            supervisor: SupervisorServiceClient::new(channel),
        }
    }
}

/// GET /metrics over plain HTTP.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Calls `f` until it succeeds or fails with something other than UNAVAILABLE (a handover,
/// a failover or a restart in progress) or a connection that closed under the call, within
/// [`PATIENCE`]. Retries reuse the request id the closure carries, so they are idempotent.
pub async fn retry<T, F, Fut>(mut f: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match f().await {
            Err(s) if transient(&s) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// A failure a client resends on (with the same request id): the cluster was moving the
/// call's shard, or the connection closed before the answer came. The last is the client
/// library's CANCELLED, "connection closed" in its message or in its cause (tonic says
/// "operation was canceled" over hyper's `Canceled` "connection closed"): a node draining on
/// SIGTERM closes its connections once the calls it took are answered, and a call the client
/// wrote onto the connection as it closed was never taken.
pub fn transient(s: &tonic::Status) -> bool {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => true,
        tonic::Code::Cancelled => {
            let mut cause: Option<&dyn std::error::Error> = Some(s);
            while let Some(error) = cause {
                if error.to_string().contains("connection closed") {
                    return true;
                }
                cause = error.source();
            }
            false
        }
        _ => false,
    }
}

/// The client's CANCELLED counts as a closed connection whether the words are in its
/// message or in its cause (as tonic reports hyper's `Canceled`); any other stays an error.
#[test]
fn a_connection_closed_under_a_call_is_transient_wherever_it_says_so() {
    let in_message = tonic::Status::cancelled("h2 protocol error: connection closed");
    assert!(transient(&in_message));
    let mut in_cause = tonic::Status::cancelled("operation was canceled");
    in_cause.set_source(std::sync::Arc::new(std::io::Error::other("connection closed")));
    assert!(transient(&in_cause));
    assert!(!transient(&tonic::Status::cancelled("operation was canceled")));
    assert!(!transient(&tonic::Status::failed_precondition("connection closed")));
}
