//! The channel API of a tenant created with `TENANT_ROUTING_ACTORS`, served by its
//! conversation actors (issue 12's cut-over), over real gRPC against a real `switchboard
//! serve` process: conversations opened and named by numbers that carry their shard,
//! automatic replies on the shared `outbox`, retries by request id answered once, reads of
//! live and ended conversations, unknown numbers, and a restart in between; and the command
//! streams (`PostMessages`, `DeskCommands`) on such a tenant. Waits are bounded; nothing
//! asserts on time.

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
    support::create_actor_tenant(c, T).await;
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

/// An agent of capacity 1 in the support group; its resource name.
async fn support_agent(c: &mut Clients, id: &str, nickname: &str) -> String {
    let name = format!("tenants/{T}/agents/{id}");
    c.admin
        .put_agent(pb::PutAgentRequest {
            name: name.clone(),
            nickname: nickname.into(),
            capacity: 1,
            groups: vec![format!("tenants/{T}/groups/support")],
            request_id: rid("agent"),
            ..Default::default()
        })
        .await
        .expect("put agent");
    name
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
    // Answered as on one node: where routing put it (no agent is online: queued, first).
    assert_eq!(conversation.state, pb::ConversationState::Queued as i32, "{conversation:?}");
    assert_eq!(conversation.position, 1);

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
    let e = get(&mut c, &unknown).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(e.message(), format!("conversation {unknown} not found"), "said once");
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
    // The next number of the customer's shard: none was spent on the messages between.
    assert_eq!(number(&open), number(&name) + 1);

    // RateConversation of a conversation no agent served: refused, as the tenant actor does.
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
    let ann = support_agent(&mut c, "ann", "Ann").await;
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

    // GetHistory (SPEC §7): the transcript for the agent that serves it; PERMISSION_DENIED
    // for one that never did; after the end, from the archive.
    let history = |agent: &str| pb::GetHistoryRequest {
        agent: agent.into(),
        conversation: name.clone(),
        page: None,
    };
    let texts = |h: pb::GetHistoryResponse| -> Vec<String> {
        h.messages.into_iter().map(|m| m.text).collect()
    };
    let read = c.agent.get_history(history(&ann)).await.expect("history").into_inner();
    let read = texts(read);
    assert!(read.contains(&"help".to_owned()) && read.contains(&"how can I help?".to_owned()));
    let bob = support_agent(&mut c, "bob", "Bob").await;
    let e = c.agent.get_history(history(&bob)).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c.agent.get_history(history(&format!("tenants/{T}/agents/nobody"))).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

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
    let after = c.agent.get_history(history(&ann)).await.expect("history after").into_inner();
    assert_eq!(texts(after), read, "the same transcript from the archive");
}

/// Ratings, the rating invitation, bot hosting and tags/note on an actor tenant, served by the
/// conversation actors with the tenant actor's rules: tags and a note on the open
/// conversation (read back by GetConversation; another agent outside its scope refused), bot
/// hosting by the agent holding it and by a supervisor (by conversation, by agent, for all;
/// another agent refused; a non-supervisor refused), the invitation on the outbox as the
/// rating invitation, then after the end: out-of-range scores INVALID_ARGUMENT, a rating of
/// the archived conversation (a retry answers the same bytes; a second rating replaces the
/// first, as the tenant actor's `Conversation::rate` does), a note changed after the end, and
/// all of it again after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratings_bot_hosting_and_tags_are_served_by_conversation_actors() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    create(&mut c).await;
    let agent = |a: &str| format!("tenants/{T}/agents/{a}");
    let (ann, bob, sue) = (agent("ann"), agent("bob"), agent("sue"));
    for (name, supervisor) in [(&ann, false), (&bob, false), (&sue, true)] {
        let groups =
            if name == &ann { vec![format!("tenants/{T}/groups/support")] } else { vec![] };
        c.admin
            .put_agent(pb::PutAgentRequest {
                name: name.clone(),
                nickname: name.clone(),
                capacity: 2,
                groups,
                supervisor,
                request_id: rid("agent"),
                ..Default::default()
            })
            .await
            .expect("put agent");
    }
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
    let opened = post(&mut c, message("erin", "help", &rid("help"))).await;
    let name = opened.conversation.expect("conversation").name;
    let reply = next(&mut out).await;
    assert_eq!(reply.conversation, name);
    let read = get(&mut c, &name).await.expect("get");
    assert_eq!(read.state, pb::ConversationState::Assigned as i32, "{read:?}");
    assert_eq!(read.agent, ann);

    // Tags and a note on the open conversation, by its agent; read back.
    let update =
        |agent: &str, tags: &[&str], note: &str, request_id: &str| pb::UpdateConversationRequest {
            agent: agent.into(),
            conversation: name.clone(),
            tags: texts(tags),
            note: note.into(),
            request_id: request_id.into(),
            update_mask: None,
        };
    let tagged =
        c.agent.update_conversation(update(&ann, &["refund"], "called back", &rid("tags")));
    let tagged = tagged.await.expect("tags").into_inner();
    assert_eq!((tagged.tags.clone(), tagged.note.as_str()), (texts(&["refund"]), "called back"));
    let read = get(&mut c, &name).await.expect("get");
    assert_eq!((read.tags, read.note.as_str()), (texts(&["refund"]), "called back"));
    // The supervisor's listing shows them on the open conversation too.
    let list = pb::ListConversationsRequest {
        parent: format!("tenants/{T}"),
        filter: String::new(),
        page_size: 10,
        page_token: String::new(),
    };
    let list = c.supervisor.list_conversations(list).await.expect("list").into_inner();
    let listed = list.conversations.iter().find(|x| x.name == name).expect("listed");
    assert_eq!((listed.tags.clone(), listed.note.as_str()), (texts(&["refund"]), "called back"));
    let e = c.agent.update_conversation(update(&bob, &["x"], "", &rid("tags"))).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = c.agent.update_conversation(update(&ann, &[" "], "", &rid("tags"))).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Bot hosting: by the agent holding it, not by another agent; by a supervisor.
    let hosting = |agent: &str, on: bool| pb::AgentBotHostingRequest {
        agent: agent.into(),
        conversation: name.clone(),
        on,
        request_id: rid("hosting"),
    };
    let hosted = c.agent.set_bot_hosting(hosting(&ann, true)).await.expect("hosting on");
    assert!(hosted.into_inner().bot_hosting);
    let e = c.agent.set_bot_hosting(hosting(&bob, false)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(get(&mut c, &name).await.expect("get").bot_hosting);
    // While hosted the customer's messages get the automatic replies as before (the flag
    // only tells the desk; SPEC: "the bot may answer").
    post(&mut c, message("erin", "still there?", &rid("hosted"))).await;
    let reply = next(&mut out).await;
    assert_eq!((reply.conversation.as_str(), reply.text.as_str()), (name.as_str(), "got it"));
    use pb::set_bot_hosting_request::{ConversationList, Selection};
    let supervise =
        |who: &str, selection: Selection, on: bool, request_id: &str| pb::SetBotHostingRequest {
            supervisor: who.into(),
            selection: Some(selection),
            on,
            request_id: request_id.into(),
        };
    let list = Selection::Conversations(ConversationList { conversations: vec![name.clone()] });
    let off = rid("off");
    let r = c.supervisor.set_bot_hosting(supervise(&sue, list.clone(), false, &off)).await;
    assert_eq!(r.expect("supervisor off").into_inner().changed, 1);
    let r = c.supervisor.set_bot_hosting(supervise(&sue, list.clone(), false, &off)).await;
    assert_eq!(r.expect("retry").into_inner().changed, 1, "a retry answers the same");
    let r = c.supervisor.set_bot_hosting(supervise(&sue, list.clone(), false, &rid("off"))).await;
    assert_eq!(r.expect("again").into_inner().changed, 0, "already off");
    assert!(!get(&mut c, &name).await.expect("get").bot_hosting);
    let by_agent = Selection::Agent(ann.clone());
    let on_ann = rid("on");
    let r = c.supervisor.set_bot_hosting(supervise(&sue, by_agent.clone(), true, &on_ann)).await;
    assert_eq!(r.expect("by agent").into_inner().changed, 1);
    let r = c.supervisor.set_bot_hosting(supervise(&sue, Selection::All(true), false, &rid("all")));
    assert_eq!(r.await.expect("all").into_inner().changed, 1);
    let e = c.supervisor.set_bot_hosting(supervise(&bob, list, true, &rid("no"))).await;
    assert_eq!(e.unwrap_err().code(), Code::PermissionDenied);

    // The rating invitation: the agent's message, marked as the invitation.
    let on = |agent: &str, request_id: &str| pb::AgentConversationRequest {
        agent: agent.into(),
        conversation: name.clone(),
        request_id: request_id.into(),
    };
    let invite = rid("invite");
    let invited = c.agent.invite_rating(on(&ann, &invite)).await.expect("invite").into_inner();
    assert_eq!(invited.agent_messages, 1);
    let sent = next(&mut out).await;
    assert_eq!(sent.reply_kind, pb::ReplyKind::RatingInvitation as i32, "{sent:?}");
    assert_eq!(sent.conversation, name);
    let again = c.agent.invite_rating(on(&ann, &invite)).await.expect("retry").into_inner();
    assert_eq!(again, invited, "a retry sends nothing again");

    // After the end: a rating of the archived conversation.
    c.agent.end_conversation(on(&ann, &rid("end"))).await.expect("end");
    let rate = |score: u32, request_id: &str| pb::RateConversationRequest {
        conversation: name.clone(),
        score,
        comment: "great".into(),
        request_id: request_id.into(),
    };
    for score in [0, 6, 300] {
        let e = c.channel.rate_conversation(rate(score, &rid("bad"))).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "score {score}: {e:?}");
    }
    let first = rid("rate");
    let rated = c.channel.rate_conversation(rate(5, &first)).await.expect("rate").into_inner();
    assert_eq!(rated.state, pb::ConversationState::Ended as i32);
    assert_eq!(rated.rating.as_ref().map(|r| (r.score, r.comment.as_str())), Some((5, "great")));
    assert_eq!((rated.tags.clone(), rated.note.as_str()), (texts(&["refund"]), "called back"));
    let repeated = c.channel.rate_conversation(rate(5, &first)).await.expect("retry");
    assert_eq!(repeated.into_inner(), rated, "a retry answers the same");
    let replaced = c.channel.rate_conversation(rate(3, &rid("rate"))).await.expect("rate again");
    assert_eq!(replaced.into_inner().rating.map(|r| r.score), Some(3), "the last rating stands");
    let noted = c.agent.update_conversation(update(&ann, &[], "refunded", &rid("note")));
    let noted = noted.await.expect("a note after the end").into_inner();
    assert_eq!((noted.tags.clone(), noted.note.as_str()), (texts(&["refund"]), "refunded"));
    let e = c.agent.set_bot_hosting(hosting(&ann, true)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "bot hosting of an ended one: {e:?}");
    let archived = get(&mut c, &name).await.expect("the archived conversation");
    assert_eq!(archived.state, pb::ConversationState::Ended as i32);
    assert_eq!(archived.rating.as_ref().map(|r| r.score), Some(3));
    assert_eq!((archived.tags.clone(), archived.note.as_str()), (texts(&["refund"]), "refunded"));

    // Another customer's conversation stays open across the restart, tagged and hosted.
    let fay = post(&mut c, message("fay", "hi", &rid("fay"))).await;
    let fay = fay.conversation.expect("conversation").name;
    next(&mut out).await;
    let read = get(&mut c, &fay).await.expect("get");
    assert_eq!((read.state, read.agent.as_str()), (pb::ConversationState::Assigned as i32, &*ann));
    // A retry of the supervisor's bot hosting by agent answers the first call's sum and
    // switches nothing the first call did not select (fay's is new since).
    let r = c.supervisor.set_bot_hosting(supervise(&sue, by_agent.clone(), true, &on_ann)).await;
    assert_eq!(r.expect("a retry").into_inner().changed, 1, "the first call's answer");
    assert!(!get(&mut c, &fay).await.expect("get").bot_hosting, "fay's was not selected");
    let r = c.supervisor.set_bot_hosting(supervise(&sue, by_agent, false, &on_ann)).await;
    assert_eq!(r.unwrap_err().code(), Code::FailedPrecondition, "another call under its id");
    let tag_fay = pb::UpdateConversationRequest {
        agent: ann.clone(),
        conversation: fay.clone(),
        tags: texts(&["vip"]),
        request_id: rid("fay-tags"),
        ..Default::default()
    };
    c.agent.update_conversation(tag_fay).await.expect("tags");
    let host_fay = pb::AgentBotHostingRequest {
        agent: ann.clone(),
        conversation: fay.clone(),
        on: true,
        request_id: rid("fay-host"),
    };
    c.agent.set_bot_hosting(host_fay).await.expect("hosting");

    // A restart: everything above is in the store; retries answer as before.
    assert!(node.terminate(), "a clean shutdown");
    node = Node::start(dir.path());
    let mut c = node.clients().await;
    let read = get(&mut c, &name).await.expect("after a restart");
    assert_eq!(read, archived);
    let repeated = c.channel.rate_conversation(rate(5, &first)).await.expect("retry");
    assert_eq!(repeated.into_inner(), rated, "answered from the store");
    let again = c.agent.invite_rating(on(&ann, &invite)).await.expect("retry").into_inner();
    assert_eq!(again, invited);
    assert_eq!(get(&mut c, &name).await.expect("get").rating.map(|r| r.score), Some(3));
    let open = get(&mut c, &fay).await.expect("the open one after a restart");
    assert_eq!(open.state, pb::ConversationState::Assigned as i32);
    assert!(open.bot_hosting, "hosting survived");
    assert_eq!((open.tags.clone(), open.note.as_str()), (texts(&["vip"]), ""));
    // Its tags reach the archive when it ends.
    let end_fay = pb::AgentConversationRequest {
        agent: ann.clone(),
        conversation: fay.clone(),
        request_id: rid("fay-end"),
    };
    c.agent.end_conversation(end_fay).await.expect("end");
    let archived = get(&mut c, &fay).await.expect("archived");
    assert_eq!(archived.state, pb::ConversationState::Ended as i32);
    assert_eq!(archived.tags, texts(&["vip"]));
}

/// PostMessages: many customers' messages on one stream, each answered by its request id as
/// PostMessage answers it. One customer's messages are applied in the order sent (its first
/// opens the conversation, each later one is the next message of it), even when all are sent
/// before any answer is read; a refused message is answered with its status and the stream
/// goes on; a repeated request id is answered as the first time; a message without a request
/// id ends the stream with INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_messages_answers_each_message_by_request_id_in_each_customers_order() {
    use pb::post_messages_result::Result as Answer;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c).await;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut answers = c.channel.post_messages(stream).await.expect("post messages").into_inner();

    let (customers, per_customer) = (["u1", "u2", "u3"], 5);
    for k in 0..per_customer {
        for who in customers {
            tx.send(message(who, &format!("m{k}"), &format!("{who}-{k}"))).await.unwrap();
        }
    }
    tx.send(message("u4", "  ", "blank")).await.unwrap();
    let mut by_id = std::collections::HashMap::new();
    for _ in 0..customers.len() * per_customer + 1 {
        let answer = next(&mut answers).await;
        let result = answer.result.expect("every answer has a result");
        assert!(by_id.insert(answer.request_id.clone(), result).is_none(), "answered twice");
    }
    match &by_id["blank"] {
        Answer::Error(e) => assert_eq!(e.code, Code::InvalidArgument as i32, "{e:?}"),
        other => panic!("a blank text was accepted: {other:?}"),
    }
    for who in customers {
        let answered = |k: usize| match &by_id[&format!("{who}-{k}")] {
            Answer::Response(r) => r.clone(),
            Answer::Error(e) => panic!("{who}-{k} refused: {e:?}"),
        };
        let first = answered(0);
        assert!(first.opened, "{who}'s first message opens its conversation");
        let name = first.conversation.expect("conversation").name;
        for k in 0..per_customer {
            let r = answered(k);
            let conversation = r.conversation.expect("conversation");
            assert_eq!(conversation.name, name, "{who}-{k}");
            // Applied in the order sent: message k is the conversation's (k+1)th.
            assert_eq!(conversation.customer_messages, k as u32 + 1, "{who}-{k}");
            assert_eq!(r.opened, k == 0);
        }
    }

    // A repeated request id: the first answer again, nothing applied twice.
    tx.send(message("u1", "m0", "u1-0")).await.unwrap();
    let again = next(&mut answers).await;
    assert_eq!(again.request_id, "u1-0");
    assert_eq!(again.result.as_ref(), Some(&by_id["u1-0"]));

    // No request id: the answer could not be matched; the stream ends.
    tx.send(message("u1", "lost", "")).await.unwrap();
    let end = tokio::time::timeout(std::time::Duration::from_secs(60), answers.message()).await;
    let e = end.expect("the stream ends").expect_err("with an error");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("request_id"), "{e:?}");
}

/// DeskCommands: an agent's commands on several conversations on one stream, each answered by
/// its request id as its call answers. Commands on one conversation are applied in the order
/// sent (every reply before the end, their transcript positions in order), even when all are
/// sent before any answer is read; a refused command is answered with its status and the
/// stream goes on; a repeated request id is answered as the first time; a message with no
/// command ends the stream with INVALID_ARGUMENT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desk_commands_answer_each_command_by_request_id_in_each_conversations_order() {
    use pb::desk_command::Command;
    use pb::desk_command_result::Result as Answer;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let t = "desks";
    let ann = format!("tenants/{t}/agents/ann");
    support::desk::floor_on(
        &mut c,
        t,
        None,
        &[("ann", &["support"], 5, false)],
        &["ann"],
        pb::TenantRouting::Actors,
    )
    .await;
    let mut conversations = Vec::new();
    for who in ["v1", "v2"] {
        let opened = support::desk::write(&mut c, t, who, "").await;
        assert_eq!(opened.agent, ann, "{opened:?}");
        conversations.push(opened.name);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut answers = c.agent.desk_commands(stream).await.expect("desk commands").into_inner();
    let send = |conversation: &str, k: usize| pb::DeskCommand {
        command: Some(Command::SendMessage(pb::SendMessageRequest {
            agent: ann.clone(),
            conversation: conversation.to_owned(),
            text: format!("reply {k}"),
            request_id: format!("{conversation}-{k}"),
            ..Default::default()
        })),
    };
    let on = |conversation: &str, request_id: &str| pb::AgentConversationRequest {
        agent: ann.clone(),
        conversation: conversation.to_owned(),
        request_id: request_id.to_owned(),
    };
    let replies = 4;
    for k in 0..replies {
        for conversation in &conversations {
            tx.send(send(conversation, k)).await.unwrap();
        }
    }
    // The first conversation ends after its replies; the second is marked read. Accepting a
    // conversation that is already assigned is refused.
    let first = conversations[0].clone();
    let end = Command::EndConversation(on(&first, "end"));
    tx.send(pb::DeskCommand { command: Some(end) }).await.unwrap();
    let read = Command::MarkRead(on(&conversations[1], "read"));
    tx.send(pb::DeskCommand { command: Some(read) }).await.unwrap();
    let accept = Command::Accept(on(&conversations[1], "accept"));
    tx.send(pb::DeskCommand { command: Some(accept) }).await.unwrap();
    let mut by_id = std::collections::HashMap::new();
    for _ in 0..replies * conversations.len() + 3 {
        let answer = next(&mut answers).await;
        let result = answer.result.expect("every answer has a result");
        assert!(by_id.insert(answer.request_id.clone(), result).is_none(), "answered twice");
    }
    for conversation in &conversations {
        let mut last = 0;
        for k in 0..replies {
            match &by_id[&format!("{conversation}-{k}")] {
                Answer::Sent(sent) => {
                    let message = sent.message.as_ref().expect("the sent message");
                    assert_eq!(message.text, format!("reply {k}"));
                    assert!(message.seq > last, "{conversation}: reply {k} out of order");
                    last = message.seq;
                }
                other => panic!("{conversation}-{k}: {other:?}"),
            }
        }
    }
    match &by_id["end"] {
        Answer::Conversation(ended) => {
            assert_eq!(ended.state, pb::ConversationState::Ended as i32, "{ended:?}");
            assert_eq!(ended.agent_messages, replies as u32, "every reply before the end");
        }
        other => panic!("end: {other:?}"),
    }
    assert!(matches!(&by_id["read"], Answer::Conversation(_)), "{:?}", by_id["read"]);
    match &by_id["accept"] {
        Answer::Error(e) => assert_eq!(e.code, Code::FailedPrecondition as i32, "{e:?}"),
        other => panic!("an assigned conversation was accepted: {other:?}"),
    }

    // A repeated request id: the first answer again.
    let again = format!("{}-0", conversations[1]);
    tx.send(send(&conversations[1], 0)).await.unwrap();
    let answer = next(&mut answers).await;
    assert_eq!(answer.request_id, again);
    assert_eq!(answer.result.as_ref(), Some(&by_id[&again]));

    // No command: nothing to answer; the stream ends.
    tx.send(pb::DeskCommand { command: None }).await.unwrap();
    let end = tokio::time::timeout(std::time::Duration::from_secs(60), answers.message()).await;
    let e = end.expect("the stream ends").expect_err("with an error");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}
