//! The one integration-test binary. Every test starts its own `ferry serve` (port 0, own
//! data directory) and drives it with real clients.
//!
//! - `support`: the server and client harness
//! - `gateway`: S3 behaviour through awscli and boto3, versioning, bad input
//! - `store`: the Store conformance suite on every store kind
//! - `cli`: admin commands, config errors, exit codes
//! - `crash`: kill -9 during writes

mod support;

mod cli;
mod clients;
mod crash;
mod gateway;
mod state;
mod store;
