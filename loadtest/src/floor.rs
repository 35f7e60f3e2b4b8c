//! `loadtest run --mode floor`: what a call costs the node before any of its work. Health
//! checks (`grpc.health.v1.Health/Check`) at `--rate` per second, open loop, over
//! `--connections` channels: each passes the node's HTTP/2 server, tonic and every layer the
//! product's calls pass (metrics, auth, forwarding), and touches no actor and no store. The
//! node's CPU per check, beside a contact-center run's CPU per command at the same call rate,
//! says how much of a command is the transport (the floor under any routing engine that
//! answers unary gRPC calls) and how much is ours.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::node::CpuProbe;

/// Checks at `rate` per second for `seconds`, latencies from the intended send time.
pub async fn run(
    channels: &[Channel],
    rate: f64,
    seconds: f64,
    probe: Option<&CpuProbe>,
) -> anyhow::Result<()> {
    let total = (rate.max(1.0) * seconds.max(1.0)) as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let clients: Vec<_> = channels.iter().map(|c| HealthClient::new(c.clone())).collect();
    // Warm every connection, so the run measures calls and not connection set-up.
    for c in &clients {
        c.clone().check(HealthCheckRequest::default()).await?;
    }
    let before = match probe {
        Some(probe) => probe.read(None).await,
        None => None,
    };
    let start = Instant::now() + Duration::from_millis(100);
    let intended = move |n: u64| start + interval * u32::try_from(n).unwrap_or(u32::MAX);
    let latency = Arc::new(Mutex::new(crate::micro::histogram()));
    let errors = Arc::new(AtomicU64::new(0));
    let mut calls = Vec::with_capacity(total as usize);
    for n in 0..total {
        tokio::time::sleep_until(intended(n)).await;
        let mut client = clients[(n as usize) % clients.len()].clone();
        let (latency, errors, due) = (latency.clone(), errors.clone(), intended(n));
        calls.push(tokio::spawn(async move {
            match client.check(HealthCheckRequest::default()).await {
                Ok(_) => {
                    let us = due.elapsed().as_micros().max(1) as u64;
                    let _ = latency.lock().await.record(us);
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for c in calls {
        c.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = match (probe, &before) {
        (Some(probe), Some(b)) => probe.read(Some(b.source)).await,
        _ => None,
    };
    let latency = latency.lock().await;
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "floor: offered {rate:.0} health checks/s for {seconds:.0} s over {} connection(s); \
         {} answered in {elapsed:.1} s, {} errors; latency p50 {:.2} ms, p99 {:.2} ms",
        clients.len(),
        latency.len(),
        errors.load(Ordering::Relaxed),
        ms(0.5),
        ms(0.99),
    );
    match (before, after) {
        (Some(b), Some(a)) if !latency.is_empty() => {
            let cpu = (a.seconds - b.seconds).max(0.0);
            let steal = match (b.host_steal, a.host_steal) {
                (Some(b), Some(a)) => format!("; this machine's CPU steal {:.2} s", a - b),
                _ => String::new(),
            };
            println!(
                "  node CPU: {:.1} µs per call ({cpu:.2} s over {} calls, from {}){steal}",
                cpu * 1e6 / latency.len() as f64,
                latency.len(),
                b.source.label(),
            );
        }
        _ => println!("  node CPU: unknown (give --start-node, --metrics or --node-pid)"),
    }
    Ok(())
}
