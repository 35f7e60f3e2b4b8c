//! The store's contract, against each backend: real SQLite in a temporary directory, and a
//! real PostgreSQL server (one per test binary, started by `switchboard_store::testing`) with
//! a fresh database per test. Every test body is written once, generic over the backend, and
//! instantiated in `mod sqlite` and `mod postgres` at the bottom.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, archived, command, entry, entry_about, message, record};
use switchboard_store::{
    ActorState, ArchiveQuery, ArchiveScan, Archived, Batch, Contact, ContactField,
    ConversationOwner, CustomerRecord, Error, Fence, LogRecord, Response, Store,
};

async fn append_then_read_everything_back<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let batch = Batch {
        tenant: "acme".into(),
        log: vec![record(1)],
        streams: vec![entry("agent/alice", 1), entry("agent/alice", 2), entry("outbox", 7)],
        messages: vec![message(42, 1), message(42, 2), message(43, 1)],
        ..Batch::default()
    };
    store.append(batch.clone()).await.unwrap();

    let loaded = store.load("acme").unwrap();
    assert_eq!(loaded.snapshot, None);
    assert_eq!(loaded.log, vec![record(1)]);
    assert_eq!(store.tenants().unwrap(), vec!["acme".to_string()]);

    let alice = store.read_stream("acme", "agent/alice", 0, 100).unwrap();
    assert_eq!(alice, vec![entry("agent/alice", 1), entry("agent/alice", 2)]);
    assert_eq!(
        store.read_stream("acme", "agent/alice", 1, 100).unwrap(),
        vec![entry("agent/alice", 2)]
    );
    assert_eq!(
        store.read_stream("acme", "agent/alice", 0, 1).unwrap(),
        vec![entry("agent/alice", 1)]
    );
    assert_eq!(store.read_stream("acme", "outbox", 0, 100).unwrap(), vec![entry("outbox", 7)]);
    assert_eq!(store.last_stream_seq("acme", "agent/alice").unwrap(), Some(2));
    assert_eq!(store.last_stream_seq("acme", "nobody").unwrap(), None);

    assert_eq!(store.messages("acme", 42, 0, 100).unwrap(), vec![message(42, 1), message(42, 2)]);
    assert_eq!(store.messages("acme", 42, 1, 100).unwrap(), vec![message(42, 2)]);
    assert_eq!(store.messages("acme", 43, 0, 100).unwrap(), vec![message(43, 1)]);

    assert_eq!(store.find_response("acme", "req-1").unwrap(), Some(b"response 1".to_vec()));
    assert_eq!(store.find_response("acme", "req-2").unwrap(), None);

    // Tenants never see each other's rows.
    assert_eq!(store.load("other").unwrap().log, vec![]);
    assert_eq!(store.read_stream("other", "agent/alice", 0, 100).unwrap(), vec![]);
    assert_eq!(store.messages("other", 42, 0, 100).unwrap(), vec![]);
    assert_eq!(store.find_response("other", "req-1").unwrap(), None);
}

async fn usable_as_a_trait_object<B: Backend>() {
    let place = B::place();
    let store: Arc<dyn Store> = B::open(&place).store;
    let task = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.append(command("acme", 1)).await })
    };
    task.await.unwrap().unwrap();
    assert_eq!(store.load("acme").unwrap().log, vec![record(1)]);
}

async fn snapshot_replaces_the_log_records_up_to_it<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    for seq in 1..=5 {
        store.append(command("acme", seq)).await.unwrap();
    }
    store.snapshot("acme", Fence::default(), 3, b"state at 3".to_vec()).await.unwrap();

    let loaded = store.load("acme").unwrap();
    assert_eq!(loaded.snapshot, Some((3, b"state at 3".to_vec())));
    assert_eq!(loaded.log, vec![record(4), record(5)]);
    // Idempotency outlives the deleted log records; streams and transcripts are untouched.
    assert_eq!(store.find_response("acme", "req-2").unwrap(), Some(b"response 2".to_vec()));
    assert_eq!(store.read_stream("acme", "events", 0, 100).unwrap().len(), 5);
    assert_eq!(store.messages("acme", 1, 0, 100).unwrap().len(), 5);

    // A newer snapshot replaces it; an older one is refused and changes nothing.
    store.snapshot("acme", Fence::default(), 5, b"state at 5".to_vec()).await.unwrap();
    let stale = store.snapshot("acme", Fence::default(), 4, b"state at 4".to_vec()).await;
    assert!(matches!(stale, Err(Error::StaleSnapshot { seq: 4, stored: 5, .. })), "{stale:?}");
    let loaded = store.load("acme").unwrap();
    assert_eq!(loaded.snapshot, Some((5, b"state at 5".to_vec())));
    assert_eq!(loaded.log, vec![]);

    // A tenant with only a snapshot is still a tenant.
    store.snapshot("quiet", Fence::default(), 0, b"empty".to_vec()).await.unwrap();
    assert_eq!(store.tenants().unwrap(), vec!["acme".to_string(), "quiet".to_string()]);
}

async fn snapshot_prunes_responses_older_than_the_window<B: Backend>() {
    let place = B::place();
    let store = B::open_with(&place, Duration::from_millis(1_000));
    let at = |seq: u64, at_ms: u64| Batch {
        tenant: "acme".into(),
        log: vec![LogRecord { at_ms, ..record(seq) }],
        ..Batch::default()
    };
    store.append(at(1, 10_000)).await.unwrap();
    store.append(at(2, 10_500)).await.unwrap();
    store.append(at(3, 11_200)).await.unwrap();
    // Before a snapshot nothing is pruned.
    assert!(store.find_response("acme", "req-1").unwrap().is_some());

    store.snapshot("acme", Fence::default(), 3, vec![]).await.unwrap();
    assert_eq!(store.find_response("acme", "req-1").unwrap(), None, "1.2 s older than the newest");
    assert!(store.find_response("acme", "req-2").unwrap().is_some(), "0.7 s: inside the window");
    assert!(store.find_response("acme", "req-3").unwrap().is_some());
}

async fn purge_deletes_transcripts_of_those_conversations_only<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let batch = |tenant: &str| Batch {
        tenant: tenant.into(),
        log: vec![record(1)],
        streams: vec![entry("events", 1)],
        messages: vec![message(1, 1), message(1, 2), message(2, 1), message(3, 1)],
        ..Batch::default()
    };
    store.append(batch("acme")).await.unwrap();
    store.append(batch("other")).await.unwrap();

    let purge =
        Batch { tenant: "acme".into(), purge_conversations: vec![1, 3], ..Batch::default() };
    store.append(purge).await.unwrap();

    assert_eq!(store.messages("acme", 1, 0, 100).unwrap(), vec![]);
    assert_eq!(store.messages("acme", 3, 0, 100).unwrap(), vec![]);
    assert_eq!(store.messages("acme", 2, 0, 100).unwrap(), vec![message(2, 1)]);
    assert_eq!(
        store.messages("other", 1, 0, 100).unwrap().len(),
        2,
        "another tenant's conversation 1"
    );
    assert_eq!(store.load("acme").unwrap().log, vec![record(1)]);
    assert_eq!(store.read_stream("acme", "events", 0, 100).unwrap(), vec![entry("events", 1)]);
}

async fn purge_in_the_same_batch_wins_over_messages<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let batch = Batch {
        tenant: "acme".into(),
        messages: vec![message(1, 1)],
        purge_conversations: vec![1],
        ..Batch::default()
    };
    store.append(batch).await.unwrap();
    assert_eq!(store.messages("acme", 1, 0, 100).unwrap(), vec![]);
}

async fn concurrent_appends_share_commits<B: Backend>() {
    let place = B::place();
    let store = Arc::new(B::open(&place));

    // Hold a lock from another connection so that the writer is stuck in its first commit
    // while every append queues: what shares a commit then does not depend on timing.
    let lock = B::hold_writes(&place);

    let (queued_tx, mut queued) = tokio::sync::mpsc::unbounded_channel();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let store = Arc::clone(&store);
            let queued_tx = queued_tx.clone();
            tokio::spawn(async move {
                let pending = store.append(command(&format!("tenant-{}", i % 7), i));
                queued_tx.send(()).unwrap();
                pending.await
            })
        })
        .collect();
    for _ in 0..200 {
        queued.recv().await.unwrap();
    }
    drop(lock);

    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.batches, 200);
    // The writer's first commit took what was queued when it started, the second all the rest.
    assert!(stats.commits <= 2, "{stats:?}");
    assert_eq!(stats.redone_commits, 0, "nothing refused, no savepoints: {stats:?}");
    let stored: usize =
        store.tenants().unwrap().iter().map(|t| store.load(t).unwrap().log.len()).sum();
    assert_eq!(stored, 200);
}

async fn everything_survives_reopening<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    for seq in 1..=10 {
        store.append(command("acme", seq)).await.unwrap();
    }
    store.snapshot("acme", Fence::default(), 4, b"four".to_vec()).await.unwrap();
    // Queued but not awaited: closing finishes it.
    let last = store.append(command("acme", 11));
    drop(store);
    last.await.unwrap();

    let store = B::open(&place);
    let loaded = store.load("acme").unwrap();
    assert_eq!(loaded.snapshot, Some((4, b"four".to_vec())));
    assert_eq!(loaded.log, (5..=11).map(record).collect::<Vec<_>>());
    assert_eq!(store.read_stream("acme", "events", 0, 100).unwrap().len(), 11);
    assert_eq!(store.messages("acme", 1, 0, 100).unwrap().len(), 11);
    assert_eq!(store.find_response("acme", "req-11").unwrap(), Some(b"response 11".to_vec()));
}

async fn a_duplicate_is_refused_whole<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    store.append(command("acme", 1)).await.unwrap();

    // Same log seq, new stream entry and message: none of it may land.
    let mut again = command("acme", 1);
    again.streams = vec![entry("events", 2)];
    again.messages = vec![message(1, 2)];
    let refused = store.append(again).await;
    assert!(matches!(refused, Err(Error::DuplicateLogRecord { seq: 1, .. })), "{refused:?}");
    assert_eq!(store.read_stream("acme", "events", 0, 100).unwrap(), vec![entry("events", 1)]);
    assert_eq!(store.messages("acme", 1, 0, 100).unwrap(), vec![message(1, 1)]);

    let mut stream_dup = command("acme", 2);
    stream_dup.streams = vec![entry("events", 1)];
    let refused = store.append(stream_dup).await;
    assert!(matches!(refused, Err(Error::DuplicateStreamEntry { seq: 1, .. })), "{refused:?}");
    assert_eq!(store.load("acme").unwrap().log, vec![record(1)], "its log record rolled back");

    let mut message_dup = command("acme", 2);
    message_dup.messages = vec![message(1, 1)];
    let refused = store.append(message_dup).await;
    assert!(matches!(refused, Err(Error::DuplicateMessage { seq: 1, .. })), "{refused:?}");

    // The store carries on.
    store.append(command("acme", 2)).await.unwrap();
    assert_eq!(store.load("acme").unwrap().log, vec![record(1), record(2)]);
    assert_eq!(store.stats().rejected_batches, 3);
}

async fn trim_keeps_the_newest_entries<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let batch = Batch {
        tenant: "acme".into(),
        streams: (1..=10).map(|seq| entry("outbox", seq)).chain([entry("events", 1)]).collect(),
        ..Batch::default()
    };
    store.append(batch).await.unwrap();

    store.trim_stream("acme", "outbox", 3).await.unwrap();
    let left: Vec<u64> =
        store.read_stream("acme", "outbox", 0, 100).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(left, vec![8, 9, 10]);
    assert_eq!(store.read_stream("acme", "events", 0, 100).unwrap().len(), 1, "other streams kept");

    store.trim_stream("acme", "outbox", 100).await.unwrap();
    assert_eq!(store.read_stream("acme", "outbox", 0, 100).unwrap().len(), 3);
    store.trim_stream("acme", "outbox", 0).await.unwrap();
    assert_eq!(store.last_stream_seq("acme", "outbox").unwrap(), None);
}

async fn ids_use_the_whole_u64_range_and_sequences_are_bounded<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let big = Batch {
        tenant: "acme".into(),
        messages: vec![message(u64::MAX, 1), message(1 << 63, 1)],
        ..Batch::default()
    };
    store.append(big).await.unwrap();
    assert_eq!(store.messages("acme", u64::MAX, 0, 10).unwrap(), vec![message(u64::MAX, 1)]);
    assert_eq!(store.messages("acme", 1 << 63, 0, 10).unwrap(), vec![message(1 << 63, 1)]);
    assert_eq!(store.messages("acme", 1, u64::MAX, 10).unwrap(), vec![]);

    let too_far = Batch {
        tenant: "acme".into(),
        log: vec![LogRecord { seq: u64::MAX, ..record(1) }],
        ..Batch::default()
    };
    let refused = store.append(too_far).await;
    assert!(matches!(refused, Err(Error::OutOfRange { .. })), "{refused:?}");
}

async fn two_stores_on_one_place_serialise_their_writes<B: Backend>() {
    // Not a supported setup (until fencing), but it must not corrupt anything: the second
    // writer waits for the first one's lock and then sees its rows.
    let place = B::place();
    let first = B::open(&place);
    let second = B::open(&place);
    first.append(command("acme", 1)).await.unwrap();
    let duplicate = second.append(command("acme", 1)).await;
    assert!(matches!(duplicate, Err(Error::DuplicateLogRecord { .. })), "{duplicate:?}");
}

async fn a_refused_batch_fails_alone_and_holds_back_its_tenant<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    store.append(command("a", 1)).await.unwrap();
    let fenced_off = Fence { shard: 9, epoch: 3 };
    store.raise_fence(Fence { shard: 9, epoch: 5 }).await.unwrap();

    // The writer takes the blocker and waits on the lock; the rest queue meanwhile. Whether
    // they share one commit or spread over several, the outcomes are the same.
    let lock = B::hold_writes(&place);
    let blocker = store.append(command("c", 1));
    let dup = store.append(command("a", 1));
    let after_dup = store.append(command("a", 2));
    let other = store.append(command("b", 1));
    let fenced = store.append(Batch { fence: fenced_off, ..command("f", 1) });
    let after_fenced = store.append(Batch { fence: fenced_off, ..command("f", 2) });
    drop(lock);

    blocker.await.unwrap();
    let dup = dup.await;
    assert!(matches!(dup, Err(Error::DuplicateLogRecord { seq: 1, .. })), "{dup:?}");
    // A duplicate's number is durable already: the writer goes on after it.
    after_dup.await.unwrap();
    other.await.unwrap();
    let fenced = fenced.await;
    assert!(matches!(fenced, Err(Error::Fenced { .. })), "{fenced:?}");
    // A refusal that wrote nothing holds back the tenant's next append: no gap in its log.
    let after_fenced = after_fenced.await;
    assert!(matches!(after_fenced, Err(Error::EarlierBatchFailed { .. })), "{after_fenced:?}");

    let seqs = |tenant| store.load(tenant).unwrap().log.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(seqs("a"), vec![1, 2]);
    assert_eq!(seqs("b"), vec![1]);
    assert_eq!(seqs("f"), Vec::<u64>::new());
    let stats = store.stats();
    assert_eq!((stats.batches, stats.rejected_batches), (4, 3), "{stats:?}");
    // The duplicate failed partway, so its commit was redone one batch at a time.
    assert_eq!(stats.redone_commits, 1, "{stats:?}");
}

async fn a_newer_epoch_fences_off_the_older_writer<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let old = Fence { shard: 7, epoch: 10 };
    let new = Fence { shard: 7, epoch: 12 };
    let with = |seq, fence| Batch { fence, ..command("acme", seq) };
    store.append(with(1, old)).await.unwrap();
    store.raise_fence(new).await.unwrap();
    // The old owner's writes are refused, batches and snapshots alike...
    let refused = store.append(with(2, old)).await;
    assert!(
        matches!(refused, Err(Error::Fenced { shard: 7, epoch: 10, current: 12 })),
        "{refused:?}"
    );
    let snapshot = store.snapshot("acme", old, 1, b"stale".to_vec()).await;
    assert!(matches!(snapshot, Err(Error::Fenced { .. })), "{snapshot:?}");
    // ...the new owner's go through, raising never lowers, and other shards are untouched.
    store.append(with(2, new)).await.unwrap();
    store.raise_fence(old).await.unwrap();
    store.append(with(3, new)).await.unwrap();
    store
        .append(Batch { fence: Fence { shard: 8, epoch: 1 }, ..command("other", 1) })
        .await
        .unwrap();
    let seqs = store.load("acme").unwrap().log.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(seqs, vec![1, 2, 3]);
    // Fences are durable.
    drop(store);
    let store = B::open(&place);
    let refused = store.append(with(4, old)).await;
    assert!(matches!(refused, Err(Error::Fenced { .. })), "{refused:?}");
}

async fn archive_upserts_by_conversation_and_reads_back<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    // Archived in the batch of the command that ended it, beside its log record.
    let ended = Batch {
        archive: vec![archived(5, "carol", 100, 9_000), archived(6, "dave", 120, 9_000)],
        ..command("acme", 1)
    };
    store.append(ended).await.unwrap();
    assert_eq!(store.archived("acme", 5).unwrap(), Some(archived(5, "carol", 100, 9_000)));
    assert_eq!(store.archived("acme", 7).unwrap(), None);
    assert_eq!(store.archived("other", 5).unwrap(), None, "tenants never see each other's");
    assert_eq!(store.count_archived("acme").unwrap(), 2);
    assert_eq!(store.count_archived("other").unwrap(), 0);
    assert_eq!(store.load("acme").unwrap().log, vec![record(1)]);

    // A later change (a rating) rewrites every column; it is still one conversation.
    let rated = Archived {
        customer: "carol-2".into(),
        opened_at_ms: 101,
        ended_at_ms: 222,
        purge_at_ms: 9_999,
        body: b"rated".to_vec(),
        conversation: 5,
    };
    store.append(Batch { archive: vec![rated.clone()], ..command("acme", 2) }).await.unwrap();
    assert_eq!(store.archived("acme", 5).unwrap(), Some(rated.clone()));
    assert_eq!(store.count_archived("acme").unwrap(), 2);
    let by_old_name =
        ArchiveQuery { customer: Some("carol".into()), limit: 10, ..Default::default() };
    assert_eq!(store.list_archived("acme", &by_old_name).unwrap(), vec![], "index rewritten too");

    // Refused with its batch: a duplicate log record takes its archive rewrite down with it.
    let refused = Batch { archive: vec![archived(5, "mallory", 0, 0)], ..command("acme", 2) };
    assert!(matches!(store.append(refused).await, Err(Error::DuplicateLogRecord { .. })));
    assert_eq!(store.archived("acme", 5).unwrap(), Some(rated));

    // Conversation ids are ordered columns here: above i64::MAX is refused, not wrapped.
    let huge = Batch { archive: vec![archived(1 << 63, "x", 0, 0)], ..Batch::default() };
    let huge = Batch { tenant: "acme".into(), ..huge };
    assert!(matches!(store.append(huge).await, Err(Error::OutOfRange { .. })));
    assert_eq!(store.archived("acme", u64::MAX).unwrap(), None);

    // Durable like everything else.
    drop(store);
    let store = B::open(&place);
    assert_eq!(store.archived("acme", 6).unwrap(), Some(archived(6, "dave", 120, 9_000)));
}

async fn customer_records_upsert_and_read_back<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let record = |customer: &str, body: &[u8]| switchboard_store::CustomerRecord {
        customer: customer.into(),
        body: body.to_vec(),
        contact: Contact::default(),
    };
    let evicted =
        Batch { customers: vec![record("u1", b"one"), record("u2", b"two")], ..command("acme", 1) };
    store.append(evicted).await.unwrap();
    assert_eq!(store.customer("acme", "u1").unwrap(), Some(b"one".to_vec()));
    assert_eq!(store.customer("acme", "u3").unwrap(), None);
    assert_eq!(store.customer("other", "u1").unwrap(), None, "tenants never see each other's");
    // Evicted again later: the newer record replaces it.
    store
        .append(Batch { customers: vec![record("u1", b"uno")], ..command("acme", 2) })
        .await
        .unwrap();
    // Refused with its batch.
    let refused = Batch { customers: vec![record("u2", b"lost")], ..command("acme", 2) };
    assert!(matches!(store.append(refused).await, Err(Error::DuplicateLogRecord { .. })));
    drop(store);
    let store = B::open(&place);
    assert_eq!(store.customer("acme", "u1").unwrap(), Some(b"uno".to_vec()));
    assert_eq!(store.customer("acme", "u2").unwrap(), Some(b"two".to_vec()));
}

async fn archive_listings_filter_and_page<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    // Conversation n opened at 1000 + 10 n and ended 10 ms later; customers take turns.
    let customers = ["carol", "dave", "erin"];
    let all: Vec<Archived> = (1..=30)
        .map(|n| archived(n, customers[(n % 3) as usize], 1_000 + 10 * n, 1_000_000))
        .collect();
    let batch = Batch { tenant: "acme".into(), archive: all.clone(), ..Batch::default() };
    store.append(batch).await.unwrap();
    let other = Batch { tenant: "other".into(), archive: all.clone(), ..Batch::default() };
    store.append(other).await.unwrap();
    let ids = |query: ArchiveQuery| -> Vec<u64> {
        store.list_archived("acme", &query).unwrap().iter().map(|a| a.conversation).collect()
    };
    let q = |limit| ArchiveQuery { limit, ..ArchiveQuery::default() };

    // Everything, in pages of 7, each page after the last id of the one before.
    let mut pages = Vec::new();
    let mut after = 0;
    loop {
        let page = ids(ArchiveQuery { after_conversation: after, ..q(7) });
        if page.is_empty() {
            break;
        }
        after = *page.last().unwrap();
        pages.push(page);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![7, 7, 7, 7, 2]);
    assert_eq!(pages.concat(), (1..=30).collect::<Vec<_>>());
    assert_eq!(store.list_archived("acme", &q(3)).unwrap(), all[..3].to_vec(), "whole rows");
    assert_eq!(ids(q(0)), Vec::<u64>::new());

    // By customer, paged.
    let dave = ArchiveQuery { customer: Some("dave".into()), ..q(4) };
    assert_eq!(ids(dave.clone()), vec![1, 4, 7, 10]);
    assert_eq!(ids(ArchiveQuery { after_conversation: 10, ..dave.clone() }), vec![13, 16, 19, 22]);
    assert_eq!(ids(ArchiveQuery { customer: Some("nobody".into()), ..q(100) }), Vec::<u64>::new());

    // By end time: [from, before). Conversation n ended at 1010 + 10 n.
    let ended = |from, before| ArchiveQuery {
        ended_from_ms: Some(from),
        ended_before_ms: Some(before),
        ..q(100)
    };
    assert_eq!(ids(ended(1_110, 1_150)), vec![10, 11, 12, 13]);
    assert_eq!(ids(ArchiveQuery { ended_from_ms: Some(1_300), ..q(100) }), vec![29, 30]);
    assert_eq!(ids(ArchiveQuery { ended_before_ms: Some(1_040), ..q(100) }), vec![1, 2]);
    assert_eq!(ids(ArchiveQuery { after_conversation: 11, ..ended(1_110, 1_150) }), vec![12, 13]);
    assert_eq!(ids(ArchiveQuery { limit: 2, ..ended(1_110, 1_150) }), vec![10, 11]);

    // Waits that entered in a window: opened at or before its end, ended at or after its start.
    let window =
        ArchiveQuery { opened_before_ms: Some(1_100), ended_from_ms: Some(1_080), ..q(100) };
    assert_eq!(ids(window), vec![7, 8, 9, 10]);
    assert_eq!(ids(ArchiveQuery { opened_before_ms: Some(1_020), ..q(100) }), vec![1, 2]);

    // Everything at once.
    let all_bounds = ArchiveQuery {
        customer: Some("carol".into()),
        ended_from_ms: Some(1_050),
        ended_before_ms: Some(1_250),
        opened_before_ms: Some(1_200),
        after_conversation: 6,
        limit: 2,
    };
    assert_eq!(ids(all_bounds), vec![9, 12]);
}

/// One tenant's rows about conversations 1 (due at 500), 2 (due at 600) and 3 (due at 10_000),
/// plus entries about no conversation at times 1001..=1004.
fn retention_fixture(tenant: &str) -> Batch {
    Batch {
        tenant: tenant.into(),
        log: vec![record(1)],
        streams: vec![
            entry_about("agent/alice", 1, 1),
            entry_about("agent/alice", 2, 2),
            entry_about("agent/alice", 3, 3),
            entry("events", 1),
            entry("events", 2),
            entry("events", 3),
            entry("events", 4),
            entry_about("outbox", 5, 3),
        ],
        messages: vec![message(1, 1), message(1, 2), message(2, 1), message(3, 1)],
        archive: vec![
            archived(1, "carol", 100, 500),
            archived(2, "carol", 100, 600),
            archived(3, "dave", 100, 10_000),
        ],
        ..Batch::default()
    }
}

async fn retain_deletes_exactly_what_is_due<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    store.append(retention_fixture("acme")).await.unwrap();
    store.append(retention_fixture("other")).await.unwrap();
    let seqs = |stream| -> Vec<u64> {
        store.read_stream("acme", stream, 0, 100).unwrap().iter().map(|e| e.seq).collect()
    };

    // Nothing due yet: nothing happens.
    store.retain("acme", Fence::default(), 499, 0).await.unwrap();
    assert_eq!(store.count_archived("acme").unwrap(), 3);
    assert_eq!(seqs("agent/alice"), vec![1, 2, 3]);
    assert_eq!(seqs("events"), vec![1, 2, 3, 4]);

    // Conversation 1 is due at 500 (inclusive); entries before 1003 are old.
    store.retain("acme", Fence::default(), 500, 1_003).await.unwrap();
    assert_eq!(store.archived("acme", 1).unwrap(), None);
    assert_eq!(store.messages("acme", 1, 0, 100).unwrap(), vec![]);
    assert_eq!(store.count_archived("acme").unwrap(), 2);
    assert_eq!(store.messages("acme", 2, 0, 100).unwrap(), vec![message(2, 1)]);
    assert_eq!(store.messages("acme", 3, 0, 100).unwrap(), vec![message(3, 1)]);
    // Stream entries go by age alone: alice's 1 and 2 are old (1002 < 1003), 3 stays; events 1
    // and 2 are old; the outbox entry about the live conversation 3 stays.
    assert_eq!(seqs("agent/alice"), vec![3]);
    assert_eq!(seqs("events"), vec![3, 4]);
    assert_eq!(
        store.read_stream("acme", "outbox", 0, 100).unwrap(),
        vec![entry_about("outbox", 5, 3)]
    );

    // Conversation 2 next; no entry is old at 0, so the streams stay as they are (the node
    // bounds entries by age so that none outlives its conversation's transcript).
    store.retain("acme", Fence::default(), 600, 0).await.unwrap();
    assert_eq!(store.archived("acme", 2).unwrap(), None);
    assert_eq!(store.messages("acme", 2, 0, 100).unwrap(), vec![]);
    assert_eq!(store.archived("acme", 3).unwrap(), Some(archived(3, "dave", 100, 10_000)));
    assert_eq!(seqs("agent/alice"), vec![3]);
    assert_eq!(seqs("events"), vec![3, 4]);

    // Every entry older than a bound past them all: whole streams emptied, the log untouched.
    store.retain("acme", Fence::default(), 600, u64::MAX).await.unwrap();
    assert_eq!(seqs("agent/alice"), Vec::<u64>::new());
    assert_eq!(seqs("events"), Vec::<u64>::new());
    assert_eq!(seqs("outbox"), Vec::<u64>::new());
    assert_eq!(store.archived("acme", 3).unwrap(), Some(archived(3, "dave", 100, 10_000)));
    assert_eq!(store.messages("acme", 3, 0, 100).unwrap(), vec![message(3, 1)]);
    assert_eq!(store.load("acme").unwrap().log, vec![record(1)]);

    // Another tenant's rows never move.
    assert_eq!(store.count_archived("other").unwrap(), 3);
    assert_eq!(store.messages("other", 1, 0, 100).unwrap().len(), 2);
    assert_eq!(store.read_stream("other", "agent/alice", 0, 100).unwrap().len(), 3);
    assert_eq!(store.read_stream("other", "events", 0, 100).unwrap().len(), 4);

    // A new entry in an emptied stream continues its sequence (a reader's cursor stays valid).
    let more =
        Batch { tenant: "acme".into(), streams: vec![entry("events", 5)], ..Batch::default() };
    store.append(more).await.unwrap();
    assert_eq!(seqs("events"), vec![5]);
}

async fn retain_is_fenced<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let old = Fence { shard: 3, epoch: 1 };
    let new = Fence { shard: 3, epoch: 2 };
    store.append(Batch { fence: old, ..retention_fixture("acme") }).await.unwrap();
    store.raise_fence(new).await.unwrap();
    let refused = store.retain("acme", old, u64::MAX, u64::MAX).await;
    assert!(
        matches!(refused, Err(Error::Fenced { shard: 3, epoch: 1, current: 2 })),
        "{refused:?}"
    );
    assert_eq!(store.count_archived("acme").unwrap(), 3, "nothing deleted");
    assert_eq!(store.read_stream("acme", "events", 0, 100).unwrap().len(), 4);
    assert_eq!(store.messages("acme", 1, 0, 100).unwrap().len(), 2);
    // An archive write under the old epoch is refused like any batch.
    let late = Batch {
        tenant: "acme".into(),
        fence: old,
        archive: vec![archived(9, "x", 0, 0)],
        ..Batch::default()
    };
    assert!(matches!(store.append(late).await, Err(Error::Fenced { .. })));
    assert_eq!(store.archived("acme", 9).unwrap(), None);
    store.retain("acme", new, 500, 0).await.unwrap();
    assert_eq!(store.count_archived("acme").unwrap(), 2);
}

async fn a_version_1_database_is_migrated<B: Backend>() {
    let place = B::place();
    B::execute(&place, B::SCHEMA_V1);
    let b = B::blob;
    B::execute(
        &place,
        &format!(
            "INSERT INTO log VALUES ('acme', 5, 1005, 'req-5', {}, {});
             INSERT INTO snapshots VALUES ('acme', 4, {});
             INSERT INTO requests VALUES ('acme', 'req-4', 4, 1004, {});
             INSERT INTO requests VALUES ('acme', 'req-5', 5, 1005, {});
             INSERT INTO streams VALUES ('acme', 'events', 1, 1001, {});
             INSERT INTO messages VALUES ('acme', 1, 1, 1001, 'agent/alice', 'hello 1', 'text');",
            b("command 5"),
            b("response 5"),
            b("four"),
            b("response 4"),
            b("response 5"),
            b("events 1"),
        ),
    );
    let store = B::open(&place);
    let loaded = store.load("acme").unwrap();
    assert_eq!(loaded.snapshot, Some((4, b"four".to_vec())));
    assert_eq!(loaded.log, vec![record(5)]);
    // Old entries are about no conversation.
    assert_eq!(store.read_stream("acme", "events", 0, 10).unwrap(), vec![entry("events", 1)]);
    assert_eq!(store.messages("acme", 1, 0, 10).unwrap(), vec![message(1, 1)]);
    assert_eq!(store.find_response("acme", "req-4").unwrap(), Some(b"response 4".to_vec()));
    assert_eq!(store.find_response("acme", "req-5").unwrap(), Some(b"response 5".to_vec()));
    // The new parts work.
    let ended = Batch {
        streams: vec![entry_about("events", 6, 1)],
        archive: vec![archived(1, "carol", 100, 500)],
        ..command("acme", 6)
    };
    store.append(ended).await.unwrap();
    store.retain("acme", Fence::default(), 500, 1_002).await.unwrap();
    assert_eq!(store.messages("acme", 1, 0, 10).unwrap(), vec![]);
    // Stream entries by age alone (index by conversation dropped in version 5).
    assert_eq!(
        store.read_stream("acme", "events", 0, 10).unwrap(),
        vec![entry_about("events", 6, 1)]
    );
    // Version 6's actors table is there too.
    let actor = ActorState {
        kind: "router".into(),
        key: String::new(),
        epoch: 1,
        body: Some(b"r".to_vec()),
    };
    store.append(Batch { actors: vec![actor.clone()], ..command("acme", 7) }).await.unwrap();
    // Opening again finds it current.
    drop(store);
    let store = B::open(&place);
    assert_eq!(store.load("acme").unwrap().log, vec![record(5), record(6), record(7)]);
    assert_eq!(store.actor("acme", "router", "").unwrap(), Some(actor));
}

/// Per-actor idempotency (version 9): a response stored by request id with the batch it
/// rides in (replaced when the id is written again, an answer that names its call only by an
/// answer to the same call), refused with a refused batch, kept by
/// retention within the window and deleted past it; a conversation's customer stored with
/// its opening batch, kept until retention purges the conversation's archive row; both
/// durable across reopening and apart per tenant.
async fn actor_responses_and_conversation_owners_are_kept_then_retained<B: Backend>() {
    let place = B::place();
    let store = B::open_with(&place, Duration::from_secs(1));
    let response = |id: &str, at_ms, body: &str| Response {
        request_id: id.into(),
        at_ms,
        body: body.as_bytes().to_vec(),
    };
    let owner = |conversation, customer| ConversationOwner { conversation, customer };
    let step =
        |responses, owners| Batch { tenant: "acme".into(), responses, owners, ..Batch::default() };
    store.append(step(vec![response("a", 10_000, "one")], vec![owner(7, 70)])).await.unwrap();
    store.append(step(vec![response("a", 10_100, "two")], vec![owner(7, 71)])).await.unwrap();
    store.append(step(vec![response("b", 10_500, "three")], vec![owner(8, 80)])).await.unwrap();
    assert_eq!(store.actor_response("acme", "a").unwrap(), Some(b"two".to_vec()));
    assert_eq!(store.actor_response("other", "a").unwrap(), None);
    assert_eq!(store.actor_response("acme", "c").unwrap(), None);
    assert_eq!(store.conversation_customer("acme", 7).unwrap(), Some(70));
    assert_eq!(store.conversation_customer("other", 7).unwrap(), None);
    assert_eq!(store.conversation_customer("acme", u64::MAX).unwrap(), None);

    // A kept call (0xFE, 16 bytes naming the call, the answer) is replaced only by an answer
    // to the same call: another call's, written by an actor that could not look the id up,
    // leaves it; a body that is no kept call replaces as before.
    let kept = |call: u8, answer: &str| {
        let mut body = vec![Response::KEPT_CALL];
        body.extend([call; Response::CALL_LEN]);
        body.extend_from_slice(answer.as_bytes());
        Response { request_id: "k".into(), at_ms: 10_200, body }
    };
    let body = |r: Response| Some(r.body);
    store.append(step(vec![kept(1, "first")], vec![])).await.unwrap();
    store.append(step(vec![kept(2, "other call")], vec![])).await.unwrap();
    assert_eq!(store.actor_response("acme", "k").unwrap(), body(kept(1, "first")));
    store.append(step(vec![kept(1, "first, answered")], vec![])).await.unwrap();
    assert_eq!(store.actor_response("acme", "k").unwrap(), body(kept(1, "first, answered")));
    let plain = Response { request_id: "k".into(), at_ms: 10_200, body: b"plain".to_vec() };
    store.append(step(vec![plain], vec![])).await.unwrap();
    assert_eq!(store.actor_response("acme", "k").unwrap(), Some(b"plain".to_vec()));
    store.append(step(vec![kept(2, "other call")], vec![])).await.unwrap();
    assert_eq!(store.actor_response("acme", "k").unwrap(), Some(b"plain".to_vec()));

    // A refused batch (a duplicate transcript row) stores neither.
    store.append(Batch { messages: vec![message(1, 1)], ..command("acme", 1) }).await.unwrap();
    let refused = Batch {
        messages: vec![message(1, 1)],
        ..step(vec![response("d", 10_600, "lost")], vec![owner(9, 90)])
    };
    assert!(store.append(refused).await.is_err());
    assert_eq!(store.actor_response("acme", "d").unwrap(), None);
    assert_eq!(store.conversation_customer("acme", 9).unwrap(), None);

    drop(store);
    let store = B::open_with(&place, Duration::from_secs(1));
    assert_eq!(store.actor_response("acme", "b").unwrap(), Some(b"three".to_vec()));

    // Retention: responses older than the window before `now` go; owners stay until their
    // conversation's archive row is purged.
    store.retain("acme", Fence::default(), 11_200, 0).await.unwrap();
    assert_eq!(store.actor_response("acme", "a").unwrap(), None, "1.2 s old");
    assert_eq!(store.actor_response("acme", "b").unwrap(), Some(b"three".to_vec()));
    let ended = Batch { archive: vec![archived(7, "70", 100, 500)], ..step(vec![], vec![]) };
    store.append(ended).await.unwrap();
    store.retain("acme", Fence::default(), 11_400, 0).await.unwrap();
    assert_eq!(store.conversation_customer("acme", 7).unwrap(), None, "purged with its archive");
    assert_eq!(store.conversation_customer("acme", 8).unwrap(), Some(80));
    store.retain("acme", Fence::default(), 11_501, 0).await.unwrap();
    assert_eq!(store.actor_response("acme", "b").unwrap(), None);
}

/// An actor batch that fails (here fenced off) raises its tenant's generation, on either
/// store: the tenant's later batches under the old generation are refused, those under the
/// new one written, and other tenants go on.
async fn a_failed_actor_batch_raises_its_tenants_generation<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let row =
        ActorState { kind: "router".into(), key: String::new(), epoch: 1, body: Some(vec![1]) };
    let batch = |tenant: &str, epoch, generation| Batch {
        tenant: tenant.into(),
        fence: Fence { shard: 3, epoch },
        actors: vec![row.clone()],
        generation,
        ..Batch::default()
    };
    assert_eq!(store.generation("acme"), Some(0));
    store.raise_fence(Fence { shard: 3, epoch: 9 }).await.unwrap();
    let fenced = store.append(batch("acme", 8, Some(0))).await;
    assert!(matches!(fenced, Err(Error::Fenced { .. })), "{fenced:?}");
    assert_eq!(store.generation("acme"), Some(1));
    let stale = store.append(batch("acme", 9, Some(0))).await;
    assert!(matches!(stale, Err(Error::StaleGeneration { current: 1, .. })), "{stale:?}");
    store.append(batch("acme", 9, Some(1))).await.unwrap();
    store.append(batch("other", 9, Some(0))).await.unwrap();
    assert_eq!((store.generation("acme"), store.generation("other")), (Some(1), Some(0)));
}

/// Actors' durable state: upserted by (tenant, kind, key) with the batch it rides in,
/// deleted by a `None` body, refused with a refused batch, fenced like the rest, listed by
/// key, and durable across reopening.
async fn actor_state_upserts_deletes_and_survives_reopening<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let state = |kind: &str, key: &str, epoch, body: Option<&[u8]>| ActorState {
        kind: kind.into(),
        key: key.into(),
        epoch,
        body: body.map(<[u8]>::to_vec),
    };
    let first = vec![
        state("conversation", "7", 1, Some(b"seven")),
        state("conversation", "12", 1, Some(b"twelve")),
        state("router", "", 1, Some(b"router")),
    ];
    store.append(Batch { actors: first, ..command("acme", 1) }).await.unwrap();
    assert_eq!(
        store.actor("acme", "conversation", "7").unwrap(),
        Some(state("conversation", "7", 1, Some(b"seven")))
    );
    assert_eq!(store.actor("acme", "router", "7").unwrap(), None, "kinds are apart");
    assert_eq!(store.actor("other", "router", "").unwrap(), None, "tenants are apart");
    // An upsert replaces body and epoch; a delete goes; both in one batch with no log record.
    let next = vec![
        state("conversation", "7", 2, Some(b"seven again")),
        state("conversation", "12", 2, None),
    ];
    let batch = Batch { tenant: "acme".into(), actors: next, ..Batch::default() };
    store.append(batch).await.unwrap();
    assert_eq!(store.actor("acme", "conversation", "12").unwrap(), None);
    // Refused with its batch.
    let refused =
        Batch { actors: vec![state("conversation", "7", 3, Some(b"lost"))], ..command("acme", 1) };
    assert!(matches!(store.append(refused).await, Err(Error::DuplicateLogRecord { .. })));
    // Fenced like every write.
    let new = Fence { shard: 3, epoch: 9 };
    store.raise_fence(new).await.unwrap();
    let fenced = Batch {
        tenant: "acme".into(),
        fence: Fence { shard: 3, epoch: 8 },
        actors: vec![state("router", "", 3, Some(b"deposed"))],
        ..Batch::default()
    };
    assert!(matches!(store.append(fenced).await, Err(Error::Fenced { .. })));
    // Listed by key, in pages.
    let more: Vec<ActorState> =
        ["a", "b", "c"].iter().map(|k| state("conversation", k, 1, Some(b"x"))).collect();
    let batch = Batch { tenant: "acme".into(), fence: new, actors: more, ..Batch::default() };
    store.append(batch).await.unwrap();
    let keys = |after: &str| -> Vec<String> {
        store
            .list_actors("acme", "conversation", after, 2)
            .unwrap()
            .into_iter()
            .map(|a| a.key)
            .collect()
    };
    assert_eq!(keys(""), ["7", "a"]);
    assert_eq!(keys("a"), ["b", "c"]);
    assert_eq!(keys("c"), Vec::<String>::new());
    drop(store);
    let store = B::open(&place);
    assert_eq!(
        store.actor("acme", "conversation", "7").unwrap(),
        Some(state("conversation", "7", 2, Some(b"seven again")))
    );
    assert_eq!(
        store.actor("acme", "router", "").unwrap(),
        Some(state("router", "", 1, Some(b"router")))
    );
    assert_eq!(store.list_actors("acme", "conversation", "", 10).unwrap().len(), 4);
}

async fn fences_are_checked_in_queue_order_within_a_commit<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let old = Fence { shard: 7, epoch: 10 };
    let new = Fence { shard: 7, epoch: 12 };
    let with = |tenant, seq, fence| Batch { fence, ..command(tenant, seq) };
    store.append(with("a", 1, old)).await.unwrap();

    // As in the test above: these share a commit (or two), whatever the timing; outcomes are
    // those of checking each in its turn.
    let lock = B::hold_writes(&place);
    let blocker = store.append(command("c", 1));
    let before_raise = store.append(with("a", 2, old));
    let raise = store.raise_fence(new);
    let fenced = store.append(with("a", 3, old));
    let other = store.append(with("b", 1, new));
    // Pipelined by the same owner after its fenced batch: never written (each owner's
    // batches carry its own fence; a new owner loads what is durable first).
    let held_back = store.append(with("a", 4, old));
    let elsewhere = store.append(with("d", 1, Fence { shard: 8, epoch: 1 }));
    drop(lock);

    blocker.await.unwrap();
    before_raise.await.unwrap();
    raise.await.unwrap();
    let fenced = fenced.await;
    assert!(
        matches!(fenced, Err(Error::Fenced { shard: 7, epoch: 10, current: 12 })),
        "{fenced:?}"
    );
    other.await.unwrap();
    let held_back = held_back.await;
    assert!(
        matches!(held_back, Err(Error::EarlierBatchFailed { .. } | Error::Fenced { .. })),
        "{held_back:?}"
    );
    elsewhere.await.unwrap();

    let seqs = |tenant| store.load(tenant).unwrap().log.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(seqs("a"), vec![1, 2]);
    assert_eq!(seqs("b"), vec![1]);
    assert_eq!(seqs("d"), vec![1]);
    assert_eq!(store.read_stream("a", "events", 0, 100).unwrap().len(), 2, "nothing of seq 3");
    // Fenced jobs are refused before anything of them is written: no redo needed.
    assert_eq!(store.stats().redone_commits, 0, "{:?}", store.stats());
}

async fn a_log_record_answers_its_request_until_the_window_passes<B: Backend>() {
    let place = B::place();
    let store = B::open_with(&place, Duration::from_millis(1_000));
    let at = |seq: u64, at_ms: u64, request_id: Option<&str>| Batch {
        tenant: "acme".into(),
        log: vec![LogRecord {
            at_ms,
            request_id: request_id.map(str::to_owned),
            response: format!("response {seq}").into_bytes(),
            ..record(seq)
        }],
        ..Batch::default()
    };
    store.append(at(1, 10_000, Some("req-a"))).await.unwrap();
    store.append(at(2, 10_100, None)).await.unwrap();
    // An id reused (a client past the window would): the newest answer is the one found.
    store.append(at(3, 10_200, Some("req-a"))).await.unwrap();
    store.append(at(4, 10_300, Some("req-b"))).await.unwrap();
    assert_eq!(store.find_response("acme", "req-a").unwrap(), Some(b"response 3".to_vec()));

    // A snapshot replaces the records for loading, but those with a request id within the
    // window still answer.
    store.snapshot("acme", Fence::default(), 4, b"four".to_vec()).await.unwrap();
    assert_eq!(store.load("acme").unwrap().log, vec![]);
    assert_eq!(store.find_response("acme", "req-a").unwrap(), Some(b"response 3".to_vec()));
    assert_eq!(store.find_response("acme", "req-b").unwrap(), Some(b"response 4".to_vec()));

    // Retention at `now` drops those older than the window.
    store.retain("acme", Fence::default(), 11_250, 0).await.unwrap();
    assert_eq!(store.find_response("acme", "req-a").unwrap(), None, "1.05 s old");
    assert_eq!(store.find_response("acme", "req-b").unwrap(), Some(b"response 4".to_vec()));
    store.retain("acme", Fence::default(), 11_301, 0).await.unwrap();
    assert_eq!(store.find_response("acme", "req-b").unwrap(), None);

    // Records after the snapshot are the log: never dropped by age.
    store.append(at(5, 10_400, Some("req-c"))).await.unwrap();
    store.append(at(6, 10_500, None)).await.unwrap();
    store.retain("acme", Fence::default(), 99_999, 0).await.unwrap();
    let seqs: Vec<u64> = store.load("acme").unwrap().log.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, vec![5, 6]);
    assert_eq!(store.find_response("acme", "req-c").unwrap(), Some(b"response 5".to_vec()));

    // The next snapshot drops the record without a request id at once, and keeps the other
    // while it is within the window of the newest record.
    store.append(at(7, 11_000, Some("req-d"))).await.unwrap();
    store.snapshot("acme", Fence::default(), 7, b"seven".to_vec()).await.unwrap();
    assert_eq!(store.find_response("acme", "req-c").unwrap(), Some(b"response 5".to_vec()));
    assert_eq!(store.find_response("acme", "req-d").unwrap(), Some(b"response 7".to_vec()));
    store.append(at(8, 11_450, None)).await.unwrap();
    store.snapshot("acme", Fence::default(), 8, b"eight".to_vec()).await.unwrap();
    assert_eq!(store.find_response("acme", "req-c").unwrap(), None, "1.05 s before the newest");
    assert_eq!(store.find_response("acme", "req-d").unwrap(), Some(b"response 7".to_vec()));
    assert_eq!(
        store.load("acme").unwrap(),
        switchboard_store::Loaded { snapshot: Some((8, b"eight".to_vec())), log: vec![] }
    );
}

/// Searches walk a bounded window newest first and say where to resume: paging by the
/// resume point finds every match once, with or without a customer or time bounds, and a
/// lower opening bound ends the walk early.
async fn archive_scans_are_bounded_and_resume_without_gaps<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    // Conversation n opened at 1000 + 10 n and ended at 100_000 + n; customers take turns.
    let customers = ["carol", "dave", "erin"];
    let all: Vec<Archived> = (1..=30)
        .map(|n| {
            let mut a = archived(n, customers[(n % 3) as usize], 1_000 + 10 * n, 1_000_000);
            a.ended_at_ms = 100_000 + n;
            a
        })
        .collect();
    store.append(Batch { tenant: "acme".into(), archive: all, ..Batch::default() }).await.unwrap();
    let walk = |scan: ArchiveScan| -> (Vec<u64>, usize) {
        let (mut found, mut calls, mut before) = (Vec::new(), 0, u64::MAX);
        loop {
            let w = store
                .scan_archived("acme", &ArchiveScan { before_conversation: before, ..scan.clone() })
                .unwrap();
            calls += 1;
            assert!(w.rows.len() <= scan.limit && w.rows.len() <= scan.window, "{w:?}");
            found.extend(w.rows.iter().map(|a| a.conversation));
            match w.resume_before {
                Some(next) => before = next,
                None => return (found, calls),
            }
            assert!(calls < 100, "the walk ends");
        }
    };
    let scan = ArchiveScan { window: 4, limit: 100, ..ArchiveScan::default() };
    let (ids, calls) = walk(scan.clone());
    assert_eq!(ids, (1..=30).rev().collect::<Vec<_>>());
    assert_eq!(calls, 8, "30 rows in windows of 4");
    let (ids, _) = walk(ArchiveScan { limit: 3, ..scan.clone() });
    assert_eq!(ids, (1..=30).rev().collect::<Vec<_>>(), "short limits page inside windows");

    let dave = ArchiveScan { customer: Some("dave".into()), ..scan.clone() };
    assert_eq!(walk(dave).0, vec![28, 25, 22, 19, 16, 13, 10, 7, 4, 1]);
    let ended = ArchiveScan {
        ended_from_ms: Some(100_010),
        ended_before_ms: Some(100_013),
        ..scan.clone()
    };
    assert_eq!(walk(ended).0, vec![12, 11, 10]);
    // Opened at or after 1250 (n >= 25): the walk stops at the first window below it.
    let recent = ArchiveScan { opened_from_ms: Some(1_250), ..scan.clone() };
    let (ids, calls) = walk(recent);
    assert_eq!(ids, vec![30, 29, 28, 27, 26, 25]);
    assert_eq!(calls, 2, "no window read below the bound");
    let early = ArchiveScan { opened_before_ms: Some(1_030), ..scan };
    assert_eq!(walk(early).0, vec![2, 1]);

    // Customers by id, from after a position.
    let records: Vec<CustomerRecord> = ["u1", "u2", "u3"]
        .iter()
        .map(|c| CustomerRecord {
            customer: (*c).into(),
            body: c.as_bytes().to_vec(),
            contact: Contact { phone: format!("138{c}"), ..Contact::default() },
        })
        .collect();
    let batch = Batch { tenant: "acme".into(), customers: records.clone(), ..Batch::default() };
    store.append(batch).await.unwrap();
    assert_eq!(store.scan_customers("acme", "", 2).unwrap(), records[..2].to_vec());
    assert_eq!(store.scan_customers("acme", "u2", 2).unwrap(), records[2..].to_vec());
    assert_eq!(store.scan_customers("other", "", 2).unwrap(), vec![]);

    // By contact data: the field's index, from after a position; a later upsert moves the
    // customer in the index, and an empty field is in none.
    let phone = |value: &str, after: &str| -> Vec<String> {
        let found = store.find_customers("acme", ContactField::Phone, value, after, 10).unwrap();
        found.into_iter().map(|r| r.customer).collect()
    };
    assert_eq!(phone("138u2", ""), vec!["u2"]);
    assert_eq!(phone("138u2", "u2"), Vec::<String>::new());
    let moved = CustomerRecord {
        customer: "u2".into(),
        body: b"u2 again".to_vec(),
        contact: Contact {
            remark_name: "VIP".into(),
            phone: "138u1".into(),
            email: "u2@example.com".into(),
        },
    };
    let batch = Batch { tenant: "acme".into(), customers: vec![moved.clone()], ..Batch::default() };
    store.append(batch).await.unwrap();
    assert_eq!(phone("138u1", ""), vec!["u1", "u2"]);
    assert_eq!(phone("138u2", ""), Vec::<String>::new());
    let by = |field, value: &str| store.find_customers("acme", field, value, "", 10).unwrap();
    assert_eq!(by(ContactField::Email, "u2@example.com"), vec![moved.clone()]);
    assert_eq!(by(ContactField::RemarkName, "VIP"), vec![moved]);
    assert_eq!(by(ContactField::Email, ""), vec![], "empty fields are not indexed");
}

/// Keys of one kind's actors in a range, read without their bodies, bounded above when
/// asked and in pages (a short key sorts inside a range of 16-digit ones: callers filter);
/// and the tenants that have actor rows, by a skip scan, in pages: none without a row.
async fn actor_keys_walk_a_range_and_actor_tenants_skip_from_tenant_to_tenant<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let row = |kind: &str, key: &str, body: Option<&[u8]>| ActorState {
        kind: kind.into(),
        key: key.into(),
        epoch: 1,
        body: body.map(<[u8]>::to_vec),
    };
    let conversations = ["4503599627370497", "4503599627370498", "4503668346847232", "45036", "9"];
    let mut actors: Vec<ActorState> =
        conversations.iter().map(|k| row("conversation", k, Some(b"c"))).collect();
    actors.push(row("router", "", Some(b"r")));
    actors.push(row("agent", "3", Some(b"a")));
    store.append(Batch { tenant: "acme".into(), actors, ..Batch::default() }).await.unwrap();
    for tenant in ["b", "d"] {
        let actors = vec![row("conversation", "1", Some(b"c"))];
        store.append(Batch { tenant: tenant.into(), actors, ..Batch::default() }).await.unwrap();
    }
    store.append(command("c", 1)).await.unwrap();

    let keys = |after: &str, until: Option<&str>, limit| {
        store.actor_keys("acme", "conversation", after, until, limit).unwrap()
    };
    let (below, top) = ("4503599627370495", Some("4503668346847231"));
    assert_eq!(keys(below, top, 10), ["4503599627370497", "4503599627370498", "45036"]);
    assert_eq!(keys(below, top, 2), ["4503599627370497", "4503599627370498"]);
    assert_eq!(keys("4503599627370498", top, 2), ["45036"]);
    assert_eq!(keys("45036", top, 2), Vec::<String>::new());
    assert_eq!(keys("45036", None, 10), ["4503668346847232", "9"]);
    assert_eq!(keys("", None, 10).len(), 5, "every conversation key");
    assert_eq!(store.actor_keys("acme", "agent", "", None, 10).unwrap(), ["3"], "kinds apart");
    assert_eq!(store.actor_keys("b", "conversation", "", None, 10).unwrap(), ["1"]);

    assert_eq!(store.actor_tenants("", 10).unwrap(), ["acme", "b", "d"], "not c: no actor");
    assert_eq!(store.actor_tenants("", 2).unwrap(), ["acme", "b"]);
    assert_eq!(store.actor_tenants("b", 2).unwrap(), ["d"]);
    assert_eq!(store.actor_tenants("d", 2).unwrap(), Vec::<String>::new());
    assert_eq!(store.actor_tenants("", 0).unwrap(), Vec::<String>::new());
    // A tenant whose last actor row goes is no longer listed.
    let gone = vec![row("conversation", "1", None)];
    store.append(Batch { tenant: "b".into(), actors: gone, ..Batch::default() }).await.unwrap();
    assert_eq!(store.actor_tenants("", 10).unwrap(), ["acme", "d"]);
}

/// A tenant exists from its first log record on, and still once a snapshot replaced every
/// log record (or with only a snapshot); nothing of another kind makes one.
async fn a_tenant_exists_by_its_log_or_its_snapshot<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    assert!(!store.tenant_exists("acme").unwrap());
    let actor_only = Batch {
        tenant: "ghost".into(),
        actors: vec![ActorState {
            kind: "router".into(),
            key: String::new(),
            epoch: 1,
            body: Some(b"x".to_vec()),
        }],
        ..Batch::default()
    };
    store.append(actor_only).await.unwrap();
    assert!(!store.tenant_exists("ghost").unwrap(), "an actor row alone is not a tenant");
    store.append(command("acme", 1)).await.unwrap();
    assert!(store.tenant_exists("acme").unwrap());
    store.snapshot("acme", Fence::default(), 1, b"state at 1".to_vec()).await.unwrap();
    assert_eq!(store.load("acme").unwrap().log, vec![]);
    assert!(store.tenant_exists("acme").unwrap(), "a snapshot without log records");
    store.snapshot("quiet", Fence::default(), 0, b"empty".to_vec()).await.unwrap();
    assert!(store.tenant_exists("quiet").unwrap());
    assert!(!store.tenant_exists("acm").unwrap(), "no prefix match");
    assert!(!store.tenant_exists("").unwrap());
}

/// Batches that share one commit touch the same keys: each ends as writing the batches one
/// after another would leave it (PostgreSQL writes such a run's rows in one statement, so this
/// is where "the last upsert wins", "a delete then a write" and "a purge between messages"
/// are settled), and nothing needed the one-batch-at-a-time redo.
async fn batches_of_one_commit_settle_as_if_written_in_turn<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    store.append(command("acme", 1)).await.unwrap();
    let actor = |key: &str, epoch, body: Option<&[u8]>| ActorState {
        kind: "conversation".into(),
        key: key.into(),
        epoch,
        body: body.map(<[u8]>::to_vec),
    };
    let customer = |body: &[u8]| switchboard_store::CustomerRecord {
        customer: "u1".into(),
        body: body.to_vec(),
        contact: Contact { phone: String::from_utf8_lossy(body).into(), ..Contact::default() },
    };
    let response = |id: &str, body: &[u8]| Response {
        request_id: id.into(),
        at_ms: 1_000,
        body: body.to_vec(),
    };
    let owner = |customer| ConversationOwner { conversation: 40, customer };
    let step = |seq, messages| Batch { messages, ..command("acme", seq) };
    // An answer that names its call (`Response::replaces`).
    let kept = |call: u8, answer: &str| {
        let mut body = vec![Response::KEPT_CALL];
        body.extend([call; Response::CALL_LEN]);
        body.extend_from_slice(answer.as_bytes());
        Response { request_id: "k".into(), at_ms: 1_000, body }
    };

    let lock = B::hold_writes(&place);
    let blocker = store.append(command("blocker", 1));
    let first = store.append(Batch {
        actors: vec![
            actor("x", 1, Some(b"x1")),
            actor("y", 1, Some(b"y1")),
            actor("z", 1, Some(b"z1")),
        ],
        archive: vec![archived(5, "carol", 100, 9_000)],
        customers: vec![customer(b"one")],
        responses: vec![response("r", b"first"), kept(1, "first")],
        owners: vec![owner(1)],
        ..step(2, vec![message(9, 1), message(9, 2)])
    });
    let second = store.append(Batch {
        actors: vec![actor("x", 2, None), actor("y", 2, Some(b"y2")), actor("z", 2, None)],
        archive: vec![archived(5, "carol-2", 101, 9_001)],
        customers: vec![customer(b"two")],
        responses: vec![response("r", b"second"), kept(2, "another call")],
        owners: vec![owner(2)],
        ..step(3, vec![])
    });
    let purge = store.append(Batch {
        tenant: "acme".into(),
        purge_conversations: vec![9],
        ..Batch::default()
    });
    let third = store
        .append(Batch { actors: vec![actor("x", 3, Some(b"x3"))], ..step(4, vec![message(9, 3)]) });
    drop(lock);
    for pending in [blocker, first, second, purge, third] {
        pending.await.unwrap();
    }

    assert_eq!(store.actor("acme", "conversation", "x").unwrap(), Some(actor("x", 3, Some(b"x3"))));
    assert_eq!(store.actor("acme", "conversation", "y").unwrap(), Some(actor("y", 2, Some(b"y2"))));
    assert_eq!(store.actor("acme", "conversation", "z").unwrap(), None);
    assert_eq!(store.archived("acme", 5).unwrap(), Some(archived(5, "carol-2", 101, 9_001)));
    assert_eq!(store.customer("acme", "u1").unwrap(), Some(b"two".to_vec()));
    // A response written again replaces the first (only the actor that applied a request
    // writes it again: a response it held for the router's answer); owners keep the first.
    assert_eq!(store.actor_response("acme", "r").unwrap(), Some(b"second".to_vec()));
    // Except an answer of another call under a kept call's id.
    assert_eq!(store.actor_response("acme", "k").unwrap(), Some(kept(1, "first").body));
    assert_eq!(store.conversation_customer("acme", 40).unwrap(), Some(1));
    // The purge took the messages before it, not the one after.
    assert_eq!(store.messages("acme", 9, 0, 100).unwrap(), vec![message(9, 3)]);
    let seqs: Vec<u64> = store.load("acme").unwrap().log.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    let events = store.read_stream("acme", "events", 0, 100).unwrap();
    assert_eq!(events, [1, 2, 3, 4].map(|seq| entry("events", seq)));
    assert_eq!(store.stats().redone_commits, 0, "{:?}", store.stats());
}

// Every test above, once per backend.
both!(
    append_then_read_everything_back,
    usable_as_a_trait_object,
    snapshot_replaces_the_log_records_up_to_it,
    snapshot_prunes_responses_older_than_the_window,
    purge_deletes_transcripts_of_those_conversations_only,
    purge_in_the_same_batch_wins_over_messages,
    concurrent_appends_share_commits,
    everything_survives_reopening,
    a_duplicate_is_refused_whole,
    trim_keeps_the_newest_entries,
    ids_use_the_whole_u64_range_and_sequences_are_bounded,
    two_stores_on_one_place_serialise_their_writes,
    a_refused_batch_fails_alone_and_holds_back_its_tenant,
    a_newer_epoch_fences_off_the_older_writer,
    archive_upserts_by_conversation_and_reads_back,
    customer_records_upsert_and_read_back,
    archive_listings_filter_and_page,
    archive_scans_are_bounded_and_resume_without_gaps,
    retain_deletes_exactly_what_is_due,
    retain_is_fenced,
    a_version_1_database_is_migrated,
    fences_are_checked_in_queue_order_within_a_commit,
    a_log_record_answers_its_request_until_the_window_passes,
    actor_state_upserts_deletes_and_survives_reopening,
    a_failed_actor_batch_raises_its_tenants_generation,
    actor_keys_walk_a_range_and_actor_tenants_skip_from_tenant_to_tenant,
    actor_responses_and_conversation_owners_are_kept_then_retained,
    a_tenant_exists_by_its_log_or_its_snapshot,
    batches_of_one_commit_settle_as_if_written_in_turn,
);
