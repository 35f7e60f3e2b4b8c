//! HTTP webhooks (issue 13 item 11) against a real receiver this test runs on loopback: the
//! receiver goes down and the node is killed meanwhile (nothing lost, order kept), answers
//! 500s (retried), and every request's signature is checked here with an HMAC of our own.
//! A spent retry budget leaves a dead letter readable over the API, and delivery moves on.
//! Waits are polls with generous deadlines; nothing asserts on time.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::{Clients, Node, rid, scrape};
use switchboard_proto::v1 as pb;
use tokio::net::TcpListener;

const SECRET: &str = "whsec_test_0123456789";

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Hit {
    event_id: String,
    signature: String,
    body: Vec<u8>,
    status: u16,
}

#[derive(Debug, Default)]
struct Behaviour {
    /// Answer 500 to this many more requests.
    fail_next: u32,
    /// Answer 500 to every event about the conversation this customer opens next (its
    /// `opened` event, the first of it, names the conversation: `failing`).
    fail_customer: Option<String>,
    failing: Option<String>,
    hits: Vec<Hit>,
}

/// An HTTP endpoint on a fixed loopback port that can go down and come back.
struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<Behaviour>>,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the receiver");
        let addr = listener.local_addr().unwrap();
        let mut r = Receiver { addr, state: Arc::default(), accept: None };
        r.serve(listener);
        r
    }

    fn url(&self) -> String {
        format!("http://{}/hooks/switchboard?src=test", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = self.state.clone();
        self.accept = Some(tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }

    /// Stops listening: connections are refused until `up`.
    fn down(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
        }
    }

    async fn up(&mut self) {
        // The aborted task drops its listener soon after; bind again until the port is free.
        let listener = wait_for("the receiver's port to be free", || {
            let addr = self.addr;
            async move { TcpListener::bind(addr).await.ok() }
        })
        .await;
        self.serve(listener);
    }

    fn hits(&self) -> Vec<Hit> {
        self.state.lock().unwrap().hits.clone()
    }

    fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.state.lock().unwrap());
    }
}

async fn handle(
    state: Arc<Mutex<Behaviour>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    };
    let (event_id, signature) = (header("switchboard-event-id"), header("switchboard-signature"));
    assert_eq!(req.method(), hyper::Method::POST);
    assert_eq!(req.uri().path(), "/hooks/switchboard");
    assert_eq!(header("content-type"), "application/json");
    let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
    let mut s = state.lock().unwrap();
    let json = serde_json::from_slice::<serde_json::Value>(&body).unwrap_or_default();
    let conversation = json["conversation"].as_str().map(str::to_owned);
    if s.fail_customer.is_some()
        && json["opened"]["customer"].as_str() == s.fail_customer.as_deref()
    {
        s.failing = conversation.clone();
    }
    let status = if s.failing.is_some() && conversation == s.failing {
        500
    } else if s.fail_next > 0 {
        s.fail_next -= 1;
        500
    } else {
        200
    };
    s.hits.push(Hit { event_id, signature, body, status });
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    Ok(response)
}

/// Polls `f` until it gives something, for at most two minutes (a bound, not a timing).
async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks the signature as an integrator would (see webhooks.proto), and returns the
/// event's cursor from its id, after checking the body says the same.
fn verify(hit: &Hit) -> u64 {
    let parts: std::collections::HashMap<&str, &str> =
        hit.signature.split(',').filter_map(|p| p.split_once('=')).collect();
    let (t, v1) = (parts["t"], parts["v1"]);
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&hit.body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag: Vec<u8> = (0..v1.len() / 2)
        .map(|i| u8::from_str_radix(&v1[2 * i..2 * i + 2], 16).expect("hex signature"))
        .collect();
    ring::hmac::verify(&key, &signed, &tag).expect("the signature verifies with the secret");
    let mut wrong = signed.clone();
    wrong.push(b' ');
    assert!(ring::hmac::verify(&key, &wrong, &tag).is_err(), "a changed body does not verify");

    let json: serde_json::Value = serde_json::from_slice(&hit.body).expect("the body is JSON");
    let cursor: u64 = json["cursor"].as_str().expect("cursor, a string").parse().unwrap();
    assert_eq!(hit.event_id, format!("tenants/acme/events/{cursor}"));
    assert!(json["type"].is_string() && json["at"].is_string(), "{json}");
    cursor
}

/// The cursors delivered (answered 2xx), first delivery of each, in arrival order.
fn delivered(receiver: &Receiver) -> Vec<u64> {
    let mut seen = Vec::new();
    for hit in receiver.hits() {
        let cursor = verify(&hit);
        if hit.status == 200 && !seen.contains(&cursor) {
            seen.push(cursor);
        }
    }
    seen
}

fn env(max_attempts: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SWITCHBOARD_WEBHOOKS__INITIAL_BACKOFF_MS", "20".into()),
        ("SWITCHBOARD_WEBHOOKS__MAX_BACKOFF_MS", "200".into()),
        ("SWITCHBOARD_WEBHOOKS__MAX_ATTEMPTS", max_attempts.into()),
    ]
}

fn start(dir: &std::path::Path, max_attempts: &str) -> Node {
    let env = env(max_attempts);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Node::start_with_env(dir, &env)
}

async fn post(c: &mut Clients, customer: &str) -> String {
    let r = c
        .channel
        .post_message(pb::PostMessageRequest {
            customer: format!("tenants/acme/customers/{customer}"),
            channel: pb::Channel::Web as i32,
            text: "hello".into(),
            nickname: customer.into(),
            request_id: rid("post"),
            ..Default::default()
        })
        .await
        .expect("post message");
    r.into_inner().conversation.expect("conversation").name
}

/// The tenant's event stream after `after`.
async fn events_after(c: &mut Clients, after: u64) -> tonic::Streaming<pb::Event> {
    c.events
        .stream_events(pb::StreamEventsRequest {
            tenant: "tenants/acme".into(),
            after_cursor: after,
        })
        .await
        .expect("stream events")
        .into_inner()
}

/// The last event cursor of the tenant so far (from the event stream itself).
async fn last_event(c: &mut Clients, after: u64) -> u64 {
    let mut stream = events_after(c, after).await;
    // Every event after `after` is in the store already; read until the stream has nothing
    // more to give right now, which the webhook's own cursor tells us below.
    let first = support::next(&mut stream).await;
    first.cursor
}

/// Group `support`, the tenant's default group.
async fn support_by_default(c: &mut Clients) {
    c.admin
        .put_group(pb::PutGroupRequest {
            name: "tenants/acme/groups/support".into(),
            request_id: rid("group"),
            ..Default::default()
        })
        .await
        .expect("put group");
    c.admin
        .update_tenant(pb::UpdateTenantRequest {
            name: "tenants/acme".into(),
            settings: Some(pb::TenantSettings {
                default_group: "tenants/acme/groups/support".into(),
                ..Default::default()
            }),
            request_id: rid("settings"),
            ..Default::default()
        })
        .await
        .expect("default group");
}

/// Webhook `crm` to the receiver, for every event type.
async fn crm(c: &mut Clients, receiver: &Receiver) -> pb::Webhook {
    c.admin
        .put_webhook(pb::PutWebhookRequest {
            name: "tenants/acme/webhooks/crm".into(),
            url: receiver.url(),
            secret: SECRET.into(),
            event_types: Vec::new(),
            request_id: rid("hook"),
        })
        .await
        .expect("put webhook")
        .into_inner()
}

async fn webhook(c: &mut Clients) -> pb::Webhook {
    c.admin
        .get_webhook(pb::GetWebhookRequest { name: "tenants/acme/webhooks/crm".into() })
        .await
        .expect("get webhook")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_deliver_in_order_at_least_once_signed_and_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let mut receiver = Receiver::start().await;
    let mut node = start(dir.path(), "1000");
    let mut c = node.clients().await;

    c.admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "acme".into(),
            request_id: rid("create"),
            ..Default::default()
        })
        .await
        .expect("create tenant");
    support_by_default(&mut c).await;

    // Bad configurations are refused with the field to fix.
    let bad = |url: &str, secret: &str, types: &[&str]| pb::PutWebhookRequest {
        name: "tenants/acme/webhooks/crm".into(),
        url: url.into(),
        secret: secret.into(),
        event_types: types.iter().map(|t| (*t).to_owned()).collect(),
        request_id: rid("bad"),
    };
    for (req, field) in [
        (bad("ftp://x/", SECRET, &[]), "url"),
        (bad(&receiver.url(), "short", &[]), "secret"),
        (bad(&receiver.url(), "", &[]), "secret"),
        (bad(&receiver.url(), SECRET, &["assigned", "nope"]), "event_types"),
    ] {
        let e = c.admin.put_webhook(req).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    let created = crm(&mut c, &receiver).await;
    assert!(created.secret.is_empty(), "the secret is never shown");
    let start_cursor = created.delivered_cursor;

    // Up: events arrive, signed.
    post(&mut c, "carol").await;
    let first = last_event(&mut c, start_cursor).await;
    wait_for("the first event", || {
        let got = delivered(&receiver);
        async move { got.contains(&first).then_some(()) }
    })
    .await;

    // Down, with events waiting, and the node killed meanwhile.
    receiver.down();
    for customer in ["dave", "erin", "frank"] {
        post(&mut c, customer).await;
    }
    wait_for("a failed attempt while the receiver is down", || {
        let text = scrape(&node.metrics);
        async move {
            text.lines()
                .any(|l| {
                    l.starts_with("switchboard_webhook_deliveries_total")
                        && l.contains("outcome=\"failed\"")
                        && l.contains("tenant=\"acme\"")
                })
                .then_some(())
        }
    })
    .await;
    node.kill9();
    node = start(dir.path(), "1000");
    c = node.clients().await;
    let grace = post(&mut c, "grace").await;
    receiver.up().await;

    // Everything arrives, in order, once the receiver is back.
    let end = {
        let mut stream = events_after(&mut c, start_cursor).await;
        // grace's conversation opened last; its "queued" event is the newest we caused.
        let events =
            support::until(&mut stream, |e| e.r#type == "queued" && e.conversation == grace).await;
        events.iter().map(|e| e.cursor).collect::<Vec<_>>()
    };
    let (expected, end) = (end.clone(), *end.last().unwrap());
    let got = wait_for("every event up to the last one", || {
        let got = delivered(&receiver);
        async move { got.contains(&end).then_some(got) }
    })
    .await;
    assert_eq!(&got[..expected.len()], &expected[..], "nothing lost, in order");
    wait_for("the cursor to be logged", || {
        let mut c = c.clone();
        async move { (webhook(&mut c).await.delivered_cursor >= end).then_some(()) }
    })
    .await;

    // 500s are retried: the same event, until it is accepted; then the next ones, in order.
    receiver.set(|b| b.fail_next = 3);
    let before = receiver.hits().len();
    post(&mut c, "heidi").await;
    let retried = wait_for("the event after three 500s", || {
        let hits = receiver.hits();
        async move { hits[before..].iter().any(|h| h.status == 200).then_some(hits) }
    })
    .await;
    let attempts: Vec<_> = retried[before..].iter().map(|h| (verify(h), h.status)).collect();
    let (failed, then) = attempts.split_at(3);
    assert!(failed.iter().all(|(c, s)| *c == end + 1 && *s == 500), "{attempts:?}");
    assert_eq!(then[0], (end + 1, 200), "{attempts:?}");

    // A spent budget: the event becomes a dead letter, and delivery moves on.
    assert!(node.terminate(), "clean shutdown");
    let node = start(dir.path(), "2");
    let mut c = node.clients().await;
    let ok_so_far = wait_for("heidi's events delivered", || {
        let mut c = c.clone();
        async move {
            let w = webhook(&mut c).await;
            (w.delivered_cursor > end + 1).then_some(w.delivered_cursor)
        }
    })
    .await;
    let drained = wait_for("the backlog delivered", || {
        let mut c = c.clone();
        let got = delivered(&receiver);
        async move {
            let w = webhook(&mut c).await;
            got.contains(&w.delivered_cursor).then_some(w.delivered_cursor)
        }
    })
    .await;
    assert!(drained >= ok_so_far);
    // Every event about ivan's conversation fails; each becomes a dead letter after two
    // attempts, and judy's events are delivered after them.
    receiver.set(|b| b.fail_customer = Some("tenants/acme/customers/ivan".into()));
    let ivan = post(&mut c, "ivan").await;
    let judy_conversation = post(&mut c, "judy").await;
    let judy = wait_for("delivery of judy's events", || {
        let hits = receiver.hits();
        let judy_conversation = judy_conversation.clone();
        async move {
            hits.iter()
                .filter(|h| h.status == 200)
                .map(|h| (verify(h), h))
                .find(|(_, h)| {
                    serde_json::from_slice::<serde_json::Value>(&h.body).unwrap()["conversation"]
                        == judy_conversation.as_str()
                })
                .map(|(cursor, _)| cursor)
        }
    })
    .await;
    let dead = c
        .admin
        .list_webhook_dead_letters(pb::ListWebhookDeadLettersRequest {
            name: "tenants/acme/webhooks/crm".into(),
            page: None,
        })
        .await
        .expect("list dead letters")
        .into_inner()
        .dead_letters;
    assert!(!dead.is_empty(), "ivan's events are dead letters");
    for d in &dead {
        assert_eq!(d.attempts, 2);
        assert_eq!(d.webhook, "tenants/acme/webhooks/crm");
        assert!(d.last_error.contains("500"), "{}", d.last_error);
        let event = d.event.as_ref().expect("the event");
        assert_eq!(event.conversation, ivan);
        assert_eq!(d.event_id, format!("tenants/acme/events/{}", event.cursor));
        assert!(event.cursor < judy, "dead-lettered before judy's were delivered");
    }
    let got = delivered(&receiver);
    assert!(dead.iter().all(|d| !got.contains(&d.event.as_ref().unwrap().cursor)));
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    assert_eq!(webhook(&mut c).await.dead_letter_count, dead.len() as u64);

    let text = scrape(&node.metrics);
    for outcome in ["delivered", "failed", "dead_lettered"] {
        assert!(
            text.lines().any(|l| l.starts_with("switchboard_webhook_deliveries_total")
                && l.contains(&format!("outcome=\"{outcome}\""))),
            "{outcome} in\n{text}"
        );
    }
    // Deleting stops delivery; the dead letters go with the webhook's API.
    c.admin
        .delete_webhook(pb::DeleteWebhookRequest {
            name: "tenants/acme/webhooks/crm".into(),
            request_id: rid("delete"),
        })
        .await
        .expect("delete");
    let e = c
        .admin
        .get_webhook(pb::GetWebhookRequest { name: "tenants/acme/webhooks/crm".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    drop(node);
}

/// An actor tenant's events (appended to the shared `events` stream by its conversation and
/// router actors, numbered by the store) reach its webhook in order, each body carrying the
/// cursor its event id names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_tenants_events_reach_its_webhook_with_their_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start().await;
    let node = start(dir.path(), "1000");
    let mut c = node.clients().await;
    support::create_actor_tenant(&mut c, "acme").await;
    support_by_default(&mut c).await;
    let created = crm(&mut c, &receiver).await;
    let start_cursor = created.delivered_cursor;

    post(&mut c, "carol").await;
    let dave = post(&mut c, "dave").await;
    let mut stream = events_after(&mut c, start_cursor).await;
    let events =
        support::until(&mut stream, |e| e.r#type == "queued" && e.conversation == dave).await;
    let end = events.last().unwrap().cursor;
    // `delivered` checks each body's cursor against its event id.
    let got = wait_for("every event up to dave's queueing", || {
        let got = delivered(&receiver);
        async move { got.contains(&end).then_some(got) }
    })
    .await;
    let expected: Vec<u64> = events.iter().map(|e| e.cursor).collect();
    assert_eq!(&got[..expected.len()], &expected[..], "nothing lost, in order");
    // The delivered cursor is logged as far as it went (a restart resumes there).
    wait_for("the cursor to be logged", || {
        let mut c = c.clone();
        async move { (webhook(&mut c).await.delivered_cursor >= end).then_some(()) }
    })
    .await;
    // A webhook created now starts at the end of the stream: events from now on.
    let late = c
        .admin
        .put_webhook(pb::PutWebhookRequest {
            name: "tenants/acme/webhooks/late".into(),
            url: receiver.url(),
            secret: SECRET.into(),
            event_types: Vec::new(),
            request_id: rid("late"),
        })
        .await
        .expect("put webhook")
        .into_inner();
    assert!(late.delivered_cursor >= end, "{late:?} starts after {end}");
}
