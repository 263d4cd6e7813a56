//! What an operator does to a job, whoever asks (the CLI on the state database, or the admin
//! API): detail, pause (and wait until no transfer runs), resume, cancel, retry dead letters.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::open::{Opener, Role};
use super::spec::MigrateSpec;
use crate::registry::Registry;
use crate::state::{self, Db, JobRecord, OpenTask, TaskCounts, job_state};

/// Why an operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    State(#[from] state::Error),
    /// The job is not in a state the operation applies to.
    #[error("job {id} is {state}: {why}")]
    Conflict {
        id: i64,
        state: String,
        why: &'static str,
    },
    #[error("job {0} is paused, but a transfer still runs after 2 minutes")]
    StillRunning(i64),
}

/// Dead letters per page of the dead-letter list (`ferry job dead`, the admin API's).
pub const DEAD_PAGE: i64 = 1000;

/// A job with its task counts and unfinished tasks (in flight, retrying, dead).
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Detail {
    pub job: JobRecord,
    pub tasks: TaskCounts,
    pub open: Vec<OpenTask>,
    /// The processes that ran it lately, the most recently heard of first.
    #[serde(default)]
    pub runners: Vec<state::Runner>,
}

pub async fn detail(db: &Db, id: i64, open_limit: i64) -> Result<Detail, Error> {
    Ok(Detail {
        job: db.job(id).await?,
        tasks: db.task_counts(id).await?,
        open: db.open_tasks(id, open_limit).await?,
        runners: db.job_runners(id).await?,
    })
}

async fn transition(
    db: &Db,
    id: i64,
    from: &[&str],
    to: &str,
    why: &'static str,
) -> Result<(), Error> {
    db.job(id).await?;
    if db.set_job_state(id, from, to, state::now_ms()).await? {
        return Ok(());
    }
    Err(Error::Conflict {
        id,
        state: db.job(id).await?.state,
        why,
    })
}

/// Pauses a running job and waits until no task of it runs (workers stop at the next part
/// boundary and record what finished); returns the finished parts of unfinished uploads.
/// Tasks whose lease ran out (their process was killed) are handed back as it waits: no
/// live process holds them, and none would claim them while the job is paused. Fails with
/// [`Error::Conflict`] (naming the state) when the job leaves the paused state meanwhile
/// (resumed, cancelled by someone else).
pub async fn pause(db: &Db, id: i64) -> Result<i64, Error> {
    transition(
        db,
        id,
        &[job_state::RUNNING],
        job_state::PAUSED,
        "only a running job can be paused",
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        still_paused(db, id).await?;
        db.release_expired(id, state::now_ms()).await?;
        if db.task_counts(id).await?.running == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::StillRunning(id));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let parts = db
        .open_tasks(id, 100_000)
        .await?
        .iter()
        .map(|t| t.parts_done)
        .sum();
    still_paused(db, id).await?;
    Ok(parts)
}

async fn still_paused(db: &Db, id: i64) -> Result<(), Error> {
    let rec = db.job(id).await?;
    if rec.state == job_state::PAUSED {
        return Ok(());
    }
    Err(Error::Conflict {
        id,
        state: rec.state,
        why: "it left the paused state while the pause waited for its transfers to stop",
    })
}

pub async fn resume(db: &Db, id: i64) -> Result<(), Error> {
    transition(
        db,
        id,
        &[job_state::PAUSED],
        job_state::RUNNING,
        "only a paused job can be resumed",
    )
    .await
}

/// What a cancel did with the job's unfinished multipart uploads.
#[derive(Debug, Serialize)]
pub struct Cancelled {
    /// Uploads aborted (or found gone already).
    pub aborted: usize,
    /// Why some could not be (they stay on the destination), if so.
    pub not_aborted: Option<String>,
}

/// Cancels a job, waits (up to a minute) until its runners stopped their transfers at a
/// part boundary, handing back the tasks of dead ones, then aborts the multipart uploads its
/// unfinished tasks recorded (a job cancelled already whose uploads a cancel could not
/// abort gets them aborted again). Done here rather than only by the runners, which may be gone
/// (a paused job's workers stopped, say); a runner still stopping aborts them too, after
/// its workers stopped, in case one started an upload after this.
pub async fn cancel(registry: &Registry, id: i64) -> Result<Cancelled, Error> {
    let db = registry.db();
    // Counted before: the workers of a running process abort theirs as they stop.
    let recorded = db.job_uploads(id).await?.len();
    // Cancelled already, with uploads a cancel could not abort (it ran without the
    // destination's credentials, say): cancelling again tries them again, there being no
    // other way to remove them (a probe).
    let again = recorded > 0 && db.job(id).await?.state == job_state::CANCELLED;
    if !again {
        transition(
            db,
            id,
            &[job_state::RUNNING, job_state::PAUSED],
            job_state::CANCELLED,
            "it has already ended",
        )
        .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        db.release_expired(id, state::now_ms()).await?;
        if db.task_counts(id).await?.running == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if db.job_uploads(id).await?.is_empty() {
        return Ok(Cancelled {
            aborted: recorded,
            not_aborted: None,
        });
    }
    // A process running the job aborts them as it stops (and holds a directory destination
    // until then): wait for it, then abort what it left.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && runs(db, id).await? {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = db.job_uploads(id).await?.len();
    let by_runner = recorded.saturating_sub(left);
    if left == 0 {
        return Ok(Cancelled {
            aborted: by_runner,
            not_aborted: None,
        });
    }
    let rec = db.job(id).await?;
    let dst = match serde_json::from_value::<MigrateSpec>(rec.spec) {
        Ok(spec) => Opener::new(false)
            .open(&spec.dst, Role::Dst, registry)
            .await
            .map_err(|e| crate::telemetry::one_line(&e)),
        Err(e) => Err(format!("the job's record is unreadable: {e}")),
    };
    Ok(match dst {
        Ok(dst) => {
            let (aborted, not_aborted) = super::run::abort_uploads(db, id, &dst).await;
            Cancelled {
                aborted: by_runner + aborted,
                not_aborted,
            }
        }
        Err(e) => Cancelled {
            aborted: by_runner,
            not_aborted: Some(e),
        },
    })
}

/// Whether a live process still runs job `id` (said so within the heartbeat window).
async fn runs(db: &Db, id: i64) -> Result<bool, Error> {
    let fresh = state::now_ms() - state::UNATTENDED_MS;
    Ok(db.job_runners(id).await?.iter().any(|r| r.seen_ms >= fresh))
}

/// Requeues a job's dead letters (a finished job runs again); returns how many. Refused
/// for a cancelled job, which nothing runs again (its dead letters stay listed).
pub async fn retry_dead(db: &Db, id: i64) -> Result<u64, Error> {
    let rec = db.job(id).await?;
    let cancelled = || Error::Conflict {
        id,
        state: job_state::CANCELLED.into(),
        why: "a cancelled job does not run again (start the migration anew)",
    };
    if rec.state == job_state::CANCELLED {
        return Err(cancelled());
    }
    let n = db.retry_dead(id).await?;
    // Cancelled meanwhile: nothing was requeued.
    if n == 0 && db.job(id).await?.state == job_state::CANCELLED {
        return Err(cancelled());
    }
    Ok(n)
}
