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
