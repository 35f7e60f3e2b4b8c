//! WAL checkpoints run off the writer's thread (see `checkpoint.rs` in the crate).
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the WAL past its threshold,
//! holding that commit and every caller queued behind it (the 110-235 ms stalls of issue 11).
//! These tests read the WAL file's header, whose checkpoint sequence number SQLite bumps each
//! time the WAL starts over after a complete checkpoint: they check what happened, never how
//! long it took.

mod common;

use std::path::Path;
use switchboard_store::{Batch, DB_FILE, SqliteOptions, SqliteStore, Store};

/// A command whose transcript row spans many pages (SQLite's pages are 4 KiB).
fn big(seq: u64, kib: usize) -> Batch {
    let mut batch = common::command("acme", seq);
    batch.messages[0].text = "x".repeat(kib * 1024);
    batch
}

/// The WAL header's checkpoint sequence number (big-endian at offset 12), 0 before any WAL.
fn wal_generation(dir: &Path) -> u32 {
    match std::fs::read(dir.join(format!("{DB_FILE}-wal"))) {
        Ok(bytes) if bytes.len() >= 16 => u32::from_be_bytes(bytes[12..16].try_into().unwrap()),
        _ => 0,
    }
}

fn wal_len(dir: &Path) -> u64 {
    std::fs::metadata(dir.join(format!("{DB_FILE}-wal"))).map_or(0, |m| m.len())
}

fn open(dir: &Path, wal_checkpoint_pages: u32) -> SqliteStore {
    let options = SqliteOptions { wal_checkpoint_pages, ..SqliteOptions::default() };
    SqliteStore::open(dir, options).unwrap()
}

/// With the threshold out of reach, nothing checkpoints, though the WAL grows far past both
/// SQLite's default automatic checkpoint (1,000 pages) and ours (10,000): the writer's
/// connection never checkpoints on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_never_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), u32::MAX);
    let generation = wal_generation(dir.path());
    // 200 × 256 KiB: about 12,800 pages.
    for first in (1..=200).step_by(8) {
        let pending: Vec<_> = (first..first + 8).map(|seq| store.append(big(seq, 256))).collect();
        for pending in pending {
            pending.await.unwrap();
        }
    }
    assert_eq!(store.stats().checkpoints, 0);
    assert_eq!(wal_generation(dir.path()), generation, "the WAL started over: a checkpoint ran");
    assert!(wal_len(dir.path()) > 12_000 * 4096, "WAL of {} bytes", wal_len(dir.path()));
    // The pages counted are the WAL's: one header, then one frame (header + page) each.
    let frames = (wal_len(dir.path()) - 32) / (24 + 4096);
    assert_eq!(store.stats().wal_frames, frames, "{:?}", store.stats());
    let log = store.load("acme").unwrap().log;
    assert_eq!(log.len(), 200);
}

/// Past the threshold the checkpointer copies the WAL back, and the writer starts it over:
/// the WAL stays bounded while commits go on, and everything stays readable, also after a
/// reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_keeps_the_wal_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 64);
    // Each append is about 5 pages; the first restart is due after a few dozen of them, once
    // the checkpointer's thread has run. The bound (each append is synced, so thousands take
    // seconds) only keeps a broken checkpointer from looping forever.
    let mut seq = 0;
    let generation = wal_generation(dir.path());
    while wal_generation(dir.path()) == generation {
        assert!(seq < 5_000, "the WAL never started over after {seq} appends");
        seq += 1;
        store.append(big(seq, 16)).await.unwrap();
    }
    assert!(store.stats().checkpoints >= 1);
    assert_eq!(store.stats().failed_checkpoints, 0);
    // Counted across the restart: every append wrote its pages.
    assert!(store.stats().wal_frames >= 5 * seq, "{:?}", store.stats());
    assert_eq!(store.load("acme").unwrap().log.len() as u64, seq);
    drop(store);
    let store = open(dir.path(), 64);
    let log = store.load("acme").unwrap().log;
    assert_eq!(log.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=seq).collect::<Vec<_>>());
    assert_eq!(store.messages("acme", 1, 0, 1_000_000).unwrap().len() as u64, seq);
}
