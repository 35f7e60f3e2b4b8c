//! gRPC services: each call is parsed, sent to its tenant's actor, and answered.

pub mod admin;
pub mod agent;
pub(crate) mod agent_actors;
pub mod calls;
pub mod channel;
mod command_stream;
pub(crate) mod customers_actors;
pub mod events;
pub mod filter;
pub(crate) mod on_actors;
pub(crate) mod rating_actors;
pub mod search;
pub mod supervisor;
pub(crate) mod supervisor_actors;
mod supervisor_reads_actors;

use std::pin::Pin;

use prost::Message as _;
use switchboard_proto::internal::v1::stream_item::Item;
use switchboard_proto::internal::v1::{StreamItem, response};
use switchboard_proto::v1 as pb;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::Stream;
use tonic::Status;

use crate::registry::Registry;

pub type ItemStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Entries read from the store per round while catching up.
const CATCH_UP: usize = 500;

/// How often an idle reader of a shared stream re-reads the store for entries written on
/// other nodes (this node's arrive through the hub at once).
pub const SHARED_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// The same for an agent's desk stream: an entry written on another node is sent to the
/// node where the desk is read (`actors::transport::Transport::desk_entry`), so re-reading
/// only catches one whose hint was lost. A node serves hundreds of desks: at 200 ms their
/// re-reads cost a node about 15% more CPU per command under `loadtest run` (measured).
pub const DESK_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Entries of a shared stream a reader holds that arrived ahead of a missing one (published
/// out of order by writers whose commits finished together), waiting for it; beyond this it
/// reads the store.
const AHEAD: usize = 256;

/// Serves a single-writer stream (every entry written and published on this node) from after
/// `cursor`: the backlog from the store, then live items from the hub; a subscriber that lags
/// or sees a gap goes back to the store. Never polls.
pub fn serve_stream<T: Send + 'static>(
    registry: &Registry,
    tenant: String,
    stream: String,
    cursor: u64,
    pick: fn(StreamItem) -> Option<T>,
) -> ItemStream<T> {
    serve(registry, tenant, stream, cursor, pick, None, false)
}

/// Serves a shared stream (store-assigned positions, writers on several nodes: see
/// `switchboard_store`'s "Streams with many writers") from after `cursor`, as
/// [`serve_stream`], and also re-reads the store after the cursor whenever the hub has said
/// nothing for [`SHARED_POLL`], so entries committed on other nodes arrive without the client
/// reconnecting. An entry published here after another node's is a gap, read from the store
/// at once. Each item's cursor is its position in the stream.
pub fn serve_shared_stream<T: Send + 'static>(
    registry: &Registry,
    tenant: String,
    stream: String,
    cursor: u64,
    pick: fn(StreamItem) -> Option<T>,
) -> ItemStream<T> {
    serve(registry, tenant, stream, cursor, pick, Some(SHARED_POLL), false)
}

/// Serves a shared stream whose every entry is published on this node's hub, wherever it
/// was written (an agent's desk, here where its actor runs: `Transport::desk_entry`): as
/// [`serve_shared_stream`], but an entry published ahead of one missing is held until that
/// one comes (writers publish as their own commits finish, not in position order), and the
/// store is re-read only after [`DESK_POLL`] of quiet or of missing an entry (its hint lost).
pub fn serve_hinted_stream<T: Send + 'static>(
    registry: &Registry,
    tenant: String,
    stream: String,
    cursor: u64,
    pick: fn(StreamItem) -> Option<T>,
) -> ItemStream<T> {
    serve(registry, tenant, stream, cursor, pick, Some(DESK_POLL), true)
}

/// `inner`, ended with UNAVAILABLE (`why`) as soon as `moved` resolves: a stream served
/// from this node's hub whose writer has moved to another node would otherwise wait forever.
pub fn until_moved<T: Send + 'static>(
    inner: ItemStream<T>,
    moved: Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    why: String,
) -> ItemStream<T> {
    struct Until<T> {
        inner: ItemStream<T>,
        moved: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
        why: String,
    }
    impl<T> Stream for Until<T> {
        type Item = Result<T, Status>;
        fn poll_next(
            self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            let this = self.get_mut();
            let Some(moved) = this.moved.as_mut() else { return std::task::Poll::Ready(None) };
            if moved.as_mut().poll(cx).is_ready() {
                this.moved = None;
                let status = Status::unavailable(std::mem::take(&mut this.why));
                return std::task::Poll::Ready(Some(Err(status)));
            }
            this.inner.as_mut().poll_next(cx)
        }
    }
    Box::pin(Until { inner, moved: Some(moved), why })
}

/// Sets an item's cursor to its position in the stream. A writer-numbered item carries it
/// already; a store-assigned one was encoded before its position existed.
pub(crate) fn stamp(item: &mut StreamItem, seq: u64) {
    match &mut item.item {
        Some(Item::Outbound(m)) => m.cursor = seq,
        Some(Item::AgentEvent(e)) => e.cursor = seq,
        Some(Item::Event(e)) => e.cursor = seq,
        Some(Item::WebhookDeadLetter(d)) => d.cursor = seq,
        // No cursor of its own: served to no client (see `StreamItem.desk_refusal`).
        Some(Item::DeskRefusal(_)) | None => {}
    }
}

fn serve<T: Send + 'static>(
    registry: &Registry,
    tenant: String,
    stream: String,
    mut cursor: u64,
    pick: fn(StreamItem) -> Option<T>,
    poll: Option<std::time::Duration>,
    hold_ahead: bool,
) -> ItemStream<T> {
    let (tx, rx) = mpsc::channel::<Result<T, Status>>(64);
    let registry = registry.clone();
    let closed = registry.hub().closed();
    let to_client = tx.clone();
    let served = async move {
        'outer: loop {
            // Subscribe before reading the backlog so nothing falls between the two.
            let mut live = registry.hub().subscribe(&tenant, &stream);
            // A shared stream's reader comes back here, still subscribed, when idle.
            'read: loop {
                loop {
                    let (store, t, s) = (registry.store().clone(), tenant.clone(), stream.clone());
                    let read = move || store.read_stream(&t, &s, cursor, CATCH_UP);
                    let backlog = match tokio::task::spawn_blocking(read).await {
                        Ok(Ok(b)) => b,
                        Ok(Err(e)) => {
                            let _ = tx.send(Err(Status::unavailable(e.to_string()))).await;
                            return;
                        }
                        Err(e) => {
                            let status =
                                Status::unavailable(format!("store read interrupted: {e}"));
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    };
                    // Entries were trimmed past this cursor: say so rather than skip them
                    // silently.
                    if let Some(first) = backlog.first()
                        && first.seq > cursor + 1
                        && cursor > 0
                    {
                        let status = Status::out_of_range(format!(
                            "cursor {cursor} of {stream} is older than the oldest entry kept ({}); resume after {} to continue, accepting the gap",
                            first.seq,
                            first.seq - 1
                        ));
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                    let full = backlog.len() == CATCH_UP;
                    tracing::debug!(%tenant, %stream, cursor, read = backlog.len(), "stream backlog");
                    for entry in backlog {
                        cursor = entry.seq;
                        let Ok(mut item) = StreamItem::decode(entry.payload.as_slice()) else {
                            continue;
                        };
                        stamp(&mut item, entry.seq);
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
                // A shared stream's entries that came ahead of a missing one, by position, and
                // since when one is missing.
                let mut ahead = std::collections::BTreeMap::new();
                let mut missing_since = None;
                loop {
                    let next = match poll {
                        None => live.recv().await,
                        Some(idle) => {
                            // Quiet for `idle`, or missing an entry for as long: the store.
                            let from = missing_since.unwrap_or_else(tokio::time::Instant::now);
                            tokio::select! {
                                next = live.recv() => next,
                                () = tokio::time::sleep_until(from + idle) => continue 'read,
                            }
                        }
                    };
                    match next {
                        Ok(entry) => {
                            let seq = entry.0;
                            tracing::debug!(%tenant, %stream, cursor, seq, "stream live");
                            if seq <= cursor {
                                continue;
                            }
                            if seq != cursor + 1 {
                                // A single writer publishes in order: a gap is a lag; a shared
                                // stream's is an entry published elsewhere or not yet here:
                                // both read from the store at once. A hinted stream's missing
                                // entry is on its way here (durable already: its writer
                                // publishes as its own commit finishes): held until it comes,
                                // or the store is re-read after `poll`.
                                if !hold_ahead || ahead.len() >= AHEAD {
                                    continue 'outer;
                                }
                                ahead.insert(seq, entry);
                                missing_since.get_or_insert_with(tokio::time::Instant::now);
                                continue;
                            }
                            let mut ready = vec![entry];
                            while let Some(next) = ahead.remove(&(cursor + ready.len() as u64 + 1))
                            {
                                ready.push(next);
                            }
                            if ahead.is_empty() {
                                missing_since = None;
                            }
                            for entry in ready {
                                let (seq, mut item) = (entry.0, entry.1.clone());
                                cursor = seq;
                                stamp(&mut item, seq);
                                if let Some(v) = pick(item)
                                    && tx.send(Ok(v)).await.is_err()
                                {
                                    return;
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue 'outer,
                        Err(broadcast::error::RecvError::Closed) => {
                            // The tenant moved to another node.
                            let status = Status::unavailable(format!(
                                "tenant {tenant} moved to another node; reconnect after cursor {cursor} (any node forwards)"
                            ));
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    }
                }
            }
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            () = served => {}
            () = closed => {
                let status = Status::unavailable("node is shutting down; reconnect with your last cursor");
                let _ = to_client.send(Err(status)).await;
            }
            // The reader notices a departed client only when it sends, and an idle one sends
            // nothing: without this, every stream a client ever left went on re-reading the
            // store (an idle desk every `DESK_POLL`) until its next entry, forever for a
            // tenant gone quiet.
            () = to_client.closed() => {}
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

/// Answer to a response variant the call does not expect: a bug in the apply layer.
/// A command answered with another kind's answer: its request id was answered before for
/// another call (one stored before answers kept their call, `tenant::call_digest`). Refused,
/// without showing that call's answer.
pub fn unexpected(_other: response::Result) -> Status {
    crate::error::Error::reused("").into()
}

/// Unwraps the response variant a command answers with.
macro_rules! variant {
    ($result:expr, $variant:ident) => {
        match $result {
            switchboard_proto::internal::v1::response::Result::$variant(v) => Ok(v),
            other => Err($crate::service::unexpected(other)),
        }
    };
}
pub(crate) use variant;

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// Page size (0 means 100, at most 1000) and the position the token holds (empty for the
/// first page). Tokens are opaque: only one that a `kind` list returned is accepted; anything
/// else is INVALID_ARGUMENT rather than silently the first page.
pub fn page(
    p: Option<&pb::PageRequest>,
    kind: &str,
) -> Result<(usize, String), crate::error::Error> {
    let p = p.cloned().unwrap_or_default();
    let size = match p.page_size as usize {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    };
    Ok((size, parse_page_token(kind, &p.page_token)?))
}

/// Page size and a numeric position (an offset or a sequence number this call returned; 0 for
/// the first page).
pub fn numeric_page(
    p: Option<&pb::PageRequest>,
    kind: &str,
) -> Result<(usize, u64), crate::error::Error> {
    let (size, position) = page(p, kind)?;
    let at = match position.as_str() {
        "" => 0,
        t => t.parse().map_err(|_| bad_token())?,
    };
    Ok((size, at))
}

/// The `next_page_token` of a `kind` list for the page after `position` (empty: no more).
pub fn page_token(kind: &str, position: &str) -> String {
    if position.is_empty() {
        return String::new();
    }
    format!("{kind}:{position}").bytes().map(|b| format!("{b:02x}")).collect()
}

fn bad_token() -> crate::error::Error {
    crate::error::Error::field(
        "page.page_token",
        "not a token this list returned; pass back a next_page_token unchanged, or none for the first page",
    )
}

/// The position a `kind` token holds; empty for the first page.
fn parse_page_token(kind: &str, token: &str) -> Result<String, crate::error::Error> {
    if token.is_empty() {
        return Ok(String::new());
    }
    let digit = |c: u8| (c as char).to_digit(16);
    let bytes = token.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return Err(bad_token());
    }
    let decoded: Option<Vec<u8>> =
        bytes.chunks(2).map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)).collect();
    let text = decoded.and_then(|d| String::from_utf8(d).ok()).ok_or_else(bad_token)?;
    match text.split_once(':') {
        Some((k, position)) if k == kind && !position.is_empty() => Ok(position.to_owned()),
        _ => Err(bad_token()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    #[test]
    fn page_tokens_round_trip_and_refuse_anything_else() {
        let p = |t: &str| super::pb::PageRequest { page_size: 0, page_token: t.into() };
        let token = super::page_token("groups", "support");
        assert_eq!(super::page(Some(&p(&token)), "groups").unwrap().1, "support");
        assert_eq!(super::page(Some(&p("")), "groups").unwrap().1, "");
        for garbage in ["garbage", "support", "zz", "6", &super::page_token("agents", "x")] {
            let e = super::page(Some(&p(garbage)), "groups").unwrap_err();
            assert!(e.to_string().starts_with("page.page_token"), "{garbage}: {e}");
        }
        let n = super::page_token("history", "7");
        assert_eq!(super::numeric_page(Some(&p(&n)), "history").unwrap().1, 7);
        let bad = super::page_token("history", "x");
        assert!(super::numeric_page(Some(&p(&bad)), "history").is_err());
    }

    use prost::Message as _;
    use switchboard_proto::internal::v1::{StreamItem, stream_item::Item};
    use switchboard_proto::v1 as pb;
    use switchboard_store::{Batch, SqliteOptions, SqliteStore, Store, StreamEntry};
    use tokio_stream::StreamExt;

    use super::serve_stream;
    use crate::hub::Hub;
    use crate::registry::{Options, Registry};

    fn entry(seq: u64) -> StreamEntry {
        let item =
            StreamItem { item: Some(Item::Event(pb::Event { cursor: seq, ..Default::default() })) };
        StreamEntry {
            stream: "events".into(),
            seq,
            at_ms: seq,
            payload: item.encode_to_vec(),
            conversation: None,
        }
    }

    fn pick(item: StreamItem) -> Option<pb::Event> {
        match item.item {
            Some(Item::Event(e)) => Some(e),
            _ => None,
        }
    }

    /// A reader resuming behind the kept window is told, instead of silently skipping.
    #[tokio::test]
    async fn a_cursor_older_than_the_kept_window_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
        let batch = Batch {
            tenant: "acme".into(),
            streams: (1..=10).map(entry).collect(),
            ..Batch::default()
        };
        store.append(batch).await.unwrap();
        store.trim_stream("acme", "events", 3).await.unwrap();
        let registry = Registry::load(store, Hub::default(), Options::default()).await.unwrap();

        let mut stale = serve_stream(&registry, "acme".into(), "events".into(), 2, pick);
        let err = stale.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::OutOfRange);
        assert!(err.message().contains("resume after 7"), "{}", err.message());

        let mut fresh = serve_stream(&registry, "acme".into(), "events".into(), 0, pick);
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(fresh.next().await.unwrap().unwrap().cursor);
        }
        assert_eq!(got, vec![8, 9, 10]);
        let mut current = serve_stream(&registry, "acme".into(), "events".into(), 8, pick);
        assert_eq!(current.next().await.unwrap().unwrap().cursor, 9);
    }

    /// A reader ends as soon as its client goes away, with nothing more to send: its
    /// subscription goes, and with it the re-reads of the store an idle shared or desk reader
    /// makes (they went on for every stream a client had left, until its next entry: a
    /// node that had served three `loadtest run`s spent 0.87 s of CPU per 10 s idle on them).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_whose_client_left_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
        let hub = Hub::default();
        let registry = Registry::load(store, hub.clone(), Options::default()).await.unwrap();
        // Until the hub counts `want` readers of the stream (60 s at most: a slow machine
        // only takes longer).
        let settle = |stream: &'static str, want: usize| {
            let hub = hub.clone();
            async move {
                let wait = async {
                    while hub.subscribers("acme", stream) != want {
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    }
                };
                let settled = tokio::time::timeout(std::time::Duration::from_secs(60), wait).await;
                settled.unwrap_or_else(|_| panic!("{stream}: never {want} readers"));
            }
        };
        let serves = [
            (super::serve_stream::<pb::Event> as Serve, "events"),
            (super::serve_shared_stream, "outbox"),
            (super::serve_hinted_stream, "agent/1"),
        ];
        for (serve, stream) in serves {
            let reader = serve(&registry, "acme".into(), stream.into(), 0, pick);
            settle(stream, 1).await;
            drop(reader);
            settle(stream, 0).await;
        }
    }
    type Serve = fn(
        &Registry,
        String,
        String,
        u64,
        fn(StreamItem) -> Option<pb::Event>,
    ) -> super::ItemStream<pb::Event>;

    /// The reader's next item. Generous: the reader polls every `SHARED_POLL`; a slow machine
    /// only makes it later.
    async fn next(reader: &mut super::ItemStream<pb::Event>) -> pb::Event {
        let got = tokio::time::timeout(std::time::Duration::from_secs(60), reader.next()).await;
        got.expect("the reader got nothing for 60 s").unwrap().unwrap()
    }

    /// A hinted stream (an agent's desk): entries its writers publish out of position order
    /// are served in order from the hub (the hub's copies, not the store's: no re-read), and
    /// an entry never published here (its hint lost) is found in the store, with what came
    /// after it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hinted_stream_reader_puts_early_entries_in_order_and_finds_a_lost_one() {
        use switchboard_store::Append;
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
        let hub = Hub::default();
        let registry = Registry::load(store.clone(), hub.clone(), Options::default()).await;
        let registry = registry.unwrap();
        let item = |tag: &str| StreamItem {
            item: Some(Item::Event(pb::Event { r#type: tag.into(), ..Default::default() })),
        };
        // Appends `n` entries in one batch, each stored as `stored`.
        let append = |n: u64| {
            let store = store.clone();
            async move {
                let appends = (0..n)
                    .map(|_| Append {
                        stream: "agent/1".into(),
                        at_ms: 1,
                        payload: item("stored").encode_to_vec(),
                        conversation: None,
                    })
                    .collect();
                let batch = Batch { tenant: "acme".into(), appends, ..Batch::default() };
                store.append_assigned(batch).await.unwrap()
            }
        };
        let publish = |seq: u64| hub.publish("acme", "agent/1", seq, item(&format!("hub:{seq}")));
        let mut reader =
            super::serve_hinted_stream(&registry, "acme".into(), "agent/1".into(), 0, pick);

        assert_eq!(append(1).await, [1]);
        publish(1);
        assert_eq!(next(&mut reader).await.cursor, 1, "subscribed");
        assert_eq!(append(2).await, [2, 3]);
        publish(3);
        publish(2);
        let served = [next(&mut reader).await, next(&mut reader).await];
        let served = served.map(|e| (e.cursor, e.r#type));
        assert_eq!(served, [(2, "hub:2".into()), (3, "hub:3".into())], "in order, from the hub");

        assert_eq!(append(3).await, [4, 5, 6]);
        publish(5);
        publish(6);
        let served = [next(&mut reader).await, next(&mut reader).await, next(&mut reader).await];
        let served = served.map(|e| (e.cursor, e.r#type));
        let stored = |seq| (seq, "stored".to_owned());
        assert_eq!(served, [stored(4), stored(5), stored(6)], "the lost one, from the store");
    }

    /// A shared stream written on two nodes (two stores over one PostgreSQL, each node with
    /// its own hub): a reader on node X sees what node Y wrote without reconnecting (X's hub
    /// never hears of it: the reader re-reads the store while idle, or on the gap the next
    /// local entry shows) and X's own entries through the hub; every position once, in order,
    /// each item's cursor its position, each writer's entries in its order, also while both
    /// write at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shared_stream_reader_follows_writers_on_every_node() {
        use switchboard_store::testing::{PgServer, off_runtime};
        use switchboard_store::{Append, PostgresOptions, PostgresStore};

        let url = off_runtime(|| PgServer::shared().database());
        let open = || -> Arc<dyn Store> {
            Arc::new(PostgresStore::open(&url, PostgresOptions::default()).unwrap())
        };
        let (store_x, store_y) = (open(), open());
        let (hub_x, hub_y) = (Hub::default(), Hub::default());
        let x = Registry::load(store_x.clone(), hub_x.clone(), Options::default()).await.unwrap();
        let mut reader = super::serve_shared_stream(&x, "acme".into(), "events".into(), 0, pick);

        // Writes `n` events tagged `node:i` on one node, as a committer does: each durable
        // before the next, published to that node's hub at its assigned position.
        let write = |store: Arc<dyn Store>, hub: Hub, node: &'static str, n: usize| async move {
            for i in 0..n {
                let item = StreamItem {
                    item: Some(Item::Event(pb::Event {
                        r#type: format!("{node}:{i}"),
                        ..Default::default()
                    })),
                };
                let batch = Batch {
                    tenant: "acme".into(),
                    appends: vec![Append {
                        stream: "events".into(),
                        at_ms: 1,
                        payload: item.encode_to_vec(),
                        conversation: None,
                    }],
                    ..Batch::default()
                };
                let positions = store.append_assigned(batch).await.unwrap();
                hub.publish("acme", "events", positions[0], item);
            }
        };

        write(store_y.clone(), hub_y.clone(), "y", 20).await;
        for cursor in 1..=20 {
            let event = next(&mut reader).await;
            assert_eq!((event.cursor, event.r#type), (cursor, format!("y:{}", cursor - 1)));
        }

        const EACH: usize = 150;
        let wx = tokio::spawn(write(store_x.clone(), hub_x.clone(), "x", EACH));
        let wy = tokio::spawn(write(store_y.clone(), hub_y.clone(), "y", EACH));
        let mut got = Vec::new();
        for _ in 0..2 * EACH {
            got.push(next(&mut reader).await);
        }
        wx.await.unwrap();
        wy.await.unwrap();
        let cursors: Vec<u64> = got.iter().map(|e| e.cursor).collect();
        assert_eq!(cursors, (21..=20 + 2 * EACH as u64).collect::<Vec<_>>());
        for node in ["x", "y"] {
            let order: Vec<usize> = got
                .iter()
                .filter_map(|e| e.r#type.strip_prefix(&format!("{node}:"))?.parse().ok())
                .collect();
            assert_eq!(order, (0..EACH).collect::<Vec<_>>(), "{node}'s order");
        }
    }
}
