//! `ferry volume` iterations, as each side records them: when, how much was scanned, sent,
//! reused and deleted, whether the image was consistent, and the error of a failed one.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{Db, Result};

/// Columns later versions added, as `(table, column, type)`: the schema above has them, and
/// a database made before gets them when opened.
pub(super) const ADDED_COLUMNS: &[(&str, &str, &str)] =
    &[("volume_iterations", "incomplete", "TEXT")];

pub(super) fn schema(id: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS volume_iterations (
                id {id},
                volume TEXT NOT NULL,
                role TEXT NOT NULL,
                started_ms BIGINT NOT NULL,
                ended_ms BIGINT NOT NULL,
                snapshot TEXT,
                files_scanned BIGINT NOT NULL,
                bytes_scanned BIGINT NOT NULL,
                files_sent BIGINT NOT NULL,
                bytes_sent BIGINT NOT NULL,
                bytes_reused BIGINT NOT NULL,
                files_deleted BIGINT NOT NULL,
                wire_bytes BIGINT NOT NULL,
                consistent BIGINT NOT NULL,
                error TEXT,
                incomplete TEXT
            )"
        ),
        "CREATE INDEX IF NOT EXISTS volume_iterations_by_volume
            ON volume_iterations (volume, started_ms)"
            .into(),
    ]
}

/// One iteration of one side (`role` is `source` or `destination`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VolumeIteration {
    pub volume: String,
    pub role: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub snapshot: Option<String>,
    pub files_scanned: i64,
    pub bytes_scanned: i64,
    pub files_sent: i64,
    pub bytes_sent: i64,
    pub bytes_reused: i64,
    pub files_deleted: i64,
    pub wire_bytes: i64,
    pub consistent: bool,
    pub error: Option<String>,
    /// A good iteration that left something behind: paths the source could not read, or
    /// attributes the destination could not set (they are sent again next time).
    #[serde(default)]
    pub incomplete: Option<String>,
}

impl Db {
    pub async fn record_volume_iteration(&self, it: &VolumeIteration) -> Result<()> {
        sqlx::query(
            "INSERT INTO volume_iterations (volume, role, started_ms, ended_ms, snapshot,
                files_scanned, bytes_scanned, files_sent, bytes_sent, bytes_reused,
                files_deleted, wire_bytes, consistent, error, incomplete)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&it.volume)
        .bind(&it.role)
        .bind(it.started_ms)
        .bind(it.ended_ms)
        .bind(it.snapshot.clone())
        .bind(it.files_scanned)
        .bind(it.bytes_scanned)
        .bind(it.files_sent)
        .bind(it.bytes_sent)
        .bind(it.bytes_reused)
        .bind(it.files_deleted)
        .bind(it.wire_bytes)
        .bind(i64::from(it.consistent))
        .bind(it.error.clone())
        .bind(it.incomplete.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The latest `limit` iterations of `volume`, newest first.
    pub async fn volume_iterations(
        &self,
        volume: &str,
        limit: i64,
    ) -> Result<Vec<VolumeIteration>> {
        let rows = sqlx::query(
            "SELECT volume, role, started_ms, ended_ms, snapshot, files_scanned, bytes_scanned,
                files_sent, bytes_sent, bytes_reused, files_deleted, wire_bytes, consistent, error,
                incomplete
             FROM volume_iterations WHERE volume = $1 ORDER BY started_ms DESC, id DESC LIMIT $2",
        )
        .bind(volume)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VolumeIteration {
                    volume: r.try_get("volume")?,
                    role: r.try_get("role")?,
                    started_ms: r.try_get("started_ms")?,
                    ended_ms: r.try_get("ended_ms")?,
                    snapshot: r.try_get("snapshot")?,
                    files_scanned: r.try_get("files_scanned")?,
                    bytes_scanned: r.try_get("bytes_scanned")?,
                    files_sent: r.try_get("files_sent")?,
                    bytes_sent: r.try_get("bytes_sent")?,
                    bytes_reused: r.try_get("bytes_reused")?,
                    files_deleted: r.try_get("files_deleted")?,
                    wire_bytes: r.try_get("wire_bytes")?,
                    consistent: r.try_get::<i64, _>("consistent")? != 0,
                    error: r.try_get("error")?,
                    incomplete: r.try_get("incomplete")?,
                })
            })
            .collect()
    }
}
