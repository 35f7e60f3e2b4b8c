//! Traffic through every path the dashboards show, over the public gRPC API of a running node
//! (single node or cluster). Shared by `deploy.rs` (every metric the dashboards read is
//! exported) and the cluster tests' `prometheus.rs` (every panel returns data in a real
//! Prometheus), which include this file by path.

use std::sync::atomic::{AtomicU64, Ordering};

use switchboard_proto::v1 as pb;
use switchboard_proto::v1::{
    admin_service_client::AdminServiceClient, agent_service_client::AgentServiceClient,
    channel_service_client::ChannelServiceClient,
    supervisor_service_client::SupervisorServiceClient,
};
use tonic::transport::Channel;

/// The clients of one connection.
pub struct Clients {
    pub admin: AdminServiceClient<Channel>,
    pub channel: ChannelServiceClient<Channel>,
    pub agent: AgentServiceClient<Channel>,
    pub supervisor: SupervisorServiceClient<Channel>,
}

impl Clients {
    pub fn new(channel: Channel) -> Clients {
        Clients {
            admin: AdminServiceClient::new(channel.clone()),
            channel: ChannelServiceClient::new(channel.clone()),
            agent: AgentServiceClient::new(channel.clone()),
            supervisor: SupervisorServiceClient::new(channel),
        }
    }
}

/// Request ids unique within the test process.
pub fn rid(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("traffic-{tag}-{}", N.fetch_add(1, Ordering::Relaxed))
}

pub async fn opened(c: &mut Clients, r: pb::PostMessageRequest) -> pb::Conversation {
    c.channel.post_message(r).await.expect("post").into_inner().conversation.expect("conversation")
}

/// The customer's channel closes the conversation.
pub async fn customer_leaves(c: &mut Clients, conversation: &str) {
    c.channel
        .close_conversation(pb::ConversationRequest {
            conversation: conversation.into(),
            request_id: rid("close"),
        })
        .await
        .expect("customer leaves");
}

pub fn dur(seconds: i64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration { seconds, nanos: 0 })
}

/// A skill group with an offer mode (offers time out after 10 minutes).
pub async fn put_group(c: &mut Clients, t: &str, g: &str, mode: pb::OfferMode) {
    c.admin
        .put_group(pb::PutGroupRequest {
            name: format!("tenants/{t}/groups/{g}"),
            display_name: g.into(),
            policy: Some(pb::RoutingPolicy {
                offer_mode: mode as i32,
                offer_timeout: dur(600),
                ..Default::default()
            }),
            replies: None,
            request_id: rid("group"),
            update_mask: None,
        })
        .await
        .expect("put group");
}

/// An agent (offline) of one group.
pub async fn put_agent(
    c: &mut Clients,
    t: &str,
    a: &str,
    group: &str,
    capacity: u32,
    supervisor: bool,
) {
    c.admin
        .put_agent(pb::PutAgentRequest {
            name: format!("tenants/{t}/agents/{a}"),
            nickname: a.into(),
            capacity,
            groups: vec![format!("tenants/{t}/groups/{group}")],
            replies: None,
            supervisor,
            request_id: rid("agent"),
            update_mask: None,
            proficiencies: Vec::new(),
        })
        .await
        .expect("put agent");
}

pub async fn set_status(c: &mut Clients, t: &str, a: &str, status: pb::AgentStatus) {
    c.agent
        .set_status(pb::SetStatusRequest {
            agent: format!("tenants/{t}/agents/{a}"),
            status: status as i32,
            request_id: rid("status"),
        })
        .await
        .expect("set status");
}

/// Offers made, declined, accepted and withdrawn by sign-out; a first response; an agent's
/// transfer and a supervisor's reassignment of a waiting conversation to another group;
/// abandonments; automatic replies sent and withheld, and an agent message refused, for the
/// channel budget.
pub async fn drive_every_path(channel: Channel, t: &str) {
    drive_every_path_on(channel, t, pb::TenantRouting::Unspecified).await;
}

/// [`drive_every_path`] on a tenant served as `routing` says.
pub async fn drive_every_path_on(channel: Channel, t: &str, routing: pb::TenantRouting) {
    let mut c = Clients::new(channel);
    c.admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: t.into(),
            display_name: "Ops".into(),
            settings: None,
            request_id: rid("tenant"),
            routing: routing as i32,
        })
        .await
        .expect("create tenant");
    for (g, mode) in [("sales", pb::OfferMode::Offer), ("vip", pb::OfferMode::AutoAccept)] {
        put_group(&mut c, t, g, mode).await;
    }
    // Six message-received texts on a mini-program (budget 5, one kept for humans): four go
    // out, two are withheld.
    c.admin
        .update_tenant(pb::UpdateTenantRequest {
            name: format!("tenants/{t}"),
            display_name: "Ops".into(),
            settings: Some(pb::TenantSettings {
                default_group: format!("tenants/{t}/groups/sales"),
                message_received: Some(pb::MessageReceivedReply {
                    texts: (1..=6).map(|i| format!("received {i}")).collect(),
                    also_in_session: false,
                }),
                ..Default::default()
            }),
            request_id: rid("settings"),
            update_mask: None,
        })
        .await
        .expect("update tenant");
    for a in ["alice", "bob", "boss"] {
        put_agent(&mut c, t, a, "sales", 2, a == "boss").await;
    }
    let agent = |a: &str| format!("tenants/{t}/agents/{a}");
    let set_status = async |c: &mut Clients, a: &str, s: pb::AgentStatus| {
        set_status(c, t, a, s).await;
    };
    set_status(&mut c, "alice", pb::AgentStatus::Online).await;
    let post = |customer: &str, channel: pb::Channel| pb::PostMessageRequest {
        customer: format!("tenants/{t}/customers/{customer}"),
        channel: channel as i32,
        text: "hello".into(),
        group: String::new(),
        priority: 0,
        nickname: customer.into(),
        request_id: rid("post"),
    };
    let first = opened(&mut c, post("c1", pb::Channel::MiniProgram)).await;
    assert_eq!(first.state, pb::ConversationState::Offered as i32, "offered to alice");
    let on = |a: &str| pb::AgentConversationRequest {
        agent: agent(a),
        conversation: first.name.clone(),
        request_id: rid("conv"),
    };
    c.agent.decline(on("alice")).await.expect("alice declines");
    // Refused: alice holds no offer for it any more.
    c.agent.accept(on("alice")).await.expect_err("nothing to accept");
    set_status(&mut c, "bob", pb::AgentStatus::Online).await;
    c.agent.accept(on("bob")).await.expect("bob accepts");
    let answer = pb::SendMessageRequest {
        agent: agent("bob"),
        conversation: first.name.clone(),
        text: "how can I help?".into(),
        tag: 0,
        request_id: rid("send"),
    };
    c.agent.send_message(answer.clone()).await.expect("bob answers");
    // His desk resends it (the answer lost on the way): answered as before, sent once, and
    // counted as an idempotent replay.
    c.agent.send_message(answer).await.expect("the resend is answered as before");
    // Four automatic replies and bob's answer used the mini-program's five slots.
    let err = c
        .agent
        .send_message(pb::SendMessageRequest {
            agent: agent("bob"),
            conversation: first.name.clone(),
            text: "are you there?".into(),
            tag: 0,
            request_id: rid("send"),
        })
        .await
        .expect_err("the channel's budget is spent");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    c.agent
        .transfer(pb::TransferRequest {
            agent: agent("bob"),
            conversation: first.name.clone(),
            to: Some(pb::transfer_request::To::ToGroup(format!("tenants/{t}/groups/vip"))),
            reset_entry_time: false,
            request_id: rid("transfer"),
        })
        .await
        .expect("transfer to vip");
    // Nobody serves vip: the customer gives up waiting.
    customer_leaves(&mut c, &first.name).await;
    // Bob alone is online and is offered the next one, then signs out: the offer goes back.
    set_status(&mut c, "alice", pb::AgentStatus::Offline).await;
    let second = opened(&mut c, post("c2", pb::Channel::Web)).await;
    assert_eq!(second.agent, agent("bob"), "offered to bob");
    set_status(&mut c, "bob", pb::AgentStatus::Offline).await;
    // It waits in sales with nobody online; a supervisor moves it to vip, where the customer
    // gives up too.
    c.supervisor
        .reassign_batch(pb::ReassignBatchRequest {
            supervisor: agent("boss"),
            conversations: vec![second.name.clone()],
            to: Some(pb::reassign_batch_request::To::ToGroup(format!("tenants/{t}/groups/vip"))),
            reset_entry_time: false,
            request_id: rid("reassign"),
        })
        .await
        .expect("supervisor reassigns");
    customer_leaves(&mut c, &second.name).await;
}
