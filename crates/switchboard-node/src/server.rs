//! One node: the store, the tenants, and the gRPC server with health and reflection; in a
//! cluster, also the actor meshes and their node-to-node `ActorMeshService`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use switchboard_proto::v1::{
    FILE_DESCRIPTOR_SET, admin_service_server::AdminServiceServer,
    agent_service_server::AgentServiceServer, channel_service_server::ChannelServiceServer,
    event_service_server::EventServiceServer, supervisor_service_server::SupervisorServiceServer,
};
use switchboard_store::{PostgresOptions, PostgresStore, SqliteOptions, SqliteStore, Store};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};

use crate::actors::MeshOptions;
use crate::actors::meshes::Meshes;
use crate::cluster::forward::ForwardLayer;
use crate::cluster::membership::Membership;
use crate::cluster::{ClusterConfig, Ownership};
use crate::error::Error;
use crate::hub::Hub;
use crate::registry::{Options, Registry};
use crate::service::{
    admin::Admin, agent::Agents, channel::Channel, events::Events, supervisor::Supervisor,
};

/// What a node needs to run.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// Commands between snapshots of a tenant.
    pub snapshot_every: u64,
    /// Largest request accepted, in bytes.
    pub max_request_bytes: usize,
    /// Requests in flight per connection (admission control at the edge).
    pub concurrency_per_connection: usize,
    /// Calls per tenant waiting for or handled by its actor; more are refused
    /// `RESOURCE_EXHAUSTED`.
    pub tenant_in_flight: usize,
    /// How long a call waits for its tenant when the client set no shorter gRPC deadline.
    pub call_timeout: std::time::Duration,
    /// PostgreSQL URL of a shared store; `None` keeps the embedded SQLite in `data_dir`.
    pub store_url: Option<String>,
    /// With `store_url`: the writer's linger after a commit's first write
    /// (`PostgresOptions::commit_linger`).
    pub commit_linger: std::time::Duration,
    /// Join a cluster through etcd; `None` runs a single node serving every tenant.
    pub cluster: Option<ClusterConfig>,
    /// Token keys; `None` runs unauthenticated (the binary allows that only on loopback).
    pub auth: Option<crate::auth::Verifier>,
    /// TLS certificate files; `None` serves plain HTTP/2.
    pub tls: Option<crate::auth::tls::TlsFiles>,
    pub limits: crate::auth::limits::LimitsConfig,
    /// How webhook deliveries are retried.
    pub webhooks: crate::webhooks::Options,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("data"),
            snapshot_every: 10_000,
            max_request_bytes: 64 * 1024,
            concurrency_per_connection: 256,
            tenant_in_flight: crate::registry::TENANT_IN_FLIGHT,
            call_timeout: crate::registry::CALL_TIMEOUT,
            store_url: None,
            commit_linger: switchboard_store::PG_COMMIT_LINGER,
            cluster: None,
            auth: None,
            tls: None,
            limits: crate::auth::limits::LimitsConfig::default(),
            webhooks: crate::webhooks::Options::default(),
        }
    }
}

/// Serves until `shutdown` resolves, then snapshots every tenant and returns.
pub async fn serve(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    serve_observed(config, listener, shutdown, |_| ()).await
}

/// [`serve`], handing the node's meshes to `observe` before it serves (a test drives the
/// actors behind the public API through them, e.g. a customer message on a mesh handle).
pub async fn serve_observed(
    config: NodeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    observe: impl FnOnce(&Arc<Meshes>),
) -> Result<(), Error> {
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Error::Unavailable(format!("data directory {}: {e}", config.data_dir.display()))
    })?;
    let store: Arc<dyn Store> = match &config.store_url {
        Some(url) => {
            let url = url.clone();
            let options = PostgresOptions {
                commit_linger: config.commit_linger,
                ..PostgresOptions::default()
            };
            let store = tokio::task::spawn_blocking(move || PostgresStore::open(&url, options))
                .await
                .map_err(|e| Error::Internal(e.to_string()))??;
            Arc::new(store)
        }
        None => Arc::new(SqliteStore::open(&config.data_dir, SqliteOptions::default())?),
    };
    let hub = Hub::default();
    let options = Options {
        snapshot_every: config.snapshot_every,
        webhooks: config.webhooks.clone(),
        tenant_in_flight: config.tenant_in_flight,
        call_timeout: config.call_timeout,
        ..Options::default()
    };
    crate::metrics::describe();
    crate::metrics::sample_store(&store);
    let (reporter, health) = tonic_health::server::health_reporter();
    let (registry, ownership, membership, meshes) = match config.cluster.clone() {
        None => {
            // One node serves every shard: its meshes (tenants created with actor routing)
            // run every actor here, under the single node's fence (shard 0, epoch 0).
            let here = Ownership::fixed("local".into(), 1, [(0, 0)], Default::default(), None);
            let meshes = Meshes::new(store.clone(), here, MeshOptions::default());
            let meshes = Arc::new(meshes.with_hub(hub.clone()));
            let registry = Registry::load(store, hub.clone(), options).await?;
            // Every actor with a row comes back now, without waiting for a message.
            let recovering = meshes.clone();
            tokio::spawn(async move {
                match recovering.recover_all().await {
                    Ok(done) => info!(?done, "recovered the actors"),
                    Err(e) => warn!(error = %e, "recovering the actors failed"),
                }
            });
            (registry, None, None, meshes)
        }
        Some(cluster) => {
            let tls = config.tls.as_ref().and_then(crate::auth::tls::TlsFiles::cluster);
            let ownership = Ownership::new(cluster.node_id.clone(), cluster.shards, tls);
            // The actor meshes: one per tenant, created by its first envelope or call here.
            let meshes = Meshes::new(store.clone(), ownership.clone(), MeshOptions::default());
            let meshes = Arc::new(meshes.with_hub(hub.clone()));
            let registry = Registry::clustered(store, hub.clone(), options, ownership.clone());
            // Not ready until joined and serving its shards (the readiness probe).
            reporter.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            let (ready_tx, mut ready) = tokio::sync::watch::channel(false);
            let reporter = reporter.clone();
            tokio::spawn(async move {
                while ready.changed().await.is_ok() {
                    let status = if *ready.borrow() {
                        tonic_health::ServingStatus::Serving
                    } else {
                        tonic_health::ServingStatus::NotServing
                    };
                    reporter.set_service_status("", status).await;
                }
            });
            let (leave_tx, leave_rx) = tokio::sync::watch::channel(false);
            let task = Membership::new(cluster, ownership.clone(), registry.clone(), ready_tx)
                .with_meshes(meshes.clone());
            let handle = tokio::spawn(task.run(leave_rx));
            (registry, Some(ownership), Some((leave_tx, handle)), meshes)
        }
    };

    observe(&meshes);
    reporter.set_serving::<ChannelServiceServer<Channel>>().await;
    reporter.set_serving::<AgentServiceServer<Agents>>().await;
    reporter.set_serving::<SupervisorServiceServer<Supervisor>>().await;
    reporter.set_serving::<AdminServiceServer<Admin>>().await;
    reporter.set_serving::<EventServiceServer<Events>>().await;
    // Both reflection versions, so older grpcurl builds work too.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().map_err(|e| Error::Internal(e.to_string()))?;
    let reflection_v1alpha =
        reflection().build_v1alpha().map_err(|e| Error::Internal(e.to_string()))?;

    let max = config.max_request_bytes;
    let r = registry.clone();
    let clustered = ownership.is_some();
    let addr = listener.local_addr().map_err(|e| Error::Internal(e.to_string()))?;
    info!(%addr, data_dir = %config.data_dir.display(), tls = config.tls.is_some(), "serving gRPC");
    let node_certs = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    let gate = crate::auth::Gate::new(
        config.auth.clone(),
        node_certs,
        crate::auth::Limits::new(config.limits),
    );
    let forward = ForwardLayer::new(ownership, hub.clone(), max).with_meshes(meshes.clone());
    use crate::auth::limits::http2;
    let router = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(config.concurrency_per_connection)
        .max_concurrent_streams(http2::MAX_CONCURRENT_STREAMS)
        .initial_stream_window_size(http2::INITIAL_STREAM_WINDOW)
        .initial_connection_window_size(http2::INITIAL_CONNECTION_WINDOW)
        .http2_max_header_list_size(http2::MAX_HEADER_LIST_SIZE)
        .max_frame_size(http2::MAX_FRAME_SIZE)
        .http2_max_pending_accept_reset_streams(Some(http2::MAX_PENDING_ACCEPT_RESET_STREAMS))
        .layer(crate::grpc_metrics::GrpcMetricsLayer::default())
        .layer(crate::auth::layer::AuthLayer::new(Arc::new(gate)))
        .layer(forward.clone())
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            ChannelServiceServer::new(Channel {
                registry: r.clone(),
                meshes: meshes.clone(),
                forward: clustered.then(|| forward.clone()),
            })
            .max_decoding_message_size(max),
        )
        .add_service(
            AgentServiceServer::new(Agents {
                registry: r.clone(),
                meshes: meshes.clone(),
                forward: clustered.then(|| forward.clone()),
            })
            .max_decoding_message_size(max),
        )
        .add_service(
            SupervisorServiceServer::new(Supervisor {
                registry: r.clone(),
                meshes: meshes.clone(),
            })
            .max_decoding_message_size(max),
        )
        .add_service(
            AdminServiceServer::new(Admin { registry: r.clone(), meshes: Some(meshes.clone()) })
                .max_decoding_message_size(max),
        )
        .add_service(
            EventServiceServer::new(Events { registry: r, meshes: meshes.clone() })
                .max_decoding_message_size(max),
        )
        // Node to node, cluster mode only (`auth::layer` requires a node certificate).
        .add_optional_service(clustered.then(|| meshes.service().max_decoding_message_size(max)))
        .add_optional_service(clustered.then(|| {
            crate::service::calls::ConversationCalls::new(meshes.clone())
                .server()
                .max_decoding_message_size(max)
        }));
    let shutdown = async move {
        shutdown.await;
        // In a cluster, hand every shard over while still forwarding calls to the new
        // owners, then leave.
        if let Some((leave, task)) = membership {
            let _ = leave.send(true);
            let _ = task.await;
        }
        // Streams never end by themselves; end them so in-flight calls can drain.
        hub.close();
    };
    let served = match &config.tls {
        None => {
            router
                .serve_with_incoming_shutdown(nodelay(TcpListenerStream::new(listener)), shutdown)
                .await
        }
        Some(files) => {
            let incoming = crate::auth::tls::incoming(listener, files.clone())?;
            router.serve_with_incoming_shutdown(incoming, shutdown).await
        }
    };
    served.map_err(|e| Error::Internal(e.to_string()))?;
    info!("draining: snapshotting tenants");
    meshes.stop_all().await;
    registry.shutdown().await;
    Ok(())
}

/// Accepted connections with Nagle's algorithm off: small HTTP/2 frames otherwise wait for
/// the peer's delayed ACK (about 40 ms per call at low concurrency).
fn nodelay(
    incoming: TcpListenerStream,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    incoming.map(|conn| {
        conn.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    })
}
