//! Shared streams: positions assigned by the store at commit (`Batch::appends`), against each
//! backend, and on PostgreSQL with two stores (two nodes' writers) appending to one stream
//! while a third reads it.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, command, entry, open_pg, record};
use switchboard_store::testing::PgServer;
use switchboard_store::{Append, Batch, Error, Fence, LogRecord, Store};

fn append(stream: &str, text: &str) -> Append {
    Append {
        stream: stream.into(),
        at_ms: 1_000,
        payload: text.as_bytes().to_vec(),
        conversation: None,
    }
}

/// A batch of `tenant` carrying only appends, as a conversation actor's reply would.
fn appends(tenant: &str, appends: Vec<Append>) -> Batch {
    Batch { tenant: tenant.into(), appends, ..Batch::default() }
}

fn payloads(store: &dyn Store, tenant: &str, stream: &str) -> Vec<(u64, String)> {
    store
        .read_stream(tenant, stream, 0, 1_000)
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, String::from_utf8(e.payload).unwrap()))
        .collect()
}

/// Positions count from 1 per (tenant, stream), in batch order within a batch, and the
/// writer learns them; a batch may carry a log record, numbered entries of another stream
/// and appends together.
async fn positions_are_assigned_per_stream_in_order<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let first = store
        .append_assigned(appends(
            "acme",
            vec![append("outbox", "a"), append("notices", "x"), append("outbox", "b")],
        ))
        .await
        .unwrap();
    assert_eq!(first, vec![1, 1, 2]);
    let with_command = Batch { appends: vec![append("outbox", "c")], ..command("acme", 1) };
    assert_eq!(store.append_assigned(with_command).await.unwrap(), vec![3]);
    // Another tenant's stream of the same name is its own.
    assert_eq!(
        store.append_assigned(appends("other", vec![append("outbox", "z")])).await.unwrap(),
        vec![1]
    );
    // `append` writes them too, without saying where.
    store.append(appends("acme", vec![append("outbox", "d")])).await.unwrap();
    assert_eq!(
        payloads(&*store, "acme", "outbox"),
        vec![(1, "a".into()), (2, "b".into()), (3, "c".into()), (4, "d".into())]
    );
    assert_eq!(payloads(&*store, "acme", "notices"), vec![(1, "x".into())]);
    assert_eq!(payloads(&*store, "acme", "events"), vec![(1, "events 1".into())], "numbered");
    assert_eq!(store.last_stream_seq("acme", "outbox").unwrap(), Some(4));
    // Positions survive reopening (the head is stored, not recounted).
    drop(store);
    let store = B::open(&place);
    assert_eq!(
        store.append_assigned(appends("acme", vec![append("outbox", "e")])).await.unwrap(),
        vec![5]
    );
}

/// A refused batch (a duplicate log record, which sends its commit down the slow path; a
/// fenced one) takes no position: the next batch's follows the last written one, whether or
/// not they shared a commit.
async fn a_refused_batch_takes_no_position<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    // Queue everything while the writer is held, so it lands in one or two commits.
    let lock = B::hold_writes(&place);
    let with_log = |seq: u64, text: &str| Batch {
        tenant: "acme".into(),
        log: vec![record(seq)],
        appends: vec![append("outbox", text)],
        ..Batch::default()
    };
    let first = store.append_assigned(with_log(1, "a"));
    let duplicate = store.append_assigned(with_log(1, "dup"));
    let next = store.append_assigned(with_log(2, "b"));
    drop(lock);
    assert_eq!(first.await.unwrap(), vec![1]);
    let duplicate = duplicate.await;
    assert!(matches!(duplicate, Err(Error::DuplicateLogRecord { seq: 1, .. })), "{duplicate:?}");
    assert_eq!(next.await.unwrap(), vec![2]);

    store.raise_fence(Fence { shard: 3, epoch: 9 }).await.unwrap();
    let fenced = Batch {
        fence: Fence { shard: 3, epoch: 8 },
        ..appends("acme", vec![append("outbox", "old")])
    };
    let fenced = store.append_assigned(fenced).await;
    assert!(matches!(fenced, Err(Error::Fenced { .. })), "{fenced:?}");
    let owner = Batch {
        fence: Fence { shard: 3, epoch: 9 },
        ..appends("acme", vec![append("outbox", "c")])
    };
    assert_eq!(store.append_assigned(owner).await.unwrap(), vec![3]);
    assert_eq!(
        payloads(&*store, "acme", "outbox"),
        vec![(1, "a".into()), (2, "b".into()), (3, "c".into())]
    );
}

/// Trimming or retention deletes entries, never a position: the next append goes on after the
/// last one given, so a reader's cursor never meets a reused number. Also for a store opened
/// afterwards, which reads the head from the database (a writer keeps the heads it wrote).
async fn trimming_never_reuses_a_position<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    for text in ["a", "b", "c"] {
        store.append_assigned(appends("acme", vec![append("outbox", text)])).await.unwrap();
    }
    let next = |store: &dyn Store, text: &'static str| {
        store.append_assigned(appends("acme", vec![append("outbox", text)]))
    };
    drop(store);
    let store = B::open(&place);
    assert_eq!(next(&*store, "d").await.unwrap(), vec![4], "after the last entry");
    store.trim_stream("acme", "outbox", 1).await.unwrap();
    drop(store);
    let store = B::open(&place);
    assert_eq!(next(&*store, "e").await.unwrap(), vec![5], "after a trim that kept the last");
    store.trim_stream("acme", "outbox", 0).await.unwrap();
    assert_eq!(payloads(&*store, "acme", "outbox"), vec![]);
    assert_eq!(next(&*store, "f").await.unwrap(), vec![6], "after a trim of everything");
    store.trim_stream("acme", "outbox", 0).await.unwrap();
    drop(store);
    let store = B::open(&place);
    assert_eq!(next(&*store, "g").await.unwrap(), vec![7], "the same, read from the database");
    store.retain("acme", Fence::default(), 0, u64::MAX).await.unwrap();
    assert_eq!(payloads(&*store, "acme", "outbox"), vec![]);
    assert_eq!(next(&*store, "h").await.unwrap(), vec![8], "after retention of everything");
    store.retain("acme", Fence::default(), 0, u64::MAX).await.unwrap();
    drop(store);
    let store = B::open(&place);
    assert_eq!(next(&*store, "i").await.unwrap(), vec![9], "the same, read from the database");
}

/// A single-writer stream turns shared at its first store-assigned append, numbering on after
/// its last entry (its readers' cursors stay valid); a numbered entry written to it after that
/// makes the next append that meets it refused, as a mixed stream, and nothing of that batch
/// is written.
async fn a_stream_turns_shared_once_and_refuses_mixing<B: Backend>() {
    let place = B::place();
    let store = B::open(&place);
    let numbered = |seq| Batch {
        tenant: "acme".into(),
        streams: vec![entry("outbox", seq)],
        ..Batch::default()
    };
    for seq in 1..=3 {
        store.append(numbered(seq)).await.unwrap();
    }
    assert_eq!(
        store.append_assigned(appends("acme", vec![append("outbox", "shared")])).await.unwrap(),
        vec![4]
    );
    // Not checked on the way in (that would cost every command a lookup)...
    store.append(numbered(5)).await.unwrap();
    // ...but the append that meets it is refused whole.
    let mixed = Batch {
        log: vec![LogRecord { seq: 1, ..record(1) }],
        ..appends("acme", vec![append("outbox", "meets 5")])
    };
    let mixed = store.append_assigned(mixed).await;
    assert!(
        matches!(&mixed, Err(Error::MixedStream { seq: 5, stream, .. }) if stream == "outbox"),
        "{mixed:?}"
    );
    assert_eq!(store.load("acme").unwrap().log, vec![], "nothing of the refused batch");
}

/// A database of version 1 comes up with the heads table.
async fn an_old_database_gains_stream_heads<B: Backend>() {
    let place = B::place();
    B::execute(&place, B::SCHEMA_V1);
    let store = B::open(&place);
    assert_eq!(
        store.append_assigned(appends("acme", vec![append("outbox", "a")])).await.unwrap(),
        vec![1]
    );
}

both!(
    positions_are_assigned_per_stream_in_order,
    a_refused_batch_takes_no_position,
    trimming_never_reuses_a_position,
    a_stream_turns_shared_once_and_refuses_mixing,
    an_old_database_gains_stream_heads,
);

/// Two stores over one PostgreSQL database (two nodes' writers, each its own connection and
/// group commit, on different shards so only the stream's head orders them) append to one
/// stream concurrently, each pipelining, while a reader on a third store follows the stream by
/// cursor as a node's reader does. The reader sees positions 1..=n exactly, each once; what it
/// read up to a cursor never later gains an entry (it would be missing from what it read);
/// each writer's own entries keep their order; and every writer learned the positions the
/// reader saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_two_stores_number_one_stream_in_commit_order() {
    two_writers([1, 2], None, [&["outbox"], &["outbox"]]).await;
}

/// As above, each batch appending to two streams, the two writers naming them in opposite
/// orders: a commit takes its heads in one order whatever its batches say (ascending, after
/// the fences), so neither writer waits on the other crosswise, and both streams are numbered
/// in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_appending_to_two_streams_in_opposite_orders_neither_deadlock() {
    two_writers([1, 2], None, [&["outbox", "events"], &["events", "outbox"]]).await;
}

/// As above, on one shard, one writer's every 5th batch refused (a duplicate log record):
/// its commits go the slow way (a savepoint per batch) while the other writer's go straight,
/// and both lock the shard's fence and the stream's head in the same order, so neither waits
/// on the other crosswise (a deadlock would fail a whole commit). Refused batches take no
/// position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_on_one_writer_neither_deadlock_nor_leave_gaps() {
    two_writers([1, 1], Some(5), [&["outbox"], &["outbox"]]).await;
}

async fn two_writers(shards: [u32; 2], refuse_every: Option<usize>, streams: [&[&str]; 2]) {
    const PER_WRITER: usize = 400;
    const IN_FLIGHT: usize = 8;
    let url = common::blocking(|| PgServer::shared().database());
    let writers: Vec<Arc<dyn Store>> =
        (0..2).map(|_| Arc::new(open_pg(&url)) as Arc<dyn Store>).collect();
    let reader: Arc<dyn Store> = Arc::new(open_pg(&url));
    // The log record a refused batch repeats.
    let seed = Batch { tenant: "acme".into(), log: vec![record(1)], ..Batch::default() };
    writers[0].append(seed).await.unwrap();
    let refused = move |w: usize, i: usize| w == 0 && refuse_every.is_some_and(|k| i % k == k - 1);
    let names = |w: usize| streams[w].iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let tasks: Vec<_> = writers
        .iter()
        .enumerate()
        .map(|(w, store)| {
            let store = Arc::clone(store);
            let names = names(w);
            tokio::spawn(async move {
                let fence = Fence { shard: shards[w], epoch: 0 };
                let mut pending = std::collections::VecDeque::new();
                // Per stream (by name), the positions this writer learned, in order.
                let mut assigned: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
                let mut settle = |i: usize, outcome: Result<Vec<u64>, Error>| match outcome {
                    Ok(positions) if !refused(w, i) => {
                        for (name, position) in names.iter().zip(positions) {
                            assigned.entry(name.clone()).or_default().push(position);
                        }
                    }
                    Err(Error::DuplicateLogRecord { .. }) if refused(w, i) => {}
                    other => panic!("writer {w} batch {i}: {other:?}"),
                };
                for i in 0..PER_WRITER {
                    let text = format!("{w}:{i}");
                    let batch_appends = names.iter().map(|name| append(name, &text)).collect();
                    let mut batch = Batch { fence, ..appends("acme", batch_appends) };
                    if refused(w, i) {
                        batch.log = vec![record(1)];
                    }
                    pending.push_back((i, store.append_assigned(batch)));
                    if pending.len() == IN_FLIGHT {
                        let (i, p) = pending.pop_front().unwrap();
                        settle(i, p.await);
                    }
                }
                for (i, p) in pending {
                    settle(i, p.await);
                }
                assigned
            })
        })
        .collect();

    let kept = |w: usize| (0..PER_WRITER).filter(|&i| !refused(w, i)).collect::<Vec<_>>();
    // Every stream some writer appends to, and how many entries it gets.
    let mut totals: std::collections::BTreeMap<String, u64> = Default::default();
    for w in 0..2 {
        for name in names(w) {
            *totals.entry(name).or_default() += kept(w).len() as u64;
        }
    }
    // Set once every writer has finished (or failed): the readers then stop at the end.
    let written = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let follows: Vec<_> = totals
        .iter()
        .map(|(stream, &total)| {
            let (reader, written) = (Arc::clone(&reader), Arc::clone(&written));
            let stream = stream.clone();
            tokio::task::spawn_blocking(move || {
                let mut seen: Vec<(u64, String)> = Vec::new();
                let mut cursor = 0;
                while cursor < total {
                    let done = written.load(std::sync::atomic::Ordering::SeqCst);
                    let page = reader.read_stream("acme", &stream, cursor, 50).unwrap();
                    if page.is_empty() {
                        if done {
                            break; // what the writers wrote is all there is
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    for e in page {
                        cursor = e.seq;
                        seen.push((e.seq, String::from_utf8(e.payload).unwrap()));
                    }
                }
                (stream, total, seen)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await);
    }
    written.store(true, std::sync::atomic::Ordering::SeqCst);
    let learned: Vec<_> = outcomes.into_iter().map(Result::unwrap).collect();

    for follow in follows {
        let (stream, total, seen) = follow.await.unwrap();
        let positions: Vec<u64> = seen.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(positions, (1..=total).collect::<Vec<_>>(), "{stream}: gap-free, each once");
        for (w, learned) in learned.iter().enumerate() {
            if !names(w).contains(&stream) {
                continue;
            }
            let mine: Vec<(u64, usize)> = seen
                .iter()
                .filter_map(|(seq, text)| {
                    let (writer, i) = text.split_once(':').unwrap();
                    (writer == w.to_string()).then(|| (*seq, i.parse().unwrap()))
                })
                .collect();
            let order: Vec<usize> = mine.iter().map(|&(_, i)| i).collect();
            assert_eq!(order, kept(w), "{stream}: writer {w} keeps its order, refused left out");
            let at: Vec<u64> = mine.iter().map(|&(seq, _)| seq).collect();
            assert_eq!(
                &at, &learned[&stream],
                "{stream}: writer {w} learned where its entries landed"
            );
        }
    }
}

/// Runs `statement` in a transaction of a session of its own and holds the transaction open
/// (its locks held) until told to commit; returns once the statement ran. The thread answers
/// whether the commit failed. A synchronous client: on a thread of its own, never on the
/// runtime.
fn hold_open(
    url: &str,
    statement: &'static str,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<bool>) {
    let (locked_tx, locked) = std::sync::mpsc::channel();
    let (commit, commit_rx) = std::sync::mpsc::channel::<()>();
    let url = url.to_owned();
    let session = std::thread::spawn(move || {
        let mut session = switchboard_store::testing::store_session(&url).unwrap();
        let mut tx = session.transaction().unwrap();
        tx.execute(statement, &[]).unwrap();
        locked_tx.send(()).unwrap();
        commit_rx.recv().unwrap();
        tx.commit().is_err()
    });
    locked.recv().unwrap();
    (commit, session)
}

/// A writer stalled in the middle of a commit (a node paused while its transaction holds its
/// shard's fence row) does not hold the new owner up for as long as it stays stalled: the
/// server ends a store session idle inside a transaction after
/// `postgres::IDLE_IN_TRANSACTION`, so the new owner's fence raise goes through, and the
/// stalled session's commit fails. (Without it this raise waits until the test's bound.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_stalled_inside_a_commit_does_not_block_the_next_owners_fence() {
    let url = common::blocking(|| PgServer::shared().database());
    let store = common::blocking(|| open_pg(&url));
    store.raise_fence(Fence { shard: 3, epoch: 1 }).await.unwrap();
    let (finish, stalled) =
        hold_open(&url, "UPDATE shard_fences SET epoch = epoch WHERE shard = 3");

    let raise = store.raise_fence(Fence { shard: 3, epoch: 2 });
    let raised = tokio::time::timeout(Duration::from_secs(120), raise).await;
    assert!(raised.is_ok(), "the raise waited for the stalled session's lock");
    raised.unwrap().unwrap();
    finish.send(()).unwrap();
    assert!(stalled.join().unwrap(), "the server ended the stalled session: its commit fails");
}

/// A writer's group that raises no fence share-locks its shards' fence rows
/// (`pg_rows::SHARE_FENCES`). A new owner's raise in flight (its row locked, not committed)
/// makes the writer wait, and once the raise commits the writer checks against the raised
/// epoch: the old owner's batch is refused, never written beside the new owner's. The other
/// way round, a group that share-locked first holds the raise off until it commits, which
/// `a_session_stalled_inside_a_commit_does_not_block_the_next_owners_fence` relies on too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raise_in_flight_is_waited_for_and_then_fences_the_old_owner_off() {
    let url = common::blocking(|| PgServer::shared().database());
    let store = Arc::new(common::blocking(|| open_pg(&url)));
    let (old, new) = (Fence { shard: 9, epoch: 1 }, Fence { shard: 9, epoch: 5 });
    store.raise_fence(old).await.unwrap();
    store.append(Batch { fence: old, ..command("acme", 1) }).await.unwrap();

    // The new owner's raise, held open.
    let (commit, raiser) = hold_open(&url, "UPDATE shard_fences SET epoch = 5 WHERE shard = 9");
    let written = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.append(Batch { fence: old, ..command("acme", 2) }).await }
    });
    // The writer's session waits on the raise's row lock (polled: no timing assumed).
    let waiting = common::blocking(move || {
        let mut watcher = switchboard_store::testing::store_session(&url).unwrap();
        for _ in 0..6_000 {
            let row = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .unwrap();
            if row.get::<_, i64>(0) > 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    });
    assert!(waiting, "the writer never waited for the raise's lock");
    commit.send(()).unwrap();
    assert!(!raiser.join().unwrap(), "the raise committed");
    let refused = written.await.unwrap();
    assert!(
        matches!(refused, Err(Error::Fenced { shard: 9, epoch: 1, current: 5 })),
        "{refused:?}"
    );
    store.append(Batch { fence: new, ..command("acme", 2) }).await.unwrap();
    let seqs: Vec<u64> = store.load("acme").unwrap().log.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2]);
}

/// A group over more shards than one share-locking call takes (four) checks every shard's
/// fence: queued together, seven batches under seven shards' current epochs are written, and
/// one under a shard's superseded epoch is refused among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_over_many_shards_checks_every_fence() {
    let url = common::blocking(|| PgServer::shared().database());
    let store = common::blocking(|| open_pg(&url));
    for shard in 20..28 {
        store.raise_fence(Fence { shard, epoch: 3 }).await.unwrap();
    }
    store.raise_fence(Fence { shard: 25, epoch: 4 }).await.unwrap();
    let tenant = |shard: u32| format!("t{shard}");
    // Queued as they are made, so the writer finds them together.
    let queued: Vec<_> = (20..28)
        .map(|shard| {
            store.append(Batch { fence: Fence { shard, epoch: 3 }, ..command(&tenant(shard), 1) })
        })
        .collect();
    for (shard, pending) in (20..28).zip(queued) {
        let result = pending.await;
        if shard == 25 {
            assert!(
                matches!(result, Err(Error::Fenced { shard: 25, epoch: 3, current: 4 })),
                "{result:?}"
            );
        } else {
            result.unwrap();
            assert_eq!(store.load(&tenant(shard)).unwrap().log.len(), 1, "shard {shard}");
        }
    }
}

/// A commit appending to many shared streams, some of them new (no head row yet) and some
/// repeated within the batch, numbers each stream on from its own head, and again once every
/// head exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_over_many_shared_streams_numbers_each_on() {
    let url = common::blocking(|| PgServer::shared().database());
    let store = common::blocking(|| open_pg(&url));
    let names = ["s1", "s2", "s3", "s4", "s5", "s6"];
    let some = |names: &[&str]| names.iter().map(|s| append(s, s)).collect::<Vec<_>>();
    // Three streams exist; the batch then makes three more and appends twice to one.
    let first = store.append_assigned(appends("acme", some(&names[..3]))).await.unwrap();
    assert_eq!(first, [1, 1, 1]);
    let mut batch = some(&names);
    batch.push(append("s2", "again"));
    assert_eq!(
        store.append_assigned(appends("acme", batch.clone())).await.unwrap(),
        [2, 2, 2, 1, 1, 1, 3]
    );
    // Every head exists now: each is moved where it is locked.
    assert_eq!(store.append_assigned(appends("acme", batch)).await.unwrap(), [3, 4, 3, 2, 2, 2, 5]);
    assert_eq!(store.last_stream_seq("acme", "s2").unwrap(), Some(5));
    assert_eq!(store.last_stream_seq("acme", "s6").unwrap(), Some(2));
}

/// The writer's session ended under it (a database restart, an operator's
/// `pg_terminate_backend`): the commit that meets the closed connection fails, the writer
/// reconnects, and the stream numbers on from what was acknowledged, with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_session_ends_reconnects_and_numbers_on() {
    let url = common::blocking(|| PgServer::shared().database());
    let store = common::blocking(|| open_pg(&url));
    let fence = Fence { shard: 9, epoch: 1 };
    let fenced = |text: &str| Batch { fence, ..appends("acme", vec![append("s", text)]) };
    store.raise_fence(fence).await.unwrap();
    assert_eq!(store.append_assigned(fenced("a")).await.unwrap(), [1]);
    let ended = common::blocking({
        let url = url.clone();
        move || {
            let mut session = switchboard_store::testing::store_session(&url).unwrap();
            let row = session
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = current_database() AND application_name = 'switchboard-writer'",
                    &[],
                )
                .unwrap();
            row.get::<_, i64>(0)
        }
    });
    assert_eq!(ended, 1, "the writer's one session");
    // The first commit after may meet the closed connection and fail; the next reconnects.
    let mut acknowledged = vec!["a".to_owned()];
    let mut failed = 0;
    for text in ["b", "c", "d"] {
        match store.append_assigned(fenced(text)).await {
            Ok(positions) => {
                acknowledged.push(text.to_owned());
                assert_eq!(positions, [acknowledged.len() as u64], "{text}");
            }
            Err(_) => failed += 1,
        }
    }
    assert!(failed <= 1, "{failed} commits failed after one session ended");
    let stored: Vec<String> = payloads(&store, "acme", "s").into_iter().map(|(_, p)| p).collect();
    assert_eq!(stored, acknowledged);
}
