//! Buckets in the index: their rows (versioning state, tags, the folder each one is) and
//! the queries that make, change and remove them.

use rusqlite::{OptionalExtension, Row, params};

use std::path::Path;

use super::{Index, open_conn};
use crate::store::Result;

#[derive(Debug, Clone)]
pub struct BucketRow {
    pub name: String,
    pub created_ms: i64,
    pub versioning: String,
    pub tags: Option<String>,
    /// Which folder the bucket is (`device:inode`; see `FsStore::check_folder`).
    pub dir: Option<String>,
}

const BCOLS: &str = "name, created_ms, versioning, tags, dir";

fn bucket_row(r: &Row<'_>) -> rusqlite::Result<BucketRow> {
    Ok(BucketRow {
        name: r.get(0)?,
        created_ms: r.get(1)?,
        versioning: r.get(2)?,
        tags: r.get(3)?,
        dir: r.get(4)?,
    })
}

/// Whether the store whose index is the file `db` has a bucket `name`, asked without
/// opening the store (it may be another process's); an index that cannot be read says yes.
pub fn holds_bucket(db: &Path, name: &str) -> bool {
    let Ok(c) = open_conn(db, true) else {
        return true;
    };
    c.query_row("SELECT 1 FROM buckets WHERE name = ?1", [name], |_| Ok(()))
        .optional()
        .map_or(true, |found| found.is_some())
}

impl Index {
    pub async fn bucket(&self, name: &str) -> Result<Option<BucketRow>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {BCOLS} FROM buckets WHERE name = ?1"))?
                .query_row([name], bucket_row)
                .optional()
        })
    }

    pub async fn buckets(&self) -> Result<Vec<BucketRow>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {BCOLS} FROM buckets ORDER BY name"))?
                .query_map([], bucket_row)?
                .collect()
        })
    }

    /// Returns false when the bucket was already there.
    pub async fn insert_bucket(&self, name: &str, created_ms: i64) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |c| {
            c.execute(
                "INSERT INTO buckets (name, created_ms) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, created_ms],
            )
            .map(|n| n == 1)
        })
        .await
    }

    pub async fn bucket_is_empty(&self, name: &str) -> Result<bool> {
        self.read(|c| {
            let v: Option<i64> = c
                .prepare_cached("SELECT 1 FROM versions WHERE bucket = ?1 LIMIT 1")?
                .query_row([name], |r| r.get(0))
                .optional()?;
            let u: Option<i64> = c
                .prepare_cached("SELECT 1 FROM uploads WHERE bucket = ?1 LIMIT 1")?
                .query_row([name], |r| r.get(0))
                .optional()?;
            Ok(v.is_none() && u.is_none())
        })
    }

    /// Whether any version (or delete marker) is left in the bucket.
    pub async fn bucket_has_versions(&self, name: &str) -> Result<bool> {
        self.read(|c| {
            let v: Option<i64> = c
                .prepare_cached("SELECT 1 FROM versions WHERE bucket = ?1 LIMIT 1")?
                .query_row([name], |r| r.get(0))
                .optional()?;
            Ok(v.is_some())
        })
    }

    /// Deletes the bucket's row if it holds no version and no upload; whether it did. On the
    /// writer, so no commit batch lands between the check and the deletion (and a batch
    /// after it finds no bucket: see `commit::refuse_gone_buckets`).
    pub async fn delete_bucket_if_empty(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |c| {
            let tx = c.transaction()?;
            let busy: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM versions WHERE bucket = ?1
                     UNION ALL SELECT 1 FROM uploads WHERE bucket = ?1 LIMIT 1",
                    [&name],
                    |r| r.get(0),
                )
                .optional()?;
            if busy.is_some() {
                return Ok(false);
            }
            tx.execute("DELETE FROM buckets WHERE name = ?1", [&name])?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    pub async fn set_versioning(&self, name: &str, state: &str) -> Result<()> {
        let (name, state) = (name.to_owned(), state.to_owned());
        self.write(move |c| {
            c.execute(
                "UPDATE buckets SET versioning = ?2 WHERE name = ?1",
                params![name, state],
            )
            .map(drop)
        })
        .await
    }

    pub async fn set_bucket_dir(&self, name: &str, dir: &str) -> Result<()> {
        let (name, dir) = (name.to_owned(), dir.to_owned());
        self.write(move |c| {
            c.execute(
                "UPDATE buckets SET dir = ?2 WHERE name = ?1",
                params![name, dir],
            )
            .map(drop)
        })
        .await
    }

    pub async fn set_bucket_tags(&self, name: &str, tags: Option<&str>) -> Result<()> {
        let (name, tags) = (name.to_owned(), tags.map(str::to_owned));
        self.write(move |c| {
            c.execute(
                "UPDATE buckets SET tags = ?2 WHERE name = ?1",
                params![name, tags],
            )
            .map(drop)
        })
        .await
    }
}
