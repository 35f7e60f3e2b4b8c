//! HTTP webhooks (SPEC §9): each webhook of a tenant delivers the tenant's durable event
//! stream to an HTTP endpoint, in order, at least once, signed.
//!
//! The configuration and each webhook's cursor are tenant state (`TenantState::webhooks`),
//! changed only by logged commands (`PutWebhook`, `DeleteWebhook`, `WebhookProgress`), so
//! they survive restarts and move with the tenant between nodes. The deliverers
//! (`deliver`) run beside the tenant actor, read the event stream from the store (durable
//! events only), POST each event (`http`), and log their progress through the actor.

mod deliver;
mod http;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_proto::v1 as pb;

pub use deliver::{Deliverers, Update};

/// Checks a webhook URL (`http://` or `https://` with a host), naming what is wrong.
pub fn parse_url(url: &str) -> Result<(), String> {
    http::parse(url).map(|_| ())
}

/// How deliveries are retried; the node's `[webhooks]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Wait after the first failed attempt; doubled after each further failure.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// Attempts per event before it becomes a dead letter (the retry budget).
    pub max_attempts: u32,
    /// Time allowed for one attempt (connect, send, status line).
    pub timeout: Duration,
    /// PEM bundle of the CAs that https endpoints are verified against.
    pub ca_file: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            max_attempts: 20,
            timeout: Duration::from_secs(10),
            ca_file: PathBuf::from("/etc/ssl/certs/ca-certificates.crt"),
        }
    }
}

impl Options {
    /// The wait before attempt `attempt + 1`, after `attempt` (≥ 1) failures.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// One webhook of a tenant, as kept in its state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
    /// Event types delivered; empty: all.
    pub event_types: Vec<String>,
    /// Cursor of the last event delivered, skipped or dead-lettered.
    pub delivered: u64,
    pub dead_letters: u64,
}

impl Webhook {
    pub fn wants(&self, event_type: &str) -> bool {
        self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type)
    }
}

/// Shortest secret accepted.
pub const MIN_SECRET: usize = 16;
/// Webhooks per tenant.
pub const MAX_WEBHOOKS: usize = 16;
/// Event types a webhook may name (`Event.type`).
pub const EVENT_TYPES: &[&str] = &[
    "opened",
    "queued",
    "offered",
    "assigned",
    "transferred",
    "ended",
    "rated",
    "unreplied_alert",
    "agent_status_changed",
    "offer_missed",
    "first_response",
];

/// Header carrying the event id (`tenants/{t}/events/{cursor}`), for deduplication.
pub const EVENT_ID_HEADER: &str = "switchboard-event-id";
/// Header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "switchboard-signature";

/// The event's id: unique within the tenant, the same on every redelivery.
pub fn event_id(tenant: &str, cursor: u64) -> String {
    format!("tenants/{tenant}/events/{cursor}")
}

/// The stream of a webhook's dead letters.
pub fn dead_letter_stream(webhook: &str) -> String {
    format!("webhook/{webhook}/dead_letters")
}

/// The `Switchboard-Signature` value for `body` sent at `t` (unix seconds).
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// The body POSTed for an event: its proto3 JSON.
pub fn body(event: &pb::Event) -> Result<Vec<u8>, String> {
    switchboard_proto::json::to_json("switchboard.v1.Event", event).map(String::into_bytes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The signature of the README's example, computed independently (Python's hmac module).
    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        let body = br#"{"cursor":"42","at":"2025-11-30T01:40:00Z","type":"assigned"}"#;
        let event = pb::Event {
            cursor: 42,
            at: Some(prost_types::Timestamp { seconds: 1_764_466_800, nanos: 0 }),
            r#type: "assigned".into(),
            ..Default::default()
        };
        assert_eq!(super::body(&event).unwrap(), body);
        assert_eq!(
            signature(b"whsec_0123456789abcdef", 1_764_466_800, body),
            "t=1764466800,v1=24612efa9fb3e9969914d438f87f741fa5e19a431ab0d98f001f23dd796b771b"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let o = Options {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            ..Options::default()
        };
        let waits: Vec<_> = (1..=5).map(|a| o.backoff(a).as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 500, 500]);
        assert_eq!(o.backoff(200), Duration::from_millis(500));
    }
}
