//! gRPC services: each call is parsed, sent to its tenant's actor, and answered.

pub mod admin;
pub mod agent;
pub mod channel;
pub mod events;
pub mod supervisor;

use std::pin::Pin;

use prost::Message as _;
use switchboard_proto::internal::v1::{StreamItem, response};
use switchboard_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tonic::Status;

use crate::registry::Registry;

pub type ItemStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Entries read from the store per round while catching up.
const CATCH_UP: usize = 500;

/// Serves a durable stream from after `cursor`: the backlog from the store, then live items
/// from the hub; a subscriber that lags or sees a gap goes back to the store.
pub fn serve_stream<T: Send + 'static>(
    registry: &Registry,
    tenant: String,
    stream: String,
    mut cursor: u64,
    pick: fn(StreamItem) -> Option<T>,
) -> ItemStream<T> {
    let (tx, rx) = mpsc::channel::<Result<T, Status>>(64);
    let registry = registry.clone();
    let closed = registry.hub().closed();
    let shutdown_tx = tx.clone();
    let served = async move {
        'outer: loop {
            // Subscribe before reading the backlog so nothing falls between the two.
            let mut live = registry.hub().subscribe(&tenant, &stream);
            loop {
                let backlog = match registry.store().read_stream(&tenant, &stream, cursor, CATCH_UP)
                {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(Status::unavailable(e.to_string()))).await;
                        return;
                    }
                };
                let full = backlog.len() == CATCH_UP;
                tracing::debug!(%tenant, %stream, cursor, read = backlog.len(), "stream backlog");
                for entry in backlog {
                    cursor = entry.seq;
                    let Ok(item) = StreamItem::decode(entry.payload.as_slice()) else { continue };
                    if let Some(v) = pick(item)
                        && tx.send(Ok(v)).await.is_err()
                    {
                        return;
                    }
                }
                if !full {
                    break;
                }
            }
            loop {
                match live.recv().await {
                    Ok(entry) => {
                        let (seq, item) = (entry.0, entry.1.clone());
                        tracing::debug!(%tenant, %stream, cursor, seq, "stream live");
                        if seq <= cursor {
                            continue;
                        }
                        if seq != cursor + 1 {
                            continue 'outer; // a gap: read it from the store
                        }
                        cursor = seq;
                        if let Some(v) = pick(item)
                            && tx.send(Ok(v)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue 'outer,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            () = served => {}
            () = closed => {
                let status = Status::unavailable("node is shutting down; reconnect with your last cursor");
                let _ = shutdown_tx.send(Err(status)).await;
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// How a transcript row's extra fields are kept in the store's `kind` column.
pub fn transcript_kind(m: &pb::Message) -> String {
    format!("{}|{}|{}", m.reply_kind, m.tag, m.agent)
}

/// The transcript row back from the store.
pub fn transcript_message(row: &switchboard_store::Message) -> pb::Message {
    let mut parts = row.kind.splitn(3, '|');
    let reply_kind = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let tag = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let agent = parts.next().unwrap_or_default().to_owned();
    pb::Message {
        seq: row.seq,
        at: Some(crate::convert::timestamp(switchboard_core::Timestamp(row.at_ms))),
        sender: row.sender.clone(),
        agent,
        reply_kind,
        text: row.text.clone(),
        tag,
    }
}

/// The response variant a call expects.
pub fn unexpected(r: &response::Result) -> Status {
    Status::internal(format!("unexpected response {r:?}"))
}

/// Page size from a request: 0 means 100, at most 1000.
pub fn page_size(page: Option<&pb::PageRequest>) -> usize {
    match page.map_or(0, |p| p.page_size) {
        0 => 100,
        n => (n as usize).min(1000),
    }
}
