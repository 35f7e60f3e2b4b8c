//! One Switchboard node.
//!
//! The routing rules live in `switchboard-core`; this crate is the shell around them: a tenant
//! actor per tenant owns the state and applies commands in order, a durable store (SQLite by
//! default) makes every acknowledged command survive a crash, and gRPC services expose the
//! public API of `proto/switchboard/v1` with health checking and reflection.
//!
//! - [`tenant`]: the actor and its in-order durability pipeline.
//! - [`actors`]: conversation and router actors around the core's cross-actor protocol
//!   (issue 12; beside the tenant actor, not serving the public API yet).
//! - [`registry`]: loading tenants (snapshot + replay) and routing calls to them.
//! - [`apply`]: one logged command applied to a tenant's state (the proto → core boundary).
//! - [`service`]: the gRPC services; [`server`] assembles them.
//! - [`auth`]: bearer tokens, the per-method policy, rate and stream limits, TLS.
//! - [`webhooks`]: delivering the tenant's events to HTTP endpoints.

pub mod actors;
pub mod apply;
pub mod archive;
pub mod auth;
pub mod calendar;
pub mod clock;
pub mod cluster;
pub mod convert;
pub mod error;
pub mod grpc_metrics;
pub mod hub;
pub mod metrics;
pub mod names;
pub mod oversize;
pub mod registry;
pub mod scope;
pub mod seen;
pub mod server;
pub mod service;
pub mod state;
pub mod tenant;
pub mod webhooks;

pub use error::{Error, Result};
pub use server::{NodeConfig, serve};
/// The PostgreSQL writer's default linger ([`NodeConfig::commit_linger`]).
pub use switchboard_store::PG_COMMIT_LINGER;
