//! Switchboard's routing core driven in virtual time: no node, no network, no clock. A
//! discrete-event loop ([`driver`]) feeds `switchboard_core::Engine` arrivals, abandonments,
//! service ends and shift changes interleaved with the engine's own deadlines, and streams
//! what happened into per-group statistics with batch-means standard errors ([`report`]).
//! [`erlang`] and [`erlang_a`] are the closed forms the simulation is checked against;
//! [`whatif`] runs a tenant's real configuration (as read over the API and converted to core
//! settings by the caller) under Poisson load.
//!
//! Synchronous and single-threaded like the core: `loadtest sim` and `switchboard ctl
//! simulate` call it from their own command lines.

pub mod driver;
pub mod erlang;
pub mod erlang_a;
pub mod report;
pub mod rng;
pub mod whatif;

pub use report::{Est, Figures};

/// What a simulation refuses.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The core refused a call: a configuration it rejects, or a driver bug.
    #[error("the routing core refused the simulation: {0}")]
    Core(#[from] switchboard_core::Error),
    /// Input the simulation cannot run as given; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
