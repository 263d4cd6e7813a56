//! Where each side records its iterations (the state database: `DIR/.ferry/state.db` by
//! default, PostgreSQL with `--db`), and what `ferry volume status` makes of them.

use std::path::Path;

use anyhow::Context;

use crate::state::{Db, VolumeIteration};

use super::tree::STATE_DIR;

/// Opens `url`, or the embedded database under `DIR/.ferry/`.
pub async fn open_db(dir: &Path, url: Option<&str>) -> anyhow::Result<Db> {
    match url {
        Some(u) => crate::cli::connect_db(u).await,
        None => {
            let state = dir.join(STATE_DIR);
            std::fs::create_dir_all(&state)
                .with_context(|| format!("cannot create {}", state.display()))?;
            Ok(Db::open_embedded(&state).await?)
        }
    }
}

/// The name iterations are recorded under: the directory's absolute path.
pub fn volume_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A summary of the recent iterations of one side.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub volume: String,
    pub last_success: Option<VolumeIteration>,
    pub consecutive_failures: usize,
    /// The last iteration failed, read files that were changing, or left something behind
    /// (paths it could not read, attributes the destination could not set).
    pub out_of_sync: bool,
    pub recent: Vec<VolumeIteration>,
}

pub async fn status(db: &Db, dir: &Path, limit: i64) -> anyhow::Result<Status> {
    let volume = volume_name(dir);
    let recent = db.volume_iterations(&volume, limit.max(1)).await?;
    let consecutive_failures = recent.iter().take_while(|i| i.error.is_some()).count();
    let last_success = recent.iter().find(|i| i.error.is_none()).cloned();
    let out_of_sync = recent
        .first()
        .is_none_or(|i| i.error.is_some() || !i.consistent || i.incomplete.is_some());
    Ok(Status {
        volume,
        last_success,
        consecutive_failures,
        out_of_sync,
        recent,
    })
}
