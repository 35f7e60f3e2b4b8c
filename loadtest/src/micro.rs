//! The message-rate modes of `loadtest run`: a fresh tenant with one skill group, agents
//! online with room for every customer, and customers who each open a conversation. Then
//! customers post messages to their open conversations:
//!
//! - `--mode closed`: `--concurrency` posters send back to back; reports durable
//!   acknowledgements per second (the node's peak rate).
//! - `--mode open`: messages are scheduled at `--rate` per second regardless of how the node
//!   keeps up; every latency is measured from the *intended* send time (no coordinated
//!   omission): acknowledgement, and arrival on the assigned agent's event stream.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use switchboard_proto::v1::{
    self as pb, admin_service_client::AdminServiceClient, agent_service_client::AgentServiceClient,
    channel_service_client::ChannelServiceClient,
};
use tokio::sync::{Mutex, mpsc};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::cli::{Mode, RunArgs};

/// Runs `--mode open|closed` over `channels` (spread over the targets).
pub async fn run(channels: &[Channel], args: &RunArgs) -> anyhow::Result<()> {
    let tenant = format!("load-{}", std::process::id());
    let args = Micro {
        rate: args.rate.max(1.0) as u64,
        concurrency: args.concurrency,
        seconds: args.seconds.max(1.0) as u64,
        agents: args.agents.unwrap_or(20),
        customers: args.customers,
        mode: args.mode,
        gateway_stream: args.gateway_stream,
    };
    let delivered = setup(channels, &tenant, &args).await?;
    println!(
        "tenant {tenant}: {} agents, {} customers with open conversations; {:?} mode for {} s",
        args.agents, args.customers, args.mode, args.seconds
    );
    match args.mode {
        Mode::Closed => closed(channels, &tenant, &args).await,
        _ => open(channels, &tenant, &args, delivered).await,
    }
}

#[derive(Debug)]
struct Micro {
    rate: u64,
    concurrency: usize,
    seconds: u64,
    agents: u32,
    customers: u32,
    mode: Mode,
    /// Messages on PostMessages streams (one per connection), not one call each.
    gateway_stream: bool,
}

/// How customer messages are sent: a PostMessage call each, or on a PostMessages stream.
#[derive(Clone)]
enum Poster {
    Unary(ChannelServiceClient<Channel>),
    Stream(Arc<crate::center::streams::GatewayStream>),
}

impl Poster {
    /// One poster per connection.
    async fn all(channels: &[Channel], args: &Micro) -> anyhow::Result<Vec<Poster>> {
        let mut posters = Vec::new();
        for c in channels {
            posters.push(if args.gateway_stream {
                let stream = crate::center::streams::GatewayStream::open(c.clone()).await?;
                Poster::Stream(Arc::new(stream))
            } else {
                Poster::Unary(ChannelServiceClient::new(c.clone()))
            });
        }
        Ok(posters)
    }

    async fn post(&mut self, request: pb::PostMessageRequest) -> anyhow::Result<()> {
        match self {
            Poster::Unary(client) => client.post_message(request).await.map(drop)?,
            Poster::Stream(stream) => stream.post(request).await.map(drop)?,
        }
        Ok(())
    }
}

fn rid(tag: &str, n: u64) -> String {
    format!("{tag}-{}-{n}", std::process::id())
}

/// Arrivals on agent streams: (message number, when it arrived).
type Delivered = mpsc::UnboundedReceiver<(u64, Instant)>;

async fn setup(channels: &[Channel], tenant: &str, args: &Micro) -> anyhow::Result<Delivered> {
    let channel = &channels[0];
    let mut admin = AdminServiceClient::new(channel.clone());
    let mut gateway = ChannelServiceClient::new(channel.clone());
    admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: tenant.into(),
            display_name: "load test".into(),
            settings: None,
            request_id: rid("tenant", 0),
            routing: pb::TenantRouting::Unspecified.into(),
        })
        .await?;
    admin
        .put_group(pb::PutGroupRequest {
            name: format!("tenants/{tenant}/groups/load"),
            display_name: "load".into(),
            policy: None,
            replies: None,
            request_id: rid("group", 0),
            update_mask: None,
        })
        .await?;
    let capacity = args.customers.div_ceil(args.agents.max(1)).max(1);
    let (tx, rx) = mpsc::unbounded_channel();
    for a in 0..args.agents {
        let name = format!("tenants/{tenant}/agents/a{a}");
        admin
            .put_agent(pb::PutAgentRequest {
                name: name.clone(),
                nickname: format!("agent {a}"),
                capacity,
                groups: vec![format!("tenants/{tenant}/groups/load")],
                replies: None,
                supervisor: false,
                request_id: rid("agent", u64::from(a)),
                update_mask: None,
                proficiencies: Vec::new(),
            })
            .await?;
        let mut agent = AgentServiceClient::new(channels[a as usize % channels.len()].clone());
        agent
            .set_status(pb::SetStatusRequest {
                agent: name.clone(),
                status: pb::AgentStatus::Online as i32,
                request_id: rid("online", u64::from(a)),
            })
            .await?;
        let mut stream = agent
            .stream_events(pb::StreamAgentEventsRequest { agent: name, after_cursor: 0 })
            .await?
            .into_inner();
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(e)) = stream.message().await {
                if let Some(pb::agent_event::Event::CustomerMessage(m)) = e.event
                    && let Some(n) = m.text.strip_prefix("m:").and_then(|s| s.parse::<u64>().ok())
                {
                    let _ = tx.send((n, Instant::now()));
                }
            }
        });
    }
    for u in 0..args.customers {
        gateway
            .post_message(pb::PostMessageRequest {
                customer: format!("tenants/{tenant}/customers/c{u}"),
                channel: pb::Channel::Web as i32,
                text: "hello".into(),
                group: format!("tenants/{tenant}/groups/load"),
                priority: 0,
                nickname: String::new(),
                request_id: rid("open", u64::from(u)),
            })
            .await?;
    }
    Ok(rx)
}

fn post(tenant: &str, customer: u32, n: u64) -> pb::PostMessageRequest {
    pb::PostMessageRequest {
        customer: format!("tenants/{tenant}/customers/c{customer}"),
        channel: pb::Channel::Web as i32,
        text: format!("m:{n}"),
        group: String::new(),
        priority: 0,
        nickname: String::new(),
        request_id: rid("m", n),
    }
}

/// A latency histogram in microseconds, 1 µs to 60 s.
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn report(what: &str, h: &Histogram<u64>) {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "  {what:<28} n={:<8} p50={:>8.2} ms  p90={:>8.2} ms  p99={:>8.2} ms  p999={:>8.2} ms  max={:>8.2} ms",
        h.len(),
        ms(0.50),
        ms(0.90),
        ms(0.99),
        ms(0.999),
        h.max() as f64 / 1000.0
    );
}

/// Posters send back to back: the node's durable acknowledgements per second.
async fn closed(channels: &[Channel], tenant: &str, args: &Micro) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let acks = Arc::new(Mutex::new(histogram()));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    let posters = Poster::all(channels, args).await?;
    for p in 0..args.concurrency {
        let mut client = posters[p % posters.len()].clone();
        let (next, acks, errors, tenant) =
            (next.clone(), acks.clone(), errors.clone(), tenant.to_owned());
        let customers = args.customers;
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                match client.post(post(&tenant, (n % u64::from(customers)) as u32, n)).await {
                    Ok(_) => {
                        let _ = acks.lock().await.record(sent.elapsed().as_micros() as u64);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let acks = acks.lock().await;
    println!(
        "closed loop, {} posters: {:.0} durable acknowledgements/s ({} in {:.1} s, {} errors)",
        args.concurrency,
        acks.len() as f64 / elapsed,
        acks.len(),
        elapsed,
        errors.load(Ordering::Relaxed)
    );
    report("post → durable ack", &acks);
    Ok(())
}

/// Messages at a fixed rate, latencies from the intended send time.
async fn open(
    channels: &[Channel],
    tenant: &str,
    args: &Micro,
    mut delivered: Delivered,
) -> anyhow::Result<()> {
    let total = args.rate * args.seconds;
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let start = Instant::now() + Duration::from_millis(100);
    let intended = move |n: u64| start + interval * u32::try_from(n).unwrap_or(u32::MAX);
    let acks = Arc::new(Mutex::new(histogram()));
    let errors = Arc::new(AtomicU64::new(0));
    let clients = Poster::all(channels, args).await?;
    let mut sends = Vec::with_capacity(total as usize);
    for n in 0..total {
        tokio::time::sleep_until(intended(n)).await;
        let mut client = clients[(n as usize) % clients.len()].clone();
        let (acks, errors, tenant) = (acks.clone(), errors.clone(), tenant.to_owned());
        let customers = args.customers;
        let due = intended(n);
        sends.push(tokio::spawn(async move {
            match client.post(post(&tenant, (n % u64::from(customers)) as u32, n)).await {
                Ok(_) => {
                    let _ = acks.lock().await.record(due.elapsed().as_micros().max(1) as u64);
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let offered_for = start.elapsed().as_secs_f64();
    for s in sends {
        s.await?;
    }
    let acked_for = start.elapsed().as_secs_f64();
    // Arrivals on agent streams, bounded wait for the stragglers.
    let mut arrivals = histogram();
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.len() < total {
        match tokio::time::timeout_at(deadline, delivered.recv()).await {
            Ok(Some((n, at))) if n < total => {
                let _ = arrivals
                    .record(at.saturating_duration_since(intended(n)).as_micros().max(1) as u64);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    let acks = acks.lock().await;
    println!(
        "open loop: offered {} msg/s for {:.1} s; acknowledged {:.0} msg/s; {} errors; {} of {} reached the agent stream",
        args.rate,
        offered_for,
        acks.len() as f64 / acked_for,
        errors.load(Ordering::Relaxed),
        arrivals.len(),
        total
    );
    report("post → durable ack", &acks);
    report("post → agent stream", &arrivals);
    Ok(())
}
