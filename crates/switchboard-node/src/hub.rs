//! Live fan-out of durable stream items to connected clients. Items are published only after
//! they are durable, in commit order; a subscriber that falls behind (or joins late) reads the
//! gap from the store, so the hub never needs to hold more than a short buffer.
//!
//! The hub is node-local. A shared stream (store-assigned positions, writers on several
//! nodes) gets only this node's entries here, published at the positions the store gave
//! them; its readers (`service::serve_shared_stream`) find the other nodes' entries in the
//! store, on the gap the next local entry shows or by re-reading while the hub is quiet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use switchboard_proto::internal::v1::StreamItem;
use tokio::sync::broadcast;

/// Items buffered per stream for live subscribers before they must catch up from the store.
const BUFFER: usize = 1024;

pub type Live = Arc<(u64, StreamItem)>;

/// Live senders by tenant, then stream (nested, so a publish looks its stream up without
/// copying either name).
type Senders = HashMap<String, HashMap<String, broadcast::Sender<Live>>>;

#[derive(Clone)]
pub struct Hub {
    streams: Arc<Mutex<Senders>>,
    /// Set when the node shuts down: live streams end so the server can drain.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub { streams: Arc::default(), closing: Arc::new(tokio::sync::watch::channel(false).0) }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    pub fn subscribe(&self, tenant: &str, stream: &str) -> broadcast::Receiver<Live> {
        let mut streams = self.streams.lock().expect("hub lock");
        streams
            .entry(tenant.to_owned())
            .or_default()
            .entry(stream.to_owned())
            .or_insert_with(|| broadcast::channel(BUFFER).0)
            .subscribe()
    }

    /// How many readers are subscribed to one stream now.
    #[cfg(test)]
    pub(crate) fn subscribers(&self, tenant: &str, stream: &str) -> usize {
        let streams = self.streams.lock().expect("hub lock");
        let tx = streams.get(tenant).and_then(|streams| streams.get(stream));
        tx.map_or(0, broadcast::Sender::receiver_count)
    }

    /// Ends every live stream (clients resume from their cursor on another node).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Ends the live streams of one tenant (it moved to another node): their readers see
    /// the end and tell clients to reconnect from their cursor.
    pub fn close_tenant(&self, tenant: &str) {
        self.streams.lock().expect("hub lock").remove(tenant);
    }

    /// Resolves once the node is shutting down.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    /// Publishes to live subscribers, if any; forgets streams nobody listens to.
    pub fn publish(&self, tenant: &str, stream: &str, seq: u64, item: StreamItem) {
        let mut tenants = self.streams.lock().expect("hub lock");
        let Some(streams) = tenants.get_mut(tenant) else { return };
        let Some(tx) = streams.get(stream) else { return };
        if tx.receiver_count() > 0 {
            let _ = tx.send(Arc::new((seq, item)));
            return;
        }
        streams.remove(stream);
        if streams.is_empty() {
            tenants.remove(tenant);
        }
    }
}
