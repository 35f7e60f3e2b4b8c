//! `switchboard ctl`: a small client of the public API for the quick start and for operators.
//! Responses print as JSON, one object per line (`-o table` for a table; see `output`); gRPC
//! errors print their code and message on stderr and make the command fail.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::admin_service_client::AdminServiceClient;
use switchboard_proto::v1::agent_service_client::AgentServiceClient;
use switchboard_proto::v1::channel_service_client::ChannelServiceClient;
use switchboard_proto::v1::supervisor_service_client::SupervisorServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::output::{Format, Printer};

/// Default address of `--addr`, the node's default gRPC address.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7400";

#[derive(Debug, Args)]
pub struct Ctl {
    /// The node's gRPC address
    #[arg(long, global = true, env = "SWITCHBOARD_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// Bearer token for a node with authentication (see SECURITY.md)
    #[arg(long, global = true, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate that verifies the node's TLS certificate (for https:// addresses)
    #[arg(long, global = true, env = "SWITCHBOARD_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Name the node's certificate must carry, when it differs from the address's host (a
    /// probe dialing 127.0.0.1 inside the pod)
    #[arg(long, global = true, env = "SWITCHBOARD_TLS_SERVER_NAME", value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// How responses print: json (one object per line, proto3 JSON) or table
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Json)]
    pub output: Format,
    #[command(subcommand)]
    pub command: Command,
}

/// Adds `authorization: Bearer <token>` to every call when a token is given.
#[derive(Debug, Clone)]
struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Tenants
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Skill groups
    #[command(subcommand)]
    Group(GroupCmd),
    /// Agents: settings, status, live events, replies
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Customer messages, as a channel gateway posts them
    #[command(subcommand)]
    Message(MessageCmd),
    /// Conversations
    #[command(subcommand)]
    Conversation(ConversationCmd),
    /// Messages going out to customers, as a channel gateway receives them
    #[command(subcommand)]
    Outbound(OutboundCmd),
    /// What-if on a tenant's live configuration: its groups, policies and agents (those online
    /// or busy now are on shift) under the load given, run through the routing core in virtual
    /// time; prints service level, ASA, abandonment and occupancy per group. Writes nothing.
    Simulate(crate::simulate::SimulateArgs),
    /// The node's gRPC health: exits 0 when SERVING (in a cluster: joined and serving its
    /// shards), 1 otherwise. Usable as a Kubernetes exec probe where the kubelet's gRPC probe
    /// cannot speak TLS.
    Health {
        /// Service to ask about; empty is the node as a whole
        #[arg(long, default_value = "")]
        service: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant
    Create {
        id: String,
        #[arg(long, default_value = "")]
        display_name: String,
        /// Serve it by conversation, agent and router actors spread over the cluster (the
        /// node's default; fixed for the tenant's life)
        #[arg(long, conflicts_with = "tenant_actor")]
        actor_routing: bool,
        /// Serve it by one tenant actor on one node (the cluster moves the whole tenant;
        /// fixed for the tenant's life)
        #[arg(long)]
        tenant_actor: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Create a skill group, or update the fields given (others keep their values)
    Put {
        tenant: String,
        group: String,
        #[arg(long, default_value = "")]
        display_name: String,
        /// How conversations reach agents (default: the server's)
        #[arg(long)]
        offer_mode: Option<OfferMode>,
        /// Which agent gets the next conversation (default: the server's)
        #[arg(long)]
        strategy: Option<Strategy>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Create (offline) or update an agent
    Put {
        tenant: String,
        agent: String,
        /// Skill group id; repeat for several
        #[arg(long = "group", required = true)]
        groups: Vec<String>,
        /// Conversations at once, 1 to 1000
        #[arg(long, default_value_t = 5)]
        capacity: u32,
        #[arg(long, default_value = "")]
        nickname: String,
        #[arg(long)]
        supervisor: bool,
    },
    /// Set an agent's status
    Status { tenant: String, agent: String, status: Status },
    /// Stream the agent's live events until Ctrl-C
    Watch {
        tenant: String,
        agent: String,
        /// Resume after this cursor
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// Send the customer a message in a conversation the agent serves
    Reply { tenant: String, agent: String, conversation: u64, text: String },
    /// Why the agent gets no (more) work: status, load, wrap-ups, groups, and what waits
    /// for it with why it does not take each
    Explain { tenant: String, agent: String },
}

#[derive(Debug, Subcommand)]
pub enum MessageCmd {
    /// Post a customer message; opens a conversation when the customer has none open
    Post {
        tenant: String,
        customer: String,
        text: String,
        #[arg(long, value_enum, default_value_t = ChannelKind::Web)]
        channel: ChannelKind,
        /// Skill group id to route to
        #[arg(long)]
        group: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConversationCmd {
    /// Show a conversation
    Get { tenant: String, number: u64 },
    /// Why a routed conversation waits (position, step, each agent's reason), or why its
    /// agent got it (strategy, figures compared, tie-break)
    Explain { tenant: String, number: u64 },
}

#[derive(Debug, Subcommand)]
pub enum OutboundCmd {
    /// Stream the tenant's messages to customers until Ctrl-C
    Watch {
        tenant: String,
        /// Resume after this cursor (0: the oldest kept)
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OfferMode {
    Auto,
    Offer,
    Pull,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Strategy {
    LeastOccupied,
    LongestIdle,
    RoundRobin,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Status {
    Online,
    Busy,
    Away,
    Invisible,
    Offline,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ChannelKind {
    Web,
    MiniProgram,
    OfficialAccount,
    Messenger,
    Email,
    App,
}

impl From<OfferMode> for pb::OfferMode {
    fn from(m: OfferMode) -> Self {
        match m {
            OfferMode::Auto => pb::OfferMode::AutoAccept,
            OfferMode::Offer => pb::OfferMode::Offer,
            OfferMode::Pull => pb::OfferMode::Pull,
        }
    }
}

impl From<Strategy> for pb::Strategy {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::LeastOccupied => pb::Strategy::LeastOccupied,
            Strategy::LongestIdle => pb::Strategy::LongestIdle,
            Strategy::RoundRobin => pb::Strategy::RoundRobin,
        }
    }
}

impl From<Status> for pb::AgentStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Online => pb::AgentStatus::Online,
            Status::Busy => pb::AgentStatus::Busy,
            Status::Away => pb::AgentStatus::Away,
            Status::Invisible => pb::AgentStatus::Invisible,
            Status::Offline => pb::AgentStatus::Offline,
        }
    }
}

impl From<ChannelKind> for pb::Channel {
    fn from(c: ChannelKind) -> Self {
        match c {
            ChannelKind::Web => pb::Channel::Web,
            ChannelKind::MiniProgram => pb::Channel::MiniProgram,
            ChannelKind::OfficialAccount => pb::Channel::OfficialAccount,
            ChannelKind::Messenger => pb::Channel::Messenger,
            ChannelKind::Email => pb::Channel::Email,
            ChannelKind::App => pb::Channel::App,
        }
    }
}

/// Runs one ctl command.
pub async fn run(ctl: Ctl) -> anyhow::Result<()> {
    let channel =
        connect(&ctl.addr, ctl.ca_file.as_deref(), ctl.tls_server_name.as_deref()).await?;
    let bearer = match &ctl.token {
        Some(token) => Some(
            format!("Bearer {}", token.trim())
                .parse()
                .map_err(|_| anyhow!("--token: not a valid header value"))?,
        ),
        None => None,
    };
    let bearer = Bearer(bearer);
    let admin_channel = channel.clone();
    let mut admin = AdminServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut agents = AgentServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut supervisor = SupervisorServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut channels = ChannelServiceClient::with_interceptor(channel, bearer);
    let mut out = Printer::new(ctl.output);
    match ctl.command {
        Command::Health { service } => {
            let mut health = tonic_health::pb::health_client::HealthClient::new(admin_channel);
            let req = tonic_health::pb::HealthCheckRequest { service: service.clone() };
            let status = call(health.check(req).await)?.status();
            if status != tonic_health::pb::health_check_response::ServingStatus::Serving {
                bail!("not serving: {status:?}");
            }
            out.text("status", "SERVING")
        }
        Command::Simulate(args) => crate::simulate::run(args, ctl.output, &mut admin).await,
        Command::Tenant(TenantCmd::Create { id, display_name, actor_routing, tenant_actor }) => {
            let routing = match (actor_routing, tenant_actor) {
                (true, _) => pb::TenantRouting::Actors,
                (_, true) => pb::TenantRouting::TenantActor,
                _ => pb::TenantRouting::Unspecified,
            };
            let req = pb::CreateTenantRequest {
                tenant_id: id,
                display_name,
                settings: None,
                request_id: request_id(),
                routing: routing.into(),
            };
            out.one("switchboard.v1.Tenant", &call(admin.create_tenant(req).await)?)
        }
        Command::Group(GroupCmd::Put { tenant, group, display_name, offer_mode, strategy }) => {
            let policy = (offer_mode.is_some() || strategy.is_some()).then(|| pb::RoutingPolicy {
                strategy: strategy.map_or(pb::Strategy::Unspecified, Into::into).into(),
                offer_mode: offer_mode.map_or(pb::OfferMode::Unspecified, Into::into).into(),
                ..Default::default()
            });
            let req = pb::PutGroupRequest {
                name: format!("tenants/{tenant}/groups/{group}"),
                display_name,
                policy,
                replies: None,
                request_id: request_id(),
                update_mask: None,
            };
            out.one("switchboard.v1.Group", &call(admin.put_group(req).await)?)
        }
        Command::Agent(AgentCmd::Put { tenant, agent, groups, capacity, nickname, supervisor }) => {
            let req = pb::PutAgentRequest {
                name: agent_name(&tenant, &agent),
                nickname,
                capacity,
                groups: groups.iter().map(|g| group_name(&tenant, g)).collect(),
                replies: None,
                supervisor,
                request_id: request_id(),
                update_mask: None,
                proficiencies: Vec::new(),
            };
            out.one("switchboard.v1.Agent", &call(admin.put_agent(req).await)?)
        }
        Command::Agent(AgentCmd::Status { tenant, agent, status }) => {
            let req = pb::SetStatusRequest {
                agent: agent_name(&tenant, &agent),
                status: pb::AgentStatus::from(status).into(),
                request_id: request_id(),
            };
            out.one("switchboard.v1.Agent", &call(agents.set_status(req).await)?)
        }
        Command::Agent(AgentCmd::Watch { tenant, agent, after }) => {
            let req = pb::StreamAgentEventsRequest {
                agent: agent_name(&tenant, &agent),
                after_cursor: after,
            };
            let stream = call(agents.stream_events(req).await)?;
            watch(stream, "switchboard.v1.AgentEvent", &mut out).await
        }
        Command::Agent(AgentCmd::Reply { tenant, agent, conversation, text }) => {
            let req = pb::SendMessageRequest {
                agent: agent_name(&tenant, &agent),
                conversation: conversation_name(&tenant, conversation),
                text,
                tag: pb::MessageTag::Unspecified.into(),
                request_id: request_id(),
            };
            out.one("switchboard.v1.SendMessageResponse", &call(agents.send_message(req).await)?)
        }
        Command::Message(MessageCmd::Post { tenant, customer, text, channel, group }) => {
            let req = pb::PostMessageRequest {
                customer: format!("tenants/{tenant}/customers/{customer}"),
                channel: pb::Channel::from(channel).into(),
                text,
                group: group.map(|g| group_name(&tenant, &g)).unwrap_or_default(),
                priority: 0,
                nickname: String::new(),
                request_id: request_id(),
            };
            out.one("switchboard.v1.PostMessageResponse", &call(channels.post_message(req).await)?)
        }
        Command::Conversation(ConversationCmd::Get { tenant, number }) => {
            let req =
                pb::GetConversationRequest { conversation: conversation_name(&tenant, number) };
            out.one("switchboard.v1.Conversation", &call(channels.get_conversation(req).await)?)
        }
        Command::Conversation(ConversationCmd::Explain { tenant, number }) => {
            let req =
                pb::ExplainConversationRequest { conversation: conversation_name(&tenant, number) };
            let explained = call(supervisor.explain_conversation(req).await)?;
            out.one("switchboard.v1.ConversationExplanation", &explained)
        }
        Command::Agent(AgentCmd::Explain { tenant, agent }) => {
            let req = pb::ExplainAgentRequest { agent: agent_name(&tenant, &agent) };
            out.one("switchboard.v1.AgentExplanation", &call(supervisor.explain_agent(req).await)?)
        }
        Command::Outbound(OutboundCmd::Watch { tenant, after }) => {
            let req =
                pb::StreamOutboundRequest { tenant: tenant_name(&tenant), after_cursor: after };
            let stream = call(channels.stream_outbound(req).await)?;
            watch(stream, "switchboard.v1.OutboundMessage", &mut out).await
        }
    }
}

async fn connect(
    addr: &str,
    ca_file: Option<&std::path::Path>,
    server_name: Option<&str>,
) -> anyhow::Result<Channel> {
    let uri = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .with_context(|| format!("--addr {addr:?} is not a valid address"))?;
    if uri.starts_with("https://") {
        let ca_file = ca_file.context("an https:// address needs --ca-file to verify the node")?;
        let ca =
            std::fs::read(ca_file).with_context(|| format!("--ca-file {}", ca_file.display()))?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(name) = server_name {
            tls = tls.domain_name(name);
        }
        endpoint = endpoint.tls_config(tls).context("tls configuration")?;
    }
    endpoint
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("cannot connect to switchboard at {uri}"))
}

/// Prints each message of a server stream as it arrives, until the stream ends or Ctrl-C.
async fn watch<T: prost::Message>(
    mut stream: tonic::Streaming<T>,
    full_name: &str,
    out: &mut Printer,
) -> anyhow::Result<()> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            next = stream.message() => match next {
                Ok(Some(message)) => out.item(full_name, &message)?,
                Ok(None) => return Ok(()),
                Err(status) => return Err(status_error(status)),
            },
            _ = &mut ctrl_c => return Ok(()),
        }
    }
}

pub(crate) fn call<T>(result: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    result.map(tonic::Response::into_inner).map_err(status_error)
}

fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow!("{:?} ({}): {}", status.code(), status.code() as i32, status.message())
}

fn tenant_name(tenant: &str) -> String {
    format!("tenants/{tenant}")
}

fn agent_name(tenant: &str, agent: &str) -> String {
    format!("tenants/{tenant}/agents/{agent}")
}

fn group_name(tenant: &str, group: &str) -> String {
    format!("tenants/{tenant}/groups/{group}")
}

fn conversation_name(tenant: &str, number: u64) -> String {
    format!("tenants/{tenant}/conversations/{number}")
}

/// A fresh idempotency key per mutating call: wall-clock time, process id and a counter, so
/// two ctl runs never share one.
fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // The clock only makes the key unique across runs; nothing is decided on it.
    #[allow(clippy::disallowed_methods)]
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("ctl-{nanos:x}-{:x}-{n}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_fresh_and_short() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        assert!(a.len() <= 64, "{a}");
    }

    #[test]
    fn names_follow_the_api() {
        assert_eq!(tenant_name("acme"), "tenants/acme");
        assert_eq!(agent_name("acme", "alice"), "tenants/acme/agents/alice");
        assert_eq!(conversation_name("acme", 7), "tenants/acme/conversations/7");
    }
}
