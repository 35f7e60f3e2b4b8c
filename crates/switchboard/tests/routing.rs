//! Issue 14's routing rules over real gRPC against a real `switchboard serve` process: wrap-up
//! (optional and mandatory, its deadline across a crash), priority aging, proficiency and
//! the best-proficiency strategy, steps that widen to another group, overflow and maximum
//! queue size (its max wait across a crash), business hours (closed groups, the closed
//! reply, opening across a crash). Waits are for
//! conditions, with generous bounds; nothing asserts on time.

mod support;

use std::time::Duration;

use support::desk::get;
use support::{Clients, Node, rid};
use switchboard_proto::v1 as pb;
use tonic::Code;

const T: &str = "desk";

fn name(kind: &str, id: &str) -> String {
    format!("tenants/{T}/{kind}/{id}")
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() })
}

/// Sets only the given fields of `group`'s policy (a field mask over the current policy).
async fn set_policy(
    c: &mut Clients,
    group: &str,
    policy: pb::RoutingPolicy,
    paths: &[&str],
) -> Result<pb::Group, tonic::Status> {
    c.admin
        .put_group(pb::PutGroupRequest {
            name: name("groups", group),
            policy: Some(policy),
            request_id: rid("policy"),
            update_mask: mask(paths),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn wrap_up(c: &mut Clients, group: &str, seconds: i64, can_end_early: bool) {
    let policy = pb::RoutingPolicy {
        wrap_up: Some(prost_types::Duration { seconds, nanos: 0 }),
        wrap_up_can_end_early: can_end_early,
        ..Default::default()
    };
    let g = set_policy(c, group, policy, &["policy.wrap_up", "policy.wrap_up_can_end_early"])
        .await
        .expect("set the wrap-up");
    let p = g.policy.expect("policy");
    assert_eq!(p.wrap_up.map(|d| d.seconds), Some(seconds));
    assert_eq!(p.wrap_up_can_end_early, can_end_early);
    assert_eq!(p.offer_mode, pb::OfferMode::AutoAccept as i32, "the mask kept the rest");
}

async fn agent(c: &mut Clients, id: &str) -> pb::Agent {
    c.admin
        .get_agent(pb::GetAgentRequest { name: name("agents", id) })
        .await
        .expect("get agent")
        .into_inner()
}

async fn end(c: &mut Clients, agent: &str, conversation: &str) {
    c.agent
        .end_conversation(pb::AgentConversationRequest {
            agent: name("agents", agent),
            conversation: conversation.into(),
            request_id: rid("end"),
        })
        .await
        .expect("end conversation");
}

async fn end_wrap_up(
    c: &mut Clients,
    agent: &str,
    conversation: &str,
) -> Result<pb::Agent, tonic::Status> {
    c.agent
        .end_wrap_up(pb::EndWrapUpRequest {
            agent: name("agents", agent),
            conversation: conversation.into(),
            request_id: rid("wrap"),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Item 4: after alice ends a conversation of `support` (optional wrap-up), her only slot
/// stays taken and the next customer waits, until she ends the wrap-up; `billing`'s wrap-up
/// is mandatory and bob cannot end it. Refusals say what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrap_up_holds_the_slot_until_the_agent_ends_it_unless_mandatory() {
    wrap_up_holds_the_slot_on(pb::TenantRouting::TenantActor).await;
}

/// The same on conversation, agent and router actors (the refusals come from the router
/// actor through the agent's: renamed into resource names).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrap_up_holds_the_slot_on_actors() {
    wrap_up_holds_the_slot_on(pb::TenantRouting::Actors).await;
}

async fn wrap_up_holds_the_slot_on(routing: pb::TenantRouting) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] =
        &[("alice", &["support"], 1, false), ("bob", &["billing"], 1, false)];
    support::desk::floor_on(&mut c, T, None, agents, &["alice", "bob"], routing).await;
    wrap_up(&mut c, "support", 3600, true).await;
    wrap_up(&mut c, "billing", 3600, false).await;

    // A flag without a wrap-up is a contradiction, named by its field.
    let contradiction = pb::RoutingPolicy { wrap_up_can_end_early: true, ..Default::default() };
    let s = set_policy(
        &mut c,
        "support",
        contradiction,
        &["policy.wrap_up", "policy.wrap_up_can_end_early"],
    )
    .await
    .expect_err("can end early without a wrap-up");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("policy.wrap_up_can_end_early"), "{}", s.message());

    let c1 = support::desk::write(&mut c, T, "carol", "").await;
    assert_eq!(c1.agent, name("agents", "alice"));
    end(&mut c, "alice", &c1.name).await;
    let a = agent(&mut c, "alice").await;
    assert_eq!(a.load, 1, "the wrap-up holds the slot");
    assert_eq!(a.wrap_ups.len(), 1);
    assert_eq!(
        (a.wrap_ups[0].conversation.as_str(), a.wrap_ups[0].can_end_early),
        (c1.name.as_str(), true)
    );
    assert!(a.wrap_ups[0].end_time.is_some());

    let c2 = support::desk::write(&mut c, T, "dave", "").await;
    assert_eq!(c2.state, pb::ConversationState::Queued as i32, "alice is wrapping up: {c2:?}");
    assert_eq!(c2.position, 1);

    // Naming another conversation refuses; ending hers frees the slot for dave at once.
    let s = end_wrap_up(&mut c, "alice", &c2.name).await.expect_err("not a wrap-up of hers");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(s.message().contains(&c2.name) && s.message().contains(&name("agents", "alice")));
    let a = end_wrap_up(&mut c, "alice", &c1.name).await.expect("optional wrap-up ends early");
    assert!(a.wrap_ups.is_empty());
    assert_eq!(a.load, 1, "dave took the slot");
    let c2 = get(&mut c, &c2.name).await;
    assert_eq!(
        (c2.state, c2.agent.as_str()),
        (pb::ConversationState::Assigned as i32, name("agents", "alice").as_str())
    );
    let s = end_wrap_up(&mut c, "alice", "").await.expect_err("nothing left to end");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(s.message().contains("has no wrap-up"), "{}", s.message());

    // Mandatory: bob cannot end it, and his next customer waits.
    let c3 = support::desk::write(&mut c, T, "erin", "billing").await;
    assert_eq!(c3.agent, name("agents", "bob"));
    end(&mut c, "bob", &c3.name).await;
    let s = end_wrap_up(&mut c, "bob", "").await.expect_err("mandatory wrap-up");
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    assert!(s.message().contains("mandatory"), "{}", s.message());
    let c4 = support::desk::write(&mut c, T, "fred", "billing").await;
    assert_eq!(c4.state, pb::ConversationState::Queued as i32);
    assert_eq!(agent(&mut c, "bob").await.wrap_ups.len(), 1);
}

/// Item 4: a wrap-up's end is a deadline like every timer: it survives `kill -9`, and when
/// it passes on the restarted node the waiting conversation goes to the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrap_up_deadline_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] = &[("alice", &["support"], 1, false)];
    support::desk::floor(&mut c, T, None, agents, &["alice"]).await;
    wrap_up(&mut c, "support", 3, false).await;
    let c1 = support::desk::write(&mut c, T, "carol", "").await;
    end(&mut c, "alice", &c1.name).await;
    let c2 = support::desk::write(&mut c, T, "dave", "").await;
    if c2.state == pb::ConversationState::Queued as i32 {
        // The usual case: the node is killed while the wrap-up holds alice's slot.
        assert_eq!(agent(&mut c, "alice").await.wrap_ups.len(), 1);
    }

    node.kill9();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = get(&mut c, &c2.name).await;
        if now.state == pb::ConversationState::Assigned as i32 {
            assert_eq!(now.agent, name("agents", "alice"));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the wrap-up never ended after the restart: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(agent(&mut c, "alice").await.wrap_ups.is_empty());
}

/// A customer writes at `priority`; its conversation.
async fn write_at(c: &mut Clients, customer: &str, priority: u32) -> pb::Conversation {
    let r = pb::PostMessageRequest { priority, ..support::desk::hello(T, customer) };
    support::desk::post(c, r).await
}

/// The wall clock the node stamps with (same machine): waited on, never asserted on.
#[allow(clippy::disallowed_methods)]
fn wall_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    i64::try_from(since.expect("after 1970").as_millis()).expect("fits")
}

fn millis(t: &Option<prost_types::Timestamp>) -> i64 {
    let t = t.as_ref().expect("opened_at");
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

/// Item 5: with a 1 s aging step, a conversation that has waited more than a second longer
/// is ahead of one a level higher; positions are exact under the effective order (entry
/// time − priority × step, as the server stamped them); the agent gets the best one first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_aging_orders_the_queue_by_effective_priority() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] = &[("alice", &["support"], 1, false)];
    support::desk::floor(&mut c, T, None, agents, &[]).await;
    let aged = pb::RoutingPolicy {
        priority_aging: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
        ..Default::default()
    };
    let g = set_policy(&mut c, "support", aged, &["policy.priority_aging"]).await.expect("aging");
    assert_eq!(g.policy.unwrap().priority_aging.map(|d| d.seconds), Some(1));
    let bad = pb::RoutingPolicy {
        priority_aging: Some(prost_types::Duration { seconds: 90_000, nanos: 0 }),
        ..Default::default()
    };
    let s = set_policy(&mut c, "support", bad, &["policy.priority_aging"]).await.expect_err("25 h");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("policy.priority_aging"), "{}", s.message());

    let c1 = write_at(&mut c, "carol", 0).await;
    // Wait (on the clock, not a fixed sleep) until carol has waited 1.5 s: a slower machine
    // only makes her wait longer, which keeps her ahead.
    let due = millis(&c1.opened_at) + 1_500;
    while wall_ms() <= due {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c2 = write_at(&mut c, "dave", 1).await;
    let c3 = write_at(&mut c, "erin", 200).await;
    let mut all = Vec::new();
    for conv in [&c1, &c2, &c3] {
        all.push(get(&mut c, &conv.name).await);
    }
    let (r1, r2) = (all[0].position, all[1].position);
    assert!(r1 < r2, "carol (waited > 1 step longer) is ahead of dave a level up: {all:?}");
    // Exact positions under the effective key, from the server's own stamps.
    let mut expected: Vec<_> = all
        .iter()
        .enumerate()
        .map(|(i, x)| (millis(&x.opened_at) - i64::from(x.priority) * 1000, i, x.name.clone()))
        .collect();
    expected.sort();
    for (rank, (_, _, name)) in expected.iter().enumerate() {
        let x = all.iter().find(|x| &x.name == name).unwrap();
        assert_eq!(x.position, rank as u64 + 1, "{name}: {expected:?}");
    }

    // Alice signs in and takes them best first.
    support::desk::sign_in(&mut c, T, "alice").await;
    let now: Vec<_> = {
        let mut v = Vec::new();
        for (_, _, conv) in &expected {
            v.push(get(&mut c, conv).await);
        }
        v
    };
    assert_eq!(now[0].state, pb::ConversationState::Assigned as i32, "the best first: {now:?}");
    assert_eq!((now[1].position, now[2].position), (1, 2), "the rest move up: {now:?}");
}

async fn put_levels(
    c: &mut Clients,
    agent: &str,
    levels: &[(&str, u32)],
) -> Result<pb::Agent, tonic::Status> {
    c.admin
        .put_agent(pb::PutAgentRequest {
            name: name("agents", agent),
            proficiencies: levels
                .iter()
                .map(|(g, level)| pb::Proficiency { group: name("groups", g), level: *level })
                .collect(),
            request_id: rid("levels"),
            update_mask: mask(&["proficiencies"]),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Item 6: in a best-proficiency group the expert takes conversations first, then the next
/// level, whatever their occupancy; levels are per group, set by resource name, and a level
/// out of range or for a group the agent is not in is refused naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_proficiency_routes_to_the_highest_level_first() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] = &[
        ("alice", &["support", "billing"], 2, false),
        ("bob", &["support", "billing"], 2, false),
        ("carol", &["support"], 2, false),
    ];
    support::desk::floor(&mut c, T, None, agents, &[]).await;
    let best =
        pb::RoutingPolicy { strategy: pb::Strategy::BestProficiency as i32, ..Default::default() };
    let g = set_policy(&mut c, "support", best, &["policy.strategy"]).await.expect("strategy");
    assert_eq!(g.policy.unwrap().strategy, pb::Strategy::BestProficiency as i32);

    let a = put_levels(&mut c, "alice", &[("support", 2), ("billing", 5)]).await.expect("alice");
    assert_eq!(a.proficiencies.len(), 2);
    assert_eq!(a.groups.len(), 2, "the mask kept her groups");
    put_levels(&mut c, "bob", &[("support", 5), ("billing", 1)]).await.expect("bob");
    // carol: not rated, the lowest level.
    let s = put_levels(&mut c, "carol", &[("billing", 3)]).await.expect_err("not her group");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("proficiencies[0].group"), "{}", s.message());
    let s = put_levels(&mut c, "carol", &[("support", 6)]).await.expect_err("level 6");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("proficiencies[0].level"), "{}", s.message());

    for a in ["alice", "bob", "carol"] {
        support::desk::sign_in(&mut c, T, a).await;
    }
    let mut holders = Vec::new();
    for customer in ["u1", "u2", "u3", "u4", "u5"] {
        holders.push(support::desk::write(&mut c, T, customer, "support").await.agent);
    }
    let expected: Vec<String> =
        ["bob", "bob", "alice", "alice", "carol"].iter().map(|a| name("agents", a)).collect();
    assert_eq!(holders, expected);
}

/// Waits (bounded) until the conversation is assigned; returns it.
async fn assigned(c: &mut Clients, conversation: &str) -> pb::Conversation {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = get(c, conversation).await;
        if now.state == pb::ConversationState::Assigned as i32 {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "never assigned: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Item 1: `support` widens to `billing` after 1 s. A customer of support waits (nobody of
/// support is signed in); once the step is reached bob of billing gets it, even across a
/// `kill -9` in between (the step is a deadline). Steps name groups by resource name; one
/// naming the group itself, an unknown group or no wait is refused on its field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_widens_to_another_groups_agents_after_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] =
        &[("alice", &["support"], 1, false), ("bob", &["billing"], 1, false)];
    support::desk::floor(&mut c, T, None, agents, &["bob"]).await;
    let step = |after: Option<i64>, group: &str| pb::RoutingPolicy {
        steps: vec![pb::RoutingStep {
            after: after.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
            group: name("groups", group),
            min_level: None,
        }],
        ..Default::default()
    };
    for (policy, field, code) in [
        (step(Some(1), "support"), "policy.steps[0].group", Code::InvalidArgument),
        (step(Some(1), "nowhere"), "policy.steps[0].group", Code::NotFound),
        (step(None, "billing"), "policy.steps[0].after", Code::InvalidArgument),
    ] {
        let s = set_policy(&mut c, "support", policy, &["policy.steps"]).await.expect_err(field);
        assert_eq!(s.code(), code, "{s:?}");
        assert!(s.message().contains(field), "{field}: {}", s.message());
    }
    let g = set_policy(&mut c, "support", step(Some(1), "billing"), &["policy.steps"])
        .await
        .expect("a step");
    let steps = g.policy.expect("policy").steps;
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].group, name("groups", "billing"));

    let c1 = support::desk::write(&mut c, T, "carol", "support").await;
    assert_eq!(c1.state, pb::ConversationState::Queued as i32, "before the step: {c1:?}");
    assert_eq!(c1.position, 1);
    node.kill9();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let c1 = assigned(&mut c, &c1.name).await;
    assert_eq!(
        (c1.agent.as_str(), c1.group.as_str()),
        (name("agents", "bob").as_str(), name("groups", "support").as_str())
    );
}

/// Items 1 and 6: a group that needs level 3 keeps a conversation from alice (level 1) and
/// Explain says why and when a step lowers it; once the step's wait is shortened to 1 s
/// (steps are recomputed from the entry time) it lowers the level and alice takes it. A step
/// that does not lower the level is refused on its field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_admits_lower_proficiency_after_its_wait() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] = &[("alice", &["support"], 1, false)];
    support::desk::floor(&mut c, T, None, agents, &["alice"]).await;
    put_levels(&mut c, "alice", &[("support", 1)]).await.expect("alice");
    let leveled = |after: i64, lowered: u32| pb::RoutingPolicy {
        min_level: Some(3),
        steps: vec![pb::RoutingStep {
            after: Some(prost_types::Duration { seconds: after, nanos: 0 }),
            group: String::new(),
            min_level: Some(lowered),
        }],
        ..Default::default()
    };
    let paths = ["policy.min_level", "policy.steps"];
    let s = set_policy(&mut c, "support", leveled(3600, 3), &paths).await.expect_err("not lower");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("policy.steps[0].min_level"), "{}", s.message());
    let g = set_policy(&mut c, "support", leveled(3600, 1), &paths).await.expect("levels");
    let p = g.policy.expect("policy");
    assert_eq!(
        (p.min_level, p.steps[0].group.as_str(), p.steps[0].min_level),
        (Some(3), "", Some(1))
    );

    let c1 = support::desk::write(&mut c, T, "carol", "support").await;
    assert_eq!(c1.state, pb::ConversationState::Queued as i32, "below the level: {c1:?}");
    let x = explain(&mut c, &c1.name).await;
    let Some(pb::conversation_explanation::Explanation::Waiting(w)) = x.explanation else {
        panic!("waiting: {x:?}")
    };
    assert_eq!(w.next_step_min_level, 1);
    let v = w.agents.iter().find(|v| v.agent == name("agents", "alice")).expect("alice");
    let v = v.verdict.clone().expect("verdict");
    assert_eq!(v.reason, pb::WaitReason::BelowLevel as i32, "{v:?}");
    assert_eq!((v.level, v.needs_level), (1, 3));
    assert_eq!(millis(&v.until_time), millis(&w.next_step_time), "the step lowers it: {v:?}");

    set_policy(&mut c, "support", leveled(1, 1), &["policy.steps"]).await.expect("sooner");
    let c1 = assigned(&mut c, &c1.name).await;
    assert_eq!(c1.agent, name("agents", "alice"));
}

/// Item 7: a waiting conversation's estimated wait over gRPC. Before the group has served
/// anyone there is none (unset, and `{{wait_time}}` renders empty); once alice has taken one,
/// `GetConversation` and the queue notice carry it, the next in line waits less than the one
/// behind, and it is unset again once assigned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimated_wait_is_carried_by_conversations_and_queue_notices() {
    estimated_wait_on(pb::TenantRouting::TenantActor).await;
}

/// The same on conversation, agent and router actors: the router tells each conversation
/// its estimated wait with its place (the queue notice), and GetConversation asks the router.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimated_wait_is_carried_on_actors() {
    estimated_wait_on(pb::TenantRouting::Actors).await;
}

async fn estimated_wait_on(routing: pb::TenantRouting) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let replies = pb::ReplySettings {
        queue: Some(pb::QueueReply {
            rules: vec![pb::QueueRule {
                above: 0,
                texts: vec!["{{queue_num}} ahead, about {{wait_time}}".into()],
            }],
            min_interval: None,
        }),
        ..Default::default()
    };
    let agents: &[(&str, &[&str], u32, bool)] = &[("alice", &["support"], 1, false)];
    support::desk::floor_on(&mut c, T, Some(replies), agents, &["alice"], routing).await;
    let mut out = support::desk::outbound(&mut c, T).await;
    let queue_notice = |m: &pb::OutboundMessage| m.reply_kind == pb::ReplyKind::Queue as i32;

    // billing has served nobody: no estimate.
    let b1 = support::desk::write(&mut c, T, "bea", "billing").await;
    assert_eq!(b1.state, pb::ConversationState::Queued as i32);
    assert_eq!(get(&mut c, &b1.name).await.estimated_wait, None, "{b1:?}");
    let notice = support::until(&mut out, queue_notice).await.pop().unwrap();
    assert_eq!((notice.text.as_str(), notice.estimated_wait), ("1 ahead, about ", None));

    // alice serves carol; dave and erin wait behind her.
    let c1 = support::desk::write(&mut c, T, "carol", "").await;
    assert_eq!(c1.agent, name("agents", "alice"));
    assert_eq!(c1.estimated_wait, None, "assigned");
    let c2 = support::desk::write(&mut c, T, "dave", "").await;
    let notice = support::until(&mut out, queue_notice).await.pop().unwrap();
    assert_eq!(notice.conversation, c2.name);
    let told = notice.estimated_wait.expect("support has served one");
    let told = Duration::new(told.seconds as u64, told.nanos as u32);
    assert_eq!(
        notice.text,
        format!("1 ahead, about {}", switchboard_core::replies::display_wait(told))
    );
    let c3 = support::desk::write(&mut c, T, "erin", "").await;
    let (c2, c3) = (get(&mut c, &c2.name).await, get(&mut c, &c3.name).await);
    assert_eq!((c2.position, c3.position), (1, 2));
    let (w2, w3) = (c2.estimated_wait.expect("dave's"), c3.estimated_wait.expect("erin's"));
    assert!((w2.seconds, w2.nanos) < (w3.seconds, w3.nanos), "{w2:?} < {w3:?}");

    // alice is done with carol: dave is taken, erin moves up and still has an estimate.
    end(&mut c, "alice", &c1.name).await;
    let c2 = assigned(&mut c, &c2.name).await;
    assert_eq!(c2.estimated_wait, None, "assigned: {c2:?}");
    let c3 = get(&mut c, &c3.name).await;
    assert_eq!(c3.position, 1);
    assert!(c3.estimated_wait.is_some(), "{c3:?}");

    // erin writes again: her queue notice says where she stands now, though on actors the
    // router last told her conversation its place when she opened it (second).
    let erins = |m: &pb::OutboundMessage| queue_notice(m) && m.conversation == c3.name;
    let opening = support::until(&mut out, erins).await.pop().unwrap();
    assert!(opening.text.starts_with("2 ahead"), "{opening:?}");
    support::desk::write(&mut c, T, "erin", "").await;
    let notice = support::until(&mut out, erins).await.pop().unwrap();
    assert!(notice.text.starts_with("1 ahead"), "{notice:?}");
}

/// An overflow rule of `group`'s policy (and only that field).
async fn overflow(
    c: &mut Clients,
    group: &str,
    max_waiting: Option<u32>,
    max_wait: Option<i64>,
    to: &str,
) -> Result<pb::Group, tonic::Status> {
    let policy = pb::RoutingPolicy {
        overflow: Some(pb::RoutingOverflow {
            max_waiting,
            max_wait: max_wait.map(|seconds| prost_types::Duration { seconds, nanos: 0 }),
            group: if to.is_empty() { String::new() } else { name("groups", to) },
        }),
        ..Default::default()
    };
    set_policy(c, group, policy, &["policy.overflow"]).await
}

fn last_cause(c: &pb::Conversation) -> &str {
    c.transitions.last().map_or("", |t| t.cause.as_str())
}

/// Item 2: with nobody signed in, `support` holds one waiting conversation and overflows to
/// `billing`, which holds one and refuses: the second customer waits in billing (cause
/// `overflowed`), the third is ended (`queue_full`) with the configured reply. A chain that
/// loops is refused naming it; an unknown group is NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_overflows_then_refuses_with_the_queue_full_reply() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let replies = pb::ReplySettings {
        queue_full: Some(pb::Texts { texts: vec!["All lines busy, please write later".into()] }),
        ..Default::default()
    };
    let agents: &[(&str, &[&str], u32, bool)] = &[
        ("alice", &["support"], 1, false),
        ("bob", &["billing"], 1, false),
        ("sam", &[], 1, true),
    ];
    support::desk::floor(&mut c, T, Some(replies), agents, &[]).await;
    let mut out = support::desk::outbound(&mut c, T).await;

    overflow(&mut c, "billing", Some(1), None, "support").await.expect("billing → support");
    let s = overflow(&mut c, "support", Some(1), None, "billing").await.expect_err("a loop");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let (support, billing) = (name("groups", "support"), name("groups", "billing"));
    let named = format!("loops ({support} → {billing} → {support})");
    assert!(s.message().contains("policy.overflow.group") && s.message().contains(&named), "{s:?}");
    let s = overflow(&mut c, "support", Some(1), None, "nowhere").await.expect_err("unknown");
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    let s = overflow(&mut c, "support", None, None, "billing").await.expect_err("no limit");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("policy.overflow"), "{s:?}");

    overflow(&mut c, "billing", Some(1), None, "").await.expect("billing refuses");
    let g = overflow(&mut c, "support", Some(1), None, "billing").await.expect("support → billing");
    let o = g.policy.and_then(|p| p.overflow).expect("overflow");
    assert_eq!((o.max_waiting, o.group.as_str()), (Some(1), billing.as_str()));

    let c1 = support::desk::write(&mut c, T, "carol", "").await;
    assert_eq!(
        (c1.state, c1.group.as_str()),
        (pb::ConversationState::Queued as i32, support.as_str())
    );
    let c2 = support::desk::write(&mut c, T, "dave", "").await;
    assert_eq!(
        (c2.state, c2.group.as_str()),
        (pb::ConversationState::Queued as i32, billing.as_str())
    );
    assert_eq!(last_cause(&c2), "overflowed", "{c2:?}");
    let c3 = support::desk::write(&mut c, T, "erin", "").await;
    assert_eq!(c3.state, pb::ConversationState::Ended as i32, "{c3:?}");
    assert_eq!(last_cause(&c3), "queue_full", "{c3:?}");
    let full = |m: &pb::OutboundMessage| m.reply_kind == pb::ReplyKind::QueueFull as i32;
    let notice = support::until(&mut out, full).await.pop().unwrap();
    assert_eq!(
        (notice.conversation.as_str(), notice.text.as_str()),
        (c3.name.as_str(), "All lines busy, please write later")
    );
    // erin may write again: a new conversation (refused again while the queues are full).
    let again = support::desk::write(&mut c, T, "erin", "").await;
    assert_ne!(again.name, c3.name);
    // A transfer never ends a conversation: into full billing (no overflow group) it is
    // refused, and carol keeps her place in support.
    let moved = c
        .supervisor
        .reassign_batch(pb::ReassignBatchRequest {
            supervisor: name("agents", "sam"),
            conversations: vec![c1.name.clone()],
            to: Some(pb::reassign_batch_request::To::ToGroup(billing.clone())),
            reset_entry_time: false,
            request_id: support::rid("reassign"),
        })
        .await
        .expect("reassign batch")
        .into_inner();
    let result = &moved.results[0];
    assert!(!result.ok && result.error.contains("would end it"), "{result:?}");
    let carol = c
        .channel
        .get_conversation(pb::GetConversationRequest { conversation: c1.name.clone() })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        (carol.state, carol.group.as_str()),
        (pb::ConversationState::Queued as i32, support.as_str())
    );
}

/// Item 2: the max wait is a deadline: carol waits in `support` (nobody there signed in), the
/// node is killed, and after the restart the 1 s max wait moves her to `billing`, where bob
/// takes her (the deadline survives the crash; if it passed before the kill, the outcome is
/// the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_wait_moves_a_conversation_on_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] =
        &[("alice", &["support"], 1, false), ("bob", &["billing"], 1, false)];
    support::desk::floor(&mut c, T, None, agents, &["bob"]).await;
    overflow(&mut c, "support", None, Some(1), "billing").await.expect("support → billing");
    let c1 = support::desk::write(&mut c, T, "carol", "support").await;
    node.kill9();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let now = assigned(&mut c, &c1.name).await;
    assert_eq!(
        (now.agent.as_str(), now.group.as_str()),
        (name("agents", "bob").as_str(), name("groups", "billing").as_str())
    );
}

async fn explain(c: &mut Clients, conversation: &str) -> pb::ConversationExplanation {
    c.supervisor
        .explain_conversation(pb::ExplainConversationRequest { conversation: conversation.into() })
        .await
        .expect("explain conversation")
        .into_inner()
}

async fn explain_agent(
    c: &mut Clients,
    agent: &str,
) -> Result<pb::AgentExplanation, tonic::Status> {
    c.supervisor
        .explain_agent(pb::ExplainAgentRequest { agent: agent.into() })
        .await
        .map(tonic::Response::into_inner)
}

/// Item 8: Explain over gRPC. alice (capacity 1) takes the first customer of `support` as
/// the only agent who could (bob is offline); the second waits, and Explain names each
/// agent's reason with its figures; carol of `billing` is online with nothing waiting. Bad
/// names are refused on their field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_says_why_a_conversation_waits_who_got_one_and_why_an_agent_is_idle() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] = &[
        ("alice", &["support"], 1, false),
        ("bob", &["support"], 1, false),
        ("carol", &["billing"], 2, false),
    ];
    support::desk::floor(&mut c, T, None, agents, &["alice", "carol"]).await;
    let c1 = support::desk::write(&mut c, T, "u1", "support").await;
    let c2 = support::desk::write(&mut c, T, "u2", "support").await;
    assert_eq!(c1.agent, name("agents", "alice"));
    assert_eq!(c2.state, pb::ConversationState::Queued as i32, "{c2:?}");

    use pb::conversation_explanation::Explanation;
    let x = explain(&mut c, &c2.name).await;
    assert_eq!(x.conversation, c2.name);
    let Some(Explanation::Waiting(w)) = x.explanation else { panic!("not waiting: {x:?}") };
    assert_eq!((w.group.as_str(), w.position), (name("groups", "support").as_str(), 1));
    assert_eq!(w.steps_reached, 0);
    let verdicts: Vec<(String, i32, u32, u32)> = w
        .agents
        .iter()
        .map(|v| {
            let v2 = v.verdict.clone().expect("a verdict");
            (v.agent.clone(), v2.reason, v2.load, v2.capacity)
        })
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (name("agents", "alice"), pb::WaitReason::AtCapacity as i32, 1, 1),
            (name("agents", "bob"), pb::WaitReason::Offline as i32, 0, 0),
        ],
        "carol is in no group of its"
    );

    let x = explain(&mut c, &c1.name).await;
    let Some(Explanation::Held(h)) = x.explanation else { panic!("not held: {x:?}") };
    assert_eq!(h.agent, name("agents", "alice"));
    assert!(h.offer_expire_time.is_none(), "auto-accepted");
    let d = h.decision.expect("the decision is recorded");
    assert_eq!(d.basis, pb::DecisionBasis::Strategy as i32);
    assert_eq!(d.strategy, pb::Strategy::LeastOccupied as i32);
    assert_eq!(d.tie_break, pb::TieBreak::OnlyCandidate as i32, "bob was offline");
    assert_eq!(d.group, name("groups", "support"));
    let chosen = d.chosen.expect("figures");
    assert_eq!((chosen.load, chosen.capacity), (0, 1));
    assert!(d.runner_up.is_empty());

    let carol = explain_agent(&mut c, &name("agents", "carol")).await.expect("carol");
    assert_eq!(carol.status, pb::AgentStatus::Online as i32);
    assert_eq!((carol.load, carol.capacity, carol.waiting_total), (0, 2, 0));
    assert!(carol.refusal.is_none(), "she takes work: {carol:?}");
    assert_eq!(carol.groups.len(), 1);
    assert_eq!(carol.groups[0].group, name("groups", "billing"));
    assert_eq!((carol.groups[0].waiting, carol.groups[0].pushes), (0, true));

    let alice = explain_agent(&mut c, &name("agents", "alice")).await.expect("alice");
    assert_eq!(alice.refusal.map(|r| r.reason), Some(pb::WaitReason::AtCapacity as i32));
    assert_eq!(alice.waiting_total, 1);
    assert_eq!(alice.waiting[0].conversation, c2.name);

    let s = explain_agent(&mut c, "carol").await.expect_err("a bare id");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    assert!(s.message().contains("agent"), "{}", s.message());
    let s = explain_agent(&mut c, &name("agents", "ghost")).await.expect_err("no such agent");
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
    let s = c
        .supervisor
        .explain_conversation(pb::ExplainConversationRequest {
            conversation: name("conversations", "999"),
        })
        .await
        .expect_err("no such conversation");
    assert_eq!(s.code(), Code::NotFound, "{s:?}");
}

/// Business hours: `spans` ("HH:MM", "HH:MM") on every weekday (none: always closed).
fn every_day(spans: &[(&str, &str)]) -> pb::BusinessHours {
    let spans: Vec<pb::OpenSpan> =
        spans.iter().map(|(s, e)| pb::OpenSpan { start: (*s).into(), end: (*e).into() }).collect();
    pb::BusinessHours {
        weekly: (1..=7).map(|day| pb::WeekdayHours { day, spans: spans.clone() }).collect(),
        exceptions: Vec::new(),
    }
}

async fn set_hours(
    c: &mut Clients,
    group: &str,
    hours: pb::BusinessHours,
    when_closed: pb::WhenClosed,
) -> Result<pb::Group, tonic::Status> {
    let policy = pb::RoutingPolicy {
        hours: Some(hours),
        when_closed: when_closed as i32,
        ..Default::default()
    };
    set_policy(c, group, policy, &["policy.hours", "policy.when_closed"]).await
}

/// Item 3: `support` is closed (no hours on any day): carol's conversation waits although
/// alice is online and free, and gets the `closed` reply (once: the core's engine tests check that later messages
/// get none). Bad hours are refused on
/// their field. Then support's hours start at the next UTC minute (the tenant's zone is
/// UTC); the node is killed and restarted meanwhile, and once the minute comes alice gets
/// carol (the opening is a router deadline). Waits are for conditions, never on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_group_routes_nothing_sends_the_closed_reply_and_routes_when_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    let replies = pb::ReplySettings {
        closed: Some(pb::Texts { texts: vec!["We are closed, {{nick_name}}".into()] }),
        ..Default::default()
    };
    let agents: &[(&str, &[&str], u32, bool)] = &[("alice", &["support"], 2, false)];
    support::desk::floor(&mut c, T, Some(replies), agents, &["alice"]).await;
    let mut out = support::desk::outbound(&mut c, T).await;

    let wait = pb::WhenClosed::Wait;
    for (hours, field) in [
        (every_day(&[("25:00", "26:00")]), "policy.hours.weekly[0].spans[0].start"),
        (every_day(&[("09:00", "12:00"), ("11:00", "13:00")]), "overlaps spans[0]"),
        (every_day(&[("18:00", "02:00")]), "split it over two days"),
        (
            pb::BusinessHours {
                exceptions: vec![pb::DateHours { date: "2026-02-30".into(), spans: vec![] }],
                ..Default::default()
            },
            "policy.hours.exceptions[0].date",
        ),
    ] {
        let s = set_hours(&mut c, "support", hours, wait).await.expect_err(field);
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().contains(field), "{field}: {s:?}");
    }
    let s = set_hours(&mut c, "support", every_day(&[]), pb::WhenClosed::Overflow)
        .await
        .expect_err("overflow without a group");
    assert!(s.message().contains("policy.when_closed"), "{s:?}");

    let g = set_hours(&mut c, "support", every_day(&[]), wait).await.expect("always closed");
    assert_eq!(g.policy.and_then(|p| p.hours).map(|h| h.weekly.len()), Some(0), "no open day");
    let c1 = support::desk::write(&mut c, T, "carol", "support").await;
    assert_eq!(c1.state, pb::ConversationState::Queued as i32, "{c1:?}");
    let closed = |m: &pb::OutboundMessage| m.reply_kind == pb::ReplyKind::Closed as i32;
    let notice = support::until(&mut out, closed).await.pop().unwrap();
    assert_eq!(notice.conversation, c1.name);

    // Open from the next minute to midnight, every day (wait out 23:59 itself).
    let minute = loop {
        let m = (wall_ms() / 60_000) % 1440;
        if m < 1439 {
            break m + 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let start = format!("{:02}:{:02}", minute / 60, minute % 60);
    set_hours(&mut c, "support", every_day(&[(&start, "24:00")]), wait).await.expect("hours");
    node.kill9();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let now = get(&mut c, &c1.name).await;
        if now.state == pb::ConversationState::Assigned as i32 {
            assert_eq!(now.agent, name("agents", "alice"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never assigned: {now:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(node);
}

/// Item 3: the tenant's hours apply to groups without their own. Closed all week except
/// nothing, with `billing` set to WHEN_CLOSED_END: dave's conversation ends at once with
/// cause `closed` and the `closed` reply; `support` (hours of its own, always open) routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_closed_all_week_ends_conversations_of_an_end_group() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let replies = pb::ReplySettings {
        closed: Some(pb::Texts { texts: vec!["Closed for the holidays".into()] }),
        ..Default::default()
    };
    let agents: &[(&str, &[&str], u32, bool)] =
        &[("alice", &["support"], 1, false), ("bob", &["billing"], 1, false)];
    support::desk::floor(&mut c, T, Some(replies), agents, &["alice", "bob"]).await;
    let mut out = support::desk::outbound(&mut c, T).await;
    let t = c
        .admin
        .update_tenant(pb::UpdateTenantRequest {
            name: format!("tenants/{T}"),
            settings: Some(pb::TenantSettings {
                hours: Some(pb::BusinessHours::default()),
                ..Default::default()
            }),
            request_id: rid("hours"),
            update_mask: mask(&["settings.hours"]),
            ..Default::default()
        })
        .await
        .expect("tenant hours")
        .into_inner();
    let s = t.settings.expect("settings");
    assert!(s.hours.is_some() && !s.default_group.is_empty(), "the mask kept the rest: {s:?}");
    set_hours(&mut c, "billing", every_day(&[]), pb::WhenClosed::End).await.expect("end");
    set_hours(&mut c, "support", every_day(&[("00:00", "24:00")]), pb::WhenClosed::Wait)
        .await
        .expect("support always open");

    let c1 = support::desk::write(&mut c, T, "dave", "billing").await;
    assert_eq!(c1.state, pb::ConversationState::Ended as i32, "{c1:?}");
    assert_eq!(last_cause(&c1), "closed", "{c1:?}");
    let closed = |m: &pb::OutboundMessage| m.reply_kind == pb::ReplyKind::Closed as i32;
    let notice = support::until(&mut out, closed).await.pop().unwrap();
    assert_eq!(
        (notice.conversation.as_str(), notice.text.as_str()),
        (c1.name.as_str(), "Closed for the holidays")
    );
    let c2 = support::desk::write(&mut c, T, "erin", "support").await;
    assert_eq!(assigned(&mut c, &c2.name).await.agent, name("agents", "alice"));
}
