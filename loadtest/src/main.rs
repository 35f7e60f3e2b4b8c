//! `loadtest`: see the library's documentation and `loadtest/README.md`.

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let run = switchboard_loadtest::cli::main(switchboard_loadtest::cli::Cli::parse());
    tokio::select! {
        result = run => result,
        // The run is dropped, and with it the nodes it started (each stopped by its PID, as
        // at the run's end): killed with SIGTERM or Ctrl-C, it used to leave them running.
        signal = stopped() => anyhow::bail!("stopped by {signal}"),
    }
}

/// Resolves with the signal's name once SIGINT or SIGTERM comes.
async fn stopped() -> &'static str {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        // No handler: only Ctrl-C is caught.
        let _ = tokio::signal::ctrl_c().await;
        return "SIGINT";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}
