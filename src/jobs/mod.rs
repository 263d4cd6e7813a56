//! Bulk jobs: migrations of whole buckets (or prefixes, or directories) between stores.
//!
//! Owns: what a job is asked to do ([`spec`]), opening its two sides ([`open`]), consuming
//! the source listing page by page into stored tasks ([`list`]), and running the tasks with
//! leases, retries, a dead-letter list, pause and cancel ([`run`]). Job state lives in the
//! state database, so a job survives kill -9 and several processes can share one (on
//! PostgreSQL). Does not own: how one object is copied (`transfer`), or the CLI and admin
//! API faces of jobs.

pub mod list;
pub mod open;
pub mod run;
pub mod spec;
pub mod supervise;

use crate::{registry, state, store};

/// Why a job could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// One side cannot be used (unknown store, unreachable, refused credentials, …).
    #[error("{side} {what}")]
    Side {
        side: &'static str,
        what: String,
        #[source]
        source: store::Error,
    },
    #[error(transparent)]
    State(#[from] state::Error),
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error("listing {side} {what}")]
    Listing {
        side: &'static str,
        what: String,
        #[source]
        source: store::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The kind of a migration job in the `jobs` table.
pub const MIGRATE: &str = "migrate";
