//! A job's tasks: claiming them with a lease, renewing and releasing leases, finishing and
//! failing them (backoff, dead letters, retry), the parts of their multipart uploads, and what
//! `job show` reports of the unfinished ones.

use sqlx::Row;

use super::super::{Db, Dialect, Result};
use super::lock_job;

/// A claimed task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRow {
    pub id: i64,
    pub key: String,
    pub action: String,
    pub size: i64,
    pub etag: String,
    pub attempts: i64,
    pub upload_id: Option<String>,
    /// It was in flight in a process that died (its copy may have finished).
    pub interrupted: bool,
}

/// A finished part of a task's multipart upload.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartRow {
    pub part_number: i64,
    pub etag: String,
    pub size: i64,
}

/// A task that is not finished: where it stands (for `job show`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpenTask {
    pub key: String,
    pub state: String,
    pub size: i64,
    pub attempts: i64,
    pub upload_id: Option<String>,
    pub parts_done: i64,
    pub bytes_done: i64,
    pub error: Option<String>,
}

/// A task that failed for good, with its last error (the dead-letter list).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadTask {
    /// Where the list goes on from: the next page is the one after this id.
    pub id: i64,
    pub key: String,
    pub size: i64,
    pub attempts: i64,
    pub error: Option<String>,
}

/// How many bytes of pending tasks a claim may take ([`Db::claim_tasks_within`]).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub bytes: i64,
    /// Take the first task even if it alone is larger.
    pub first: bool,
}

impl Budget {
    /// No limit.
    pub const NONE: Budget = Budget {
        bytes: i64::MAX,
        first: true,
    };
}

/// Task counts by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskCounts {
    pub pending: i64,
    pub running: i64,
    pub dead: i64,
    /// Done, but not copied: the object vanished from the source while the job ran.
    #[serde(default)]
    pub vanished: i64,
}

/// The bytes a finished task reports to [`Db::finish_tasks`] when its object vanished from
/// the source while the job ran: it is done, and recorded as such ([`VANISHED_NOTE`]).
pub const VANISHED: i64 = -1;
/// The note a vanished task is done with.
pub const VANISHED_NOTE: &str = "vanished from the source while the job ran: not copied";

const TASK_COLUMNS: &str = "id, object_key, action, size, etag, attempts, upload_id, interrupted";

fn task_row(r: &sqlx::any::AnyRow) -> Result<TaskRow> {
    Ok(TaskRow {
        id: r.try_get("id")?,
        key: r.try_get("object_key")?,
        action: r.try_get("action")?,
        size: r.try_get("size")?,
        etag: r.try_get("etag")?,
        attempts: r.try_get("attempts")?,
        upload_id: r.try_get("upload_id")?,
        interrupted: r.try_get::<i64, _>("interrupted")? != 0,
    })
}

impl Db {
    /// Claims up to `n` runnable tasks of `job` for `owner` until `lease_ms`: pending ones
    /// whose backoff has passed, and running ones whose owner's lease expired.
    pub async fn claim_tasks(
        &self,
        job: i64,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        n: i64,
    ) -> Result<Vec<TaskRow>> {
        self.claim_tasks_within(job, owner, now_ms, lease_ms, n, Budget::NONE)
            .await
    }

    /// [`Self::claim_tasks`], taking pending tasks (in id order) only while their sizes add
    /// up to at most `budget.bytes`; the first one whatever its size if `budget.first`.
    pub async fn claim_tasks_within(
        &self,
        job: i64,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
        n: i64,
        budget: Budget,
    ) -> Result<Vec<TaskRow>> {
        let lock = if self.dialect == Dialect::Postgres {
            " FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        // Two statements, each answered from the (job_id, state, id) index: expired leases
        // (few), then pending tasks in id order. One OR across both would scan the job.
        let mut tx = self.write_tx().await?;
        let mut rows = sqlx::query(&format!(
            "UPDATE job_tasks SET interrupted = 1, owner = $1, lease_ms = $2 WHERE id IN (
                SELECT id FROM job_tasks WHERE job_id = $3 AND state = 'running' AND lease_ms < $4
                ORDER BY id LIMIT $5{lock})
             RETURNING {TASK_COLUMNS}"
        ))
        .bind(owner)
        .bind(lease_ms)
        .bind(job)
        .bind(now_ms)
        .bind(n)
        .fetch_all(&mut *tx)
        .await?;
        let left = n - rows.len() as i64;
        if left > 0 {
            // The candidates with the bytes before each: a prefix of them fits the budget.
            rows.extend(
                sqlx::query(&format!(
                    "WITH c AS (
                        SELECT id, size FROM job_tasks WHERE job_id = $3 AND state = 'pending' AND next_ms <= $4
                        ORDER BY id LIMIT $5{lock}),
                     r AS (SELECT id, size, SUM(size) OVER (ORDER BY id) - size AS before FROM c)
                     UPDATE job_tasks SET state = 'running', owner = $1, lease_ms = $2 WHERE id IN (
                        SELECT id FROM r WHERE before + size <= $6 OR (before = 0 AND $7 = 1))
                     RETURNING {TASK_COLUMNS}"
                ))
                .bind(owner)
                .bind(lease_ms)
                .bind(job)
                .bind(now_ms)
                .bind(left)
                .bind(budget.bytes)
                .bind(i64::from(budget.first))
                .fetch_all(&mut *tx)
                .await?,
            );
        }
        tx.commit().await?;
        let mut tasks = rows.iter().map(task_row).collect::<Result<Vec<_>>>()?;
        tasks.sort_by_key(|t| t.id);
        Ok(tasks)
    }

    /// Extends the leases of the tasks `ids` that `owner` runs. Only those its process knows
    /// it holds: a task whose release failed, or whose claim committed while its answer was
    /// lost (the database going away), is `owner`'s in the table but run by nobody, and
    /// renewing every task of the owner kept it so for ever (a job that never ended).
    /// With none, the database is still asked something: a renewal is what tells the
    /// runner's fence that the database answers.
    pub async fn renew_leases(&self, owner: &str, ids: &[i64], lease_ms: i64) -> Result<()> {
        if ids.is_empty() {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
        }
        for chunk in ids.chunks(500) {
            let list = placeholders(3, chunk.len());
            let sql = format!(
                "UPDATE job_tasks SET lease_ms = $1 WHERE owner = $2 AND state = 'running' AND id IN ({list})"
            );
            let mut q = sqlx::query(&sql).bind(lease_ms).bind(owner);
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Gives back the tasks of `job` whose lease ran out before `now_ms` (their process is
    /// gone or lost them), marked interrupted as a claim of them would; returns how many.
    /// Until then they count as running, which a paused or ended job never claims again.
    pub async fn release_expired(&self, job: i64, now_ms: i64) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE job_tasks SET state = 'pending', owner = NULL, interrupted = 1 WHERE job_id = $1 AND state = 'running' AND lease_ms < $2",
        )
        .bind(job)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Gives tasks back (pause, shutdown) without counting an attempt.
    pub async fn release_tasks(&self, owner: &str, ids: &[i64]) -> Result<()> {
        self.release(owner, ids, false).await
    }

    /// [`Self::release_tasks`] for tasks whose copy had begun (stopped halfway, or failed in
    /// a way that ends the run): marked interrupted, so whoever runs them next first looks
    /// whether the copy landed, instead of copying it again.
    pub async fn release_started(&self, owner: &str, ids: &[i64]) -> Result<()> {
        self.release(owner, ids, true).await
    }

    async fn release(&self, owner: &str, ids: &[i64], started: bool) -> Result<()> {
        let sql = if started {
            "UPDATE job_tasks SET state = 'pending', owner = NULL, interrupted = 1 WHERE id = $1 AND owner = $2 AND state = 'running'"
        } else {
            "UPDATE job_tasks SET state = 'pending', owner = NULL WHERE id = $1 AND owner = $2 AND state = 'running'"
        };
        let mut tx = self.write_tx().await?;
        for id in ids {
            sqlx::query(sql)
                .bind(id)
                .bind(owner)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Marks tasks done (with the bytes each moved) and adds them to the job's counters, in
    /// one transaction; a task another owner took over meanwhile is not counted twice.
    pub async fn finish_tasks(&self, job: i64, owner: &str, done: &[(i64, i64)]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let (mut n, mut bytes) = (0i64, 0i64);
        let size: std::collections::HashMap<i64, i64> = done.iter().copied().collect();
        let (gone, copied): (Vec<_>, Vec<_>) = done.iter().partition(|(_, b)| *b == VANISHED);
        for (chunk, note) in copied
            .chunks(200)
            .map(|c| (c, None))
            .chain(gone.chunks(200).map(|c| (c, Some(VANISHED_NOTE))))
        {
            let list = placeholders(3, chunk.len());
            let sql = format!(
                "UPDATE job_tasks SET state = 'done', owner = NULL, error = $2 WHERE owner = $1 AND state = 'running' AND id IN ({list}) RETURNING id, upload_id"
            );
            let mut q = sqlx::query(&sql).bind(owner).bind(note);
            for (id, _) in chunk {
                q = q.bind(id);
            }
            let mut with_parts = Vec::new();
            for r in q.fetch_all(&mut *tx).await? {
                let id: i64 = r.try_get("id")?;
                n += 1;
                bytes += size.get(&id).copied().unwrap_or(0).max(0);
                if r.try_get::<Option<String>, _>("upload_id")?.is_some() {
                    with_parts.push(id);
                }
            }
            for id in with_parts {
                sqlx::query("DELETE FROM job_parts WHERE task_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(
            "UPDATE jobs SET done = done + $1, done_bytes = done_bytes + $2, updated_ms = $3 WHERE id = $4",
        )
        .bind(n)
        .bind(bytes)
        .bind(crate::state::now_ms())
        .bind(job)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Hands a task back to be tried again at `at_ms` without counting the attempt (its
    /// side did not answer at all: no attempt was made on the object), with why.
    pub async fn defer_task(&self, owner: &str, id: i64, error: &str, at_ms: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE job_tasks SET state = 'pending', next_ms = $1, error = $2, owner = NULL WHERE id = $3 AND owner = $4 AND state = 'running'",
        )
        .bind(at_ms)
        .bind(error)
        .bind(id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed attempt: back to pending at `retry_at_ms`, or (when `None`) into the
    /// job's dead-letter list; returns the multipart upload a task it dead-lettered records
    /// (for the caller to abort: nothing will complete it).
    pub async fn fail_task(
        &self,
        job: i64,
        owner: &str,
        id: i64,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<Option<String>> {
        let mut tx = self.write_tx().await?;
        let (state, next) = match retry_at_ms {
            Some(t) => ("pending", t),
            None => ("dead", 0),
        };
        let r = sqlx::query(
            "UPDATE job_tasks SET state = $1, next_ms = $2, attempts = attempts + 1, error = $3, owner = NULL WHERE id = $4 AND owner = $5 AND state = 'running'",
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        let mut upload = None;
        if r.rows_affected() > 0 && retry_at_ms.is_none() {
            sqlx::query("UPDATE jobs SET dead = dead + 1 WHERE id = $1")
                .bind(job)
                .execute(&mut *tx)
                .await?;
            upload = sqlx::query("SELECT upload_id FROM job_tasks WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("upload_id")?;
        }
        tx.commit().await?;
        Ok(upload)
    }

    /// Puts every dead task of a job back in the queue (attempts start again) and, when
    /// that requeued any, a finished job back to running, in one transaction (see
    /// [`Db::finish_job`]); returns how many. A cancelled job's are left as they are: it
    /// never runs again.
    pub async fn retry_dead(&self, job: i64) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        lock_job(&mut tx, job).await?;
        let r = sqlx::query(
            "UPDATE job_tasks SET state = 'pending', attempts = 0, next_ms = 0 WHERE job_id = $1 AND state = 'dead' AND action <> 'unlisted'
               AND EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND state <> 'cancelled')",
        )
        .bind(job)
        .execute(&mut *tx)
        .await?;
        let n = r.rows_affected() as i64;
        sqlx::query(
            "UPDATE jobs SET dead = dead - $1,
                state = CASE WHEN state = 'done' AND $1 > 0 THEN 'running' ELSE state END,
                finished_ms = CASE WHEN state = 'done' AND $1 > 0 THEN NULL ELSE finished_ms END,
                updated_ms = CASE WHEN $1 > 0 THEN $3 ELSE updated_ms END
             WHERE id = $2",
        )
        .bind(n)
        .bind(job)
        .bind(super::super::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    /// Marks a running job whose listing is complete done, unless a task of it is still
    /// pending or running; false when it was not marked. One transaction against
    /// [`Db::retry_dead`]: a job never ends done with tasks requeued meanwhile.
    pub async fn finish_job(&self, job: i64, now_ms: i64) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        lock_job(&mut tx, job).await?;
        let r = sqlx::query(
            "UPDATE jobs SET state = 'done', updated_ms = $1, finished_ms = $1
             WHERE id = $2 AND state = 'running' AND listing_done = 1
               AND NOT EXISTS (SELECT 1 FROM job_tasks WHERE job_id = $2 AND state IN ('pending', 'held', 'running'))",
        )
        .bind(now_ms)
        .bind(job)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records the multipart upload a task writes into (forgetting the parts of any earlier
    /// one), before its first part is sent.
    pub async fn set_task_upload(&self, id: i64, upload_id: Option<&str>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM job_parts WHERE task_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE job_tasks SET upload_id = $1 WHERE id = $2")
            .bind(upload_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets `upload` on a dead task once it was aborted, unless the task went back to the
    /// queue meanwhile (`retry-dead`) and another runner recorded its own since.
    pub async fn forget_dead_upload(&self, id: i64, upload_id: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "UPDATE job_tasks SET upload_id = NULL WHERE id = $1 AND upload_id = $2 AND state = 'dead'",
        )
        .bind(id)
        .bind(upload_id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() > 0 {
            sqlx::query("DELETE FROM job_parts WHERE task_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn add_task_part(&self, id: i64, part: &PartRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO job_parts (task_id, part_number, etag, size) VALUES ($1, $2, $3, $4) ON CONFLICT (task_id, part_number) DO UPDATE SET etag = excluded.etag, size = excluded.size",
        )
        .bind(id)
        .bind(part.part_number)
        .bind(&part.etag)
        .bind(part.size)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn task_parts(&self, id: i64) -> Result<Vec<PartRow>> {
        let rows = sqlx::query(
            "SELECT part_number, etag, size FROM job_parts WHERE task_id = $1 ORDER BY part_number",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PartRow {
                    part_number: r.try_get("part_number")?,
                    etag: r.try_get("etag")?,
                    size: r.try_get("size")?,
                })
            })
            .collect()
    }

    /// Whether a deletion of `job` may still come: its listing is not done, or a delete
    /// task is not finished. (A path a copy finds blocked can be cleared only by one.)
    pub async fn deletes_to_come(&self, job: i64) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 AS x FROM jobs WHERE id = $1 AND listing_done = 0
             UNION ALL
             SELECT 1 AS x FROM job_tasks WHERE job_id = $1 AND action = 'delete'
               AND state IN ('pending', 'held', 'running')
             LIMIT 1",
        )
        .bind(job)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    pub async fn task_counts(&self, job: i64) -> Result<TaskCounts> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM job_tasks WHERE job_id = $1 AND state IN ('pending', 'held', 'running', 'dead') GROUP BY state",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        let mut c = TaskCounts::default();
        for r in rows {
            let n: i64 = r.try_get("n")?;
            match r.try_get::<String, _>("state")?.as_str() {
                "pending" | "held" => c.pending += n,
                "running" => c.running = n,
                _ => c.dead = n,
            }
        }
        c.vanished = sqlx::query(
            "SELECT COUNT(*) AS n FROM job_tasks WHERE job_id = $1 AND state = 'done' AND error = $2",
        )
        .bind(job)
        .bind(VANISHED_NOTE)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(c)
    }

    /// Unfinished tasks that have made progress or failed (in flight, with parts recorded,
    /// retrying or dead), up to `limit`, dead ones first.
    pub async fn open_tasks(&self, job: i64, limit: i64) -> Result<Vec<OpenTask>> {
        let rows = sqlx::query(
            "SELECT t.object_key, t.state, t.size, t.attempts, t.upload_id, t.error,
                    COUNT(p.part_number) AS parts_done, CAST(COALESCE(SUM(p.size), 0) AS BIGINT) AS bytes_done
             FROM job_tasks t LEFT JOIN job_parts p ON p.task_id = t.id AND p.part_number > 0
             WHERE t.job_id = $1 AND (t.state IN ('running', 'dead') OR (t.state = 'pending' AND (t.upload_id IS NOT NULL OR t.attempts > 0)))
             GROUP BY t.id, t.object_key, t.state, t.size, t.attempts, t.upload_id, t.error
             ORDER BY CASE t.state WHEN 'dead' THEN 0 ELSE 1 END, t.id LIMIT $2",
        )
        .bind(job)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OpenTask {
                    key: r.try_get("object_key")?,
                    state: r.try_get("state")?,
                    size: r.try_get("size")?,
                    attempts: r.try_get("attempts")?,
                    upload_id: r.try_get("upload_id")?,
                    parts_done: r.try_get("parts_done")?,
                    bytes_done: r.try_get("bytes_done")?,
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    /// A page of a job's dead letters in the order they are stored: at most `limit`, those
    /// after the task `after` (the `id` of the last of the page before). The whole list is
    /// read page by page, however long it is.
    pub async fn dead_tasks(&self, job: i64, after: i64, limit: i64) -> Result<Vec<DeadTask>> {
        let rows = sqlx::query(
            "SELECT id, object_key, size, attempts, error FROM job_tasks
             WHERE job_id = $1 AND state = 'dead' AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(job)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadTask {
                    id: r.try_get("id")?,
                    key: r.try_get("object_key")?,
                    size: r.try_get("size")?,
                    attempts: r.try_get("attempts")?,
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }

    /// How many of a job's dead letters `retry_dead` would put back in the queue (not the
    /// entries its listing could not index: the next listing finds them again).
    pub async fn retriable_dead(&self, job: i64) -> Result<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM job_tasks WHERE job_id = $1 AND state = 'dead' AND action <> 'unlisted'",
        )
        .bind(job)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?)
    }

    /// Task id, key and upload id of a job's unfinished tasks that record a multipart
    /// upload (to abort them when the job is cancelled).
    pub async fn job_uploads(&self, job: i64) -> Result<Vec<(i64, String, String)>> {
        let rows = sqlx::query(
            "SELECT id, object_key, upload_id FROM job_tasks WHERE job_id = $1 AND upload_id IS NOT NULL AND state <> 'done' ORDER BY id",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("object_key")?,
                    r.try_get("upload_id")?,
                ))
            })
            .collect()
    }
}

impl Db {
    /// Owners of a job's running tasks and of its listing lease.
    pub async fn job_owners(&self, job: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT owner FROM job_tasks WHERE job_id = $1 AND state = 'running' AND owner IS NOT NULL
             UNION SELECT lister FROM jobs WHERE id = $1 AND lister IS NOT NULL",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }

    /// Hands back everything `owner` held in a job (a process known to be dead): its tasks
    /// go back to the queue marked interrupted, and its listing lease is dropped.
    pub async fn reclaim_owner(&self, job: i64, owner: &str) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "UPDATE job_tasks SET state = 'pending', owner = NULL, interrupted = 1 WHERE job_id = $1 AND owner = $2 AND state = 'running'",
        )
        .bind(job)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE jobs SET lister = NULL WHERE id = $1 AND lister = $2")
            .bind(job)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }
}

/// `$first, …` for `n` parameters bound in order: the list of an `IN (…)`.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}
