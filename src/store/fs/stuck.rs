//! Changes whose file moves failed after their index rows committed (a folder a POSIX user
//! made read-only, a file made immutable), held back until their moves can be finished.
//!
//! Such a change's intent stays, to be finished later; meanwhile a later change of the same
//! path must not commit. If it did, the held intent, finished after it (or replayed at the
//! next start), would move *its* file away: an acknowledged write lost (found by a probe: a
//! DELETE refused by the folder's permissions, the permissions restored, a PUT of the key
//! acknowledged, then the restart's replay deleted it). So the commit thread tries held
//! changes again now and then, and refuses, before anything of them commits, changes that
//! touch a path a held change still has to move.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::META_DIR;
use super::confine::Root;
use super::intent::{self, Step};

/// How often held changes are tried again (on the commit thread: before a batch, and every
/// second while the store is idle).
const RETRY: Duration = Duration::from_secs(1);
/// Held changes tried per round: many (a mirror deleting thousands of immutable files) must
/// not stall every write for the time it takes to try them all.
const PER_ROUND: usize = 64;

struct Change {
    intent: i64,
    steps: Vec<Step>,
    /// The object paths (relative to the root, outside `.ferry/`) its steps move files at.
    paths: HashSet<String>,
    error: String,
}

/// The object paths held changes still have to move, shared with the store's readers: a
/// held key reads as unavailable (its index and its file disagree until the move is done)
/// and a rescan leaves it alone (it would take the file still there for the object).
pub type HeldPaths = Arc<RwLock<HashSet<String>>>;

/// The held changes of one store.
pub(super) struct Held {
    changes: Vec<Change>,
    tried: Option<Instant>,
    shared: HeldPaths,
}

/// The object paths (outside `.ferry/`) `steps` move files to or from.
pub(super) fn object_paths(steps: &[Step]) -> impl Iterator<Item = &str> {
    steps.iter().filter_map(|s| match s {
        Step::MoveFrom { to: p, .. } | Step::MoveTo { from: p, .. } if !p.starts_with(META_DIR) => {
            Some(p.as_str())
        }
        _ => None,
    })
}

impl Held {
    pub fn new(shared: HeldPaths) -> Self {
        Self {
            changes: Vec::new(),
            tried: None,
            shared,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Says the paths still held to the store's readers.
    fn share(&self) {
        let paths: HashSet<String> = self
            .changes
            .iter()
            .flat_map(|c| c.paths.iter().cloned())
            .collect();
        *self.shared.write().unwrap_or_else(|p| p.into_inner()) = paths;
    }

    /// Holds the change recorded as `intent`, whose moves failed with `error`.
    pub fn hold(&mut self, intent: i64, steps: Vec<Step>, error: String) {
        let paths: HashSet<String> = object_paths(&steps).map(str::to_owned).collect();
        self.shared
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(paths.iter().cloned());
        tracing::error!(
            intent,
            ?steps,
            error,
            "a file change could not be finished; changes of its keys are refused until it is (it is tried again every second)"
        );
        self.changes.push(Change {
            intent,
            steps,
            paths,
            error,
        });
    }

    /// Why a change with `steps` must wait, if it touches a path a held change has to move.
    pub fn blocks(&self, steps: &[Step]) -> Option<String> {
        if self.changes.is_empty() {
            return None;
        }
        object_paths(steps).find_map(|p| {
            self.changes.iter().find(|c| c.paths.contains(p)).map(|c| {
                format!(
                    "an earlier change of this key could not move its file ({}); it is tried again every second",
                    c.error
                )
            })
        })
    }

    /// Tries up to [`PER_ROUND`] held changes again, the longest untried first (at most once
    /// per [`RETRY`]); returns the intents of those now finished, for the next transaction to
    /// delete.
    pub fn retry(&mut self, root: &Root) -> Vec<i64> {
        if self.changes.is_empty() || self.tried.is_some_and(|t| t.elapsed() < RETRY) {
            return Vec::new();
        }
        self.tried = Some(Instant::now());
        let n = self.changes.len().min(PER_ROUND);
        let mut done = Vec::new();
        let mut again = Vec::new();
        for mut c in self.changes.drain(..n).collect::<Vec<_>>() {
            match intent::replay(root, &c.steps) {
                Ok(()) => {
                    tracing::info!(intent = c.intent, "a held file change is finished");
                    done.push(c.intent);
                }
                Err(e) => {
                    c.error = e.to_string();
                    again.push(c);
                }
            }
        }
        self.changes.extend(again);
        if !done.is_empty() {
            self.share();
        }
        done
    }
}
