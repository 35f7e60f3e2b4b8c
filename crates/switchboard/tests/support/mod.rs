//! Test harness: real `switchboard serve` processes on ephemeral loopback ports, each with its
//! own data directory, stopped by PID (never by name) when the test ends.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod auth;
pub mod desk;
pub mod process;
pub mod traffic;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use switchboard_proto::v1::{
    admin_service_client::AdminServiceClient, agent_service_client::AgentServiceClient,
    channel_service_client::ChannelServiceClient, event_service_client::EventServiceClient,
    supervisor_service_client::SupervisorServiceClient,
};
use tonic::transport::Channel;

/// How long a node may take to start (a debug build replaying its log): a bound, not a
/// timed assertion.
const START: Duration = Duration::from_secs(120);

pub struct Node {
    child: Option<Child>,
    pub grpc: String,
    pub metrics: String,
    pub data_dir: PathBuf,
}

impl Node {
    /// Starts a node on `data_dir` and waits until it listens.
    pub fn start(data_dir: &Path) -> Node {
        Node::spawn(data_dir, &[], &[], Stdio::inherit())
    }

    /// Like `start`, with extra environment variables (configuration such as
    /// `SWITCHBOARD_STORE__SNAPSHOT_EVERY`).
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Node {
        Node::spawn(data_dir, &[], env, Stdio::inherit())
    }

    /// Starts a node with extra `serve` arguments (such as `--config PATH`).
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Node {
        Node::spawn(data_dir, extra, &[], Stdio::inherit())
    }

    /// Like [`Node::start_with`], with the node's log (stderr) written to `log`.
    pub fn start_logging_to(data_dir: &Path, extra: &[&str], log: &Path) -> Node {
        let file = std::fs::File::create(log).expect("create the log file");
        Node::spawn(data_dir, extra, &[], Stdio::from(file))
    }

    fn spawn(data_dir: &Path, extra: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Node {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        command
            .args(["serve", "--grpc-addr", "127.0.0.1:0", "--metrics-addr", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", std::env::var("NODE_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(env.iter().copied());
        let started = process::start(command, stderr, START);
        Node {
            grpc: started.grpc,
            metrics: started.metrics,
            child: Some(started.child),
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no shutdown, no flush, no snapshot.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        child.wait().map(|s| s.success()).unwrap_or(false)
    }

    /// SIGSTOP: the process freezes, its sockets stay open.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Node::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let status =
            Command::new("kill").args([&format!("-{sig}"), &self.pid().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{sig} {}", self.pid());
    }

    /// Whether the process is still running (it did not panic or exit).
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub async fn clients(&self) -> Clients {
        let channel =
            Channel::from_shared(self.grpc.clone()).expect("uri").connect().await.expect("connect");
        Clients {
            admin: AdminServiceClient::new(channel.clone()),
            channel: ChannelServiceClient::new(channel.clone()),
            agent: AgentServiceClient::new(channel.clone()),
            supervisor: SupervisorServiceClient::new(channel.clone()),
            events: EventServiceClient::new(channel),
        }
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
    pub supervisor: SupervisorServiceClient<Channel>,
    pub events: EventServiceClient<Channel>,
}

/// Waits (bounded) for the next item of a stream.
pub async fn next<T>(stream: &mut tonic::Streaming<T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("nothing arrived on the stream within a minute")
        .expect("stream error")
        .expect("stream ended")
}

/// Reads items until `want` says stop; returns everything read. Bounded wait per item.
pub async fn until<T>(
    stream: &mut tonic::Streaming<T>,
    mut want: impl FnMut(&T) -> bool,
) -> Vec<T> {
    let mut seen = Vec::new();
    loop {
        let item = next(stream).await;
        let done = want(&item);
        seen.push(item);
        if done {
            return seen;
        }
    }
}

/// Unique request ids for one test.
pub fn rid(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{tag}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Creates tenant `id` (display name "Acme") served by its actors (`TENANT_ROUTING_ACTORS`).
pub async fn create_actor_tenant(c: &mut Clients, id: &str) {
    create_tenant(c, id, "Acme", switchboard_proto::v1::TenantRouting::Actors).await;
}

/// Creates tenant `id` served as `routing` says.
pub async fn create_tenant(
    c: &mut Clients,
    id: &str,
    display_name: &str,
    routing: switchboard_proto::v1::TenantRouting,
) {
    c.admin
        .create_tenant(switchboard_proto::v1::CreateTenantRequest {
            tenant_id: id.into(),
            display_name: display_name.into(),
            settings: None,
            request_id: rid("create"),
            routing: routing as i32,
        })
        .await
        .expect("create tenant");
}

/// GET /metrics over plain HTTP.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}
