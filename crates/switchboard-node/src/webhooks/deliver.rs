//! The deliverers of one tenant: a manager task that keeps one worker per webhook, started
//! with the tenant actor and stopped with it (so in a cluster they run where the tenant is
//! owned). A worker reads the event stream from the store after its webhook's cursor, POSTs
//! each wanted event until it is answered 2xx or its attempts run out, and logs its progress
//! through the actor (`WebhookProgress`) before moving on: in order, at least once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use ractor::ActorRef;
use switchboard_proto::internal::v1::stream_item::Item;
use switchboard_proto::internal::v1::{StreamItem, WebhookProgress, command::Op};
use switchboard_proto::v1 as pb;
use switchboard_store::{Store, StreamEntry};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::http::{self, Client, Target};
use super::{EVENT_ID_HEADER, Options, SIGNATURE_HEADER, Webhook};
use crate::clock;
use crate::hub::Hub;
use crate::metrics as m;
use crate::state::EVENTS;
use crate::tenant::TenantMsg;

/// A tenant's webhooks by id, as the actor last told the deliverers.
pub type Update = BTreeMap<String, Webhook>;

/// Events read from the store per round.
const READ: usize = 100;
/// How often an idle worker looks at the store even without a live notification (the hub
/// only notifies while someone listens, and a notification can race the subscription).
const IDLE_CHECK: Duration = Duration::from_secs(2);

/// What every worker of a tenant shares.
struct Context {
    tenant: String,
    actor: ActorRef<TenantMsg>,
    store: Arc<dyn Store>,
    hub: Hub,
    options: Options,
    client: Client,
}

/// The running deliverers of one tenant; dropping it stops them.
pub struct Deliverers {
    config: watch::Sender<Update>,
    manager: JoinHandle<()>,
}

impl std::fmt::Debug for Deliverers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverers").finish_non_exhaustive()
    }
}

impl Drop for Deliverers {
    fn drop(&mut self) {
        self.manager.abort();
    }
}

/// Whether two versions of a webhook deliver the same way (progress aside).
fn same_config(a: &Webhook, b: &Webhook) -> bool {
    a.url == b.url && a.secret == b.secret && a.event_types == b.event_types
}

impl Deliverers {
    pub fn spawn(
        tenant: String,
        actor: ActorRef<TenantMsg>,
        store: Arc<dyn Store>,
        hub: Hub,
        options: Options,
        webhooks: Update,
    ) -> Deliverers {
        let (config, rx) = watch::channel(webhooks);
        let context =
            Arc::new(Context { tenant, actor, store, hub, options, client: Client::default() });
        let manager = tokio::spawn(manage(context, rx));
        Deliverers { config, manager }
    }

    /// The tenant's webhooks after a command: workers of changed or deleted webhooks stop,
    /// new and changed ones start from their cursor.
    pub fn update(&self, webhooks: &Update) {
        self.config.send_if_modified(|current| {
            let changed = current.len() != webhooks.len()
                || current
                    .iter()
                    .zip(webhooks)
                    .any(|((a, x), (b, y))| a != b || !same_config(x, y));
            if changed {
                *current = webhooks.clone();
            }
            changed
        });
    }
}

/// A worker task, stopped when dropped (with its manager, or when its webhook changes).
struct Worker(JoinHandle<()>);

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn manage(context: Arc<Context>, mut config: watch::Receiver<Update>) {
    let mut workers: HashMap<String, (Webhook, Worker)> = HashMap::new();
    loop {
        let webhooks = config.borrow_and_update().clone();
        workers
            .retain(|id, (running, _)| webhooks.get(id).is_some_and(|w| same_config(w, running)));
        for (id, webhook) in webhooks {
            if let std::collections::hash_map::Entry::Vacant(slot) = workers.entry(id) {
                let handle =
                    tokio::spawn(work(context.clone(), slot.key().clone(), webhook.clone()));
                slot.insert((webhook, Worker(handle)));
            }
        }
        if config.changed().await.is_err() {
            return;
        }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        debug!(tenant = %self.tenant, "webhook deliverers stopped");
    }
}

/// One webhook's worker: runs until its tenant actor stops or the webhook changes.
async fn work(context: Arc<Context>, id: String, webhook: Webhook) {
    let target = match http::parse(&webhook.url) {
        Ok(t) => t,
        Err(e) => {
            // Refused when configured; only an old log could hold one.
            warn!(tenant = %context.tenant, webhook = %id, error = %e, "webhook url unusable");
            return;
        }
    };
    let mut cursor = webhook.delivered;
    let mut committed = cursor;
    loop {
        // Subscribe before reading so an event committed in between still wakes us.
        let mut live = context.hub.subscribe(&context.tenant, EVENTS);
        let entries = match read(&context, cursor).await {
            Ok(entries) => entries,
            Err(e) => {
                warn!(tenant = %context.tenant, webhook = %id, error = %e, "event stream unreadable; retrying");
                tokio::time::sleep(context.options.initial_backoff.max(IDLE_CHECK)).await;
                continue;
            }
        };
        if entries.is_empty() {
            // Events skipped by type since the last commit.
            if committed < cursor {
                if !commit(&context, &id, cursor, Vec::new()).await {
                    return;
                }
                committed = cursor;
            }
            tokio::select! {
                _ = live.recv() => {}
                () = tokio::time::sleep(IDLE_CHECK) => {}
            }
            continue;
        }
        drop(live);
        if let Some(first) = entries.first()
            && first.seq > cursor + 1
        {
            let lost = first.seq - cursor - 1;
            warn!(tenant = %context.tenant, webhook = %id, cursor, lost, "events were trimmed before delivery");
            metrics::counter!(m::WEBHOOK_DELIVERIES, "tenant" => context.tenant.clone(), "outcome" => "lost")
                .increment(lost);
        }
        for entry in entries {
            let seq = entry.seq;
            let event = match StreamItem::decode(entry.payload.as_slice()) {
                // The cursor is the entry's position: an actor tenant's events are numbered
                // by the store as they are appended, so their payload carries none.
                Ok(StreamItem { item: Some(Item::Event(e)) }) if webhook.wants(&e.r#type) => {
                    pb::Event { cursor: seq, ..e }
                }
                _ => {
                    cursor = seq;
                    continue;
                }
            };
            let dead = deliver(&context, &id, &webhook, &target, seq, event).await;
            cursor = seq;
            if !commit(&context, &id, cursor, dead.into_iter().collect()).await {
                return;
            }
            committed = cursor;
        }
    }
}

async fn read(context: &Context, after: u64) -> switchboard_store::Result<Vec<StreamEntry>> {
    let (store, tenant) = (context.store.clone(), context.tenant.clone());
    tokio::task::spawn_blocking(move || store.read_stream(&tenant, EVENTS, after, READ))
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// Delivers one event, retrying with backoff; the dead letter if the budget ran out.
async fn deliver(
    context: &Context,
    id: &str,
    webhook: &Webhook,
    target: &Target,
    seq: u64,
    event: pb::Event,
) -> Option<pb::WebhookDeadLetter> {
    let tenant = context.tenant.as_str();
    let options = &context.options;
    let event_id = super::event_id(tenant, seq);
    let body = match super::body(&event) {
        Ok(b) => b,
        Err(e) => {
            warn!(tenant, webhook = %id, event = %event_id, error = %e, "event not encodable");
            return Some(dead_letter(context, id, event_id, event, 0, e, clock::now()));
        }
    };
    let first = clock::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let t = clock::now().as_millis() / 1000;
        let headers = [
            (EVENT_ID_HEADER, event_id.clone()),
            (SIGNATURE_HEADER, super::signature(webhook.secret.as_bytes(), t, &body)),
        ];
        let started = tokio::time::Instant::now();
        let outcome = context.client.post(target, &headers, body.clone(), options).await;
        metrics::histogram!(m::WEBHOOK_DELIVERY_SECONDS, "tenant" => tenant.to_owned())
            .record(started.elapsed().as_secs_f64());
        let error = match outcome {
            Ok(status) if (200..300).contains(&status) => {
                metrics::counter!(m::WEBHOOK_DELIVERIES, "tenant" => tenant.to_owned(), "outcome" => "delivered")
                    .increment(1);
                return None;
            }
            Ok(status) => format!("HTTP status {status}"),
            Err(e) => e,
        };
        metrics::counter!(m::WEBHOOK_DELIVERIES, "tenant" => tenant.to_owned(), "outcome" => "failed")
            .increment(1);
        debug!(tenant, webhook = %id, event = %event_id, attempts, error = %error, "webhook attempt failed");
        if attempts >= options.max_attempts.max(1) {
            warn!(tenant, webhook = %id, event = %event_id, attempts, error = %error, "webhook event dead-lettered");
            metrics::counter!(m::WEBHOOK_DELIVERIES, "tenant" => tenant.to_owned(), "outcome" => "dead_lettered")
                .increment(1);
            return Some(dead_letter(context, id, event_id, event, attempts, error, first));
        }
        tokio::time::sleep(options.backoff(attempts)).await;
    }
}

fn dead_letter(
    context: &Context,
    id: &str,
    event_id: String,
    event: pb::Event,
    attempts: u32,
    last_error: String,
    first: switchboard_core::Timestamp,
) -> pb::WebhookDeadLetter {
    pb::WebhookDeadLetter {
        cursor: 0,
        webhook: crate::names::child_name(&context.tenant, "webhooks", id),
        event_id,
        event: Some(event),
        attempts,
        last_error,
        first_attempt_time: Some(crate::convert::timestamp(first)),
        dead_time: Some(crate::convert::timestamp(clock::now())),
    }
}

/// Logs the webhook's progress through the tenant actor; false if the actor is gone (the
/// workers are being stopped) or refused it (the webhook was deleted meanwhile).
async fn commit(
    context: &Context,
    id: &str,
    delivered: u64,
    dead: Vec<pb::WebhookDeadLetter>,
) -> bool {
    let op = Op::WebhookProgress(WebhookProgress { webhook: id.to_owned(), delivered, dead });
    let command = |reply| TenantMsg::Command { op, request_id: String::new(), reply };
    let call = crate::actors::ask(&context.actor, command, None).await;
    match call {
        Ok(ractor::rpc::CallResult::Success(Ok(_))) => true,
        Ok(ractor::rpc::CallResult::Success(Err(status))) => {
            warn!(tenant = %context.tenant, webhook = %id, error = %status.message(), "webhook progress not logged");
            false
        }
        _ => false,
    }
}
