//! The command line: `switchboard serve …`, `switchboard ctl …` and `switchboard token …`.

use std::io::Write;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Flags};

#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about = "Switchboard: chat contact-center routing.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node. Settings: defaults < --config file < SWITCHBOARD_* environment < flags.
    Serve(Serve),
    /// Talk to a running node.
    Ctl(crate::ctl::Ctl),
    /// Sign a bearer token (JWT) with a key file, for `ctl --token` or a client.
    Token(crate::token::Token),
}

#[derive(Debug, Args)]
pub struct Serve {
    #[command(flatten)]
    pub flags: Flags,
    /// Print the effective configuration as TOML and exit
    #[arg(long)]
    pub dump_config: bool,
}

impl Cli {
    /// Runs the parsed command; `env` is the process environment (tests pass their own).
    pub async fn run<I, K, V>(self, env: I) -> anyhow::Result<()>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        match self.command {
            Command::Serve(serve) => {
                let config = Config::load(&serve.flags, env)?;
                if serve.dump_config {
                    let mut out = std::io::stdout().lock();
                    out.write_all(config.to_toml()?.as_bytes())?;
                    out.flush()?;
                    return Ok(());
                }
                crate::serve::run(config).await
            }
            Command::Ctl(ctl) => crate::ctl::run(ctl).await,
            Command::Token(token) => {
                let mut out = std::io::stdout().lock();
                let now = switchboard_node::clock::now().0 / 1000;
                writeln!(out, "{}", token.mint(now)?)?;
                Ok(())
            }
        }
    }
}
