//! `switchboard serve` runs a node; `switchboard ctl` talks to one. See the crate docs.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of glibc's malloc: under the contact-center load glibc's malloc and free
/// were about 13% of the node's samples (tasks free on other threads than they allocate on).
/// Node CPU per command fell by 6-7% (ARCHITECTURE.md, "The write path's costs"). SQLite
/// keeps glibc's malloc: routing it through mimalloc too (its `override`) measured the same.
/// Built with `no_thp`: otherwise mimalloc asks for transparent huge pages on its arenas, and
/// on a host whose THP setting is `madvise` (Debian's default) the node's RSS doubled
/// (`loadtest history`: 92.6 MiB at 10 k conversations against 47.8 without, glibc 41.0)
/// for no CPU gain.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Threads of tokio's blocking pool at most. What runs there is store reads (the store has 4
/// read connections by default, so more threads only wait for one) and a few encodings; the
/// default (512, each idle for 10 s before it ends) grew the pool to ~70 threads under
/// `loadtest history`, each with its own mimalloc heap holding its pages: capped (and kept
/// 60 s), 21 threads and 6–7 MiB less RSS at every checkpoint (44.4 / 51.9 / 56.1 against
/// 51.2 / 59.7 / 61.9 MiB at 10 k / 100 k / 150 k), and −10% node CPU per command there
/// (the pool no longer creates threads for each burst of reads); the same within noise at
/// 200 arrivals/s (ARCHITECTURE.md, "Kept: tokio's blocking pool capped").
const MAX_BLOCKING_THREADS: usize = 16;
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(60);

/// The async runtime's worker threads unless the operator sets `TOKIO_WORKER_THREADS` (which
/// tokio reads when none is set here): one per core the process may use, less one, at least
/// one. The store's writer is a thread of its own, busy about a third of the node's CPU under
/// load, so it has that core; and each worker fewer is fewer wake-ups across threads. At 500
/// and 750 arrivals/s on two cores, one worker cost 13% and 11% less node CPU per command than
/// two (tokio's default), with the same p99s (ARCHITECTURE.md, "The write path's costs").
fn worker_threads() -> Option<usize> {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        return None;
    }
    // Honours the container's CPU quota (cgroups), not only the host's cores.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    Some(cores.saturating_sub(1).max(1))
}

fn main() -> ExitCode {
    let cli = switchboard::cli::Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = worker_threads() {
        builder.worker_threads(workers);
    }
    let runtime = match builder
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run(std::env::vars())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
