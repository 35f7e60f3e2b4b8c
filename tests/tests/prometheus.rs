//! A real Prometheus (Debian's `prometheus` server) scraping a real node, with the rules of
//! `deploy/prometheus` loaded: every recording rule yields series, every Grafana panel's query
//! (`deploy/grafana`) returns data, not only parses, and the alerts "queue with no agent
//! online" and "service level below target" fire when the node makes them true and clear when
//! it stops.
//!
//! The node runs in cluster mode (etcd and PostgreSQL of its own, as in the other cluster
//! tests) so the etcd panels have data too. Prometheus runs on a free loopback port from a temp
//! dir and is stopped by PID. To keep the test short, its copy of the rules is rewritten (and
//! only its copy): groups are evaluated every second, `for:` durations are 3 s, and every range
//! window (`[5m]`, `[10m]`; `$__rate_interval` in the dashboards) is 20 s, so a condition that
//! stops clears within seconds rather than five minutes. The scrape adds `namespace` and
//! `pod` labels as the Prometheus Operator's ServiceMonitor does. Waits are polls with
//! generous deadlines; nothing asserts on time.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::traffic::{self, Clients, rid};
use support::{Etcd, Node, PATIENCE, Prometheus};
use switchboard_proto::v1 as pb;
use switchboard_store::testing::PgServer;

const NAMESPACE: &str = "switchboard-test";
const POD: &str = "sb-0";
/// Every range window of the rules and dashboards, in the test's copy.
const WINDOW: &str = "20s";
/// The group the alerts are made true in.
const NIGHT: &str = "night";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("workspace root")
}

/// `[5m]`, `[10m]`, `[1h]`… → `[WINDOW]`.
fn short_windows(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        let unit = after[digits..].chars().next();
        if digits > 0
            && matches!(unit, Some('s' | 'm' | 'h' | 'd'))
            && after[digits + 1..].starts_with(']')
        {
            out.push_str(&format!("[{WINDOW}]"));
            rest = &after[digits + 2..];
        } else {
            out.push('[');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The test's copy of a rule file: evaluated every second, `for:` 3 s, short windows.
fn shortened_rules(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let indent = &line[..line.len() - line.trim_start().len()];
            let t = line.trim_start();
            if t.starts_with("interval: ") {
                format!("{indent}interval: 1s")
            } else if t.starts_with("for: ") {
                format!("{indent}for: 3s")
            } else {
                line.to_owned()
            }
        })
        .collect();
    short_windows(&lines.join("\n"))
}

/// A dashboard expression as Grafana sends it with every variable on "All" (`.*`) and the
/// rate interval set to the test's window.
fn grafana_expr(expr: &str) -> String {
    let expr = short_windows(&expr.replace("$__rate_interval", &format!("[{WINDOW}]")));
    let expr = expr.replace(&format!("[[{WINDOW}]]"), &format!("[{WINDOW}]"));
    let mut out = String::new();
    let mut chars = expr.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
            }
        } else {
            while chars.peek().is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
                chars.next();
            }
        }
        out.push_str(".*");
    }
    out
}

/// Whether a query result (vector, matrix or scalar) holds at least one finite value.
fn has_finite(data: &Value) -> bool {
    let finite = |v: &Value| {
        v.get(1)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    };
    match data["resultType"].as_str() {
        Some("matrix") => data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["values"].as_array().into_iter().flatten().any(finite)),
        Some("vector") => {
            data["result"].as_array().into_iter().flatten().any(|s| finite(&s["value"]))
        }
        Some("scalar") => finite(&data["result"]),
        _ => false,
    }
}

/// Whether a vector or matrix holds a finite value other than zero.
fn has_nonzero(data: &Value) -> bool {
    let nonzero = |v: &Value| {
        let x = v.get(1).and_then(Value::as_str).and_then(|s| s.parse::<f64>().ok());
        x.is_some_and(|x| x.is_finite() && x != 0.0)
    };
    data["result"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["values"].as_array().into_iter().flatten().any(nonzero) || nonzero(&s["value"]))
}

/// The expression over the whole test so far, one point a second.
fn range(prom: &Prometheus, expr: &str, start: f64) -> Result<Value, String> {
    let end = prom.time();
    prom.api(
        "query_range",
        &[
            ("query", expr),
            ("start", &format!("{start:.3}")),
            ("end", &format!("{end:.3}")),
            ("step", "1"),
        ],
    )
}

/// Active alerts named `name` for the night group, and whether any of them is firing.
fn alert(prom: &Prometheus, name: &str) -> (bool, bool) {
    let data = prom.api("alerts", &[]).expect("alerts");
    let ours: Vec<&Value> = data["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["alertname"] == name && a["labels"]["group"] == NIGHT)
        .collect();
    (!ours.is_empty(), ours.iter().any(|a| a["state"] == "firing"))
}

/// Polls `check` once a second (doing `step` first each time) until it holds; panics with
/// `what` and Prometheus's active alerts after the deadline.
async fn until<F, S>(prom: &Prometheus, what: &str, mut step: S, mut check: F)
where
    S: AsyncFnMut(),
    F: FnMut() -> bool,
{
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    loop {
        step().await;
        if check() {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            let alerts = prom.api("alerts", &[]);
            panic!("{what}: not within the deadline; active alerts: {alerts:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn post(t: &str, customer: &str, group: &str) -> pb::PostMessageRequest {
    pb::PostMessageRequest {
        customer: format!("tenants/{t}/customers/{customer}"),
        channel: pb::Channel::Web as i32,
        text: "hello".into(),
        group: format!("tenants/{t}/groups/{group}"),
        priority: 0,
        nickname: customer.into(),
        request_id: rid("post"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_evaluates_every_rule_panel_and_alert_on_a_live_node() {
    let etcd = Etcd::start();
    let store = PgServer::shared().database();
    let dir = tempfile::tempdir().unwrap();
    // Snapshots every few commands, so the snapshot-size panel has samples.
    let node_config = dir.path().join("node.toml");
    std::fs::write(&node_config, "[store]\nsnapshot_every = 5\n").unwrap();
    let node = Node::start_with_args(
        "n1",
        &etcd,
        &store,
        dir.path(),
        &["--config".into(), node_config.display().to_string()],
    );
    node.ready().await;

    let rules = ["recording.rules.yml", "alerts.rules.yml"];
    for file in rules {
        let text = std::fs::read_to_string(root().join("deploy/prometheus").join(file)).unwrap();
        std::fs::write(dir.path().join(file), shortened_rules(&text)).unwrap();
    }
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [{}]\n\
             scrape_configs:\n  - job_name: switchboard\n    static_configs:\n      \
             - targets: ['{}']\n        labels: {{namespace: {NAMESPACE}, pod: {POD}}}\n",
            rules.map(|f| dir.path().join(f).display().to_string()).join(", "),
            node.metrics,
        ),
    )
    .unwrap();
    let prometheus_dir = dir.path().join("prometheus");
    std::fs::create_dir(&prometheus_dir).unwrap();
    let prom = Prometheus::start(&prometheus_dir, &config);
    let start = prom.time();

    // Every path the dashboards show: offers made, declined, accepted; a first response;
    // transfers and a supervisor's reassignment; abandonments; automatic replies sent and
    // withheld; an agent message refused by the channel budget; agents signing out.
    let channel = tonic::transport::Channel::from_shared(node.grpc.clone()).unwrap();
    let channel = channel.connect().await.expect("connect");
    let t = "ops";
    traffic::drive_every_path(channel.clone(), t).await;
    // The same on a tenant served by its tenant actor (named explicitly: actors are the
    // default), whose commands and snapshots feed the apply-time and snapshot-size panels.
    traffic::drive_every_path_on(channel.clone(), "ops-one", pb::TenantRouting::TenantActor).await;

    // The night group: carol is its only member, offline.
    let mut c = Clients::new(channel.clone());
    traffic::put_group(&mut c, t, NIGHT, pb::OfferMode::AutoAccept).await;
    traffic::put_agent(&mut c, t, "carol", NIGHT, 10, false).await;

    // Made true: two customers wait in night with nobody online, and others give up waiting
    // (a service level of 0): once a second until both alerts fire.
    for customer in ["w1", "w2"] {
        c.channel.post_message(post(t, customer, NIGHT)).await.expect("post");
    }
    let mut n = 0;
    until(
        &prom,
        "the queue-without-agents and service-level alerts fire",
        async || {
            n += 1;
            let customer = format!("gone{n}");
            let opened = traffic::opened(&mut c, post(t, &customer, NIGHT)).await;
            assert_eq!(opened.state, pb::ConversationState::Queued as i32, "nobody online");
            traffic::customer_leaves(&mut c, &opened.name).await;
        },
        || {
            alert(&prom, "SwitchboardQueueWithoutAgents").1
                && alert(&prom, "SwitchboardServiceLevelBelowTarget").1
        },
    )
    .await;
    eprintln!("both alerts fired after {n} abandonments, one a second");
    // Another tenant actor's traffic, once its histograms' series exist: their rates see it.
    traffic::drive_every_path_on(channel, "ops-two", pb::TenantRouting::TenantActor).await;

    // Stopped: carol comes online and takes the waiting customers; from then on every
    // customer is assigned at once, answered and ended, until neither alert is active.
    traffic::set_status(&mut c, t, "carol", pb::AgentStatus::Online).await;
    let mut n = 0;
    until(
        &prom,
        "both alerts clear",
        async || {
            n += 1;
            let customer = format!("served{n}");
            let opened = traffic::opened(&mut c, post(t, &customer, NIGHT)).await;
            assert_eq!(opened.state, pb::ConversationState::Assigned as i32, "carol takes it");
            // A first response each time: the first-response histograms' series exist before
            // these, so their rates (and the quantile panels) see every one. (The one answer
            // of drive_every_path creates its series: a scrape never sees it go from 0 to 1.)
            c.agent
                .send_message(pb::SendMessageRequest {
                    agent: format!("tenants/{t}/agents/carol"),
                    conversation: opened.name.clone(),
                    text: "good evening".into(),
                    tag: 0,
                    request_id: rid("send"),
                })
                .await
                .expect("carol answers");
            // And a refusal each time (nothing to accept: it is hers already), so the error
            // and refusal panels show a rate, not only the series their first refusal made.
            let accept = pb::AgentConversationRequest {
                agent: format!("tenants/{t}/agents/carol"),
                conversation: opened.name.clone(),
                request_id: rid("accept"),
            };
            c.agent.accept(accept).await.expect_err("nothing to accept");
            let end = pb::AgentConversationRequest {
                agent: format!("tenants/{t}/agents/carol"),
                conversation: opened.name,
                request_id: rid("end"),
            };
            c.agent.end_conversation(end.clone()).await.expect("carol ends it");
            // Her desk resends it (an answer lost on the way): answered as before, and the
            // replay panel shows a rate.
            c.agent.end_conversation(end).await.expect("the resend is answered as before");
        },
        || {
            !alert(&prom, "SwitchboardQueueWithoutAgents").0
                && !alert(&prom, "SwitchboardServiceLevelBelowTarget").0
        },
    )
    .await;
    eprintln!("both alerts cleared after {n} customers served, one a second");

    // Every rule has been evaluated without an error.
    let mut failures = Vec::new();
    let groups = prom.api("rules", &[]).expect("rules");
    let mut recorded = BTreeSet::new();
    for group in groups["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            if rule["health"] != "ok" {
                failures.push(format!(
                    "rule {}: health {} {}",
                    rule["name"], rule["health"], rule["lastError"]
                ));
            }
            if rule["type"] == "recording" {
                recorded.insert(rule["name"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(recorded.len() >= 10, "the recording rules are loaded: {recorded:?}");
    // Every recording rule yields series with a value.
    for name in &recorded {
        match range(&prom, name, start) {
            Ok(data) if has_finite(&data) => {}
            Ok(data) => failures.push(format!("recording rule {name}: no data ({data})")),
            Err(e) => failures.push(format!("recording rule {name}: {e}")),
        }
    }
    // Every panel's query returns data, and every variable has values.
    let mut panels = 0;
    for entry in std::fs::read_dir(root().join("deploy/grafana")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for v in dashboard["templating"]["list"].as_array().into_iter().flatten() {
            let Some(query) = v["query"]["query"].as_str() else { continue };
            let (series, label) = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .and_then(|q| q.rsplit_once(','))
                .unwrap_or_else(|| panic!("{file}: variable query {query}"));
            let values = prom
                .api(
                    &format!("label/{}/values", label.trim()),
                    &[("match[]", &grafana_expr(series))],
                )
                .map(|d| d.as_array().map_or(0, Vec::len));
            if !matches!(values, Ok(n) if n > 0) {
                failures.push(format!("{file}: variable {} has no values: {values:?}", v["name"]));
            }
        }
        for panel in dashboard["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = grafana_expr(target["expr"].as_str().unwrap());
                let title = format!("{file}: panel {} {}", panel["title"], target["refId"]);
                panels += 1;
                let answer = if target["instant"] == true {
                    prom.api("query", &[("query", &expr)])
                } else {
                    range(&prom, &expr, start)
                };
                if answer.as_ref().is_ok_and(|data| !has_nonzero(data)) {
                    // Data, but a flat zero: healthy-cluster panels (unowned shards, lease
                    // failures, fenced writes, drops), and counters whose only event created
                    // their series, which rate() cannot see go from 0 to 1. Shown, not failed.
                    eprintln!("only zeros: {title}: {expr}");
                }
                match answer {
                    Ok(data) if has_finite(&data) => {}
                    Ok(_) => failures.push(format!("{title}: no data for {expr}")),
                    Err(e) => failures.push(format!("{title}: {e}")),
                }
            }
        }
    }
    assert!(panels > 50, "the dashboards' queries were read: {panels}");
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}
