//! Completed multipart uploads, remembered for a day: S3 answers a CompleteMultipartUpload
//! retried after its first answer was lost (a client timeout, a dropped connection) with
//! the same result, not NoSuchUpload, and clients count on it (a retry that failed would
//! make them abort, or report an upload that succeeded as lost).

use rusqlite::{Connection, OptionalExtension};

use super::index::{Index, VersionRow, now_ms};
use crate::store::Result;

/// How long a completed upload's result is kept for a retry.
const KEEP_MS: i64 = 24 * 3600 * 1000;

/// What a completion made: the version it committed.
pub struct Completed {
    pub bucket: String,
    pub key: String,
    pub version_id: String,
    pub etag: String,
}

/// Records, in the completion's own transaction, that `upload_id` became `row`; forgets
/// completions older than a day.
pub fn tx_record(c: &Connection, upload_id: &str, row: &VersionRow) -> rusqlite::Result<()> {
    let now = now_ms();
    c.prepare_cached("DELETE FROM completed_uploads WHERE completed_ms < ?1")?
        .execute([now - KEEP_MS])?;
    c.prepare_cached(
        "INSERT OR REPLACE INTO completed_uploads \
         (upload_id, bucket, key, version_id, etag, completed_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(rusqlite::params![
        upload_id,
        row.bucket,
        row.key,
        row.version_id,
        row.etag,
        now
    ])
    .map(drop)
}

impl Index {
    /// The version a completed upload made, if it completed within the last day.
    pub async fn completed_upload(&self, upload_id: &str) -> Result<Option<Completed>> {
        let since = now_ms() - KEEP_MS;
        self.read(|c| {
            c.prepare_cached(
                "SELECT bucket, key, version_id, etag FROM completed_uploads \
                 WHERE upload_id = ?1 AND completed_ms >= ?2",
            )?
            .query_row(rusqlite::params![upload_id, since], |r| {
                Ok(Completed {
                    bucket: r.get(0)?,
                    key: r.get(1)?,
                    version_id: r.get(2)?,
                    etag: r.get(3)?,
                })
            })
            .optional()
        })
    }
}
