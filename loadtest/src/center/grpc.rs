//! Switchboard as a [`Backend`]: the public gRPC API of one node or several. Customers and
//! agents are spread over the targets (customer `n` and agent `a` use target `n mod N` and
//! `a mod N`); setup goes to the first. A cluster node accepts any call and forwards it to the
//! owner, so the targets must be one logical system (or the same node under several
//! addresses).

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use switchboard_proto::v1::{
    self as pb, admin_service_client::AdminServiceClient, agent_service_client::AgentServiceClient,
    channel_service_client::ChannelServiceClient,
};
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::{Backend, Event, Scenario};

/// How long an agent's desktop waits before it reconnects its event stream.
const RECONNECT_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Agents' event streams on one connection, at most. A node lets a connection hold 512
/// streams at once (`auth::limits::http2::MAX_CONCURRENT_STREAMS`) and an event stream holds
/// its slot for the whole run, so past that every later call on the connection would wait
/// for ever (a run with 2,000 agents on 2 connections hung at sign-in). Half of it, so that
/// the unary calls on the same connection keep room.
pub(crate) const STREAMS_PER_CONNECTION: usize = 256;

#[derive(Debug)]
pub struct Switchboard {
    /// Per target, its connections.
    targets: Vec<Vec<Channel>>,
    /// The targets' addresses, for connections added by `setup`.
    addresses: Vec<String>,
    /// Per target, the connections agents' event streams use: `targets`' with more added by
    /// `setup` when the agents' streams would not fit in them ([`STREAMS_PER_CONNECTION`]).
    streams: std::sync::OnceLock<Vec<Vec<Channel>>>,
    tenant: String,
    groups: std::sync::Mutex<Vec<String>>,
    next_request: AtomicU64,
    label: String,
    routing: pb::TenantRouting,
    /// Per target, a PostMessages stream per connection (`--gateway-stream`); `None`: one
    /// PostMessage call per customer message.
    gateways: Option<Vec<Vec<super::streams::GatewayStream>>>,
    /// Per target, a DeskCommands stream per connection (`--desk-stream`); `None`: one call
    /// per agent command.
    desks: Option<Vec<Vec<super::streams::DeskStream>>>,
}

impl Switchboard {
    /// Connects `connections` channels to each target.
    pub async fn connect(targets: &[String], connections: usize) -> anyhow::Result<Switchboard> {
        let mut all = Vec::new();
        for t in targets {
            let mut channels = Vec::new();
            for _ in 0..connections.max(1) {
                channels.push(connect(t).await?);
            }
            all.push(channels);
        }
        anyhow::ensure!(!all.is_empty(), "no target");
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let tenant =
            format!("load-{}-{}", std::process::id(), RUNS.fetch_add(1, Ordering::Relaxed));
        Ok(Switchboard {
            targets: all,
            addresses: targets.to_vec(),
            streams: std::sync::OnceLock::new(),
            tenant,
            groups: std::sync::Mutex::new(Vec::new()),
            next_request: AtomicU64::new(0),
            label: format!(
                "switchboard ({} target{})",
                targets.len(),
                if targets.len() == 1 { "" } else { "s" }
            ),
            // The product's default (`registry::DEFAULT_ROUTING`), named so the label is
            // true whatever that default becomes.
            routing: pb::TenantRouting::Actors,
            gateways: None,
            desks: None,
        })
    }

    /// Customers' messages go on PostMessages streams, one per connection, instead of one
    /// PostMessage call each.
    pub async fn with_gateway_streams(self) -> anyhow::Result<Switchboard> {
        let gateways = per_connection(&self.targets, super::streams::GatewayStream::open).await?;
        let label = format!("{}, gateway streams", self.label);
        Ok(Switchboard { gateways: Some(gateways), label, ..self })
    }

    /// Agents' commands (accept, reply, end) go on DeskCommands streams, one per connection,
    /// instead of one call each.
    pub async fn with_desk_streams(self) -> anyhow::Result<Switchboard> {
        let desks = per_connection(&self.targets, super::streams::DeskStream::open).await?;
        let label = format!("{}, desk streams", self.label);
        Ok(Switchboard { desks: Some(desks), label, ..self })
    }

    /// The load's tenant is served by one tenant actor (the earlier design), instead of
    /// conversation, agent and router actors.
    pub fn with_tenant_actor(self) -> Switchboard {
        let label = format!("{}, tenant actor", self.label);
        Switchboard { routing: pb::TenantRouting::TenantActor, label, ..self }
    }

    fn channel(&self, key: u64) -> Channel {
        pick(&self.targets, key)
    }

    /// The connection agent `agent`'s event stream uses: the one its calls use, unless
    /// `setup` added connections for the streams.
    fn stream_channel(&self, agent: u32) -> Channel {
        pick(self.streams.get().unwrap_or(&self.targets), u64::from(agent))
    }

    /// Adds connections to each target until its agents' event streams fit
    /// ([`STREAMS_PER_CONNECTION`]); with few agents, the streams share the calls' connections
    /// as before.
    async fn connect_streams(&self, agents: u32) -> anyhow::Result<()> {
        let per_target = (agents as usize).div_ceil(self.targets.len());
        let needed = per_target.div_ceil(STREAMS_PER_CONNECTION);
        let mut pool = self.targets.clone();
        for (channels, address) in pool.iter_mut().zip(&self.addresses) {
            while channels.len() < needed {
                channels.push(connect(address).await?);
            }
        }
        let _ = self.streams.set(pool);
        Ok(())
    }

    fn rid(&self) -> String {
        format!("{}-{}", self.tenant, self.next_request.fetch_add(1, Ordering::Relaxed))
    }

    fn agent_name(&self, agent: u32) -> String {
        format!("tenants/{}/agents/a{agent}", self.tenant)
    }
}

impl Backend for Switchboard {
    fn name(&self) -> String {
        self.label.clone()
    }

    async fn setup(&self, scenario: &Scenario) -> anyhow::Result<()> {
        let mut admin = AdminServiceClient::new(self.channel(0));
        admin
            .create_tenant(pb::CreateTenantRequest {
                tenant_id: self.tenant.clone(),
                display_name: "load test".into(),
                settings: None,
                request_id: self.rid(),
                routing: self.routing.into(),
            })
            .await
            .context("create tenant")?;
        let offer_mode =
            if scenario.offer { pb::OfferMode::Offer } else { pb::OfferMode::AutoAccept };
        for g in &scenario.groups {
            admin
                .put_group(pb::PutGroupRequest {
                    name: format!("tenants/{}/groups/{g}", self.tenant),
                    display_name: g.clone(),
                    policy: Some(pb::RoutingPolicy {
                        strategy: pb::Strategy::LeastOccupied as i32,
                        offer_mode: offer_mode as i32,
                        // Long enough that an offer never times out under load.
                        offer_timeout: Some(prost_types::Duration { seconds: 600, nanos: 0 }),
                        ..Default::default()
                    }),
                    replies: None,
                    request_id: self.rid(),
                    update_mask: None,
                })
                .await
                .context("put group")?;
        }
        // Resource names: every reference in a request is one.
        let groups: Vec<String> =
            scenario.groups.iter().map(|g| format!("tenants/{}/groups/{g}", self.tenant)).collect();
        *self.groups.lock().expect("groups lock") = groups.clone();
        for a in 0..scenario.agents {
            admin
                .put_agent(pb::PutAgentRequest {
                    name: self.agent_name(a),
                    nickname: format!("agent {a}"),
                    capacity: scenario.capacity,
                    groups: groups.clone(),
                    replies: None,
                    supervisor: false,
                    request_id: self.rid(),
                    update_mask: None,
                    proficiencies: Vec::new(),
                })
                .await
                .context("put agent")?;
        }
        self.connect_streams(scenario.agents).await
    }

    async fn login(&self, agent: u32) -> anyhow::Result<mpsc::UnboundedReceiver<Event>> {
        let channel = self.stream_channel(agent);
        let mut client = AgentServiceClient::new(channel.clone());
        let name = self.agent_name(agent);
        let stream = client
            .stream_events(pb::StreamAgentEventsRequest { agent: name.clone(), after_cursor: 0 })
            .await
            .context("agent stream")?
            .into_inner();
        AgentServiceClient::new(self.channel(u64::from(agent)))
            .set_status(pb::SetStatusRequest {
                agent: name.clone(),
                status: pb::AgentStatus::Online as i32,
                request_id: self.rid(),
            })
            .await
            .context("agent online")?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            // As a desktop does: when the stream ends (UNAVAILABLE when the agent's actor moves
            // to another node, or its node goes away), reconnect after the last cursor read.
            let (mut stream, mut cursor) = (Some(stream), 0);
            loop {
                let mut events = match stream.take() {
                    Some(events) => events,
                    None => {
                        let request = pb::StreamAgentEventsRequest {
                            agent: name.clone(),
                            after_cursor: cursor,
                        };
                        match AgentServiceClient::new(channel.clone()).stream_events(request).await
                        {
                            Ok(events) => events.into_inner(),
                            Err(_) if tx.is_closed() => return,
                            Err(_) => {
                                tokio::time::sleep(RECONNECT_PAUSE).await;
                                continue;
                            }
                        }
                    }
                };
                loop {
                    // Ends with the run (the agent's task drops `rx`), not at the stream's
                    // next event: an idle desk's stream left open kept the node re-reading the
                    // store for it (every `DESK_POLL`) through every later run of a sweep.
                    let next = tokio::select! {
                        next = events.message() => next,
                        () = tx.closed() => return,
                    };
                    let Ok(Some(e)) = next else { break };
                    cursor = cursor.max(e.cursor);
                    let conv = e.conversation;
                    let event = match e.event {
                        Some(pb::agent_event::Event::Offered(_)) => Event::Offered(conv),
                        Some(pb::agent_event::Event::Assigned(_)) => Event::Assigned(conv),
                        Some(pb::agent_event::Event::CustomerMessage(m)) => {
                            Event::Message(conv, m.text)
                        }
                        _ => continue,
                    };
                    if tx.send(event).is_err() {
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        });
        Ok(rx)
    }

    async fn post(
        &self,
        customer: u64,
        group: usize,
        priority: u32,
        text: String,
    ) -> anyhow::Result<String> {
        let group =
            self.groups.lock().expect("groups lock").get(group).cloned().unwrap_or_default();
        let request = pb::PostMessageRequest {
            customer: format!("tenants/{}/customers/c{customer}", self.tenant),
            channel: pb::Channel::Web as i32,
            text,
            group,
            priority,
            nickname: String::new(),
            request_id: self.rid(),
        };
        let r = match &self.gateways {
            Some(gateways) => pick_in(gateways, customer).post(request).await?,
            None => {
                let mut client = ChannelServiceClient::new(self.channel(customer));
                client.post_message(request).await?.into_inner()
            }
        };
        r.conversation.map(|c| c.name).context("no conversation in the answer")
    }

    async fn abandon(&self, conversation: &str) -> anyhow::Result<()> {
        let mut client = ChannelServiceClient::new(self.channel(0));
        client
            .close_conversation(pb::ConversationRequest {
                conversation: conversation.into(),
                request_id: self.rid(),
            })
            .await?;
        Ok(())
    }

    async fn accept(&self, agent: u32, conversation: &str) -> anyhow::Result<()> {
        let r = self.on_conversation(agent, conversation);
        match self.desk(agent) {
            Some(desk) => desk.send(r.request_id.clone(), command(Command::Accept(r))).await,
            None => self.agent_client(agent).accept(r).await.map(drop).map_err(Into::into),
        }
    }

    async fn reply(&self, agent: u32, conversation: &str, text: String) -> anyhow::Result<()> {
        let r = pb::SendMessageRequest {
            agent: self.agent_name(agent),
            conversation: conversation.into(),
            text,
            tag: 0,
            request_id: self.rid(),
        };
        match self.desk(agent) {
            Some(desk) => desk.send(r.request_id.clone(), command(Command::SendMessage(r))).await,
            None => self.agent_client(agent).send_message(r).await.map(drop).map_err(Into::into),
        }
    }

    async fn end(&self, agent: u32, conversation: &str) -> anyhow::Result<()> {
        let r = self.on_conversation(agent, conversation);
        match self.desk(agent) {
            Some(desk) => {
                desk.send(r.request_id.clone(), command(Command::EndConversation(r))).await
            }
            None => {
                self.agent_client(agent).end_conversation(r).await.map(drop).map_err(Into::into)
            }
        }
    }
}

use pb::desk_command::Command;

fn command(command: Command) -> pb::DeskCommand {
    pb::DeskCommand { command: Some(command) }
}

impl Switchboard {
    /// Agent `agent`'s desk stream (`--desk-stream`), if commands go on streams.
    fn desk(&self, agent: u32) -> Option<&super::streams::DeskStream> {
        self.desks.as_ref().map(|d| pick_in(d, u64::from(agent)))
    }

    fn agent_client(&self, agent: u32) -> AgentServiceClient<Channel> {
        AgentServiceClient::new(self.channel(u64::from(agent)))
    }

    /// A command of agent `agent` on `conversation`, with a fresh request id.
    fn on_conversation(&self, agent: u32, conversation: &str) -> pb::AgentConversationRequest {
        pb::AgentConversationRequest {
            agent: self.agent_name(agent),
            conversation: conversation.into(),
            request_id: self.rid(),
        }
    }
}

/// `open(channel)` for each connection of each target.
async fn per_connection<T, F>(
    targets: &[Vec<Channel>],
    open: impl Fn(Channel) -> F,
) -> anyhow::Result<Vec<Vec<T>>>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut all = Vec::new();
    for channels in targets {
        let mut opened = Vec::new();
        for channel in channels {
            opened.push(open(channel.clone()).await?);
        }
        all.push(opened);
    }
    Ok(all)
}

/// One connection to `address`.
async fn connect(address: &str) -> anyhow::Result<Channel> {
    let channel = Channel::from_shared(address.to_owned())?;
    channel.connect().await.with_context(|| format!("connect to {address}"))
}

/// Key `key`'s connection: its target `key mod N`, then one of that target's connections.
fn pick(targets: &[Vec<Channel>], key: u64) -> Channel {
    pick_in(targets, key).clone()
}

/// Key `key`'s item of a per-target, per-connection table (as [`pick`]).
fn pick_in<T>(targets: &[Vec<T>], key: u64) -> &T {
    let t = &targets[(key % targets.len() as u64) as usize];
    &t[((key / targets.len() as u64) % t.len() as u64) as usize]
}
