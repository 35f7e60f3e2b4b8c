//! A tenant's configuration version: how a running mesh learns that its [`TenantConfig`]
//! (`super::TenantConfig`) is older than the tenant actor's (ARCHITECTURE.md, the cut-over,
//! "Configuration stays with the tenant actor").
//!
//! **The row.** Each configuration command of an actor tenant's tenant actor (the ops of
//! [`changes_mesh`]) writes, in the batch of its log record, one [`ActorState`] of kind
//! [`routing::TENANT`] and key [`CONFIG`] whose body is that record's log sequence number
//! ([`row`]): durable with the command or not at all, one primary-key probe for any node to
//! read ([`stored`]). The version is a log position, not a count, so it needs no state of its
//! own. A mesh reads the row *before* replaying the tenant's snapshot and log
//! ([`super::meshes::load`]) and takes its value as its version: the replay holds at least
//! that configuration (maybe a newer one, which costs at most one needless reload later).
//! Only configuration commands raise it: ticks and webhooks move the log on and change
//! nothing a mesh reads, so two nodes' meshes never make each other reload for them.
//!
//! **Who compares.** The mesh on the tenant actor's node is told after each such write (the
//! admin service, [`super::Mesh::refresh_stored`]); an envelope between nodes carries the
//! sender mesh's version (`DeliverRequest.config_version`) and a receiver with an older one
//! reloads before handing it over ([`super::Mesh::refresh`]); a service call naming an agent
//! or group the mesh does not know reads the row once before answering NOT_FOUND.

use switchboard_proto::internal::v1::command::Op;
use switchboard_store::{ActorState, Store};

use super::routing::TENANT;
use crate::error::{Error, Result};

/// The row's key within [`TENANT`].
pub const CONFIG: &str = "config";

/// Whether a command changes what a mesh reads from its configuration (settings, groups,
/// agents, their own replies and their supervisor flag). Quick replies, customers' profiles and webhooks are
/// not read by the actors.
pub fn changes_mesh(op: &Op) -> bool {
    matches!(
        op,
        Op::UpdateTenant(_)
            | Op::PutGroup(_)
            | Op::DeleteGroup(_)
            | Op::PutAgent(_)
            | Op::DeleteAgent(_)
            | Op::UpdateAgentReplies(_)
    )
}

/// The row a configuration command at log position `seq` writes.
pub fn row(seq: u64) -> ActorState {
    ActorState {
        kind: TENANT.into(),
        key: CONFIG.into(),
        epoch: 0,
        body: Some(seq.to_string().into_bytes()),
    }
}

/// The tenant's stored configuration version: 0 before its first configuration change
/// (blocking: call it off the runtime).
pub fn stored(store: &dyn Store, tenant: &str) -> Result<u64> {
    let Some(state) = store.actor(tenant, TENANT, CONFIG)? else { return Ok(0) };
    let body = state.body.unwrap_or_default();
    std::str::from_utf8(&body).ok().and_then(|s| s.parse().ok()).ok_or_else(|| {
        Error::Internal(format!(
            "tenant {tenant}'s configuration version row holds {:?}, not a number",
            String::from_utf8_lossy(&body)
        ))
    })
}
