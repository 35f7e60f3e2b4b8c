//! WAL checkpoints mostly off the writer's path.
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that takes the WAL past its
//! threshold, on the committing connection: the writer thread. Copying up to
//! `WAL_CHECKPOINT_PAGES` frames back into the database file and syncing it held that commit,
//! and every caller queued behind it, for 110-235 ms every two to four seconds under the
//! contact-center load (issue 11). So the writer's connection does no automatic checkpoint:
//! a WAL hook tells the writer thread how many frames the WAL holds after each commit, and
//! past the threshold it nudges the checkpointer, a thread with its own connection, which runs
//! a `PASSIVE` checkpoint: it never takes the write lock, so commits go on meanwhile.
//!
//! A checkpoint run beside the writer never quite finishes under steady load: it copies the
//! frames that were there when it started, and SQLite starts the WAL over only when a write
//! begins with every frame copied. So the checkpointer runs passes until one finds little
//! left to copy (each copies what was committed during the one before), and then the writer
//! runs a passive checkpoint of its own after its next commit: it copies only what was
//! committed during the last background pass (and syncs the database file), and its next
//! commit starts the WAL over, as SQLite's automatic checkpoint would have.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};

use rusqlite::Connection;
use rusqlite::hooks::Wal;

use crate::Result;
use crate::writer::Counters;

thread_local! {
    /// Frames in the WAL after the last commit made on this thread (the writer thread's own).
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

fn note_frames(_: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(frames));
    Ok(())
}

/// The writer's side: turns off the writer connection's automatic checkpoint, nudges the
/// checkpointer once a commit leaves at least `threshold` frames in the WAL, and finishes the
/// checkpoint itself once the checkpointer's pass is done.
#[derive(Debug)]
pub(crate) struct Watch {
    threshold: c_int,
    nudge: SyncSender<()>,
    /// The checkpointer's count of passes when it was nudged, while its pass is awaited.
    nudged_at: Option<u64>,
    /// Frames in the WAL after the last commit seen, to count each commit's own.
    frames: c_int,
}

impl Watch {
    /// Installs the WAL hook on the writer's connection (replacing SQLite's automatic
    /// checkpoint, which is itself a WAL hook).
    pub(crate) fn install(
        conn: &Connection,
        threshold: u32,
        nudge: SyncSender<()>,
    ) -> Result<Watch> {
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.wal_hook(Some(note_frames));
        let threshold = c_int::try_from(threshold).unwrap_or(c_int::MAX).max(1);
        Ok(Watch { threshold, nudge, nudged_at: None, frames: 0 })
    }

    /// After each commit, on the writer thread with its connection: past the threshold,
    /// nudges the checkpointer (never waiting for it), or once its pass is done, copies the
    /// rest. A failed checkpoint is harmless: the frames stay in the WAL, tried again later.
    pub(crate) fn committed(&mut self, conn: &Connection, stats: &Counters) {
        let frames = WAL_FRAMES.with(Cell::get);
        // Fewer than before: the WAL started over (after a checkpoint), so all are this
        // commit's. (A commit that writes more frames than the threshold just after a restart
        // would be undercounted; commits are far smaller.)
        let written = if frames >= self.frames { frames - self.frames } else { frames };
        self.frames = frames;
        stats.wal_frames.fetch_add(u64::try_from(written).unwrap_or(0), Ordering::Relaxed);
        if frames < self.threshold {
            self.nudged_at = None;
            return;
        }
        let passes = stats.checkpoints.load(Ordering::Relaxed);
        match self.nudged_at {
            None => {
                self.nudged_at = Some(passes);
                match self.nudge.try_send(()) {
                    Ok(()) | Err(TrySendError::Full(()) | TrySendError::Disconnected(())) => {}
                }
            }
            Some(at) if passes > at => {
                self.nudged_at = None;
                let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                let counter = match done {
                    Ok(()) => &stats.finished_checkpoints,
                    Err(_) => &stats.failed_checkpoints,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => {} // the checkpointer's pass is under way
        }
    }
}

/// The checkpointer thread and its connection; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the checkpointer's connection to the database the writer has set up, and starts
    /// its thread.
    pub(crate) fn start(path: &Path, stats: Arc<Counters>) -> Result<Checkpointer> {
        let conn = crate::schema::open_checkpointer(path)?;
        let (nudge, nudges) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || run(&conn, &nudges, &stats))?;
        Ok(Checkpointer { nudge: Some(nudge), thread: Some(thread) })
    }

    /// A handle for the writer to nudge this checkpointer with.
    pub(crate) fn nudge(&self) -> SyncSender<()> {
        self.nudge.clone().expect("the nudge sender lives until drop")
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.nudge.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the checkpointer leaves the writer to copy at most, in frames, when commits allow: the
/// writer's own pass copies what was committed since the checkpointer's last and syncs the
/// database file, and every commit waits for it.
const LEFT_FOR_THE_WRITER: i64 = 256;

/// Passes per nudge at most: under a load that commits faster than a pass copies, they would
/// never shrink to [`LEFT_FOR_THE_WRITER`].
const MAX_PASSES: u32 = 8;

/// Runs passive checkpoints per nudge until every sender (the writer's and ours) is gone. A
/// failed checkpoint is harmless: the frames stay in the WAL and the next nudge tries again.
///
/// One nudge runs passes until one finds little to copy: each pass copies what the WAL held
/// when it began, so the next copies only what was committed during it, and under steady load
/// they shrink. The writer then finishes with the few frames committed during the last one.
/// With one pass per nudge, the writer's pass copied everything committed during it (at 600
/// arrivals/s about a thousand frames) and synced them: stalls of 4-27 ms, several a second,
/// on every commit queued behind it.
fn run(conn: &Connection, nudges: &Receiver<()>, stats: &Counters) {
    while nudges.recv().is_ok() {
        let mut done = Ok(());
        let mut before: Option<i64> = None;
        for _ in 0..MAX_PASSES {
            // (busy, frames in the WAL, frames copied back): what this pass saw and did.
            let pass = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(1));
            match pass {
                Ok(frames) => {
                    let copied = frames - before.unwrap_or(0);
                    before = Some(frames);
                    if copied <= LEFT_FOR_THE_WRITER {
                        break;
                    }
                }
                Err(e) => {
                    done = Err(e);
                    break;
                }
            }
        }
        let counter = match done {
            Ok(()) => &stats.checkpoints,
            Err(_) => &stats.failed_checkpoints,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
