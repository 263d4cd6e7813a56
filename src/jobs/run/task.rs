//! One claimed task of a job: copying (or deleting) its object, recording its multipart
//! upload's progress as it goes, and what a failure means for it (retry after a backoff, or
//! the dead-letter list).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use tokio::sync::watch;

use super::{OUTAGE_LIMIT, Runner, VANISHED_SHOWN, bounded, state_err};
use crate::state::{Db, PartRow, TaskRow};
use crate::store::{self, ObjectKey};
use crate::transfer::copy::{self, Item, Outcome, Plan, Resume};
use crate::transfer::throttle::Alive;

impl Runner {
    /// Runs one task: `Some(bytes)` when finished, `None` when stopped before the end.
    pub(super) async fn run_task(
        &self,
        task: &TaskRow,
        generation: u64,
        stop: &watch::Receiver<bool>,
    ) -> store::Result<Option<i64>> {
        if task.action == "unlisted" {
            return Err(store::Error::InvalidArgument(
                "the listing found this entry but could not index it (see the job's dead letters)"
                    .into(),
            ));
        }
        if task.action != "delete" {
            self.dst.takes(&task.key, task.size)?;
        }
        let fence = self.fence.clone();
        let alive: Alive = Arc::new(move || fence.holds(generation));
        let sk = ObjectKey::parse(&format!("{}{}", self.src.prefix, task.key))?;
        let dk = ObjectKey::parse(&format!("{}{}", self.dst.prefix, task.key))?;
        if task.action == "delete" {
            // Listed as missing from the source, but it may be there again (put back since
            // the listing, or a job resumed long after it was listed): a mirror must not
            // lose it, so it is copied instead.
            match self
                .src
                .store
                .head_object(&self.src.bucket, &sk, None)
                .await
            {
                // A key a directory cannot hold (`a//b`, a long segment) is not there either.
                Err(store::Error::NoSuchKey { .. } | store::Error::Name(_)) => {
                    self.dst
                        .store
                        .delete_object(&self.dst.bucket, &dk, None)
                        .await?;
                    if let Some(dir) = &self.dst.dir
                        && dk.is_dir_marker()
                    {
                        dir.store.remove_marker_folder(&self.dst.bucket, &dk).await;
                    }
                    return Ok(Some(0));
                }
                Err(e) => return Err(e),
                Ok(_) => {
                    tracing::info!(job = self.job, key = ?task.key, "back on the source since it was listed: copied, not deleted");
                }
            }
        }
        let resume = match &task.upload_id {
            Some(u) => Some(Resume {
                upload_id: u.clone(),
                parts: bounded(self.db.task_parts(task.id))
                    .await
                    .map_err(state_err)?
                    .into_iter()
                    .map(|p| (p.part_number as u32, p.etag, p.size as u64))
                    .collect(),
            }),
            None => None,
        };
        let item = Item {
            src: self.src.store.as_ref(),
            sb: &self.src.bucket,
            sk: &sk,
            dst: self.dst.store.as_ref(),
            db: &self.dst.bucket,
            dk: &dk,
            listed_etag: &task.etag,
        };
        let journal = TaskJournal {
            db: &self.db,
            task: task.id,
            alive: alive.clone(),
        };
        let plan = Plan {
            alive: Some(alive),
            ..self.plan.clone()
        };
        // A task that was in flight when its process died may have finished its copy.
        let check_first = task.interrupted || resume.is_some();
        match copy::copy_object(&item, &plan, resume, check_first, &journal, stop).await? {
            Outcome::Copied { size, modified, .. } | Outcome::AlreadyThere { size, modified } => {
                // An empty folder marker copied into a directory is its folder there, as it
                // is in a console's view of the bucket (the marker is kept in the index).
                if let Some(dir) = &self.dst.dir
                    && dk.is_dir_marker()
                    && size == 0
                    && !dir.store.make_marker_folder(&self.dst.bucket, &dk).await?
                {
                    tracing::info!(job = self.job, key = ?task.key, "a file or symlink is where this empty folder marker's folder goes: the marker is kept in the index only");
                }
                // A directory's copy keeps the source's time, as rsync and rclone keep it;
                // the next run compares the two times for equality.
                if self.dst.store.caps().keeps_modified {
                    self.dst
                        .store
                        .set_modified(&self.dst.bucket, &dk, modified)
                        .await?;
                }
                Ok(Some(size as i64))
            }
            // Gone since it was listed: nothing to copy, the task is finished, and the run
            // says so.
            Outcome::SourceGone => {
                self.live.vanished.fetch_add(1, Ordering::Relaxed);
                let mut keys = self
                    .live
                    .vanished_keys
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if keys.len() < VANISHED_SHOWN {
                    keys.push(task.key.clone());
                }
                // Said by every runner (a worker's log is all there is of it), and recorded
                // on the task, so `ferry job show` counts it apart from the copies.
                tracing::warn!(job = self.job, key = ?task.key, "vanished from the source while the job ran: not copied");
                Ok(Some(crate::state::VANISHED))
            }
            Outcome::Stopped => Ok(None),
        }
    }

    pub(super) async fn failed(&self, task: &TaskRow, e: &store::Error) {
        // A destination out of space fails every copy alike, and trying each again (then
        // dead-lettering it) helps nothing: the run ends, the task goes back as it was, and
        // the job resumes once there is room (rclone stops on a full disk too).
        // So do credentials a side refuses: they are this process's (its environment, or
        // a store registered with them), and another runner of the job with good ones must
        // not find every task dead-lettered by this one. The run stops; the tasks go back.
        let halt = if e.is_storage_full() {
            Some(format!(
                "the destination {} is out of space (copying {}: {e}); make room there",
                self.dst.display, task.key
            ))
        } else if let store::Error::NoSuchBucket { .. } = e
            && let Some(side) = self
                .side_failing(|e| matches!(e, store::Error::NoSuchBucket { .. }))
                .await
        {
            // A bucket removed while the job runs fails every copy alike: one line, not a
            // dead letter per key (a probe saw each printed twice).
            Some(format!(
                "the {} bucket {} is gone (copying {}: {e})",
                side.0, side.1, task.key
            ))
        } else if let store::Error::Unavailable { .. } = e
            && let Some(side) = self
                .side_failing(|e| matches!(e, store::Error::Unavailable { .. }))
                .await
        {
            // A side that does not answer (its watch fails each call at once while it is
            // down) would spend every task's attempts in minutes: while it is so, a failed
            // copy is tried again later without counting the attempt, and an outage longer
            // than OUTAGE_LIMIT stops the run (the job is kept, taken up again later).
            let since = *self
                .down_since
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(std::time::Instant::now);
            if since.elapsed() < OUTAGE_LIMIT {
                let at = crate::state::now_ms() + 5_000;
                if let Err(e) =
                    bounded(self.db.defer_task(&self.owner, task.id, &e.to_string(), at)).await
                {
                    tracing::warn!(job = self.job, error = %e, "deferring a task failed; its lease will expire");
                }
                return;
            }
            Some(format!(
                "the {} {} has not answered for {} s (copying {}: {e})",
                side.0,
                side.1,
                since.elapsed().as_secs(),
                task.key
            ))
        } else if e.is_credentials() && self.credentials_refused().await {
            Some(format!(
                "a side refused this process's credentials (copying {} from {} to {}: {e}); \
                 check the FERRY_SRC_*/FERRY_DST_* (or AWS_*) keys in the environment of the \
                 process that runs the job, or the keys of its registered stores",
                task.key, self.src.display, self.dst.display
            ))
        } else {
            None
        };
        // Deferred copies above are not attempts; these are.
        self.live.failures.fetch_add(1, Ordering::Relaxed);
        if let Some(why) = halt {
            if let Err(e) = bounded(self.db.release_started(&self.owner, &[task.id])).await {
                tracing::warn!(job = self.job, error = %e, "releasing a task failed; its lease will expire");
            }
            if self.live.halt(|| why) {
                tracing::warn!(job = self.job, key = ?task.key, error = %e, "stopping this run of the job");
            }
            return;
        }
        let attempts = task.attempts + 1;
        // A mirroring job may be about to delete what blocks the path (a source folder that
        // became a file: the copy of `a` waits for the delete of `a/x`); once no deletion is
        // to come, nothing will (a source key `a` beside `a/b`, a folder that is a symlink:
        // a probe's job retried them for minutes). Tried twice whatever: the deletion may
        // have ended between the failure and the question.
        let clears_way = self.spec.options.delete
            && matches!(e, store::Error::PathConflict { .. })
            && (attempts < 2
                || bounded(self.db.deletes_to_come(self.job))
                    .await
                    .unwrap_or(true));
        let retry =
            (retryable(e) || clears_way) && attempts < i64::from(self.spec.options.max_attempts);
        let msg = e.to_string();
        if matches!(e, store::Error::InvalidPart { .. })
            && let Err(e) = bounded(self.db.set_task_upload(task.id, None)).await
        {
            tracing::warn!(job = self.job, error = %e, "forgetting a broken upload failed");
        }
        let at = retry.then(|| crate::state::now_ms() + backoff_ms(attempts));
        if retry {
            tracing::debug!(job = self.job, key = ?task.key, attempts, error = %msg, "copy failed; will retry");
        } else {
            tracing::warn!(job = self.job, key = ?task.key, attempts, error = %msg, "copy failed for good: dead-letter list");
        }
        match bounded(self.db.fail_task(self.job, &self.owner, task.id, &msg, at)).await {
            Ok(Some(upload)) => self.abort_dead_upload(task, &upload).await,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(job = self.job, error = %e, "recording a failed task failed; its lease will expire");
            }
        }
    }

    /// A dead-lettered copy's multipart upload is aborted (as rclone aborts a failed one):
    /// its parts, invisible to listings and still stored (and billed), would stay on the
    /// destination for good once the job ended. `retry-dead` then starts the copy afresh.
    async fn abort_dead_upload(&self, task: &TaskRow, upload: &str) {
        match self.dst.abort_upload(&task.key, upload).await {
            Ok(()) => {
                if let Err(e) = bounded(self.db.forget_dead_upload(task.id, upload)).await {
                    tracing::warn!(job = self.job, error = %e, "forgetting an aborted upload failed");
                }
            }
            Err(e) => {
                tracing::warn!(job = self.job, key = ?task.key, upload, error = %e,
                    "could not abort a dead-lettered copy's multipart upload; its parts stay on the destination (`ferry job retry-dead` continues it)");
            }
        }
    }
}

impl Runner {
    /// The side (`("source", its display)`) whose one-key listing fails as `fails` says,
    /// if one does: a bucket gone, an endpoint not answering.
    async fn side_failing(
        &self,
        fails: impl Fn(&store::Error) -> bool,
    ) -> Option<(&'static str, String)> {
        for (role, side) in [("source", &self.src), ("destination", &self.dst)] {
            let listed = side
                .store
                .list_objects(
                    &side.bucket,
                    &store::ListQuery {
                        max_keys: 1,
                        ..Default::default()
                    },
                )
                .await;
            if let Err(e) = listed
                && fails(&e)
            {
                return Some((role, side.display.clone()));
            }
        }
        None
    }

    /// Whether a side refuses this process's credentials whatever the key (a one-key
    /// listing on each side is refused the same way): the run is to stop. A refusal of one
    /// key only (a proxy or backend that signs some keys differently) is that object's.
    async fn credentials_refused(&self) -> bool {
        self.side_failing(store::Error::is_credentials)
            .await
            .is_some()
    }
}

/// Whether a failed copy may succeed when tried again.
pub fn retryable(e: &store::Error) -> bool {
    e.is_retryable()
        || matches!(
            e,
            store::Error::BadDigest { .. }
                | store::Error::IncompleteBody { .. }
                | store::Error::InvalidPart { .. }
                | store::Error::NoSuchUpload { .. }
        )
}

/// 0.5 s, 1 s, 2 s, … up to a minute, with up to a quarter more of jitter.
fn backoff_ms(attempts: i64) -> i64 {
    let base = (500i64 << attempts.clamp(0, 7)).min(60_000);
    base + rand::random::<u64>() as i64 % (base / 4 + 1)
}

struct TaskJournal<'a> {
    db: &'a Db,
    task: i64,
    /// A task whose lease lapsed records nothing more: another process may be recording
    /// its own upload of it.
    alive: Alive,
}

impl TaskJournal<'_> {
    fn check(&self) -> store::Result<()> {
        if (self.alive)() {
            Ok(())
        } else {
            Err(store::Error::Unavailable {
                store: "state database".into(),
                message: crate::transfer::throttle::LAPSED.into(),
            })
        }
    }
}

#[async_trait]
impl copy::Journal for TaskJournal<'_> {
    async fn upload(&self, upload_id: Option<&str>) -> store::Result<()> {
        self.check()?;
        bounded(self.db.set_task_upload(self.task, upload_id))
            .await
            .map_err(state_err)
    }

    async fn part(&self, part_number: u32, etag: &str, size: u64) -> store::Result<()> {
        self.check()?;
        let part = PartRow {
            part_number: i64::from(part_number),
            etag: etag.to_owned(),
            size: size as i64,
        };
        bounded(self.db.add_task_part(self.task, &part))
            .await
            .map_err(state_err)
    }
}
