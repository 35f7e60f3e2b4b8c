//! A tenant to test against: groups, agents and customers' first messages over the public
//! API (shared by the API and search tests).

use switchboard_proto::v1 as pb;

use super::{Clients, rid};

/// Tenant `t` with auto-accepting groups `support` (the default) and `billing`, the
/// tenant's `replies`, and `agents` as (id, groups, capacity, supervisor); the ones named in
/// `online` sign in.
pub async fn floor(
    c: &mut Clients,
    t: &str,
    replies: Option<pb::ReplySettings>,
    agents: &[(&str, &[&str], u32, bool)],
    online: &[&str],
) {
    floor_on(c, t, replies, agents, online, pb::TenantRouting::Unspecified).await;
}

/// [`floor`] on a tenant served as `routing` says.
pub async fn floor_on(
    c: &mut Clients,
    t: &str,
    replies: Option<pb::ReplySettings>,
    agents: &[(&str, &[&str], u32, bool)],
    online: &[&str],
    routing: pb::TenantRouting,
) {
    c.admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: t.into(),
            display_name: capitalized(t),
            settings: None,
            request_id: rid("tenant"),
            routing: routing as i32,
        })
        .await
        .expect("create tenant");
    for g in ["support", "billing"] {
        c.admin
            .put_group(pb::PutGroupRequest {
                name: format!("tenants/{t}/groups/{g}"),
                display_name: g.to_uppercase(),
                policy: Some(pb::RoutingPolicy {
                    offer_mode: pb::OfferMode::AutoAccept as i32,
                    ..Default::default()
                }),
                request_id: rid("group"),
                ..Default::default()
            })
            .await
            .expect("put group");
    }
    let settings = pb::TenantSettings {
        default_group: format!("tenants/{t}/groups/support"),
        replies,
        ..Default::default()
    };
    c.admin
        .update_tenant(pb::UpdateTenantRequest {
            name: format!("tenants/{t}"),
            settings: Some(settings),
            request_id: rid("settings"),
            ..Default::default()
        })
        .await
        .expect("update tenant");
    for (id, groups, capacity, supervisor) in agents {
        c.admin
            .put_agent(pb::PutAgentRequest {
                name: format!("tenants/{t}/agents/{id}"),
                nickname: id.to_uppercase(),
                capacity: *capacity,
                groups: groups.iter().map(|g| format!("tenants/{t}/groups/{g}")).collect(),
                supervisor: *supervisor,
                request_id: rid("agent"),
                ..Default::default()
            })
            .await
            .expect("put agent");
    }
    for id in online {
        sign_in(c, t, id).await;
    }
}

/// A customer of tenant `t` writes on the web channel; its conversation.
pub async fn write(c: &mut Clients, t: &str, customer: &str, group: &str) -> pb::Conversation {
    let group =
        if group.is_empty() { String::new() } else { format!("tenants/{t}/groups/{group}") };
    post(c, pb::PostMessageRequest { group, ..hello(t, customer) }).await
}

/// A conversation as `GetConversation` answers it.
pub async fn get(c: &mut Clients, name: &str) -> pb::Conversation {
    let r = pb::GetConversationRequest { conversation: name.into() };
    c.channel.get_conversation(r).await.expect("get conversation").into_inner()
}

/// "hello" from `customer` of tenant `t` on the web channel, to adjust before posting.
pub fn hello(t: &str, customer: &str) -> pb::PostMessageRequest {
    pb::PostMessageRequest {
        customer: format!("tenants/{t}/customers/{customer}"),
        channel: pb::Channel::Web as i32,
        text: "hello".into(),
        request_id: rid("post"),
        ..Default::default()
    }
}

/// Posts a customer message; its conversation.
pub async fn post(c: &mut Clients, r: pb::PostMessageRequest) -> pb::Conversation {
    c.channel
        .post_message(r)
        .await
        .expect("post message")
        .into_inner()
        .conversation
        .expect("conversation")
}

/// Tenant `t`'s messages for customers, from the first.
pub async fn outbound(c: &mut Clients, t: &str) -> tonic::Streaming<pb::OutboundMessage> {
    c.channel
        .stream_outbound(pb::StreamOutboundRequest {
            tenant: format!("tenants/{t}"),
            after_cursor: 0,
        })
        .await
        .expect("stream outbound")
        .into_inner()
}

/// Signs agent `id` of tenant `t` in.
pub async fn sign_in(c: &mut Clients, t: &str, id: &str) {
    c.agent
        .set_status(pb::SetStatusRequest {
            agent: format!("tenants/{t}/agents/{id}"),
            status: pb::AgentStatus::Online as i32,
            request_id: rid("online"),
        })
        .await
        .expect("sign in");
}

/// `desk` → `Desk`: the display name the tests expect.
fn capitalized(t: &str) -> String {
    let mut chars = t.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
