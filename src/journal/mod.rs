//! The journal: the durable record of which targets still owe which accepted mutations.
//!
//! Owns: appending rows with group commit (many writers' rows in one transaction, so one
//! durable commit serves a batch of concurrent requests) and forgetting settled rows lazily.
//! Does not own: what a row means or how it is paid (the `bucket` layer's catch-up worker).
//!
//! Durability rule: a row is appended, and [`Journal::append`] returns, *before* the change it
//! describes is attempted on the primary, so a crash at any later point leaves the row behind
//! and the catch-up worker re-syncs the key. Forgetting a row is not urgent: a row that
//! survives a crash only causes one idempotent re-sync.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::state::{self, Db, NewJournalRow};

const MAX_BATCH_ROWS: usize = 1024;

struct Append {
    rows: Vec<NewJournalRow>,
    done: oneshot::Sender<Result<Vec<i64>, String>>,
}

pub struct Journal {
    db: Db,
    append_tx: mpsc::Sender<Append>,
    forget_tx: mpsc::UnboundedSender<i64>,
    /// Rows whose fate this process has not decided yet (their write is running) or that are
    /// settled but not yet deleted: the catch-up worker must not take them for owed.
    busy: Arc<Mutex<HashSet<i64>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("journal: {0}")]
pub struct Error(String);

impl From<state::Error> for Error {
    fn from(e: state::Error) -> Self {
        Error(e.to_string())
    }
}

impl Journal {
    /// Starts the appender and the forgetter tasks (they end when the journal is dropped).
    pub fn start(db: Db) -> Arc<Self> {
        let (append_tx, append_rx) = mpsc::channel(4096);
        let (forget_tx, forget_rx) = mpsc::unbounded_channel();
        let busy: Arc<Mutex<HashSet<i64>>> = Arc::default();
        tokio::spawn(appender(db.clone(), append_rx));
        tokio::spawn(forgetter(db.clone(), forget_rx, busy.clone()));
        Arc::new(Self {
            db,
            append_tx,
            forget_tx,
            busy,
        })
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Appends `rows` durably; returns their ids in order. The rows stay busy (not owed)
    /// until the caller passes each to [`Self::forget`] or [`Self::release`].
    pub async fn append(&self, rows: Vec<NewJournalRow>) -> Result<Vec<i64>, Error> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let (done, wait) = oneshot::channel();
        self.append_tx
            .send(Append { rows, done })
            .await
            .map_err(|_| Error("the journal has stopped".into()))?;
        let ids = wait
            .await
            .map_err(|_| Error("the journal has stopped".into()))?
            .map_err(Error)?;
        if let Ok(mut b) = self.busy.lock() {
            b.extend(ids.iter().copied());
        }
        Ok(ids)
    }

    /// Forgets settled rows (soon, not durably); they stay busy until deleted.
    pub fn forget(&self, ids: &[i64]) {
        for id in ids {
            let _ = self.forget_tx.send(*id);
        }
    }

    /// Hands rows to the catch-up worker: they are owed.
    pub fn release(&self, ids: &[i64]) {
        if let Ok(mut b) = self.busy.lock() {
            for id in ids {
                b.remove(id);
            }
        }
    }

    /// The rows that are not (yet) owed.
    pub fn busy(&self) -> HashSet<i64> {
        self.busy.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

async fn appender(db: Db, mut rx: mpsc::Receiver<Append>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let mut n = batch[0].rows.len();
        while n < MAX_BATCH_ROWS {
            match rx.try_recv() {
                Ok(a) => {
                    n += a.rows.len();
                    batch.push(a);
                }
                Err(_) => break,
            }
        }
        let all: Vec<NewJournalRow> = batch.iter().flat_map(|a| a.rows.clone()).collect();
        match db.append_journal(&all).await {
            Ok(ids) => {
                let mut ids = ids.into_iter();
                for a in batch {
                    let mine: Vec<i64> = ids.by_ref().take(a.rows.len()).collect();
                    let _ = a.done.send(Ok(mine));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for a in batch {
                    let _ = a.done.send(Err(msg.clone()));
                }
            }
        }
    }
}

async fn forgetter(db: Db, mut rx: mpsc::UnboundedReceiver<i64>, busy: Arc<Mutex<HashSet<i64>>>) {
    let mut pending: Vec<i64> = Vec::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(id) => pending.push(id),
                None => return,
            }
            // Let a burst gather: fewer, larger transactions.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        while pending.len() < 4096 {
            match rx.try_recv() {
                Ok(id) => pending.push(id),
                Err(_) => break,
            }
        }
        match db.delete_journal(&pending).await {
            Ok(()) => {
                if let Ok(mut b) = busy.lock() {
                    for id in &pending {
                        b.remove(id);
                    }
                }
                pending.clear();
            }
            Err(e) => {
                tracing::warn!(error = %e, rows = pending.len(), "could not forget settled journal rows; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}
