//! Group commit: one task applies the index changes of many concurrent writers in one SQLite
//! transaction (one WAL fsync), then performs all their file moves and fsyncs each touched
//! directory once, then answers every writer.
//!
//! Correctness does not depend on batching: each change is still "index + intent in one
//! transaction, then the moves", and the key locks held by callers mean no two changes in a
//! batch touch the same key. Finished intents are deleted in the *next* transaction rather
//! than in one of their own; replaying a finished intent is harmless as long as no later
//! change has committed, and every later commit deletes it first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::Change;
use super::index::{self, Index};
use super::intent::{self, Step};
use crate::store::{Error, Result};

const MAX_BATCH: usize = 256;

struct Job {
    change: Change,
    done: oneshot::Sender<Result<()>>,
}

/// The handle writers use; the task ends when the last handle is dropped.
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

impl Committer {
    pub fn start(index: Arc<Index>, root: PathBuf) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(run(index, root, rx));
        Self { tx }
    }

    /// Commits `change` durably (index, intent, file moves, directory fsyncs).
    pub async fn commit(&self, change: Change) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Job { change, done })
            .await
            .map_err(|_| Error::Index("the commit task has stopped".into()))?;
        wait.await
            .map_err(|_| Error::Index("the commit task has stopped".into()))?
    }
}

async fn run(index: Arc<Index>, root: PathBuf, mut rx: mpsc::Receiver<Job>) {
    let mut finished: Vec<i64> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        match apply(&index, &root, &mut finished, &batch).await {
            Ok(()) => {
                for j in batch {
                    let _ = j.done.send(Ok(()));
                }
            }
            Err(Failed::Transaction(_)) if batch.len() > 1 => {
                // The transaction rolled back: retry each change alone so the others still
                // commit and the failing one gets its own error.
                for j in batch {
                    let r = apply(&index, &root, &mut finished, std::slice::from_ref(&j)).await;
                    let _ = j.done.send(r.map_err(Failed::into_error));
                }
            }
            Err(e) => {
                // Either the only change failed, or the index committed and the file moves
                // failed: the intent stays and is replayed at the next start; nothing is
                // retried here, because the index changes are already in.
                let msg = e.into_error().to_string();
                for j in batch {
                    let _ = j.done.send(Err(Error::Index(msg.clone())));
                }
            }
        }
    }
}

/// Why a batch failed: before its transaction committed (nothing happened), or after (the
/// index is changed and the intent recorded, but the file moves did not finish).
enum Failed {
    Transaction(Error),
    Moves(Error),
}

impl Failed {
    fn into_error(self) -> Error {
        match self {
            Failed::Transaction(e) | Failed::Moves(e) => e,
        }
    }
}

async fn apply(
    index: &Index,
    root: &Path,
    finished: &mut Vec<i64>,
    batch: &[Job],
) -> Result<(), Failed> {
    let (intent, steps) = transaction(index, finished, batch)
        .await
        .map_err(Failed::Transaction)?;
    finished.clear();
    if let Some(id) = intent {
        let root = root.to_path_buf();
        tokio::task::spawn_blocking(move || intent::run(&root, &steps))
            .await
            .map_err(|e| Failed::Moves(Error::Index(format!("file task failed: {e}"))))?
            .map_err(|e| Failed::Moves(Error::io("applying a file change", e)))?;
        finished.push(id);
    }
    Ok(())
}

/// Applies a batch's index changes and records its intent, in one transaction.
async fn transaction(
    index: &Index,
    finished: &[i64],
    batch: &[Job],
) -> Result<(Option<i64>, Vec<Step>)> {
    let mut tx = index.begin().await?;
    // Intents of earlier batches whose moves are done (one per batch). An intent whose moves
    // failed is never in this list: it stays for the replay at the next start.
    for id in finished.iter() {
        index::tx_delete_intent(&mut tx, *id).await?;
    }
    let mut steps: Vec<Step> = Vec::new();
    for j in batch {
        let c = &j.change;
        for seq in &c.deletes {
            index::tx_delete_version(&mut tx, &c.bucket, &c.key, *seq).await?;
        }
        for row in &c.updates {
            index::tx_update_version(&mut tx, row).await?;
        }
        for row in &c.inserts {
            index::tx_insert_version(&mut tx, row).await?;
        }
        if let Some(u) = &c.delete_upload {
            index::tx_delete_upload(&mut tx, u).await?;
        }
        steps.extend(c.steps.iter().cloned());
    }
    // One intent for the whole batch: every step tells by itself whether it already ran, and
    // the batch's changes touch different keys, so their steps are independent.
    let intent = if steps.is_empty() {
        None
    } else {
        let json = serde_json::to_string(&steps)
            .map_err(|e| Error::Index(format!("encoding an intent: {e}")))?;
        Some(index::tx_insert_intent(&mut tx, &json).await?)
    };
    index::tx_commit(tx).await?;
    Ok((intent, steps))
}
