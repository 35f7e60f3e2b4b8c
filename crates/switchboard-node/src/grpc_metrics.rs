//! gRPC server metrics under the names Grafana's gRPC dashboards already know
//! (`grpc_server_started_total`, `grpc_server_handled_total`, `grpc_server_handling_seconds`),
//! as a tower layer around every service.
//!
//! The status code comes from the response headers: tonic answers an error "trailers-only", so
//! `grpc-status` is there; a successful unary call carries it in the trailers, which means OK.
//! For server-streaming calls the figures describe the call's start (the stream was opened),
//! not its end.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};

use metrics::{Counter, Histogram, counter, describe_counter, describe_histogram, histogram};
use rustc_hash::FxHashMap;
use tonic::codegen::http;

pub const STARTED: &str = "grpc_server_started_total";
pub const HANDLED: &str = "grpc_server_handled_total";
pub const HANDLING_SECONDS: &str = "grpc_server_handling_seconds";
/// Bucket bounds of `grpc_server_handling_seconds`.
pub const HANDLING_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub fn describe() {
    describe_counter!(STARTED, "RPCs started on the server.");
    describe_counter!(HANDLED, "RPCs completed on the server, by status code.");
    describe_histogram!(
        HANDLING_SECONDS,
        metrics::Unit::Seconds,
        "Time to handle an RPC (to the start of a stream)."
    );
}

/// The layer; build it after the metrics recorder is installed (the handles it keeps are
/// the recorder's).
#[derive(Debug, Clone, Default)]
pub struct GrpcMetricsLayer {
    handles: Arc<HandleCache>,
}

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner, handles: Arc::clone(&self.handles) }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    handles: Arc<HandleCache>,
}

/// The series of one method, registered once: looking a series up by its labels on every
/// call (building the key, hashing it, finding it in the registry) cost about 1.5% of the
/// node's CPU under load.
#[derive(Debug)]
struct Handles {
    service: String,
    method: String,
    kind: &'static str,
    started: Counter,
    seconds: Histogram,
    /// `handled` with code OK; other codes are looked up when they happen.
    ok: Counter,
}

impl Handles {
    fn new(path: &str) -> Self {
        let (service, method) = labels(path);
        let kind = grpc_type(&method);
        let labels = [
            ("grpc_service", service.clone()),
            ("grpc_method", method.clone()),
            ("grpc_type", kind.to_owned()),
        ];
        let started = counter!(STARTED, &labels);
        let seconds = histogram!(HANDLING_SECONDS, &labels);
        let mut with_code = labels.to_vec();
        with_code.push(("grpc_code", code_name(tonic::Code::Ok)));
        let ok = counter!(HANDLED, &with_code);
        Handles { service, method, kind, started, seconds, ok }
    }

    fn handled(&self, code: tonic::Code) {
        if code == tonic::Code::Ok {
            self.ok.increment(1);
            return;
        }
        let labels = [
            ("grpc_service", self.service.clone()),
            ("grpc_method", self.method.clone()),
            ("grpc_type", self.kind.to_owned()),
            ("grpc_code", code_name(code)),
        ];
        counter!(HANDLED, &labels).increment(1);
    }
}

/// Handles by request path. Bounded: paths are the client's to choose, so past
/// [`MAX_CACHED_PATHS`] a path's handles are built for its call only (the labels themselves
/// stay bounded by [`labels`] either way).
#[derive(Debug, Default)]
struct HandleCache(RwLock<FxHashMap<String, Arc<Handles>>>);

/// Far more than the API has methods.
const MAX_CACHED_PATHS: usize = 256;

impl HandleCache {
    fn get(&self, path: &str) -> Arc<Handles> {
        let cached = self.0.read().unwrap_or_else(PoisonError::into_inner).get(path).cloned();
        if let Some(handles) = cached {
            return handles;
        }
        let handles = Arc::new(Handles::new(path));
        let mut map = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() < MAX_CACHED_PATHS {
            map.insert(path.to_owned(), Arc::clone(&handles));
        }
        handles
    }
}

/// Service and method of a gRPC path `/package.Service/Method`; anything else is "unknown"
/// (labels stay bounded whatever a client sends).
fn labels(path: &str) -> (String, String) {
    let known = |s: &str| {
        s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
    };
    match path.trim_start_matches('/').split_once('/') {
        Some((service, method)) if known(service) && known(method) => {
            (service.to_owned(), method.to_owned())
        }
        _ => ("unknown".into(), "unknown".into()),
    }
}

fn grpc_type(method: &str) -> &'static str {
    if method == "PostMessages" || method == "DeskCommands" || method == "DeliverStream" {
        "bidi_stream"
    } else if method.starts_with("Stream") || method == "ServerReflectionInfo" || method == "Watch"
    {
        "server_stream"
    } else {
        "unary"
    }
}

/// Whether the call at this gRPC path (`/pkg.Service/Method`) answers with a stream.
pub fn is_server_stream(path: &str) -> bool {
    grpc_type(path.rsplit('/').next().unwrap_or_default()) != "unary"
}

pub(crate) fn code_name(code: tonic::Code) -> String {
    match code {
        tonic::Code::Ok => "OK".into(),
        other => format!("{other:?}"),
    }
}

impl<S, B, R> tower_service::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let handles = self.handles.get(req.uri().path());
        handles.started.increment(1);
        let started = tokio::time::Instant::now();
        let call = self.inner.call(req);
        Box::pin(async move {
            let mut result = call.await;
            if let Ok(resp) = &mut result {
                // Before the code is read, so that the code counted is the one sent.
                crate::oversize::rewrite(resp.headers_mut());
            }
            let code = match &result {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                Err(_) => tonic::Code::Unknown,
            };
            handles.seconds.record(started.elapsed().as_secs_f64());
            handles.handled(code);
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_bounded() {
        assert_eq!(
            labels("/switchboard.v1.AgentService/Accept"),
            ("switchboard.v1.AgentService".into(), "Accept".into())
        );
        assert_eq!(labels("/evil/../../x y"), ("unknown".into(), "unknown".into()));
        assert_eq!(labels("nonsense"), ("unknown".into(), "unknown".into()));
        assert_eq!(grpc_type("StreamEvents"), "server_stream");
        assert_eq!(grpc_type("PostMessage"), "unary");
        assert_eq!(grpc_type("PostMessages"), "bidi_stream");
        assert_eq!(grpc_type("DeskCommands"), "bidi_stream");
        assert_eq!(grpc_type("DeliverStream"), "bidi_stream");
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::InvalidArgument), "InvalidArgument");
    }
}
