//! `switchboard serve` runs a node; `switchboard ctl` talks to one. See the crate docs.

use std::process::ExitCode;

use clap::Parser;

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
