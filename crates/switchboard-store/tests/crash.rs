//! An acknowledged append survives the process being killed.
//!
//! The test re-runs its own binary as a child that appends until killed, printing
//! `acked <seq>` after each acknowledgement; the parent kills it with SIGKILL partway, reopens
//! the directory, and checks that every acknowledged batch is there. Whatever the moment of
//! the kill, that must hold, so the test asserts nothing about timing.
//!
//! The same for PostgreSQL: the client process is killed, and separately the server itself
//! is SIGKILLed mid-stream and restarted on its data directory (crash recovery from its WAL).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{command, open, open_pg};
use switchboard_store::Store;
use switchboard_store::testing::PgServer;

/// Set in the child: where to write.
const CHILD_DIR: &str = "SWITCHBOARD_STORE_CRASH_CHILD_DIR";
/// Set in the PostgreSQL child: the database to write to.
const CHILD_PG_URL: &str = "SWITCHBOARD_STORE_CRASH_CHILD_PG_URL";
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
    let acked = |line: std::io::Result<String>| {
        line.unwrap().rsplit_once("acked ").and_then(|(_, seq)| seq.trim().parse::<u64>().ok())
    };

    let mut last_acked = 0;
    for seq in lines.by_ref().filter_map(acked) {
        assert_eq!(seq, last_acked + 1, "acknowledged in order");
        last_acked = seq;
        if seq >= KILL_AFTER {
            break;
        }
    }
    kill(&mut child);
    // Acknowledgements the child printed before it died count too.
    last_acked = lines.filter_map(acked).fold(last_acked, u64::max);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished: {status:?}");
    assert!(last_acked >= KILL_AFTER, "the child stopped early at {last_acked}");
    last_acked
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
