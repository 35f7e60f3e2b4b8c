//! The tower layer that authenticates every call before it reaches a service.
//!
//! - `/switchboard.v1.*` (the public API): a valid bearer token, or the node is in the
//!   unauthenticated mode. A [`Call`] goes into the request's extensions for the handler.
//! - `/switchboard.internal.*` (node to node): a client certificate that verified against the
//!   cluster CA when `tls.client_ca_file` is set; [`NodePeer`] goes into the extensions.
//! - A public call forwarded by another node (it carries `x-switchboard-hop`, see
//!   `cluster::forward`) needs both: the caller's token, and the forwarding node's certificate.
//! - Anything else (health checking, reflection) passes untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::{Call, Caller, Gate, NodePeer};
use crate::error::Error;

pub const PUBLIC_PREFIX: &str = "/switchboard.v1.";
pub const INTERNAL_PREFIX: &str = "/switchboard.internal.";

#[derive(Debug, Clone)]
pub struct AuthLayer {
    gate: Arc<Gate>,
}

impl AuthLayer {
    pub fn new(gate: Arc<Gate>) -> AuthLayer {
        AuthLayer { gate }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth { inner, gate: Arc::clone(&self.gate) }
    }
}

#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    gate: Arc<Gate>,
}

/// The caller of a public call, or the status refusing it.
pub fn authenticate(gate: &Gate, headers: &http::HeaderMap) -> Result<Caller, Error> {
    let Some(verifier) = &gate.verifier else { return Ok(Caller::Unauthenticated) };
    let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        Error::Unauthenticated("missing credentials: send `authorization: Bearer <token>`".into())
    })?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            Error::Unauthenticated("the authorization header is not `Bearer <token>`".into())
        })?;
    let claims = verifier.verify(token).map_err(Error::Unauthenticated)?;
    Ok(Caller::Token(Arc::new(claims)))
}

/// Whether an internal call comes from a verified peer node.
fn node_peer<B>(gate: &Gate, req: &http::Request<B>) -> Result<NodePeer, Error> {
    if !gate.node_certs_required {
        // No cluster CA configured: only an unauthenticated (loopback) node accepts internal
        // calls; a node with tokens but without mTLS accepts none.
        return match gate.verifier {
            None => Ok(NodePeer),
            Some(_) => Err(Error::Unauthenticated(
                "internal calls need mutual TLS: set tls.client_ca_file".into(),
            )),
        };
    }
    let verified = req
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .is_some_and(|certs| !certs.is_empty());
    if verified {
        Ok(NodePeer)
    } else {
        Err(Error::Unauthenticated(
            "internal calls need a client certificate signed by the cluster CA".into(),
        ))
    }
}

impl<S, B, R> tower_service::Service<http::Request<B>> for Auth<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let forwarded = req.headers().contains_key(crate::cluster::forward::HOP);
        let checked = if path.starts_with(PUBLIC_PREFIX) {
            let from_node =
                if forwarded { node_peer(&self.gate, &req).map(|_| ()) } else { Ok(()) };
            from_node.and_then(|()| authenticate(&self.gate, req.headers())).map(|caller| {
                req.extensions_mut().insert(Call::new(
                    caller,
                    path.clone(),
                    Arc::clone(&self.gate),
                ));
            })
        } else if path.starts_with(INTERNAL_PREFIX) {
            node_peer(&self.gate, &req).map(|peer| {
                req.extensions_mut().insert(peer);
            })
        } else {
            Ok(())
        };
        match checked {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(e) => {
                tracing::debug!(%path, error = %e, "refused before the service");
                let status = tonic::Status::from(e);
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}
