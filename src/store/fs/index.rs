//! The fs store's ordered key index: a SQLite database in `ROOT/.ferry/index.db`.
//!
//! Owns: the schema and every query against it — buckets, object versions (with where each
//! version's bytes are), multipart uploads and parts, and the *intents* that make a change of
//! files and index crash-safe (see [`super::intent`]). Listings page from the `(bucket, key)`
//! order of this index; nothing walks directories to answer a LIST.
//!
//! Writes go through a single-connection pool so SQLite never has to upgrade a read lock
//! (which fails immediately under contention); reads use a separate pool.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqliteConnection};
use time::OffsetDateTime;

use crate::store::{Error, Result};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    versioning TEXT NOT NULL DEFAULT 'Unversioned',
    tags TEXT
);
CREATE TABLE IF NOT EXISTS versions (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    version_id TEXT NOT NULL,
    is_latest INTEGER NOT NULL,
    delete_marker INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    mtime_ms INTEGER NOT NULL,
    attrs TEXT NOT NULL,
    checksum TEXT,
    tags TEXT,
    parts_count INTEGER,
    path TEXT,
    file_ino INTEGER,
    file_mtime_ns INTEGER,
    PRIMARY KEY (bucket, key, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS versions_by_id ON versions (bucket, key, version_id);
CREATE INDEX IF NOT EXISTS versions_current ON versions (bucket, key)
    WHERE is_latest = 1 AND delete_marker = 0;
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    initiated_ms INTEGER NOT NULL,
    attrs TEXT NOT NULL,
    tags TEXT,
    checksum_algorithm TEXT
);
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, upload_id);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    mtime_ms INTEGER NOT NULL,
    checksum TEXT,
    file TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    steps TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// A string greater than every key that starts with `prefix`, so range scans stop at the end
/// of the prefix instead of running to the end of the bucket.
fn upper_bound(prefix: &str) -> String {
    format!("{prefix}{}", char::MAX)
}

fn db_err(e: sqlx::Error) -> Error {
    Error::Index(e.to_string())
}

pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn ms_to_time(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// One row of `versions`: a version of an object or a delete marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub bucket: String,
    pub key: String,
    pub seq: i64,
    pub version_id: String,
    pub is_latest: bool,
    pub delete_marker: bool,
    pub size: i64,
    pub etag: String,
    pub mtime_ms: i64,
    pub attrs: String,
    pub checksum: Option<String>,
    pub tags: Option<String>,
    pub parts_count: Option<i64>,
    /// `None`: the bytes are the file at the key's path. `Some(p)`: `ROOT/.ferry/p`.
    pub path: Option<String>,
    pub file_ino: Option<i64>,
    pub file_mtime_ns: Option<i64>,
}

impl VersionRow {
    fn from_row(r: &SqliteRow) -> Result<Self> {
        let g = |e: sqlx::Error| Error::Index(e.to_string());
        Ok(Self {
            bucket: r.try_get("bucket").map_err(g)?,
            key: r.try_get("key").map_err(g)?,
            seq: r.try_get("seq").map_err(g)?,
            version_id: r.try_get("version_id").map_err(g)?,
            is_latest: r.try_get("is_latest").map_err(g)?,
            delete_marker: r.try_get("delete_marker").map_err(g)?,
            size: r.try_get("size").map_err(g)?,
            etag: r.try_get("etag").map_err(g)?,
            mtime_ms: r.try_get("mtime_ms").map_err(g)?,
            attrs: r.try_get("attrs").map_err(g)?,
            checksum: r.try_get("checksum").map_err(g)?,
            tags: r.try_get("tags").map_err(g)?,
            parts_count: r.try_get("parts_count").map_err(g)?,
            path: r.try_get("path").map_err(g)?,
            file_ino: r.try_get("file_ino").map_err(g)?,
            file_mtime_ns: r.try_get("file_mtime_ns").map_err(g)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct BucketRow {
    pub name: String,
    pub created_ms: i64,
    pub versioning: String,
    pub tags: Option<String>,
}

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

pub struct Index {
    read: SqlitePool,
    write: SqlitePool,
}

const VCOLS: &str = "bucket, key, seq, version_id, is_latest, delete_marker, size, etag, mtime_ms, \
                     attrs, checksum, tags, parts_count, path, file_ino, file_mtime_ns";

impl Index {
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk when it returns; the index is part of what we ack.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await
            .map_err(|e| Error::Index(format!("opening {}: {e}", path.display())))?;
        sqlx::raw_sql(SCHEMA)
            .execute(&write)
            .await
            .map_err(db_err)?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await
            .map_err(|e| Error::Index(format!("opening {}: {e}", path.display())))?;
        Ok(Self { read, write })
    }

    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.write.begin().await.map_err(db_err)
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    // ---- meta ----

    pub async fn get_meta(&self, name: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)
    }

    pub async fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = $2")
            .bind(name)
            .bind(value)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    // ---- buckets ----

    pub async fn bucket(&self, name: &str) -> Result<Option<BucketRow>> {
        let row =
            sqlx::query("SELECT name, created_ms, versioning, tags FROM buckets WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.read)
                .await
                .map_err(db_err)?;
        row.map(|r| bucket_row(&r)).transpose()
    }

    pub async fn buckets(&self) -> Result<Vec<BucketRow>> {
        let rows =
            sqlx::query("SELECT name, created_ms, versioning, tags FROM buckets ORDER BY name")
                .fetch_all(&self.read)
                .await
                .map_err(db_err)?;
        rows.iter().map(bucket_row).collect()
    }

    /// Returns false when the bucket was already there.
    pub async fn insert_bucket(&self, name: &str, created_ms: i64) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO buckets (name, created_ms) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(created_ms)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn bucket_is_empty(&self, name: &str) -> Result<bool> {
        let v: Option<i64> = sqlx::query_scalar("SELECT 1 FROM versions WHERE bucket = $1 LIMIT 1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        let u: Option<i64> = sqlx::query_scalar("SELECT 1 FROM uploads WHERE bucket = $1 LIMIT 1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        Ok(v.is_none() && u.is_none())
    }

    pub async fn delete_bucket(&self, name: &str) -> Result<()> {
        sqlx::query("DELETE FROM buckets WHERE name = $1")
            .bind(name)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn set_versioning(&self, name: &str, state: &str) -> Result<()> {
        sqlx::query("UPDATE buckets SET versioning = $2 WHERE name = $1")
            .bind(name)
            .bind(state)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    pub async fn set_bucket_tags(&self, name: &str, tags: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE buckets SET tags = $2 WHERE name = $1")
            .bind(name)
            .bind(tags)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    // ---- versions ----

    pub async fn latest(&self, bucket: &str, key: &str) -> Result<Option<VersionRow>> {
        let q = format!(
            "SELECT {VCOLS} FROM versions WHERE bucket = $1 AND key = $2 AND is_latest = 1"
        );
        let row = sqlx::query(&q)
            .bind(bucket)
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.map(|r| VersionRow::from_row(&r)).transpose()
    }

    pub async fn version(&self, bucket: &str, key: &str, vid: &str) -> Result<Option<VersionRow>> {
        let q = format!(
            "SELECT {VCOLS} FROM versions WHERE bucket = $1 AND key = $2 AND version_id = $3"
        );
        let row = sqlx::query(&q)
            .bind(bucket)
            .bind(key)
            .bind(vid)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        row.map(|r| VersionRow::from_row(&r)).transpose()
    }

    /// Current (non-delete-marker) objects with `key > after` and `key` starting with
    /// `prefix`, ascending, at most `limit`.
    pub async fn list_current(
        &self,
        bucket: &str,
        after: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<VersionRow>> {
        let lower = if after >= prefix { after } else { prefix };
        let q = format!(
            "SELECT {VCOLS} FROM versions WHERE bucket = $1 AND is_latest = 1 AND delete_marker = 0 \
             AND key > $2 AND key < $5 AND substr(key, 1, length($3)) = $3 ORDER BY key LIMIT $4"
        );
        // `key > lower` seeks; when lower == prefix the prefix key itself must be included.
        let (q, lower) = if lower == prefix && after < prefix {
            (q.replace("key > $2", "key >= $2"), lower)
        } else {
            (q, lower)
        };
        let rows = sqlx::query(&q)
            .bind(bucket)
            .bind(lower)
            .bind(prefix)
            .bind(limit as i64)
            .bind(upper_bound(prefix))
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter().map(VersionRow::from_row).collect()
    }

    /// All versions with `(key, seq)` after the cursor in (key ascending, seq descending)
    /// order. `after` = `None` starts at the prefix; `Some((k, None))` starts after every
    /// version of `k`; `Some((k, Some(seq)))` after that version.
    pub async fn list_versions(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<(&str, Option<i64>)>,
        limit: usize,
    ) -> Result<Vec<VersionRow>> {
        let base = format!(
            "SELECT {VCOLS} FROM versions WHERE bucket = $1 AND substr(key, 1, length($2)) = $2 \
             AND key >= $2 AND key < $3"
        );
        let upper = upper_bound(prefix);
        let q = match after {
            None => format!("{base} ORDER BY key, seq DESC LIMIT $4"),
            Some((_, None)) => format!("{base} AND key > $5 ORDER BY key, seq DESC LIMIT $4"),
            Some((_, Some(_))) => format!(
                "{base} AND (key > $5 OR (key = $5 AND seq < $6)) ORDER BY key, seq DESC LIMIT $4"
            ),
        };
        let mut query = sqlx::query(&q)
            .bind(bucket)
            .bind(prefix)
            .bind(&upper)
            .bind(limit as i64);
        if let Some((k, seq)) = after {
            query = query.bind(k);
            if let Some(seq) = seq {
                query = query.bind(seq);
            }
        }
        let rows = query.fetch_all(&self.read).await.map_err(db_err)?;
        rows.iter().map(VersionRow::from_row).collect()
    }

    /// Rows whose bytes are at the key path (for rescans), in key order after `after`.
    pub async fn list_at_key_path(
        &self,
        bucket: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<VersionRow>> {
        let q = format!(
            "SELECT {VCOLS} FROM versions WHERE bucket = $1 AND path IS NULL AND delete_marker = 0 \
             AND key > $2 ORDER BY key LIMIT $3"
        );
        let rows = sqlx::query(&q)
            .bind(bucket)
            .bind(after)
            .bind(limit as i64)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.iter().map(VersionRow::from_row).collect()
    }

    /// Records what a file at a key path turned out to contain (it changed outside Ferry).
    pub async fn update_file_facts(&self, v: &VersionRow) -> Result<()> {
        sqlx::query(
            "UPDATE versions SET size = $4, etag = $5, mtime_ms = $6, checksum = $7, file_ino = $8, \
             file_mtime_ns = $9 WHERE bucket = $1 AND key = $2 AND seq = $3",
        )
        .bind(&v.bucket)
        .bind(&v.key)
        .bind(v.seq)
        .bind(v.size)
        .bind(&v.etag)
        .bind(v.mtime_ms)
        .bind(&v.checksum)
        .bind(v.file_ino)
        .bind(v.file_mtime_ns)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    pub async fn max_seq(&self) -> Result<i64> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM versions")
            .fetch_one(&self.read)
            .await
            .map_err(db_err)?;
        Ok(v.unwrap_or(0))
    }

    // ---- uploads ----

    pub async fn upload(&self, upload_id: &str) -> Result<Option<UploadRow>> {
        let row = sqlx::query(
            "SELECT upload_id, bucket, key, initiated_ms, attrs, tags, checksum_algorithm FROM uploads WHERE upload_id = $1",
        )
        .bind(upload_id)
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        row.map(|r| upload_row(&r)).transpose()
    }

    pub async fn insert_upload(&self, u: &UploadRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO uploads (upload_id, bucket, key, initiated_ms, attrs, tags, checksum_algorithm) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&u.upload_id)
        .bind(&u.bucket)
        .bind(&u.key)
        .bind(u.initiated_ms)
        .bind(&u.attrs)
        .bind(&u.tags)
        .bind(&u.checksum_algorithm)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    pub async fn list_uploads(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<UploadRow>> {
        let (k, u) = after.unwrap_or(("", ""));
        let rows = sqlx::query(
            "SELECT upload_id, bucket, key, initiated_ms, attrs, tags, checksum_algorithm FROM uploads \
             WHERE bucket = $1 AND substr(key, 1, length($2)) = $2 AND (key > $3 OR (key = $3 AND upload_id > $4)) \
             ORDER BY key, upload_id LIMIT $5",
        )
        .bind(bucket)
        .bind(prefix)
        .bind(k)
        .bind(u)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter().map(upload_row).collect()
    }

    pub async fn parts(&self, upload_id: &str, after: i64, limit: usize) -> Result<Vec<PartRow>> {
        let rows = sqlx::query(
            "SELECT part_number, size, etag, mtime_ms, checksum, file FROM parts \
             WHERE upload_id = $1 AND part_number > $2 ORDER BY part_number LIMIT $3",
        )
        .bind(upload_id)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let g = |e: sqlx::Error| Error::Index(e.to_string());
                Ok(PartRow {
                    part_number: r.try_get("part_number").map_err(g)?,
                    size: r.try_get("size").map_err(g)?,
                    etag: r.try_get("etag").map_err(g)?,
                    mtime_ms: r.try_get("mtime_ms").map_err(g)?,
                    checksum: r.try_get("checksum").map_err(g)?,
                    file: r.try_get("file").map_err(g)?,
                })
            })
            .collect()
    }

    /// Records a part; returns the file of the part it replaced, if any.
    pub async fn upsert_part(&self, upload_id: &str, p: &PartRow) -> Result<Option<String>> {
        let mut tx = self.begin().await?;
        let old: Option<String> =
            sqlx::query_scalar("SELECT file FROM parts WHERE upload_id = $1 AND part_number = $2")
                .bind(upload_id)
                .bind(p.part_number)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO parts (upload_id, part_number, size, etag, mtime_ms, checksum, file) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (upload_id, part_number) DO UPDATE \
             SET size = $3, etag = $4, mtime_ms = $5, checksum = $6, file = $7",
        )
        .bind(upload_id)
        .bind(p.part_number)
        .bind(p.size)
        .bind(&p.etag)
        .bind(p.mtime_ms)
        .bind(&p.checksum)
        .bind(&p.file)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(old)
    }

    // ---- intents ----

    pub async fn intents(&self) -> Result<Vec<(i64, String)>> {
        let rows = sqlx::query("SELECT id, steps FROM intents ORDER BY id")
            .fetch_all(&self.write)
            .await
            .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id").map_err(db_err)?,
                    r.try_get("steps").map_err(db_err)?,
                ))
            })
            .collect()
    }

    pub async fn delete_intent(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM intents WHERE id = $1")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

fn bucket_row(r: &SqliteRow) -> Result<BucketRow> {
    Ok(BucketRow {
        name: r.try_get("name").map_err(db_err)?,
        created_ms: r.try_get("created_ms").map_err(db_err)?,
        versioning: r.try_get("versioning").map_err(db_err)?,
        tags: r.try_get("tags").map_err(db_err)?,
    })
}

fn upload_row(r: &SqliteRow) -> Result<UploadRow> {
    Ok(UploadRow {
        upload_id: r.try_get("upload_id").map_err(db_err)?,
        bucket: r.try_get("bucket").map_err(db_err)?,
        key: r.try_get("key").map_err(db_err)?,
        initiated_ms: r.try_get("initiated_ms").map_err(db_err)?,
        attrs: r.try_get("attrs").map_err(db_err)?,
        tags: r.try_get("tags").map_err(db_err)?,
        checksum_algorithm: r.try_get("checksum_algorithm").map_err(db_err)?,
    })
}

// ---- statements used inside a write transaction ----

pub async fn tx_insert_version(c: &mut SqliteConnection, v: &VersionRow) -> Result<()> {
    let q = format!(
        "INSERT INTO versions ({VCOLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    );
    sqlx::query(&q)
        .bind(&v.bucket)
        .bind(&v.key)
        .bind(v.seq)
        .bind(&v.version_id)
        .bind(v.is_latest)
        .bind(v.delete_marker)
        .bind(v.size)
        .bind(&v.etag)
        .bind(v.mtime_ms)
        .bind(&v.attrs)
        .bind(&v.checksum)
        .bind(&v.tags)
        .bind(v.parts_count)
        .bind(&v.path)
        .bind(v.file_ino)
        .bind(v.file_mtime_ns)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub async fn tx_delete_version(
    c: &mut SqliteConnection,
    bucket: &str,
    key: &str,
    seq: i64,
) -> Result<()> {
    sqlx::query("DELETE FROM versions WHERE bucket = $1 AND key = $2 AND seq = $3")
        .bind(bucket)
        .bind(key)
        .bind(seq)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Sets whether a version is the latest and where its bytes are.
pub async fn tx_update_version(c: &mut SqliteConnection, v: &VersionRow) -> Result<()> {
    sqlx::query(
        "UPDATE versions SET is_latest = $4, path = $5, tags = $6, file_ino = $7, file_mtime_ns = $8 \
         WHERE bucket = $1 AND key = $2 AND seq = $3",
    )
    .bind(&v.bucket)
    .bind(&v.key)
    .bind(v.seq)
    .bind(v.is_latest)
    .bind(&v.path)
    .bind(&v.tags)
    .bind(v.file_ino)
    .bind(v.file_mtime_ns)
    .execute(&mut *c)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Versions of one key, newest first.
pub async fn tx_versions_of(
    c: &mut SqliteConnection,
    bucket: &str,
    key: &str,
) -> Result<Vec<VersionRow>> {
    let q =
        format!("SELECT {VCOLS} FROM versions WHERE bucket = $1 AND key = $2 ORDER BY seq DESC");
    let rows = sqlx::query(&q)
        .bind(bucket)
        .bind(key)
        .fetch_all(&mut *c)
        .await
        .map_err(db_err)?;
    rows.iter().map(VersionRow::from_row).collect()
}

pub async fn tx_insert_intent(c: &mut SqliteConnection, steps: &str) -> Result<i64> {
    let id: i64 = sqlx::query_scalar("INSERT INTO intents (steps) VALUES ($1) RETURNING id")
        .bind(steps)
        .fetch_one(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(id)
}

pub async fn tx_delete_intent(c: &mut SqliteConnection, id: i64) -> Result<()> {
    sqlx::query("DELETE FROM intents WHERE id = $1")
        .bind(id)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub async fn tx_delete_upload(c: &mut SqliteConnection, upload_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM parts WHERE upload_id = $1")
        .bind(upload_id)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    sqlx::query("DELETE FROM uploads WHERE upload_id = $1")
        .bind(upload_id)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub async fn tx_commit(tx: sqlx::Transaction<'static, sqlx::Sqlite>) -> Result<()> {
    tx.commit().await.map_err(db_err)
}
