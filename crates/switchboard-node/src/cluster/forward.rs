//! Forwarding: any node accepts any public call and sends it to the node that owns its tenant.
//!
//! A tower layer in front of the public services reads the request's first field (every public
//! request names its tenant there: `tenants/{t}/…`, or `tenant_id` when creating one; the
//! table is built from the API's descriptors, so a new method is covered automatically) and
//! routes the call, unchanged and with the caller's metadata, over a node-to-node gRPC channel.
//! Responses, streams included, come back as they are.
//!
//! A tenant created on actors (`TENANT_ROUTING_ACTORS`) has the calls its conversation and
//! agent actors serve routed to the owner of *their* shard instead ([`actor_table`],
//! [`call_key`], [`CallKey::actor_shard`]): a customer's calls by the shard of its name, a
//! conversation's by the shard its number carries, an agent's own calls by its agent actor's
//! shard. The mode is a cached read ([`Meshes::actor_routing`]); every other call, and every
//! call of a tenant-actor tenant, goes by tenant.
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

use switchboard_core::AgentId;

use super::{Ownership, Route};
use crate::actors::meshes::Meshes;
use crate::actors::placement::{ActorKey, customer_shard, shard_in_number};
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
pub(crate) const UNARY_TIMEOUT: Duration = Duration::from_secs(10);

/// How to find the tenant in a method's request: field 1, a resource name or a bare id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantField {
    Name,
    Id,
}

/// Calls `f` with each public method's service name, method name, gRPC path and request
/// message, as the API's descriptors describe them; client-streaming methods are left out.
fn each_method(mut f: impl FnMut(&str, &str, String, &prost_types::DescriptorProto)) {
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
    for file in set.file.iter().filter(|f| f.package() == "switchboard.v1") {
        for service in &file.service {
            // A client stream (PostMessages) names a tenant per message, not once: it is
            // served where it lands, and its handler passes each message on.
            for method in service.method.iter().filter(|m| !m.client_streaming()) {
                let Some(input) = messages.get(method.input_type()) else { continue };
                let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                f(service.name(), method.name(), path, input);
            }
        }
    }
}

/// Public methods (gRPC paths) and where their tenant is.
pub fn method_table() -> HashMap<String, TenantField> {
    use prost_types::field_descriptor_proto::Type;
    let mut table = HashMap::new();
    each_method(|_, _, path, input| {
        let Some(first) = input.field.iter().find(|f| f.number() == 1) else { return };
        if first.r#type() != Type::String {
            return;
        }
        let how = if first.name() == "tenant_id" { TenantField::Id } else { TenantField::Name };
        table.insert(path, how);
    });
    table
}

/// The tenant a framed gRPC request names, if it can be read.
pub fn tenant_of(frame: &[u8], how: TenantField) -> Option<String> {
    let value = string_field(frame, 1)?;
    match how {
        TenantField::Id => Some(value.to_owned()),
        TenantField::Name => name_parts(value).map(|(t, _)| t.to_owned()),
    }
}

/// `msg` as an uncompressed gRPC frame, what [`call_key`] reads (a command stream's message,
/// placed as the call it stands for).
pub fn framed(msg: &impl prost::Message) -> Vec<u8> {
    let len = msg.encoded_len();
    let mut frame = Vec::with_capacity(5 + len);
    frame.push(0);
    frame.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
    msg.encode_raw(&mut frame);
    frame
}

/// The string in field `number` of a framed gRPC request (the first occurrence), if the
/// frame can be read that far.
fn string_field(frame: &[u8], number: u64) -> Option<&str> {
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
                if field == number {
                    return std::str::from_utf8(value).ok();
                }
            }
            _ => return None,
        }
    }
    None
}

/// `tenants/{t}/…` → (t, the rest after `tenants/{t}/`, empty if none).
fn name_parts(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("tenants/")?;
    let (tenant, child) = rest.split_once('/').unwrap_or((rest, ""));
    (!tenant.is_empty()).then_some((tenant, child))
}

/// Which actor serves a method's calls for a tenant on actors (ARCHITECTURE.md, "Where each
/// public call goes"), and where its request names that actor. Methods not listed go to the
/// tenant's shard (admin, supervisor, the router's reads, archive searches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorField {
    /// The customer named in this field (`tenants/{t}/customers/{u}`; the tenant in field 1):
    /// its conversation actor.
    Customer(u32),
    /// The conversation named in this field (`tenants/{t}/conversations/{n}`; the tenant in
    /// field 1): the conversation actor, in the shard its number carries.
    Conversation(u32),
    /// The agent named in field 1 (`tenants/{t}/agents/{a}`): its agent actor.
    Agent,
}

/// The AgentService calls an agent actor serves (field 1 names the agent). Accept, Decline,
/// Pick and ListAssigned go by tenant, to the router's node: the router decides the first
/// three as calls of its own in one write, and answers the last from its durable view, which
/// holds what those answered (`service::agent_actors::Desk::by_router`).
const AGENT_CALLS: &[&str] = &["SetStatus", "StreamEvents", "EndWrapUp"];
/// The AgentService calls a conversation actor serves (by their `conversation` field).
const CONVERSATION_CALLS: &[&str] = &[
    "SendMessage",
    "MarkRead",
    "EndConversation",
    "InviteRating",
    "SetBotHosting",
    "UpdateConversation",
];
/// The AgentService calls a customer's conversation actor serves (by their `customer` field).
const CUSTOMER_CALLS: &[&str] = &["UpdateCustomerProfile"];
/// The AdminService calls a customer's conversation actor serves (field 1 names the customer).
const ADMIN_CUSTOMER_CALLS: &[&str] = &["PutCustomer"];
/// The SupervisorService calls a conversation actor serves (by their `conversation` field;
/// field 1 names the supervisor). The supervisor's other commands go to the router: by tenant.
const SUPERVISOR_CONVERSATION_CALLS: &[&str] = &["EndConversation", "Whisper"];

/// Public methods (gRPC paths) served by a conversation or agent actor for a tenant on
/// actors, and where their request names it: the ChannelService's by the name of field 1
/// (`customer`, `conversation`), the AgentService's by the lists above, the field numbers
/// read from the descriptors.
pub fn actor_table() -> HashMap<String, ActorField> {
    let mut table = HashMap::new();
    each_method(|service, method, path, input| {
        let named = |name: &str| input.field.iter().find(|f| f.name() == name).map(|f| f.number());
        let field = match (service, method) {
            ("ChannelService", _) if named("customer") == Some(1) => ActorField::Customer(1),
            ("AdminService", m)
                if ADMIN_CUSTOMER_CALLS.contains(&m) && named("name") == Some(1) =>
            {
                ActorField::Customer(1)
            }
            ("ChannelService", _) if named("conversation") == Some(1) => {
                ActorField::Conversation(1)
            }
            ("AgentService", m) if named("agent") == Some(1) => match named("conversation") {
                _ if AGENT_CALLS.contains(&m) => ActorField::Agent,
                _ if CUSTOMER_CALLS.contains(&m) => match named("customer").map(u32::try_from) {
                    Some(Ok(n)) => ActorField::Customer(n),
                    _ => return,
                },
                Some(n) if CONVERSATION_CALLS.contains(&m) => match u32::try_from(n) {
                    Ok(n) => ActorField::Conversation(n),
                    Err(_) => return,
                },
                _ => return,
            },
            ("SupervisorService", m)
                if named("supervisor") == Some(1) && SUPERVISOR_CONVERSATION_CALLS.contains(&m) =>
            {
                match named("conversation").map(u32::try_from) {
                    Some(Ok(n)) => ActorField::Conversation(n),
                    _ => return,
                }
            }
            _ => return,
        };
        table.insert(path, field);
    });
    table
}

/// What a public call is routed by: its tenant, or for a tenant on actors the key of the
/// actor that serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallKey {
    Tenant(String),
    Customer { tenant: String, customer: String },
    Conversation { tenant: String, number: u64 },
    Agent { tenant: String, agent: String },
}

impl CallKey {
    pub fn tenant(&self) -> &str {
        match self {
            CallKey::Tenant(tenant)
            | CallKey::Customer { tenant, .. }
            | CallKey::Conversation { tenant, .. }
            | CallKey::Agent { tenant, .. } => tenant,
        }
    }

    /// The shard a call goes to if its tenant is on actors, out of `shards`: the customer's
    /// ([`customer_shard`]), the one a conversation number carries, the agent actor's (by
    /// `agent`, the agent's number, if its name is known). A name that does not parse, a
    /// number that carries no shard or an unknown agent: the tenant's shard, whose owner
    /// answers the call (NOT_FOUND, INVALID_ARGUMENT…).
    pub fn actor_shard(&self, shards: u32, agent: Option<AgentId>) -> u32 {
        match self {
            CallKey::Tenant(tenant) => super::shard_of(tenant, shards),
            CallKey::Customer { tenant, customer } => customer_shard(tenant, customer, shards),
            CallKey::Conversation { tenant, number } => match shard_in_number(*number) {
                Some(shard) => shard % shards.max(1),
                None => super::shard_of(tenant, shards),
            },
            CallKey::Agent { tenant, .. } => match agent {
                Some(agent) => ActorKey::Agent { tenant, agent }.shard(shards),
                None => super::shard_of(tenant, shards),
            },
        }
    }
}

/// The key a framed request of a method is routed by: its tenant (`how`), and for the
/// methods of [`actor_table`] the actor it names (`actor`), if its names parse. `None`: no
/// tenant could be read (the receiving node answers).
pub fn call_key(frame: &[u8], how: TenantField, actor: Option<ActorField>) -> Option<CallKey> {
    let tenant = tenant_of(frame, how)?;
    let child = |number: u64, collection: &str| {
        let (t, rest) = name_parts(string_field(frame, number)?)?;
        let (kind, id) = rest.split_once('/')?;
        (t == tenant && kind == collection && !id.is_empty() && !id.contains('/'))
            .then(|| id.to_owned())
    };
    let key = match actor {
        Some(ActorField::Customer(n)) => child(u64::from(n), "customers")
            .map(|customer| CallKey::Customer { tenant: tenant.clone(), customer }),
        Some(ActorField::Conversation(n)) => child(u64::from(n), "conversations")
            .and_then(|id| id.parse().ok())
            .map(|number| CallKey::Conversation { tenant: tenant.clone(), number }),
        Some(ActorField::Agent) => {
            child(1, "agents").map(|agent| CallKey::Agent { tenant: tenant.clone(), agent })
        }
        None => None,
    };
    Some(key.unwrap_or(CallKey::Tenant(tenant)))
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
    /// The methods a tenant on actors routes by actor key.
    actors: Arc<HashMap<String, ActorField>>,
    /// Tells a tenant's routing mode and its agents' numbers; without it (tools and tests)
    /// every call is routed by its tenant.
    meshes: Option<Arc<Meshes>>,
    max_request_bytes: usize,
}

impl ForwardLayer {
    pub fn new(
        ownership: Option<Arc<Ownership>>,
        hub: crate::hub::Hub,
        max_request_bytes: usize,
    ) -> ForwardLayer {
        ForwardLayer {
            ownership,
            hub,
            table: Arc::new(method_table()),
            actors: Arc::new(actor_table()),
            meshes: None,
            max_request_bytes,
        }
    }

    /// Routes the calls of tenants on actors by actor key, reading modes from `meshes`.
    pub fn with_meshes(mut self, meshes: Arc<Meshes>) -> ForwardLayer {
        self.meshes = Some(meshes);
        self
    }

    /// The shard a call goes to: its tenant's, or for a tenant on actors its actor's. `Err`:
    /// the answer to give at once (the tenant's mode could not be read).
    async fn shard(&self, ownership: &Ownership, key: &CallKey) -> Result<u32, tonic::Status> {
        let tenant = key.tenant();
        let by_tenant = ownership.shard_of(tenant);
        let Some(meshes) = self.meshes.as_ref().filter(|_| !matches!(key, CallKey::Tenant(_)))
        else {
            return Ok(by_tenant);
        };
        match meshes.actor_routing(tenant).await {
            Ok(true) => {}
            // Its owner answers NOT_FOUND (or it was created a moment ago: then it is there).
            Ok(false) | Err(crate::error::Error::NotFound(_)) => return Ok(by_tenant),
            Err(e) => {
                return Err(tonic::Status::unavailable(format!(
                    "tenant {tenant}'s routing mode could not be read ({e}); retry"
                )));
            }
        }
        let agent = match key {
            // The agent's number, from the tenant's configuration as this node's mesh holds
            // it, checked once against the stored version if it does not know the agent (one
            // created since it loaded, `actors::config`); still unknown, it goes by tenant
            // (its owner answers NOT_FOUND).
            CallKey::Agent { agent, .. } => match meshes.mesh(tenant).await {
                Ok(mesh) => match mesh.config().agent_by_id(agent) {
                    Some(found) => Some(found),
                    None => match mesh.refresh_stored().await {
                        Ok(()) => mesh.config().agent_by_id(agent),
                        Err(_) => None,
                    },
                },
                Err(_) => None,
            },
            _ => None,
        };
        Ok(key.actor_shard(ownership.shards(), agent))
    }
}

/// The node that serves a call now, as [`ForwardLayer::place`] found it.
#[derive(Debug)]
pub struct Remote {
    pub addr: String,
    shard: u32,
    owner: Option<super::Owner>,
    ownership: Arc<Ownership>,
}

impl Remote {
    /// The channel to the node.
    pub fn channel(&self) -> Result<Channel, tonic::Status> {
        self.ownership.peers().channel(&self.addr)
    }

    /// Resolves once this node's view no longer shows that node holding the call's shard.
    pub fn moved(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        owner_changed(self.ownership.clone(), self.shard, self.owner.clone())
    }
}

/// Where a call goes now, as the forward layer would send it.
#[derive(Debug)]
pub enum Placed {
    /// This node serves it.
    Here,
    /// Another node does.
    There(Remote),
    /// Neither can be told now (no owner, a key or mode that cannot be read, a single node):
    /// the forward layer answers, or waits and retries.
    Unknown,
}

impl ForwardLayer {
    /// Where a call of `path` (a gRPC path) whose framed request is `frame` goes now.
    pub async fn place(&self, path: &str, frame: &[u8]) -> Placed {
        let (Some(ownership), Some(how)) = (self.ownership.clone(), self.table.get(path)) else {
            return Placed::Unknown;
        };
        let Some(key) = call_key(frame, *how, self.actors.get(path).copied()) else {
            return Placed::Unknown;
        };
        let Ok(shard) = self.shard(&ownership, &key).await else { return Placed::Unknown };
        match ownership.route_shard(shard) {
            Route::Local(_) => Placed::Here,
            Route::Remote { addr, .. } => {
                let owner = ownership.owner_of_shard(shard);
                Placed::There(Remote { addr, shard, owner, ownership })
            }
            Route::Unowned { .. } => Placed::Unknown,
        }
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
        let actor = self.layer.actors.get(req.uri().path()).copied();
        // Take the service that was polled ready; leave a fresh clone for the next call.
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        let layer = self.layer.clone();
        Box::pin(route(inner, layer, ownership, (how, actor), req))
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
    (how, actor): (TenantField, Option<ActorField>),
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
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            let over = format!("over {} bytes", layer.max_request_bytes);
            return Ok(crate::oversize::refusal(&over).into_http());
        }
        Err(e) => {
            let status = tonic::Status::resource_exhausted(format!(
                "request body could not be read (limit {} bytes): {e}",
                layer.max_request_bytes
            ));
            return Ok(status.into_http());
        }
    };
    // A malformed request, or one already forwarded: this node answers it.
    let key = call_key(&body, how, actor).filter(|_| !hopped);
    let tenant = key.as_ref().map(|k| k.tenant().to_owned());
    let shard = match &key {
        None => None,
        Some(key) => match layer.shard(&ownership, key).await {
            Ok(shard) => Some(shard),
            Err(status) => return Ok(status.into_http()),
        },
    };
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        let route = shard.map(|shard| ownership.route_shard(shard));
        let resp = match route {
            None | Some(Route::Local(_)) => {
                std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
                inner.call(rebuild(&parts, &body, false)).await?
            }
            Some(Route::Remote { node, addr }) => {
                counter!(m::FORWARDED, "outcome" => "forwarded").increment(1);
                let (tenant, shard) = (tenant.clone().unwrap_or_default(), shard.unwrap_or(0));
                let owner = ownership.owner_of_shard(shard);
                let call = forward(ownership.peers(), &addr, rebuild(&parts, &body, true));
                // Streams live as long as the client wants; their head comes at once.
                let streaming = crate::grpc_metrics::is_server_stream(parts.uri.path());
                let limit = if streaming { WAIT * 30 } else { UNARY_TIMEOUT };
                // A paused or cut-off owner holds the connection open: its call is given up
                // as soon as the shard moves (safe to retry, as after a timeout), not when
                // the connection's keepalive finally fails.
                // The same watch then ends a relayed stream when the shard moves.
                let mut moved = owner_changed(ownership.clone(), shard, owner);
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
                        "shard {shard} (tenant {tenant}) moved away from node {node} while the call was in flight; retry"
                    )),
                }
            }
            Some(Route::Unowned { shard }) => unavailable(format!(
                "shard {shard} has no owner right now (a handover or failover is in progress); retry"
            )),
        };
        if shard.is_none() || !is_moved(&resp) {
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

/// Resolves once this node's view no longer shows `owner` holding `shard` (the one the call
/// went to): its lease lapsed (the key was deleted) or another node claimed it under a newer
/// epoch.
fn owner_changed(
    ownership: Arc<Ownership>,
    shard: u32,
    owner: Option<super::Owner>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        // Subscribed before the first check, so a change in between is not missed.
        let mut changes = ownership.subscribe();
        while ownership.owner_of_shard(shard) == owner {
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
                "the call's shard moved away from node {}; reconnect with your last cursor",
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
        // Served where it lands; its handler routes each message.
        assert!(!table.contains_key("/switchboard.v1.ChannelService/PostMessages"));
        assert!(!table.contains_key("/switchboard.v1.AgentService/DeskCommands"));
    }

    /// Every public method is routed: by its tenant, or for a tenant on actors by the key of
    /// the actor that serves it (ARCHITECTURE.md, "Where each public call goes"); a method
    /// renamed or added lands in one class or the other, never nowhere.
    #[test]
    fn every_public_method_is_routed_by_its_tenant_or_its_actor() {
        use prost_types::FileDescriptorSet;
        let (tenants, actors) = (method_table(), actor_table());
        let set = FileDescriptorSet::decode(switchboard_proto::v1::FILE_DESCRIPTOR_SET).unwrap();
        let mut all = Vec::new();
        for file in set.file.iter().filter(|f| f.package() == "switchboard.v1") {
            for service in &file.service {
                for method in &service.method {
                    all.push(format!("/switchboard.v1.{}/{}", service.name(), method.name()));
                }
            }
        }
        assert!(all.len() >= 46, "{}", all.len());
        for path in &all {
            let per_message = [
                "/switchboard.v1.ChannelService/PostMessages",
                "/switchboard.v1.AgentService/DeskCommands",
            ]
            .contains(&path.as_str());
            if path == "/switchboard.v1.AdminService/ListTenants" || per_message {
                assert!(!tenants.contains_key(path) && !actors.contains_key(path));
                continue;
            }
            let how = tenants.get(path).unwrap_or_else(|| panic!("{path} is not routed"));
            if actors.contains_key(path) {
                assert_eq!(how, &TenantField::Name, "{path}: its tenant in a resource name");
            }
        }
        let of = |class: ActorField| {
            let mut v: Vec<&str> = actors
                .iter()
                .filter(|(_, c)| **c == class)
                .map(|(p, _)| p.trim_start_matches("/switchboard.v1."))
                .collect();
            v.sort_unstable();
            v
        };
        assert_eq!(
            of(ActorField::Customer(1)),
            [
                "AdminService/PutCustomer",
                "ChannelService/OpenService",
                "ChannelService/PostMessage"
            ]
        );
        assert_eq!(of(ActorField::Customer(2)), ["AgentService/UpdateCustomerProfile"]);
        assert_eq!(
            of(ActorField::Conversation(1)),
            [
                "ChannelService/CloseConversation",
                "ChannelService/GetConversation",
                "ChannelService/RateConversation",
                "ChannelService/RequestHuman",
            ]
        );
        let by_field_2: Vec<String> = CONVERSATION_CALLS
            .iter()
            .map(|m| format!("AgentService/{m}"))
            .chain(SUPERVISOR_CONVERSATION_CALLS.iter().map(|m| format!("SupervisorService/{m}")))
            .collect();
        let mut by_field_2: Vec<&str> = by_field_2.iter().map(String::as_str).collect();
        by_field_2.sort_unstable();
        assert_eq!(of(ActorField::Conversation(2)), by_field_2);
        let agents: Vec<String> = AGENT_CALLS.iter().map(|m| format!("AgentService/{m}")).collect();
        let mut agents: Vec<&str> = agents.iter().map(String::as_str).collect();
        agents.sort_unstable();
        assert_eq!(of(ActorField::Agent), agents);
        let conversations = CONVERSATION_CALLS.len() + SUPERVISOR_CONVERSATION_CALLS.len();
        let customers = ADMIN_CUSTOMER_CALLS.len() + CUSTOMER_CALLS.len();
        assert_eq!(actors.len(), 2 + 4 + conversations + AGENT_CALLS.len() + customers);
        // The rest (admin, supervisor, the router's reads, transfers, searches): by tenant.
        for path in [
            "/switchboard.v1.AgentService/Transfer",
            // The queues it lists are the router's.
            "/switchboard.v1.AgentService/ListUnaccepted",
            "/switchboard.v1.AgentService/GetHistory",
            "/switchboard.v1.SupervisorService/ReassignBatch",
            "/switchboard.v1.SupervisorService/SetAgentStatus",
            "/switchboard.v1.ChannelService/StreamOutbound",
            "/switchboard.v1.EventService/StreamEvents",
            // Reads of the `customers` table the actors write: any node.
            "/switchboard.v1.AdminService/GetCustomer",
            "/switchboard.v1.AdminService/ListCustomers",
            "/switchboard.v1.AgentService/GetCustomerProfile",
            "/switchboard.v1.AgentService/SearchCustomers",
        ] {
            assert!(tenants.contains_key(path) && !actors.contains_key(path), "{path}");
        }
    }

    #[test]
    fn reads_the_actor_key_a_call_names() {
        use switchboard_proto::v1 as pb;
        let key = |frame: Vec<u8>, actor| call_key(&frame, TenantField::Name, actor);
        let post = pb::PostMessageRequest {
            customer: "tenants/acme/customers/bob".into(),
            text: "tenants/evil/customers/eve".into(),
            ..Default::default()
        };
        assert_eq!(
            key(framed(&post), Some(ActorField::Customer(1))),
            Some(CallKey::Customer { tenant: "acme".into(), customer: "bob".into() })
        );
        assert_eq!(key(framed(&post), None), Some(CallKey::Tenant("acme".into())));
        // An agent's edit of a customer's profile: by the customer of field 2.
        let profile = pb::UpdateCustomerProfileRequest {
            agent: "tenants/acme/agents/ann".into(),
            customer: "tenants/acme/customers/bob".into(),
            ..Default::default()
        };
        assert_eq!(
            key(framed(&profile), Some(ActorField::Customer(2))),
            Some(CallKey::Customer { tenant: "acme".into(), customer: "bob".into() })
        );
        let close = pb::ConversationRequest {
            conversation: "tenants/acme/conversations/4503668347895809".into(),
            request_id: "r".into(),
        };
        assert_eq!(
            key(framed(&close), Some(ActorField::Conversation(1))),
            Some(CallKey::Conversation { tenant: "acme".into(), number: 4_503_668_347_895_809 })
        );
        let send = pb::SendMessageRequest {
            agent: "tenants/bank/agents/alice".into(),
            conversation: "tenants/bank/conversations/12".into(),
            ..Default::default()
        };
        assert_eq!(
            key(framed(&send), Some(ActorField::Conversation(2))),
            Some(CallKey::Conversation { tenant: "bank".into(), number: 12 })
        );
        assert_eq!(
            key(framed(&send), Some(ActorField::Agent)),
            Some(CallKey::Agent { tenant: "bank".into(), agent: "alice".into() })
        );
        // What does not parse (another tenant, another collection, no number, nothing) is
        // routed by the tenant of field 1: its owner answers.
        for conversation in [
            "tenants/other/conversations/12",
            "tenants/bank/customers/12",
            "tenants/bank/conversations/x",
            "tenants/bank/conversations/12/more",
            "",
        ] {
            let odd = pb::SendMessageRequest { conversation: conversation.into(), ..send.clone() };
            assert_eq!(
                key(framed(&odd), Some(ActorField::Conversation(2))),
                Some(CallKey::Tenant("bank".into())),
                "{conversation:?}"
            );
        }
        let nameless = pb::PostMessageRequest { customer: "tenants/acme".into(), ..post };
        assert_eq!(
            key(framed(&nameless), Some(ActorField::Customer(1))),
            Some(CallKey::Tenant("acme".into()))
        );
        assert_eq!(call_key(b"", TenantField::Name, Some(ActorField::Agent)), None);
    }

    #[test]
    fn an_actor_key_places_the_call_in_its_actors_shard() {
        use crate::actors::placement::number_in_shard;
        use crate::cluster::shard_of;
        let shards = 1024;
        let tenant = || "acme".to_owned();
        let customer = CallKey::Customer { tenant: tenant(), customer: "bob".into() };
        assert_eq!(customer.actor_shard(shards, None), customer_shard("acme", "bob", shards));
        let number = number_in_shard(77, 5).unwrap();
        let conversation = CallKey::Conversation { tenant: tenant(), number };
        assert_eq!(conversation.actor_shard(shards, None), 77);
        // A small number (a tenant actor's) carries no shard: the tenant's.
        let small = CallKey::Conversation { tenant: tenant(), number: 12 };
        assert_eq!(small.actor_shard(shards, None), shard_of("acme", shards));
        let agent = CallKey::Agent { tenant: tenant(), agent: "alice".into() };
        let alice = ActorKey::Agent { tenant: "acme", agent: AgentId(3) }.shard(shards);
        assert_eq!(agent.actor_shard(shards, Some(AgentId(3))), alice);
        assert_eq!(agent.actor_shard(shards, None), shard_of("acme", shards), "unknown agent");
        assert_eq!(CallKey::Tenant(tenant()).actor_shard(shards, None), shard_of("acme", shards));
    }

    #[test]
    fn reads_the_tenant_from_the_first_field() {
        use switchboard_proto::v1 as pb;
        let post = pb::PostMessageRequest {
            customer: "tenants/acme/customers/bob".into(),
            text: "tenants/evil".into(),
            ..Default::default()
        };
        assert_eq!(tenant_of(&framed(&post), TenantField::Name).as_deref(), Some("acme"));
        let accept = pb::AgentConversationRequest {
            agent: "tenants/bank/agents/alice".into(),
            conversation: "tenants/bank/conversations/7".into(),
            request_id: "r".into(),
        };
        assert_eq!(tenant_of(&framed(&accept), TenantField::Name).as_deref(), Some("bank"));
        let create = pb::CreateTenantRequest { tenant_id: "new".into(), ..Default::default() };
        assert_eq!(tenant_of(&framed(&create), TenantField::Id).as_deref(), Some("new"));
        assert_eq!(tenant_of(b"\x00\x00\x00\x00\x02\x0a", TenantField::Name), None);
        assert_eq!(tenant_of(b"", TenantField::Name), None);
    }

    /// A call in flight is given up when the owner of the shard it went to changes (for a
    /// tenant on actors, its actor's shard), not when another shard (its tenant's) moves.
    #[tokio::test]
    async fn the_in_flight_watch_follows_the_shard_the_call_went_to() {
        use std::collections::BTreeMap;

        use crate::cluster::{Owner, View};
        let view = |actor_epoch, tenant_epoch| View {
            members: BTreeMap::from([("b".to_owned(), "127.0.0.1:2".to_owned())]),
            owners: HashMap::from([
                (1, Owner { node: "b".into(), epoch: actor_epoch, lease: 0 }),
                (2, Owner { node: "b".into(), epoch: tenant_epoch, lease: 0 }),
            ]),
        };
        let ownership = Ownership::fixed("a".into(), 8, [], view(1, 1), None);
        let mut moved = owner_changed(ownership.clone(), 1, ownership.owner_of_shard(1));
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(moved.as_mut().poll(&mut cx).is_pending());
        ownership.set_view(view(1, 2));
        assert!(moved.as_mut().poll(&mut cx).is_pending(), "another shard moved");
        ownership.set_view(view(3, 2));
        assert!(moved.as_mut().poll(&mut cx).is_ready(), "its shard was claimed anew");
    }

    /// Served calls as a recording service saw them: (node, path, forwarded).
    type Seen = Arc<Mutex<Vec<(&'static str, String, bool)>>>;

    /// The public services' stand-in: records each call and answers OK, saying which node
    /// served it. `S` picks the service name it is mounted under on the remote node.
    #[derive(Clone)]
    struct Recorder<const S: usize> {
        node: &'static str,
        seen: Seen,
    }

    const SERVICES: [&str; 3] = [
        "switchboard.v1.ChannelService",
        "switchboard.v1.AgentService",
        "switchboard.v1.AdminService",
    ];

    impl<const S: usize> tonic::server::NamedService for Recorder<S> {
        const NAME: &'static str = SERVICES[S];
    }

    impl<const S: usize> tower_service::Service<http::Request<Body>> for Recorder<S> {
        type Response = http::Response<Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<http::Response<Body>, std::convert::Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<Body>) -> Self::Future {
            let hopped = req.headers().contains_key(HOP);
            self.seen.lock().unwrap().push((self.node, req.uri().path().to_owned(), hopped));
            let resp = http::Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", "0")
                .header("x-node", self.node)
                .body(Body::empty())
                .unwrap();
            std::future::ready(Ok(resp))
        }
    }

    /// Node "a" serves the even shards of 8, node "b" (a real server on a loopback port,
    /// recording what reaches it) the odd ones. A tenant on actors ("acts") has its customer,
    /// conversation and agent calls served by the owner of their actor's shard; a
    /// tenant-actor tenant ("plain") has every call served by the owner of its shard.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_actor_tenants_calls_go_to_their_actors_shard_and_others_to_their_tenants() {
        use std::collections::BTreeMap;

        use switchboard_proto::internal::v1::command::Op;
        use switchboard_proto::v1 as pb;
        use switchboard_store::{SqliteOptions, SqliteStore, Store};

        use crate::actors::MeshOptions;
        use crate::actors::placement::number_in_shard;
        use crate::cluster::{Owner, View, shard_of};
        use crate::registry::{Options, Registry};

        const SHARDS: u32 = 8;
        let owner_of = |shard: u32| if shard.is_multiple_of(2) { "a" } else { "b" };

        // The tenants, created by a tenant actor on the shared store.
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
        let hub = crate::hub::Hub::default();
        let registry =
            Registry::load(store.clone(), hub.clone(), Options::default()).await.unwrap();
        for (tenant, routing) in
            [("acts", pb::TenantRouting::Actors), ("plain", pb::TenantRouting::TenantActor)]
        {
            let create = pb::CreateTenantRequest {
                tenant_id: tenant.into(),
                routing: routing as i32,
                ..Default::default()
            };
            registry.create_tenant(create).await.unwrap();
        }
        let agents: Vec<String> = (0..8).map(|i| format!("agent{i}")).collect();
        for agent in &agents {
            let put = Op::PutAgent(pb::PutAgentRequest {
                name: format!("tenants/acts/agents/{agent}"),
                capacity: 1,
                ..Default::default()
            });
            registry.command("acts", put, "").await.unwrap();
        }

        // Node b: the recorder behind a real server.
        let seen = Seen::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let b = |seen: &Seen| Recorder::<0> { node: "b", seen: seen.clone() };
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(b(&seen))
                .add_service(Recorder::<1> { node: "b", seen: seen.clone() })
                .add_service(Recorder::<2> { node: "b", seen: seen.clone() })
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );

        // Node a: the layer in front of the recorder, with a fixed ownership and the meshes.
        let view = View {
            members: BTreeMap::from([
                ("a".to_owned(), "127.0.0.1:1".to_owned()),
                ("b".to_owned(), addr.to_string()),
            ]),
            owners: (0..SHARDS)
                .map(|s| (s, Owner { node: owner_of(s).into(), epoch: 1, lease: 0 }))
                .collect(),
        };
        let local = (0..SHARDS).filter(|s| owner_of(*s) == "a").map(|s| (s, 1));
        let ownership = Ownership::fixed("a".into(), SHARDS, local, view, None);
        let meshes =
            Arc::new(Meshes::new(store.clone(), ownership.clone(), MeshOptions::default()));
        let layer = ForwardLayer::new(Some(ownership), hub, 1 << 20).with_meshes(meshes.clone());
        let mut a =
            tower_layer::Layer::layer(&layer, Recorder::<0> { node: "a", seen: seen.clone() });

        // Which node served a call (and whether it was forwarded there).
        let mut call = async |path: &str, msg: &dyn Fn() -> Vec<u8>, hop: bool| {
            let mut req = http::Request::new(Body::new(
                http_body_util::Full::new(bytes::Bytes::from(msg()))
                    .map_err(|never| match never {}),
            ));
            *req.method_mut() = http::Method::POST;
            *req.uri_mut() = format!("http://127.0.0.1{path}").parse().unwrap();
            req.headers_mut()
                .insert("content-type", http::HeaderValue::from_static("application/grpc"));
            req.headers_mut().insert("te", http::HeaderValue::from_static("trailers"));
            if hop {
                req.headers_mut().insert(HOP, http::HeaderValue::from_static("1"));
            }
            let resp = tower_service::Service::call(&mut a, req).await.unwrap();
            let node = resp.headers().get("x-node").map(|v| v.to_str().unwrap().to_owned());
            let last = seen.lock().unwrap().last().cloned().unwrap();
            assert_eq!(Some(last.0), node.as_deref(), "{path}: {:?}", resp.headers());
            assert_eq!(last.1, path);
            if !hop {
                assert_eq!(last.2, last.0 == "b", "{path}: forwarded calls and only they hop");
            }
            last.0
        };

        let post = "/switchboard.v1.ChannelService/PostMessage";
        let by_tenant = |t: &str| owner_of(shard_of(t, SHARDS));
        let (mut here, mut there, mut not_the_tenants) = (0, 0, 0);
        for i in 0..16 {
            let customer = format!("c{i}");
            let msg = |tenant: &str| {
                let customer = format!("tenants/{tenant}/customers/{customer}");
                framed(&pb::PostMessageRequest {
                    customer,
                    text: "hi".into(),
                    ..Default::default()
                })
            };
            let expected = owner_of(customer_shard("acts", &customer, SHARDS));
            let served = call(post, &|| msg("acts"), false).await;
            assert_eq!(served, expected, "{customer}");
            (here, there) = if served == "a" { (here + 1, there) } else { (here, there + 1) };
            not_the_tenants += usize::from(served != by_tenant("acts"));
            // A tenant-actor tenant's calls follow its tenant's shard, whatever the customer.
            assert_eq!(call(post, &|| msg("plain"), false).await, by_tenant("plain"));
        }
        assert!(here > 0 && there > 0 && not_the_tenants > 0, "{here} {there} {not_the_tenants}");

        // Conversation calls: the shard their number carries; a small number: the tenant's.
        let get = "/switchboard.v1.ChannelService/GetConversation";
        let send = "/switchboard.v1.AgentService/SendMessage";
        for shard in 0..SHARDS {
            let n = number_in_shard(shard, 1).unwrap();
            let conversation = format!("tenants/acts/conversations/{n}");
            let get_msg =
                || framed(&pb::GetConversationRequest { conversation: conversation.clone() });
            assert_eq!(call(get, &get_msg, false).await, owner_of(shard));
            let send_msg = || {
                framed(&pb::SendMessageRequest {
                    agent: "tenants/acts/agents/agent0".into(),
                    conversation: conversation.clone(),
                    text: "hello".into(),
                    ..Default::default()
                })
            };
            assert_eq!(call(send, &send_msg, false).await, owner_of(shard));
            let plain = || {
                framed(&pb::GetConversationRequest {
                    conversation: format!("tenants/plain/conversations/{n}"),
                })
            };
            assert_eq!(call(get, &plain, false).await, by_tenant("plain"));
        }
        let small = || {
            framed(&pb::GetConversationRequest {
                conversation: "tenants/acts/conversations/7".into(),
            })
        };
        assert_eq!(call(get, &small, false).await, by_tenant("acts"));

        // The agent's own calls: its agent actor's shard, by its number in the mesh's
        // configuration; an unknown agent: the tenant's.
        let status = "/switchboard.v1.AgentService/SetStatus";
        let config = meshes.mesh("acts").await.unwrap().config().clone();
        let mut agent_not_the_tenants = 0;
        for agent in &agents {
            let (id, _) = config.agent_names.iter().find(|(_, n)| *n == agent).unwrap();
            let expected = owner_of(ActorKey::Agent { tenant: "acts", agent: *id }.shard(SHARDS));
            let msg = || {
                framed(&pb::SetStatusRequest {
                    agent: format!("tenants/acts/agents/{agent}"),
                    ..Default::default()
                })
            };
            assert_eq!(call(status, &msg, false).await, expected, "{agent}");
            agent_not_the_tenants += usize::from(expected != by_tenant("acts"));
        }
        assert!(agent_not_the_tenants > 0);
        let unknown = || {
            framed(&pb::SetStatusRequest {
                agent: "tenants/acts/agents/nobody".into(),
                ..Default::default()
            })
        };
        assert_eq!(call(status, &unknown, false).await, by_tenant("acts"));

        // Everything else by tenant; a forwarded call is served where it arrives; a tenant
        // that does not exist goes by its name (its owner answers NOT_FOUND).
        let get_tenant = "/switchboard.v1.AdminService/GetTenant";
        let msg = || framed(&pb::GetTenantRequest { name: "tenants/acts".into() });
        assert_eq!(call(get_tenant, &msg, false).await, by_tenant("acts"));
        let elsewhere = (0..64)
            .map(|i| format!("c{i}"))
            .find(|c| owner_of(customer_shard("acts", c, SHARDS)) == "b")
            .unwrap();
        let msg = || {
            framed(&pb::PostMessageRequest {
                customer: format!("tenants/acts/customers/{elsewhere}"),
                ..Default::default()
            })
        };
        assert_eq!(call(post, &msg, true).await, "a", "one hop at most");
        let ghost = || {
            framed(&pb::PostMessageRequest {
                customer: "tenants/ghost/customers/c1".into(),
                ..Default::default()
            })
        };
        assert_eq!(call(post, &ghost, false).await, by_tenant("ghost"));
        server.abort();
        registry.shutdown().await;
    }
}
