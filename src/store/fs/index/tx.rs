//! The statements the group-commit thread ([`super::super::commit`]) runs inside its write
//! transaction: versions, part sizes and intents.

use rusqlite::{Connection, params};

use super::{VCOLS, VersionRow};

pub fn tx_insert_version(c: &Connection, v: &VersionRow) -> rusqlite::Result<()> {
    c.prepare_cached(&format!(
        "INSERT INTO versions ({VCOLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    ))?
    .execute(params![
        v.bucket,
        v.key,
        v.seq,
        v.version_id,
        v.is_latest,
        v.delete_marker,
        v.size,
        v.etag,
        v.mtime_ms,
        v.attrs,
        v.checksum,
        v.tags,
        v.parts_count,
        v.path,
        v.file_ino,
        v.file_mtime_ns,
        v.file_ctime_ns
    ])
    .map(drop)
}

pub fn tx_delete_version(
    c: &Connection,
    bucket: &str,
    key: &str,
    seq: i64,
) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM versions WHERE bucket = ?1 AND key = ?2 AND seq = ?3")?
        .execute(params![bucket, key, seq])?;
    c.prepare_cached("DELETE FROM part_sizes WHERE bucket = ?1 AND key = ?2 AND seq = ?3")?
        .execute(params![bucket, key, seq])
        .map(drop)
}

/// Records the part sizes of a multipart version (see [`super::layout`]).
pub fn tx_insert_part_sizes(
    c: &Connection,
    bucket: &str,
    key: &str,
    seq: i64,
    sizes: &str,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO part_sizes (bucket, key, seq, sizes) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![bucket, key, seq, sizes])
    .map(drop)
}

/// Sets whether a version is the latest, where its bytes are, and what they are (a file
/// changed outside Ferry is re-indexed as it is kept as a version).
pub fn tx_update_version(c: &Connection, v: &VersionRow) -> rusqlite::Result<()> {
    c.prepare_cached(
        "UPDATE versions SET is_latest = ?4, path = ?5, tags = ?6, file_ino = ?7, file_mtime_ns = ?8, \
         size = ?9, etag = ?10, mtime_ms = ?11, checksum = ?12, parts_count = ?13, \
         file_ctime_ns = ?14 \
         WHERE bucket = ?1 AND key = ?2 AND seq = ?3",
    )?
    .execute(params![
        v.bucket,
        v.key,
        v.seq,
        v.is_latest,
        v.path,
        v.tags,
        v.file_ino,
        v.file_mtime_ns,
        v.size,
        v.etag,
        v.mtime_ms,
        v.checksum,
        v.parts_count,
        v.file_ctime_ns
    ])
    .map(drop)
}

pub fn tx_insert_intent(c: &Connection, steps: &str) -> rusqlite::Result<i64> {
    c.prepare_cached("INSERT INTO intents (steps) VALUES (?1)")?
        .execute([steps])?;
    Ok(c.last_insert_rowid())
}

pub fn tx_delete_intent(c: &Connection, id: i64) -> rusqlite::Result<()> {
    c.prepare_cached("DELETE FROM intents WHERE id = ?1")?
        .execute([id])
        .map(drop)
}
