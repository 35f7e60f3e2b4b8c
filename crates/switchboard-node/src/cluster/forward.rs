//! Forwarding: any node accepts any public call and sends it to the node that owns its tenant.
//!
//! A tower layer in front of the public services reads the request's first field (every public
//! request names its tenant there: `tenants/{t}/…`, or `tenant_id` when creating one; the
//! table is built from the API's descriptors, so a new method is covered automatically) and
//! routes the call, unchanged and with the caller's metadata, over a node-to-node gRPC channel.
//! Responses, streams included, come back as they are.
//!
//! A forwarded call carries `x-switchboard-hop`; the receiver never forwards it again, so a
//! call crosses at most one hop. A node that does not own the tenant (any more) answers
//! UNAVAILABLE with `x-switchboard-moved`; the sender then waits for its view to change and
//! retries, a bounded number of times. Retried mutations are idempotent by `request_id`, so a
//! duplicate is dropped by the owner.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use metrics::counter;
use prost::Message as _;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::{Channel, Endpoint};

use super::{Ownership, Route};
use crate::metrics as m;
use crate::registry::MOVED;

/// Marks a call one node forwarded to another.
pub const HOP: &str = "x-switchboard-hop";
/// Attempts per call before the caller hears UNAVAILABLE.
const ATTEMPTS: usize = 6;
/// How long one attempt waits for the view to change before retrying.
const WAIT: Duration = Duration::from_millis(1000);
/// How long a forwarded unary call may take before the owner counts as unreachable (a
/// paused or partitioned node holds the connection open). Retrying is safe: the owner
/// drops a duplicate by its request id, and a deposed owner's write is fenced.
const UNARY_TIMEOUT: Duration = Duration::from_secs(10);

/// How to find the tenant in a method's request: field 1, a resource name or a bare id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantField {
    Name,
    Id,
}

/// Public methods (gRPC paths) and where their tenant is.
pub fn method_table() -> HashMap<String, TenantField> {
    use prost_types::field_descriptor_proto::Type;
    let set = prost_types::FileDescriptorSet::decode(switchboard_proto::v1::FILE_DESCRIPTOR_SET)
        .unwrap_or_default();
    let messages: HashMap<String, &prost_types::DescriptorProto> = set
        .file
        .iter()
        .flat_map(|f| {
            let package = f.package().to_owned();
            f.message_type.iter().map(move |m| (format!(".{package}.{}", m.name()), m))
        })
        .collect();
    let mut table = HashMap::new();
    for file in set.file.iter().filter(|f| f.package() == "switchboard.v1") {
        for service in &file.service {
            for method in &service.method {
                let Some(input) = messages.get(method.input_type()) else { continue };
                let Some(first) = input.field.iter().find(|f| f.number() == 1) else { continue };
                if first.r#type() != Type::String {
                    continue;
                }
                let how =
                    if first.name() == "tenant_id" { TenantField::Id } else { TenantField::Name };
                let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                table.insert(path, how);
            }
        }
    }
    table
}

/// The tenant a framed gRPC request names, if it can be read.
pub fn tenant_of(frame: &[u8], how: TenantField) -> Option<String> {
    // gRPC framing: compressed flag, 4-byte length, message. Nothing here compresses.
    let (&flag, rest) = frame.split_first()?;
    if flag != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
    let mut msg = rest.get(4..4 + len)?;
    while !msg.is_empty() {
        let key = prost::encoding::decode_varint(&mut msg).ok()?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                prost::encoding::decode_varint(&mut msg).ok()?;
            }
            1 => msg = msg.get(8..)?,
            5 => msg = msg.get(4..)?,
            2 => {
                let n = usize::try_from(prost::encoding::decode_varint(&mut msg).ok()?).ok()?;
                let value = msg.get(..n)?;
                msg = &msg[n..];
                if field == 1 {
                    let value = std::str::from_utf8(value).ok()?;
                    return match how {
                        TenantField::Id => Some(value.to_owned()),
                        TenantField::Name => {
                            let mut parts = value.split('/');
                            (parts.next() == Some("tenants"))
                                .then(|| parts.next())
                                .flatten()
                                .filter(|t| !t.is_empty())
                                .map(str::to_owned)
                        }
                    };
                }
            }
            _ => return None,
        }
    }
    None
}

/// Channels to other nodes, one per address, connected lazily and reused; over mutual TLS
/// (this node's certificate, peers checked against the cluster CA) when the node has one.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    tls: Option<crate::auth::tls::ClusterTls>,
}

impl Peers {
    pub fn new(tls: Option<crate::auth::tls::ClusterTls>) -> Peers {
        Peers { channels: Arc::default(), tls }
    }

    /// The channel to the node at `addr`, created on first use.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::Status> {
        let mut channels = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = channels.get(addr) {
            return Ok(c.clone());
        }
        let endpoint = match &self.tls {
            None => Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| tonic::Status::internal(format!("peer address {addr}: {e}")))?,
            Some(tls) => crate::auth::tls::cluster_endpoint(&format!("https://{addr}"), tls, None)
                .map_err(tonic::Status::from)?,
        };
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        channels.insert(addr.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// Routes public calls to their owner in a cluster; passes everything through on a single
/// node (`ownership` is `None`).
#[derive(Debug, Clone)]
pub struct ForwardLayer {
    ownership: Option<Arc<Ownership>>,
    /// Ends forwarded streams when this node shuts down, as local streams end.
    hub: crate::hub::Hub,
    table: Arc<HashMap<String, TenantField>>,
    max_request_bytes: usize,
}

impl ForwardLayer {
    pub fn new(
        ownership: Option<Arc<Ownership>>,
        hub: crate::hub::Hub,
        max_request_bytes: usize,
    ) -> ForwardLayer {
        ForwardLayer { ownership, hub, table: Arc::new(method_table()), max_request_bytes }
    }
}

impl<S> tower_layer::Layer<S> for ForwardLayer {
    type Service = Forward<S>;

    fn layer(&self, inner: S) -> Forward<S> {
        Forward { inner, layer: self.clone() }
    }
}

#[derive(Debug, Clone)]
pub struct Forward<S> {
    inner: S,
    layer: ForwardLayer,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S> tower_service::Service<http::Request<Body>> for Forward<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let how = self.layer.table.get(req.uri().path()).copied();
        let (Some(how), Some(ownership)) = (how, self.layer.ownership.clone()) else {
            return Box::pin(self.inner.call(req));
        };
        // Take the service that was polled ready; leave a fresh clone for the next call.
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        let layer = self.layer.clone();
        Box::pin(route(inner, layer, ownership, how, req))
    }
}

/// A retryable refusal the sender's retry loop follows (see [`crate::registry::MOVED`]).
fn unavailable(message: String) -> http::Response<Body> {
    crate::registry::moved_status(message).into_http()
}

fn is_moved(resp: &http::Response<Body>) -> bool {
    resp.headers().contains_key(MOVED)
}

/// A copy of the request with the buffered body (requests are sent again on retries).
fn rebuild(parts: &http::request::Parts, body: &bytes::Bytes, hop: bool) -> http::Request<Body> {
    let mut req = http::Request::new(Body::new(
        http_body_util::Full::new(body.clone()).map_err(|never| match never {}),
    ));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    // What the layers before this one found (the authenticated call, the peer's
    // certificates) stays with the request when it is served here.
    *req.extensions_mut() = parts.extensions.clone();
    if hop {
        req.headers_mut().insert(HOP, http::HeaderValue::from_static("1"));
    }
    req
}

async fn route<S>(
    mut inner: S,
    layer: ForwardLayer,
    ownership: Arc<Ownership>,
    how: TenantField,
    req: http::Request<Body>,
) -> Result<http::Response<Body>, S::Error>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    let (parts, body) = req.into_parts();
    let hopped = parts.headers.contains_key(HOP);
    let limited = http_body_util::Limited::new(body, layer.max_request_bytes + 5);
    let body = match limited.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let status = tonic::Status::resource_exhausted(format!(
                "request body could not be read (limit {} bytes): {e}",
                layer.max_request_bytes
            ));
            return Ok(status.into_http());
        }
    };
    let tenant = tenant_of(&body, how);
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        let route = match (&tenant, hopped) {
            // A malformed request, or one already forwarded: this node answers it.
            (None, _) | (_, true) => None,
            (Some(t), false) => Some(ownership.route(t)),
        };
        let resp = match route {
            None | Some(Route::Local(_)) => {
                std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
                inner.call(rebuild(&parts, &body, false)).await?
            }
            Some(Route::Remote { node, addr }) => {
                counter!(m::FORWARDED, "outcome" => "forwarded").increment(1);
                let tenant = tenant.clone().unwrap_or_default();
                let owner = ownership.owner_of(&tenant);
                let call = forward(ownership.peers(), &addr, rebuild(&parts, &body, true));
                // Streams live as long as the client wants; their head comes at once.
                let streaming = crate::grpc_metrics::is_server_stream(parts.uri.path());
                let limit = if streaming { WAIT * 30 } else { UNARY_TIMEOUT };
                // A paused or cut-off owner holds the connection open: its call is given up
                // as soon as the shard moves (safe to retry, as after a timeout), not when
                // the connection's keepalive finally fails.
                // The same watch then ends a relayed stream when the shard moves.
                let mut moved = owner_changed(ownership.clone(), tenant.clone(), owner);
                tokio::select! {
                    answered = tokio::time::timeout(limit, call) => match answered {
                        Ok(Ok(resp)) => {
                            resp.map(|b| Body::new(Relayed::new(b, &layer.hub, moved, node.clone())))
                        }
                        Ok(Err(e)) => {
                            unavailable(format!("owner {node} at {addr} unreachable: {e}"))
                        }
                        Err(_) => unavailable(format!(
                            "owner {node} at {addr} did not answer within {limit:?}"
                        )),
                    },
                    () = &mut moved => unavailable(format!(
                        "tenant {tenant} moved away from node {node} while the call was in flight; retry"
                    )),
                }
            }
            Some(Route::Unowned { shard }) => unavailable(format!(
                "shard {shard} has no owner right now (a handover or failover is in progress); retry"
            )),
        };
        if hopped || tenant.is_none() || !is_moved(&resp) {
            return Ok(resp);
        }
        if attempt + 1 < ATTEMPTS {
            counter!(m::FORWARDED, "outcome" => "retried").increment(1);
            ownership.next_change(WAIT).await;
        }
        last = Some(resp);
    }
    counter!(m::FORWARDED, "outcome" => "gave_up").increment(1);
    Ok(last.unwrap_or_else(|| unavailable("no owner found; retry".into())))
}

async fn forward(
    peers: &Peers,
    addr: &str,
    req: http::Request<Body>,
) -> Result<http::Response<Body>, String> {
    let mut channel = peers.channel(addr).map_err(|s| s.message().to_owned())?;
    std::future::poll_fn(|cx| tower_service::Service::poll_ready(&mut channel, cx))
        .await
        .map_err(|e| e.to_string())?;
    tower_service::Service::call(&mut channel, req).await.map_err(|e| e.to_string())
}

/// Resolves once this node's view no longer shows `owner` holding the tenant's shard: its
/// lease lapsed (the key was deleted) or another node claimed it under a newer epoch.
fn owner_changed(
    ownership: Arc<Ownership>,
    tenant: String,
    owner: Option<super::Owner>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        // Subscribed before the first check, so a change in between is not missed.
        let mut changes = ownership.subscribe();
        while ownership.owner_of(&tenant) == owner {
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    })
}

/// A forwarded response body, relayed as it comes, that ends with UNAVAILABLE (so the client
/// resumes from its cursor, as the README tells it to) when this node shuts down, when the
/// tenant's owner changes, or when the connection to the owner fails. Without the second, a
/// stream to a paused owner would hang until the connection's keepalive gave up, long after
/// the tenant was served again elsewhere; without the third it would end with INTERNAL.
struct Relayed {
    inner: Body,
    closed: Pin<Box<dyn Future<Output = ()> + Send>>,
    moved: Pin<Box<dyn Future<Output = ()> + Send>>,
    owner: String,
    done: bool,
}

impl Relayed {
    fn new(
        inner: Body,
        hub: &crate::hub::Hub,
        moved: Pin<Box<dyn Future<Output = ()> + Send>>,
        owner: String,
    ) -> Self {
        Relayed { inner, closed: Box::pin(hub.closed()), moved, owner, done: false }
    }

    fn end(
        &mut self,
        message: &str,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, tonic::Status>>> {
        self.done = true;
        let mut trailers = http::HeaderMap::new();
        // tonic writes grpc-status and the percent-encoded grpc-message.
        let _ = tonic::Status::unavailable(message).add_header(&mut trailers);
        Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
    }
}

impl http_body::Body for Relayed {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        if this.closed.as_mut().poll(cx).is_ready() {
            return this.end("node shutting down; reconnect with your last cursor");
        }
        if this.moved.as_mut().poll(cx).is_ready() {
            let message = format!(
                "the tenant moved away from node {}; reconnect with your last cursor",
                this.owner
            );
            return this.end(&message);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Err(e))) => {
                let message = format!(
                    "connection to node {} lost ({}); reconnect with your last cursor",
                    this.owner,
                    e.message()
                );
                this.end(&message)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(msg: &impl prost::Message) -> Vec<u8> {
        let bytes = msg.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
        out
    }

    #[test]
    fn every_public_method_but_listing_tenants_names_its_tenant_first() {
        let table = method_table();
        assert!(table.len() >= 45, "{}", table.len());
        assert_eq!(table.get("/switchboard.v1.AdminService/CreateTenant"), Some(&TenantField::Id));
        assert_eq!(
            table.get("/switchboard.v1.ChannelService/PostMessage"),
            Some(&TenantField::Name)
        );
        assert!(table.contains_key("/switchboard.v1.AgentService/StreamEvents"));
        assert!(!table.contains_key("/switchboard.v1.AdminService/ListTenants"));
    }

    #[test]
    fn reads_the_tenant_from_the_first_field() {
        use switchboard_proto::v1 as pb;
        let post = pb::PostMessageRequest {
            customer: "tenants/acme/customers/bob".into(),
            text: "tenants/evil".into(),
            ..Default::default()
        };
        assert_eq!(tenant_of(&frame(&post), TenantField::Name).as_deref(), Some("acme"));
        let accept = pb::AgentConversationRequest {
            agent: "tenants/bank/agents/alice".into(),
            conversation: "tenants/bank/conversations/7".into(),
            request_id: "r".into(),
        };
        assert_eq!(tenant_of(&frame(&accept), TenantField::Name).as_deref(), Some("bank"));
        let create = pb::CreateTenantRequest { tenant_id: "new".into(), ..Default::default() };
        assert_eq!(tenant_of(&frame(&create), TenantField::Id).as_deref(), Some("new"));
        assert_eq!(tenant_of(b"\x00\x00\x00\x00\x02\x0a", TenantField::Name), None);
        assert_eq!(tenant_of(b"", TenantField::Name), None);
    }
}
