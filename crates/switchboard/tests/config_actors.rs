//! Configuration changes of a tenant created with `TENANT_ROUTING_ACTORS` reach its running
//! mesh (issue 12, ARCHITECTURE.md "Configuration stays with the tenant actor"), over real
//! gRPC against a real `switchboard serve` process: an agent and a group created after the
//! mesh loaded are served, a capacity change reaches the router actor, a deleted agent is
//! signed out and its conversations requeued. Every wait is for a condition, bounded; nothing
//! asserts on time.

mod support;

use std::time::Duration;

use support::{Clients, Node, rid};
use switchboard_proto::v1 as pb;
use tonic::Code;

const T: &str = "acme";
const BOB: &str = "tenants/acme/agents/bob";

fn group(id: &str) -> String {
    format!("tenants/{T}/groups/{id}")
}

/// An actor tenant whose default group is "support".
async fn setup(c: &mut Clients) {
    support::create_actor_tenant(c, T).await;
    put_group(c, "support").await;
    c.admin
        .update_tenant(pb::UpdateTenantRequest {
            name: format!("tenants/{T}"),
            settings: Some(pb::TenantSettings {
                default_group: group("support"),
                ..Default::default()
            }),
            display_name: "Acme".into(),
            request_id: rid("settings"),
            update_mask: None,
        })
        .await
        .expect("update tenant");
}

async fn put_group(c: &mut Clients, id: &str) {
    c.admin
        .put_group(pb::PutGroupRequest {
            name: group(id),
            display_name: id.into(),
            request_id: rid("group"),
            ..Default::default()
        })
        .await
        .expect("put group");
}

async fn put_bob(c: &mut Clients, capacity: u32) {
    c.admin
        .put_agent(pb::PutAgentRequest {
            name: BOB.into(),
            nickname: "Bob".into(),
            capacity,
            groups: vec![group("support")],
            request_id: rid("agent"),
            ..Default::default()
        })
        .await
        .expect("put agent");
}

fn online() -> pb::SetStatusRequest {
    pb::SetStatusRequest {
        agent: BOB.into(),
        status: pb::AgentStatus::Online as i32,
        request_id: rid("online"),
    }
}

/// Customer `who` writes (in `group`, or the default one); returns the conversation's name.
async fn post(c: &mut Clients, who: &str, group: &str) -> String {
    let r = pb::PostMessageRequest {
        customer: format!("tenants/{T}/customers/{who}"),
        channel: pb::Channel::Web as i32,
        text: "hello".into(),
        group: group.into(),
        request_id: rid("post"),
        ..Default::default()
    };
    let opened = c.channel.post_message(r).await.expect("post message").into_inner();
    opened.conversation.expect("its conversation").name
}

/// Reads the conversation until `done` says so (bounded: a minute), and returns it.
async fn until(
    c: &mut Clients,
    name: &str,
    what: &str,
    done: impl Fn(&pb::Conversation) -> bool,
) -> pb::Conversation {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = pb::GetConversationRequest { conversation: name.into() };
        let read = c.channel.get_conversation(r).await.expect("get conversation").into_inner();
        if done(&read) {
            return read;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} never {what}: {read:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn queued(c: &pb::Conversation) -> bool {
    c.state == pb::ConversationState::Queued as i32
}

/// Routed: queued, offered or assigned (the router's first decision reached it).
fn routed(c: &pb::Conversation) -> bool {
    use pb::ConversationState as S;
    [S::Queued, S::Offered, S::Assigned].iter().any(|s| c.state == *s as i32)
}

fn with_bob(c: &pb::Conversation) -> bool {
    use pb::ConversationState as S;
    c.agent == BOB && (c.state == S::Offered as i32 || c.state == S::Assigned as i32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_changes_reach_the_running_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c).await;

    // The mesh loads with the first customer, who waits: nobody is there to take her.
    let carol = post(&mut c, "carol", "").await;
    until(&mut c, &carol, "queued", queued).await;

    // An agent created after the mesh loaded: its SetStatus is served and it gets her.
    put_bob(&mut c, 2).await;
    c.agent.set_status(online()).await.expect("the new agent signs in");
    until(&mut c, &carol, "went to bob", with_bob).await;

    // A group created after the mesh loaded: PostMessage into it is served.
    put_group(&mut c, "vip").await;
    let dave = post(&mut c, "dave", &group("vip")).await;
    let read = until(&mut c, &dave, "was routed", routed).await;
    assert_eq!(read.group, group("vip"));

    // Capacity lowered to what bob holds: the router offers him nothing more.
    put_bob(&mut c, 1).await;
    let erin = post(&mut c, "erin", "").await;
    let read = until(&mut c, &erin, "was routed", routed).await;
    assert!(queued(&read), "capacity 1 is full with carol: {read:?}");
    // Raised again: erin goes to him.
    put_bob(&mut c, 2).await;
    until(&mut c, &erin, "went to bob", with_bob).await;

    // Deleted: signed out, both conversations requeued, his calls NOT_FOUND.
    c.admin
        .delete_agent(pb::DeleteAgentRequest { name: BOB.into(), request_id: rid("delete") })
        .await
        .expect("delete agent");
    for name in [&carol, &erin] {
        let read = until(&mut c, name, "was requeued", queued).await;
        assert_eq!(read.agent, "", "{read:?}");
    }
    let e = c.agent.set_status(online()).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    drop(node);
}

/// What only the router holds refuses a configuration change as the tenant actor does on its
/// own routing: a capacity below what bob serves (FAILED_PRECONDITION; his capacity and
/// groups stay as they were, and the router keeps assigning up to them), and the deletion of
/// a group a conversation waits in (refused; it stays routable, and its live `waiting`
/// figure counts her). Once nothing is in it, the group goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_refuses_a_capacity_below_load_and_deleting_a_group_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c).await;
    put_group(&mut c, "vip").await;
    put_bob(&mut c, 2).await;
    c.agent.set_status(online()).await.expect("bob signs in");
    let assigned = |c: &pb::Conversation| c.state == pb::ConversationState::Assigned as i32;
    let carol = post(&mut c, "carol", "").await;
    let dave = post(&mut c, "dave", "").await;
    for name in [&carol, &dave] {
        until(&mut c, name, "was assigned", assigned).await;
    }

    // Capacity 1 while he serves two, and in vip too: refused, nothing changes.
    let lower = pb::PutAgentRequest {
        name: BOB.into(),
        capacity: 1,
        groups: vec![group("support"), group("vip")],
        request_id: rid("lower"),
        ..Default::default()
    };
    let e = c.admin.put_agent(lower).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("serving 2 conversations"), "{e:?}");
    let get = pb::GetAgentRequest { name: BOB.into() };
    let bob = c.admin.get_agent(get.clone()).await.expect("get agent").into_inner();
    assert_eq!((bob.capacity, bob.groups.clone()), (2, vec![group("support")]), "{bob:?}");

    // A waiting conversation in vip: its deletion is refused, and she is counted there.
    let erin = post(&mut c, "erin", &group("vip")).await;
    until(&mut c, &erin, "queued", queued).await;
    let delete = || pb::DeleteGroupRequest { name: group("vip"), request_id: rid("delete") };
    let e = c.admin.delete_group(delete()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("vip"), "{e:?}");
    let vip = pb::GetGroupRequest { name: group("vip") };
    let read = c.admin.get_group(vip.clone()).await.expect("get group").into_inner();
    assert_eq!(read.waiting, 1, "{read:?}");
    let list = pb::ListGroupsRequest { tenant: format!("tenants/{T}"), page: None };
    let groups = c.admin.list_groups(list).await.expect("list groups").into_inner().groups;
    let waiting: Vec<_> = groups.iter().map(|g| (g.name.as_str(), g.waiting)).collect();
    assert_eq!(waiting, [(group("support").as_str(), 0), (group("vip").as_str(), 1)]);

    // Bob takes vip with his capacity: erin goes to him once carol is done (capacity 2).
    let put = pb::PutAgentRequest {
        name: BOB.into(),
        groups: vec![group("support"), group("vip")],
        request_id: rid("groups"),
        update_mask: Some(prost_types::FieldMask { paths: vec!["groups".into()] }),
        ..Default::default()
    };
    c.admin.put_agent(put).await.expect("bob joins vip");
    let end = pb::AgentConversationRequest {
        agent: BOB.into(),
        conversation: carol.clone(),
        request_id: rid("end"),
    };
    c.agent.end_conversation(end).await.expect("bob ends carol's");
    let read = until(&mut c, &erin, "went to bob", with_bob).await;
    assert_eq!(read.group, group("vip"), "{read:?}");

    // Still in use (erin's, and bob is in it) until he leaves it and ends hers.
    let put = pb::PutAgentRequest {
        name: BOB.into(),
        groups: vec![group("support")],
        request_id: rid("leave"),
        update_mask: Some(prost_types::FieldMask { paths: vec!["groups".into()] }),
        ..Default::default()
    };
    c.admin.put_agent(put).await.expect("bob leaves vip");
    let e = c.admin.delete_group(delete()).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let end = pb::AgentConversationRequest {
        agent: BOB.into(),
        conversation: erin.clone(),
        request_id: rid("end"),
    };
    c.agent.end_conversation(end).await.expect("bob ends erin's");
    // Frank is routed to vip by his settings, which the conversation actors keep (the tenant
    // actor cannot see them to refuse the deletion): once vip is gone he routes as if he
    // had no group, and reads so.
    let frank = pb::PutCustomerRequest {
        name: format!("tenants/{T}/customers/frank"),
        group: group("vip"),
        request_id: rid("frank"),
        ..Default::default()
    };
    c.admin.put_customer(frank).await.expect("frank routed to vip");
    c.admin.delete_group(delete()).await.expect("nothing leads to vip now");
    let e = c.admin.get_group(vip).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // A reference to the deleted group reads as empty, never as a dangling name.
    let r = pb::GetConversationRequest { conversation: erin.clone() };
    let read = c.channel.get_conversation(r).await.expect("erin's, ended").into_inner();
    assert_eq!((read.group.as_str(), read.served_by.clone()), ("", vec![BOB.to_owned()]));
    let get = pb::GetCustomerRequest { name: format!("tenants/{T}/customers/frank") };
    let read = c.admin.get_customer(get).await.expect("frank").into_inner();
    assert_eq!(read.group, "", "{read:?}");
    let franks = post(&mut c, "frank", "").await;
    let read = until(&mut c, &franks, "was routed", routed).await;
    assert_eq!(read.group, group("support"), "the default group: {read:?}");
    drop(node);
}

/// A threshold shortened while its timer is pending applies to it (a timer is state, not a
/// sleeping task): carol's agent-no-response reply, an hour away when she writes, goes once
/// support's threshold is cut to a second, as on the tenant actor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shortened_threshold_applies_to_a_timer_already_pending() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c).await;
    put_bob(&mut c, 2).await;
    c.agent.set_status(online()).await.expect("bob signs in");
    let waits = |seconds: i64| pb::PutGroupRequest {
        name: group("support"),
        replies: Some(pb::ReplySettings {
            agent_no_response: Some(pb::TimedReply {
                after: Some(prost_types::Duration { seconds, nanos: 0 }),
                texts: vec!["bob will be right with you".into()],
            }),
            ..Default::default()
        }),
        request_id: rid("replies"),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["replies.agent_no_response".into()],
        }),
        ..Default::default()
    };
    c.admin.put_group(waits(3600)).await.expect("an hour");
    let mut out = support::desk::outbound(&mut c, T).await;
    let carol = post(&mut c, "carol", "").await;
    until(&mut c, &carol, "went to bob", with_bob).await;

    c.admin.put_group(waits(1)).await.expect("a second");
    let kind = pb::ReplyKind::AgentNoResponse as i32;
    let seen = support::until(&mut out, |m| m.reply_kind == kind).await;
    let reply = seen.last().expect("the reply");
    assert_eq!(
        (reply.conversation.as_str(), reply.text.as_str()),
        (carol.as_str(), "bob will be right with you")
    );
    drop(node);
}
