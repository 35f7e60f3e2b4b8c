//! `loadtest`: see the library's documentation and `loadtest/README.md`.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    switchboard_loadtest::cli::main(switchboard_loadtest::cli::Cli::parse()).await
}
