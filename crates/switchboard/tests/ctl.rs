//! `switchboard ctl` output (issue 13 item 17) against a real node: JSON by default, one
//! object per line (streams: one per message), parsed here; `-o table` for people.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::Node;

fn ctl(node: &Node, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["ctl", "--addr", &node.grpc])
        .args(args)
        .output()
        .expect("ctl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ctl {args:?}: {stderr}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The output as JSON: exactly one object, on one line.
fn json(text: &str) -> Value {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {text}");
    let v: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(v.is_object(), "{text}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_prints_json_lines_and_tables() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());

    let tenant = json(&ctl(&node, &["tenant", "create", "acme", "--display-name", "Acme"]));
    assert_eq!(tenant["name"], "tenants/acme");
    assert_eq!(tenant["display_name"], "Acme");
    let group = json(&ctl(&node, &["group", "put", "acme", "sales", "--offer-mode", "auto"]));
    assert_eq!(group["policy"]["offer_mode"], "OFFER_MODE_AUTO_ACCEPT", "enums by name");
    let agent = json(&ctl(&node, &["agent", "put", "acme", "alice", "--group", "sales"]));
    assert_eq!(agent["capacity"], 5);
    assert_eq!(agent["groups"], serde_json::json!(["tenants/acme/groups/sales"]));

    // A table: a header of field names, then the values; empty columns left out.
    let table = ctl(&node, &["agent", "status", "acme", "alice", "online", "-o", "table"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(&header[..3], ["NAME", "CAPACITY", "GROUPS"], "{table}");
    assert!(!header.contains(&"NICKNAME"), "empty columns are left out: {table}");
    assert!(!header.contains(&"REPLIES"), "empty columns are left out: {table}");
    assert!(lines[1].starts_with("tenants/acme/agents/alice") && lines[1].contains("ONLINE"));

    let posted =
        json(&ctl(&node, &["message", "post", "acme", "bob", "Hi there", "--group", "sales"]));
    let name = posted["conversation"]["name"].as_str().unwrap().to_owned();
    let number = name.strip_prefix("tenants/acme/conversations/").expect("a conversation");
    assert_eq!(posted["conversation"]["state"], "CONVERSATION_STATE_ASSIGNED");
    let conversation = json(&ctl(&node, &["conversation", "get", "acme", number]));
    assert_eq!(conversation["name"], name.as_str());
    assert!(conversation["opened_at"].as_str().unwrap().ends_with('Z'), "RFC 3339 times");
    let explained = json(&ctl(&node, &["conversation", "explain", "acme", number]));
    assert_eq!(explained["held"]["agent"], "tenants/acme/agents/alice");
    assert_eq!(explained["held"]["decision"]["basis"], "DECISION_BASIS_STRATEGY");
    let explained = json(&ctl(&node, &["agent", "explain", "acme", "alice"]));
    assert_eq!(explained["groups"][0]["group"], "tenants/acme/groups/sales");
    assert_eq!(json(&ctl(&node, &["health"]))["status"], "SERVING");

    // A stream: one JSON object per line, as each message arrives.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["ctl", "--addr", &node.grpc, "agent", "watch", "acme", "alice"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ctl watch runs");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut events = Vec::new();
    while events.len() < 3 {
        let line = lines.next().expect("a line before the stream ends").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        events.push(v);
    }
    let _ = watch.kill(); // by PID
    let _ = watch.wait();
    assert_eq!(events[0]["status_changed"]["status"], "AGENT_STATUS_ONLINE");
    assert_eq!(events[1]["assigned"]["via"], "auto");
    assert_eq!(events[2]["customer_message"]["text"], "Hi there");
    assert_eq!(events[2]["cursor"], "3", "64-bit numbers as strings");
}
