//! The live unaccepted list (issue 13 item 12, SPEC §6, seed 000) over real gRPC: agents of a
//! pull group, and a full agent of an auto-accept group, hear on their streams when a
//! conversation enters or leaves their unaccepted list (new, picked by someone else, ended,
//! transferred in, moved away, the agent joining or leaving a group); an offline member
//! hears nothing. Waits are bounded reads of
//! durable streams; nothing asserts on time.

mod support;

use support::{Clients, Node, next, rid};
use switchboard_proto::v1 as pb;
use tonic::Streaming;

const T: &str = "acme";

fn agent(a: &str) -> String {
    format!("tenants/{T}/agents/{a}")
}

fn group(g: &str) -> String {
    format!("tenants/{T}/groups/{g}")
}

async fn setup(c: &mut Clients, routing: pb::TenantRouting) {
    c.admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: T.into(),
            request_id: rid("create"),
            routing: routing as i32,
            ..Default::default()
        })
        .await
        .expect("create tenant");
    for (g, mode) in [("pull", pb::OfferMode::Pull), ("auto", pb::OfferMode::AutoAccept)] {
        c.admin
            .put_group(pb::PutGroupRequest {
                name: group(g),
                policy: Some(pb::RoutingPolicy { offer_mode: mode as i32, ..Default::default() }),
                request_id: rid("group"),
                ..Default::default()
            })
            .await
            .expect("put group");
    }
    let agents: [(&str, &[&str], u32, bool); 5] = [
        ("alice", &["pull"], 2, false),
        ("bob", &["pull"], 2, false),
        ("dave", &["auto"], 1, false),
        ("erin", &["pull"], 2, false),
        ("boss", &[], 1, true),
    ];
    for (id, groups, capacity, supervisor) in agents {
        c.admin
            .put_agent(pb::PutAgentRequest {
                name: agent(id),
                nickname: id.into(),
                capacity,
                groups: groups.iter().map(|g| format!("tenants/{T}/groups/{g}")).collect(),
                supervisor,
                request_id: rid("agent"),
                ..Default::default()
            })
            .await
            .expect("put agent");
    }
    for id in ["alice", "bob", "dave", "boss"] {
        status(c, id, pb::AgentStatus::Online).await;
    }
}

async fn status(c: &mut Clients, a: &str, s: pb::AgentStatus) {
    c.agent
        .set_status(pb::SetStatusRequest {
            agent: agent(a),
            status: s as i32,
            request_id: rid("status"),
        })
        .await
        .expect("set status");
}

async fn post(c: &mut Clients, customer: &str, to: &str) -> String {
    let r = c
        .channel
        .post_message(pb::PostMessageRequest {
            customer: format!("tenants/{T}/customers/{customer}"),
            channel: pb::Channel::Web as i32,
            text: "hello".into(),
            group: format!("tenants/{T}/groups/{to}"),
            request_id: rid("post"),
            ..Default::default()
        })
        .await
        .expect("post message");
    r.into_inner().conversation.expect("conversation").name
}

async fn desk(c: &mut Clients, a: &str) -> Streaming<pb::AgentEvent> {
    c.agent
        .stream_events(pb::StreamAgentEventsRequest { agent: agent(a), after_cursor: 0 })
        .await
        .expect("agent stream")
        .into_inner()
}

/// What an unaccepted-list event says, or None for other events.
fn change(e: &pb::AgentEvent) -> Option<String> {
    use pb::agent_event::Event;
    match &e.event {
        Some(Event::UnacceptedAdded(a)) => Some(format!(
            "added {} {}{}",
            e.conversation,
            a.group,
            if a.pinned { " pinned" } else { "" }
        )),
        Some(Event::UnacceptedRemoved(r)) => {
            Some(format!("removed {} {}", e.conversation, r.reason))
        }
        _ => None,
    }
}

/// The next unaccepted-list event on a desk (other events skipped).
async fn next_change(desk: &mut Streaming<pb::AgentEvent>) -> String {
    loop {
        if let Some(c) = change(&next(desk).await) {
            return c;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaccepted_lists_are_live_on_every_eligible_desk() {
    unaccepted_lists_on(pb::TenantRouting::TenantActor).await;
}

/// The same on conversation, agent and router actors: the router side tells each agent's
/// side on its link, and the agent's stream shows it (`mesh::unaccepted`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaccepted_lists_are_live_on_actors() {
    unaccepted_lists_on(pb::TenantRouting::Actors).await;
}

async fn unaccepted_lists_on(routing: pb::TenantRouting) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c, routing).await;
    let (mut alice, mut bob, mut dave) =
        (desk(&mut c, "alice").await, desk(&mut c, "bob").await, desk(&mut c, "dave").await);
    let pull = group("pull");
    let auto = group("auto");

    // New, in a pull group: both online members see it; the offline one does not.
    let carol = post(&mut c, "carol", "pull").await;
    for d in [&mut alice, &mut bob] {
        assert_eq!(next_change(d).await, format!("added {carol} {pull}"));
    }
    let listed = c
        .agent
        .list_unaccepted(pb::ListAgentConversationsRequest { agent: agent("alice"), page: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.conversations.iter().map(|c| &c.name).collect::<Vec<_>>(), [&carol]);

    // Picked by someone else: gone from both lists (bob's own pick too).
    c.agent
        .pick(pb::AgentConversationRequest {
            agent: agent("bob"),
            conversation: carol.clone(),
            request_id: rid("pick"),
        })
        .await
        .expect("bob picks");
    for d in [&mut alice, &mut bob] {
        assert_eq!(next_change(d).await, format!("removed {carol} assigned"));
    }

    // A full agent in auto-accept mode sees what waits for its group, and its end.
    let frank = post(&mut c, "frank", "auto").await; // assigned to dave at once: never listed
    let grace = post(&mut c, "grace", "auto").await;
    assert_eq!(next_change(&mut dave).await, format!("added {grace} {auto}"));
    c.channel
        .close_conversation(pb::ConversationRequest {
            conversation: grace.clone(),
            request_id: rid("close"),
        })
        .await
        .expect("grace leaves");
    assert_eq!(next_change(&mut dave).await, format!("removed {grace} ended"));

    // Transferred in: dave hands frank's conversation to the pull group.
    c.agent
        .transfer(pb::TransferRequest {
            agent: agent("dave"),
            conversation: frank.clone(),
            to: Some(pb::transfer_request::To::ToGroup(pull.clone())),
            request_id: rid("transfer"),
            ..Default::default()
        })
        .await
        .expect("dave transfers");
    for d in [&mut alice, &mut bob] {
        assert_eq!(next_change(d).await, format!("added {frank} {pull}"));
    }

    // Moved away by a supervisor into the auto group, where dave is full again: gone from
    // the pull desks, listed on dave's.
    post(&mut c, "ivan", "auto").await; // dave takes ivan at once
    c.supervisor
        .reassign_batch(pb::ReassignBatchRequest {
            supervisor: agent("boss"),
            conversations: vec![frank.clone()],
            to: Some(pb::reassign_batch_request::To::ToGroup(auto.clone())),
            request_id: rid("reassign"),
            ..Default::default()
        })
        .await
        .expect("boss moves it");
    for d in [&mut alice, &mut bob] {
        assert_eq!(next_change(d).await, format!("removed {frank} moved"));
    }
    assert_eq!(next_change(&mut dave).await, format!("added {frank} {auto}"));

    // alice (busy: signed in, nothing pushed to her) joins the auto group, where frank
    // waits: her list gains him; leaving it again, she loses him.
    status(&mut c, "alice", pb::AgentStatus::Busy).await;
    let groups = |gs: &[&str]| pb::PutAgentRequest {
        name: agent("alice"),
        groups: gs.iter().map(|g| group(g)).collect(),
        update_mask: Some(prost_types::FieldMask { paths: vec!["groups".into()] }),
        request_id: rid("groups"),
        ..Default::default()
    };
    c.admin.put_agent(groups(&["pull", "auto"])).await.expect("alice joins auto");
    assert_eq!(next_change(&mut alice).await, format!("added {frank} {auto}"));
    c.admin.put_agent(groups(&["pull"])).await.expect("alice leaves auto");
    assert_eq!(next_change(&mut alice).await, format!("removed {frank} moved"));

    // The offline member heard none of it: its first event is its own sign-in.
    status(&mut c, "erin", pb::AgentStatus::Online).await;
    let mut erin = desk(&mut c, "erin").await;
    let first = next(&mut erin).await;
    assert!(
        matches!(first.event, Some(pb::agent_event::Event::StatusChanged(_))),
        "erin was offline throughout: {first:?}"
    );
    drop(node);
}
