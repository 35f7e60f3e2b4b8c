//! Measuring Switchboard. `loadtest run` drives live nodes over the public gRPC API: a
//! contact-center scenario (customers arriving open-loop, simulated agents; [`center`]) with
//! an optional PostgreSQL baseline routed the common way, or plain message rates ([`micro`]), or
//! bare health checks, the node's cost per call before any of its work ([`floor`]).
//! `loadtest history` starts a node of its own and measures how one tenant's cost grows with
//! its history of ended conversations ([`history`]). `loadtest sim` drives the routing engine
//! itself in virtual time ([`sim`]).
//!
//! A library only so the end-to-end smoke tests can call the binary's code; the binary is
//! `src/main.rs`. Errors are `anyhow`: every caller is a command line or a test.

#![allow(clippy::print_stdout)] // a load generator reports on stdout

pub mod center;
pub mod cli;
pub mod compare;
pub mod floor;
pub mod history;
pub mod micro;
pub mod node;
pub mod sim;
