//! Per-tenant request rate (a token bucket per tenant, answered with `RESOURCE_EXHAUSTED` and
//! `google.rpc.RetryInfo`), per-tenant calls in flight on the node, and the cap on live
//! streams per agent.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;
use crate::metrics::{RATE_LIMITED, TENANT_BUSY};

/// The limits' settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitsConfig {
    /// Sustained requests per second per tenant; 0 switches the rate limit off.
    pub tenant_requests_per_second: f64,
    /// Requests a tenant may make at once above the sustained rate.
    pub tenant_burst: f64,
    /// Live streams (`AgentService.StreamEvents`) one agent may hold open at once.
    pub streams_per_agent: usize,
    /// Calls of one tenant a node handles at once (each from its check, `Call::allow`, until
    /// its handler returns; a server-streaming call until its stream is handed back, a command
    /// stream's message until it is answered), whatever serves the tenant.
    pub tenant_in_flight: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            tenant_requests_per_second: 10_000.0,
            tenant_burst: 20_000.0,
            streams_per_agent: 4,
            tenant_in_flight: crate::registry::TENANT_IN_FLIGHT,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limits' state, shared by every connection of the node.
#[derive(Debug, Default)]
pub struct Limits {
    config: LimitsConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
    streams: Counts<(String, String)>,
    in_flight: Counts<Arc<str>>,
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Limits {
        Limits { config, ..Limits::default() }
    }

    /// Takes one request from `tenant`'s budget, or says how long until one is available.
    pub fn charge(&self, tenant: &str) -> Result<(), Error> {
        self.charge_at(tenant, Instant::now())
    }

    fn charge_at(&self, tenant: &str, now: Instant) -> Result<(), Error> {
        let (rate, burst) = (self.config.tenant_requests_per_second, self.config.tenant_burst);
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = burst.max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by the borrowed name first: every call charges, a tenant's first once.
        let bucket = match buckets.get_mut(tenant) {
            Some(bucket) => bucket,
            None => buckets.entry(tenant.to_owned()).or_insert(Bucket { tokens: burst, at: now }),
        };
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / rate;
        let retry_after = Duration::from_secs_f64(wait).max(Duration::from_millis(1));
        metrics::counter!(RATE_LIMITED, "tenant" => tenant.to_owned()).increment(1);
        Err(Error::RateLimited { tenant: tenant.to_owned(), retry_after })
    }

    /// Holds one of `agent`'s stream places until the slot drops.
    pub fn stream_slot(&self, tenant: &str, agent: &str) -> Result<StreamSlot, Error> {
        let key = (tenant.to_owned(), agent.to_owned());
        let limit = self.config.streams_per_agent;
        Slot::take(&self.streams, &key, || key.clone(), limit).map_err(|open| {
            Error::ResourceExhausted(format!(
                "agent {agent} of tenant {tenant} already has {open} live streams open (limits.streams_per_agent); close one first"
            ))
        })
    }

    /// Holds one of `tenant`'s places for calls in flight on this node until the slot drops.
    pub fn in_flight(&self, tenant: &str) -> Result<InFlight, Error> {
        // Keyed by a shared name: a call while others of its tenant are in flight copies none.
        let limit = self.config.tenant_in_flight;
        Slot::take(&self.in_flight, tenant, || Arc::from(tenant), limit).map_err(
            |held| {
                metrics::counter!(TENANT_BUSY, "tenant" => tenant.to_owned()).increment(1);
                Error::ResourceExhausted(format!(
                    "tenant {tenant} has {held} calls in flight on this node (limits.tenant_in_flight); \
                     retry with backoff and the same request_id"
                ))
            },
        )
    }
}

/// How many of something each key holds.
type Counts<K> = Arc<Mutex<HashMap<K, usize>>>;

/// HTTP/2 settings that bound what one connection can make the node hold: streams open at
/// once, flow-control windows (bytes buffered per stream and per connection before the peer
/// must wait), header list and frame sizes.
pub mod http2 {
    pub const MAX_CONCURRENT_STREAMS: u32 = 512;
    /// h2 ends a connection ("too_many_data_frames") once the DATA frames under 256 bytes it
    /// holds unread cost more framing (256 bytes less each one's length) than half the
    /// connection window, 512 KiB here, and the node stops reading a command stream that has
    /// 256 unanswered messages (`service::command_stream`). A full window of the smallest
    /// gRPC messages a gateway sends (about 45 bytes a frame) stays under it at 64 KiB, not at
    /// 256 KiB (`security.rs`
    /// `a_stream_of_small_frames_waits_for_flow_control_and_keeps_its_connection`).
    pub const INITIAL_STREAM_WINDOW: u32 = 64 * 1024;
    pub const INITIAL_CONNECTION_WINDOW: u32 = 1024 * 1024;
    pub const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
    pub const MAX_FRAME_SIZE: u32 = 16 * 1024;
    /// Streams a peer may open and reset before the node accepted them, before the node ends
    /// the whole connection (h2's guard against rapid-reset floods; its default is 20). A node
    /// woken from a pause finds every call its peers gave up on meanwhile in that state; at 20
    /// it closed whole connections, healthy streams included. One connection's worth of
    /// concurrent streams still bounds a flood.
    pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = MAX_CONCURRENT_STREAMS as usize;
}

/// One place of a key among `limit`; given back when dropped.
#[derive(Debug)]
pub struct Slot<K: Eq + Hash> {
    counts: Counts<K>,
    key: K,
}

/// One open stream of an agent.
pub type StreamSlot = Slot<(String, String)>;

/// One call of a tenant in flight on the node.
pub type InFlight = Slot<Arc<str>>;

impl<K: Eq + Hash + Clone> Slot<K> {
    /// A place of `key` if it holds fewer than `limit`; else how many it holds. `owned` makes
    /// the key when `key` holds no place yet (a held key is cloned from the map).
    fn take<Q: Eq + Hash + ?Sized>(
        counts: &Counts<K>,
        key: &Q,
        owned: impl FnOnce() -> K,
        limit: usize,
    ) -> Result<Slot<K>, usize>
    where
        K: std::borrow::Borrow<Q>,
    {
        let mut held = counts.lock().unwrap_or_else(|e| e.into_inner());
        let key = match held.get_key_value(key) {
            Some((_, &n)) if n >= limit => return Err(n),
            Some((k, _)) => k.clone(),
            None if limit == 0 => return Err(0),
            None => owned(),
        };
        *held.entry(key.clone()).or_default() += 1;
        Ok(Slot { counts: Arc::clone(counts), key })
    }
}

impl<K: Eq + Hash> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_over_its_budget_waits_and_others_do_not() {
        let limits = Limits::new(LimitsConfig {
            tenant_requests_per_second: 10.0,
            tenant_burst: 2.0,
            streams_per_agent: 1,
            ..LimitsConfig::default()
        });
        let t0 = Instant::now();
        limits.charge_at("acme", t0).unwrap();
        limits.charge_at("acme", t0).unwrap();
        match limits.charge_at("acme", t0) {
            Err(Error::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_millis(100));
            }
            other => panic!("{other:?}"),
        }
        limits.charge_at("globex", t0).unwrap();
        limits.charge_at("acme", t0 + Duration::from_millis(100)).unwrap();
    }

    #[test]
    fn stream_places_come_back_when_a_stream_ends() {
        let limits = Limits::new(LimitsConfig { streams_per_agent: 1, ..LimitsConfig::default() });
        let first = limits.stream_slot("acme", "alice").unwrap();
        assert!(limits.stream_slot("acme", "alice").is_err());
        let _bob = limits.stream_slot("acme", "bob").unwrap();
        drop(first);
        limits.stream_slot("acme", "alice").unwrap();
    }

    #[test]
    fn a_tenants_calls_in_flight_are_bounded_and_come_back_when_they_end() {
        let limits = Limits::new(LimitsConfig { tenant_in_flight: 2, ..LimitsConfig::default() });
        let (a, _b) = (limits.in_flight("acme").unwrap(), limits.in_flight("acme").unwrap());
        let refused = limits.in_flight("acme").unwrap_err();
        assert!(matches!(&refused, Error::ResourceExhausted(m) if m.contains("tenant_in_flight")));
        let _other = limits.in_flight("globex").unwrap();
        drop(a);
        limits.in_flight("acme").unwrap();
    }
}
