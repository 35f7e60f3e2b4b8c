//! The supervisor's reads of a tenant created with `TENANT_ROUTING_ACTORS` (issue 12's
//! cut-over), served from its router actor, over real gRPC against a real `switchboard
//! serve` process: the same scenario is built on a tenant-actor tenant and on an actor
//! tenant, and GetLiveBoard, GetQueueStats, GetAgentBoard, ExplainConversation,
//! ExplainAgent, ListConversations and the agents' SearchConversations must answer alike,
//! field by field, once names (the tenant, conversation numbers) and clock readings are set
//! aside. Waits are bounded; nothing asserts on time.

mod support;

use std::time::Duration;

use support::desk::get;
use support::{Clients, Node, rid};
use switchboard_proto::v1 as pb;
use tonic::Code;

/// The tenant served by its tenant actor, and the one served by actors.
const PLAIN: &str = "plain";
const ACTORS: &str = "act";

fn dur(ms: u64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    })
}

fn group(t: &str, g: &str) -> String {
    format!("tenants/{t}/groups/{g}")
}

fn agent(t: &str, a: &str) -> String {
    format!("tenants/{t}/agents/{a}")
}

/// Two groups: "support" (the default, auto-accept) and "sales" (offers that wait 10
/// minutes for an accept); ann and bob in support, li in sales, capacity 1 each; boss, a
/// supervisor in support, never signs in.
async fn setup(c: &mut Clients, t: &str, routing: pb::TenantRouting) {
    support::create_tenant(c, t, t, routing).await;
    let offer = pb::RoutingPolicy {
        offer_mode: pb::OfferMode::Offer as i32,
        offer_timeout: dur(600_000),
        ..Default::default()
    };
    for (g, policy) in [("support", None), ("sales", Some(offer))] {
        c.admin
            .put_group(pb::PutGroupRequest {
                name: group(t, g),
                display_name: g.into(),
                policy,
                request_id: rid("group"),
                ..Default::default()
            })
            .await
            .expect("put group");
    }
    c.admin
        .update_tenant(pb::UpdateTenantRequest {
            name: format!("tenants/{t}"),
            settings: Some(pb::TenantSettings {
                default_group: group(t, "support"),
                ..Default::default()
            }),
            display_name: t.into(),
            request_id: rid("settings"),
            update_mask: None,
        })
        .await
        .expect("update tenant");
    for (a, g) in [("ann", "support"), ("bob", "support"), ("li", "sales"), ("boss", "support")] {
        c.admin
            .put_agent(pb::PutAgentRequest {
                name: agent(t, a),
                nickname: a.into(),
                capacity: 1,
                groups: vec![group(t, g)],
                supervisor: a == "boss",
                request_id: rid("agent"),
                ..Default::default()
            })
            .await
            .expect("put agent");
    }
    for (a, status) in [
        ("ann", pb::AgentStatus::Online),
        ("bob", pb::AgentStatus::Away),
        ("li", pb::AgentStatus::Online),
    ] {
        c.agent
            .set_status(pb::SetStatusRequest {
                agent: agent(t, a),
                status: status as i32,
                request_id: rid("status"),
            })
            .await
            .expect("set status");
    }
}

/// Waits (bounded) until the conversation is in `state`: on actors the router decides
/// after PostMessage answered.
async fn settled(c: &mut Clients, name: &str, state: pb::ConversationState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let read = get(c, name).await;
        if read.state == state as i32 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} never became {state:?}: {read:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A customer's first message into `g`; answers the conversation's name once it is in
/// `state`.
async fn open(
    c: &mut Clients,
    t: &str,
    customer: &str,
    g: &str,
    state: pb::ConversationState,
) -> String {
    let r = pb::PostMessageRequest {
        customer: format!("tenants/{t}/customers/{customer}"),
        channel: pb::Channel::Web as i32,
        text: "hello".into(),
        group: group(t, g),
        request_id: rid("post"),
        ..Default::default()
    };
    let posted = c.channel.post_message(r).await.expect("post").into_inner();
    let name = posted.conversation.expect("conversation").name;
    settled(c, &name, state).await;
    name
}

/// The scenario: u1 assigned to ann (support), u2 queued in support (ann full, bob away),
/// u3 offered to li (sales), u4 queued in sales behind li's pending offer. Its conversations'
/// names in that order.
async fn scenario(c: &mut Clients, t: &str) -> Vec<String> {
    use pb::ConversationState as S;
    vec![
        open(c, t, "u1", "support", S::Assigned).await,
        open(c, t, "u2", "support", S::Queued).await,
        open(c, t, "u3", "sales", S::Offered).await,
        open(c, t, "u4", "sales", S::Queued).await,
    ]
}

/// A response's text with the tenant's names made alike (conversations by their place in
/// the scenario) and clock readings (timestamps, durations) reduced to their presence; page
/// tokens left out.
fn norm(t: &str, conversations: &[String], response: &impl std::fmt::Debug) -> String {
    // Page tokens carry numbers: their presence is asserted where it matters.
    let mut s: String = format!("{response:#?}")
        .lines()
        .filter(|l| !l.trim_start().starts_with("next_page_token:"))
        .map(|l| format!("{l}\n"))
        .collect();
    for (i, name) in conversations.iter().enumerate() {
        s = s.replace(&format!("\"{name}\""), &format!("\"C{i}\""));
    }
    s = s.replace(&format!("tenants/{t}/"), "tenants/T/");
    for kind in ["Timestamp {", "Duration {"] {
        let mut out = String::new();
        let mut rest = s.as_str();
        while let Some(at) = rest.find(kind) {
            out.push_str(&rest[..at]);
            out.push_str(kind.trim_end_matches(" {"));
            let end = rest[at..].find('}').expect("a closing brace");
            rest = &rest[at + end + 1..];
        }
        out.push_str(rest);
        s = out;
    }
    s
}

async fn live_board(c: &mut Clients, t: &str, size: u32, token: &str) -> pb::LiveBoard {
    let r = pb::GetLiveBoardRequest {
        tenant: format!("tenants/{t}"),
        page: Some(pb::PageRequest { page_size: size, page_token: token.into() }),
    };
    c.supervisor.get_live_board(r).await.expect("live board").into_inner()
}

async fn queue_stats(c: &mut Clients, t: &str) -> pb::QueueStats {
    let r = pb::GetQueueStatsRequest {
        tenant: format!("tenants/{t}"),
        threshold: dur(0),
        start_time: None,
        end_time: None,
    };
    c.supervisor.get_queue_stats(r).await.expect("queue stats").into_inner()
}

async fn list_agents(c: &mut Clients, t: &str) -> pb::ListAgentsResponse {
    let page = Some(pb::PageRequest { page_size: 100, page_token: String::new() });
    let r = pb::ListAgentsRequest { tenant: format!("tenants/{t}"), page };
    c.admin.list_agents(r).await.expect("list agents").into_inner()
}

async fn agent_board(c: &mut Clients, t: &str) -> pb::AgentBoard {
    let r = pb::GetAgentBoardRequest { tenant: format!("tenants/{t}") };
    c.supervisor.get_agent_board(r).await.expect("agent board").into_inner()
}

async fn list(
    c: &mut Clients,
    t: &str,
    filter: &str,
    size: u32,
    token: &str,
) -> pb::ListConversationsResponse {
    let r = pb::ListConversationsRequest {
        parent: format!("tenants/{t}"),
        filter: filter.replace("tenants/T/", &format!("tenants/{t}/")),
        page_size: size,
        page_token: token.into(),
    };
    c.supervisor.list_conversations(r).await.expect(filter).into_inner()
}

/// Every page of `a`'s SearchConversations in tenant `t`, pages of `size`; the filter's
/// `tenants/T/` and `C{i}` (the scenario's `i`th conversation) made the tenant's.
async fn search(
    c: &mut Clients,
    t: &str,
    names: &[String],
    a: &str,
    filter: &str,
    size: u32,
) -> Result<Vec<pb::ListConversationsResponse>, tonic::Status> {
    let mut filter = filter.replace("tenants/T/", &format!("tenants/{t}/"));
    for (i, name) in names.iter().enumerate() {
        filter = filter.replace(&format!("C{i}"), name);
    }
    let mut pages = Vec::new();
    let mut page_token = String::new();
    for _ in 0..20 {
        let r = pb::SearchConversationsRequest {
            agent: agent(t, a),
            filter: filter.clone(),
            page_size: size,
            page_token,
        };
        let page = c.agent.search_conversations(r).await?.into_inner();
        page_token = page.next_page_token.clone();
        pages.push(page);
        if page_token.is_empty() {
            return Ok(pages);
        }
    }
    panic!("{a}, {filter}: no end after 20 pages");
}

/// The first sign-ins the agent board shows, by agent name.
fn first_logins(board: &pb::AgentBoard) -> Vec<(String, Option<prost_types::Timestamp>)> {
    board.agents.iter().map(|x| (x.name.clone(), x.first_login_today)).collect()
}

async fn explain(
    c: &mut Clients,
    conversation: &str,
) -> Result<pb::ConversationExplanation, tonic::Status> {
    let r = pb::ExplainConversationRequest { conversation: conversation.into() };
    c.supervisor.explain_conversation(r).await.map(tonic::Response::into_inner)
}

async fn explain_agent(c: &mut Clients, name: &str) -> Result<pb::AgentExplanation, tonic::Status> {
    let r = pb::ExplainAgentRequest { agent: name.into() };
    c.supervisor.explain_agent(r).await.map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_supervisors_reads_of_an_actor_tenant_match_the_tenant_actors() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    setup(&mut c, PLAIN, pb::TenantRouting::Unspecified).await;
    setup(&mut c, ACTORS, pb::TenantRouting::Actors).await;
    let plain = scenario(&mut c, PLAIN).await;
    let act = scenario(&mut c, ACTORS).await;
    assert!(act.iter().all(|n| n.starts_with("tenants/act/conversations/")), "{act:?}");

    // The same answer, names and clocks aside.
    macro_rules! same {
        ($what:expr, $plain:expr, $act:expr) => {{
            let (p, a) = ($plain, $act);
            assert_eq!(norm(PLAIN, &plain, &p), norm(ACTORS, &act, &a), "{}", $what);
            (p, a)
        }};
    }

    // The live board: every conversation with its state, agent and counts, then paged.
    let (board, _) = same!(
        "live board",
        live_board(&mut c, PLAIN, 100, "").await,
        live_board(&mut c, ACTORS, 100, "").await
    );
    assert_eq!((board.in_progress, board.ended, board.total), (4, 0, 4), "{board:?}");
    let states: Vec<i32> = board.conversations.iter().map(|x| x.state).collect();
    use pb::ConversationState as S;
    let expected = [S::Assigned, S::Queued, S::Offered, S::Queued].map(|s| s as i32);
    assert_eq!(states, expected, "{board:?}");
    let (first, first_act) = same!(
        "live board, first page",
        live_board(&mut c, PLAIN, 3, "").await,
        live_board(&mut c, ACTORS, 3, "").await
    );
    assert_eq!(first.conversations.len(), 3);
    assert!(!first_act.next_page_token.is_empty());
    let (second, second_act) = same!(
        "live board, second page",
        live_board(&mut c, PLAIN, 3, &first.next_page_token).await,
        live_board(&mut c, ACTORS, 3, &first_act.next_page_token).await
    );
    assert_eq!(second.conversations.len(), 1, "{second:?}");
    assert!(second_act.next_page_token.is_empty());

    // The agent board, today's first sign-in included (its time aside: the two tenants'
    // agents signed in at different moments).
    let (board, board_act) =
        same!("agent board", agent_board(&mut c, PLAIN).await, agent_board(&mut c, ACTORS).await);
    for b in [&board, &board_act] {
        let logged_in: Vec<bool> = b.agents.iter().map(|x| x.first_login_today.is_some()).collect();
        assert_eq!(logged_in, [true, true, false, true], "all but boss signed in today: {b:?}");
    }
    let loads: Vec<(u32, i32)> = board.agents.iter().map(|x| (x.load, x.status)).collect();
    let (online, offline) = (pb::AgentStatus::Online as i32, pb::AgentStatus::Offline as i32);
    let away = pb::AgentStatus::Away as i32;
    assert_eq!(loads, [(1, online), (0, away), (0, offline), (1, online)]);
    // AdminService's ListAgents and GetAgent show the same live views (on actors: the
    // router's, not the tenant actor's configuration-only ones).
    let (_, agents_act) =
        same!("list agents", list_agents(&mut c, PLAIN).await, list_agents(&mut c, ACTORS).await);
    let live: Vec<(u32, i32)> = agents_act.agents.iter().map(|x| (x.load, x.status)).collect();
    assert_eq!(live, loads);
    let first = agents_act.agents[0].clone();
    let got = c.admin.get_agent(pb::GetAgentRequest { name: first.name.clone() }).await;
    assert_eq!(got.expect("get agent").into_inner(), first);
    // Signing in again the same day keeps the first sign-in, which SetStatus answers with.
    for (t, b) in [(PLAIN, &board), (ACTORS, &board_act)] {
        let mut answered = None;
        for status in [pb::AgentStatus::Offline, pb::AgentStatus::Away] {
            let r = pb::SetStatusRequest {
                agent: agent(t, "bob"),
                status: status as i32,
                request_id: rid("status"),
            };
            answered = Some(c.agent.set_status(r).await.expect("bob out and in").into_inner());
        }
        let bob = answered.expect("answered").first_login_today;
        assert!(bob.is_some() && bob == b.agents[1].first_login_today, "{t}: {bob:?} {b:?}");
        let again = agent_board(&mut c, t).await;
        assert_eq!(first_logins(&again), first_logins(b), "{t}: the first of the day stays");
    }

    // Explain: a queued conversation (why li does not take it), an offered one, agents.
    let (x, _) = same!(
        "explain the queued u4",
        explain(&mut c, &plain[3]).await.expect("explain"),
        explain(&mut c, &act[3]).await.expect("explain")
    );
    let Some(pb::conversation_explanation::Explanation::Waiting(w)) = x.explanation else {
        panic!("u4 waits: {x:?}");
    };
    let li = w.agents.iter().find(|v| v.agent == agent(PLAIN, "li")).expect("li's verdict");
    assert_eq!(li.verdict.as_ref().unwrap().reason, pb::WaitReason::AtCapacity as i32);
    same!(
        "explain the queued u2",
        explain(&mut c, &plain[1]).await.expect("explain"),
        explain(&mut c, &act[1]).await.expect("explain")
    );
    same!(
        "explain the offered u3",
        explain(&mut c, &plain[2]).await.expect("explain"),
        explain(&mut c, &act[2]).await.expect("explain")
    );
    for a in ["ann", "bob", "li"] {
        same!(
            format!("explain {a}"),
            explain_agent(&mut c, &agent(PLAIN, a)).await.expect("explain agent"),
            explain_agent(&mut c, &agent(ACTORS, a)).await.expect("explain agent")
        );
    }
    for t in [PLAIN, ACTORS] {
        let e = explain_agent(&mut c, &agent(t, "nobody")).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        let e = explain(&mut c, &format!("tenants/{t}/conversations/999")).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{t}: {e:?}");
    }

    // u1 ends: ann takes u2. The board counts it ended (from the archive on actors); the
    // queue statistics count u2's wait, which ended, and u4's, which goes on.
    for (t, names) in [(PLAIN, &plain), (ACTORS, &act)] {
        let close =
            pb::ConversationRequest { conversation: names[0].clone(), request_id: rid("close") };
        c.channel.close_conversation(close).await.expect("close");
        settled(&mut c, &names[1], S::Assigned).await;
        let _ = t;
    }
    let (board, _) = same!(
        "live board after u1 ended",
        live_board(&mut c, PLAIN, 100, "").await,
        live_board(&mut c, ACTORS, 100, "").await
    );
    assert_eq!((board.in_progress, board.ended, board.total), (3, 1, 4), "{board:?}");
    for names in [&plain, &act] {
        let e = explain(&mut c, &names[0]).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "an ended one is not routed: {e:?}");
    }
    let (stats, _) =
        same!("queue stats", queue_stats(&mut c, PLAIN).await, queue_stats(&mut c, ACTORS).await);
    let waited: Vec<&str> = stats.waits.iter().map(|w| w.conversation.as_str()).collect();
    assert!(waited.contains(&plain[1].as_str()), "u2 waited: {stats:?}");
    assert!(waited.contains(&plain[3].as_str()), "u4 waits: {stats:?}");

    // ListConversations: newest first, the ended one from the archive, paged; filters.
    let (p1, a1) = same!(
        "list, first page",
        list(&mut c, PLAIN, "", 3, "").await,
        list(&mut c, ACTORS, "", 3, "").await
    );
    assert_eq!(p1.conversations.len(), 3);
    assert!(!a1.next_page_token.is_empty());
    let (p2, a2) = same!(
        "list, second page",
        list(&mut c, PLAIN, "", 3, &p1.next_page_token).await,
        list(&mut c, ACTORS, "", 3, &a1.next_page_token).await
    );
    assert_eq!(p2.conversations.len(), 1, "{p2:?}");
    assert_eq!(p2.conversations[0].name, plain[0], "the ended u1 last");
    assert!(a2.next_page_token.is_empty());
    for (filter, want) in [
        (r#"state = "QUEUED""#, 1),
        (r#"state = "ENDED""#, 1),
        (r#"group = "tenants/T/groups/sales""#, 2),
        (r#"agent = "tenants/T/agents/ann""#, 2),
        (r#"customer = "tenants/T/customers/u1""#, 1),
        (r#"customer = "tenants/T/customers/nobody""#, 0),
    ] {
        let (p, _) = same!(
            filter,
            list(&mut c, PLAIN, filter, 0, "").await,
            list(&mut c, ACTORS, filter, 0, "").await
        );
        assert_eq!(p.conversations.len(), want, "{filter}: {p:?}");
    }

    // SearchConversations, an agent's: what it serves or served, open (from the actors) or
    // ended (the archive), a page of one at a time, each page alike on both paths. ann
    // served u1 (ended) and serves u2; li has u3 offered; bob has nothing; boss, a
    // supervisor, finds everything.
    let cases: [(&str, &str, u32, &[usize]); 10] = [
        ("ann", "", 1, &[1, 0]),
        ("ann", r#"state = "ENDED""#, 1, &[0]),
        ("ann", r#"state = "ASSIGNED""#, 1, &[1]),
        ("ann", "name = C0", 1, &[0]),
        ("ann", "name = C2", 1, &[]),
        ("ann", r#"group = "tenants/T/groups/sales""#, 1, &[]),
        ("li", "", 1, &[2]),
        ("li", r#"agent = "tenants/T/agents/ann""#, 1, &[]),
        ("bob", "", 1, &[]),
        ("boss", "", 2, &[3, 2, 1, 0]),
    ];
    for (who, filter, size, want) in cases {
        let what = format!("{who} searches {filter:?}");
        let p = search(&mut c, PLAIN, &plain, who, filter, size).await.expect(&what);
        let a = search(&mut c, ACTORS, &act, who, filter, size).await.expect(&what);
        assert_eq!(p.len(), a.len(), "{what}: as many pages: {p:?} {a:?}");
        for (i, (p, a)) in p.iter().zip(&a).enumerate() {
            same!(format!("{what}, page {i}"), p, a);
        }
        for (pages, names) in [(&p, &plain), (&a, &act)] {
            let found: Vec<&str> =
                pages.iter().flat_map(|x| &x.conversations).map(|x| x.name.as_str()).collect();
            let expected: Vec<&str> = want.iter().map(|i| names[*i].as_str()).collect();
            assert_eq!(found, expected, "{what}");
            let pages_wanted = want.len().div_ceil(size as usize).max(1);
            assert!(pages.len() >= pages_wanted, "{what}: paged by {size}: {pages:?}");
        }
    }
    let anns = search(&mut c, ACTORS, &act, "ann", "", 1).await.expect("ann's search");
    let states: Vec<i32> = anns.iter().flat_map(|x| &x.conversations).map(|x| x.state).collect();
    assert_eq!(states, [S::Assigned as i32, S::Ended as i32], "one open, one ended: {anns:?}");
    for t in [PLAIN, ACTORS] {
        let e = search(&mut c, t, &[], "nobody", "", 1).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{t}: {e:?}");
        let e = search(&mut c, t, &[], "ann", "state = SLEEPING", 1).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{t}: {e:?}");
    }

    // The first sign-ins are durable: after a crash of the node (the router actor's row on
    // actors) the board shows the same ones.
    let before = (agent_board(&mut c, PLAIN).await, agent_board(&mut c, ACTORS).await);
    node.kill9();
    node = Node::start(dir.path());
    c = node.clients().await;
    let after = (agent_board(&mut c, PLAIN).await, agent_board(&mut c, ACTORS).await);
    assert_eq!(first_logins(&after.0), first_logins(&before.0), "{PLAIN} after a restart");
    assert_eq!(first_logins(&after.1), first_logins(&before.1), "{ACTORS} after a restart");
    assert_eq!(first_logins(&after.1).iter().filter(|(_, at)| at.is_some()).count(), 3);
}

/// Reads the live board until `want` holds (bounded): on actors the router hears of a
/// conversation a moment after the call that opened or ended it answered.
async fn board_until(
    c: &mut Clients,
    t: &str,
    want: impl Fn(&pb::LiveBoard) -> bool,
) -> pb::LiveBoard {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let board = live_board(c, t, 10, "").await;
        if want(&board) {
            return board;
        }
        assert!(tokio::time::Instant::now() < deadline, "{t}: never so: {board:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A conversation still with its bot is work in progress on both paths: the live board
/// counts and lists it (state BOT), ListConversations finds it (by `state = BOT` too), and
/// so does a supervisor's search; asked for a human it is routed, and ended with its bot it
/// counts as ended. (On actors the router knows it by the link its opening sent,
/// `ToRouter::Bot`; before, these reads left it out.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_with_their_bot_are_on_the_board_on_both_paths() {
    use pb::ConversationState as S;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let mut seen = Vec::new();
    for (t, routing) in
        [(PLAIN, pb::TenantRouting::TenantActor), (ACTORS, pb::TenantRouting::Actors)]
    {
        setup(&mut c, t, routing).await;
        let bot = pb::UpdateTenantRequest {
            name: format!("tenants/{t}"),
            settings: Some(pb::TenantSettings { transfer_to_human: true, ..Default::default() }),
            request_id: rid("bot"),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["settings.transfer_to_human".into()],
            }),
            ..Default::default()
        };
        c.admin.update_tenant(bot).await.expect("a bot stage");
        let carol = open(&mut c, t, "carol", "support", S::Bot).await;
        let dave = open(&mut c, t, "dave", "support", S::Bot).await;
        let names = [carol.clone(), dave.clone()];

        let board = board_until(&mut c, t, |b| b.in_progress == 2).await;
        let rows: Vec<_> = board.conversations.iter().map(|r| (&r.conversation, r.state)).collect();
        assert_eq!(rows, [(&carol, S::Bot as i32), (&dave, S::Bot as i32)], "{t}: {board:?}");
        assert_eq!((board.ended, board.total), (0, 2), "{t}");
        let listed = |r: &pb::ListConversationsResponse| -> Vec<String> {
            let mut n: Vec<String> = r.conversations.iter().map(|c| c.name.clone()).collect();
            n.sort();
            n
        };
        let mut both = names.to_vec();
        both.sort();
        assert_eq!(listed(&list(&mut c, t, "", 10, "").await), both, "{t}: listed");
        assert_eq!(listed(&list(&mut c, t, "state = BOT", 10, "").await), both, "{t}: BOT");
        let found = search(&mut c, t, &names, "boss", "", 10).await.expect("search");
        let mut found: Vec<String> = found.iter().flat_map(listed).collect();
        found.sort();
        assert_eq!(found, both, "{t}: a supervisor's search");

        // Dave asks for a human (ann takes him); carol's channel closes while with her bot.
        let ask = |conversation: &String| pb::ConversationRequest {
            conversation: conversation.clone(),
            request_id: rid("channel"),
        };
        c.channel.request_human(ask(&dave)).await.expect("a human");
        settled(&mut c, &dave, S::Assigned).await;
        c.channel.close_conversation(ask(&carol)).await.expect("closed");
        let board = board_until(&mut c, t, |b| b.in_progress == 1 && b.ended == 1).await;
        let rows: Vec<_> = board.conversations.iter().map(|r| (&r.conversation, r.state)).collect();
        assert_eq!(rows, [(&carol, S::Ended as i32), (&dave, S::Assigned as i32)], "{t}");
        assert!(list(&mut c, t, "state = BOT", 10, "").await.conversations.is_empty(), "{t}");
        seen.push(norm(t, &names, &board));
    }
    assert_eq!(seen[0], seen[1], "both paths alike");
}
