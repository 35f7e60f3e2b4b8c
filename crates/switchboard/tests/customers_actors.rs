//! Customers of a tenant created with `TENANT_ROUTING_ACTORS` (issue 12's cut-over): the
//! customer's conversation actor owns its settings and profile. Over real gRPC against a real
//! `switchboard serve` process, the same script runs on a tenant-actor tenant and on an
//! actor tenant and must answer alike, field by field, once names (the tenant, conversation
//! numbers) are set aside: PutCustomer, PostMessage's nickname, UpdateCustomerProfile,
//! GetCustomerProfile, GetCustomer, ListCustomers and SearchCustomers, with their refusals;
//! VIP customers (a customer group with a priority, a priority set by PutCustomer) are served
//! before an earlier ordinary one and a dedicated agent gets its customer's conversation;
//! settings survive a SIGTERM restart and a retried request id applies once. Waits are
//! bounded; nothing asserts on time.

mod support;

use std::time::Duration;

use support::desk::get;
use support::{Clients, Node, next, rid};
use switchboard_proto::v1 as pb;
use tonic::Code;

/// The tenant served by its tenant actor, and the one served by actors.
const PLAIN: &str = "plain";
const ACTORS: &str = "act";

fn group(t: &str, g: &str) -> String {
    format!("tenants/{t}/groups/{g}")
}

fn agent(t: &str, a: &str) -> String {
    format!("tenants/{t}/agents/{a}")
}

fn customer(t: &str, u: &str) -> String {
    format!("tenants/{t}/customers/{u}")
}

async fn create(c: &mut Clients, t: &str, routing: pb::TenantRouting) {
    support::create_tenant(c, t, t, routing).await;
}

/// Groups "support" and "sales"; agents (capacity `capacity`) ann and bob in support, li in
/// sales, boss a supervisor in sales; customer group "vip" has priority 5; the
/// message-received reply greets by nickname. With `default_group`, support is the default.
async fn setup(c: &mut Clients, t: &str, default_group: bool, capacity: u32) {
    for g in ["support", "sales"] {
        c.admin
            .put_group(pb::PutGroupRequest {
                name: group(t, g),
                display_name: g.into(),
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
                default_group: if default_group { group(t, "support") } else { String::new() },
                customer_group_priorities: [("vip".to_owned(), 5)].into_iter().collect(),
                message_received: Some(pb::MessageReceivedReply {
                    texts: vec!["hi {{nick_name}}".into()],
                    also_in_session: true,
                }),
                ..Default::default()
            }),
            display_name: t.into(),
            request_id: rid("settings"),
            update_mask: None,
        })
        .await
        .expect("update tenant");
    for (a, g, supervisor) in [
        ("ann", "support", false),
        ("bob", "support", false),
        ("li", "sales", false),
        ("boss", "sales", true),
    ] {
        c.admin
            .put_agent(pb::PutAgentRequest {
                name: agent(t, a),
                nickname: a.into(),
                capacity,
                groups: vec![group(t, g)],
                supervisor,
                request_id: rid("agent"),
                ..Default::default()
            })
            .await
            .expect("put agent");
    }
}

/// Both tenants, the same configuration.
async fn both(c: &mut Clients, default_group: bool, capacity: u32) {
    create(c, PLAIN, pb::TenantRouting::TenantActor).await;
    create(c, ACTORS, pb::TenantRouting::Actors).await;
    for t in [PLAIN, ACTORS] {
        setup(c, t, default_group, capacity).await;
    }
}

async fn set_default_group(c: &mut Clients, t: &str) {
    c.admin
        .update_tenant(pb::UpdateTenantRequest {
            name: format!("tenants/{t}"),
            settings: Some(pb::TenantSettings {
                default_group: group(t, "support"),
                ..Default::default()
            }),
            display_name: t.into(),
            request_id: rid("default"),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["settings.default_group".into()],
            }),
        })
        .await
        .expect("set the default group");
}

async fn sign_in(c: &mut Clients, t: &str, a: &str) {
    c.agent
        .set_status(pb::SetStatusRequest {
            agent: agent(t, a),
            status: pb::AgentStatus::Online as i32,
            request_id: rid("online"),
        })
        .await
        .expect("sign in");
}

fn post(t: &str, u: &str, nickname: &str) -> pb::PostMessageRequest {
    pb::PostMessageRequest {
        customer: customer(t, u),
        channel: pb::Channel::Web as i32,
        text: "hello".into(),
        nickname: nickname.into(),
        request_id: rid("post"),
        ..Default::default()
    }
}

/// Waits (bounded) until the router placed the conversation (on actors it decides after
/// PostMessage answered), and answers where: queued, or assigned to whom.
async fn placed(c: &mut Clients, name: &str) -> pb::Conversation {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let read = get(c, name).await;
        let state = pb::ConversationState::try_from(read.state).unwrap();
        if matches!(state, pb::ConversationState::Queued | pb::ConversationState::Assigned) {
            return read;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} was never placed: {read:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded) until the conversation is assigned to `a`.
async fn assigned_to(c: &mut Clients, name: &str, a: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let read = get(c, name).await;
        if read.state == pb::ConversationState::Assigned as i32 && read.agent == a {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} never went to {a}: {read:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn put(t: &str, u: &str, request_id: &str) -> pb::PutCustomerRequest {
    pb::PutCustomerRequest {
        name: customer(t, u),
        request_id: request_id.into(),
        ..Default::default()
    }
}

fn profile(t: &str, by: &str, u: &str) -> pb::UpdateCustomerProfileRequest {
    pb::UpdateCustomerProfileRequest {
        agent: agent(t, by),
        customer: customer(t, u),
        request_id: rid("profile"),
        ..Default::default()
    }
}

async fn get_customer(c: &mut Clients, t: &str, u: &str) -> Result<pb::Customer, tonic::Status> {
    let r = pb::GetCustomerRequest { name: customer(t, u) };
    c.admin.get_customer(r).await.map(tonic::Response::into_inner)
}

/// A customer with the tenant's name taken out and its open conversation's number too.
fn plain(t: &str, mut u: pb::Customer) -> pb::Customer {
    let strip = |s: &mut String| *s = s.replace(&format!("tenants/{t}/"), "tenants/T/");
    for s in [&mut u.name, &mut u.group, &mut u.dedicated_agent, &mut u.last_agent] {
        strip(s);
    }
    if !u.open_conversation.is_empty() {
        u.open_conversation = "open".into();
    }
    u
}

/// An answer as the script records it: the customer with names set aside, or the code.
fn seen(t: &str, r: Result<pb::Customer, tonic::Status>) -> String {
    match r {
        Ok(u) => format!("{:?}", plain(t, u)),
        Err(s) => format!("{:?}", s.code()),
    }
}

/// The customer calls of the script on tenant `t`; what each answered, in order.
async fn script(c: &mut Clients, t: &str) -> Vec<String> {
    let mut log = Vec::new();
    // No default group yet: a new customer's message is refused and its nickname not kept.
    let refused = c.channel.post_message(post(t, "eve", "Eve")).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    log.push(seen(t, get_customer(c, t, "eve").await));
    set_default_group(c, t).await;
    sign_in(c, t, "ann").await;

    // PutCustomer: a VIP with a language; its retry answers the same and applies nothing.
    let carol = rid("carol");
    let vip = pb::PutCustomerRequest {
        nickname: "Carol".into(),
        customer_groups: vec!["vip".into()],
        language: "en".into(),
        group: group(t, "support"),
        ..put(t, "carol", &carol)
    };
    let first = c.admin.put_customer(vip.clone()).await.map(tonic::Response::into_inner);
    log.push(seen(t, first.clone()));
    // Another change in between, then the retry: the first answer, and the change stays.
    let priority = pb::PutCustomerRequest {
        priority: 9,
        update_mask: Some(prost_types::FieldMask { paths: vec!["priority".into()] }),
        ..put(t, "carol", &rid("prio"))
    };
    log.push(seen(t, c.admin.put_customer(priority).await.map(tonic::Response::into_inner)));
    let again = c.admin.put_customer(vip).await.map(tonic::Response::into_inner);
    assert_eq!(seen(t, again), seen(t, first), "a retry answers as the first time");
    log.push(seen(t, get_customer(c, t, "carol").await));
    assert!(log.last().unwrap().contains("priority: 9"), "{log:?}");

    // Refusals: an unknown group, an unknown dedicated agent, a priority out of range, an
    // unknown mask path; each changes nothing.
    for bad in [
        pb::PutCustomerRequest { group: group(t, "nowhere"), ..put(t, "carol", &rid("bad")) },
        pb::PutCustomerRequest {
            dedicated_agent: agent(t, "nobody"),
            ..put(t, "carol", &rid("bad"))
        },
        pb::PutCustomerRequest { priority: 300, ..put(t, "carol", &rid("bad")) },
        pb::PutCustomerRequest {
            update_mask: Some(prost_types::FieldMask { paths: vec!["phone".into()] }),
            ..put(t, "carol", &rid("bad"))
        },
    ] {
        log.push(seen(t, c.admin.put_customer(bad).await.map(tonic::Response::into_inner)));
    }
    log.push(seen(t, get_customer(c, t, "carol").await));

    // PostMessage's nickname: kept with the accepted message; its reply greets by it.
    let opened = c.channel.post_message(post(t, "dave", "Dave")).await.expect("dave posts");
    let dave_conversation = opened.into_inner().conversation.expect("opened").name;
    assigned_to(c, &dave_conversation, &agent(t, "ann")).await;
    let mut out = c
        .channel
        .stream_outbound(pb::StreamOutboundRequest {
            tenant: format!("tenants/{t}"),
            after_cursor: 0,
        })
        .await
        .expect("outbound")
        .into_inner();
    let greeting = next(&mut out).await;
    assert_eq!(greeting.text, "hi Dave", "{greeting:?}");
    log.push(seen(t, get_customer(c, t, "dave").await));

    // UpdateCustomerProfile: ann serves dave; li (another group) may not; nobody is unknown.
    let edit = pb::UpdateCustomerProfileRequest {
        remark_name: "Big Dave".into(),
        phone: "13800000001".into(),
        email: "dave@example.com".into(),
        tags: vec!["loyal".into()],
        ..profile(t, "ann", "dave")
    };
    let edited = c.agent.update_customer_profile(edit.clone()).await;
    log.push(seen(t, edited.map(tonic::Response::into_inner)));
    let again = c.agent.update_customer_profile(edit.clone()).await;
    log.push(seen(t, again.map(tonic::Response::into_inner)));
    for (by, u) in [("li", "dave"), ("ann", "nobody"), ("ghost", "dave")] {
        let r = pb::UpdateCustomerProfileRequest { phone: "1".into(), ..profile(t, by, u) };
        log.push(seen(
            t,
            c.agent.update_customer_profile(r).await.map(tonic::Response::into_inner),
        ));
    }
    let bad_email =
        pb::UpdateCustomerProfileRequest { email: "nope".into(), ..profile(t, "ann", "dave") };
    log.push(seen(
        t,
        c.agent.update_customer_profile(bad_email).await.map(tonic::Response::into_inner),
    ));
    // The supervisor edits carol (no conversation, routed to support).
    let boss = pb::UpdateCustomerProfileRequest {
        remark_name: "VIP Carol".into(),
        phone: "13800000002".into(),
        ..profile(t, "boss", "carol")
    };
    log.push(seen(t, c.agent.update_customer_profile(boss).await.map(tonic::Response::into_inner)));

    // GetCustomerProfile: ann (dave's agent; carol's group), li (neither), an unknown one;
    // bob only by the group of dave's open conversation.
    for (by, u) in
        [("ann", "dave"), ("ann", "carol"), ("li", "dave"), ("ann", "nobody"), ("bob", "dave")]
    {
        let r = pb::GetCustomerProfileRequest { agent: agent(t, by), customer: customer(t, u) };
        log.push(seen(t, c.agent.get_customer_profile(r).await.map(tonic::Response::into_inner)));
    }
    // GetCustomer, ListCustomers and SearchCustomers read the same records.
    for u in ["carol", "dave", "nobody"] {
        log.push(seen(t, get_customer(c, t, u).await));
    }
    for filter in
        ["", "phone = \"138*\"", "remark_name = \"Big Dave\"", "email = \"dave@example.com\""]
    {
        let r = pb::ListCustomersRequest {
            parent: format!("tenants/{t}"),
            filter: filter.into(),
            page_size: 1,
            page_token: String::new(),
        };
        let page = c.admin.list_customers(r).await.expect("list customers").into_inner();
        let names: Vec<String> = page.customers.into_iter().map(|u| seen(t, Ok(u))).collect();
        log.push(format!("{filter}: {names:?} more: {}", !page.next_page_token.is_empty()));
        let r = pb::SearchCustomersRequest {
            agent: agent(t, "ann"),
            filter: filter.into(),
            page_size: 10,
            page_token: String::new(),
        };
        let page = c.agent.search_customers(r).await.expect("search customers").into_inner();
        let names: Vec<String> = page.customers.into_iter().map(|u| plain(t, u).name).collect();
        log.push(format!("ann, {filter}: {names:?}"));
    }
    // bob finds dave only by the group of dave's open conversation.
    let r = pb::SearchCustomersRequest {
        agent: agent(t, "bob"),
        filter: String::new(),
        page_size: 10,
        page_token: String::new(),
    };
    let page = c.agent.search_customers(r).await.expect("search by bob").into_inner();
    let names: Vec<String> = page.customers.into_iter().map(|u| plain(t, u).name).collect();
    log.push(format!("bob: {names:?}"));

    // Dave's conversation ends: the record shows it closed, with its last agent.
    let end = pb::AgentConversationRequest {
        agent: agent(t, "ann"),
        conversation: dave_conversation,
        request_id: rid("end"),
    };
    c.agent.end_conversation(end).await.expect("ann ends dave's conversation");
    log.push(seen(t, get_customer(c, t, "dave").await));
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_calls_on_actors_answer_as_on_a_tenant_actor() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    both(&mut c, false, 2).await;
    let on_plain = script(&mut c, PLAIN).await;
    let on_actors = script(&mut c, ACTORS).await;
    for (i, (a, b)) in on_plain.iter().zip(&on_actors).enumerate() {
        assert_eq!(a, b, "step {i}");
    }
    assert_eq!(on_plain.len(), on_actors.len());
    // What the script must have seen (not only the same on both).
    let log = &on_actors;
    assert_eq!(log[0], "NotFound", "a refused message keeps no customer, nickname and all");
    for want in ["nickname: \"Carol\"", "customer_groups: [\"vip\"]", "language: \"en\""] {
        assert!(log[1].contains(want), "{want}: {}", log[1]);
    }
    assert_eq!(log[4..8], ["NotFound", "NotFound", "InvalidArgument", "InvalidArgument"]);
    assert_eq!(log[8], log[3], "the refusals changed nothing");
    for want in [
        "nickname: \"Dave\"",
        "last_agent: \"tenants/T/agents/ann\"",
        "open_conversation: \"open\"",
    ] {
        assert!(log[9].contains(want), "{want}: {}", log[9]);
    }
    assert!(log[10].contains("remark_name: \"Big Dave\""), "{}", log[10]);
    assert_eq!(log[11], log[10], "the same edit again");
    assert_eq!(log[12..16], ["PermissionDenied", "NotFound", "NotFound", "InvalidArgument"]);
    assert_eq!((log[19].as_str(), log[20].as_str()), ("PermissionDenied", "NotFound"));
    assert_eq!(log[17], log[10], "ann reads dave's profile as she left it");
    assert_eq!(log[21], log[10], "bob, by the group of dave's open conversation");
    let last = log.last().unwrap();
    assert!(last.contains("open_conversation: \"\"") && last.contains("agents/ann"), "{last}");
}

/// Routing by the customer's settings, on tenant `t` (ann capacity 2, bob 1): answers where
/// each conversation went, in order.
async fn routing(c: &mut Clients, t: &str) -> Vec<String> {
    c.admin
        .put_agent(pb::PutAgentRequest {
            name: agent(t, "ann"),
            capacity: 2,
            request_id: rid("capacity"),
            update_mask: Some(prost_types::FieldMask { paths: vec!["capacity".into()] }),
            ..Default::default()
        })
        .await
        .expect("ann takes two");
    let mut log = Vec::new();
    let mut where_ = |r: &pb::Conversation| {
        let state = pb::ConversationState::try_from(r.state).unwrap();
        log.push(format!("{}: {state:?} {}", r.customer.replace(t, "T"), r.agent.replace(t, "T")));
    };
    // Nobody online: an ordinary customer waits first; then a VIP by customer group and a
    // VIP by priority (both set by PutCustomer).
    let vip1 =
        pb::PutCustomerRequest { customer_groups: vec!["vip".into()], ..put(t, "vip1", &rid("v")) };
    c.admin.put_customer(vip1).await.expect("vip1");
    let vip2 = pb::PutCustomerRequest { priority: 3, ..put(t, "vip2", &rid("v")) };
    c.admin.put_customer(vip2).await.expect("vip2");
    let loyal =
        pb::PutCustomerRequest { dedicated_agent: agent(t, "bob"), ..put(t, "loyal", &rid("l")) };
    c.admin.put_customer(loyal).await.expect("loyal");
    let mut names = std::collections::BTreeMap::new();
    for u in ["early", "vip1", "vip2"] {
        let opened = c.channel.post_message(post(t, u, "")).await.expect("post");
        let name = opened.into_inner().conversation.expect("opened").name;
        where_(&placed(c, &name).await);
        names.insert(u, name);
    }
    assert_eq!(get(c, &names["vip1"]).await.priority, 5, "the customer group's priority");
    assert_eq!(get(c, &names["vip2"]).await.priority, 3, "the customer's priority");
    // Ann signs in: the two VIPs, though the ordinary one waited longer.
    sign_in(c, t, "ann").await;
    assigned_to(c, &names["vip1"], &agent(t, "ann")).await;
    assigned_to(c, &names["vip2"], &agent(t, "ann")).await;
    where_(&get(c, &names["early"]).await);
    // Bob signs in and takes the ordinary one.
    sign_in(c, t, "bob").await;
    assigned_to(c, &names["early"], &agent(t, "bob")).await;
    // Ann ends vip1 and has room; loyal's dedicated agent, bob, is online but full: loyal
    // waits for him, not for ann.
    let end = |conversation: &str, by: &str| pb::AgentConversationRequest {
        agent: agent(t, by),
        conversation: conversation.into(),
        request_id: rid("end"),
    };
    c.agent.end_conversation(end(&names["vip1"], "ann")).await.expect("ann ends vip1");
    let opened = c.channel.post_message(post(t, "loyal", "")).await.expect("loyal posts");
    let name = opened.into_inner().conversation.expect("opened").name;
    where_(&placed(c, &name).await);
    // Bob ends the ordinary one: his customer's conversation is his.
    c.agent.end_conversation(end(&names["early"], "bob")).await.expect("bob ends early");
    assigned_to(c, &name, &agent(t, "bob")).await;
    where_(&get(c, &name).await);
    // Fan's dedicated agent is bob too, who is full again: fan waits for him, though ann has
    // room. An administrator makes ann fan's dedicated agent: fan's conversation follows at
    // once, not when bob's wait times out.
    let fan =
        pb::PutCustomerRequest { dedicated_agent: agent(t, "bob"), ..put(t, "fan", &rid("f")) };
    c.admin.put_customer(fan).await.expect("fan");
    let opened = c.channel.post_message(post(t, "fan", "")).await.expect("fan posts");
    let fan_conversation = opened.into_inner().conversation.expect("opened").name;
    where_(&placed(c, &fan_conversation).await);
    let to_ann = pb::PutCustomerRequest {
        dedicated_agent: agent(t, "ann"),
        update_mask: Some(prost_types::FieldMask { paths: vec!["dedicated_agent".into()] }),
        ..put(t, "fan", &rid("f"))
    };
    c.admin.put_customer(to_ann).await.expect("fan's dedicated agent is ann");
    assigned_to(c, &fan_conversation, &agent(t, "ann")).await;
    where_(&get(c, &fan_conversation).await);
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_and_dedicated_customers_are_routed_on_actors_as_on_a_tenant_actor() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    both(&mut c, true, 1).await;
    let on_plain = routing(&mut c, PLAIN).await;
    let on_actors = routing(&mut c, ACTORS).await;
    assert_eq!(on_plain, on_actors);
    assert_eq!(
        on_actors,
        [
            "tenants/T/customers/early: Queued ",
            "tenants/T/customers/vip1: Queued ",
            "tenants/T/customers/vip2: Queued ",
            "tenants/T/customers/early: Queued ",
            "tenants/T/customers/loyal: Queued ",
            "tenants/T/customers/loyal: Assigned tenants/T/agents/bob",
            "tenants/T/customers/fan: Queued ",
            "tenants/T/customers/fan: Assigned tenants/T/agents/ann",
        ]
    );
}

/// Settings and profiles survive a SIGTERM restart; a request id retried after it is
/// answered from the store and applies nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_settings_survive_a_restart_and_a_retry_applies_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path());
    let mut c = node.clients().await;
    let t = ACTORS;
    create(&mut c, t, pb::TenantRouting::Actors).await;
    setup(&mut c, t, true, 1).await;
    let first = rid("carol");
    let vip = pb::PutCustomerRequest {
        nickname: "Carol".into(),
        customer_groups: vec!["vip".into()],
        dedicated_agent: agent(t, "bob"),
        language: "en".into(),
        ..put(t, "carol", &first)
    };
    let answered = c.admin.put_customer(vip.clone()).await.expect("put carol").into_inner();
    let edit = pb::UpdateCustomerProfileRequest {
        remark_name: "VIP Carol".into(),
        email: "carol@example.com".into(),
        ..profile(t, "boss", "carol")
    };
    let edited = c.agent.update_customer_profile(edit.clone()).await.expect("edit").into_inner();
    // A later change, so a retry that applied again would show.
    let renamed = pb::PutCustomerRequest { nickname: "Caro".into(), ..put(t, "carol", &rid("n")) };
    c.admin.put_customer(renamed).await.expect("rename carol");
    // Dave opens a conversation (his nickname with it) and stays open across the restart.
    c.channel.post_message(post(t, "dave", "Dave")).await.expect("dave posts");
    let before = [
        get_customer(&mut c, t, "carol").await.expect("carol"),
        get_customer(&mut c, t, "dave").await.expect("dave"),
    ];
    assert_eq!(before[0].nickname, "Caro");
    assert_eq!(before[0].remark_name, "VIP Carol");
    assert_eq!(before[0].dedicated_agent, agent(t, "bob"));
    assert_eq!(before[1].nickname, "Dave");
    assert!(!before[1].open_conversation.is_empty(), "{:?}", before[1]);

    assert!(node.terminate(), "the node stops cleanly on SIGTERM");
    let node = Node::start(dir.path());
    let mut c = node.clients().await;
    let after = [
        get_customer(&mut c, t, "carol").await.expect("carol after the restart"),
        get_customer(&mut c, t, "dave").await.expect("dave after the restart"),
    ];
    assert_eq!(after, before);
    // The retries: the first answers again, nothing applied again.
    let again = c.admin.put_customer(vip).await.expect("the retry").into_inner();
    assert_eq!(again, answered);
    let again = c.agent.update_customer_profile(edit).await.expect("the retry").into_inner();
    assert_eq!(again, edited);
    assert_eq!(get_customer(&mut c, t, "carol").await.expect("carol"), after[0]);
    // Carol's settings still route her: a VIP (priority 5) waiting for bob, her dedicated
    // agent, who is offline, so in her group meanwhile.
    let opened = c.channel.post_message(post(t, "carol", "")).await.expect("carol posts");
    let name = opened.into_inner().conversation.expect("opened").name;
    let read = placed(&mut c, &name).await;
    assert_eq!((read.priority, read.state), (5, pb::ConversationState::Queued as i32));
    sign_in(&mut c, t, "bob").await;
    assigned_to(&mut c, &name, &agent(t, "bob")).await;
}
