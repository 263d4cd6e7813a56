//! The one integration-test binary. Every test starts its own `ferry serve` (port 0, own
//! data directory) and drives it with real clients.
//!
//! - `support`: the server and client harness
//! - `gateway`: S3 behaviour through awscli and boto3, versioning, bad input
//! - `store`: the Store conformance suite on every store kind
//! - `fs_posix`: the fs store under POSIX users changing its tree (symlinks, FIFOs, edits)
//! - `cli`: admin commands, config errors, exit codes
//! - `crash`: kill -9 during writes
//! - `multiwrite`: namespace buckets: multi-write, outage, kill -9, failover, failback
//! - `migrate`: migration jobs: every direction, kill -9, pause, faults, dead letters
//! - `interop`: awscli, rclone, s3cmd, minio-py against a running server
//! - `versioning`: versioning, delete markers, paging and checksums through boto3
//! - `state`: the state database on SQLite and PostgreSQL
//! - `volume`: `ferry volume` directory replication over mutual TLS: metadata fidelity,
//!   snapshots, promote and failback, wrong secrets, kill -9 of either side

mod support;

mod admin;
mod cli;
mod crash;
mod fs_posix;
mod gateway;
mod interop;
mod migrate;
mod multiwrite;
mod state;
mod store;
mod versioning;
mod volume;
