//! Starting a `switchboard serve` process and reading the addresses it announces. Shared by
//! this crate's harness and the cluster tests' (`tests/tests/support`), which include this
//! file by path.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A started node: its process and the addresses from its `listening` line.
pub struct Started {
    pub child: Child,
    /// `http://host:port` of the gRPC API.
    pub grpc: String,
    /// `host:port` of `/metrics`.
    pub metrics: String,
}

/// Spawns `command` (a `switchboard serve …`) with its log going to `stderr`, keeps draining
/// its stdout so it never blocks on a full pipe, and waits (at most `patience`) for its
/// `listening` line.
pub fn start(mut command: Command, stderr: Stdio, patience: Duration) -> Started {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn switchboard serve");
    let stdout = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("listening ") {
                let _ = tx.send(rest.to_owned());
            }
        }
    });
    let line = rx.recv_timeout(patience).expect("node did not report its addresses");
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in {line:?}"))
            .to_owned()
    };
    Started { grpc: format!("http://{}", field("grpc")), metrics: field("metrics"), child }
}
