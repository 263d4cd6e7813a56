//! `ferry volume`: point-in-time replication of a directory tree to another host, in the
//! manner of the Scribe rsync mover, over a TLS 1.3 channel where each side pins the other's
//! certificate. The destination keeps every good iteration as a read-only snapshot; `promote`
//! turns one into a writable tree for failover, and failback is the same flow reversed.
//!
//! - `tls`: keys, the connection secret, pinned-certificate rustls configurations
//! - `wire`: frames, messages, adaptive zstd, the byte counter
//! - `tree`: paths, metadata, the parallel walk; `meta`: applying metadata
//! - `index`: per-path records (hashes, chunks) for manifests and snapshot indexes
//! - `plan`, `read`, `source`: the source's side of an iteration
//! - `confine`, `apply`, `dest`: the destination's side
//! - `snapshot`: the destination's layout, publish, retention, promote
//! - `resume`: the staging journal; `status`: iteration records in the state database;
//!   `metrics`: Prometheus metrics
//! - `durable`: crash-safe small files

pub mod apply;
pub mod confine;
pub mod dest;
pub mod durable;
pub mod image;
pub mod index;
pub mod meta;
pub mod metrics;
pub mod plan;
pub mod read;
pub mod resume;
pub mod snapshot;
pub mod source;
pub mod status;
pub mod tls;
pub mod tree;
pub mod wire;
