//! Cluster figures on this machine, printed: time from `kill -9` of a tenant's owner to the
//! tenant being served again (default lease TTL), customer message → agent stream latency
//! with the gateway, the agent and the tenant on three different nodes, and how many shards
//! move when a third node joins and when it leaves.
//!
//! `cargo bench -p switchboard-cluster-tests` (release build; needs etcd and PostgreSQL from
//! `scripts/setup`).

#![allow(clippy::print_stdout)] // a benchmark prints its figures

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use support::{Clients, Etcd, Node, retry};
use switchboard_node::cluster::{desired_owner, shard_of};
use switchboard_proto::v1 as pb;
use switchboard_store::testing::PgServer;

const SHARDS: u32 = 1024;
const DEFAULT_TTL: u64 = 10;

fn request(t: &str, customer: &str, text: &str, id: &str) -> pb::PostMessageRequest {
    pb::PostMessageRequest {
        customer: format!("tenants/{t}/customers/{customer}"),
        channel: pb::Channel::Web as i32,
        text: text.into(),
        group: format!("tenants/{t}/groups/support"),
        request_id: id.into(),
        ..Default::default()
    }
}

async fn setup(c: &mut Clients, t: &str) {
    c.admin
        .create_tenant(pb::CreateTenantRequest { tenant_id: t.into(), ..Default::default() })
        .await
        .unwrap();
    c.admin
        .put_group(pb::PutGroupRequest {
            name: format!("tenants/{t}/groups/support"),
            ..Default::default()
        })
        .await
        .unwrap();
    c.admin
        .put_agent(pb::PutAgentRequest {
            name: format!("tenants/{t}/agents/a0"),
            nickname: "a0".into(),
            capacity: 100,
            groups: vec![format!("tenants/{t}/groups/support")],
            ..Default::default()
        })
        .await
        .unwrap();
    c.agent
        .set_status(pb::SetStatusRequest {
            agent: format!("tenants/{t}/agents/a0"),
            status: pb::AgentStatus::Online as i32,
            request_id: String::new(),
        })
        .await
        .unwrap();
}

fn handoffs(n: &Node, kind: &str) -> f64 {
    n.metric(&format!("switchboard_shard_handoffs_total{{kind=\"{kind}\"}}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let etcd = Etcd::start();
    let pg = PgServer::start().expect("postgres");
    let store = pg.database();
    let dir = tempfile::tempdir().unwrap();
    let start = |id: &str| Node::start_with_ttl(id, &etcd, &store, dir.path(), DEFAULT_TTL);
    let n1 = start("n1");
    n1.ready().await;
    let n2 = start("n2");
    n2.ready().await;

    // A join: the third node takes what rendezvous hashing gives it, and nothing else moves.
    let before: f64 = [&n1, &n2].iter().map(|n| handoffs(n, "released")).sum();
    let mut n3 = start("n3");
    n3.ready().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let moved_on_join: f64 =
        [&n1, &n2].iter().map(|n| handoffs(n, "released")).sum::<f64>() - before;
    let expected =
        (0..SHARDS).filter(|s| desired_owner(*s, ["n1", "n2", "n3"]) == Some("n3")).count();
    println!(
        "join of a third node: {moved_on_join} of {SHARDS} shards moved ({expected} is what n3 wins)"
    );

    // Cross-node latency: gateway on n1, agent stream on n2, tenant on n3.
    let ids = ["n1", "n2", "n3"];
    let t = (0..)
        .map(|i| format!("t{i}"))
        .find(|t| desired_owner(shard_of(t, SHARDS), ids) == Some("n3"))
        .unwrap();
    let mut gateway = Clients::connect(&n1.grpc).await;
    let mut desk = Clients::connect(&n2.grpc).await;
    setup(&mut gateway, &t).await;
    let mut stream = desk
        .agent
        .stream_events(pb::StreamAgentEventsRequest {
            agent: format!("tenants/{t}/agents/a0"),
            after_cursor: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut latencies = Vec::new();
    for i in 0..2_000 {
        let text = format!("m{i}");
        let sent = tokio::time::Instant::now();
        gateway
            .channel
            .post_message(request(&t, &format!("c{}", i % 50), &text, &format!("lat-{i}")))
            .await
            .unwrap();
        loop {
            let e = stream.message().await.unwrap().unwrap();
            if matches!(&e.event, Some(pb::agent_event::Event::CustomerMessage(m)) if m.text == text)
            {
                break;
            }
        }
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    println!(
        "customer message → agent stream across three nodes ({} messages, one at a time): p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );

    // A graceful leave hands over exactly what the leaving node held.
    let held = n3.metric("switchboard_shards_owned");
    let before: f64 = [&n1, &n2].iter().map(|n| handoffs(n, "acquired")).sum();
    assert!(n3.terminate());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let taken: f64 = [&n1, &n2].iter().map(|n| handoffs(n, "acquired")).sum::<f64>() - before;
    println!("graceful leave of the third node: it held {held} shards; the others took {taken}");
    n3.restart();
    n3.ready().await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9 of the tenant's owner: how long until the tenant is served again.
    let killed = tokio::time::Instant::now();
    n3.kill9();
    let req = request(&t, "after-kill", "hello again", "after-kill");
    retry(|| {
        let mut c = gateway.clone();
        let r = req.clone();
        async move { c.channel.post_message(r).await }
    })
    .await
    .unwrap();
    println!(
        "kill -9 of the owner → its tenant served again: {:.2} s (lease TTL {DEFAULT_TTL} s)",
        killed.elapsed().as_secs_f64()
    );
}
