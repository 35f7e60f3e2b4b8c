//! An acknowledged append survives the process being killed.
//!
//! The test re-runs its own binary as a child that appends until killed, printing
//! `acked <seq>` after each acknowledgement; the parent kills it with SIGKILL partway, reopens
//! the directory, and checks that every acknowledged batch is there. Whatever the moment of
//! the kill, that must hold, so the test asserts nothing about timing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{command, open};
use switchboard_store::Store;

/// Set in the child: where to write.
const CHILD_DIR: &str = "SWITCHBOARD_STORE_CRASH_CHILD_DIR";
/// The parent kills the child once it has seen this many acknowledgements.
const KILL_AFTER: u64 = 300;
/// Appends queued before awaiting them, so that some commits carry several batches.
const IN_FLIGHT: u64 = 8;

#[test]
fn child_appends_until_killed() {
    // An ordinary test run has nothing to do here.
    let Some(dir) = std::env::var_os(CHILD_DIR) else { return };
    let store = open(Path::new(&dir));
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
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_appends_until_killed", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Not a prefix match: libtest prints `test child_appends_until_killed ... ` with no
    // newline before the child's first line.
    let acked = |line: std::io::Result<String>| {
        line.unwrap().rsplit_once("acked ").map(|(_, seq)| seq.parse::<u64>().unwrap())
    };

    let mut last_acked = 0;
    for seq in lines.by_ref().filter_map(acked) {
        assert_eq!(seq, last_acked + 1, "acknowledged in order");
        last_acked = seq;
        if seq >= KILL_AFTER {
            break;
        }
    }
    // SIGKILL on Unix: no destructor, no flush, no clean close.
    child.kill().unwrap();
    // Acknowledgements the child printed before it died count too.
    last_acked = lines.filter_map(acked).fold(last_acked, u64::max);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished: {status:?}");
    assert!(last_acked >= KILL_AFTER, "the child stopped early at {last_acked}");

    let store = open(dir.path());
    let log = store.load("acme").unwrap().log;
    assert!(log.len() as u64 >= last_acked, "{} records, {last_acked} acknowledged", log.len());
    // Written in call order: whatever landed is a prefix, with no hole.
    let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=log.len() as u64).collect::<Vec<_>>());
    // Atomic batches: every landed log record brought its event and transcript row, no more.
    assert_eq!(store.read_stream("acme", "events", 0, usize::MAX).unwrap().len(), log.len());
    assert_eq!(store.messages("acme", 1, 0, usize::MAX).unwrap().len(), log.len());
}
