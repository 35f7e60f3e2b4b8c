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
use std::task::{Context, Poll};

use metrics::{counter, describe_counter, describe_histogram, histogram};
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

#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
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
    if method.starts_with("Stream") || method == "ServerReflectionInfo" || method == "Watch" {
        "server_stream"
    } else {
        "unary"
    }
}

/// Whether the call at this gRPC path (`/pkg.Service/Method`) answers with a stream.
pub fn is_server_stream(path: &str) -> bool {
    grpc_type(path.rsplit('/').next().unwrap_or_default()) == "server_stream"
}

fn code_name(code: tonic::Code) -> String {
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
        let (service, method) = labels(req.uri().path());
        let kind = grpc_type(&method);
        counter!(STARTED, "grpc_service" => service.clone(), "grpc_method" => method.clone(), "grpc_type" => kind)
            .increment(1);
        let started = tokio::time::Instant::now();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            let code = match &result {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from_i32),
                Err(_) => tonic::Code::Unknown,
            };
            let labels = [
                ("grpc_service", service),
                ("grpc_method", method),
                ("grpc_type", kind.to_owned()),
            ];
            histogram!(HANDLING_SECONDS, &labels).record(started.elapsed().as_secs_f64());
            let mut with_code = labels.to_vec();
            with_code.push(("grpc_code", code_name(code)));
            counter!(HANDLED, &with_code).increment(1);
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
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(code_name(tonic::Code::InvalidArgument), "InvalidArgument");
    }
}
