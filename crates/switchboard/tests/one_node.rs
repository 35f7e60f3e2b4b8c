//! One node end to end, over real gRPC against a real `switchboard serve` process: seed 001's
//! worked case, crash survival with a pending timer, idempotent retries, tenant isolation, and
//! bad input answered with the right status. Waits are bounded; nothing asserts on time.

mod support;

use std::time::Duration;

use support::desk::get;
use support::{Clients, Node, next, rid, until};
use switchboard_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

fn dur(ms: u64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    })
}

fn texts(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| (*s).to_owned()).collect()
}

fn tenant(t: &str) -> String {
    format!("tenants/{t}")
}

fn agent(t: &str, a: &str) -> String {
    format!("tenants/{t}/agents/{a}")
}

/// Creates a tenant with one skill group "support" and the given agents (capacity each),
/// then applies `settings` (with "support" as the default group).
async fn setup(
    c: &mut Clients,
    t: &str,
    settings: pb::TenantSettings,
    agents: &[(&str, &str, u32)],
) {
    setup_routed(c, t, settings, agents, pb::TenantRouting::TenantActor).await;
}

/// [`setup`] for a tenant served as `routing` says.
async fn setup_routed(
    c: &mut Clients,
    t: &str,
    settings: pb::TenantSettings,
    agents: &[(&str, &str, u32)],
    routing: pb::TenantRouting,
) {
    support::create_tenant(c, t, &format!("{t} inc"), routing).await;
    c.admin
        .put_group(pb::PutGroupRequest {
            name: format!("tenants/{t}/groups/support"),
            display_name: "Support".into(),
            policy: None,
            replies: None,
            request_id: rid("group"),
            update_mask: None,
        })
        .await
        .expect("put group");
    c.admin
        .update_tenant(pb::UpdateTenantRequest {
            name: tenant(t),
            settings: Some(pb::TenantSettings {
                default_group: format!("tenants/{t}/groups/support"),
                ..settings
            }),
            display_name: format!("{t} inc"),
            request_id: rid("settings"),
            update_mask: None,
        })
        .await
        .expect("update tenant");
    for (id, nickname, capacity) in agents {
        c.admin
            .put_agent(pb::PutAgentRequest {
                name: agent(t, id),
                nickname: (*nickname).into(),
                capacity: *capacity,
                groups: vec![format!("tenants/{t}/groups/support")],
                replies: None,
                supervisor: false,
                request_id: rid("agent"),
                update_mask: None,
                proficiencies: Vec::new(),
            })
            .await
            .expect("put agent");
    }
}

async fn status(c: &mut Clients, t: &str, a: &str, s: pb::AgentStatus) {
    c.agent
        .set_status(pb::SetStatusRequest {
            agent: agent(t, a),
            status: s as i32,
            request_id: rid("status"),
        })
        .await
        .expect("set status");
}

async fn post(
    c: &mut Clients,
    t: &str,
    customer: &str,
    nickname: &str,
    text: &str,
) -> pb::Conversation {
    post_with(c, t, customer, nickname, text, &rid("post")).await.expect("post message")
}

async fn post_with(
    c: &mut Clients,
    t: &str,
    customer: &str,
    nickname: &str,
    text: &str,
    request_id: &str,
) -> Result<pb::Conversation, tonic::Status> {
    let r = c
        .channel
        .post_message(pb::PostMessageRequest {
            customer: format!("tenants/{t}/customers/{customer}"),
            channel: pb::Channel::Web as i32,
            text: text.into(),
            group: String::new(),
            priority: 0,
            nickname: nickname.into(),
            request_id: request_id.into(),
        })
        .await?;
    Ok(r.into_inner().conversation.expect("conversation"))
}

async fn outbound(c: &mut Clients, t: &str) -> tonic::Streaming<pb::OutboundMessage> {
    c.channel
        .stream_outbound(pb::StreamOutboundRequest { tenant: tenant(t), after_cursor: 0 })
        .await
        .expect("outbound stream")
        .into_inner()
}

/// The next `n` outbound messages as (reply kind, text).
async fn replies(
    s: &mut tonic::Streaming<pb::OutboundMessage>,
    n: usize,
) -> Vec<(pb::ReplyKind, String)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let m = next(s).await;
        got.push((
            pb::ReplyKind::try_from(m.reply_kind).unwrap_or(pb::ReplyKind::Unspecified),
            m.text,
        ));
    }
    got
}

fn kinds(r: &[(pb::ReplyKind, String)]) -> Vec<pb::ReplyKind> {
    r.iter().map(|(k, _)| *k).collect()
}

/// The eight rules of seed 001, with timers short enough for a test.
fn seed_001_settings() -> pb::TenantSettings {
    pb::TenantSettings {
        message_received: Some(pb::MessageReceivedReply {
            texts: texts(&["收到1", "收到2"]),
            also_in_session: false,
        }),
        keywords: vec![pb::KeywordRule {
            keywords: texts(&["价格"]),
            texts: texts(&["关键词1", "关键词2"]),
        }],
        open_service: Some(pb::Texts { texts: texts(&["欢迎"]) }),
        replies: Some(pb::ReplySettings {
            auto_accept: Some(pb::AutoAcceptReply {
                texts: texts(&["{{nick_name}},你好,客服{{staff_name}}负责接待您"]),
                also_from_queue: false,
            }),
            queue: Some(pb::QueueReply {
                rules: vec![pb::QueueRule {
                    above: 0,
                    texts: texts(&["{{nick_name}},当前还有{{queue_num}}人在排队中"]),
                }],
                min_interval: dur(60_000),
            }),
            agent_no_response: Some(pb::TimedReply {
                after: dur(1_000),
                texts: texts(&["客服无响应"]),
            }),
            customer_no_response: Some(pb::TimedReply {
                after: dur(2_000),
                texts: texts(&["访客无响应"]),
            }),
            customer_no_response_end: Some(pb::TimedReply {
                after: dur(4_000),
                texts: texts(&["自动结束"]),
            }),
            manual_end: Some(pb::Texts { texts: texts(&["手动结束"]) }),
            offline: Some(pb::OfflineReply {
                texts: texts(&["离线1", "离线2"]),
                min_interval: dur(0),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_worked_case_end_to_end() {
    seed_001_worked_case_end_to_end_on(pb::TenantRouting::TenantActor).await;
}

/// Issue 12 item 4: the same worked case on a tenant served by conversation, agent and
/// router actors. What it answers at once may be a step behind (the router decides after the
/// opening step answers), so states and positions are read once the replies that follow
/// them went out; every reply, its text and its order are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_worked_case_end_to_end_on_actors() {
    seed_001_worked_case_end_to_end_on(pb::TenantRouting::Actors).await;
}

async fn seed_001_worked_case_end_to_end_on(routing: pb::TenantRouting) {
    use pb::ReplyKind::*;
    let on_tenant_actor = routing == pb::TenantRouting::TenantActor;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup_routed(&mut c, "acme", seed_001_settings(), &[("zhang", "张三", 1)], routing).await;
    status(&mut c, "acme", "zhang", pb::AgentStatus::Online).await;
    let mut out = outbound(&mut c, "acme").await;
    let mut desk = c
        .agent
        .stream_events(pb::StreamAgentEventsRequest {
            agent: agent("acme", "zhang"),
            after_cursor: 0,
        })
        .await
        .unwrap()
        .into_inner();

    // 1-2. The customer writes; the agent takes it: the auto-accept reply only.
    let c1 = post(&mut c, "acme", "xiaoming", "小明", "你好").await;
    if on_tenant_actor {
        assert_eq!(c1.state, pb::ConversationState::Assigned as i32);
    }
    assert_eq!(
        replies(&mut out, 1).await,
        vec![(AutoAccept, "小明,你好,客服张三负责接待您".to_string())]
    );
    assert_eq!(get(&mut c, &c1.name).await.state, pb::ConversationState::Assigned as i32);
    // The message reaches the agent's desktop stream.
    let seen =
        until(&mut desk, |e| matches!(e.event, Some(pb::agent_event::Event::CustomerMessage(_))))
            .await;
    assert!(seen.iter().any(|e| matches!(e.event, Some(pb::agent_event::Event::Assigned(_)))));

    // 3. The agent does not respond.
    assert_eq!(kinds(&replies(&mut out, 1).await), vec![AgentNoResponse]);
    // 4. The agent replies.
    c.agent
        .send_message(pb::SendMessageRequest {
            agent: agent("acme", "zhang"),
            conversation: c1.name.clone(),
            text: "您好".into(),
            tag: 0,
            request_id: rid("send"),
        })
        .await
        .unwrap();
    assert_eq!(replies(&mut out, 1).await, vec![(Unspecified, "您好".to_string())]);
    // 5-6. The customer does not respond; then the conversation ends automatically.
    assert_eq!(kinds(&replies(&mut out, 2).await), vec![CustomerNoResponse, CustomerNoResponseEnd]);
    assert_eq!(get(&mut c, &c1.name).await.state, pb::ConversationState::Ended as i32);

    // 7. A new message opens a new conversation with the last agent: auto-accept again.
    let c2 = post(&mut c, "acme", "xiaoming", "小明", "还在吗").await;
    assert_ne!(c2.name, c1.name);
    if on_tenant_actor {
        assert_eq!(c2.agent, agent("acme", "zhang"));
    }
    assert_eq!(kinds(&replies(&mut out, 1).await), vec![AutoAccept]);
    assert_eq!(get(&mut c, &c2.name).await.agent, agent("acme", "zhang"));
    // 8. The agent does not respond.
    assert_eq!(kinds(&replies(&mut out, 1).await), vec![AgentNoResponse]);
    // 9. The agent ends it: the manual-end reply.
    c.agent
        .end_conversation(pb::AgentConversationRequest {
            agent: agent("acme", "zhang"),
            conversation: c2.name.clone(),
            request_id: rid("end"),
        })
        .await
        .unwrap();
    assert_eq!(kinds(&replies(&mut out, 1).await), vec![ManualEnd]);

    // 10. The agent is offline: queued, message-received and the offline reply (no queue reply).
    status(&mut c, "acme", "zhang", pb::AgentStatus::Offline).await;
    let c3 = post(&mut c, "acme", "xiaoming", "小明", "在吗").await;
    if on_tenant_actor {
        assert_eq!(c3.state, pb::ConversationState::Queued as i32);
    }
    assert_eq!(
        kinds(&replies(&mut out, 4).await),
        vec![MessageReceived, MessageReceived, Offline, Offline]
    );
    assert_eq!(get(&mut c, &c3.name).await.state, pb::ConversationState::Queued as i32);

    // 11. Online but full: another customer queues and gets the queue reply with its position.
    status(&mut c, "acme", "zhang", pb::AgentStatus::Online).await;
    assert_eq!(get(&mut c, &c3.name).await.state, pb::ConversationState::Assigned as i32);
    let c4 = post(&mut c, "acme", "xiaohong", "小红", "你好").await;
    if on_tenant_actor {
        assert_eq!(c4.position, 1);
    }
    assert_eq!(
        replies(&mut out, 3).await,
        vec![
            (MessageReceived, "收到1".to_string()),
            (MessageReceived, "收到2".to_string()),
            (Queue, "小红,当前还有1人在排队中".to_string()),
        ]
    );
    assert_eq!(get(&mut c, &c4.name).await.position, 1);
    // A keyword replaces the message-received reply and silences the queue reply.
    post(&mut c, "acme", "xiaohong", "小红", "价格多少").await;
    assert_eq!(kinds(&replies(&mut out, 2).await), vec![Keyword, Keyword]);
    // Nothing else went out in between: the next message is the one we send now.
    c.agent
        .send_message(pb::SendMessageRequest {
            agent: agent("acme", "zhang"),
            conversation: c3.name.clone(),
            text: "marker".into(),
            tag: 0,
            request_id: rid("send"),
        })
        .await
        .unwrap();
    assert_eq!(replies(&mut out, 1).await, vec![(Unspecified, "marker".to_string())]);

    if !on_tenant_actor {
        // The operators' metrics below are the tenant actor's (the actors count their own).
        return;
    }
    // What happened shows in the operators' metrics, with bounded labels.
    let metrics = support::scrape(&node.metrics);
    for want in [
        r#"switchboard_queue_wait_seconds_bucket{tenant="acme",group="support",outcome="assigned",le="20"}"#,
        r#"switchboard_first_response_seconds_bucket{tenant="acme",group="support",from="assigned",le="30"}"#,
        r#"switchboard_automatic_replies_total{tenant="acme",kind="auto_accept"} 2"#,
        r#"switchboard_automatic_replies_total{tenant="acme",kind="offline"} 2"#,
        r#"switchboard_conversations_ended_total{tenant="acme",group="support",cause="customer_no_response"} 1"#,
        r#"switchboard_assignments_total{tenant="acme",group="support",via="auto"}"#,
    ] {
        assert!(metrics.contains(want), "missing {want} in\n{metrics}");
    }
    assert!(!metrics.contains("conversations/"), "no conversation ids in labels");
    process_series_are_plausible(&metrics);
    promtool_accepts(&metrics);
}

/// The process series every Prometheus exporter has are there, with believable values.
fn process_series_are_plausible(scrape: &str) {
    let value = |name: &str| -> f64 {
        let line = scrape
            .lines()
            .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(' ')))
            .unwrap_or_else(|| panic!("no {name} in\n{scrape}"));
        line.rsplit(' ').next().unwrap().parse().unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    assert!(value("process_cpu_seconds_total") > 0.0, "the node has run");
    assert!(value("process_resident_memory_bytes") > 1e6, "more than 1 MB resident");
    assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
    let open = value("process_open_fds");
    assert!(open >= 3.0 && open <= value("process_max_fds"), "{open} open fds");
    assert!(value("process_threads") >= 2.0, "a multi-threaded runtime");
    // Started after 2020 (a real epoch time, not a count from boot).
    assert!(value("process_start_time_seconds") > 1.6e9);
}

/// `promtool check metrics` (Debian's `prometheus`, installed by scripts/setup) finds nothing
/// to complain about in a scrape.
fn promtool_accepts(scrape: &str) {
    use std::io::Write;
    let body = scrape.split_once("\r\n\r\n").map_or(scrape, |(_, b)| b);
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool is installed by scripts/setup");
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_pending_timers_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    let settings = pb::TenantSettings {
        replies: Some(pb::ReplySettings {
            agent_no_response: Some(pb::TimedReply {
                after: dur(10_000),
                texts: texts(&["one moment please"]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    setup(&mut c, "acme", settings, &[("zhang", "Zhang", 1)]).await;
    status(&mut c, "acme", "zhang", pb::AgentStatus::Online).await;
    let c1 = post(&mut c, "acme", "u1", "", "first").await;
    let c2 = post(&mut c, "acme", "u2", "", "second").await;
    let c3 = post(&mut c, "acme", "u3", "", "third").await;
    assert_eq!((c2.position, c3.position), (1, 2));
    // A group in offer mode, with a pending offer to Li.
    c.admin
        .put_group(pb::PutGroupRequest {
            name: "tenants/acme/groups/sales".into(),
            display_name: "Sales".into(),
            policy: Some(pb::RoutingPolicy {
                offer_mode: pb::OfferMode::Offer as i32,
                offer_timeout: dur(600_000),
                ..Default::default()
            }),
            replies: None,
            request_id: rid("group"),
            update_mask: None,
        })
        .await
        .unwrap();
    c.admin
        .put_agent(pb::PutAgentRequest {
            name: agent("acme", "li"),
            nickname: "Li".into(),
            capacity: 1,
            groups: vec!["tenants/acme/groups/sales".into()],
            request_id: rid("agent"),
            ..Default::default()
        })
        .await
        .unwrap();
    status(&mut c, "acme", "li", pb::AgentStatus::Online).await;
    let offered = c
        .channel
        .post_message(pb::PostMessageRequest {
            customer: "tenants/acme/customers/u4".into(),
            channel: pb::Channel::Web as i32,
            text: "quote please".into(),
            group: "tenants/acme/groups/sales".into(),
            request_id: rid("post"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(offered.state, pb::ConversationState::Offered as i32);

    // Crash with the agent-no-response timer of c1 pending.
    node.kill9();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    let (r1, r2, r3) =
        (get(&mut c, &c1.name).await, get(&mut c, &c2.name).await, get(&mut c, &c3.name).await);
    assert_eq!(r1.state, pb::ConversationState::Assigned as i32);
    assert_eq!(r1.agent, agent("acme", "zhang"));
    assert_eq!((r2.position, r3.position), (1, 2), "queue order survives");
    let o = get(&mut c, &offered.name).await;
    assert_eq!(
        (o.state, o.agent.as_str()),
        (pb::ConversationState::Offered as i32, agent("acme", "li").as_str())
    );
    let accepted = c
        .agent
        .accept(pb::AgentConversationRequest {
            agent: agent("acme", "li"),
            conversation: offered.name.clone(),
            request_id: rid("a"),
        })
        .await
        .expect("the offer survived and can be accepted")
        .into_inner();
    assert_eq!(accepted.state, pb::ConversationState::Assigned as i32);
    let history = c
        .agent
        .get_history(pb::GetHistoryRequest {
            agent: agent("acme", "zhang"),
            conversation: c1.name.clone(),
            page: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.messages.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(), vec!["first"]);
    let t = c
        .admin
        .get_tenant(pb::GetTenantRequest { name: tenant("acme") })
        .await
        .unwrap()
        .into_inner();
    assert!(
        t.settings.and_then(|s| s.replies).and_then(|r| r.agent_no_response).is_some(),
        "configuration survives"
    );

    // The pending timer fires after the restart, exactly once.
    let mut out = outbound(&mut c, "acme").await;
    let seen = until(&mut out, |m| m.reply_kind == pb::ReplyKind::AgentNoResponse as i32).await;
    assert_eq!(seen.last().unwrap().conversation, c1.name);
    c.agent
        .send_message(pb::SendMessageRequest {
            agent: agent("acme", "zhang"),
            conversation: c1.name.clone(),
            text: "marker".into(),
            tag: 0,
            request_id: rid("send"),
        })
        .await
        .unwrap();
    let rest = until(&mut out, |m| m.text == "marker").await;
    // Only c1's timer counts: the offer accepted after the restart starts a timer of its own,
    // which a slow machine may reach before the marker (a hidden timing dependency before).
    let again: Vec<_> = rest
        .iter()
        .filter(|m| m.reply_kind == pb::ReplyKind::AgentNoResponse as i32)
        .map(|m| m.conversation.as_str())
        .collect();
    assert!(!again.contains(&c1.name.as_str()), "the timer fired twice: {again:?}");

    // A graceful stop snapshots; the next start loads the snapshot.
    assert!(node.terminate(), "SIGTERM ends the node cleanly");
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    assert_eq!(get(&mut c, &c3.name).await.position, 2);
    assert_eq!(get(&mut c, &c1.name).await.agent_messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_the_same_request_id_act_once() {
    retries_with_the_same_request_id_act_once_on(pb::TenantRouting::TenantActor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_the_same_request_id_act_once_on_actors() {
    retries_with_the_same_request_id_act_once_on(pb::TenantRouting::Actors).await;
}

/// The operators see each retry answered from its stored answer.
fn replays(node: &Node) -> String {
    let metrics = support::scrape(&node.metrics);
    let series = r#"switchboard_idempotent_replays_total{tenant="acme"}"#;
    let line = metrics.lines().find(|l| l.starts_with(series));
    line.map(|l| l[series.len()..].trim().to_owned()).unwrap_or_default()
}

async fn retries_with_the_same_request_id_act_once_on(routing: pb::TenantRouting) {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    let settings = pb::TenantSettings::default();
    setup_routed(&mut c, "acme", settings, &[("zhang", "Zhang", 1)], routing).await;
    let first = post_with(&mut c, "acme", "u1", "", "hello", "retry-1").await.unwrap();
    assert_eq!(replays(&node), "");
    let again = post_with(&mut c, "acme", "u1", "", "hello", "retry-1").await.unwrap();
    assert_eq!(first.name, again.name);
    assert_eq!(get(&mut c, &first.name).await.customer_messages, 1);
    assert_eq!(replays(&node), "1");
    // Also after a crash.
    node.kill9();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let after = post_with(&mut c, "acme", "u1", "", "hello", "retry-1").await.unwrap();
    assert_eq!(after.name, first.name);
    assert_eq!(get(&mut c, &first.name).await.customer_messages, 1);
    assert_eq!(replays(&node), "1");
    // A new id acts again.
    post_with(&mut c, "acme", "u1", "", "hello", "retry-2").await.unwrap();
    assert_eq!(get(&mut c, &first.name).await.customer_messages, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c, "acme", pb::TenantSettings::default(), &[("zhang", "Zhang", 2)]).await;
    setup(&mut c, "globex", pb::TenantSettings::default(), &[("li", "Li", 2)]).await;
    for (t, a) in [("acme", "zhang"), ("globex", "li")] {
        status(&mut c, t, a, pb::AgentStatus::Online).await;
    }
    let secret = post(&mut c, "acme", "u1", "", "my card number is 1234").await;
    let theirs = post(&mut c, "globex", "u1", "", "hello").await;
    assert!(theirs.name.starts_with("tenants/globex/"));

    // Globex's agent cannot reach acme's conversation in any way.
    let err = c
        .agent
        .get_history(pb::GetHistoryRequest {
            agent: agent("globex", "li"),
            conversation: secret.name.clone(),
            page: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c
        .agent
        .send_message(pb::SendMessageRequest {
            agent: agent("globex", "li"),
            conversation: secret.name.clone(),
            text: "hi".into(),
            tag: 0,
            request_id: rid("x"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c
        .agent
        .transfer(pb::TransferRequest {
            agent: agent("acme", "zhang"),
            conversation: secret.name.clone(),
            to: Some(pb::transfer_request::To::ToAgent(agent("globex", "li"))),
            reset_entry_time: false,
            request_id: rid("x"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // Globex's streams carry only globex.
    let mut out = outbound(&mut c, "globex").await;
    c.agent
        .send_message(pb::SendMessageRequest {
            agent: agent("globex", "li"),
            conversation: theirs.name.clone(),
            text: "marker".into(),
            tag: 0,
            request_id: rid("send"),
        })
        .await
        .unwrap();
    let seen = until(&mut out, |m| m.text == "marker").await;
    assert!(seen.iter().all(|m| m.conversation.starts_with("tenants/globex/")));
    let mut events = c
        .events
        .stream_events(pb::StreamEventsRequest { tenant: tenant("globex"), after_cursor: 0 })
        .await
        .unwrap()
        .into_inner();
    let seen = until(&mut events, |e| e.r#type == "assigned").await;
    assert!(
        seen.iter().all(
            |e| !e.conversation.starts_with("tenants/acme/") && !e.detail_json.contains("1234")
        )
    );
}

/// The `ErrorInfo` reason of a status.
fn reason(s: &tonic::Status) -> String {
    s.get_details_error_info().map(|i| i.reason).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_status_and_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    let mut settings = pb::TenantSettings::default();
    settings.channels.push(pb::ChannelSettings {
        channel: pb::Channel::Web as i32,
        group: String::new(),
        replies: None,
        reply_window: dur(1_000),
    });
    setup(&mut c, "acme", settings, &[("zhang", "Zhang", 1)]).await;
    status(&mut c, "acme", "zhang", pb::AgentStatus::Online).await;

    // Unknown and malformed ids.
    let err = post_with(&mut c, "nope", "u1", "", "hi", "").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = c
        .channel
        .post_message(pb::PostMessageRequest {
            customer: "u1".into(),
            channel: 1,
            text: "hi".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("tenants/{tenant}"), "{}", err.message());
    assert_eq!(
        c.channel
            .post_message(pb::PostMessageRequest {
                customer: "tenants/acme/customers/Bad Id!".into(),
                channel: 1,
                text: "hi".into(),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let err = c
        .channel
        .get_conversation(pb::GetConversationRequest {
            conversation: "tenants/acme/conversations/abc".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.get_details_bad_request().is_some(), "field errors carry BadRequest details");
    let err = c
        .channel
        .get_conversation(pb::GetConversationRequest {
            conversation: "tenants/acme/conversations/999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Empty and oversize text; no channel.
    let err = post_with(&mut c, "acme", "u1", "", "   ", "").await.unwrap_err();
    assert_eq!((err.code(), reason(&err).as_str()), (Code::InvalidArgument, "INVALID_FIELD"));
    let err = post_with(&mut c, "acme", "u1", "", &"x".repeat(9_000), "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("8192"), "says the limit: {}", err.message());
    let err = c
        .channel
        .post_message(pb::PostMessageRequest {
            customer: "tenants/acme/customers/u1".into(),
            text: "hi".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("channel"), "{}", err.message());

    // Invalid transitions.
    let conv = post(&mut c, "acme", "u1", "", "hi").await;
    let err = c
        .agent
        .accept(pb::AgentConversationRequest {
            agent: agent("acme", "zhang"),
            conversation: conv.name.clone(),
            request_id: rid("a"),
        })
        .await
        .unwrap_err();
    assert_eq!((err.code(), reason(&err).as_str()), (Code::FailedPrecondition, "NOT_OFFERED"));
    let err = c
        .channel
        .request_human(pb::ConversationRequest {
            conversation: conv.name.clone(),
            request_id: rid("h"),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::FailedPrecondition, "INVALID_TRANSITION")
    );

    // A sixth queue rule; capacity 0.
    let rule = |n| pb::QueueRule { above: n, texts: texts(&["wait"]) };
    let err = c
        .admin
        .update_tenant(pb::UpdateTenantRequest {
            name: tenant("acme"),
            settings: Some(pb::TenantSettings {
                default_group: "tenants/acme/groups/support".into(),
                replies: Some(pb::ReplySettings {
                    queue: Some(pb::QueueReply {
                        rules: (0..6).map(rule).collect(),
                        min_interval: dur(0),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            display_name: String::new(),
            request_id: rid("t"),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("at most 5"), "{}", err.message());
    let err = c
        .admin
        .put_agent(pb::PutAgentRequest {
            name: agent("acme", "li"),
            capacity: 0,
            groups: vec!["tenants/acme/groups/support".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("capacity"), "{}", err.message());

    // A reply outside the reply window (1 s for web here): refused, the conversation closes.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let err = c
        .agent
        .send_message(pb::SendMessageRequest {
            agent: agent("acme", "zhang"),
            conversation: conv.name.clone(),
            text: "late".into(),
            tag: 0,
            request_id: rid("late"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        ["OUTSIDE_REPLY_WINDOW", "INVALID_TRANSITION"].contains(&reason(&err).as_str()),
        "refused for the window: {err:?}"
    );

    // The node never fell over.
    assert!(node.alive(), "the node survived every bad request");
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Channel::from_shared(node.grpc.clone()).unwrap().connect().await.unwrap(),
    );
    let h = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    // Every call is counted by service, method and status code.
    let metrics = support::scrape(&node.metrics);
    for want in [
        r#"grpc_server_handled_total{grpc_service="switchboard.v1.ChannelService",grpc_method="PostMessage",grpc_type="unary",grpc_code="InvalidArgument"}"#,
        r#"grpc_server_handled_total{grpc_service="switchboard.v1.ChannelService",grpc_method="PostMessage",grpc_type="unary",grpc_code="NotFound"}"#,
        r#"grpc_server_handled_total{grpc_service="switchboard.v1.ChannelService",grpc_method="PostMessage",grpc_type="unary",grpc_code="OK"}"#,
        r#"grpc_server_handled_total{grpc_service="switchboard.v1.AgentService",grpc_method="Accept",grpc_type="unary",grpc_code="FailedPrecondition"}"#,
        r#"grpc_server_handling_seconds_bucket{grpc_service="switchboard.v1.AdminService",grpc_method="CreateTenant",grpc_type="unary",le="0.5"}"#,
    ] {
        assert!(metrics.contains(want), "missing {want}");
    }
}

/// The field a refusal's `BadRequest` details name.
fn violated_field(s: &tonic::Status) -> String {
    s.get_details_bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default()
}

/// Client-sent times outside what `google.protobuf.Timestamp` and `Duration` allow (or before
/// the epoch) are refused with INVALID_ARGUMENT naming the field, never wrapped or panicked on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_times_are_invalid_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c, "acme", pb::TenantSettings::default(), &[]).await;
    let ts = |seconds, nanos| Some(prost_types::Timestamp { seconds, nanos });
    let d = |seconds, nanos| Some(prost_types::Duration { seconds, nanos });

    let stats = |from, to, threshold| pb::GetQueueStatsRequest {
        tenant: tenant("acme"),
        start_time: from,
        end_time: to,
        threshold,
    };
    let fine = c.supervisor.get_queue_stats(stats(ts(0, 0), ts(1_700_000_000, 0), d(20, 0))).await;
    assert!(fine.is_ok(), "{fine:?}");
    for (request, field) in [
        (stats(ts(-1, 0), None, None), "start_time"),
        (stats(None, ts(i64::MAX, 0), None), "end_time"),
        (stats(None, ts(1_700_000_000, 1_000_000_000), None), "end_time"),
        (stats(ts(0, -1), None, None), "start_time"),
        (stats(None, None, d(0, 1_000_000_000)), "threshold"),
        (stats(None, None, d(i64::MAX, 0)), "threshold"),
    ] {
        let err = c.supervisor.get_queue_stats(request.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{request:?}: {err:?}");
        assert_eq!(violated_field(&err), field, "{request:?}: {err:?}");
    }

    for (settings, field) in [
        (
            pb::TenantSettings { offline_grace: d(60, 2_000_000_000), ..Default::default() },
            "settings.offline_grace",
        ),
        (
            pb::TenantSettings { unreplied_alert: d(i64::MAX, 0), ..Default::default() },
            "settings.unreplied_alert",
        ),
    ] {
        let err = c
            .admin
            .update_tenant(pb::UpdateTenantRequest {
                name: tenant("acme"),
                settings: Some(pb::TenantSettings {
                    default_group: "tenants/acme/groups/support".into(),
                    ..settings
                }),
                display_name: String::new(),
                request_id: rid("t"),
                update_mask: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert_eq!(violated_field(&err), field, "{err:?}");
    }
    assert!(node.alive(), "the node survived every bad time");
}

/// The services a reflection endpoint lists.
macro_rules! reflected_services {
    ($pb:path, $channel:expr) => {{
        use $pb as r;
        let mut client = r::server_reflection_client::ServerReflectionClient::new($channel);
        let request = r::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(r::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut replies = client
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection")
            .into_inner();
        match next(&mut replies).await.message_response {
            Some(r::server_reflection_response::MessageResponse::ListServicesResponse(l)) => {
                l.service.into_iter().map(|s| s.name).collect::<Vec<_>>()
            }
            other => panic!("unexpected reflection reply {other:?}"),
        }
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_answers_on_v1_and_v1alpha() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let channel =
        tonic::transport::Channel::from_shared(node.grpc.clone()).unwrap().connect().await.unwrap();
    for services in [
        reflected_services!(tonic_reflection::pb::v1, channel.clone()),
        reflected_services!(tonic_reflection::pb::v1alpha, channel.clone()),
    ] {
        for want in [
            "switchboard.v1.ChannelService",
            "switchboard.v1.AgentService",
            "grpc.health.v1.Health",
        ] {
            assert!(services.iter().any(|s| s == want), "{want} missing from {services:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisors_whisper_move_end_and_watch() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c, "acme", pb::TenantSettings::default(), &[("zhang", "Zhang", 2), ("li", "Li", 2)])
        .await;
    c.admin
        .put_agent(pb::PutAgentRequest {
            name: agent("acme", "boss"),
            nickname: "Boss".into(),
            capacity: 1,
            groups: vec!["tenants/acme/groups/support".into()],
            supervisor: true,
            request_id: rid("agent"),
            ..Default::default()
        })
        .await
        .unwrap();
    status(&mut c, "acme", "zhang", pb::AgentStatus::Online).await;
    let c1 = post(&mut c, "acme", "u1", "", "first").await;
    let c2 = post(&mut c, "acme", "u2", "", "second").await;
    let mut desk = c
        .agent
        .stream_events(pb::StreamAgentEventsRequest {
            agent: agent("acme", "zhang"),
            after_cursor: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = outbound(&mut c, "acme").await;

    // A whisper reaches the agent, never the customer.
    c.supervisor
        .whisper(pb::WhisperRequest {
            supervisor: agent("acme", "boss"),
            conversation: c1.name.clone(),
            text: "offer the discount".into(),
            request_id: rid("w"),
        })
        .await
        .unwrap();
    let seen =
        until(&mut desk, |e| matches!(e.event, Some(pb::agent_event::Event::Whisper(_)))).await;
    assert_eq!(seen.last().unwrap().conversation, c1.name);
    let err = c
        .supervisor
        .whisper(pb::WhisperRequest {
            supervisor: agent("acme", "li"),
            conversation: c1.name.clone(),
            text: "x".into(),
            request_id: rid("w"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "only supervisors whisper: {err:?}");

    // Supervisors change statuses but never sign an offline agent in.
    let err = c
        .supervisor
        .set_agent_status(pb::SupervisorSetStatusRequest {
            supervisor: agent("acme", "boss"),
            agent: agent("acme", "li"),
            status: pb::AgentStatus::Online as i32,
            request_id: rid("s"),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err).as_str()),
        (Code::FailedPrecondition, "CANNOT_FORCE_ONLINE")
    );

    // A handover: the earlier agent sees the transcript only up to it (SPEC §7).
    let say = |who: &'static str, conv: String, text: &'static str| pb::SendMessageRequest {
        agent: agent("acme", who),
        conversation: conv,
        text: text.into(),
        tag: 0,
        request_id: rid("m"),
    };
    c.agent.send_message(say("zhang", c1.name.clone(), "before handover")).await.unwrap();
    status(&mut c, "acme", "li", pb::AgentStatus::Online).await;
    c.agent
        .transfer(pb::TransferRequest {
            agent: agent("acme", "zhang"),
            conversation: c1.name.clone(),
            to: Some(pb::transfer_request::To::ToAgent(agent("acme", "li"))),
            reset_entry_time: false,
            request_id: rid("t"),
        })
        .await
        .unwrap();
    c.agent.send_message(say("li", c1.name.clone(), "after handover")).await.unwrap();
    let history = |who: &'static str| pb::GetHistoryRequest {
        agent: agent("acme", who),
        conversation: c1.name.clone(),
        page: None,
    };
    let texts_of =
        |h: pb::GetHistoryResponse| h.messages.into_iter().map(|m| m.text).collect::<Vec<_>>();
    let li = texts_of(c.agent.get_history(history("li")).await.unwrap().into_inner());
    let zhang = texts_of(c.agent.get_history(history("zhang")).await.unwrap().into_inner());
    assert!(
        li.contains(&"before handover".to_string()) && li.contains(&"after handover".to_string()),
        "{li:?}"
    );
    assert!(
        zhang.contains(&"before handover".to_string())
            && !zhang.contains(&"after handover".to_string()),
        "{zhang:?}"
    );
    // The customer got both agent messages and nothing of the whisper.
    let sent = until(&mut out, |m| m.text == "after handover").await;
    assert!(sent.iter().all(|m| !m.text.contains("discount")));

    // Bot hosting for all assigned conversations, then a batch end.
    let changed = c
        .supervisor
        .set_bot_hosting(pb::SetBotHostingRequest {
            supervisor: agent("acme", "boss"),
            selection: Some(pb::set_bot_hosting_request::Selection::All(true)),
            on: true,
            request_id: rid("b"),
        })
        .await
        .unwrap()
        .into_inner()
        .changed;
    assert_eq!(changed, 2);
    let results = c
        .supervisor
        .end_batch(pb::EndBatchRequest {
            supervisor: agent("acme", "boss"),
            conversations: vec![
                c1.name.clone(),
                c2.name.clone(),
                "tenants/acme/conversations/77".into(),
            ],
            request_id: rid("e"),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(results.iter().map(|r| r.ok).collect::<Vec<_>>(), vec![true, true, false]);

    // Boards.
    let board = c
        .supervisor
        .get_live_board(pb::GetLiveBoardRequest { tenant: tenant("acme"), page: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((board.in_progress, board.ended, board.total), (0, 2, 2));
    let agents = c
        .supervisor
        .get_agent_board(pb::GetAgentBoardRequest { tenant: tenant("acme") })
        .await
        .unwrap()
        .into_inner()
        .agents;
    let zhang =
        agents.iter().find(|a| a.name == agent("acme", "zhang")).expect("zhang on the board");
    assert!(zhang.first_login_today.is_some(), "today's first login is shown");
    assert_eq!(zhang.status, pb::AgentStatus::Online as i32);
}

/// Issue 11: an ended conversation leaves the tenant's memory for the store's archive, and an
/// idle customer for the store's customer records; both stay readable and changeable (rating,
/// tags, profile, the last agent routing its next conversation) across a `kill -9`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_leaves_memory_and_stays_readable_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c, "acme", pb::TenantSettings::default(), &[("zhang", "Zhang", 5), ("li", "Li", 5)])
        .await;
    status(&mut c, "acme", "zhang", pb::AgentStatus::Online).await;
    let conv = post(&mut c, "acme", "u1", "Wang", "hello").await;
    assert_eq!(conv.agent, agent("acme", "zhang"));
    let (zhang, li) = (agent("acme", "zhang"), agent("acme", "li"));
    c.agent
        .send_message(pb::SendMessageRequest {
            agent: zhang.clone(),
            conversation: conv.name.clone(),
            text: "how can I help?".into(),
            request_id: rid("send"),
            ..Default::default()
        })
        .await
        .expect("agent reply");
    let ended = c
        .agent
        .end_conversation(pb::AgentConversationRequest {
            agent: zhang.clone(),
            conversation: conv.name.clone(),
            request_id: rid("end"),
        })
        .await
        .expect("end")
        .into_inner();
    assert_eq!(ended.state, pb::ConversationState::Ended as i32);

    // Right after the end (archived, maybe not yet durable) and later, the same answers.
    let seen = get(&mut c, &conv.name).await;
    assert_eq!(seen.state, pb::ConversationState::Ended as i32);
    assert_eq!(seen.customer, "tenants/acme/customers/u1");
    assert_eq!(seen.served_by, vec![zhang.clone()]);
    let rated = c
        .channel
        .rate_conversation(pb::RateConversationRequest {
            conversation: conv.name.clone(),
            score: 5,
            comment: "great".into(),
            request_id: rid("rate"),
        })
        .await
        .expect("a rating after the end")
        .into_inner();
    assert_eq!(rated.rating.as_ref().map(|r| r.score), Some(5));
    let tagged = c
        .agent
        .update_conversation(pb::UpdateConversationRequest {
            agent: zhang.clone(),
            conversation: conv.name.clone(),
            tags: vec!["refund".into()],
            note: "called back".into(),
            request_id: rid("tags"),
            update_mask: None,
        })
        .await
        .expect("tags after the end")
        .into_inner();
    assert_eq!(tagged.tags, vec!["refund".to_owned()]);
    assert_eq!(tagged.rating.as_ref().map(|r| r.score), Some(5), "the rating is kept");
    let profile = c
        .agent
        .update_customer_profile(pb::UpdateCustomerProfileRequest {
            agent: zhang.clone(),
            customer: "tenants/acme/customers/u1".into(),
            remark_name: "Mr Wang".into(),
            phone: "+86 10 1234".into(),
            request_id: rid("profile"),
            ..Default::default()
        })
        .await
        .expect("profile of an idle customer")
        .into_inner();
    assert_eq!(profile.last_agent, "tenants/acme/agents/zhang");
    let history = |c: &mut Clients, who: String| {
        let mut agent = c.agent.clone();
        let name = conv.name.clone();
        async move {
            agent
                .get_history(pb::GetHistoryRequest { agent: who, conversation: name, page: None })
                .await
        }
    };
    let h = history(&mut c, zhang.clone()).await.expect("its agent reads the history");
    assert_eq!(h.into_inner().messages.len(), 2);
    let refused = history(&mut c, li.clone()).await.expect_err("another agent does not");
    assert_eq!(refused.code(), Code::PermissionDenied);

    node.kill9();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let seen = get(&mut c, &conv.name).await;
    assert_eq!(seen.state, pb::ConversationState::Ended as i32);
    assert_eq!(seen.rating.as_ref().map(|r| r.comment.as_str()), Some("great"));
    assert_eq!((seen.tags, seen.note.as_str()), (vec!["refund".to_owned()], "called back"));
    let customer = c
        .admin
        .get_customer(pb::GetCustomerRequest { name: "tenants/acme/customers/u1".into() })
        .await
        .expect("an idle customer is read from the store")
        .into_inner();
    assert_eq!(
        (customer.remark_name.as_str(), customer.phone.as_str()),
        ("Mr Wang", "+86 10 1234")
    );
    assert_eq!(
        (customer.nickname.as_str(), customer.last_agent.as_str()),
        ("Wang", "tenants/acme/agents/zhang")
    );
    let h = history(&mut c, zhang.clone()).await.expect("history after the restart");
    assert_eq!(h.into_inner().messages.len(), 2);

    // The customer comes back: its last agent is preferred, with Li free too.
    status(&mut c, "acme", "li", pb::AgentStatus::Online).await;
    let again = post(&mut c, "acme", "u1", "", "me again").await;
    assert_ne!(again.name, conv.name);
    assert_eq!(again.agent, zhang);
    let board = c
        .supervisor
        .get_live_board(pb::GetLiveBoardRequest { tenant: tenant("acme"), page: None })
        .await
        .expect("board")
        .into_inner();
    assert_eq!((board.in_progress, board.ended, board.total), (1, 1, 2));
    let names: Vec<&str> = board.conversations.iter().map(|x| x.conversation.as_str()).collect();
    assert_eq!(names, vec![conv.name.as_str(), again.name.as_str()]);
}

/// Issue 13's routing contracts over gRPC: the first transition names what routed the
/// conversation, a priority raised while waiting re-ranks it, a transfer to one's own group
/// goes to someone else, and a contradictory last-agent policy is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_contracts_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c, "acme", pb::TenantSettings::default(), &[("li", "Li", 2), ("wang", "Wang", 2)])
        .await;

    // Nobody online: two customers wait; the first transition says "opened", not "bot".
    let first = post(&mut c, "acme", "u1", "", "hello").await;
    let second = post(&mut c, "acme", "u2", "", "hello").await;
    let t = &first.transitions[0];
    assert_eq!((t.to, t.cause.as_str()), (pb::ConversationState::Queued as i32, "opened"));
    assert_eq!((first.position, second.position), (1, 2));

    // The second customer raises its priority: it moves ahead, keeping its entry time.
    let raised = c
        .channel
        .post_message(pb::PostMessageRequest {
            customer: "tenants/acme/customers/u2".into(),
            channel: pb::Channel::Web as i32,
            text: "urgent".into(),
            group: String::new(),
            priority: 5,
            nickname: String::new(),
            request_id: rid("raise"),
        })
        .await
        .expect("post with priority")
        .into_inner()
        .conversation
        .unwrap();
    assert_eq!(raised.name, second.name);
    assert_eq!((raised.priority, raised.position), (5, 1));
    assert_eq!(get(&mut c, &first.name).await.position, 2);

    // Both agents come online and take one each; li transfers its own to the group it is
    // in, and wang, who has room, gets it.
    status(&mut c, "acme", "li", pb::AgentStatus::Online).await;
    status(&mut c, "acme", "wang", pb::AgentStatus::Online).await;
    let li = agent("acme", "li");
    let held_by_li = if get(&mut c, &first.name).await.agent == li { &first } else { &second };
    assert_eq!(get(&mut c, &held_by_li.name).await.agent, li);
    let moved = c
        .agent
        .transfer(pb::TransferRequest {
            agent: li.clone(),
            conversation: held_by_li.name.clone(),
            to: Some(pb::transfer_request::To::ToGroup("tenants/acme/groups/support".into())),
            reset_entry_time: false,
            request_id: rid("transfer"),
        })
        .await
        .expect("transfer to own group")
        .into_inner();
    assert_eq!(moved.agent, agent("acme", "wang"), "someone else could take it");

    // A last-agent timeout with the preference off is a contradiction, refused by name.
    let err = c
        .admin
        .put_group(pb::PutGroupRequest {
            name: "tenants/acme/groups/support".into(),
            display_name: "Support".into(),
            policy: Some(pb::RoutingPolicy {
                last_agent_timeout: dur(10_000),
                last_agent_preference: false,
                ..Default::default()
            }),
            replies: None,
            request_id: rid("policy"),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("last_agent_timeout"), "{}", err.message());
}

/// VIP customer groups raise priority, and the tenant's time zone is validated, kept and
/// used for "today", over gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_groups_and_the_tenant_time_zone_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let settings = pb::TenantSettings {
        customer_group_priorities: [("vip".to_owned(), 9)].into(),
        time_zone: "Asia/Shanghai".into(),
        ..Default::default()
    };
    setup(&mut c, "acme", settings, &[("li", "Li", 1)]).await;
    let kept = c.admin.get_tenant(pb::GetTenantRequest { name: tenant("acme") }).await.unwrap();
    let kept = kept.into_inner().settings.unwrap();
    assert_eq!(kept.time_zone, "Asia/Shanghai");
    assert_eq!(kept.customer_group_priorities.get("vip"), Some(&9));

    c.admin
        .put_customer(pb::PutCustomerRequest {
            name: "tenants/acme/customers/boss".into(),
            customer_groups: vec!["vip".into()],
            request_id: rid("vip"),
            ..Default::default()
        })
        .await
        .expect("put customer");
    let plain = post(&mut c, "acme", "walk-in", "", "hello").await;
    let vip = post(&mut c, "acme", "boss", "", "hello").await;
    assert_eq!((vip.priority, vip.position), (9, 1), "the VIP goes first");
    assert_eq!(get(&mut c, &plain.name).await.position, 2);

    // Today is Shanghai's today: the sign-in is recorded (the day itself is unit-tested in
    // calendar.rs with fixed instants).
    status(&mut c, "acme", "li", pb::AgentStatus::Online).await;
    let li = c.admin.get_agent(pb::GetAgentRequest { name: agent("acme", "li") }).await.unwrap();
    assert!(li.into_inner().first_login_today.is_some());

    for (bad, field) in [
        (
            pb::TenantSettings { time_zone: "Mars/Olympus".into(), ..Default::default() },
            "time_zone",
        ),
        (
            pb::TenantSettings {
                customer_group_priorities: [("vip".to_owned(), 300)].into(),
                ..Default::default()
            },
            "customer_group_priorities",
        ),
    ] {
        let err = c
            .admin
            .update_tenant(pb::UpdateTenantRequest {
                name: tenant("acme"),
                settings: Some(bad),
                display_name: "acme inc".into(),
                request_id: rid("bad"),
                update_mask: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(field), "{}", err.message());
    }
}

/// A node paused (SIGSTOP, a long stall) while its clients give up on calls keeps their
/// connections when it wakes. Each call abandoned meanwhile reaches it as a stream opened and
/// reset before it was accepted; h2 by default ends the whole connection after 20 of those
/// (its rapid-reset guard), which ended healthy streams on the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_woken_from_a_pause_keeps_its_connections_and_their_streams() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c, "acme", pb::TenantSettings::default(), &[("zhang", "Zhang", 1)]).await;
    // The healthy stream, on the same connection (one channel) as the calls below.
    let mut events = c
        .events
        .stream_events(pb::StreamEventsRequest { tenant: tenant("acme"), after_cursor: 0 })
        .await
        .expect("event stream")
        .into_inner();

    node.pause();
    // Calls the paused node cannot answer; each one the client drops is reset on the wire.
    let abandoned: Vec<_> = (0..64)
        .map(|_| {
            let mut admin = c.admin.clone();
            tokio::spawn(async move {
                let call = admin.get_tenant(pb::GetTenantRequest { name: tenant("acme") });
                tokio::time::timeout(Duration::from_millis(200), call).await.is_err()
            })
        })
        .collect();
    let mut gave_up = 0;
    for call in abandoned {
        gave_up += usize::from(call.await.expect("call task"));
    }
    node.resume();
    assert!(gave_up > 20, "the paused node answered {} calls", 64 - gave_up);

    // The stream opened before the pause is alive: it carries what happens after.
    status(&mut c, "acme", "zhang", pb::AgentStatus::Online).await;
    post(&mut c, "acme", "u1", "U", "hello").await;
    until(&mut events, |e| e.r#type == "assigned").await;
}
