//! End to end: the real binary serves on free ports, answers health checks and ctl, exposes
//! `/metrics`, and exits 0 after a clean drain on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_proto::v1 as pb;
use switchboard_proto::v1::agent_service_client::AgentServiceClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");
/// Bounds every wait, generously: a slow CI machine is not a failure.
const PATIENCE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(100);

/// A running node, killed by its PID when dropped so a failing test never leaks it.
struct Node {
    child: Child,
    grpc: SocketAddr,
    metrics: SocketAddr,
    stderr: Arc<Mutex<String>>,
    _data: tempfile::TempDir,
}

impl Node {
    fn start(vars: &[(&str, &str)]) -> Node {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data.path())
            .env_clear()
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the switchboard binary starts");

        // Drain stderr (the logs) so the child never blocks on a full pipe, and keep it for
        // failure messages.
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });

        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });

        let mut node = Node {
            child,
            grpc: SocketAddr::from(([0, 0, 0, 0], 0)),
            metrics: SocketAddr::from(([0, 0, 0, 0], 0)),
            stderr,
            _data: data,
        };
        let line = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("no `listening` line ({e}); stderr:\n{}", node.logs()));
        let (grpc, metrics) =
            parse_listening(&line).unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        node.grpc = grpc;
        node.metrics = metrics.expect("metrics are on");
        node
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn ctl_ok(&self, args: &[&str]) {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "ctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    fn terminate(&self) {
        let term = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap();
        assert!(term.success());
    }

    fn ctl(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(["ctl", "--addr", &format!("http://{}", self.grpc)])
            .args(args)
            .env_clear()
            .output()
            .expect("ctl runs")
    }

    /// Waits (bounded) for the process to exit on its own.
    fn wait_exit(&mut self) -> ExitStatus {
        let mut waited = Duration::ZERO;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(waited < PATIENCE, "still running after SIGTERM; stderr:\n{}", self.logs());
            std::thread::sleep(POLL);
            waited += POLL;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Child::kill sends SIGKILL to this child's PID only.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `listening grpc=127.0.0.1:P metrics=127.0.0.1:Q` (metrics may be `off`).
fn parse_listening(line: &str) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let rest = line.strip_prefix("listening grpc=")?;
    let (grpc, metrics) = rest.split_once(" metrics=")?;
    let metrics = if metrics == "off" { None } else { Some(metrics.parse().ok()?) };
    Some((grpc.parse().ok()?, metrics))
}

async fn health(grpc: SocketAddr, service: &str) -> ServingStatus {
    let mut waited = Duration::ZERO;
    loop {
        let result = async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let mut client = HealthClient::new(channel);
            let req = HealthCheckRequest { service: service.to_owned() };
            client.check(req).await.map(|r| r.into_inner().status).map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(status) => return ServingStatus::try_from(status).unwrap(),
            Err(e) => {
                assert!(waited < PATIENCE, "health check of {service:?} kept failing: {e}");
                tokio::time::sleep(POLL).await;
                waited += POLL;
            }
        }
    }
}

/// `GET /metrics` over plain HTTP/1.1; returns (status line, body).
fn scrape(metrics: SocketAddr) -> (String, String) {
    let mut stream = TcpStream::connect(metrics).expect("metrics listener accepts");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.lines().next().unwrap_or_default().to_owned(), body.to_owned())
}

#[test]
fn the_listening_line_parses() {
    assert_eq!(
        parse_listening("listening grpc=127.0.0.1:7400 metrics=off"),
        Some((SocketAddr::from(([127, 0, 0, 1], 7400)), None))
    );
    assert!(parse_listening("something else").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_answers_health_ctl_and_metrics_then_drains_on_sigterm() {
    let mut node = Node::start(&[]);
    assert!(node.grpc.ip().is_loopback() && node.grpc.port() != 0);
    assert!(node.metrics.ip().is_loopback() && node.metrics.port() != 0);

    assert_eq!(health(node.grpc, "").await, ServingStatus::Serving, "{}", node.logs());
    assert_eq!(health(node.grpc, "switchboard.v1.AgentService").await, ServingStatus::Serving);

    // ctl against the real node: a create succeeds, the same create again is refused.
    let out = node.ctl(&["tenant", "create", "smoke", "--display-name", "Smoke test"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), node.logs());
    assert!(stdout.contains("tenants/smoke"), "{stdout}");
    let out = node.ctl(&["tenant", "create", "smoke"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("AlreadyExists"), "{stderr}");

    let (status, body) = scrape(node.metrics);
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("switchboard_commands_total"), "{body}");

    node.terminate();
    let status = node.wait_exit();
    assert!(status.success(), "exit {status:?}; stderr:\n{}", node.logs());
    let logs = node.logs();
    assert!(logs.contains("shutting down"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_cleanly_with_a_live_stream_open() {
    let mut node = Node::start(&[]);
    node.ctl_ok(&["tenant", "create", "acme"]);
    node.ctl_ok(&["group", "put", "acme", "sales"]);
    node.ctl_ok(&["agent", "put", "acme", "alice", "--group", "sales"]);

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut agents = AgentServiceClient::new(channel);
    let req =
        pb::StreamAgentEventsRequest { agent: "tenants/acme/agents/alice".into(), after_cursor: 0 };
    let _stream = agents.stream_events(req).await.expect("the stream opens").into_inner();

    node.terminate();
    let status = node.wait_exit();
    // The node ends live streams when shutdown starts, so the drain is clean; were a stream
    // to hold it open, the drain period would run out and the process exit 1.
    assert!(status.success(), "exit {status:?}; stderr:\n{}", node.logs());
}
