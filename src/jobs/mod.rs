//! Bulk jobs: migrations of whole buckets (or prefixes, or directories) between stores.
//!
//! Owns: what a job is asked to do ([`spec`]), opening its two sides ([`open`]), consuming
//! the source listing page by page into stored tasks ([`list`]), and running the tasks with
//! leases, retries, a dead-letter list, pause and cancel ([`run`]), fenced so a process that
//! lost its leases stops writing ([`fence`]). Job state lives in the
//! state database, so a job survives kill -9 and several processes can share one (on
//! PostgreSQL). Does not own: how one object is copied (`transfer`), or the CLI and admin
//! API faces of jobs.

pub mod control;
pub mod fence;
pub mod filter;
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
    /// The run stopped for a reason retrying object by object does not cure (a listing
    /// refused, the destination out of space); the job is left to resume.
    #[error("{0} (the job is kept: run the same command again once that is fixed)")]
    Halted(String),
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

/// A job ready to run: its record, whether it was already there (resumed), and its sides.
pub struct Submitted {
    pub job: state::JobRecord,
    pub resumed: bool,
    pub src: open::Side,
    pub dst: open::Side,
}

/// Opens and checks both sides of `spec` (see [`open::preflight`]), then finds the
/// unfinished job with the same fingerprint or records a new one.
/// `verify`: the caller compares both sides afterwards, so directories are hashed up front.
pub async fn submit(
    registry: &registry::Registry,
    spec: &spec::MigrateSpec,
    fingerprint: &str,
    verify: bool,
) -> Result<Submitted> {
    spec.check()?;
    spec::Filter::new(&spec.options)?;
    let (src, dst) = open::open_sides(spec, spec.options.checksum || verify, registry).await?;
    open::preflight(&src, &dst, true).await?;
    let db = registry.db();
    if let Some(job) = db.unfinished_job(fingerprint).await? {
        return Ok(Submitted {
            job,
            resumed: true,
            src,
            dst,
        });
    }
    if spec.options.delete {
        open::refuse_emptying(&src, &dst).await?;
    }
    let spec_json = serde_json::to_value(spec)
        .map_err(|e| Error::Usage(format!("the job cannot be recorded: {e}")))?;
    let (id, created) = db
        .find_or_create_job(MIGRATE, &spec_json, fingerprint, state::now_ms())
        .await?;
    Ok(Submitted {
        job: db.job(id).await?,
        resumed: !created,
        src,
        dst,
    })
}
