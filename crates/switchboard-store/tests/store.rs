//! The store's contract, against each backend: real SQLite in a temporary directory, and a
//! real PostgreSQL server (one per test binary, started by `switchboard_store::testing`) with
//! a fresh database per test. Every test body is written once, generic over the backend, and
//! instantiated in `mod sqlite` and `mod postgres` at the bottom.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, command, entry, message, record};
use switchboard_store::{Batch, Error, Fence, LogRecord, Store};

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

    // The writer takes the blocker and waits on the lock; the next three queue meanwhile and
    // so share the following commit, whatever the timing.
    let lock = B::hold_writes(&place);
    let blocker = store.append(command("c", 1));
    let dup = store.append(command("a", 1));
    let other = store.append(command("b", 1));
    let after = store.append(command("a", 2));
    drop(lock);

    blocker.await.unwrap();
    let dup = dup.await;
    assert!(matches!(dup, Err(Error::DuplicateLogRecord { seq: 1, .. })), "{dup:?}");
    other.await.unwrap();
    let after = after.await;
    assert!(matches!(after, Err(Error::EarlierBatchFailed { .. })), "{after:?}");

    let seqs = |tenant| store.load(tenant).unwrap().log.iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(seqs("a"), vec![1]);
    assert_eq!(seqs("b"), vec![1]);
    assert_eq!(store.read_stream("a", "events", 0, 100).unwrap(), vec![entry("events", 1)]);
    let stats = store.stats();
    assert_eq!((stats.batches, stats.rejected_batches), (3, 2), "{stats:?}");
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

/// Every test above, once per backend.
macro_rules! suite {
    ($backend:ident: $($test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                super::$test::<crate::common::$backend>().await;
            }
        )*
    };
}

macro_rules! both {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            suite!(Sqlite: $($test),*);
        }
        mod postgres {
            suite!(Postgres: $($test),*);
        }
    };
}

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
);
