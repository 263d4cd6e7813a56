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

    /// Up to `limit` uploads recorded before `before_ms` by another process than `not_owner`,
    /// oldest first, after the position `after` (the `(created_ms, store, bucket, upload_id)`
    /// of the last one of the previous page).
    pub async fn open_uploads(
        &self,
        before_ms: i64,
        not_owner: &str,
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
             WHERE created_ms < $1 AND owner <> $7
               AND (created_ms > $2 OR (created_ms = $2 AND (store > $3
                    OR (store = $3 AND (bucket > $4 OR (bucket = $4 AND upload_id > $5))))))
             ORDER BY created_ms, store, bucket, upload_id LIMIT $6",
        )
        .bind(before_ms)
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
