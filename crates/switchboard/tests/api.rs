//! The API as integrators and agents meet it (issue 13), over real gRPC against a real
//! `switchboard serve` process: the data scope of agents' edits, partial updates with field
//! masks, refusals and events in resource names, opaque page tokens, a supervisor ending one
//! conversation, agents setting their own replies without the administrator role, and one
//! naming rule for references (full resource names in and out). Waits
//! are bounded; nothing asserts on time.

mod support;

use support::auth::{authed, mint, start_authenticated};
use support::desk::get;
use support::{Clients, Node, rid, until};
use switchboard_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

const T: &str = "desk";

fn name(kind: &str, id: &str) -> String {
    format!("tenants/{T}/{kind}/{id}")
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() })
}

fn texts(t: &str) -> Option<pb::Texts> {
    Some(pb::Texts { texts: vec![t.to_owned()] })
}

/// Tenant `desk` (see `support::desk::floor`).
async fn floor(
    c: &mut Clients,
    replies: Option<pb::ReplySettings>,
    agents: &[(&str, &[&str], u32, bool)],
    online: &[&str],
) {
    support::desk::floor(c, T, replies, agents, online).await;
}

/// A customer writes; its conversation.
async fn write(c: &mut Clients, customer: &str, group: &str) -> pb::Conversation {
    support::desk::write(c, T, customer, group).await
}

fn profile(agent: &str, customer: &str) -> pb::UpdateCustomerProfileRequest {
    pb::UpdateCustomerProfileRequest {
        agent: name("agents", agent),
        customer: name("customers", customer),
        request_id: rid("profile"),
        ..Default::default()
    }
}

async fn edit(
    c: &mut Clients,
    r: pb::UpdateCustomerProfileRequest,
) -> Result<pb::Customer, tonic::Status> {
    c.agent.update_customer_profile(r).await.map(tonic::Response::into_inner)
}

async fn read_profile(
    c: &mut Clients,
    agent: &str,
    customer: &str,
) -> Result<pb::Customer, tonic::Status> {
    let r = pb::GetCustomerProfileRequest {
        agent: name("agents", agent),
        customer: name("customers", customer),
    };
    c.agent.get_customer_profile(r).await.map(tonic::Response::into_inner)
}

fn denied<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>) -> tonic::Status {
    let s = r.expect_err(what);
    assert_eq!(s.code(), Code::PermissionDenied, "{what}: {s:?}");
    s
}

/// Item 1: an agent that never served a customer and is in none of its groups can neither
/// read nor change its profile, nor tag someone else's conversation; those who serve it, its
/// group's members and supervisors can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_edit_only_what_is_in_their_data_scope() {
    agents_edit_only_what_is_in_their_data_scope_on(pb::TenantRouting::TenantActor).await;
}

/// The same on conversation, agent and router actors: the refusals name the same resources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_edit_only_what_is_in_their_data_scope_on_actors() {
    agents_edit_only_what_is_in_their_data_scope_on(pb::TenantRouting::Actors).await;
}

async fn agents_edit_only_what_is_in_their_data_scope_on(routing: pb::TenantRouting) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] = &[
        ("alice", &["support"], 3, false),
        ("dave", &["support"], 3, false),
        ("bob", &["billing"], 3, false),
        ("boss", &["billing"], 3, true),
    ];
    support::desk::floor_on(&mut c, T, None, agents, &["alice"], routing).await;
    let c1 = write(&mut c, "carol", "").await;
    assert_eq!(c1.agent, name("agents", "alice"));
    let mut seeded = profile("alice", "carol");
    seeded.phone = "555-0100".into();
    edit(&mut c, seeded).await.expect("alice serves carol");

    // bob: never served carol, not in support.
    let s = denied("bob reads carol", read_profile(&mut c, "bob", "carol").await);
    assert!(s.message().contains("tenants/desk/customers/carol"), "{}", s.message());
    let mut wipe = profile("bob", "carol");
    wipe.update_mask = mask(&["remark_name", "phone", "email", "tags"]);
    denied("bob wipes carol", edit(&mut c, wipe).await);
    let tag = |agent: &str| pb::UpdateConversationRequest {
        agent: name("agents", agent),
        conversation: c1.name.clone(),
        tags: vec!["vip".into()],
        note: "called back".into(),
        request_id: rid("tag"),
        ..Default::default()
    };
    let s = denied("bob tags c1", c.agent.update_conversation(tag("bob")).await);
    assert!(s.message().contains(&c1.name) && s.message().contains("tenants/desk/agents/bob"));

    // Nothing changed; who may, can.
    let seen = read_profile(&mut c, "alice", "carol").await.expect("alice reads carol");
    assert_eq!(seen.phone, "555-0100");
    read_profile(&mut c, "dave", "carol").await.expect("dave is in carol's group");
    read_profile(&mut c, "boss", "carol").await.expect("supervisors see all");
    let tagged =
        c.agent.update_conversation(tag("alice")).await.expect("alice tags c1").into_inner();
    assert_eq!((tagged.tags, tagged.note.as_str()), (vec!["vip".to_owned()], "called back"));
    c.agent.update_conversation(tag("boss")).await.expect("supervisors tag any");
}

/// Item 2, seed 004: remark, phone and e-mail are edited one at a time and each keeps the
/// others; a mask clears what it names; unknown paths are refused by name; PutAgent with
/// only a capacity keeps the nickname and groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_change_only_the_fields_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    floor(&mut c, None, &[("alice", &["support", "billing"], 3, false)], &["alice"]).await;
    let c1 = write(&mut c, "carol", "").await;
    let mut tagged = profile("alice", "carol");
    tagged.tags = vec!["repeat".into()];
    edit(&mut c, tagged).await.unwrap();

    let mut remark = profile("alice", "carol");
    remark.remark_name = "Carol (Acme)".into();
    edit(&mut c, remark).await.unwrap();
    let mut phone = profile("alice", "carol");
    phone.phone = "555-0100".into();
    phone.update_mask = mask(&["phone"]);
    edit(&mut c, phone).await.unwrap();
    let mut email = profile("alice", "carol");
    email.email = "carol@example.com".into();
    let got = edit(&mut c, email).await.unwrap();
    assert_eq!(
        (got.remark_name.as_str(), got.phone.as_str(), got.email.as_str(), got.tags.clone()),
        ("Carol (Acme)", "555-0100", "carol@example.com", vec!["repeat".to_owned()])
    );
    // A mask naming a field left empty clears it, and only it.
    let mut clear = profile("alice", "carol");
    clear.update_mask = mask(&["phone"]);
    let got = edit(&mut c, clear).await.unwrap();
    assert_eq!((got.phone.as_str(), got.email.as_str()), ("", "carol@example.com"));
    let read = read_profile(&mut c, "alice", "carol").await.unwrap();
    assert_eq!((read.remark_name.as_str(), read.tags), ("Carol (Acme)", vec!["repeat".to_owned()]));

    let mut unknown = profile("alice", "carol");
    unknown.update_mask = mask(&["email", "nickname"]);
    let s = edit(&mut c, unknown).await.expect_err("unknown path");
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(s.message().contains("update_mask.paths[1]") && s.message().contains("\"nickname\""));

    // Tags and note of a conversation, one at a time.
    let conv = |tags: &[&str], note: &str| pb::UpdateConversationRequest {
        agent: name("agents", "alice"),
        conversation: c1.name.clone(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        note: note.into(),
        request_id: rid("conv"),
        ..Default::default()
    };
    c.agent.update_conversation(conv(&["refund"], "")).await.unwrap();
    let got = c.agent.update_conversation(conv(&[], "sent the form")).await.unwrap().into_inner();
    assert_eq!((got.tags, got.note.as_str()), (vec!["refund".to_owned()], "sent the form"));

    // PutAgent with only a capacity.
    let got = c
        .admin
        .put_agent(pb::PutAgentRequest {
            name: name("agents", "alice"),
            capacity: 7,
            request_id: rid("capacity"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (got.nickname.as_str(), got.capacity, got.groups),
        ("ALICE", 7, vec![name("groups", "support"), name("groups", "billing")])
    );
    // Other resources: a group's display name alone keeps its policy; one setting of the
    // tenant keeps the rest.
    let got = c
        .admin
        .put_group(pb::PutGroupRequest {
            name: name("groups", "billing"),
            display_name: "Billing desk".into(),
            request_id: rid("group"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.policy.unwrap().offer_mode, pb::OfferMode::AutoAccept as i32);
    let got = c
        .admin
        .update_tenant(pb::UpdateTenantRequest {
            name: format!("tenants/{T}"),
            settings: Some(pb::TenantSettings {
                open_service: texts("welcome"),
                ..Default::default()
            }),
            update_mask: mask(&["settings.open_service"]),
            request_id: rid("tenant"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let settings = got.settings.unwrap();
    assert_eq!(
        (settings.default_group, settings.open_service),
        (name("groups", "support"), texts("welcome"))
    );
    assert_eq!(got.display_name, "Desk");
    let s = c
        .admin
        .put_agent(pb::PutAgentRequest {
            name: name("agents", "alice"),
            update_mask: mask(&["capacity", "status"]),
            request_id: rid("bad"),
            ..Default::default()
        })
        .await
        .expect_err("status is not a field of PutAgent");
    assert!(s.message().contains("\"status\""), "{}", s.message());
}

/// Item 5: refusals name agents and conversations by resource name, never by the core's
/// internal numbers; events carry typed fields with resource names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_events_speak_resource_names() {
    refusals_and_events_speak_resource_names_on(pb::TenantRouting::TenantActor).await;
}

/// The same on conversation, agent and router actors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_events_speak_resource_names_on_actors() {
    refusals_and_events_speak_resource_names_on(pb::TenantRouting::Actors).await;
}

async fn refusals_and_events_speak_resource_names_on(routing: pb::TenantRouting) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    // zed is the core's agent 1 and amy its agent 2: a message naming numbers would say a1/a2.
    let agents: &[(&str, &[&str], u32, bool)] =
        &[("zed", &["support"], 2, false), ("amy", &["billing"], 1, false)];
    support::desk::floor_on(&mut c, T, None, agents, &["zed", "amy"], routing).await;
    let c1 = write(&mut c, "carol", "support").await;
    let c2 = write(&mut c, "dan", "billing").await;
    assert_eq!(
        (c1.agent.as_str(), c2.agent.as_str()),
        ("tenants/desk/agents/zed", "tenants/desk/agents/amy")
    );

    let full = c
        .agent
        .transfer(pb::TransferRequest {
            agent: name("agents", "zed"),
            conversation: c1.name.clone(),
            to: Some(pb::transfer_request::To::ToAgent(name("agents", "amy"))),
            request_id: rid("transfer"),
            ..Default::default()
        })
        .await
        .expect_err("amy is full");
    assert_eq!(full.code(), Code::ResourceExhausted);
    assert!(
        full.message().starts_with("agent tenants/desk/agents/amy is at capacity"),
        "{}",
        full.message()
    );

    // An agent's own command refused for capacity: amy (full with dan's) picks erin's, which
    // waits for billing. The code and reason are the core's, on either path.
    let c3 = write(&mut c, "erin", "billing").await;
    assert_eq!(c3.state, pb::ConversationState::Queued as i32, "{c3:?}");
    let full = c
        .agent
        .pick(pb::AgentConversationRequest {
            agent: name("agents", "amy"),
            conversation: c3.name.clone(),
            request_id: rid("pick"),
        })
        .await
        .expect_err("amy is full");
    assert_eq!(full.code(), Code::ResourceExhausted, "{full:?}");
    let info = full.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "AGENT_AT_CAPACITY");
    assert!(
        full.message().starts_with("agent tenants/desk/agents/amy is at capacity"),
        "{}",
        full.message()
    );

    let not_yours = c
        .agent
        .end_conversation(pb::AgentConversationRequest {
            agent: name("agents", "amy"),
            conversation: c1.name.clone(),
            request_id: rid("end"),
        })
        .await
        .expect_err("c1 is zed's");
    assert_eq!(
        not_yours.message(),
        format!("conversation {} is not assigned to agent tenants/desk/agents/amy", c1.name)
    );

    c.channel
        .close_conversation(pb::ConversationRequest {
            conversation: c2.name.clone(),
            request_id: rid("close"),
        })
        .await
        .unwrap();
    // A free-text refusal of the core names the customer it would have created.
    c.admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "bare".into(),
            request_id: rid("bare"),
            routing: routing as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let no_group = c
        .channel
        .post_message(pb::PostMessageRequest {
            customer: "tenants/bare/customers/eve".into(),
            channel: pb::Channel::Web as i32,
            text: "hello".into(),
            request_id: rid("post"),
            ..Default::default()
        })
        .await
        .expect_err("no group to route to");
    assert!(
        no_group.message().starts_with("no skill group for customer tenants/bare/customers/eve:"),
        "{}",
        no_group.message()
    );
    for message in [full.message(), not_yours.message()] {
        assert!(!message.contains(" a1") && !message.contains(" a2") && !message.contains(" c1"));
    }

    let mut events = c
        .events
        .stream_events(pb::StreamEventsRequest { tenant: format!("tenants/{T}"), after_cursor: 0 })
        .await
        .unwrap()
        .into_inner();
    let seen = until(&mut events, |e| e.r#type == "ended").await;
    let assigned = seen
        .iter()
        .find_map(|e| match &e.detail {
            Some(pb::event::Detail::Assigned(a)) if e.conversation == c2.name => Some(a.clone()),
            _ => None,
        })
        .expect("an assigned event for c2");
    assert_eq!(
        (assigned.agent.as_str(), assigned.group.as_str(), assigned.via.as_str()),
        ("tenants/desk/agents/amy", "tenants/desk/groups/billing", "auto")
    );
    let opened = seen.iter().find(|e| e.r#type == "opened").expect("an opened event");
    let Some(pb::event::Detail::Opened(o)) = &opened.detail else { panic!("{opened:?}") };
    assert_eq!((o.customer.as_str(), o.channel.as_str()), ("tenants/desk/customers/carol", "web"));
    let ended = seen.last().unwrap();
    let Some(pb::event::Detail::Ended(e)) = &ended.detail else { panic!("{ended:?}") };
    assert_eq!((e.cause.as_str(), e.agent.as_str()), ("channel_closed", "tenants/desk/agents/amy"));
    // The deprecated JSON carries the same resource names, no internal numbers.
    let json = &ended.detail_json;
    assert!(json.contains(r#""agent":"tenants/desk/agents/amy""#), "{json}");
    assert!(json.contains(r#""group":"tenants/desk/groups/billing""#), "{json}");
}

/// Item 7: a page token the list did not return is INVALID_ARGUMENT on every paginated
/// list, never silently the first page; a returned one pages on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_tokens_are_opaque_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    floor(
        &mut c,
        None,
        &[("alice", &["support"], 3, true), ("bob", &["support"], 3, false)],
        &["alice"],
    )
    .await;
    let c1 = write(&mut c, "carol", "").await;
    let garbage = || Some(pb::PageRequest { page_size: 1, page_token: "garbage".into() });
    let tenant = format!("tenants/{T}");
    let me = name("agents", "alice");
    let mut refusals = vec![
        (
            "ListTenants",
            c.admin.list_tenants(pb::ListTenantsRequest { page: garbage() }).await.map(drop),
        ),
        (
            "ListGroups",
            c.admin
                .list_groups(pb::ListGroupsRequest { tenant: tenant.clone(), page: garbage() })
                .await
                .map(drop),
        ),
        (
            "ListAgents",
            c.admin
                .list_agents(pb::ListAgentsRequest { tenant: tenant.clone(), page: garbage() })
                .await
                .map(drop),
        ),
        (
            "ListUnaccepted",
            c.agent
                .list_unaccepted(pb::ListAgentConversationsRequest {
                    agent: me.clone(),
                    page: garbage(),
                })
                .await
                .map(drop),
        ),
        (
            "ListAssigned",
            c.agent
                .list_assigned(pb::ListAgentConversationsRequest {
                    agent: me.clone(),
                    page: garbage(),
                })
                .await
                .map(drop),
        ),
        (
            "GetHistory",
            c.agent
                .get_history(pb::GetHistoryRequest {
                    agent: me.clone(),
                    conversation: c1.name.clone(),
                    page: garbage(),
                })
                .await
                .map(drop),
        ),
        (
            "GetLiveBoard",
            c.supervisor
                .get_live_board(pb::GetLiveBoardRequest { tenant: tenant.clone(), page: garbage() })
                .await
                .map(drop),
        ),
    ];
    for (method, result) in refusals.drain(..) {
        let s = result.expect_err(method);
        assert_eq!(s.code(), Code::InvalidArgument, "{method}: {s:?}");
        assert!(s.message().starts_with("page.page_token"), "{method}: {}", s.message());
    }

    let page = |token: String| Some(pb::PageRequest { page_size: 1, page_token: token });
    let first = c
        .admin
        .list_agents(pb::ListAgentsRequest { tenant: tenant.clone(), page: page(String::new()) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.agents[0].name, name("agents", "alice"));
    // Another list's token is not this one's.
    let crossed = c
        .admin
        .list_groups(pb::ListGroupsRequest {
            tenant: tenant.clone(),
            page: page(first.next_page_token.clone()),
        })
        .await
        .expect_err("an agents token on groups");
    assert_eq!(crossed.code(), Code::InvalidArgument);
    let second = c
        .admin
        .list_agents(pb::ListAgentsRequest { tenant, page: page(first.next_page_token) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.agents[0].name, name("agents", "bob"));
    assert!(second.next_page_token.is_empty());
}

/// Item 13: a supervisor ending one conversation sends the manual-end reply and records
/// `ended_by_supervisor`; only the batch call sends the batch-end reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_ends_one_conversation_as_manual_and_a_batch_as_batch() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let replies = pb::ReplySettings {
        manual_end: texts("manual bye"),
        batch_end: texts("batch bye"),
        ..Default::default()
    };
    let agents: &[(&str, &[&str], u32, bool)] =
        &[("alice", &["support"], 3, false), ("boss", &["billing"], 3, true)];
    floor(&mut c, Some(replies), agents, &["alice"]).await;
    let c1 = write(&mut c, "carol", "").await;
    let c2 = write(&mut c, "dan", "").await;
    let mut out = support::desk::outbound(&mut c, T).await;

    let ended = c
        .supervisor
        .end_conversation(pb::SupervisorConversationRequest {
            supervisor: name("agents", "boss"),
            conversation: c1.name.clone(),
            request_id: rid("end"),
        })
        .await
        .expect("supervisor ends c1")
        .into_inner();
    assert_eq!(ended.state, pb::ConversationState::Ended as i32);
    assert_eq!(ended.transitions.last().unwrap().cause, "ended_by_supervisor");
    let batch = c
        .supervisor
        .end_batch(pb::EndBatchRequest {
            supervisor: name("agents", "boss"),
            conversations: vec![c2.name.clone(), c1.name.clone()],
            request_id: rid("batch"),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(batch.results[0].ok && !batch.results[1].ok, "{batch:?}");
    assert!(batch.results[1].error.contains(&c1.name), "names c1: {batch:?}");

    let seen = until(&mut out, |m| {
        m.conversation == c2.name && m.reply_kind == pb::ReplyKind::BatchEnd as i32
    })
    .await;
    let ends = |conv: &str| -> Vec<(i32, String)> {
        seen.iter()
            .filter(|m| m.conversation == conv && m.reply_kind != pb::ReplyKind::AutoAccept as i32)
            .map(|m| (m.reply_kind, m.text.clone()))
            .collect()
    };
    assert_eq!(ends(&c1.name), vec![(pb::ReplyKind::ManualEnd as i32, "manual bye".to_owned())]);
    assert_eq!(ends(&c2.name), vec![(pb::ReplyKind::BatchEnd as i32, "batch bye".to_owned())]);
    let c2 = get(&mut c, &c2.name).await;
    assert_eq!(c2.transitions.last().unwrap().cause, "ended_in_batch");
}

/// SPEC §2: a supervisor ends any conversation, through the agent's call as through its own:
/// another agent's as a supervisor (manual-end reply), the one it serves as its agent; an
/// agent that does not serve a conversation cannot end it, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_ends_any_conversation_through_either_call() {
    a_supervisor_ends_any_conversation_through_either_call_on(pb::TenantRouting::TenantActor).await;
}

/// The same on conversation, agent and router actors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_ends_any_conversation_through_either_call_on_actors() {
    a_supervisor_ends_any_conversation_through_either_call_on(pb::TenantRouting::Actors).await;
}

async fn a_supervisor_ends_any_conversation_through_either_call_on(routing: pb::TenantRouting) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let replies = pb::ReplySettings { manual_end: texts("manual bye"), ..Default::default() };
    let agents: &[(&str, &[&str], u32, bool)] = &[
        ("alice", &["support"], 3, false),
        ("bob", &["support"], 3, false),
        ("boss", &["billing"], 3, true),
    ];
    support::desk::floor_on(&mut c, T, Some(replies), agents, &["alice", "boss"], routing).await;
    let theirs = write(&mut c, "carol", "support").await;
    let own = write(&mut c, "dan", "billing").await;
    let own_too = write(&mut c, "erin", "billing").await;
    assert_eq!(theirs.agent, name("agents", "alice"), "{theirs:?}");
    assert_eq!(own.agent, name("agents", "boss"), "{own:?}");
    assert_eq!(own_too.agent, name("agents", "boss"), "{own_too:?}");
    let mut out = support::desk::outbound(&mut c, T).await;
    let end = |agent: &str, conversation: &pb::Conversation| pb::AgentConversationRequest {
        agent: name("agents", agent),
        conversation: conversation.name.clone(),
        request_id: rid("end"),
    };

    let refused =
        c.agent.end_conversation(end("bob", &theirs)).await.expect_err("bob does not serve carol");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    let still = get(&mut c, &theirs.name).await;
    assert_eq!(still.state, pb::ConversationState::Assigned as i32, "nothing changed: {still:?}");

    let ended = c.agent.end_conversation(end("boss", &theirs)).await.unwrap().into_inner();
    assert_eq!(ended.state, pb::ConversationState::Ended as i32);
    assert_eq!(ended.transitions.last().unwrap().cause, "ended_by_supervisor");
    let ended = c.agent.end_conversation(end("boss", &own)).await.unwrap().into_inner();
    assert_eq!(ended.transitions.last().unwrap().cause, "ended_by_agent");
    let ended = c
        .supervisor
        .end_conversation(pb::SupervisorConversationRequest {
            supervisor: name("agents", "boss"),
            conversation: own_too.name.clone(),
            request_id: rid("end"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ended.transitions.last().unwrap().cause, "ended_by_agent");

    // Every end above sent the manual-end reply, once.
    let mut waiting = vec![theirs.name.clone(), own.name.clone(), own_too.name.clone()];
    let seen = until(&mut out, |m| {
        if m.reply_kind == pb::ReplyKind::ManualEnd as i32 {
            waiting.retain(|c| *c != m.conversation);
        }
        waiting.is_empty()
    })
    .await;
    for conversation in [&theirs, &own, &own_too] {
        let ends: Vec<_> = seen
            .iter()
            .filter(|m| {
                m.conversation == conversation.name
                    && m.reply_kind == pb::ReplyKind::ManualEnd as i32
            })
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(ends, vec!["manual bye"], "{}", conversation.name);
    }
}

/// Acting on an ended conversation is FAILED_PRECONDITION ("is ended"), the same on both
/// routings, whichever actor answers: the conversation's (a message, a read marker, an end,
/// a whisper, a close, a request for a human) or the router's (an accept, a pick, a
/// transfer). A conversation that never existed is NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acting_on_an_ended_conversation_is_a_failed_precondition() {
    acting_on_an_ended_conversation_is_a_failed_precondition_on(pb::TenantRouting::TenantActor)
        .await;
}

/// The same on conversation, agent and router actors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acting_on_an_ended_conversation_is_a_failed_precondition_on_actors() {
    acting_on_an_ended_conversation_is_a_failed_precondition_on(pb::TenantRouting::Actors).await;
}

async fn acting_on_an_ended_conversation_is_a_failed_precondition_on(routing: pb::TenantRouting) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] =
        &[("alice", &["support"], 3, false), ("boss", &["support"], 3, true)];
    support::desk::floor_on(&mut c, T, None, agents, &["alice", "boss"], routing).await;
    let carol = write(&mut c, "carol", "support").await;
    let on = |conversation: &str| pb::AgentConversationRequest {
        agent: name("agents", "alice"),
        conversation: conversation.to_owned(),
        request_id: rid("call"),
    };
    let holder = if carol.agent == name("agents", "alice") { "alice" } else { "boss" };
    let end = pb::AgentConversationRequest { agent: name("agents", holder), ..on(&carol.name) };
    c.agent.end_conversation(end).await.expect("its agent ends it");

    let n = &carol.name;
    let send = pb::SendMessageRequest {
        agent: name("agents", holder),
        conversation: n.clone(),
        text: "still there?".into(),
        request_id: rid("send"),
        ..Default::default()
    };
    let whisper = pb::WhisperRequest {
        supervisor: name("agents", "boss"),
        conversation: n.clone(),
        text: "psst".into(),
        request_id: rid("whisper"),
    };
    let named = || pb::ConversationRequest { conversation: n.clone(), request_id: rid("named") };
    let transfer = pb::TransferRequest {
        agent: name("agents", holder),
        conversation: n.clone(),
        to: Some(pb::transfer_request::To::ToGroup(name("groups", "support"))),
        request_id: rid("transfer"),
        ..Default::default()
    };
    let refusals = [
        ("SendMessage", c.agent.send_message(send).await.map(drop)),
        ("MarkRead", c.agent.mark_read(on(n)).await.map(drop)),
        ("EndConversation", c.agent.end_conversation(on(n)).await.map(drop)),
        ("Whisper", c.supervisor.whisper(whisper).await.map(drop)),
        ("CloseConversation", c.channel.close_conversation(named()).await.map(drop)),
        ("RequestHuman", c.channel.request_human(named()).await.map(drop)),
        ("Accept", c.agent.accept(on(n)).await.map(drop)),
        ("Pick", c.agent.pick(on(n)).await.map(drop)),
        ("Transfer", c.agent.transfer(transfer).await.map(drop)),
    ];
    for (call, refused) in refusals {
        let e = refused.expect_err(call);
        assert_eq!(e.code(), Code::FailedPrecondition, "{call}: {e:?}");
        assert!(e.message().contains("ended"), "{call}: {e:?}");
    }
    let unknown = format!("{}9", n);
    let e = c.agent.mark_read(on(&unknown)).await.expect_err("no such conversation");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

/// A request id answered before names that call only: a retry of the same request gets the
/// same answer, another call with it (another kind, or other fields) is FAILED_PRECONDITION
/// and changes nothing, never INTERNAL nor the first call's answer. On both routings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_answers_only_the_call_it_was_given_to() {
    a_request_id_answers_only_the_call_it_was_given_to_on(pb::TenantRouting::TenantActor).await;
}

/// The same on conversation, agent and router actors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_answers_only_the_call_it_was_given_to_on_actors() {
    a_request_id_answers_only_the_call_it_was_given_to_on(pb::TenantRouting::Actors).await;
}

async fn a_request_id_answers_only_the_call_it_was_given_to_on(routing: pb::TenantRouting) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] =
        &[("alice", &["support"], 3, false), ("boss", &["support"], 1, true)];
    support::desk::floor_on(&mut c, T, None, agents, &["alice"], routing).await;
    let carol = write(&mut c, "carol", "support").await;
    assert_eq!(carol.agent, name("agents", "alice"), "{carol:?}");
    let reused = |e: tonic::Status, what: &str| {
        assert_eq!(e.code(), Code::FailedPrecondition, "{what}: {e:?}");
        assert!(e.message().contains("used by another call"), "{what}: {e:?}");
    };

    // The same message again is the same answer; another text under its id is refused.
    let send = |text: &str| pb::SendMessageRequest {
        agent: name("agents", "alice"),
        conversation: carol.name.clone(),
        text: text.into(),
        request_id: "send-1".into(),
        ..Default::default()
    };
    let first = c.agent.send_message(send("hello")).await.unwrap().into_inner();
    let again = c.agent.send_message(send("hello")).await.unwrap().into_inner();
    assert_eq!(first, again, "a retry");
    reused(c.agent.send_message(send("other")).await.unwrap_err(), "another text");

    // Another kind of call under a used id: refused, and nothing ends.
    let on = |request_id: &str| pb::AgentConversationRequest {
        agent: name("agents", "alice"),
        conversation: carol.name.clone(),
        request_id: request_id.into(),
    };
    c.agent.mark_read(on("read-1")).await.expect("marked read");
    reused(c.agent.end_conversation(on("read-1")).await.unwrap_err(), "an end");
    reused(c.agent.end_conversation(on("send-1")).await.unwrap_err(), "an end");
    let update = pb::UpdateConversationRequest {
        agent: name("agents", "alice"),
        conversation: carol.name.clone(),
        note: "vip".into(),
        request_id: "send-1".into(),
        update_mask: mask(&["note"]),
        ..Default::default()
    };
    reused(c.agent.update_conversation(update).await.unwrap_err(), "an update");
    let now = get(&mut c, &carol.name).await;
    assert_eq!(now.state, pb::ConversationState::Assigned as i32, "nothing ended: {now:?}");
    assert_eq!(now.note, "", "nothing noted: {now:?}");

    // A transfer's retry is the same answer; its id on a transfer elsewhere is refused.
    let transfer = |to: &str| pb::TransferRequest {
        agent: name("agents", "alice"),
        conversation: carol.name.clone(),
        to: Some(pb::transfer_request::To::ToGroup(name("groups", to))),
        request_id: "transfer-1".into(),
        ..Default::default()
    };
    let moved = c.agent.transfer(transfer("support")).await.expect("to support").into_inner();
    let again = c.agent.transfer(transfer("support")).await.expect("a retry").into_inner();
    assert_eq!((moved.state, moved.group.clone()), (again.state, again.group.clone()));
    reused(c.agent.transfer(transfer("billing")).await.unwrap_err(), "a transfer elsewhere");
    assert_eq!(get(&mut c, &carol.name).await.group, name("groups", "support"), "not moved");

    // A batch's retry is the same answer; its id with another list is refused whole, and
    // nothing on the other list ends.
    let dave = write(&mut c, "dave", "support").await;
    let batch = |list: &[&str]| pb::EndBatchRequest {
        supervisor: name("agents", "boss"),
        conversations: list.iter().map(|n| n.to_string()).collect(),
        request_id: "batch-1".into(),
    };
    let ended = c.supervisor.end_batch(batch(&[&dave.name])).await.expect("ended").into_inner();
    assert!(ended.results.iter().all(|x| x.ok), "{ended:?}");
    let again = c.supervisor.end_batch(batch(&[&dave.name])).await.expect("a retry");
    assert_eq!(again.into_inner(), ended, "a retry");
    let other = c.supervisor.end_batch(batch(&[&dave.name, &carol.name])).await;
    reused(other.unwrap_err(), "another batch");
    let now = get(&mut c, &carol.name).await;
    assert_ne!(now.state, pb::ConversationState::Ended as i32, "carol not ended: {now:?}");

    // A request id longer than 128 bytes is refused on its field, whichever actor serves it.
    let long = "r".repeat(200);
    let e = c.agent.send_message(pb::SendMessageRequest { request_id: long.clone(), ..send("x") });
    let e = e.await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("request_id"), "{e:?}");
    let post = pb::PostMessageRequest { request_id: long, ..support::desk::hello(T, "carol") };
    let e = c.channel.post_message(post).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}

/// A conversation still with its bot exists but is not routed: an agent's accept, pick or
/// transfer of it is FAILED_PRECONDITION, not NOT_FOUND, on both routings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_with_its_bot_is_not_yet_for_agents() {
    a_conversation_with_its_bot_is_not_yet_for_agents_on(pb::TenantRouting::TenantActor).await;
}

/// The same on conversation, agent and router actors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_with_its_bot_is_not_yet_for_agents_on_actors() {
    a_conversation_with_its_bot_is_not_yet_for_agents_on(pb::TenantRouting::Actors).await;
}

async fn a_conversation_with_its_bot_is_not_yet_for_agents_on(routing: pb::TenantRouting) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] = &[("alice", &["support"], 3, false)];
    support::desk::floor_on(&mut c, T, None, agents, &["alice"], routing).await;
    let bot = pb::UpdateTenantRequest {
        name: format!("tenants/{T}"),
        settings: Some(pb::TenantSettings { transfer_to_human: true, ..Default::default() }),
        request_id: rid("bot"),
        update_mask: mask(&["settings.transfer_to_human"]),
        ..Default::default()
    };
    c.admin.update_tenant(bot).await.expect("a bot stage");
    let carol = write(&mut c, "carol", "support").await;
    assert_eq!(carol.state, pb::ConversationState::Bot as i32, "{carol:?}");
    let on = || pb::AgentConversationRequest {
        agent: name("agents", "alice"),
        conversation: carol.name.clone(),
        request_id: rid("call"),
    };
    let transfer = pb::TransferRequest {
        agent: name("agents", "alice"),
        conversation: carol.name.clone(),
        to: Some(pb::transfer_request::To::ToGroup(name("groups", "billing"))),
        request_id: rid("transfer"),
        ..Default::default()
    };
    let refusals = [
        ("Accept", c.agent.accept(on()).await.map(drop)),
        ("Pick", c.agent.pick(on()).await.map(drop)),
        ("Decline", c.agent.decline(on()).await.map(drop)),
        ("Transfer", c.agent.transfer(transfer).await.map(drop)),
    ];
    for (call, refused) in refusals {
        let e = refused.expect_err(call);
        assert_eq!(e.code(), Code::FailedPrecondition, "{call}: {e:?}");
    }
    let still = get(&mut c, &carol.name).await;
    assert_eq!(still.state, pb::ConversationState::Bot as i32, "nothing changed: {still:?}");
}

/// Retention runs by time, not only with the snapshots a busy tenant takes: on a tenant
/// that gets no command after its conversation ended, the transcript goes once its retention
/// (two seconds here) has passed (SPEC §5). On both routings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tenants_transcripts_go_when_their_retention_ends() {
    a_quiet_tenants_transcripts_go_when_their_retention_ends_on(pb::TenantRouting::TenantActor)
        .await;
}

/// The same on conversation, agent and router actors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_tenants_transcripts_go_when_their_retention_ends_on_actors() {
    a_quiet_tenants_transcripts_go_when_their_retention_ends_on(pb::TenantRouting::Actors).await;
}

async fn a_quiet_tenants_transcripts_go_when_their_retention_ends_on(routing: pb::TenantRouting) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] = &[("alice", &["support"], 3, false)];
    support::desk::floor_on(&mut c, T, None, agents, &["alice"], routing).await;
    let seconds = |seconds| Some(prost_types::Duration { seconds, nanos: 0 });
    let short = pb::UpdateTenantRequest {
        name: format!("tenants/{T}"),
        settings: Some(pb::TenantSettings {
            retention_unaccepted: seconds(1),
            retention_accepted: seconds(2),
            ..Default::default()
        }),
        request_id: rid("retention"),
        update_mask: mask(&["settings.retention_unaccepted", "settings.retention_accepted"]),
        ..Default::default()
    };
    c.admin.update_tenant(short).await.expect("short retention");
    let carol = write(&mut c, "carol", "support").await;
    let end = pb::AgentConversationRequest {
        agent: name("agents", "alice"),
        conversation: carol.name.clone(),
        request_id: rid("end"),
    };
    c.agent.end_conversation(end).await.expect("alice ends it");

    // Nothing else happens on the tenant; only reads, until the transcript is gone.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let r = pb::GetConversationRequest { conversation: carol.name.clone() };
        match c.channel.get_conversation(r).await {
            Err(e) if e.code() == Code::NotFound => break,
            read => {
                let read = read.expect("readable until it goes").into_inner();
                assert_eq!(read.state, pb::ConversationState::Ended as i32, "{read:?}");
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "{} was never deleted", carol.name);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Item 14, seed 001: each agent sets its own automatic and quick replies from its
/// workspace with an agent token; it cannot set another agent's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_set_their_own_replies_without_the_admin_role() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_authenticated(dir.path(), "");
    let channel =
        tonic::transport::Channel::from_shared(node.grpc.clone()).unwrap().connect().await.unwrap();
    let operator = mint("operator", "", "");
    let mut admin = pb::admin_service_client::AdminServiceClient::new(channel.clone());
    admin
        .create_tenant(authed(
            pb::CreateTenantRequest {
                tenant_id: T.into(),
                request_id: rid("t"),
                ..Default::default()
            },
            &operator,
        ))
        .await
        .unwrap();
    admin
        .put_group(authed(
            pb::PutGroupRequest {
                name: name("groups", "support"),
                request_id: rid("g"),
                ..Default::default()
            },
            &operator,
        ))
        .await
        .unwrap();
    for a in ["alice", "bob"] {
        let agent = pb::PutAgentRequest {
            name: name("agents", a),
            nickname: a.into(),
            capacity: 3,
            groups: vec![name("groups", "support")],
            request_id: rid("a"),
            ..Default::default()
        };
        admin.put_agent(authed(agent, &operator)).await.unwrap();
    }
    let alice = mint("agent", T, "alice");
    let mut desk = pb::agent_service_client::AgentServiceClient::new(channel.clone());
    let own = |agent: &str, replies: pb::ReplySettings| pb::UpdateAgentRepliesRequest {
        agent: name("agents", agent),
        replies: Some(replies),
        update_mask: None,
        request_id: rid("replies"),
    };
    let manual = pb::ReplySettings { manual_end: texts("alice says bye"), ..Default::default() };
    let got = desk
        .update_agent_replies(authed(own("alice", manual.clone()), &alice))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.replies.unwrap().manual_end, texts("alice says bye"));
    // Another kind alone keeps the first.
    let batch = pb::ReplySettings { batch_end: texts("alice closes"), ..Default::default() };
    let got =
        desk.update_agent_replies(authed(own("alice", batch), &alice)).await.unwrap().into_inner();
    let replies = got.replies.unwrap();
    assert_eq!(
        (replies.manual_end, replies.batch_end),
        (texts("alice says bye"), texts("alice closes"))
    );
    let s = desk.update_agent_replies(authed(own("bob", manual), &alice)).await.expect_err("bob's");
    assert_eq!(s.code(), Code::PermissionDenied);

    let quick = |agent: &str| pb::PutPersonalQuickRepliesRequest {
        agent: name("agents", agent),
        replies: vec![pb::QuickReply { title: "hi".into(), text: "Hello, how can I help?".into() }],
        request_id: rid("quick"),
    };
    let got =
        desk.put_personal_quick_replies(authed(quick("alice"), &alice)).await.unwrap().into_inner();
    assert_eq!(got.personal.len(), 1);
    let s = desk.put_personal_quick_replies(authed(quick("bob"), &alice)).await.expect_err("bob's");
    assert_eq!(s.code(), Code::PermissionDenied);
    // The administrator's API stays closed to agents.
    let s = admin
        .put_agent(authed(
            pb::PutAgentRequest {
                name: name("agents", "alice"),
                capacity: 9,
                ..Default::default()
            },
            &alice,
        ))
        .await
        .expect_err("agents do not configure");
    assert_eq!(s.code(), Code::PermissionDenied);
    let bob = admin
        .get_agent(authed(pb::GetAgentRequest { name: name("agents", "bob") }, &operator))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bob.replies.unwrap_or_default().manual_end, None);
    // The tenant is on actors (the default), whose meshes take the agent level at once.
    let alice = admin
        .get_agent(authed(pb::GetAgentRequest { name: name("agents", "alice") }, &operator))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alice.replies.unwrap_or_default().manual_end, texts("alice says bye"));
}

/// One naming rule (item 9): every field that refers to a resource takes and gives its full
/// resource name; a bare id, or a name in another tenant, is refused saying what to send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_are_resource_names_in_and_out() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    floor(&mut c, None, &[("alice", &["support"], 3, false)], &["alice"]).await;

    let refused = |what: &str, r: Result<tonic::Response<pb::Agent>, tonic::Status>| {
        let s = r.expect_err(what);
        assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
        s.message().to_owned()
    };
    let put = |groups: Vec<String>| pb::PutAgentRequest {
        name: name("agents", "bob"),
        capacity: 2,
        groups,
        request_id: rid("bob"),
        ..Default::default()
    };
    let bare = refused("bare group id", c.admin.put_agent(put(vec!["support".into()])).await);
    assert!(bare.contains("expected tenants/{tenant}/groups/{id}"), "{bare}");
    let other = refused(
        "another tenant's group",
        c.admin.put_agent(put(vec!["tenants/other/groups/support".into()])).await,
    );
    assert!(other.contains("this request is for tenant \"desk\""), "{other}");
    let bob = c.admin.put_agent(put(vec![name("groups", "support")])).await.unwrap().into_inner();
    assert_eq!(bob.groups, vec![name("groups", "support")]);

    // A gateway names its customer; a bare customer id is refused.
    let bare = c
        .channel
        .post_message(pb::PostMessageRequest {
            customer: "carol".into(),
            channel: pb::Channel::Web as i32,
            text: "hello".into(),
            request_id: rid("bare"),
            ..Default::default()
        })
        .await
        .expect_err("bare customer id");
    assert_eq!(bare.code(), Code::InvalidArgument);
    assert!(bare.message().contains("tenants/{tenant}/customers/{id}"), "{}", bare.message());
    let c1 = write(&mut c, "carol", "support").await;
    assert_eq!(
        (c1.customer.as_str(), c1.group.as_str()),
        (name("customers", "carol").as_str(), name("groups", "support").as_str())
    );
    assert_eq!(c1.agent, name("agents", "alice"));

    // Customers: routing references in, names out (the last agent included).
    let routed = c
        .admin
        .put_customer(pb::PutCustomerRequest {
            name: name("customers", "carol"),
            group: name("groups", "support"),
            dedicated_agent: name("agents", "alice"),
            request_id: rid("carol"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (routed.group, routed.dedicated_agent, routed.last_agent),
        (name("groups", "support"), name("agents", "alice"), name("agents", "alice"))
    );
    let settings = c
        .admin
        .get_tenant(pb::GetTenantRequest { name: format!("tenants/{T}") })
        .await
        .unwrap()
        .into_inner()
        .settings
        .unwrap();
    assert_eq!(settings.default_group, name("groups", "support"));
}
