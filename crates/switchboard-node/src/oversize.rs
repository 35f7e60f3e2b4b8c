//! A request over `grpc.max_request_bytes` is RESOURCE_EXHAUSTED, as gRPC's own
//! implementations answer it and as the forwarding layer of a cluster already does. tonic
//! refuses it OUT_OF_RANGE ("decoded message length too large"), a code clients read as a
//! bad argument value; the metrics layer (`grpc_metrics`) rewrites that one refusal with
//! [`rewrite`] before it counts the code, and says which setting limits it ([`refusal`],
//! the forwarding layer's words too). Every other status, OUT_OF_RANGE included (a stream
//! cursor older than the oldest entry kept), passes untouched.

use tonic::codegen::http;

/// What tonic's decoder says of a message over the limit.
const TONIC_TOO_LARGE: &str = "Error, decoded message length too large";

/// The refusal of a request over the limit, `detail` saying by how much.
pub(crate) fn refusal(detail: &str) -> tonic::Status {
    tonic::Status::resource_exhausted(format!(
        "request too large: {detail} (the node's grpc.max_request_bytes); send a shorter text \
         or note, or split a batch"
    ))
}

/// Rewrites tonic's trailers-only refusal of an oversized message in place (the metrics
/// layer calls it on every response, before it reads the code).
pub(crate) fn rewrite(headers: &mut http::HeaderMap) {
    // Cheap for a success: a unary answer carries its status in the trailers, not here.
    let Some(told) = tonic::Status::from_header_map(headers).filter(|s| {
        s.code() == tonic::Code::OutOfRange && s.message().starts_with(TONIC_TOO_LARGE)
    }) else {
        return;
    };
    // "…too large: found N bytes, the limit is: M bytes", said once.
    let detail = told.message().trim_start_matches(TONIC_TOO_LARGE).trim_start_matches(": ");
    let status = refusal(detail);
    headers.remove("grpc-message");
    headers.remove("grpc-status-details-bin");
    // Cannot fail: the message is ours and percent-encoded by tonic.
    let _ = status.add_header(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(status: &tonic::Status) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        status.add_header(&mut h).unwrap();
        h
    }

    #[test]
    fn an_oversized_request_is_resource_exhausted_and_names_the_setting() {
        let tonic_says = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 70012 bytes, the limit is: 65536 bytes",
        );
        let mut h = headers(&tonic_says);
        rewrite(&mut h);
        let read = tonic::Status::from_header_map(&h).unwrap();
        assert_eq!(read.code(), tonic::Code::ResourceExhausted);
        assert!(
            read.message().starts_with("request too large: found 70012 bytes"),
            "{}",
            read.message()
        );
        assert!(read.message().contains("grpc.max_request_bytes"), "{}", read.message());
    }

    #[test]
    fn other_statuses_pass_untouched() {
        for status in [
            tonic::Status::out_of_range("cursor 3 of s is older than the oldest entry kept (9)"),
            tonic::Status::invalid_argument("Error, decoded message length too large"),
            tonic::Status::ok(""),
        ] {
            let mut h = headers(&status);
            let before = h.clone();
            rewrite(&mut h);
            assert_eq!(h, before);
        }
    }
}
