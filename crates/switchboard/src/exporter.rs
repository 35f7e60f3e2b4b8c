//! `/metrics`: the Prometheus recorder every metric of the node goes to, and the HTTP listener
//! that renders it, plus the process series every Prometheus client library exports.
//!
//! The listener is ours rather than the exporter's own so that each scrape can add the
//! process series read at that moment. They are not fed through the `metrics` facade: its
//! counters are whole numbers, so `process_cpu_seconds_total` would move in one-second steps.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use switchboard_node::metrics as m;
use tokio::net::TcpListener;
use tracing::{debug, warn};

/// How often the recorder drains histogram data (what the exporter's own listener does).
const UPKEEP: Duration = Duration::from_secs(5);

/// Installs the global recorder and serves `/metrics` on `addr` (any path but `/health`, which
/// answers `OK`, as the exporter's listener did); returns the bound address (port 0 resolved).
pub async fn install(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on metrics.addr {addr}"))?;
    let bound = listener.local_addr().context("reading the bound metrics address")?;
    let mut builder = PrometheusBuilder::new();
    // Histograms with explicit buckets (never summaries), service-level bounds included.
    for (name, buckets) in m::HISTOGRAMS {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_owned()), buckets)
            .with_context(|| format!("buckets of {name}"))?;
    }
    let handle = builder.install_recorder().context("cannot install the metrics recorder")?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(serve(listener, handle));
    Ok(bound)
}

async fn serve(listener: TcpListener, handle: PrometheusHandle) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(error = %e, "metrics listener: cannot accept a connection");
                continue;
            }
        };
        let handle = handle.clone();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let handle = handle.clone();
            async move { Ok::<_, Infallible>(respond(req.uri().path() == "/health", handle).await) }
        });
        tokio::spawn(async move {
            if let Err(e) =
                http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

async fn respond(health: bool, handle: PrometheusHandle) -> Response<Full<Bytes>> {
    let body = if health {
        "OK".to_owned()
    } else {
        // Rendering and reading /proc are blocking work: off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut text = handle.render();
            process_series(&mut text);
            text
        })
        .await
        .unwrap_or_default()
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// Appends the process series, read now (by the `metrics-process` crate, from `/proc` on
/// Linux), in the text format. A value the OS does not give is left out.
pub fn process_series(out: &mut String) {
    let p = metrics_process::collector::collect();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let mut series = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(v) = value {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n");
        }
    };
    let float = |v: Option<u64>| v.map(|v| v as f64);
    series(
        m::PROCESS_CPU_SECONDS,
        "counter",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds_total,
    );
    series(
        m::PROCESS_RESIDENT_MEMORY,
        "gauge",
        "Resident memory size in bytes.",
        float(p.resident_memory_bytes),
    );
    series(
        m::PROCESS_VIRTUAL_MEMORY,
        "gauge",
        "Virtual memory size in bytes.",
        float(p.virtual_memory_bytes),
    );
    series(m::PROCESS_OPEN_FDS, "gauge", "Number of open file descriptors.", float(p.open_fds));
    // metrics-process reports an unlimited soft limit as 0: left out rather than exported as
    // a limit of zero.
    series(
        m::PROCESS_MAX_FDS,
        "gauge",
        "Maximum number of open file descriptors.",
        float(p.max_fds.filter(|n| *n > 0)),
    );
    series(
        m::PROCESS_START_TIME,
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        float(p.start_time_seconds),
    );
    series(m::PROCESS_THREADS, "gauge", "Number of OS threads in the process.", float(p.threads));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every series, once, with a value; the CPU counter keeps its fraction.
    #[test]
    fn process_series_are_rendered_in_the_text_format() {
        let mut text = "switchboard_build_info{version=\"x\"} 1".to_owned();
        process_series(&mut text);
        assert!(text.starts_with("switchboard_build_info{version=\"x\"} 1\n# HELP "), "{text}");
        for name in [
            m::PROCESS_CPU_SECONDS,
            m::PROCESS_RESIDENT_MEMORY,
            m::PROCESS_VIRTUAL_MEMORY,
            m::PROCESS_OPEN_FDS,
            m::PROCESS_MAX_FDS,
            m::PROCESS_START_TIME,
            m::PROCESS_THREADS,
        ] {
            let values: Vec<f64> = text
                .lines()
                .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .collect();
            assert_eq!(values.len(), 1, "{name} in\n{text}");
            assert!(values[0] >= 0.0, "{name} in\n{text}");
        }
        assert!(text.contains(&format!("# TYPE {} counter\n", m::PROCESS_CPU_SECONDS)));
    }
}
