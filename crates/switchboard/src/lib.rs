//! The `switchboard` binary: `switchboard serve` runs one node of the routing cluster with its
//! configuration, logging, metrics and signals; `switchboard ctl` is a small client of the
//! public gRPC API for the quick start and for operators.
//!
//! - [`config`]: the configuration tree and its layers (defaults → file → env → flags).
//! - [`serve`]: the node's process around [`switchboard_node::serve`].
//! - [`ctl`]: the client.
//! - [`token`]: `switchboard token`, which signs a bearer token with a key file.
//! - [`cli`]: the command line that joins them.

pub mod cli;
pub mod config;
pub mod ctl;
mod exporter;
pub mod output;
pub mod serve;
pub mod token;
