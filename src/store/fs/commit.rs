//! Group commit: one thread applies the index changes of many concurrent writers in one SQLite
//! transaction (one WAL fsync), then performs all their file moves and fsyncs each touched
//! directory once, then answers every writer. While it works, the next batch gathers.
//!
//! Correctness does not depend on batching: each change is still "index + intent in one
//! transaction, then the moves", and the key locks held by callers mean no two changes in a
//! batch touch the same key. Finished intents are deleted in the *next* transaction rather
//! than in one of their own; replaying a finished intent is harmless as long as no later
//! change has committed, and every later commit deletes it first.
//!
//! The work is all blocking (SQLite, renames, fsyncs), so it runs on a thread of its own
//! rather than as a task that would hand every statement to another thread.
//!
//! # Batch durability
//! Small bodies are not fdatasynced one by one (a device flush each). When a batch carries
//! one, the thread first calls `syncfs(2)` on the store's filesystem: one flush makes every
//! body of the batch durable, with the temp directories' entries, *and* the moves of earlier
//! batches. Then the transaction commits (index + intent), the moves run without directory
//! fsyncs, and the writers are answered: an acknowledged write is durable because its bytes
//! and its intent are, and a lost rename is redone by replay. The intent is deleted only by a
//! later transaction, after the `syncfs` that made its moves durable (a batch that follows
//! unsynced moves always starts with one).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use rustix::fs::FileType;
use tokio::sync::{mpsc, oneshot};

use super::Change;
use super::confine::{Dirs, Root};
use super::index::{self, Index, db_err};
use super::intent::{self, Step};
use super::stuck::Held;
use crate::store::{Error, Result};

const MAX_BATCH: usize = 256;

struct Job {
    change: Change,
    done: oneshot::Sender<Result<()>>,
    /// Run with the outcome before the writer hears it, whether or not it still waits: it
    /// holds the key's lock and brings the caches up to date (see [`Then`]).
    then: Option<Then>,
}

/// What a change's writer leaves to the thread: a writer whose request was dropped (a client
/// that disconnected) while its change was queued must not release the key's lock before the
/// change is in, or the next writer of the key builds on the state before it: the listing
/// showed a key twice and a version's row pointed at another's bytes (found by a probe).
pub type Then = Box<dyn FnOnce(bool) + Send>;

impl Job {
    fn answer(mut self, r: Result<()>) {
        if let Some(then) = self.then.take() {
            then(r.is_ok());
        }
        let _ = self.done.send(r);
    }
}

/// The handle writers use; the thread ends when the last handle is dropped, and dropping it
/// waits for the thread to finish its last batch.
pub struct Committer {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Committer {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Committer {
    pub fn start(
        index: &Index,
        root: Arc<Root>,
        store: String,
        held: super::stuck::HeldPaths,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel(1024);
        let writer = index.writer();
        let thread = std::thread::Builder::new()
            .name("ferry-fs-commit".into())
            .spawn(move || run(&writer, &root, rx, &store, held))
            .map_err(|e| Error::io("starting the commit thread", e))?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Commits `change` durably (index, intent, file moves, directory fsyncs), then runs
    /// `then` on the thread, even if this future was dropped meanwhile.
    pub async fn commit(&self, change: Change, then: Option<Then>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| Error::Index("the commit thread has stopped".into()))?;
        tx.send(Job { change, done, then })
            .await
            .map_err(|_| Error::Index("the commit thread has stopped".into()))?;
        wait.await
            .map_err(|_| Error::Index("the commit thread has stopped".into()))?
    }
}

/// What the thread carries from one batch to the next.
struct Carry {
    /// Intents whose moves are done, to delete in the next transaction.
    finished: Vec<i64>,
    /// Some of those moves ran without directory fsyncs: `syncfs` before deleting them.
    moves_unsynced: bool,
    /// Changes whose moves failed, held until they can be finished.
    held: Held,
}

impl Carry {
    /// Tries the held changes again (see [`Held::retry`]); those now finished are deleted by
    /// the next transaction, after a `syncfs` (steps a replay found done were not flushed
    /// when they ran).
    fn retry_held(&mut self, root: &Root) {
        let finished = self.held.retry(root);
        if !finished.is_empty() {
            self.moves_unsynced = true;
            self.finished.extend(finished);
        }
    }
}

fn run(
    writer: &Mutex<Connection>,
    root: &Root,
    rx: mpsc::Receiver<Job>,
    store: &str,
    held: super::stuck::HeldPaths,
) {
    let mut carry = Carry {
        finished: Vec::new(),
        moves_unsynced: false,
        held: Held::new(held),
    };
    batches(writer, root, rx, &mut carry, store);
    finish(writer, root, carry);
}

/// At a clean end, makes the last batch's moves durable and deletes its intent, so the next
/// start has nothing to replay (it would, harmlessly, and log it as a crash's leftover). Any
/// failure leaves the intent for that replay.
fn finish(writer: &Mutex<Connection>, root: &Root, carry: Carry) {
    if carry.finished.is_empty() || (carry.moves_unsynced && syncfs(root.path()).is_err()) {
        return;
    }
    let Ok(mut conn) = writer.lock() else { return };
    let done = (|| {
        let tx = conn.transaction()?;
        for id in &carry.finished {
            index::tx_delete_intent(&tx, *id)?;
        }
        tx.commit()
    })();
    if let Err(e) = done {
        tracing::debug!(error = %e, "finishing the last intents at shutdown failed; they are replayed at start");
    }
}

fn batches(
    writer: &Mutex<Connection>,
    root: &Root,
    mut rx: mpsc::Receiver<Job>,
    carry: &mut Carry,
    store: &str,
) {
    while let Some(first) = next_job(&mut rx, root, carry) {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        carry.retry_held(root);
        let batch = refuse_held(&carry.held, batch, store);
        let mut dirs = Dirs::new(root);
        let batch = refuse_conflicts(&mut dirs, batch);
        if batch.is_empty() {
            continue;
        }
        let Ok(mut conn) = writer.lock() else {
            for j in batch {
                j.answer(Err(Error::Index("the index writer is poisoned".into())));
            }
            continue;
        };
        let batch = refuse_gone_buckets(&conn, batch);
        if batch.is_empty() {
            continue;
        }
        match apply(&mut conn, &mut dirs, carry, &batch) {
            Ok(()) => {
                for j in batch {
                    j.answer(Ok(()));
                }
            }
            Err(Failed::Transaction(_)) if batch.len() > 1 => {
                // The transaction rolled back: retry each change alone so the others still
                // commit and the failing one gets its own error.
                for j in batch {
                    match apply(&mut conn, &mut dirs, carry, std::slice::from_ref(&j)) {
                        Err(Failed::Moves(e, intent)) => {
                            settle_moves(&mut conn, root, carry, vec![j], intent, e);
                        }
                        r => j.answer(r.map_err(Failed::into_error)),
                    }
                }
            }
            Err(Failed::Moves(e, intent)) => settle_moves(&mut conn, root, carry, batch, intent, e),
            Err(e) => {
                // The only change failed: nothing of it is in.
                let e = e.into_error();
                let (full, msg) = (e.is_storage_full(), e.to_string());
                for j in batch {
                    j.answer(Err(if full {
                        Error::io(
                            "committing the change",
                            std::io::Error::from_raw_os_error(28),
                        )
                    } else {
                        Error::Index(msg.clone())
                    }));
                }
            }
        }
    }
}

/// Waits for the next change. While changes are held, an idle store still tries them again
/// (at most once a second), so a held key comes back without a write to wake the thread.
fn next_job(rx: &mut mpsc::Receiver<Job>, root: &Root, carry: &mut Carry) -> Option<Job> {
    loop {
        if carry.held.is_empty() {
            return rx.blocking_recv();
        }
        match rx.try_recv() {
            Ok(job) => return Some(job),
            Err(mpsc::error::TryRecvError::Disconnected) => return None,
            Err(mpsc::error::TryRecvError::Empty) => {
                std::thread::sleep(std::time::Duration::from_millis(100));
                carry.retry_held(root);
            }
        }
    }
}

/// Refuses the changes that touch a path a held change still has to move (see [`Held`]),
/// before anything of them is committed.
fn refuse_held(held: &Held, batch: Vec<Job>, store: &str) -> Vec<Job> {
    let mut kept = Vec::with_capacity(batch.len());
    for job in batch {
        match held.blocks(&job.change.steps) {
            Some(why) => {
                let message = format!("cannot change {} yet: {why}", job.change.key);
                job.answer(Err(Error::Unavailable {
                    store: store.to_owned(),
                    message,
                }));
            }
            None => kept.push(job),
        }
    }
    kept
}

/// The index committed a batch and its moves failed: gives each change an intent of its own in
/// place of the batch's, then finishes each change's moves on its own (the changes of a batch
/// touch different keys), answers those done, and holds the others (see [`Held`]). The split
/// comes first: a batch intent is replayed as one list that skips every step before the last
/// one proven done, so changes finished out of order under it would leave an earlier one
/// unfinished for good.
fn settle_moves(
    conn: &mut Connection,
    root: &Root,
    carry: &mut Carry,
    batch: Vec<Job>,
    intent: i64,
    error: Error,
) {
    let split = (|| {
        let tx = conn.transaction()?;
        index::tx_delete_intent(&tx, intent)?;
        let mut ids = Vec::with_capacity(batch.len());
        for j in &batch {
            let json = serde_json::to_string(&j.change.steps)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            ids.push(index::tx_insert_intent(&tx, &json)?);
        }
        tx.commit()?;
        Ok::<_, rusqlite::Error>(ids)
    })();
    // Said as a committed change's failure, never as a full disk: a caller that frees room
    // and tries a change again (`FsStore::freeing`) must not repeat this one.
    let failed = |e: Error| Failed::Moves(e, intent).into_error();
    match split {
        Ok(ids) => {
            // Moves made before the failure were not flushed: the intents go only after a
            // `syncfs` (the next batch's).
            carry.moves_unsynced = true;
            for (j, id) in batch.into_iter().zip(ids) {
                match intent::replay(root, &j.change.steps) {
                    Ok(()) => {
                        carry.finished.push(id);
                        j.answer(Ok(()));
                    }
                    Err(e) => {
                        carry.held.hold(id, j.change.steps.clone(), e.to_string());
                        let key = j.change.key.clone();
                        j.answer(Err(failed(Error::io(
                            format!("moving the file of {key} (the change is recorded and its move is tried again)"),
                            e,
                        ))));
                    }
                }
            }
        }
        Err(e) => {
            // The batch's intent stays, to be finished in order: every change of it is held
            // under it, and none is said done.
            tracing::warn!(error = %e, "could not split a failed intent");
            let steps = batch
                .iter()
                .flat_map(|j| j.change.steps.iter().cloned())
                .collect();
            carry.held.hold(intent, steps, error.to_string());
            let msg = format!("a file change could not be finished ({error}); it is tried again");
            for j in batch {
                j.answer(Err(failed(Error::Index(msg.clone()))));
            }
        }
    }
}

/// Refuses the changes whose file could not be moved to its key's path: one under a path
/// that is a file, or at a path that is a directory holding other objects. A write checks this
/// as it starts (`prepare_key_path`), but writes of `a` and `a/b` can both pass that check and
/// meet here, where their moves would fail after their index rows were committed (listed, yet
/// unreadable). Here, on the one thread that moves files into keys' paths, the disk is what
/// earlier batches left, and of two changes in this batch that conflict the first wins. The
/// others get `PathConflict` before anything of them is committed.
fn refuse_conflicts(dirs: &mut Dirs, batch: Vec<Job>) -> Vec<Job> {
    // Key paths this batch places files at, and every directory above them.
    let mut placed: HashSet<String> = HashSet::new();
    let mut above: HashSet<String> = HashSet::new();
    let mut kept = Vec::with_capacity(batch.len());
    for job in batch {
        let targets: Vec<&str> = job
            .change
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::MoveFrom { to, .. } if !to.starts_with(super::META_DIR) => Some(to.as_str()),
                _ => None,
            })
            .collect();
        let refused = targets
            .iter()
            .find_map(|to| conflict(dirs, to, &placed, &above));
        match refused {
            Some(why) => {
                let key = job.change.key.clone();
                job.answer(Err(Error::PathConflict { key, why }));
            }
            None => {
                for to in targets {
                    above.extend(parents(to).map(str::to_owned));
                    placed.insert(to.to_owned());
                }
                kept.push(job);
            }
        }
    }
    kept
}

/// Refuses the changes that would add rows to a bucket deleted since they started (a PUT
/// racing DeleteBucket), before anything of them is committed: the bucket's deletion checks
/// it is empty and deletes it on this same writer, so either the write lands first and keeps
/// the bucket, or it finds the bucket gone.
fn refuse_gone_buckets(conn: &Connection, batch: Vec<Job>) -> Vec<Job> {
    let mut known: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut kept = Vec::with_capacity(batch.len());
    for job in batch {
        let c = &job.change;
        if c.inserts.is_empty() {
            kept.push(job);
            continue;
        }
        let exists = *known.entry(c.bucket.clone()).or_insert_with(|| {
            // Any other error is the transaction's to report.
            !matches!(
                conn.query_row(
                    "SELECT 1 FROM buckets WHERE name = ?1",
                    [&c.bucket],
                    |_| Ok(())
                ),
                Err(rusqlite::Error::QueryReturnedNoRows)
            )
        });
        if exists {
            kept.push(job);
        } else {
            let bucket = c.bucket.clone();
            job.answer(Err(Error::NoSuchBucket { bucket }));
        }
    }
    kept
}

/// The directories above `to` (`bucket/a/b` gives `bucket/a`), below its bucket's.
fn parents(to: &str) -> impl Iterator<Item = &str> {
    let first = to.find('/').map_or(to.len(), |i| i + 1);
    to[first..]
        .match_indices('/')
        .map(move |(i, _)| &to[..first + i])
}

/// Why a file cannot be moved to `to` (relative to the store root), if it cannot.
fn conflict(
    dirs: &mut Dirs,
    to: &str,
    placed: &HashSet<String>,
    above: &HashSet<String>,
) -> Option<String> {
    let key_of = |p: &str| p.split_once('/').map_or(p, |(_, k)| k).to_owned();
    let root = dirs.root();
    // The bucket's folder, then every folder of the key: a symlink a POSIX user put there
    // is not followed (the move would land outside the bucket, or the store). When the key's
    // folder opens beneath the root, all of them are real folders (the usual case, proven
    // with one lookup); otherwise each is looked at to say which one is wrong.
    let on_disk = !dirs.parent_is_dir(to);
    let bucket = to.split_once('/').map_or(to, |(b, _)| b);
    if on_disk && !matches!(root.kind(bucket), Ok(Some(FileType::Directory))) {
        return Some("the bucket's folder is not a plain folder (a symlink?)".into());
    }
    for dir in parents(to) {
        if placed.contains(dir) {
            return Some(format!("its parent {:?} is an object", key_of(dir)));
        }
        if !on_disk {
            continue;
        }
        match root.kind(dir) {
            Ok(Some(FileType::Directory) | None) => {}
            Ok(Some(FileType::Symlink)) => {
                return Some(format!(
                    "its folder {:?} is a symlink, which Ferry does not follow",
                    key_of(dir)
                ));
            }
            Ok(Some(_)) => return Some(format!("its parent {:?} is an object", key_of(dir))),
            Err(e) => return Some(format!("its folder {:?}: {e}", key_of(dir))),
        }
    }
    let below = "other objects exist below it (it is a prefix of their keys)";
    if above.contains(to) {
        return Some(below.into());
    }
    // An empty directory (left by a write that lost this race) gives way, as it does when a
    // write starts; one with anything in it does not.
    if matches!(dirs.kind(to), Ok(Some(FileType::Directory)))
        && !intent::remove_empty_dirs(&root.path().join(to))
    {
        return Some(below.into());
    }
    None
}

/// Why a batch failed: before its transaction committed (nothing happened), or after (the
/// index is changed and the intent recorded, but the file moves did not finish).
enum Failed {
    Transaction(Error),
    /// With the intent that records the batch's moves.
    Moves(Error, i64),
}

impl Failed {
    fn into_error(self) -> Error {
        match self {
            Failed::Transaction(e) => e,
            // Committed, its moves replayed at the next start: never said as a full disk,
            // whatever stopped the moves, since a caller may try a change that found no room
            // again (`FsStore::freeing`), and this one must not be repeated.
            Failed::Moves(e, _) if e.is_storage_full() => Error::Index(e.to_string()),
            Failed::Moves(e, _) => e,
        }
    }
}

fn apply(
    conn: &mut Connection,
    dirs: &mut Dirs,
    carry: &mut Carry,
    batch: &[Job],
) -> Result<(), Failed> {
    let root = dirs.root();
    let unsynced = batch.iter().any(|j| j.change.unsynced_body);
    if unsynced || carry.moves_unsynced {
        syncfs(root.path())
            .map_err(|e| Failed::Transaction(Error::io("syncing the store's filesystem", e)))?;
        carry.moves_unsynced = false;
    }
    let (intent, steps) =
        transaction(conn, &carry.finished, batch).map_err(|e| Failed::Transaction(db_err(e)))?;
    carry.finished.clear();
    if let Some(id) = intent {
        if let Err(e) = intent::run_with(dirs, &steps, !unsynced) {
            // What stopped a move may be gone already (a directory a write below the key was
            // making, one a delete pruned): finish the intent now, as start-up would, rather
            // than leave committed rows without their files until a restart.
            tracing::warn!(error = %e, ?steps, "a file change failed; replaying it");
            intent::replay(root, &steps)
                .map_err(|_| Failed::Moves(Error::io("applying a file change", e), id))?;
        }
        carry.finished.push(id);
        carry.moves_unsynced |= unsynced;
    }
    Ok(())
}

/// Flushes everything written to the filesystem that holds `root`.
fn syncfs(root: &Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(root)?;
    rustix::fs::syncfs(&dir).map_err(std::io::Error::from)
}

/// Applies a batch's index changes and records its intent, in one transaction.
fn transaction(
    conn: &mut Connection,
    finished: &[i64],
    batch: &[Job],
) -> rusqlite::Result<(Option<i64>, Vec<Step>)> {
    let tx = conn.transaction()?;
    // Intents of earlier batches whose moves are done (one per batch). An intent whose moves
    // failed is never in this list: it stays for the replay at the next start.
    for id in finished.iter() {
        index::tx_delete_intent(&tx, *id)?;
    }
    let mut steps: Vec<Step> = Vec::new();
    for j in batch {
        let c = &j.change;
        for seq in &c.deletes {
            index::tx_delete_version(&tx, &c.bucket, &c.key, *seq)?;
        }
        for row in &c.updates {
            index::tx_update_version(&tx, row)?;
        }
        for row in &c.inserts {
            index::tx_insert_version(&tx, row)?;
        }
        if let Some((seq, sizes)) = &c.part_sizes {
            index::tx_insert_part_sizes(&tx, &c.bucket, &c.key, *seq, sizes)?;
        }
        if let Some(u) = &c.delete_upload {
            index::tx_delete_upload(&tx, u)?;
            if let Some(made) = c.inserts.iter().find(|r| r.is_latest) {
                super::completed::tx_record(&tx, u, made)?;
            }
        }
        steps.extend(c.steps.iter().cloned());
    }
    // One intent for the whole batch: every step tells by itself whether it already ran, and
    // the batch's changes touch different keys, so their steps are independent.
    let intent = if steps.is_empty() {
        None
    } else {
        let json = serde_json::to_string(&steps)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Some(index::tx_insert_intent(&tx, &json)?)
    };
    tx.commit()?;
    Ok((intent, steps))
}
