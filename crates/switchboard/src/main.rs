//! `switchboard serve` runs a node; `switchboard ctl` talks to one. See the crate docs.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: a node allocates and frees small objects on many
/// threads (one tokio worker per core, the store's writer and readers), where glibc's
/// per-thread arenas keep freed memory as fragmentation; see ARCHITECTURE.md "State layout".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = switchboard::cli::Cli::parse();
    match cli.run(std::env::vars()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
