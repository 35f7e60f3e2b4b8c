//! `switchboard serve`: logging, metrics, the listener and signals around
//! [`switchboard_node::serve`].

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{Config, Listen, LogFormat};

/// Runs one node until SIGTERM or Ctrl-C, then drains and returns.
pub async fn run(config: Config) -> anyhow::Result<()> {
    init_logging(&config)?;
    for warning in config.warnings() {
        warn!(warning = %warning, "insecure configuration");
    }
    if config.unauthenticated() {
        warn!(
            grpc = %config.grpc.addr,
            "UNAUTHENTICATED MODE: auth.token_keys is empty, so every caller on this machine can \
             read and change every tenant; allowed on loopback only (see SECURITY.md)"
        );
    }

    // Signals are caught before the node announces itself, so a harness that sends SIGTERM as
    // soon as it reads the `listening` line gets a clean drain, not the default action.
    let stopping = stop_on_signal()?;

    let grpc = TcpListener::bind(config.grpc.addr)
        .await
        .with_context(|| format!("cannot listen on grpc.addr {}", config.grpc.addr))?;
    let grpc_addr = grpc.local_addr().context("reading the bound grpc address")?;
    // Reads the key files; before the node announces itself, so a bad file fails the start.
    let node = config.node(grpc_addr)?;
    let metrics_addr = match config.metrics.addr {
        Listen::Off => Listen::Off,
        Listen::On(addr) => Listen::On(crate::exporter::install(addr).await?),
    };
    switchboard_node::metrics::describe();

    info!(
        grpc = %grpc_addr,
        metrics = %metrics_addr,
        data_dir = %config.store.data_dir.display(),
        "listening"
    );
    announce(grpc_addr, metrics_addr)?;

    let drain = Duration::from_secs(config.shutdown.drain_seconds);
    let serving = switchboard_node::serve(node, grpc, wait_for(stopping.clone()));
    match within_drain(serving, stopping, drain).await {
        Some(served) => served.context("the node stopped with an error")?,
        None => {
            warn!(
                drain_seconds = drain.as_secs(),
                "connections still open after the drain period; exiting without the final snapshot \
                 (the command log replays on the next start)"
            );
            bail!("shutdown did not drain within shutdown.drain_seconds = {}", drain.as_secs());
        }
    }
    info!("stopped cleanly");
    Ok(())
}

/// The line test harnesses wait for, on stdout (logs go to stderr).
fn announce(grpc: SocketAddr, metrics: Listen) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening grpc={grpc} metrics={metrics}")?;
    out.flush()?;
    Ok(())
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.filter)
        .with_context(|| format!("log.filter {:?}", config.log.filter))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let installed = match config.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

/// Becomes `true` on the first SIGTERM or SIGINT (Ctrl-C). A second signal exits at once.
fn stop_on_signal() -> anyhow::Result<watch::Receiver<bool>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(signal = name, "shutting down: draining connections and snapshotting tenants");
        let _ = tx.send(true);
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        warn!(signal = name, "second signal during shutdown: exiting without finishing the drain");
        std::process::exit(130);
    });
    Ok(rx)
}

/// Runs `serving` to completion, or gives up (`None`) once `drain` has passed since `stopping`
/// turned `true`.
async fn within_drain<T>(
    serving: impl Future<Output = T>,
    stopping: watch::Receiver<bool>,
    drain: Duration,
) -> Option<T> {
    let deadline = async {
        wait_for(stopping).await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        done = serving => Some(done),
        () = deadline => None,
    }
}

/// Resolves once `stopping` turns `true` (or its sender is gone).
async fn wait_for(mut stopping: watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const DRAIN: Duration = Duration::from_secs(20);

    #[tokio::test(start_paused = true)]
    async fn a_finished_drain_returns_the_result() {
        let (tx, rx) = watch::channel(false);
        let signalled = rx.clone();
        let serving = async move {
            wait_for(signalled).await;
            "drained"
        };
        tx.send(true).unwrap();
        assert_eq!(within_drain(serving, rx, DRAIN).await, Some("drained"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_drain_gives_up_after_the_drain_period() {
        let (tx, rx) = watch::channel(false);
        tx.send(true).unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(within_drain(std::future::pending::<()>(), rx, DRAIN).await, None);
        assert_eq!(started.elapsed(), DRAIN, "virtual time: exactly the drain period");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_signal_the_node_serves_on() {
        let (_tx, rx) = watch::channel(false);
        let waiting = within_drain(std::future::pending::<()>(), rx, DRAIN);
        let far_later = tokio::time::timeout(DRAIN * 1000, waiting).await;
        assert!(far_later.is_err(), "no deadline runs before a signal");
    }
}
