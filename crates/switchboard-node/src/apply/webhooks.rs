//! Webhook commands: configuration (administrators) and delivery progress (the node's own
//! deliverers, see `crate::webhooks`).

use switchboard_core::Timestamp;
use switchboard_proto::internal::v1::StreamItem;
use switchboard_proto::internal::v1::{WebhookProgress, command::Op, response, stream_item};
use switchboard_proto::v1 as pb;

use super::{Output, push};
use crate::error::{Error, Result};
use crate::names;
use crate::state::{EVENTS, TenantState};
use crate::webhooks::{self, EVENT_TYPES, MAX_WEBHOOKS, MIN_SECRET, Webhook};

/// Longest webhook URL, in bytes.
const MAX_URL: usize = 2048;
/// Longest secret, in bytes.
const MAX_SECRET: usize = 256;

/// `tenants/{t}/webhooks/{w}` within this tenant → w.
pub fn webhook_id(state: &TenantState, field: &str, name: &str) -> Result<String> {
    names::child_in(field, name, "webhooks", &state.id)
}

/// The API's view of a webhook (the secret is never shown).
pub fn view(state: &TenantState, id: &str, w: &Webhook) -> pb::Webhook {
    pb::Webhook {
        name: names::child_name(&state.id, "webhooks", id),
        url: w.url.clone(),
        secret: String::new(),
        event_types: w.event_types.clone(),
        delivered_cursor: w.delivered,
        dead_letter_count: w.dead_letters,
    }
}

/// Whether applying `op` needs the head of the tenant's event stream from the store: a
/// PutWebhook that creates a webhook of an actor tenant, whose events the tenant actor does
/// not number (its actors append them to a shared stream).
pub fn needs_events_head(state: &TenantState, op: &Op) -> bool {
    let Op::PutWebhook(r) = op else { return false };
    state.actor_routing
        && webhook_id(state, "name", &r.name).is_ok_and(|id| !state.webhooks.contains_key(&id))
}

/// `events_head`: the event stream's last position as read from the store before (an actor
/// tenant's, [`needs_events_head`]).
pub(super) fn put_webhook(
    state: &mut TenantState,
    events_head: u64,
    r: &pb::PutWebhookRequest,
    _out: &mut Output,
) -> Result<response::Result> {
    let id = webhook_id(state, "name", &r.name)?;
    if r.url.len() > MAX_URL {
        return Err(Error::field("url", format!("{} bytes; the limit is {MAX_URL}", r.url.len())));
    }
    webhooks::parse_url(&r.url).map_err(|e| Error::field("url", e))?;
    if let Some(t) = r.event_types.iter().find(|t| !EVENT_TYPES.contains(&t.as_str())) {
        return Err(Error::field(
            "event_types",
            format!("{t:?} is not an event type; use {}", EVENT_TYPES.join(", ")),
        ));
    }
    let existing = state.webhooks.get(&id);
    let secret = match (r.secret.as_str(), existing) {
        ("", Some(w)) => w.secret.clone(),
        ("", None) => {
            return Err(Error::field(
                "secret",
                format!("required when creating a webhook: at least {MIN_SECRET} bytes"),
            ));
        }
        (s, _) if s.len() < MIN_SECRET || s.len() > MAX_SECRET => {
            return Err(Error::field(
                "secret",
                format!("{} bytes; use {MIN_SECRET} to {MAX_SECRET}", s.len()),
            ));
        }
        (s, _) => s.to_owned(),
    };
    if existing.is_none() && state.webhooks.len() >= MAX_WEBHOOKS {
        return Err(Error::ResourceExhausted(format!(
            "tenant {} has {MAX_WEBHOOKS} webhooks, the limit; delete one first",
            state.id
        )));
    }
    // A new webhook starts at the end of the event stream: events from now on.
    let (delivered, dead_letters) = existing
        .map(|w| (w.delivered, w.dead_letters))
        .unwrap_or_else(|| (events_end(state, events_head), 0));
    let mut event_types = r.event_types.clone();
    event_types.sort();
    event_types.dedup();
    let webhook = Webhook { url: r.url.clone(), secret, event_types, delivered, dead_letters };
    let view = view(state, &id, &webhook);
    state.webhooks.insert(id, webhook);
    Ok(response::Result::Webhook(view))
}

/// The last position of the tenant's event stream: the tenant actor's own count, or for an
/// actor tenant the store's (`events_head`).
fn events_end(state: &TenantState, events_head: u64) -> u64 {
    if state.actor_routing {
        events_head
    } else {
        state.stream_seq.get(EVENTS).copied().unwrap_or(0)
    }
}

pub(super) fn delete_webhook(
    state: &mut TenantState,
    _now: Timestamp,
    r: &pb::DeleteWebhookRequest,
    _out: &mut Output,
) -> Result<response::Result> {
    let id = webhook_id(state, "name", &r.name)?;
    if state.webhooks.remove(&id).is_none() {
        return Err(Error::NotFound(format!("name: webhook {id:?} of tenant {}", state.id)));
    }
    Ok(response::Result::Empty(Default::default()))
}

pub(super) fn progress(
    state: &mut TenantState,
    _now: Timestamp,
    r: &WebhookProgress,
    out: &mut Output,
) -> Result<response::Result> {
    // The tenant actor numbers its own events, so no progress can pass its stream's end; an
    // actor tenant's are numbered by the store, and only the node's deliverer reports them.
    let last = if state.actor_routing { u64::MAX } else { events_end(state, 0) };
    let Some(webhook) = state.webhooks.get_mut(&r.webhook) else {
        return Err(Error::NotFound(format!("webhook {:?} of tenant {}", r.webhook, state.id)));
    };
    webhook.delivered = webhook.delivered.max(r.delivered.min(last));
    webhook.dead_letters += r.dead.len() as u64;
    let stream = webhooks::dead_letter_stream(&r.webhook);
    for dead in &r.dead {
        let item = StreamItem { item: Some(stream_item::Item::WebhookDeadLetter(dead.clone())) };
        push(state, out, &stream, item);
    }
    Ok(response::Result::Empty(Default::default()))
}
