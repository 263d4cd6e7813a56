//! The multi-write journal's rows: one per accepted mutation per target that may still owe it.
//! The `journal` layer decides when rows are written and removed; this module stores them.
//!
//! A row names the client bucket, the target (`store:bucket`) and the key (empty for a
//! bucket-level change), what kind of change it is (`op`), and the bytes it will move (for
//! backlog accounting). Rows are only appended and deleted, never updated.

use sqlx::Row;

use super::{Db, Result};

pub(super) fn schema(id: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS journal (
                id {id},
                bucket TEXT NOT NULL,
                target TEXT NOT NULL,
                object_key TEXT NOT NULL,
                op TEXT NOT NULL,
                bytes BIGINT NOT NULL,
                created_ms BIGINT NOT NULL
            )"
        ),
        "CREATE INDEX IF NOT EXISTS journal_by_target ON journal (bucket, target, id)".into(),
        "CREATE INDEX IF NOT EXISTS journal_by_key ON journal (bucket, target, object_key, id)"
            .into(),
    ]
}

/// A row to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJournalRow {
    pub bucket: String,
    pub target: String,
    pub key: String,
    pub op: String,
    pub bytes: i64,
    pub created_ms: i64,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRow {
    pub id: i64,
    pub key: String,
    pub op: String,
    pub bytes: i64,
    pub created_ms: i64,
}

/// What one target owes for one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwedStats {
    pub target: String,
    pub count: i64,
    pub bytes: i64,
    pub oldest_ms: Option<i64>,
}

impl Db {
    /// Appends rows in one transaction (one durable commit) and returns their ids in order.
    pub async fn append_journal(&self, rows: &[NewJournalRow]) -> Result<Vec<i64>> {
        let mut tx = self.pool.begin().await?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            let row = sqlx::query(
                "INSERT INTO journal (bucket, target, object_key, op, bytes, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&r.bucket)
            .bind(&r.target)
            .bind(&r.key)
            .bind(&r.op)
            .bind(r.bytes)
            .bind(r.created_ms)
            .fetch_one(&mut *tx)
            .await?;
            ids.push(row.try_get::<i64, _>("id")?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Rows `target` owes for `bucket` with an id above `after`, oldest first.
    pub async fn owed(
        &self,
        bucket: &str,
        target: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<JournalRow>> {
        let rows = sqlx::query(
            "SELECT id, object_key, op, bytes, created_ms FROM journal
             WHERE bucket = $1 AND target = $2 AND id > $3 ORDER BY id LIMIT $4",
        )
        .bind(bucket)
        .bind(target)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JournalRow {
                    id: r.try_get("id")?,
                    key: r.try_get("object_key")?,
                    op: r.try_get("op")?,
                    bytes: r.try_get("bytes")?,
                    created_ms: r.try_get("created_ms")?,
                })
            })
            .collect()
    }

    /// Deletes rows by id (in one transaction).
    pub async fn delete_journal(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for chunk in ids.chunks(200) {
            let list = chunk
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            // The ids are integers formatted here, not client input.
            sqlx::query(&format!("DELETE FROM journal WHERE id IN ({list})"))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes what `target` owes for `key` up to and including row `max_id`: a sync of the
    /// key's current state settles every earlier change to it.
    pub async fn settle_owed(
        &self,
        bucket: &str,
        target: &str,
        key: &str,
        max_id: i64,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM journal WHERE bucket = $1 AND target = $2 AND object_key = $3 AND id <= $4",
        )
        .bind(bucket)
        .bind(target)
        .bind(key)
        .bind(max_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Backlog per target of `bucket`.
    pub async fn owed_stats(&self, bucket: &str) -> Result<Vec<OwedStats>> {
        let rows = sqlx::query(
            "SELECT target, COUNT(*) AS n, CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS b, MIN(created_ms) AS oldest
             FROM journal WHERE bucket = $1 GROUP BY target ORDER BY target",
        )
        .bind(bucket)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OwedStats {
                    target: r.try_get("target")?,
                    count: r.try_get("n")?,
                    bytes: r.try_get("b")?,
                    oldest_ms: r.try_get("oldest")?,
                })
            })
            .collect()
    }

    /// Forgets everything owed for `bucket` (when the bucket is removed).
    pub async fn drop_journal(&self, bucket: &str) -> Result<()> {
        sqlx::query("DELETE FROM journal WHERE bucket = $1")
            .bind(bucket)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
