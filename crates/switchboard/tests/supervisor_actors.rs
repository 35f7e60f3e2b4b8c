//! Transfers and the supervisor's commands of a tenant created with `TENANT_ROUTING_ACTORS`,
//! served by its router and conversation actors (issue 12's cut-over), over real gRPC
//! against a real `switchboard serve` process on SQLite: transfers to an agent and to a
//! group (and their refusals, with the tenant actor's codes), a supervisor's status change
//! seen by the router and the agent's desk, whispers on the desk and never on the outbox,
//! a supervisor's end, batches with per-item results, retries by request id applied once,
//! and a SIGTERM restart in between. Waits are bounded; nothing asserts on time.

mod support;

use support::desk::get;
use support::{Clients, Node, next, rid, until};
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::agent_event::Event;
use tonic::Code;

const T: &str = "acme";

fn agent(a: &str) -> String {
    format!("tenants/{T}/agents/{a}")
}

fn group(g: &str) -> String {
    format!("tenants/{T}/groups/{g}")
}

/// An actor tenant: groups `support` (the default) and `billing`; supervisor `boss`
/// (support), `ann` (support, capacity 2), `bob` (support and billing, capacity 1), `cid`
/// (support, capacity 2, signed in late). Everything is configured before the tenant's mesh loads (the
/// mesh's configuration is the one it loaded).
async fn setup(c: &mut Clients) {
    support::create_actor_tenant(c, T).await;
    for g in ["support", "billing"] {
        c.admin
            .put_group(pb::PutGroupRequest {
                name: group(g),
                display_name: g.into(),
                request_id: rid("group"),
                ..Default::default()
            })
            .await
            .expect("put group");
    }
    let agents: [(&str, u32, &[&str], bool); 4] = [
        ("boss", 2, &["support"], true),
        ("ann", 2, &["support"], false),
        ("bob", 1, &["support", "billing"], false),
        ("cid", 2, &["support"], false),
    ];
    for (a, capacity, groups, supervisor) in agents {
        c.admin
            .put_agent(pb::PutAgentRequest {
                name: agent(a),
                nickname: a.into(),
                capacity,
                groups: groups.iter().map(|g| group(g)).collect(),
                supervisor,
                request_id: rid("agent"),
                ..Default::default()
            })
            .await
            .expect("put agent");
    }
    c.admin
        .update_tenant(pb::UpdateTenantRequest {
            name: format!("tenants/{T}"),
            settings: Some(pb::TenantSettings {
                default_group: group("support"),
                message_received: Some(pb::MessageReceivedReply {
                    texts: vec!["got it".into()],
                    also_in_session: true,
                }),
                ..Default::default()
            }),
            display_name: "Acme".into(),
            request_id: rid("settings"),
            update_mask: None,
        })
        .await
        .expect("update tenant");
}

async fn sign_in(c: &mut Clients, a: &str) {
    let r = pb::SetStatusRequest {
        agent: agent(a),
        status: pb::AgentStatus::Online as i32,
        request_id: rid("online"),
    };
    c.agent.set_status(r).await.expect("sign in");
}

/// A customer's first message: its conversation's name.
async fn open(c: &mut Clients, customer: &str) -> String {
    let r = pb::PostMessageRequest {
        customer: format!("tenants/{T}/customers/{customer}"),
        channel: pb::Channel::Web as i32,
        text: "hello".into(),
        request_id: rid("post"),
        ..Default::default()
    };
    let opened = c.channel.post_message(r).await.expect("post").into_inner();
    opened.conversation.expect("its conversation").name
}

/// Waits (bounded) until the conversation is in `state` with `agent` (empty: none).
async fn settled(c: &mut Clients, name: &str, state: pb::ConversationState, agent: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = get(c, name).await;
        if now.state == state as i32 && now.agent == agent {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} never got to {state:?}: {now:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// What the agent actor says it holds (offered, then assigned).
async fn assigned(c: &mut Clients, a: &str) -> Vec<String> {
    let r = pb::ListAgentConversationsRequest { agent: agent(a), page: None };
    let listed = c.agent.list_assigned(r).await.expect("list assigned").into_inner();
    listed.conversations.into_iter().map(|c| c.name).collect()
}

/// Waits (bounded) until the agent actor holds exactly `want`.
async fn holds(c: &mut Clients, a: &str, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut now = assigned(c, a).await;
        now.sort();
        let mut w: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
        w.sort();
        if now == w {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{a} holds {now:?}, not {w:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn transfer(by: &str, name: &str, to: pb::transfer_request::To, id: &str) -> pb::TransferRequest {
    pb::TransferRequest {
        agent: agent(by),
        conversation: name.into(),
        to: Some(to),
        reset_entry_time: false,
        request_id: id.into(),
    }
}

fn to_agent(a: &str) -> pb::transfer_request::To {
    pb::transfer_request::To::ToAgent(agent(a))
}

fn set_status(
    by: &str,
    a: &str,
    status: pb::AgentStatus,
    id: &str,
) -> pb::SupervisorSetStatusRequest {
    pb::SupervisorSetStatusRequest {
        supervisor: agent(by),
        agent: agent(a),
        status: status as i32,
        request_id: id.into(),
    }
}

fn end(by: &str, name: &str, id: &str) -> pb::SupervisorConversationRequest {
    pb::SupervisorConversationRequest {
        supervisor: agent(by),
        conversation: name.into(),
        request_id: id.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_and_supervisor_commands_are_served_by_the_actors() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c).await;
    sign_in(&mut c, "ann").await;
    let c1 = open(&mut c, "u1").await;
    let c2 = open(&mut c, "u2").await;
    settled(&mut c, &c1, pb::ConversationState::Assigned, &agent("ann")).await;
    settled(&mut c, &c2, pb::ConversationState::Assigned, &agent("ann")).await;
    sign_in(&mut c, "bob").await;
    let desk = pb::StreamAgentEventsRequest { agent: agent("ann"), after_cursor: 0 };
    let mut ann_desk = c.agent.stream_events(desk).await.expect("ann's desk").into_inner();
    let mut out = c
        .channel
        .stream_outbound(pb::StreamOutboundRequest {
            tenant: format!("tenants/{T}"),
            after_cursor: 0,
        })
        .await
        .expect("outbound")
        .into_inner();

    // Transfer to an agent: ann's c1 goes to bob; a retry with the same request id answers
    // and moves nothing again.
    let moving = rid("transfer");
    let moved = c.agent.transfer(transfer("ann", &c1, to_agent("bob"), &moving)).await;
    let moved = moved.expect("transfer to bob").into_inner();
    assert_eq!(moved.name, c1);
    settled(&mut c, &c1, pb::ConversationState::Assigned, &agent("bob")).await;
    holds(&mut c, "bob", &[&c1]).await;
    holds(&mut c, "ann", &[&c2]).await;
    let again = c.agent.transfer(transfer("ann", &c1, to_agent("bob"), &moving)).await;
    assert_eq!(again.expect("the retry").into_inner().name, c1);
    holds(&mut c, "bob", &[&c1]).await;

    // Refusals, with the tenant actor's codes: bob is full, cid offline, bob does not hold
    // c2, an unknown target.
    let full = c.agent.transfer(transfer("ann", &c2, to_agent("bob"), &rid("full"))).await;
    assert_eq!(full.unwrap_err().code(), Code::ResourceExhausted, "bob holds 1 at most");
    let offline = c.agent.transfer(transfer("ann", &c2, to_agent("cid"), &rid("off"))).await;
    assert_eq!(offline.unwrap_err().code(), Code::FailedPrecondition);
    let not_his = c.agent.transfer(transfer("bob", &c2, to_agent("ann"), &rid("his"))).await;
    assert_eq!(not_his.unwrap_err().code(), Code::FailedPrecondition);
    let nobody = c.agent.transfer(transfer("ann", &c2, to_agent("nobody"), &rid("no"))).await;
    assert_eq!(nobody.unwrap_err().code(), Code::NotFound);
    holds(&mut c, "ann", &[&c2]).await;

    // Whisper: on ann's desk, a `whisper` transcript row, never on the customer's outbox.
    let whisper = pb::WhisperRequest {
        supervisor: agent("boss"),
        conversation: c2.clone(),
        text: "offer the discount".into(),
        request_id: rid("whisper"),
    };
    let not_boss = pb::WhisperRequest { supervisor: agent("ann"), ..whisper.clone() };
    let e = c.supervisor.whisper(not_boss).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let said = c.supervisor.whisper(whisper.clone()).await.expect("whisper").into_inner();
    let row = said.message.clone().expect("its transcript row");
    assert_eq!((row.sender.as_str(), row.agent.as_str()), ("whisper", agent("boss").as_str()));
    let again = c.supervisor.whisper(whisper).await.expect("the retry").into_inner();
    assert_eq!(again, said, "answered from the store");

    // Transfer to a group: c2 leaves ann for billing (bob, its only member, is full).
    let to_billing = pb::transfer_request::To::ToGroup(group("billing"));
    let queued = c.agent.transfer(transfer("ann", &c2, to_billing, &rid("group"))).await;
    assert_eq!(queued.expect("transfer to billing").into_inner().name, c2);
    settled(&mut c, &c2, pb::ConversationState::Queued, "").await;
    assert_eq!(get(&mut c, &c2).await.group, group("billing"));
    holds(&mut c, "ann", &[]).await;
    // Ann's desk: the whisper once (its retry applied nothing), then c2's release.
    let seen = until(&mut ann_desk, |e| {
        matches!(e.event, Some(Event::Released(_))) && e.conversation == c2
    })
    .await;
    let whispers: Vec<_> = seen
        .iter()
        .filter_map(|e| match &e.event {
            Some(Event::Whisper(w)) => Some((e.conversation.clone(), w.supervisor.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(whispers, vec![(c2.clone(), agent("boss"))], "{seen:?}");

    // The supervisor's status change: the router answers it, ann's desk hears it.
    let busy = rid("busy");
    let set =
        c.supervisor.set_agent_status(set_status("boss", "ann", pb::AgentStatus::Busy, &busy));
    let ann = set.await.expect("ann busy").into_inner();
    assert_eq!(
        (ann.name.as_str(), ann.status),
        (agent("ann").as_str(), pb::AgentStatus::Busy as i32)
    );
    let seen = until(&mut ann_desk, |e| {
        matches!(&e.event, Some(Event::StatusChanged(s)) if s.status == pb::AgentStatus::Busy as i32)
    })
    .await;
    let Some(Event::StatusChanged(changed)) = &seen.last().unwrap().event else { unreachable!() };
    assert_eq!(changed.cause, "supervisor");
    let again =
        c.supervisor.set_agent_status(set_status("boss", "ann", pb::AgentStatus::Busy, &busy));
    assert_eq!(again.await.expect("the retry").into_inner().status, pb::AgentStatus::Busy as i32);
    // Never out of offline; only supervisors.
    let forced = c.supervisor.set_agent_status(set_status(
        "boss",
        "cid",
        pb::AgentStatus::Online,
        &rid("f"),
    ));
    assert_eq!(forced.await.unwrap_err().code(), Code::FailedPrecondition);
    let by_ann =
        c.supervisor.set_agent_status(set_status("ann", "bob", pb::AgentStatus::Busy, &rid("a")));
    assert_eq!(by_ann.await.unwrap_err().code(), Code::PermissionDenied);

    // The supervisor ends bob's c1: ended_by_supervisor; a retry answers the same.
    let ending = rid("end");
    let ended = c.supervisor.end_conversation(end("boss", &c1, &ending)).await;
    let ended = ended.expect("end").into_inner();
    assert_eq!(ended.state, pb::ConversationState::Ended as i32);
    assert_eq!(ended.transitions.last().expect("transitions").cause, "ended_by_supervisor");
    let again = c.supervisor.end_conversation(end("boss", &c1, &ending)).await;
    assert_eq!(again.expect("the retry").into_inner(), ended);
    // Bob is free again: c2, waiting in billing, goes to him.
    settled(&mut c, &c2, pb::ConversationState::Assigned, &agent("bob")).await;

    // ReassignBatch to cid: bob's c2 moves; a bad name, an unknown number and c3 (cid's
    // own already) fail alone.
    sign_in(&mut c, "cid").await;
    let c3 = open(&mut c, "u3").await;
    settled(&mut c, &c3, pb::ConversationState::Assigned, &agent("cid")).await;
    let unknown = format!("tenants/{T}/conversations/{}", (1u64 << 52) | 999_999);
    let items =
        vec![c2.clone(), format!("tenants/{T}/conversations/x"), unknown.clone(), c3.clone()];
    let reassign = pb::ReassignBatchRequest {
        supervisor: agent("boss"),
        conversations: items.clone(),
        to: Some(pb::reassign_batch_request::To::ToAgent(agent("cid"))),
        reset_entry_time: false,
        request_id: rid("reassign"),
    };
    // Two copies at once (as a client's retry racing its first try): one is applied, both
    // answer the same (applied twice, the second copy's c2 would fail: cid holds it).
    let mut twin = c.supervisor.clone();
    let (batch, copy) = tokio::join!(
        c.supervisor.reassign_batch(reassign.clone()),
        twin.reassign_batch(reassign.clone())
    );
    let batch = batch.expect("reassign").into_inner();
    assert_eq!(copy.expect("its copy").into_inner(), batch);
    let oks: Vec<bool> = batch.results.iter().map(|r| r.ok).collect();
    assert_eq!(oks, vec![true, false, false, false], "{batch:?}");
    assert_eq!(batch.results.iter().map(|r| r.conversation.clone()).collect::<Vec<_>>(), items);
    assert!(batch.results[1].error.contains("conversations[1]"), "{batch:?}");
    assert!(batch.results.iter().skip(1).all(|r| !r.error.is_empty()), "{batch:?}");
    settled(&mut c, &c2, pb::ConversationState::Assigned, &agent("cid")).await;
    holds(&mut c, "bob", &[]).await;
    let again = c.supervisor.reassign_batch(reassign.clone()).await.expect("retry").into_inner();
    assert_eq!(again, batch, "answered from the store");

    // EndBatch: c2 and c3 end, the repeat of c2 and the unknown one fail alone.
    let end_batch = pb::EndBatchRequest {
        supervisor: agent("boss"),
        conversations: vec![c2.clone(), c3.clone(), c2.clone(), unknown],
        request_id: rid("end-batch"),
    };
    let batch = c.supervisor.end_batch(end_batch.clone()).await.expect("end batch").into_inner();
    let oks: Vec<bool> = batch.results.iter().map(|r| r.ok).collect();
    assert_eq!(oks, vec![true, true, false, false], "{batch:?}");
    let last = get(&mut c, &c3).await;
    assert_eq!(last.state, pb::ConversationState::Ended as i32);
    assert_eq!(last.transitions.last().unwrap().cause, "ended_in_batch");

    // No whisper on the customer's outbox: only automatic replies and end replies.
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        let m = next(&mut out).await;
        assert!(!m.text.contains("discount"), "a whisper reached the customer: {m:?}");
        kinds.push(m.reply_kind);
    }

    // A restart: stored answers are answered again, nothing applied twice.
    assert!(node.terminate(), "a clean shutdown");
    node = Node::start(dir.path());
    let mut c = node.clients().await;
    let again = c.supervisor.end_conversation(end("boss", &c1, &ending)).await;
    assert_eq!(again.expect("the retry after a restart").into_inner().name, c1);
    let again = c.supervisor.reassign_batch(reassign).await.expect("retry").into_inner();
    assert_eq!(
        again.results.iter().map(|r| r.ok).collect::<Vec<_>>(),
        vec![true, false, false, false]
    );
    let again = c.supervisor.end_batch(end_batch).await.expect("retry").into_inner();
    assert_eq!(
        again.results.iter().map(|r| r.ok).collect::<Vec<_>>(),
        vec![true, true, false, false]
    );
    let again = c.agent.transfer(transfer("ann", &c1, to_agent("bob"), &moving)).await;
    assert_eq!(again.expect("the transfer's retry after a restart").into_inner().name, c1);
    holds(&mut c, "bob", &[]).await;
    assert_eq!(get(&mut c, &c1).await.state, pb::ConversationState::Ended as i32);
}
