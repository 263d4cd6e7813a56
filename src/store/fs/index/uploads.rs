//! Multipart uploads and their parts in the index: the rows, their queries, and forgetting an
//! upload inside a write transaction.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Index;
use crate::store::Result;

#[derive(Debug, Clone)]
pub struct UploadRow {
    pub upload_id: String,
    pub bucket: String,
    pub key: String,
    pub initiated_ms: i64,
    pub attrs: String,
    pub tags: Option<String>,
    pub checksum_algorithm: Option<String>,
}

#[derive(Debug, Clone)]
pub struct PartRow {
    pub part_number: i64,
    pub size: i64,
    pub etag: String,
    pub mtime_ms: i64,
    pub checksum: Option<String>,
    pub file: String,
}

const UCOLS: &str = "upload_id, bucket, key, initiated_ms, attrs, tags, checksum_algorithm";

fn upload_row(r: &Row<'_>) -> rusqlite::Result<UploadRow> {
    Ok(UploadRow {
        upload_id: r.get(0)?,
        bucket: r.get(1)?,
        key: r.get(2)?,
        initiated_ms: r.get(3)?,
        attrs: r.get(4)?,
        tags: r.get(5)?,
        checksum_algorithm: r.get(6)?,
    })
}

impl Index {
    pub async fn upload(&self, upload_id: &str) -> Result<Option<UploadRow>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {UCOLS} FROM uploads WHERE upload_id = ?1"))?
                .query_row([upload_id], upload_row)
                .optional()
        })
    }

    pub async fn insert_upload(&self, u: &UploadRow) -> Result<()> {
        let u = u.clone();
        self.write(move |c| {
            c.execute(
                &format!("INSERT INTO uploads ({UCOLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    u.upload_id,
                    u.bucket,
                    u.key,
                    u.initiated_ms,
                    u.attrs,
                    u.tags,
                    u.checksum_algorithm
                ],
            )
            .map(drop)
        })
        .await
    }

    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<UploadRow>> {
        let (k, u) = after.unwrap_or(("", ""));
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {UCOLS} FROM uploads WHERE bucket = ?1 AND substr(key, 1, length(?2)) = ?2 \
                 AND (key > ?3 OR (key = ?3 AND upload_id > ?4)) ORDER BY key, upload_id LIMIT ?5"
            ))?
            .query_map(params![bucket, prefix, k, u, limit as i64], upload_row)?
            .collect()
        })
    }

    pub async fn parts(&self, upload_id: &str, after: i64, limit: usize) -> Result<Vec<PartRow>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT part_number, size, etag, mtime_ms, checksum, file FROM parts \
                 WHERE upload_id = ?1 AND part_number > ?2 ORDER BY part_number LIMIT ?3",
            )?
            .query_map(params![upload_id, after, limit as i64], |r| {
                Ok(PartRow {
                    part_number: r.get(0)?,
                    size: r.get(1)?,
                    etag: r.get(2)?,
                    mtime_ms: r.get(3)?,
                    checksum: r.get(4)?,
                    file: r.get(5)?,
                })
            })?
            .collect()
        })
    }

    /// Records a part; returns the file of the part it replaced, if any.
    pub async fn upsert_part(&self, upload_id: &str, p: &PartRow) -> Result<Option<String>> {
        let (upload_id, p) = (upload_id.to_owned(), p.clone());
        self.write(move |c| {
            let tx = c.transaction()?;
            let old: Option<String> = tx
                .query_row(
                    "SELECT file FROM parts WHERE upload_id = ?1 AND part_number = ?2",
                    params![upload_id, p.part_number],
                    |r| r.get(0),
                )
                .optional()?;
            tx.execute(
                "INSERT INTO parts (upload_id, part_number, size, etag, mtime_ms, checksum, file) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (upload_id, part_number) DO UPDATE \
                 SET size = ?3, etag = ?4, mtime_ms = ?5, checksum = ?6, file = ?7",
                params![
                    upload_id,
                    p.part_number,
                    p.size,
                    p.etag,
                    p.mtime_ms,
                    p.checksum,
                    p.file
                ],
            )?;
            tx.commit()?;
            Ok(old)
        })
        .await
    }

    /// Forgets an upload and its parts (aborted).
    pub async fn delete_upload(&self, upload_id: &str) -> Result<()> {
        let upload_id = upload_id.to_owned();
        self.write(move |c| {
            let tx = c.transaction()?;
            tx_delete_upload(&tx, &upload_id)?;
            tx.commit()
        })
        .await
    }
}

pub fn tx_delete_upload(c: &Connection, upload_id: &str) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM parts WHERE upload_id = ?1")?
        .execute([upload_id])?;
    c.prepare_cached("DELETE FROM uploads WHERE upload_id = ?1")?
        .execute([upload_id])
        .map(drop)
}
