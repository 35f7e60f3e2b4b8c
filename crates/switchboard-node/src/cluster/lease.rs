//! The membership lease, on a task of its own.
//!
//! The task grants a lease, renews it every TTL/3 over its own etcd connection, and publishes
//! the lease and the guard instant (`last renewal sent + TTL − margin`) both to the membership
//! task (a watch channel) and to [`Ownership`], which serves nothing past that instant. So a
//! slow list, watch, claim or adoption in the membership task can neither delay a renewal nor
//! stretch the guard. When etcd says the lease is gone, the task publishes "no lease" and
//! grants a new one; the membership task then joins again under it.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use metrics::counter;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::Ownership;
use super::membership::{connect, timed};
use crate::error::Error;
use crate::metrics as m;

/// Pause after a failed connection or renewal before trying again.
const RETRY: Duration = Duration::from_millis(200);

/// The lease as the lease task last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct LeaseState {
    /// The current lease, `None` before the first grant and after an expiry.
    pub id: Option<i64>,
    /// Serve nothing from this instant on.
    pub serve_until: Option<Instant>,
}

/// How long after sending a renewal the node may keep serving: the TTL etcd answered, less
/// a margin for clock rate and the time the answer took, `max(TTL/5, 0.5 s)`.
pub(crate) fn renewal_window(configured_ttl: Duration, answered_ttl_secs: i64) -> Duration {
    let ttl = Duration::from_secs(u64::try_from(answered_ttl_secs).unwrap_or(0));
    let margin = (configured_ttl / 5).max(Duration::from_millis(500));
    ttl.saturating_sub(margin)
}

/// The lease task.
pub(crate) struct Renewer {
    etcd: Vec<String>,
    ttl: Duration,
    ownership: Arc<Ownership>,
    state: watch::Sender<LeaseState>,
    client: Option<Client>,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    id: Option<i64>,
    next_renewal: Instant,
}

impl Renewer {
    pub(crate) fn new(
        etcd: Vec<String>,
        ttl: Duration,
        ownership: Arc<Ownership>,
    ) -> (Renewer, watch::Receiver<LeaseState>) {
        let (state, rx) = watch::channel(LeaseState::default());
        let renewer = Renewer {
            etcd,
            ttl,
            ownership,
            state,
            client: None,
            keeper: None,
            id: None,
            next_renewal: Instant::now(),
        };
        (renewer, rx)
    }

    /// Runs until aborted (the membership task aborts it after its graceful leave, or when
    /// it is dropped).
    pub(crate) async fn run(mut self) {
        loop {
            if let Err(e) = self.step().await {
                warn!(error = %e, "lease renewal failed; retrying");
                self.client = None;
                self.keeper = None;
                tokio::time::sleep(RETRY).await;
            }
        }
    }

    /// Connects if needed, then grants a lease or renews the current one when due.
    async fn step(&mut self) -> Result<(), Error> {
        if self.client.is_none() {
            self.client = Some(connect(&self.etcd).await?);
        }
        match self.id {
            None => self.grant().await,
            Some(id) => {
                tokio::time::sleep_until(self.next_renewal).await;
                self.renew(id).await
            }
        }
    }

    fn client(&mut self) -> Result<&mut Client, Error> {
        self.client.as_mut().ok_or_else(|| Error::Unavailable("not connected to etcd".into()))
    }

    async fn grant(&mut self) -> Result<(), Error> {
        let ttl = i64::try_from(self.ttl.as_secs().max(2)).unwrap_or(10);
        let sent = Instant::now();
        let client = self.client()?;
        let lease = timed("lease_grant", client.lease_grant(ttl, None)).await?;
        self.id = Some(lease.id());
        self.keeper = None;
        info!(lease = lease.id(), ttl, "lease granted");
        self.renewed(sent, lease.ttl());
        Ok(())
    }

    async fn renew(&mut self, id: i64) -> Result<(), Error> {
        if self.keeper.is_none() {
            let client = self.client()?;
            match timed("lease_keep_alive", client.lease_keep_alive(id)).await {
                Ok(keeper) => self.keeper = Some(keeper),
                // etcd forgot the lease: it expired while we were away.
                Err(e) if e.to_string().contains("lease not found") => {
                    self.expired(id);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        let (keeper, stream) = self.keeper.as_mut().expect("just set");
        let sent = Instant::now();
        let result = async {
            timed("lease_keep_alive", async { keeper.keep_alive().await }).await?;
            timed("lease_keep_alive", stream.message()).await
        }
        .await;
        match result {
            Ok(Some(resp)) if resp.ttl() > 0 => {
                self.renewed(sent, resp.ttl());
                Ok(())
            }
            Ok(Some(_)) => {
                self.expired(id);
                Ok(())
            }
            Err(e) if e.to_string().contains("lease not found") => {
                self.expired(id);
                Ok(())
            }
            Ok(None) | Err(_) => {
                counter!(m::LEASE_RENEWAL_FAILURES).increment(1);
                self.keeper = None;
                Err(Error::Unavailable("etcd lease renewal failed".into()))
            }
        }
    }

    fn renewed(&mut self, sent: Instant, answered_ttl: i64) {
        let until = sent + renewal_window(self.ttl, answered_ttl);
        self.next_renewal = Instant::now() + self.ttl / 3;
        self.publish(Some(until));
    }

    /// The lease is gone (we were paused, or cut off, for longer than its TTL): every shard
    /// held under it may have a new owner already. The next step grants a new one.
    fn expired(&mut self, id: i64) {
        counter!(m::LEASE_RENEWAL_FAILURES).increment(1);
        warn!(lease = id, "lease expired; dropping every shard and joining again");
        self.id = None;
        self.keeper = None;
        self.publish(None);
    }

    fn publish(&self, serve_until: Option<Instant>) {
        self.ownership.set_serve_until(serve_until);
        self.state.send_replace(LeaseState { id: self.id, serve_until });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_a_margin_of_a_fifth_of_the_ttl_and_at_least_half_a_second() {
        let s = Duration::from_secs;
        assert_eq!(renewal_window(s(10), 10), s(8));
        assert_eq!(renewal_window(s(4), 4), Duration::from_millis(3_200));
        assert_eq!(renewal_window(s(2), 2), Duration::from_millis(1_500));
        // etcd may answer less than was asked (a lease restored after an etcd restart).
        assert_eq!(renewal_window(s(10), 3), Duration::from_secs(1));
        assert_eq!(renewal_window(s(10), 0), Duration::ZERO);
    }

    #[tokio::test]
    async fn the_guard_stops_serving_without_the_membership_task() {
        let ownership = Ownership::new("n1".into(), 16, None);
        ownership.grant(3, 7);
        assert!(ownership.set_local(3, Some(7)));
        ownership.set_serve_until(Some(Instant::now() + Duration::from_secs(3600)));
        assert!(ownership.serves(3, 7));
        // The guard instant passes: nothing is served, though the shard is still held.
        ownership.set_serve_until(Some(Instant::now()));
        assert!(!ownership.serves(3, 7) && !ownership.is_local(3));
        assert_eq!(ownership.local_shards(), vec![(3, 7)]);
        // A renewal moves it on again.
        ownership.set_serve_until(Some(Instant::now() + Duration::from_secs(3600)));
        assert!(ownership.is_local(3));
    }

    #[test]
    fn a_withdrawn_grant_is_never_marked_served() {
        let ownership = Ownership::new("n1".into(), 16, None);
        ownership.set_serve_until(Some(Instant::now() + Duration::from_secs(3600)));
        ownership.grant(5, 9);
        assert_eq!(ownership.withdraw_all(), vec![5]);
        // The adoption finishes after the loss: refused.
        assert!(!ownership.set_local(5, Some(9)));
        assert!(ownership.local_shards().is_empty());
        // Or under another epoch than the grant's.
        ownership.grant(5, 11);
        assert!(!ownership.set_local(5, Some(9)));
        assert!(ownership.set_local(5, Some(11)) && ownership.serves(5, 11));
        assert!(ownership.withdraw(5) && !ownership.is_local(5));
    }
}
