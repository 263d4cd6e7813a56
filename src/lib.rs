//! Ferry keeps object data safe across sites: an S3 gateway whose buckets write to a primary
//! and a secondary store, failover and failback, replication, migration and volume sync, in
//! one binary. See `ARCHITECTURE.md` for the code map and the layer rule.

pub mod admin;
pub mod bucket;
pub mod cli;
pub mod config;
pub mod gateway;
pub mod jobs;
pub mod journal;
pub mod registry;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod transfer;
pub mod volume;
