//! Three nodes + etcd + PostgreSQL, real processes on loopback (see the harness in
//! `src/lib.rs`). Each test starts its own etcd and database and stops what it started.

mod support;

use support::{Clients, Etcd, Node, PATIENCE, retry};
use switchboard_node::cluster::{desired_owner, shard_of};
use switchboard_proto::v1 as pb;
use switchboard_store::testing::PgServer;
use tokio::sync::Mutex;

/// The tests are heavy (three nodes each); one at a time.
static SERIAL: Mutex<()> = Mutex::const_new(());

const SHARDS: u32 = 1024;

struct Cluster {
    etcd: Etcd,
    store: String,
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let etcd = Etcd::start();
        let store = PgServer::shared().database();
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for i in 1..=n {
            let node = Node::start(&format!("n{i}"), &etcd, &store, dir.path());
            node.ready().await;
            nodes.push(node);
        }
        Cluster { etcd, store, dir, nodes }
    }

    fn ids(&self) -> Vec<&str> {
        self.nodes.iter().filter(|n| n.running()).map(|n| n.id.as_str()).collect()
    }

    /// The node that should own `tenant` among the running ones.
    fn owner_of(&self, tenant: &str) -> usize {
        let id = desired_owner(shard_of(tenant, SHARDS), self.ids()).unwrap().to_owned();
        self.nodes.iter().position(|n| n.id == id).unwrap()
    }

    async fn all_ready(&self) {
        for n in self.nodes.iter().filter(|n| n.running()) {
            n.ready().await;
        }
    }
}

fn rid(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{tag}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// A tenant with one group and `agents` agents of `capacity`, all online.
async fn setup(c: &mut Clients, t: &str, agents: usize, capacity: u32) {
    let create = pb::CreateTenantRequest {
        tenant_id: t.into(),
        display_name: t.into(),
        settings: None,
        request_id: rid("create"),
    };
    retry(|| {
        let mut c = c.clone();
        let r = create.clone();
        async move { c.admin.create_tenant(r).await }
    })
    .await
    .expect("create tenant");
    let group = pb::PutGroupRequest {
        name: format!("tenants/{t}/groups/support"),
        display_name: "Support".into(),
        policy: None,
        replies: None,
        request_id: rid("group"),
    };
    retry(|| {
        let mut c = c.clone();
        let r = group.clone();
        async move { c.admin.put_group(r).await }
    })
    .await
    .expect("put group");
    for a in 0..agents {
        let put = pb::PutAgentRequest {
            name: format!("tenants/{t}/agents/a{a}"),
            nickname: format!("agent {a}"),
            capacity,
            groups: vec!["support".into()],
            replies: None,
            supervisor: false,
            request_id: rid("agent"),
        };
        retry(|| {
            let mut c = c.clone();
            let r = put.clone();
            async move { c.admin.put_agent(r).await }
        })
        .await
        .expect("put agent");
        let online = pb::SetStatusRequest {
            agent: format!("tenants/{t}/agents/a{a}"),
            status: pb::AgentStatus::Online as i32,
            request_id: rid("online"),
        };
        retry(|| {
            let mut c = c.clone();
            let r = online.clone();
            async move { c.agent.set_status(r).await }
        })
        .await
        .expect("online");
    }
}

fn post_request(t: &str, customer: &str, text: &str) -> pb::PostMessageRequest {
    pb::PostMessageRequest {
        tenant: format!("tenants/{t}"),
        customer: customer.into(),
        channel: pb::Channel::Web as i32,
        text: text.into(),
        group: "support".into(),
        priority: 0,
        nickname: String::new(),
        request_id: rid("post"),
    }
}

/// Posts, retrying through handovers and failovers with the same request id.
async fn post(c: &Clients, req: pb::PostMessageRequest) -> pb::PostMessageResponse {
    retry(|| {
        let mut c = c.clone();
        let r = req.clone();
        async move { c.channel.post_message(r).await }
    })
    .await
    .expect("post message")
    .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conversation_crosses_three_nodes_end_to_end() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start(3).await;
    cluster.all_ready().await;
    let t = (0..)
        .map(|i| format!("t{i}"))
        .find(|t| cluster.owner_of(t) == 2)
        .expect("a tenant owned by the third node");
    // The tenant's actor lives on n3; the gateway calls n1; the agent's stream is on n2.
    let mut gateway = cluster.nodes[0].clients().await;
    let mut desk = cluster.nodes[1].clients().await;
    setup(&mut gateway, &t, 1, 5).await;
    let mut stream = desk
        .agent
        .stream_events(pb::StreamAgentEventsRequest {
            agent: format!("tenants/{t}/agents/a0"),
            after_cursor: 0,
        })
        .await
        .expect("agent stream via n2")
        .into_inner();
    let posted = post(&gateway, post_request(&t, "alice", "hello from n1")).await;
    let conversation = posted.conversation.expect("conversation").name;
    let mut assigned = false;
    let mut text = None;
    while text.is_none() {
        let e = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("bounded wait")
            .expect("stream ok")
            .expect("stream open");
        match e.event {
            Some(pb::agent_event::Event::Assigned(_)) if e.conversation == conversation => {
                assigned = true
            }
            Some(pb::agent_event::Event::CustomerMessage(m)) if e.conversation == conversation => {
                text = Some(m.text)
            }
            _ => {}
        }
    }
    assert!(assigned, "assigned before the message arrived");
    assert_eq!(text.as_deref(), Some("hello from n1"));
    // The agent answers through n2; the customer's outbound stream, read on n1, carries it.
    let send = pb::SendMessageRequest {
        agent: format!("tenants/{t}/agents/a0"),
        conversation: conversation.clone(),
        text: "hi alice, agent here".into(),
        request_id: rid("send"),
        ..Default::default()
    };
    desk.agent.send_message(send).await.expect("reply via n2");
    let mut outbound = gateway
        .channel
        .stream_outbound(pb::StreamOutboundRequest {
            tenant: format!("tenants/{t}"),
            after_cursor: 0,
        })
        .await
        .expect("outbound via n1")
        .into_inner();
    loop {
        let m = tokio::time::timeout(PATIENCE, outbound.message())
            .await
            .expect("bounded wait")
            .expect("stream ok")
            .expect("open");
        if m.text == "hi alice, agent here" {
            break;
        }
    }
    // Forwarding happened on the two nodes that do not own the tenant.
    let forwarded = |n: &Node| n.metric("switchboard_forwarded_total{outcome=\"forwarded\"}");
    assert!(forwarded(&cluster.nodes[0]) >= 1.0);
    assert!(forwarded(&cluster.nodes[1]) >= 1.0);
    let owned: f64 = cluster.nodes.iter().map(|n| n.metric("switchboard_shards_owned")).sum();
    assert_eq!(owned, f64::from(SHARDS), "every shard owned exactly once");
}
