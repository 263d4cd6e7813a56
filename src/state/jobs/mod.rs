//! Jobs, their tasks and the parts of their multipart uploads.
//!
//! A job is a spec (JSON, never secrets), a state, a listing cursor and counters. Its listing
//! is consumed page by page into `job_tasks` rows; workers claim rows with a lease (`FOR
//! UPDATE SKIP LOCKED` on PostgreSQL, so several processes share a job), and a task's
//! multipart upload id and finished parts are recorded as they happen, so a resumed task
//! continues where it stopped. The `jobs` layer decides what runs; this module stores it.

use sqlx::Row;

use super::{Db, Error, Result};

mod tasks;

pub use tasks::{
    Budget, DeadTask, OpenTask, PartRow, TaskCounts, TaskRow, VANISHED, VANISHED_NOTE,
};

pub(super) fn schema(id: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS jobs (
                id {id},
                kind TEXT NOT NULL,
                spec TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                state TEXT NOT NULL,
                listed_after TEXT,
                listing_done BIGINT NOT NULL DEFAULT 0,
                lister TEXT,
                lister_until BIGINT NOT NULL DEFAULT 0,
                listed BIGINT NOT NULL DEFAULT 0,
                listed_bytes BIGINT NOT NULL DEFAULT 0,
                unchanged BIGINT NOT NULL DEFAULT 0,
                done BIGINT NOT NULL DEFAULT 0,
                done_bytes BIGINT NOT NULL DEFAULT 0,
                dead BIGINT NOT NULL DEFAULT 0,
                created_ms BIGINT NOT NULL,
                updated_ms BIGINT NOT NULL,
                finished_ms BIGINT,
                error TEXT
            )"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS job_tasks (
                id {id},
                job_id BIGINT NOT NULL,
                object_key TEXT NOT NULL,
                action TEXT NOT NULL,
                size BIGINT NOT NULL,
                etag TEXT NOT NULL,
                state TEXT NOT NULL,
                attempts BIGINT NOT NULL DEFAULT 0,
                next_ms BIGINT NOT NULL DEFAULT 0,
                owner TEXT,
                lease_ms BIGINT NOT NULL DEFAULT 0,
                upload_id TEXT,
                error TEXT,
                interrupted BIGINT NOT NULL DEFAULT 0,
                UNIQUE (job_id, object_key)
            )"
        ),
        "CREATE INDEX IF NOT EXISTS job_tasks_by_state ON job_tasks (job_id, state, id)".into(),
        // Each process running a job says so here at every heartbeat: how `job list` tells a
        // job that runs from one whose process was killed.
        "CREATE TABLE IF NOT EXISTS job_runners (
            job_id BIGINT NOT NULL,
            owner TEXT NOT NULL,
            seen_ms BIGINT NOT NULL,
            PRIMARY KEY (job_id, owner)
        )"
        .into(),
        "CREATE TABLE IF NOT EXISTS job_parts (
            task_id BIGINT NOT NULL,
            part_number BIGINT NOT NULL,
            etag TEXT NOT NULL,
            size BIGINT NOT NULL,
            PRIMARY KEY (task_id, part_number)
        )"
        .into(),
    ]
}

/// Job states as stored.
pub mod job_state {
    pub const RUNNING: &str = "running";
    pub const PAUSED: &str = "paused";
    pub const CANCELLED: &str = "cancelled";
    pub const DONE: &str = "done";
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobRecord {
    pub id: i64,
    pub kind: String,
    pub spec: serde_json::Value,
    pub fingerprint: String,
    pub state: String,
    pub listed_after: Option<String>,
    pub listing_done: bool,
    /// Objects (and deletions) found to need work, and their bytes.
    pub listed: i64,
    pub listed_bytes: i64,
    /// Objects found already equal on the destination.
    pub unchanged: i64,
    pub done: i64,
    pub done_bytes: i64,
    pub dead: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub finished_ms: Option<i64>,
    pub error: Option<String>,
    /// When a process running the job last said it was alive, if one ever did.
    #[serde(default)]
    pub runner_seen_ms: Option<i64>,
    /// Running, but no process has run it for [`UNATTENDED_MS`] (killed, or never picked
    /// up): as read, by the clock of whoever read it.
    #[serde(default)]
    pub unattended: bool,
}

/// How long a running job may go without a heartbeat (every 5 s) or a change before it reads
/// as unattended.
pub const UNATTENDED_MS: i64 = 20_000;

/// A process's last heartbeat for a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Runner {
    /// `host:pid:tag`.
    pub owner: String,
    pub seen_ms: i64,
}

/// A task to add while listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub key: String,
    /// `copy` or `delete`.
    pub action: &'static str,
    pub size: i64,
    pub etag: String,
}

const JOB_COLUMNS: &str = "id, kind, spec, fingerprint, state, listed_after, listing_done, listed, listed_bytes, unchanged, done, done_bytes, dead, created_ms, updated_ms, finished_ms, error, \
    (SELECT MAX(seen_ms) FROM job_runners r WHERE r.job_id = jobs.id) AS runner_seen_ms";

fn job_record(r: &sqlx::any::AnyRow) -> Result<JobRecord> {
    let spec: String = r.try_get("spec")?;
    let state: String = r.try_get("state")?;
    let updated_ms: i64 = r.try_get("updated_ms")?;
    let runner_seen_ms: Option<i64> = r.try_get("runner_seen_ms")?;
    let unattended = state == job_state::RUNNING
        && runner_seen_ms.unwrap_or(0).max(updated_ms) < super::now_ms() - UNATTENDED_MS;
    Ok(JobRecord {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        spec: serde_json::from_str(&spec).map_err(|e| Error::Corrupt(e.to_string()))?,
        fingerprint: r.try_get("fingerprint")?,
        state,
        listed_after: r.try_get("listed_after")?,
        listing_done: r.try_get::<i64, _>("listing_done")? != 0,
        listed: r.try_get("listed")?,
        listed_bytes: r.try_get("listed_bytes")?,
        unchanged: r.try_get("unchanged")?,
        done: r.try_get("done")?,
        done_bytes: r.try_get("done_bytes")?,
        dead: r.try_get("dead")?,
        created_ms: r.try_get("created_ms")?,
        updated_ms,
        finished_ms: r.try_get("finished_ms")?,
        error: r.try_get("error")?,
        runner_seen_ms,
        unattended,
    })
}

/// Takes a job's row for the rest of `tx`, so two transactions that change a job and its
/// tasks together run one after the other. Needed on PostgreSQL, where a statement that
/// waited for another transaction's row lock checks its conditions again on the row, but
/// not its subqueries (they keep the snapshot taken before the wait); each statement after
/// this one sees what the other transaction committed. On SQLite the first write takes the
/// database's write lock, which does the same.
async fn lock_job(tx: &mut sqlx::Transaction<'_, sqlx::Any>, job: i64) -> Result<()> {
    sqlx::query("UPDATE jobs SET updated_ms = updated_ms WHERE id = $1")
        .bind(job)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records a new running job; returns its id.
async fn insert_job<'e>(
    ex: impl sqlx::Executor<'e, Database = sqlx::Any>,
    kind: &str,
    spec: &serde_json::Value,
    fingerprint: &str,
    now_ms: i64,
) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO jobs (kind, spec, fingerprint, state, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(kind)
    .bind(spec.to_string())
    .bind(fingerprint)
    .bind(job_state::RUNNING)
    .bind(now_ms)
    .fetch_one(ex)
    .await?;
    Ok(row.try_get("id")?)
}

impl Db {
    pub async fn create_job(
        &self,
        kind: &str,
        spec: &serde_json::Value,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<i64> {
        insert_job(&self.pool, kind, spec, fingerprint, now_ms).await
    }

    /// The unfinished job with this fingerprint, or a new one: `(id, created)`. Decided in
    /// one transaction, serialised per fingerprint (SQLite's write lock; an advisory lock on
    /// PostgreSQL), so the same command submitted from several places at once makes one job
    /// (a probe made six at once and got three jobs, each copying every object).
    pub async fn find_or_create_job(
        &self,
        kind: &str,
        spec: &serde_json::Value,
        fingerprint: &str,
        now_ms: i64,
    ) -> Result<(i64, bool)> {
        let mut tx = match self.dialect {
            super::Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            super::Dialect::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7304520, hashtext($1))")
                    .bind(fingerprint)
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        let found = sqlx::query(
            "SELECT id FROM jobs WHERE fingerprint = $1 AND state IN ('running', 'paused') \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(fingerprint)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = found {
            tx.commit().await?;
            return Ok((row.try_get("id")?, false));
        }
        let id = insert_job(&mut *tx, kind, spec, fingerprint, now_ms).await?;
        tx.commit().await?;
        Ok((id, true))
    }

    /// The newest job with this fingerprint that is neither done nor cancelled.
    pub async fn unfinished_job(&self, fingerprint: &str) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE fingerprint = $1 AND state IN ('running', 'paused') ORDER BY id DESC LIMIT 1"
        ))
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_record).transpose()
    }

    pub async fn job(&self, id: i64) -> Result<JobRecord> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(r) => job_record(&r),
            None => Err(Error::NoSuchJob(id)),
        }
    }

    pub async fn jobs(&self) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(job_record).collect()
    }

    /// Jobs in the running state (for `ferry worker`).
    pub async fn running_jobs(&self) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state = 'running' ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_record).collect()
    }

    /// Records that `owner` runs `job` now (its heartbeat), and forgets processes not heard
    /// of for a day.
    pub async fn runner_alive(&self, job: i64, owner: &str, now_ms: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO job_runners (job_id, owner, seen_ms) VALUES ($1, $2, $3)
             ON CONFLICT (job_id, owner) DO UPDATE SET seen_ms = excluded.seen_ms",
        )
        .bind(job)
        .bind(owner)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM job_runners WHERE job_id = $1 AND seen_ms < $2")
            .bind(job)
            .bind(now_ms - 86_400_000)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// `owner` stopped running `job` (it ended, or the process stops cleanly).
    pub async fn runner_gone(&self, job: i64, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM job_runners WHERE job_id = $1 AND owner = $2")
            .bind(job)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The processes that ran `job` in the last day, the most recently heard of first.
    pub async fn job_runners(&self, job: i64) -> Result<Vec<Runner>> {
        let rows = sqlx::query(
            "SELECT owner, seen_ms FROM job_runners WHERE job_id = $1 ORDER BY seen_ms DESC, owner",
        )
        .bind(job)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Runner {
                    owner: r.try_get("owner")?,
                    seen_ms: r.try_get("seen_ms")?,
                })
            })
            .collect()
    }

    /// Moves a job from one of `from` to `to`; false when it was in none of them.
    pub async fn set_job_state(
        &self,
        id: i64,
        from: &[&str],
        to: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let list = from
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "")))
            .collect::<Vec<_>>()
            .join(",");
        let finished = if to == job_state::DONE || to == job_state::CANCELLED {
            Some(now_ms)
        } else {
            None
        };
        let r = sqlx::query(&format!(
            "UPDATE jobs SET state = $1, updated_ms = $2, finished_ms = $3 WHERE id = $4 AND state IN ({list})"
        ))
        .bind(to)
        .bind(now_ms)
        .bind(finished)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records why the last process that tried could not run a job (`None`: it runs), for
    /// `ferry job show` to say what otherwise only that process's log does. A reason comes
    /// only while the job runs (a run failing after another finished it says nothing).
    pub async fn set_job_error(&self, id: i64, error: Option<&str>) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET error = $1 WHERE id = $2 AND ($1 IS NULL OR state = 'running')",
        )
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes (or renews) the right to list a job's source until `until_ms`; false while
    /// another live owner holds it.
    pub async fn take_lister(
        &self,
        job: i64,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE jobs SET lister = $1, lister_until = $2 WHERE id = $3 AND listing_done = 0 AND (lister IS NULL OR lister = $1 OR lister_until < $4)",
        )
        .bind(owner)
        .bind(until_ms)
        .bind(job)
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Records one page of the listing in one transaction: its tasks, the cursor after it,
    /// the count of keys found unchanged, and whether the listing is complete. Only the
    /// current lister may record (`owner`); a page recorded twice adds no task twice.
    pub async fn add_listing_page(
        &self,
        job: i64,
        owner: &str,
        tasks: &[NewTask],
        cursor: Option<&str>,
        unchanged: i64,
        done: bool,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "UPDATE jobs SET listed_after = COALESCE($1, listed_after), listing_done = $2, unchanged = unchanged + $3 WHERE id = $4 AND lister = $5 AND listing_done = 0",
        )
        .bind(cursor)
        .bind(i64::from(done))
        .bind(unchanged)
        .bind(job)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        let (mut n, mut bytes) = (0i64, 0i64);
        for chunk in tasks.chunks(200) {
            let mut sql = String::from(
                "INSERT INTO job_tasks (job_id, object_key, action, size, etag, state) VALUES ",
            );
            for (i, t) in chunk.iter().enumerate() {
                let b = i * 5;
                if i > 0 {
                    sql.push(',');
                }
                // A deletion waits ('held') until the whole source listing has succeeded:
                // a listing that fails halfway (or a source folder that cannot be read) must
                // not have removed what it had not seen yet (rclone's --delete-after).
                let state = if t.action == "delete" {
                    "held"
                } else {
                    "pending"
                };
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, '{state}')",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5
                ));
            }
            sql.push_str(" ON CONFLICT (job_id, object_key) DO NOTHING");
            let mut q = sqlx::query(&sql);
            for t in chunk {
                q = q
                    .bind(job)
                    .bind(&t.key)
                    .bind(t.action)
                    .bind(t.size)
                    .bind(&t.etag);
            }
            let r = q.execute(&mut *tx).await?;
            // Conflicts (a page listed again after a crash) add nothing; count what was new.
            if r.rows_affected() as usize == chunk.len() {
                n += chunk.len() as i64;
                bytes += chunk.iter().map(|t| t.size).sum::<i64>();
            } else {
                n += r.rows_affected() as i64;
                bytes += chunk.iter().map(|t| t.size).sum::<i64>() * r.rows_affected() as i64
                    / chunk.len().max(1) as i64;
            }
        }
        sqlx::query(
            "UPDATE jobs SET listed = listed + $1, listed_bytes = listed_bytes + $2 WHERE id = $3",
        )
        .bind(n)
        .bind(bytes)
        .bind(job)
        .execute(&mut *tx)
        .await?;
        if done {
            sqlx::query(
                "UPDATE job_tasks SET state = 'pending' WHERE job_id = $1 AND state = 'held'",
            )
            .bind(job)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records what the listing found but no task can copy (a file whose name is not UTF-8,
    /// which no S3 key can name; a folder that cannot be read) as dead letters of action
    /// `unlisted`, each with why, so the job reports them instead of passing over them;
    /// `retry-dead` leaves them (renaming the file or fixing the folder's permissions is the
    /// fix, and the next run lists it again). Recording one twice adds nothing.
    pub async fn add_not_indexed(&self, job: i64, found: &[(String, String)]) -> Result<()> {
        if found.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        let mut n = 0i64;
        for (key, why) in found {
            let r = sqlx::query(
                "INSERT INTO job_tasks (job_id, object_key, action, size, etag, state, error) VALUES ($1, $2, 'unlisted', 0, '', 'dead', $3) ON CONFLICT (job_id, object_key) DO NOTHING",
            )
            .bind(job)
            .bind(key)
            .bind(why)
            .execute(&mut *tx)
            .await?;
            n += r.rows_affected() as i64;
        }
        sqlx::query("UPDATE jobs SET listed = listed + $1, dead = dead + $1 WHERE id = $2")
            .bind(n)
            .bind(job)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
