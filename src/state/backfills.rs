//! Backfills in progress: a secondary added to a namespace bucket is owed every object its
//! primary held, journaled a page of the primary's listing at a time. A backfill cut short
//! (the primary stopped answering, the server was killed) must not be forgotten: it left
//! the secondary owed part of the bucket while its journal said nothing was owed. Each one
//! is a row here, with the last key journaled, from before the policy names the target
//! until the last page is journaled; the bucket layer resumes it from there.

use sqlx::Row;

use super::{Db, Result};

pub(super) fn schema() -> Vec<String> {
    vec![
        "CREATE TABLE IF NOT EXISTS bucket_backfills (
            bucket TEXT NOT NULL,
            target TEXT NOT NULL,
            after_key TEXT,
            delete_extra BIGINT NOT NULL,
            created_ms BIGINT NOT NULL,
            PRIMARY KEY (bucket, target)
        )"
        .into(),
    ]
}

/// One backfill in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backfill {
    pub bucket: String,
    pub target: String,
    /// The last key journaled (`None`: nothing yet).
    pub after: Option<String>,
    /// The target's keys the primary lacks are owed as deletions too.
    pub delete_extra: bool,
    pub created_ms: i64,
}

impl Db {
    /// Records backfills about to begin (from the start, replacing any of the same target).
    pub async fn begin_backfills(&self, rows: &[Backfill]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for b in rows {
            sqlx::query("DELETE FROM bucket_backfills WHERE bucket = $1 AND target = $2")
                .bind(&b.bucket)
                .bind(&b.target)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO bucket_backfills (bucket, target, after_key, delete_extra, created_ms)
                 VALUES ($1, $2, NULL, $3, $4)",
            )
            .bind(&b.bucket)
            .bind(&b.target)
            .bind(i64::from(b.delete_extra))
            .bind(b.created_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records how far a backfill has journaled.
    pub async fn backfill_progress(&self, bucket: &str, target: &str, after: &str) -> Result<()> {
        sqlx::query("UPDATE bucket_backfills SET after_key = $3 WHERE bucket = $1 AND target = $2")
            .bind(bucket)
            .bind(target)
            .bind(after)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets a backfill: done, or its target left the bucket.
    pub async fn end_backfill(&self, bucket: &str, target: &str) -> Result<()> {
        sqlx::query("DELETE FROM bucket_backfills WHERE bucket = $1 AND target = $2")
            .bind(bucket)
            .bind(target)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets every backfill of `bucket` (removed).
    pub async fn drop_backfills(&self, bucket: &str) -> Result<()> {
        sqlx::query("DELETE FROM bucket_backfills WHERE bucket = $1")
            .bind(bucket)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The backfills in progress (of `bucket`, or of every bucket).
    pub async fn backfills(&self, bucket: Option<&str>) -> Result<Vec<Backfill>> {
        let rows = sqlx::query(
            "SELECT bucket, target, after_key, delete_extra, created_ms FROM bucket_backfills
             WHERE $1 IS NULL OR bucket = $1 ORDER BY bucket, target",
        )
        .bind(bucket)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Backfill {
                    bucket: r.try_get("bucket")?,
                    target: r.try_get("target")?,
                    after: r.try_get("after_key")?,
                    delete_extra: r.try_get::<i64, _>("delete_extra")? != 0,
                    created_ms: r.try_get("created_ms")?,
                })
            })
            .collect()
    }
}
