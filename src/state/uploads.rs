//! Multipart uploads Ferry itself opens on a store (a catch-up or failback copy of a large
//! object), recorded from their creation until they are completed or aborted. A process killed
//! mid-copy leaves such an upload behind, its parts stored (and billed) on the target for ever,
//! since nothing else knows its id; the rows let the next process abort it.

use sqlx::Row;

use super::{Db, Result};

pub(super) fn schema() -> Vec<String> {
    vec![
        "CREATE TABLE IF NOT EXISTS copy_uploads (
            store TEXT NOT NULL,
            bucket TEXT NOT NULL,
            object_key TEXT NOT NULL,
            upload_id TEXT NOT NULL,
            owner TEXT NOT NULL,
            created_ms BIGINT NOT NULL,
            PRIMARY KEY (store, bucket, upload_id)
        )"
        .into(),
        // The `ferry serve` processes of this state database, each with where it runs and the
        // last time it said it was alive: one serves it at a time, and the uploads of one
        // still alive are never swept.
        "CREATE TABLE IF NOT EXISTS servers (
            owner TEXT PRIMARY KEY,
            place TEXT NOT NULL,
            seen_ms BIGINT NOT NULL
        )"
        .into(),
    ]
}

/// One recorded upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenUpload {
    pub store: String,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    /// The process that opened it (an id of its own, made at its start).
    pub owner: String,
    pub created_ms: i64,
}

impl Db {
    /// Records an upload just created (durably: a crash right after must still find it).
    pub async fn record_upload(&self, u: &OpenUpload) -> Result<()> {
        sqlx::query(
            "INSERT INTO copy_uploads (store, bucket, object_key, upload_id, owner, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&u.store)
        .bind(&u.bucket)
        .bind(&u.key)
        .bind(&u.upload_id)
        .bind(&u.owner)
        .bind(u.created_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets an upload that was completed or aborted.
    pub async fn forget_upload(&self, store: &str, bucket: &str, upload_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM copy_uploads WHERE store = $1 AND bucket = $2 AND upload_id = $3")
            .bind(store)
            .bind(bucket)
            .bind(upload_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records that the server `owner`, running at `place` (host and data directory), is
    /// alive now (its heartbeat), and forgets servers not heard of for a day.
    pub async fn server_alive(&self, owner: &str, place: &str, now_ms: i64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO servers (owner, place, seen_ms) VALUES ($1, $2, $3)
             ON CONFLICT (owner) DO UPDATE SET seen_ms = excluded.seen_ms",
        )
        .bind(owner)
        .bind(place)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM servers WHERE seen_ms < $1")
            .bind(now_ms - 86_400_000)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets the earlier servers at `place` other than `owner`: the same server, started
    /// again (their row would hold the database against another server after this one
    /// stops cleanly).
    pub async fn forget_place(&self, owner: &str, place: &str) -> Result<()> {
        sqlx::query("DELETE FROM servers WHERE place = $1 AND owner <> $2")
            .bind(place)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets the server `owner` (one refused the database, or stopping).
    pub async fn server_gone(&self, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM servers WHERE owner = $1")
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The servers other than `owner`, at places other than `place`, heard of since
    /// `since_ms`: (place, last seen).
    pub async fn other_servers(
        &self,
        owner: &str,
        place: &str,
        since_ms: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT place, seen_ms FROM servers WHERE owner <> $1 AND place <> $2 AND seen_ms >= $3
             ORDER BY seen_ms DESC",
        )
        .bind(owner)
        .bind(place)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("place")?, r.try_get("seen_ms")?)))
            .collect()
    }

    /// Up to `limit` uploads of processes other than `not_owner` that have not said they
    /// were alive since `live_since_ms` (`i64::MAX`: no other process is), oldest first,
    /// after the position `after` (the `(created_ms, store, bucket, upload_id)` of the last
    /// one of the previous page).
    pub async fn open_uploads(
        &self,
        not_owner: &str,
        live_since_ms: i64,
        after: Option<&OpenUpload>,
        limit: i64,
    ) -> Result<Vec<OpenUpload>> {
        let (ms, store, bucket, id) = match after {
            Some(a) => (
                a.created_ms,
                a.store.as_str(),
                a.bucket.as_str(),
                a.upload_id.as_str(),
            ),
            None => (i64::MIN, "", "", ""),
        };
        let rows = sqlx::query(
            "SELECT store, bucket, object_key, upload_id, owner, created_ms FROM copy_uploads
             WHERE owner <> $7 AND NOT EXISTS (SELECT 1 FROM servers o
                   WHERE o.owner = copy_uploads.owner AND o.seen_ms >= $1)
               AND (created_ms > $2 OR (created_ms = $2 AND (store > $3
                    OR (store = $3 AND (bucket > $4 OR (bucket = $4 AND upload_id > $5))))))
             ORDER BY created_ms, store, bucket, upload_id LIMIT $6",
        )
        .bind(live_since_ms)
        .bind(ms)
        .bind(store)
        .bind(bucket)
        .bind(id)
        .bind(limit)
        .bind(not_owner)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OpenUpload {
                    store: r.try_get("store")?,
                    bucket: r.try_get("bucket")?,
                    key: r.try_get("object_key")?,
                    upload_id: r.try_get("upload_id")?,
                    owner: r.try_get("owner")?,
                    created_ms: r.try_get("created_ms")?,
                })
            })
            .collect()
    }
}
