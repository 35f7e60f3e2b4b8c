//! An acknowledged append survives the process being killed.
//!
//! The test re-runs its own binary as a child that appends until killed, printing
//! `acked <seq>` after each acknowledgement; the parent kills it with SIGKILL partway, reopens
//! the directory, and checks that every acknowledged batch is there. Whatever the moment of
//! the kill, that must hold, so the test asserts nothing about timing.
//!
//! The same for PostgreSQL: the client process is killed, and separately the server itself
//! is SIGKILLed mid-stream and restarted on its data directory (crash recovery from its WAL).
//!
//! And the same for archive writes and retention: a child archives a conversation with each
//! command and queues a retention pass after every few, printing what it queued and what was
//! acknowledged; after the kill every acknowledged archive row and every acknowledged delete
//! is there, and whatever was in flight landed whole or not at all.
//!
//! And the same for the block allocator: a child reserves blocks from a few threads,
//! printing each acknowledged block; after the kill and a reopen, the next block starts after
//! every acknowledged one (no number is handed out twice).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{archived, command, entry, entry_about, message, open, open_pg};
use switchboard_store::testing::PgServer;
use switchboard_store::{Batch, Fence, Store, StreamEntry};

/// Set in the child: where to write.
const CHILD_DIR: &str = "SWITCHBOARD_STORE_CRASH_CHILD_DIR";
/// Set in the PostgreSQL child: the database to write to.
const CHILD_PG_URL: &str = "SWITCHBOARD_STORE_CRASH_CHILD_PG_URL";
/// Set in the archiving children, as the two above.
const CHILD_ARCHIVE_DIR: &str = "SWITCHBOARD_STORE_CRASH_CHILD_ARCHIVE_DIR";
const CHILD_ARCHIVE_PG_URL: &str = "SWITCHBOARD_STORE_CRASH_CHILD_ARCHIVE_PG_URL";
/// Set in the reserving children, as the two above.
const CHILD_RESERVE_DIR: &str = "SWITCHBOARD_STORE_CRASH_CHILD_RESERVE_DIR";
const CHILD_RESERVE_PG_URL: &str = "SWITCHBOARD_STORE_CRASH_CHILD_RESERVE_PG_URL";
/// Retention lags the newest command by this many conversations.
const RETAIN_LAG: u64 = 20;
/// The parent kills the child once it has seen this many acknowledgements.
const KILL_AFTER: u64 = 300;
/// Appends queued before awaiting them, so that some commits carry several batches.
const IN_FLIGHT: u64 = 8;

/// Appends batches of `acme` in order, printing each acknowledgement, until killed (or, on
/// PostgreSQL, until the server is killed and a write fails).
fn append_until_killed(store: &dyn Store) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut stdout = std::io::stdout().lock();
    let mut next = 1;
    // Far more than the parent waits for; it ends by the kill.
    while next < 1_000_000 {
        let pending: Vec<_> =
            (next..next + IN_FLIGHT).map(|seq| (seq, store.append(command("acme", seq)))).collect();
        for (seq, pending) in pending {
            runtime.block_on(pending).unwrap();
            writeln!(stdout, "acked {seq}").unwrap();
            stdout.flush().unwrap();
        }
        next += IN_FLIGHT;
    }
}

/// Command `seq` ends conversation `seq`: its log record, its archive row (due at `seq`), a
/// transcript row, an agent-stream entry about it (at `999 + seq`: old exactly when the
/// conversation is due, as the node bounds stream entries by its shortest transcript
/// retention) and an event about nothing (at `1000 + seq`, so old once retention passes `seq`).
fn ending(seq: u64) -> Batch {
    Batch {
        streams: vec![
            entry("events", seq),
            StreamEntry { at_ms: 999 + seq, ..entry_about("agent/a", seq, seq) },
        ],
        messages: vec![message(seq, 1)],
        archive: vec![archived(seq, "carol", seq, seq)],
        ..command("acme", seq)
    }
}

/// Appends `ending` batches in order; after every `IN_FLIGHT` of them queues a retention pass
/// up to `RETAIN_LAG` behind, printing `queued retain <x>` before it is queued, `acked <seq>`
/// and `retained <x>` once acknowledged. Runs until killed.
fn archive_until_killed(store: &dyn Store) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut stdout = std::io::stdout().lock();
    let mut next = 1;
    while next < 1_000_000 {
        let appends: Vec<_> =
            (next..next + IN_FLIGHT).map(|seq| (seq, store.append(ending(seq)))).collect();
        next += IN_FLIGHT;
        let retain = (next - 1).checked_sub(RETAIN_LAG).map(|x| {
            writeln!(stdout, "queued retain {x}").unwrap();
            stdout.flush().unwrap();
            (x, store.retain("acme", Fence::default(), x, 1_000 + x))
        });
        for (seq, pending) in appends {
            runtime.block_on(pending).unwrap();
            writeln!(stdout, "acked {seq}").unwrap();
            stdout.flush().unwrap();
        }
        if let Some((x, pending)) = retain {
            runtime.block_on(pending).unwrap();
            writeln!(stdout, "retained {x}").unwrap();
            stdout.flush().unwrap();
        }
    }
}

/// Reserves blocks of 1 to 5 numbers of `acme`'s customer counter from three threads at
/// once (on SQLite they share commits) until killed, printing `block <first> <end> acked <n>`
/// (end exclusive, `n` counting acknowledgements) once each is acknowledged.
fn reserve_until_killed(store: &dyn Store) {
    let printed = std::sync::Mutex::new(0u64);
    std::thread::scope(|scope| {
        for thread in 0..3u64 {
            let printed = &printed;
            scope.spawn(move || {
                for i in 0..1_000_000u64 {
                    let count = 1 + (i + thread) % 5;
                    let first = store.reserve("acme", "customer", count).unwrap();
                    let mut acked = printed.lock().unwrap();
                    *acked += 1;
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "block {first} {} acked {}", first + count, *acked).unwrap();
                    stdout.flush().unwrap();
                }
            });
        }
    });
}

#[test]
fn child_reserves_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_RESERVE_DIR) else { return };
    reserve_until_killed(&open(Path::new(&dir)));
}

#[test]
fn child_reserves_from_postgres_until_killed() {
    let Ok(url) = std::env::var(CHILD_RESERVE_PG_URL) else { return };
    reserve_until_killed(&open_pg(&url));
}

/// The acknowledged blocks are disjoint, and after the kill the next reservation starts past
/// every one of them.
fn check_reservations(store: &dyn Store, lines: &[String]) {
    let mut blocks: Vec<(u64, u64)> = lines
        .iter()
        .filter_map(|line| {
            let (_, rest) = line.rsplit_once("block ")?;
            let mut words = rest.split_whitespace();
            Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
        })
        .collect();
    assert!(blocks.len() as u64 >= KILL_AFTER, "{} blocks", blocks.len());
    blocks.sort_unstable();
    for pair in blocks.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "overlapping blocks {pair:?}");
    }
    let end = blocks.iter().map(|&(_, end)| end).max().unwrap();
    let next = store.reserve("acme", "customer", 1).unwrap();
    assert!(next >= end, "{next} was handed out before the kill (acknowledged up to {end})");
}

#[test]
fn acknowledged_reservations_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lines) = run_child_and_kill_reading(
        "child_reserves_until_killed",
        (CHILD_RESERVE_DIR, dir.path().as_os_str()),
        |child| child.kill().unwrap(),
    );
    check_reservations(&open(dir.path()), &lines);
}

#[test]
fn acknowledged_reservations_survive_sigkill_of_a_postgres_client() {
    let url = PgServer::shared().database();
    let (_, lines) = run_child_and_kill_reading(
        "child_reserves_from_postgres_until_killed",
        (CHILD_RESERVE_PG_URL, url.as_ref()),
        |child| child.kill().unwrap(),
    );
    check_reservations(&open_pg(&url), &lines);
}

#[test]
fn child_archives_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_ARCHIVE_DIR) else { return };
    archive_until_killed(&open(Path::new(&dir)));
}

#[test]
fn child_archives_to_postgres_until_killed() {
    let Ok(url) = std::env::var(CHILD_ARCHIVE_PG_URL) else { return };
    archive_until_killed(&open_pg(&url));
}

#[test]
fn child_appends_until_killed() {
    // An ordinary test run has nothing to do here.
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    append_until_killed(&open(Path::new(&dir)));
}

#[test]
fn child_appends_to_postgres_until_killed() {
    let Ok(url) = std::env::var(CHILD_PG_URL) else { return };
    append_until_killed(&open_pg(&url));
}

/// Runs `child_test` with `env` set, reads its acknowledgements until `KILL_AFTER`, calls
/// `kill` (which kills the child or its server), and returns the last acknowledged seq once
/// the child has exited.
fn run_child_and_kill(
    child_test: &str,
    env: (&str, &std::ffi::OsStr),
    kill: impl FnOnce(&mut Child),
) -> u64 {
    run_child_and_kill_reading(child_test, env, kill).0
}

/// The last number after `word ` on any of `lines`.
fn last(lines: &[String], word: &str) -> Option<u64> {
    let after = |line: &String| {
        line.rsplit_once(&format!("{word} ")).and_then(|(_, n)| n.trim().parse::<u64>().ok())
    };
    lines.iter().filter_map(after).max()
}

/// As [`run_child_and_kill`], also returning every line the child printed.
fn run_child_and_kill_reading(
    child_test: &str,
    env: (&str, &std::ffi::OsStr),
    kill: impl FnOnce(&mut Child),
) -> (u64, Vec<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([child_test, "--exact", "--nocapture", "--test-threads=1"])
        .env(env.0, env.1)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Not a prefix match: libtest prints `test child_appends_until_killed ... ` with no
    // newline before the child's first line.
    let acked =
        |line: &str| line.rsplit_once("acked ").and_then(|(_, seq)| seq.trim().parse::<u64>().ok());

    let mut seen = Vec::new();
    let mut last_acked = 0;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(seq) = acked(&line) {
            assert_eq!(seq, last_acked + 1, "acknowledged in order");
            last_acked = seq;
        }
        seen.push(line);
        if last_acked >= KILL_AFTER {
            break;
        }
    }
    kill(&mut child);
    // Lines the child printed before it died count too.
    seen.extend(lines.map(Result::unwrap));
    last_acked = last(&seen, "acked").unwrap_or(0).max(last_acked);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished: {status:?}");
    assert!(last_acked >= KILL_AFTER, "the child stopped early at {last_acked}");
    (last_acked, seen)
}

/// Every acknowledged batch is there, what landed is a prefix, and every batch is whole.
fn check_store(store: &dyn Store, last_acked: u64) {
    let log = store.load("acme").unwrap().log;
    assert!(log.len() as u64 >= last_acked, "{} records, {last_acked} acknowledged", log.len());
    // Written in call order: whatever landed is a prefix, with no hole.
    let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>());
    // Atomic batches: every landed log record brought its event and transcript row, no more.
    assert_eq!(store.read_stream("acme", "events", 0, usize::MAX).unwrap().len(), log.len());
    assert_eq!(store.messages("acme", 1, 0, usize::MAX).unwrap().len(), log.len());
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // SIGKILL on Unix: no destructor, no flush, no clean close.
    let last_acked = run_child_and_kill(
        "child_appends_until_killed",
        (CHILD_DIR, dir.path().as_os_str()),
        |child| child.kill().unwrap(),
    );
    check_store(&open(dir.path()), last_acked);
}

#[test]
fn acknowledged_appends_survive_sigkill_of_a_postgres_client() {
    let url = PgServer::shared().database();
    let last_acked = run_child_and_kill(
        "child_appends_to_postgres_until_killed",
        (CHILD_PG_URL, url.as_ref()),
        |child| child.kill().unwrap(),
    );
    check_store(&open_pg(&url), last_acked);
}

#[test]
fn acknowledged_appends_survive_sigkill_of_the_postgres_server() {
    // A server of its own: this test kills it.
    let mut server = PgServer::start().unwrap();
    let url = server.database();
    // The child's next write fails once its server is gone, and it exits on that error.
    let last_acked = run_child_and_kill(
        "child_appends_to_postgres_until_killed",
        (CHILD_PG_URL, url.as_ref()),
        |_| server.kill(),
    );
    server.restart().unwrap();
    check_store(&open_pg(&url), last_acked);
}

/// After the kill: the log is a prefix holding every acknowledged command; a conversation
/// retained by an acknowledged pass is gone with its transcript and its stream entries; one
/// past every queued pass is there whole; one in between (a pass in flight) either.
fn check_archive(store: &dyn Store, lines: &[String]) {
    let last_acked = last(lines, "acked").unwrap();
    let retained = last(lines, "retained").unwrap_or(0);
    let queued = last(lines, "queued retain").unwrap_or(0);
    assert!(retained > 0, "at least one retention pass was acknowledged");
    let log = store.load("acme").unwrap().log;
    let landed = log.len() as u64;
    assert!(landed >= last_acked, "{landed} records, {last_acked} acknowledged");
    assert_eq!(log.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=landed).collect::<Vec<_>>());

    let agent: Vec<u64> = store
        .read_stream("acme", "agent/a", 0, usize::MAX)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    for c in 1..=landed {
        let row = store.archived("acme", c).unwrap();
        let transcript = store.messages("acme", c, 0, 10).unwrap();
        let about = agent.contains(&c);
        if c <= retained {
            assert_eq!((row, transcript, about), (None, vec![], false), "conversation {c}");
        } else if c > queued {
            assert_eq!(row, Some(archived(c, "carol", c, c)), "conversation {c}");
            assert_eq!(transcript, vec![message(c, 1)], "conversation {c}");
            assert!(about, "conversation {c}");
        } else {
            // A pass in flight at the kill: all of it or none of it.
            let kept = row.is_some();
            assert_eq!((transcript.len() == 1, about), (kept, kept), "conversation {c}");
        }
    }
    assert_eq!(store.count_archived("acme").unwrap() as usize, agent.len());
    // Events about nothing: those before an acknowledged bound are gone, those at or after
    // every queued bound are all there.
    let events: Vec<u64> =
        store.read_stream("acme", "events", 0, usize::MAX).unwrap().iter().map(|e| e.seq).collect();
    let first = *events.first().unwrap();
    assert!((retained..=queued).contains(&first), "{first} {retained} {queued}");
    assert_eq!(events, (first..=landed).collect::<Vec<_>>());
}

#[test]
fn acknowledged_archive_writes_and_retention_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lines) = run_child_and_kill_reading(
        "child_archives_until_killed",
        (CHILD_ARCHIVE_DIR, dir.path().as_os_str()),
        |child| child.kill().unwrap(),
    );
    check_archive(&open(dir.path()), &lines);
}

#[test]
fn acknowledged_archive_writes_and_retention_survive_sigkill_of_a_postgres_client() {
    let url = PgServer::shared().database();
    let (_, lines) = run_child_and_kill_reading(
        "child_archives_to_postgres_until_killed",
        (CHILD_ARCHIVE_PG_URL, url.as_ref()),
        |child| child.kill().unwrap(),
    );
    check_archive(&open_pg(&url), &lines);
}
