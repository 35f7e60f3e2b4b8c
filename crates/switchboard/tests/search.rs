//! Finding conversations and customers (issue 13 item 16, seeds 003 and 004), over real gRPC
//! against a real `switchboard serve` process: open, assigned and ended (archived)
//! conversations by each filter term and by id, pages across the live/archived boundary
//! without repeats or gaps, refusals of malformed filters and tokens, agents' data scope, and
//! customers by phone, e-mail and remark name, including one that left memory. Waits are
//! bounded; nothing asserts on time.

mod support;

use support::{Clients, Node, rid};
use switchboard_proto::v1 as pb;
use tonic::Code;

const T: &str = "find";

fn name(kind: &str, id: &str) -> String {
    format!("tenants/{T}/{kind}/{id}")
}

/// Tenant `find` (see `support::desk::floor`), no replies of its own.
async fn floor(c: &mut Clients, agents: &[(&str, &[&str], u32, bool)], online: &[&str]) {
    support::desk::floor(c, T, None, agents, online).await;
}

async fn write(c: &mut Clients, customer: &str, group: &str) -> pb::Conversation {
    support::desk::write(c, T, customer, group).await
}

async fn agent_ends(c: &mut Clients, agent: &str, conversation: &str) {
    let ended = c
        .agent
        .end_conversation(pb::AgentConversationRequest {
            agent: name("agents", agent),
            conversation: conversation.into(),
            request_id: rid("end"),
        })
        .await
        .expect("agent ends")
        .into_inner();
    assert_eq!(ended.state, pb::ConversationState::Ended as i32);
}

async fn customer_closes(c: &mut Clients, conversation: &str) {
    c.channel
        .close_conversation(pb::ConversationRequest {
            conversation: conversation.into(),
            request_id: rid("close"),
        })
        .await
        .expect("customer closes");
}

/// Whose conversations: the tenant's (`None`) or as an agent sees them.
async fn page(
    c: &mut Clients,
    agent: Option<&str>,
    filter: &str,
    size: u32,
    token: &str,
) -> Result<pb::ListConversationsResponse, tonic::Status> {
    let (filter, page_token) = (filter.to_owned(), token.to_owned());
    let r = match agent {
        None => {
            let r = pb::ListConversationsRequest {
                parent: format!("tenants/{T}"),
                filter,
                page_size: size,
                page_token,
            };
            c.supervisor.list_conversations(r).await
        }
        Some(a) => {
            let r = pb::SearchConversationsRequest {
                agent: name("agents", a),
                filter,
                page_size: size,
                page_token,
            };
            c.agent.search_conversations(r).await
        }
    };
    r.map(tonic::Response::into_inner)
}

/// Every page of a search, in order: the conversations' names.
async fn all(c: &mut Clients, agent: Option<&str>, filter: &str, size: u32) -> Vec<String> {
    let mut names = Vec::new();
    let mut token = String::new();
    for _ in 0..100 {
        let p = page(c, agent, filter, size, &token).await.expect(filter);
        assert!(p.conversations.len() <= size.max(1) as usize);
        names.extend(p.conversations.into_iter().map(|c| c.name));
        if p.next_page_token.is_empty() {
            return names;
        }
        token = p.next_page_token;
    }
    panic!("{filter}: no end after 100 pages");
}

fn rfc3339(t: &prost_types::Timestamp) -> String {
    let at = jiff::Timestamp::new(t.seconds, t.nanos).expect("a valid time");
    at.to_string()
}

fn invalid<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>) -> tonic::Status {
    let s = r.expect_err(what);
    assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
    s
}

/// Seeds 003 and 004 on one floor: open, assigned and ended conversations found by state,
/// agent, group, customer, id and time range; pages of 1 and 2 across the live/archived
/// boundary equal the whole list, also while a conversation ends between two pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_are_found_by_every_filter_open_or_archived() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] =
        &[("alice", &["support"], 2, false), ("bob", &["billing"], 1, false)];
    floor(&mut c, agents, &["alice"]).await;
    let c1 = write(&mut c, "carol", "").await; // alice
    let c2 = write(&mut c, "dan", "").await; // alice
    let c3 = write(&mut c, "erin", "").await; // queued, then alice once c1 ends
    let c4 = write(&mut c, "frank", "billing").await; // queued: bob is offline
    let c5 = write(&mut c, "gina", "").await; // queued, then closed by the customer
    let c6 = write(&mut c, "hank", "").await; // queued
    assert_eq!(c1.agent, name("agents", "alice"));
    assert_eq!(c3.state, pb::ConversationState::Queued as i32);
    agent_ends(&mut c, "alice", &c1.name).await;
    customer_closes(&mut c, &c5.name).await;
    let names = |cs: &[&pb::Conversation]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();

    // Everything, newest first; then each term.
    let everything = page(&mut c, None, "", 0, "").await.unwrap();
    assert_eq!(
        names(&everything.conversations.iter().collect::<Vec<_>>()),
        names(&[&c6, &c5, &c4, &c3, &c2, &c1])
    );
    assert!(everything.next_page_token.is_empty());
    let by = |v: &pb::ListConversationsResponse| names(&v.conversations.iter().collect::<Vec<_>>());
    let expect = [
        (r#"state = "QUEUED""#, names(&[&c6, &c4])),
        ("state = CONVERSATION_STATE_ENDED", names(&[&c5, &c1])),
        (r#"state = "ASSIGNED""#, names(&[&c3, &c2])),
        (r#"agent = "tenants/find/agents/alice""#, names(&[&c3, &c2, &c1])),
        (r#"group = "tenants/find/groups/billing""#, names(&[&c4])),
        (r#"customer = "tenants/find/customers/carol""#, names(&[&c1])),
        (r#"customer = "tenants/find/customers/erin""#, names(&[&c3])),
        (&format!("name = {:?}", c1.name), names(&[&c1])),
        (&format!("name = {:?}", c4.name), names(&[&c4])),
        (r#"state = "ENDED" AND agent = "tenants/find/agents/alice""#, names(&[&c1])),
        (r#"agent = "tenants/find/agents/bob""#, vec![]),
        (r#"agent = "tenants/find/agents/nobody""#, vec![]),
        (r#"ended_at >= "2000-01-01T00:00:00Z""#, names(&[&c5, &c1])),
        (r#"ended_at < "2000-01-01T00:00:00Z""#, vec![]),
        (r#"opened_at < "2000-01-01T00:00:00Z""#, vec![]),
    ];
    for (filter, want) in expect {
        let got = page(&mut c, None, filter, 0, "").await.expect(filter);
        assert_eq!(by(&got), want, "{filter}");
        assert_eq!(all(&mut c, None, filter, 1).await, want, "{filter}, pages of 1");
    }
    // Opening times: [c3's, c5's) and from c4's, computed from what the list shows.
    let opened = |x: &pb::Conversation| x.opened_at.expect("opened_at");
    let (t3, t5) = (rfc3339(&opened(&c3)), rfc3339(&opened(&c5)));
    let shown = &everything.conversations;
    let within: Vec<String> = shown
        .iter()
        .filter(|x| {
            let t = opened(x);
            (t.seconds, t.nanos) >= (opened(&c3).seconds, opened(&c3).nanos)
                && (t.seconds, t.nanos) < (opened(&c5).seconds, opened(&c5).nanos)
        })
        .map(|x| x.name.clone())
        .collect();
    let filter = format!("opened_at >= {t3:?} AND opened_at < {t5:?}");
    assert!(within.contains(&c3.name) && !within.contains(&c5.name), "{within:?}");
    assert_eq!(all(&mut c, None, &filter, 1).await, within, "{filter}");

    // The archived one by id, as GetConversation shows it.
    let got = c
        .channel
        .get_conversation(pb::GetConversationRequest { conversation: c1.name.clone() })
        .await
        .expect("archived c1")
        .into_inner();
    assert_eq!(got.state, pb::ConversationState::Ended as i32);

    // Pages of 1 and 2 cross the live/archived boundary (c5 and c1 are archived).
    let whole = names(&[&c6, &c5, &c4, &c3, &c2, &c1]);
    assert_eq!(all(&mut c, None, "", 1).await, whole);
    assert_eq!(all(&mut c, None, "", 2).await, whole);
    // A conversation ends between two pages: still found exactly once.
    let first = page(&mut c, None, "", 2, "").await.unwrap();
    assert_eq!(by(&first), names(&[&c6, &c5]));
    agent_ends(&mut c, "alice", &c3.name).await;
    let mut rest = by(&first);
    let mut token = first.next_page_token;
    while !token.is_empty() {
        let p = page(&mut c, None, "", 2, &token).await.unwrap();
        rest.extend(by(&p));
        token = p.next_page_token;
    }
    assert_eq!(rest, whole, "no repeats, no gaps");
    let ended = all(&mut c, None, "state = ENDED", 1).await;
    assert_eq!(ended, names(&[&c5, &c3, &c1]));
}

/// Malformed filters and tokens are INVALID_ARGUMENT naming what to fix; a token does not
/// continue a search with another filter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_filters_and_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    floor(&mut c, &[("alice", &["support"], 1, false)], &[]).await;
    for n in 0..3 {
        write(&mut c, &format!("u{n}"), "").await;
    }
    let cases = [
        (r#"state = "SLEEPING""#, "state = \"SLEEPING\""),
        ("colour = red", "colour"),
        ("state = QUEUED OR state = BOT", "AND"),
        ("opened_at >= yesterday", "RFC 3339"),
        ("agent = tenants/other/agents/alice", "tenant"),
        ("state = QUEUED AND", "ends with AND"),
    ];
    for (filter, says) in cases {
        let s = invalid(filter, page(&mut c, None, filter, 0, "").await);
        assert!(s.message().contains(says), "{filter}: {}", s.message());
        invalid(filter, page(&mut c, Some("alice"), filter, 0, "").await);
    }
    invalid("garbage token", page(&mut c, None, "", 1, "garbage").await);
    invalid("hex garbage", page(&mut c, None, "", 1, "6869").await);
    let first = page(&mut c, None, "", 1, "").await.unwrap();
    assert!(!first.next_page_token.is_empty());
    page(&mut c, None, "", 1, &first.next_page_token).await.expect("the same filter continues");
    let s = invalid(
        "another filter",
        page(&mut c, None, "state = QUEUED", 1, &first.next_page_token).await,
    );
    assert!(s.message().contains("filter"), "{}", s.message());
    let customers = pb::ListCustomersRequest {
        parent: format!("tenants/{T}"),
        filter: "nickname = bob".into(),
        ..Default::default()
    };
    let s = invalid("customer filter", c.admin.list_customers(customers).await);
    assert!(s.message().contains("nickname"), "{}", s.message());
    let garbage = pb::ListCustomersRequest {
        parent: format!("tenants/{T}"),
        page_token: "zz".into(),
        ..Default::default()
    };
    invalid("customer token", c.admin.list_customers(garbage).await);
}

/// SPEC §8 "see own": an agent finds the conversations it serves or served, open or
/// archived, and no others, by any filter or by id; a supervisor finds all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_finds_only_what_is_in_its_scope() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] = &[
        ("alice", &["support"], 2, false),
        ("dave", &["support"], 2, false),
        ("boss", &["billing"], 1, true),
    ];
    floor(&mut c, agents, &["alice"]).await;
    let c1 = write(&mut c, "carol", "").await;
    let c2 = write(&mut c, "dan", "").await;
    let c3 = write(&mut c, "erin", "billing").await;
    agent_ends(&mut c, "alice", &c1.name).await;
    assert_eq!(all(&mut c, Some("alice"), "", 1).await, vec![c2.name.clone(), c1.name.clone()]);
    assert_eq!(all(&mut c, Some("dave"), "", 1).await, Vec::<String>::new());
    let by_id = format!("name = {:?}", c1.name);
    assert_eq!(all(&mut c, Some("alice"), &by_id, 1).await, vec![c1.name.clone()]);
    assert_eq!(all(&mut c, Some("dave"), &by_id, 1).await, Vec::<String>::new());
    let other = format!("name = {:?}", c3.name);
    assert_eq!(all(&mut c, Some("alice"), &other, 1).await, Vec::<String>::new());
    let everything = vec![c3.name.clone(), c2.name.clone(), c1.name.clone()];
    assert_eq!(all(&mut c, Some("boss"), "", 2).await, everything);
    let ended = all(&mut c, Some("alice"), "state = ENDED", 5).await;
    assert_eq!(ended, vec![c1.name.clone()]);
}

async fn customers(c: &mut Clients, agent: Option<&str>, filter: &str, size: u32) -> Vec<String> {
    let mut names = Vec::new();
    let mut page_token = String::new();
    for _ in 0..100 {
        let (filter, token) = (filter.to_owned(), page_token.clone());
        let p = match agent {
            None => {
                let r = pb::ListCustomersRequest {
                    parent: format!("tenants/{T}"),
                    filter,
                    page_size: size,
                    page_token: token,
                };
                c.admin.list_customers(r).await
            }
            Some(a) => {
                let r = pb::SearchCustomersRequest {
                    agent: name("agents", a),
                    filter,
                    page_size: size,
                    page_token: token,
                };
                c.agent.search_customers(r).await
            }
        }
        .expect("list customers")
        .into_inner();
        names.extend(p.customers.into_iter().map(|u| u.name));
        if p.next_page_token.is_empty() {
            return names;
        }
        page_token = p.next_page_token;
    }
    panic!("{filter}: no end after 100 pages");
}

/// Seed 004: customers by remark name, phone (exact or prefix) and e-mail, in memory or
/// out of it (carol's conversation ended, so she left memory), within the agent's scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_are_found_by_contact_data_in_memory_or_stored() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let agents: &[(&str, &[&str], u32, bool)] = &[
        ("alice", &["support"], 3, false),
        ("dave", &["support"], 3, false),
        ("bob", &["billing"], 3, false),
        ("boss", &["billing"], 3, true),
    ];
    floor(&mut c, agents, &["alice"]).await;
    let c1 = write(&mut c, "carol", "").await;
    write(&mut c, "dan", "").await;
    write(&mut c, "erin", "").await;
    for (customer, remark, phone, email) in [
        ("carol", "VIP Carol", "13800000001", "carol@example.com"),
        ("dan", "Dan", "13800000002", "dan@example.com"),
        ("erin", "Erin", "+4420000000", "erin@example.com"),
    ] {
        c.agent
            .update_customer_profile(pb::UpdateCustomerProfileRequest {
                agent: name("agents", "alice"),
                customer: name("customers", customer),
                remark_name: remark.into(),
                phone: phone.into(),
                email: email.into(),
                request_id: rid("profile"),
                ..Default::default()
            })
            .await
            .expect("alice serves them");
    }
    agent_ends(&mut c, "alice", &c1.name).await;
    let carol = c
        .admin
        .get_customer(pb::GetCustomerRequest { name: name("customers", "carol") })
        .await
        .expect("stored carol")
        .into_inner();
    assert!(carol.open_conversation.is_empty(), "carol has nothing open: {carol:?}");

    let [carol, dan, erin] = ["carol", "dan", "erin"].map(|u| name("customers", u));
    let expect = [
        ("phone = 13800000001", vec![carol.clone()]),
        (r#"phone = "138*""#, vec![carol.clone(), dan.clone()]),
        (r#"remark_name = "VIP Carol""#, vec![carol.clone()]),
        ("email = \"carol@example.com\"", vec![carol.clone()]),
        ("email = \"erin@example.com\" AND phone = \"+4420000000\"", vec![erin.clone()]),
        ("email = \"erin@example.com\" AND phone = \"138*\"", vec![]),
        ("", vec![carol.clone(), dan.clone(), erin.clone()]),
    ];
    for (filter, want) in expect {
        assert_eq!(customers(&mut c, None, filter, 0).await, want, "{filter}");
        assert_eq!(customers(&mut c, None, filter, 1).await, want, "{filter}, pages of 1");
    }
    // Scope: alice served all three; dave is in the group of dan's and erin's open
    // conversations but never served carol; bob neither; the supervisor sees all.
    let phones = r#"phone = "138*""#;
    assert_eq!(customers(&mut c, Some("alice"), phones, 1).await, vec![carol.clone(), dan.clone()]);
    assert_eq!(customers(&mut c, Some("dave"), phones, 1).await, vec![dan.clone()]);
    assert_eq!(customers(&mut c, Some("bob"), "", 1).await, Vec::<String>::new());
    assert_eq!(customers(&mut c, Some("boss"), phones, 1).await, vec![carol, dan]);
}

/// More ended conversations than one page reads from the archive (1000): a search that the
/// node filters (by agent) answers short pages with a token that continues, and finds its
/// matches at both ends of the archive; unfiltered pages of 500 list every conversation
/// once, open and ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_beyond_one_archive_window_continue_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    floor(&mut c, &[("alice", &["support"], 1, false)], &["alice"]).await;
    let oldest = write(&mut c, "first", "").await;
    assert_eq!(oldest.agent, name("agents", "alice"));
    agent_ends(&mut c, "alice", &oldest.name).await;
    // 1,100 more, closed by their customers while queued behind the one alice keeps.
    let held = write(&mut c, "held", "").await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..138 {
                let conversation = write(&mut c, &format!("v{t}-{n}"), "").await;
                customer_closes(&mut c, &conversation.name).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let newest = write(&mut c, "last", "").await;

    // alice: the held one (open) and the oldest (archived), 1,104 conversations apart.
    let mut found = Vec::new();
    let mut pages = 0;
    let mut token = String::new();
    let alice = r#"agent = "tenants/find/agents/alice""#;
    loop {
        let p = page(&mut c, None, alice, 50, &token).await.expect("alice's");
        pages += 1;
        found.extend(p.conversations.into_iter().map(|c| c.name));
        if p.next_page_token.is_empty() {
            break;
        }
        token = p.next_page_token;
        assert!(pages < 10, "the search ends");
    }
    assert_eq!(found, vec![held.name.clone(), oldest.name.clone()]);
    assert!(pages >= 2, "one page reads at most 1000 archived conversations");

    let every = all(&mut c, None, "", 500).await;
    assert_eq!(every.len(), 1 + 1 + 8 * 138 + 1);
    assert_eq!(every.first(), Some(&newest.name));
    assert_eq!(every.last(), Some(&oldest.name));
    let unique: std::collections::BTreeSet<&String> = every.iter().collect();
    assert_eq!(unique.len(), every.len(), "no repeats");
    let customers = customers(&mut c, None, "", 500).await;
    assert_eq!(customers.len(), 3 + 8 * 138);
}
