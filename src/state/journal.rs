//! The multi-write journal's rows: one per accepted mutation per target that may still owe it.
//! The `journal` layer decides when rows are written and removed; this module stores them.
//!
//! A row names the client bucket, the target (`store:bucket`) and the key (empty for a
//! bucket-level change), what kind of change it is (`op`), and the bytes it will move (for
//! backlog accounting). Rows are appended and deleted; only their byte count (once known)
//! and the date of a check owed later (pushed back) are ever updated.

use std::collections::{HashMap, VecDeque};

use sqlx::Row;

use super::{Db, Dialect, Result};

/// Columns added after the table was first made (see `Db::open`'s upgrade):
/// `since_ms`, when a row dated ahead (a check owed later) was owed, kept as its date is
/// pushed back: the backlog's age counts from it.
pub(super) const ADDED_COLUMNS: &[(&str, &str, &str)] = &[("journal", "since_ms", "BIGINT")];

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
    ///
    /// Rows go in as multi-row INSERTs: one statement per few hundred rows costs a fraction
    /// of a statement per row, and the journal is on every multi-write's path. The returned
    /// ids are matched back by (bucket, target, key), which is unique within a batch for
    /// object rows (a key's writes are serialised by its lock); for repeats, in order.
    pub async fn append_journal(&self, rows: &[NewJournalRow]) -> Result<Vec<i64>> {
        let mut tx = self.write_tx().await?;
        let mut ids = Vec::with_capacity(rows.len());
        // A row dated ahead (a check owed later) is owed from now all the same: its age in
        // the owed stats counts from `since_ms`, not from a date still to come.
        let now = crate::state::now_ms();
        for chunk in rows.chunks(500) {
            let mut sql = String::from(
                "INSERT INTO journal (bucket, target, object_key, op, bytes, created_ms, since_ms) VALUES ",
            );
            for i in 0..chunk.len() {
                let n = i * 7;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4,
                    n + 5,
                    n + 6,
                    n + 7
                ));
            }
            sql.push_str(" RETURNING id, bucket, target, object_key");
            let mut q = sqlx::query(&sql);
            for r in chunk {
                q = q
                    .bind(&r.bucket)
                    .bind(&r.target)
                    .bind(&r.key)
                    .bind(&r.op)
                    .bind(r.bytes)
                    .bind(r.created_ms)
                    .bind((r.created_ms > now).then_some(now));
            }
            let back = q.fetch_all(&mut *tx).await?;
            let mut by_row: HashMap<(String, String, String), VecDeque<i64>> = HashMap::new();
            for row in &back {
                by_row
                    .entry((
                        row.try_get("bucket")?,
                        row.try_get("target")?,
                        row.try_get("object_key")?,
                    ))
                    .or_default()
                    .push_back(row.try_get("id")?);
            }
            for q in by_row.values_mut() {
                q.make_contiguous().sort_unstable();
            }
            for r in chunk {
                let id = by_row
                    .get_mut(&(r.bucket.clone(), r.target.clone(), r.key.clone()))
                    .and_then(|q| q.pop_front())
                    .ok_or_else(|| {
                        super::Error::Corrupt("the journal did not return an inserted row".into())
                    })?;
                ids.push(id);
            }
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
        due_ms: i64,
        limit: i64,
    ) -> Result<Vec<JournalRow>> {
        let rows = sqlx::query(
            "SELECT id, object_key, op, bytes, created_ms FROM journal
             WHERE bucket = $1 AND target = $2 AND id > $3 AND created_ms <= $5 ORDER BY id LIMIT $4",
        )
        .bind(bucket)
        .bind(target)
        .bind(after)
        .bind(limit)
        .bind(due_ms)
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

    /// Whether `target` owes any write of `key` in `bucket`.
    pub async fn owes_key(&self, bucket: &str, target: &str, key: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM journal WHERE bucket = $1 AND target = $2 AND object_key = $3 LIMIT 1",
        )
        .bind(bucket)
        .bind(target)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Keys under `prefix` that `target` owes any write of in `bucket`, at most `limit` of
    /// them (in no order); not the bucket's own changes (versioning, tags: key `""`).
    pub async fn owed_keys_under(
        &self,
        bucket: &str,
        target: &str,
        prefix: &str,
        limit: i64,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT object_key FROM journal WHERE bucket = $1 AND target = $2 \
             AND object_key <> '' AND substr(object_key, 1, $3) = $4 LIMIT $5",
        )
        .bind(bucket)
        .bind(target)
        .bind(i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX))
        .bind(prefix)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("object_key")?)).collect()
    }

    /// Deletes rows by id (in one transaction).
    pub async fn delete_journal(&self, ids: &[i64]) -> Result<()> {
        self.by_ids(ids, "DELETE FROM journal WHERE id IN", None)
            .await
    }

    /// Records the bytes the rows `ids` stand for, once known: a copy or a multipart
    /// completion is owed before its size is. Only status and metrics read it, so it is
    /// written without a flush of its own.
    pub async fn set_journal_bytes(&self, ids: &[i64], bytes: i64) -> Result<()> {
        self.by_ids(
            ids,
            "UPDATE journal SET bytes = $1 WHERE id IN",
            Some(bytes),
        )
        .await
    }

    /// Dates row `id` `created_ms` (a check owed later, pushed back while the copies it
    /// stands for go unanswered); whether the row was still there. Its first date stays
    /// the backlog's age (a target stalled for hours must not look minutes behind).
    pub async fn postpone_journal(&self, id: i64, created_ms: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE journal SET since_ms = COALESCE(since_ms, created_ms), created_ms = $1 WHERE id = $2",
        )
            .bind(created_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Runs `sql ({ids})` (with `$1` bound to `bind`, if given) over `ids` 200 at a time, in
    /// one transaction without a flush of its own (a relaxed connection).
    async fn by_ids(&self, ids: &[i64], sql: &str, bind: Option<i64>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut conn = self.relaxed().await?;
        let r = async {
            let mut tx = self.begin_relaxed(&mut conn).await?;
            for chunk in ids.chunks(200) {
                let list = chunk
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                // The ids are integers formatted here, not client input.
                let text = format!("{sql} ({list})");
                let mut q = sqlx::query(&text);
                if let Some(b) = bind {
                    q = q.bind(b);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await
        }
        .await;
        self.strict(conn).await;
        Ok(r?)
    }

    /// Deletes, for each `(key, max_id)`, what `target` owes for `key` up to and including
    /// row `max_id` (a sync of the key's current state settles every earlier change to it),
    /// all in one transaction.
    pub async fn settle_owed_many(
        &self,
        bucket: &str,
        target: &str,
        keys: &[(String, i64)],
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut conn = self.relaxed().await?;
        let r = async {
            let mut tx = self.begin_relaxed(&mut conn).await?;
            // Not a row dated ahead (a check owed later, see `bucket::namespace`): a sync
            // now does not settle what may land after it.
            let now = crate::state::now_ms();
            for (key, max_id) in keys {
                sqlx::query(
                    "DELETE FROM journal WHERE bucket = $1 AND target = $2 AND object_key = $3 AND id <= $4 AND created_ms <= $5",
                )
                .bind(bucket)
                .bind(target)
                .bind(key)
                .bind(max_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await;
        self.strict(conn).await;
        Ok(r?)
    }

    /// A connection whose commits need not be durable (SQLite: `synchronous = NORMAL`, still
    /// consistent in WAL mode). Forgetting settled rows uses it: a forget lost in a crash
    /// costs one idempotent re-sync, while a device flush per forget would halve the rate
    /// of multi-writes. Hand it back with [`Self::strict`].
    async fn relaxed(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Any>> {
        let mut conn = self.pool.acquire().await?;
        if self.dialect == Dialect::Sqlite
            && sqlx::query("PRAGMA synchronous = NORMAL")
                .execute(&mut *conn)
                .await
                .is_err()
        {
            // A commit that failed (a full disk) can leave SQLite's transaction open on the
            // connection, and the pragma is refused inside one ("Safety level may not be
            // changed inside a transaction"): every later settle failed the same way until a
            // restart. Rolled back and tried again; a connection still refusing is closed,
            // not handed back to the pool.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            if let Err(e) = sqlx::query("PRAGMA synchronous = NORMAL")
                .execute(&mut *conn)
                .await
            {
                let _ = conn.detach();
                return Err(e.into());
            }
        }
        Ok(conn)
    }

    /// A transaction on a [`Self::relaxed`] connection (on PostgreSQL the relaxation is the
    /// transaction's own `synchronous_commit = off`).
    async fn begin_relaxed<'c>(
        &self,
        conn: &'c mut sqlx::pool::PoolConnection<sqlx::Any>,
    ) -> std::result::Result<sqlx::Transaction<'c, sqlx::Any>, sqlx::Error> {
        let mut tx = sqlx::Connection::begin(&mut **conn).await?;
        if self.dialect == Dialect::Postgres {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Restores full durability on a connection from [`Self::relaxed`]; one that cannot be
    /// restored is closed rather than returned to the pool.
    async fn strict(&self, mut conn: sqlx::pool::PoolConnection<sqlx::Any>) {
        if self.dialect == Dialect::Sqlite
            && sqlx::query("PRAGMA synchronous = FULL")
                .execute(&mut *conn)
                .await
                .is_err()
        {
            let _ = conn.detach();
        }
    }

    /// Backlog per target of `bucket`.
    pub async fn owed_stats(&self, bucket: &str) -> Result<Vec<OwedStats>> {
        let rows = sqlx::query(
            "SELECT target, COUNT(*) AS n, CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS b, MIN(COALESCE(since_ms, created_ms)) AS oldest
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

    /// Forgets what `target` is owed for `bucket` (a target a policy change left out, its
    /// writes given up by the admin); how many rows went.
    pub async fn drop_journal_target(&self, bucket: &str, target: &str) -> Result<u64> {
        let r = sqlx::query("DELETE FROM journal WHERE bucket = $1 AND target = $2")
            .bind(bucket)
            .bind(target)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit that failed (a full disk) left SQLite's transaction open on a pooled
    /// connection; the relaxed connection's pragma is refused inside a transaction, and
    /// every later settle failed until a restart.
    #[tokio::test]
    async fn a_connection_left_in_a_transaction_does_not_stop_the_journal() {
        let dir = tempfile::tempdir().expect("tmp");
        let db = Db::open_embedded(dir.path()).await.expect("db");
        {
            let mut conn = db.pool.acquire().await.expect("conn");
            sqlx::query("BEGIN")
                .execute(&mut *conn)
                .await
                .expect("begin");
        }
        db.delete_journal(&[1, 2, 3])
            .await
            .expect("a settle after it");
        db.delete_journal(&[4]).await.expect("and the next");
    }
}
