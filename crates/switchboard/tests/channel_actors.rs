//! The channel API of a tenant created with `TENANT_ROUTING_ACTORS`, served by its
//! conversation actors (issue 12's cut-over), over real gRPC against a real `switchboard
//! serve` process: conversations opened and named by numbers that carry their shard,
//! automatic replies on the shared `outbox`, retries by request id answered once, reads of
//! live and ended conversations, unknown numbers, and a restart in between. Waits are
//! bounded; nothing asserts on time.

mod support;

use support::{Clients, Node, next, rid};
use switchboard_proto::v1 as pb;
use tonic::Code;

const T: &str = "acme";

/// Bit 52: a number the block allocator gave (`placement::number_in_shard`), never a tenant
/// actor's small one.
const SHARDED: u64 = 1 << 52;

fn texts(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| (*s).to_owned()).collect()
}

/// An actor tenant with one group, "support" (its default), and a message-received reply.
async fn setup(c: &mut Clients) {
    create(c).await;
    settings(c).await;
}

async fn create(c: &mut Clients) {
    c.admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: T.into(),
            display_name: "Acme".into(),
            settings: None,
            request_id: rid("create"),
            routing: pb::TenantRouting::Actors as i32,
        })
        .await
        .expect("create tenant");
    c.admin
        .put_group(pb::PutGroupRequest {
            name: format!("tenants/{T}/groups/support"),
            display_name: "Support".into(),
            request_id: rid("group"),
            ..Default::default()
        })
        .await
        .expect("put group");
}

async fn settings(c: &mut Clients) {
    c.admin
        .update_tenant(pb::UpdateTenantRequest {
            name: format!("tenants/{T}"),
            settings: Some(pb::TenantSettings {
                default_group: format!("tenants/{T}/groups/support"),
                message_received: Some(pb::MessageReceivedReply {
                    texts: texts(&["got it"]),
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

fn message(customer: &str, text: &str, request_id: &str) -> pb::PostMessageRequest {
    pb::PostMessageRequest {
        customer: format!("tenants/{T}/customers/{customer}"),
        channel: pb::Channel::Web as i32,
        text: text.into(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

async fn post(c: &mut Clients, r: pb::PostMessageRequest) -> pb::PostMessageResponse {
    c.channel.post_message(r).await.expect("post message").into_inner()
}

/// The tenant's `outbox` from the start.
async fn outbound(c: &mut Clients) -> tonic::Streaming<pb::OutboundMessage> {
    let r = pb::StreamOutboundRequest { tenant: format!("tenants/{T}"), after_cursor: 0 };
    c.channel.stream_outbound(r).await.expect("stream outbound").into_inner()
}

async fn get(c: &mut Clients, name: &str) -> Result<pb::Conversation, tonic::Status> {
    let r = pb::GetConversationRequest { conversation: name.into() };
    c.channel.get_conversation(r).await.map(tonic::Response::into_inner)
}

fn close(name: &str, request_id: &str) -> pb::ConversationRequest {
    pb::ConversationRequest { conversation: name.into(), request_id: request_id.into() }
}

/// The number a conversation's name ends with.
fn number(name: &str) -> u64 {
    let n = name.strip_prefix(&format!("tenants/{T}/conversations/")).expect("a conversation");
    n.parse().expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_tenants_channel_api_is_served_by_conversation_actors() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c).await;
    let mut out = outbound(&mut c).await;

    // PostMessage opens a conversation named by a number that carries its shard.
    let first = rid("first");
    let opened = post(&mut c, message("carol", "hello", &first)).await;
    assert!(opened.opened);
    let conversation = opened.conversation.clone().expect("its conversation");
    let name = conversation.name.clone();
    assert!(number(&name) & SHARDED != 0, "{name} carries no shard");
    assert_eq!(conversation.customer, format!("tenants/{T}/customers/carol"));
    assert_eq!(conversation.group, format!("tenants/{T}/groups/support"));
    assert_eq!(conversation.customer_messages, 1);

    // Its automatic reply is on StreamOutbound (the shared `outbox`), at position 1 (sent once
    // the router placed it: the opening message's replies wait for that).
    let reply = next(&mut out).await;
    assert_eq!((reply.cursor, reply.conversation.as_str()), (1, name.as_str()));
    assert_eq!(reply.reply_kind, pb::ReplyKind::MessageReceived as i32);
    assert_eq!(reply.text, "got it");
    assert_eq!(reply.customer, format!("tenants/{T}/customers/carol"));

    // A retry with the same request id: the same response, nothing applied again.
    let again = post(&mut c, message("carol", "hello", &first)).await;
    assert_eq!(again, opened);
    let read = get(&mut c, &name).await.expect("get");
    assert_eq!((read.customer_messages, read.automatic_messages), (1, 1));
    assert_eq!(read.state, pb::ConversationState::Queued as i32);
    assert_eq!(read.name, name);

    // A second message (no number spent on it) goes to the same conversation; its reply is
    // the next entry: the retry wrote none.
    let second = post(&mut c, message("carol", "anyone?", &rid("second"))).await;
    assert!(!second.opened);
    assert_eq!(second.conversation.as_ref().map(|c| c.name.as_str()), Some(name.as_str()));
    let reply = next(&mut out).await;
    assert_eq!((reply.cursor, reply.conversation.as_str()), (2, name.as_str()));

    // Unknown numbers: NOT_FOUND, whether read or acted on.
    let unknown = format!("tenants/{T}/conversations/{}", SHARDED | 999_999);
    assert_eq!(get(&mut c, &unknown).await.unwrap_err().code(), Code::NotFound);
    let e = c.channel.request_human(close(&unknown, &rid("human"))).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = c.channel.close_conversation(close(&unknown, &rid("close"))).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // Bad input is still INVALID_ARGUMENT.
    let e = c.channel.post_message(message("carol", "  ", &rid("empty"))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // CloseConversation ends it (a retry answers the same); the next message opens another.
    let closing = rid("close");
    let closed = c.channel.close_conversation(close(&name, &closing)).await.expect("close");
    let closed = closed.into_inner();
    assert_eq!(closed.state, pb::ConversationState::Ended as i32);
    let repeated = c.channel.close_conversation(close(&name, &closing)).await.expect("retry");
    assert_eq!(repeated.into_inner(), closed);
    let ended = get(&mut c, &name).await.expect("an ended conversation reads");
    assert_eq!(ended.state, pb::ConversationState::Ended as i32);
    assert_eq!(ended.customer, format!("tenants/{T}/customers/carol"));
    let next_one = post(&mut c, message("carol", "me again", &rid("third"))).await;
    assert!(next_one.opened);
    let open = next_one.conversation.expect("conversation").name;
    assert_ne!(open, name);
    assert!(number(&open) & SHARDED != 0);

    // RateConversation is not served by actors yet: said so, nothing faked.
    let rate = pb::RateConversationRequest {
        conversation: name.clone(),
        score: 5,
        request_id: rid("rate"),
        ..Default::default()
    };
    let e = c.channel.rate_conversation(rate).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // A restart: the open conversation, the ended one and the stored answers are still there.
    assert!(node.terminate(), "a clean shutdown");
    node = Node::start(dir.path());
    let mut c = node.clients().await;
    let live = get(&mut c, &open).await.expect("the open conversation after a restart");
    assert_eq!(live.state, pb::ConversationState::Queued as i32);
    assert_eq!(live.customer, format!("tenants/{T}/customers/carol"));
    let ended = get(&mut c, &name).await.expect("the ended one after a restart");
    assert_eq!(ended.state, pb::ConversationState::Ended as i32);
    let again = post(&mut c, message("carol", "hello", &first)).await;
    assert_eq!(again, opened, "answered from the store, not applied again");
    let more = post(&mut c, message("carol", "still there?", &rid("fourth"))).await;
    assert!(!more.opened, "the customer's open conversation survived");
    assert_eq!(more.conversation.map(|c| c.name), Some(open.clone()));

    // The outbox goes on gap-free after the restart: three replies before it, this one after.
    let mut out = outbound(&mut c).await;
    let mut entries = Vec::new();
    while entries.len() < 4 {
        let m = next(&mut out).await;
        entries.push((m.cursor, m.conversation));
    }
    let about = |n: &str| n.to_owned();
    assert_eq!(
        entries,
        vec![(1, about(&name)), (2, about(&name)), (3, about(&open)), (4, about(&open))]
    );
}

/// The agent's conversation-named calls (SendMessage, MarkRead, EndConversation) on an actor
/// tenant reach the conversation actor: the agent's message is answered with its transcript
/// row (a retry the same, nothing sent twice) and is on the outbox; the end is the agent's.
/// The agent is online in the router the tenant's mesh starts from (signed in before the
/// mesh loaded); its own calls are the agent actors' (another branch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_conversation_calls_reach_the_conversation_actor() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    create(&mut c).await;
    let ann = format!("tenants/{T}/agents/ann");
    c.admin
        .put_agent(pb::PutAgentRequest {
            name: ann.clone(),
            nickname: "Ann".into(),
            capacity: 1,
            groups: vec![format!("tenants/{T}/groups/support")],
            request_id: rid("agent"),
            ..Default::default()
        })
        .await
        .expect("put agent");
    settings(&mut c).await;
    c.agent
        .set_status(pb::SetStatusRequest {
            agent: ann.clone(),
            status: pb::AgentStatus::Online as i32,
            request_id: rid("online"),
        })
        .await
        .expect("sign in");
    let mut out = outbound(&mut c).await;

    let opened = post(&mut c, message("dave", "help", &rid("help"))).await;
    let name = opened.conversation.expect("conversation").name;
    // Assigned once the router's decision reached the conversation: its reply follows it.
    let reply = next(&mut out).await;
    assert_eq!(reply.conversation, name);
    let read = get(&mut c, &name).await.expect("get");
    assert_eq!(read.state, pb::ConversationState::Assigned as i32, "{read:?}");
    assert_eq!(read.agent, ann);

    let send = |request_id: &str| pb::SendMessageRequest {
        agent: ann.clone(),
        conversation: name.clone(),
        text: "how can I help?".into(),
        request_id: request_id.into(),
        ..Default::default()
    };
    let id = rid("send");
    let sent = c.agent.send_message(send(&id)).await.expect("send").into_inner();
    let row = sent.message.clone().expect("its transcript row");
    assert_eq!((row.text.as_str(), row.agent.as_str()), ("how can I help?", ann.as_str()));
    let again = c.agent.send_message(send(&id)).await.expect("retry").into_inner();
    assert_eq!(again, sent);
    let delivered = next(&mut out).await;
    assert_eq!(
        (delivered.conversation.as_str(), delivered.text.as_str()),
        (name.as_str(), "how can I help?")
    );
    let read = get(&mut c, &name).await.expect("get");
    assert_eq!(read.agent_messages, 1, "the retry sent nothing");

    // Another agent's message is refused as the tenant actor refuses it.
    let on = |agent: &str| pb::AgentConversationRequest {
        agent: agent.into(),
        conversation: name.clone(),
        request_id: rid("on"),
    };
    let e = c.agent.mark_read(on(&format!("tenants/{T}/agents/nobody"))).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let marked = c.agent.mark_read(on(&ann)).await.expect("mark read").into_inner();
    assert_eq!(marked.name, name);
    let ended = c.agent.end_conversation(on(&ann)).await.expect("end").into_inner();
    assert_eq!(ended.state, pb::ConversationState::Ended as i32);
    let last = ended.transitions.last().expect("transitions");
    assert_eq!(last.cause, "ended_by_agent");
    let e = c.agent.invite_rating(on(&ann)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
}
