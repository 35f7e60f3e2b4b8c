//! The cluster metrics that dashboards and alerts in `deploy/` read and that only cluster mode
//! exports (forwarded calls, etcd request time), on two real nodes with a real etcd and
//! PostgreSQL; `crates/switchboard/tests/deploy.rs` checks every other name on a single node.
//! The scrape of each node must also satisfy `promtool check metrics`.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{Etcd, Node, retry, scrape};
use switchboard_node::cluster::{desired_owner, shard_of};
use switchboard_proto::v1 as pb;
use switchboard_store::testing::PgServer;

fn promtool_accepts(scrape: &str) {
    let body = scrape.split_once("\r\n\r\n").map_or(scrape, |(_, b)| b);
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/setup");
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_metrics_read_by_the_dashboards_are_exported() {
    let etcd = Etcd::start();
    let store = PgServer::shared().database();
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Node> =
        ["n1", "n2"].iter().map(|id| Node::start(id, &etcd, &store, dir.path())).collect();
    for n in &nodes {
        n.ready().await;
    }
    // A tenant n2 owns, created through n1: the call is forwarded.
    let ids = ["n1", "n2"];
    let tenant = (0..)
        .map(|i| format!("m{i}"))
        .find(|t| desired_owner(shard_of(t, 1024), ids) == Some("n2"))
        .unwrap();
    let c = nodes[0].clients().await;
    let create = pb::CreateTenantRequest {
        tenant_id: tenant.clone(),
        display_name: tenant.clone(),
        settings: None,
        request_id: "create-1".into(),
        routing: Default::default(),
    };
    retry(|| {
        let mut c = c.clone();
        let r = create.clone();
        async move { c.admin.create_tenant(r).await }
    })
    .await
    .expect("create tenant through n1");

    let first = scrape(&nodes[0].metrics);
    for want in [
        r#"switchboard_forwarded_total{outcome="forwarded"}"#,
        "switchboard_etcd_request_seconds_bucket{",
        "switchboard_cluster_members ",
        "switchboard_shards_owned ",
        "switchboard_shards_unowned ",
        "switchboard_lease_renewal_failures_total ",
    ] {
        assert!(first.contains(want), "missing {want} on n1:\n{first}");
    }
    for n in &nodes {
        promtool_accepts(&scrape(&n.metrics));
    }
}
