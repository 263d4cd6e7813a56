//! The fs store's ordered key index: a SQLite database in `ROOT/.ferry/index.db`.
//!
//! Owns: the schema and every query against it — buckets, object versions (with where each
//! version's bytes are), multipart uploads and parts, and the *intents* that make a change of
//! files and index crash-safe (see [`super::intent`]). Listings page from the `(bucket, key)`
//! order of this index; nothing walks directories to answer a LIST.
//!
//! Runs on rusqlite, in the calling thread: a read is a few microseconds of work on a pooled
//! read-only connection, cheaper than handing it to another thread and back (which is what
//! an async driver does for every statement, and which cost a quarter of the server's CPU).
//! Writes run on the one write connection — behind a mutex, so SQLite never has to upgrade a
//! read lock — either in the group-commit thread ([`super::commit`]) or on the blocking pool
//! ([`Index::write`]), because a write waits for an fsync.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use time::OffsetDateTime;

use crate::store::{Error, Result};

mod buckets;
mod tx;
mod uploads;

pub use buckets::{BucketRow, holds_bucket};
pub use tx::*;
pub use uploads::{PartRow, UploadRow, tx_delete_upload};

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
    file_ctime_ns INTEGER,
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
CREATE TABLE IF NOT EXISTS part_sizes (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sizes TEXT NOT NULL,
    PRIMARY KEY (bucket, key, seq)
);
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    steps TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS completed_uploads (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    version_id TEXT NOT NULL,
    etag TEXT NOT NULL,
    completed_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS completed_uploads_by_time ON completed_uploads (completed_ms);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#;

/// Read connections kept open between reads.
const IDLE_READERS: usize = 8;

/// A string greater than every key that starts with `prefix`, so range scans stop at the end
/// of the prefix instead of running to the end of the bucket.
fn upper_bound(prefix: &str) -> String {
    format!("{prefix}{}", char::MAX)
}

pub fn db_err(e: rusqlite::Error) -> Error {
    // A full disk is said as the filesystem says it (ENOSPC), so it is told apart from a
    // broken index: S3 clients get 507, a delete may use the store's reserve.
    if let rusqlite::Error::SqliteFailure(f, _) = &e
        && f.code == rusqlite::ErrorCode::DiskFull
    {
        return Error::io(
            format!("store index: {e}"),
            std::io::Error::from_raw_os_error(28),
        );
    }
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
    /// The file's change time when its row was made from the file as found (a scan, a
    /// re-index, a re-dating); `None` for a file Ferry wrote and renamed into place (the
    /// rename moves it), which is then known by inode, mtime and size alone.
    pub file_ctime_ns: Option<i64>,
}

const VCOLS: &str = "bucket, key, seq, version_id, is_latest, delete_marker, size, etag, mtime_ms, \
                     attrs, checksum, tags, parts_count, path, file_ino, file_mtime_ns, \
                     file_ctime_ns";

impl VersionRow {
    /// Reads a row selected with [`VCOLS`], in that order.
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            bucket: r.get(0)?,
            key: r.get(1)?,
            seq: r.get(2)?,
            version_id: r.get(3)?,
            is_latest: r.get(4)?,
            delete_marker: r.get(5)?,
            size: r.get(6)?,
            etag: r.get(7)?,
            mtime_ms: r.get(8)?,
            attrs: r.get(9)?,
            checksum: r.get(10)?,
            tags: r.get(11)?,
            parts_count: r.get(12)?,
            path: r.get(13)?,
            file_ino: r.get(14)?,
            file_mtime_ns: r.get(15)?,
            file_ctime_ns: r.get(16)?,
        })
    }

    /// Whether the file at the key's path is the one this row indexed: the same inode,
    /// mtime and size, and the same change time where the row knows it. Any write moves a
    /// file's ctime, one whose size and mtime were put back included (a probe's edit with
    /// `touch -d` kept a stale MD5 trusted by `--checksum` and `--verify`), and no tool sets it.
    pub fn indexes(&self, ino: i64, mtime_ns: i64, ctime_ns: i64, size: i64) -> bool {
        self.file_ino == Some(ino)
            && self.file_mtime_ns == Some(mtime_ns)
            && self.size == size
            && self.file_ctime_ns.is_none_or(|c| c == ctime_ns)
    }
}

fn collect<T>(rows: impl Iterator<Item = rusqlite::Result<T>>) -> Result<Vec<T>> {
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(db_err)
}

pub struct Index {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Arc<Mutex<Connection>>,
}

fn open_conn(path: &Path, read_only: bool) -> Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let open = || -> rusqlite::Result<Connection> {
        let c = Connection::open_with_flags(path, flags)?;
        c.busy_timeout(Duration::from_secs(30))?;
        if !read_only {
            c.pragma_update(None, "journal_mode", "WAL")?;
        }
        // FULL: a commit is on disk when it returns; the index is part of what we ack.
        c.pragma_update(None, "synchronous", "FULL")?;
        c.set_prepared_statement_cache_capacity(64);
        Ok(c)
    };
    open().map_err(|e| match db_err(e) {
        // Said as the filesystem says it, so opening on a full disk can use the reserve.
        full if full.is_storage_full() => full,
        e => Error::Index(format!("opening {}: {e}", path.display())),
    })
}

impl Index {
    pub async fn open(path: &Path) -> Result<Self> {
        let writer = open_conn(path, false)?;
        writer.execute_batch(SCHEMA).map_err(db_err)?;
        // Columns later versions added, for indexes made before: buckets' recorded folder,
        // files' change times.
        for (table, column, ty) in [
            ("buckets", "dir", "TEXT"),
            ("versions", "file_ctime_ns", "INTEGER"),
        ] {
            let has: i64 = writer
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info(?1) WHERE name = ?2",
                    [table, column],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            if has == 0 {
                writer
                    .execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))
                    .map_err(db_err)?;
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            writer: Arc::new(Mutex::new(writer)),
        })
    }

    /// Runs `f` on a pooled read connection, in this thread (see the module docs).
    pub(super) fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let pooled = self.readers.lock().ok().and_then(|mut p| p.pop());
        let conn = match pooled {
            Some(c) => c,
            None => open_conn(&self.path, true)?,
        };
        let out = f(&conn).map_err(db_err);
        if let Ok(mut p) = self.readers.lock()
            && p.len() < IDLE_READERS
        {
            p.push(conn);
        }
        out
    }

    /// Runs `f` on the write connection, on the blocking pool (a commit waits for an fsync).
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = writer
                .lock()
                .map_err(|_| Error::Index("the index writer is poisoned".into()))?;
            f(&mut c).map_err(db_err)
        })
        .await
        .map_err(|e| Error::Index(format!("index task failed: {e}")))?
    }

    /// The write connection, for the group-commit thread.
    pub fn writer(&self) -> Arc<Mutex<Connection>> {
        self.writer.clone()
    }

    // ---- meta ----

    pub async fn get_meta(&self, name: &str) -> Result<Option<String>> {
        self.read(|c| {
            c.prepare_cached("SELECT value FROM meta WHERE name = ?1")?
                .query_row([name], |r| r.get(0))
                .optional()
        })
    }

    pub async fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT INTO meta (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = ?2",
                params![name, value],
            )
            .map(drop)
        })
        .await
    }

    // ---- versions ----

    pub async fn latest(&self, bucket: &str, key: &str) -> Result<Option<VersionRow>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {VCOLS} FROM versions WHERE bucket = ?1 AND key = ?2 AND is_latest = 1"
            ))?
            .query_row([bucket, key], VersionRow::from_row)
            .optional()
        })
    }

    /// The part sizes recorded for a multipart version, if any.
    pub async fn part_sizes(&self, bucket: &str, key: &str, seq: i64) -> Result<Option<String>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT sizes FROM part_sizes WHERE bucket = ?1 AND key = ?2 AND seq = ?3",
            )?
            .query_row(params![bucket, key, seq], |r| r.get(0))
            .optional()
        })
    }

    /// The version `vid` of `key`. An id this store could never have made (not `null`, not
    /// its 32 hex digits) is refused as S3 does, `InvalidArgument`, rather than looked up.
    pub async fn version(&self, bucket: &str, key: &str, vid: &str) -> Result<Option<VersionRow>> {
        let made_here = vid == crate::store::NULL_VERSION
            || (vid.len() == 32 && vid.bytes().all(|b| b.is_ascii_hexdigit()));
        if !made_here {
            return Err(Error::InvalidArgument(format!(
                "Invalid version id specified: {vid:?}"
            )));
        }
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {VCOLS} FROM versions WHERE bucket = ?1 AND key = ?2 AND version_id = ?3"
            ))?
            .query_row([bucket, key, vid], VersionRow::from_row)
            .optional()
        })
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
        // `key > lower` seeks; when lower is the prefix itself the prefix key is included.
        let (op, lower) = if after >= prefix {
            (">", after)
        } else {
            (">=", prefix)
        };
        let q = format!(
            "SELECT {VCOLS} FROM versions WHERE bucket = ?1 AND is_latest = 1 AND delete_marker = 0 \
             AND key {op} ?2 AND key < ?5 AND substr(key, 1, length(?3)) = ?3 ORDER BY key LIMIT ?4"
        );
        let upper = upper_bound(prefix);
        self.read(|c| {
            c.prepare_cached(&q)?
                .query_map(
                    params![bucket, lower, prefix, limit as i64, upper],
                    VersionRow::from_row,
                )?
                .collect()
        })
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
            "SELECT {VCOLS} FROM versions WHERE bucket = ?1 AND substr(key, 1, length(?2)) = ?2 \
             AND key >= ?2 AND key < ?3"
        );
        let upper = upper_bound(prefix);
        let limit = limit as i64;
        self.read(|c| match after {
            None => c
                .prepare_cached(&format!("{base} ORDER BY key, seq DESC LIMIT ?4"))?
                .query_map(params![bucket, prefix, upper, limit], VersionRow::from_row)?
                .collect(),
            Some((k, None)) => c
                .prepare_cached(&format!(
                    "{base} AND key > ?5 ORDER BY key, seq DESC LIMIT ?4"
                ))?
                .query_map(
                    params![bucket, prefix, upper, limit, k],
                    VersionRow::from_row,
                )?
                .collect(),
            Some((k, Some(seq))) => c
                .prepare_cached(&format!(
                    "{base} AND (key > ?5 OR (key = ?5 AND seq < ?6)) ORDER BY key, seq DESC LIMIT ?4"
                ))?
                .query_map(
                    params![bucket, prefix, upper, limit, k, seq],
                    VersionRow::from_row,
                )?
                .collect(),
        })
    }

    /// Rows whose bytes are at the key path (for rescans), in key order after `after`.
    pub async fn list_at_key_path(
        &self,
        bucket: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<VersionRow>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {VCOLS} FROM versions WHERE bucket = ?1 AND path IS NULL AND delete_marker = 0 \
                 AND key > ?2 ORDER BY key LIMIT ?3"
            ))?
            .query_map(params![bucket, after, limit as i64], VersionRow::from_row)?
            .collect()
        })
    }

    /// Records what a file at a key path turned out to contain (it changed outside Ferry).
    pub async fn update_file_facts(&self, v: &VersionRow) -> Result<()> {
        let v = v.clone();
        self.write(move |c| {
            // A file rewritten behind Ferry's back is one piece: its parts are gone.
            c.execute(
                "DELETE FROM part_sizes WHERE bucket = ?1 AND key = ?2 AND seq = ?3",
                params![v.bucket, v.key, v.seq],
            )?;
            c.execute(
                "UPDATE versions SET size = ?4, etag = ?5, mtime_ms = ?6, checksum = ?7, file_ino = ?8, \
                 file_mtime_ns = ?9, parts_count = NULL, attrs = ?10, file_ctime_ns = ?11 \
                 WHERE bucket = ?1 AND key = ?2 AND seq = ?3",
                params![
                    v.bucket,
                    v.key,
                    v.seq,
                    v.size,
                    v.etag,
                    v.mtime_ms,
                    v.checksum,
                    v.file_ino,
                    v.file_mtime_ns,
                    v.attrs,
                    v.file_ctime_ns
                ],
            )
            .map(drop)
        })
        .await
    }

    pub async fn max_seq(&self) -> Result<i64> {
        self.read(|c| {
            c.query_row("SELECT MAX(seq) FROM versions", [], |r| {
                r.get::<_, Option<i64>>(0)
            })
        })
        .map(|v| v.unwrap_or(0))
    }

    // ---- intents ----

    pub async fn intents(&self) -> Result<Vec<(i64, String)>> {
        let writer = self.writer.clone();
        let c = writer
            .lock()
            .map_err(|_| Error::Index("the index writer is poisoned".into()))?;
        let mut stmt = c
            .prepare("SELECT id, steps FROM intents ORDER BY id")
            .map_err(db_err)?;
        collect(
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db_err)?,
        )
    }

    pub async fn delete_intent(&self, id: i64) -> Result<()> {
        self.write(move |c| tx_delete_intent(c, id)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, ctime: Option<i64>) -> VersionRow {
        VersionRow {
            bucket: "b".into(),
            key: key.into(),
            seq: 1,
            version_id: "null".into(),
            is_latest: true,
            delete_marker: false,
            size: 3,
            etag: "e".into(),
            mtime_ms: 1,
            attrs: "{}".into(),
            checksum: None,
            tags: None,
            parts_count: None,
            path: None,
            file_ino: Some(7),
            file_mtime_ns: Some(1_000_000),
            file_ctime_ns: ctime,
        }
    }

    /// An index an older Ferry made (no `file_ctime_ns`) keeps its rows and gains the column.
    #[tokio::test]
    async fn an_older_index_gains_the_change_time() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("index.db");
        let index = Index::open(&path).await.expect("open");
        let old = row("old", None);
        let v = old.clone();
        index
            .write(move |c| tx::tx_insert_version(c, &v))
            .await
            .expect("insert");
        drop(index);
        let c = Connection::open(&path).expect("sqlite");
        c.execute_batch("ALTER TABLE versions DROP COLUMN file_ctime_ns")
            .expect("drop the column");
        drop(c);
        let index = Index::open(&path).await.expect("reopen");
        assert_eq!(index.latest("b", "old").await.expect("read"), Some(old));
        let new = row("new", Some(42));
        let v = new.clone();
        index
            .write(move |c| tx::tx_insert_version(c, &v))
            .await
            .expect("insert");
        assert_eq!(index.latest("b", "new").await.expect("read"), Some(new));
    }

    /// A row knows its file by ctime only where it recorded one.
    #[test]
    fn a_recorded_change_time_must_hold() {
        assert!(row("k", None).indexes(7, 1_000_000, 99, 3));
        assert!(row("k", Some(5)).indexes(7, 1_000_000, 5, 3));
        assert!(!row("k", Some(5)).indexes(7, 1_000_000, 6, 3));
        assert!(!row("k", None).indexes(8, 1_000_000, 5, 3));
    }
}
