//! Switchboard's public gRPC API, generated from `proto/switchboard/v1` at build time.
//! Conversions to domain types live at the boundary, in the node crate.

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation, missing_debug_implementations)]

pub mod v1 {
    tonic::include_proto!("switchboard.v1");

    /// The encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("switchboard_v1_descriptor");
}

/// Cluster-internal records (the durable command log); not part of the public API.
pub mod internal {
    pub mod v1 {
        tonic::include_proto!("switchboard.internal.v1");
    }
}
