//! Crash-safe changes of files: the *intent* protocol of the fs store.
//!
//! A mutation first writes new bytes to a unique temp file (fsynced), then, in one index
//! transaction, records the new index state together with an intent: the list of file moves
//! that make the files agree with it. Only then are the moves performed (each followed by an
//! fsync of the directories involved), and the intent deleted. After a crash, start-up replays
//! every remaining intent. Each step can tell whether it already happened, because one side of
//! every move is a unique name nobody else uses:
//!
//! - [`Step::MoveFrom`]: move a unique file to its place (done once the unique file is gone);
//! - [`Step::MoveTo`]: move a file away to a unique name (done once the unique name exists);
//! - [`Step::Remove`]: delete a unique file (done once it is gone).
//!
//! So the key path is only ever replaced by an atomic `rename`, and a reader sees the old
//! bytes or the new ones, never a mix.
//!
//! A step's own check is not enough on a replay of an intent that had *finished* (a crash
//! between the moves and the deletion of the intent): after `MoveTo(key → u)`,
//! `MoveFrom(tmp → key)`, `Remove(u)` all ran, `u` is gone again and `key` holds the new
//! bytes, so `MoveTo` alone would think it never ran and move the new bytes away. Steps run
//! in order and stop at the first failure, so [`replay`] skips every step up to the last one
//! that is *provably* done (a `MoveFrom` whose unique file is gone, a `MoveTo` whose unique
//! name exists) and runs the rest with their own checks.

use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;
use serde::{Deserialize, Serialize};

use super::confine::{Dirs, Root};

/// Paths are relative to the store root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step {
    MoveFrom {
        unique: String,
        to: String,
    },
    MoveTo {
        from: String,
        unique: String,
    },
    Remove {
        unique: String,
    },
    /// Remove a directory tree below `.ferry/` (an upload's parts).
    RemoveDir {
        unique: String,
    },
}

fn exists(p: &Path) -> io::Result<bool> {
    match std::fs::symlink_metadata(p) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// fsyncs a directory so a rename or unlink in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Replays an intent found at start-up, which may have run partly or completely.
pub fn replay(root: &Root, steps: &[Step]) -> io::Result<()> {
    let mut first_undone = 0;
    for (i, step) in steps.iter().enumerate().rev() {
        let proven = match step {
            Step::MoveFrom { unique, .. } => !exists(&root.path().join(unique))?,
            Step::MoveTo { unique, .. } => exists(&root.path().join(unique))?,
            Step::Remove { .. } | Step::RemoveDir { .. } => false,
        };
        if proven {
            first_undone = i + 1;
            break;
        }
    }
    run(root, &steps[first_undone..], true)
}

/// Performs the steps in order, skipping the ones already done, then fsyncs the directories
/// they changed unless `sync_dirs` is false (the caller makes them durable with a `syncfs`
/// before the intent is deleted). Key paths are resolved beneath the root with symlinks
/// refused (see [`super::confine`]). Blocking.
pub fn run(root: &Root, steps: &[Step], sync_dirs: bool) -> io::Result<()> {
    run_with(&mut Dirs::new(root), steps, sync_dirs)
}

/// [`run`] with the folders of a batch kept open across its steps (see [`Dirs`]).
pub fn run_with(dirs: &mut Dirs, steps: &[Step], sync_dirs: bool) -> io::Result<()> {
    let root = dirs.root();
    let at = |rel: &str| root.path().join(rel);
    let mut dirty: Vec<PathBuf> = Vec::new();
    for step in steps {
        match step {
            Step::MoveFrom { unique, to } => {
                let (u, t) = (at(unique), at(to));
                // Usually the target's directory is there: try the rename first, and tell
                // "already moved" from "no directory" only when it fails.
                let moved = match dirs.rename(unique, to) {
                    Ok(()) => true,
                    // Directories (and nothing else) where the file goes: made for a write
                    // below this key that started meanwhile and will be refused (its parent is
                    // this file).
                    Err(e)
                        if matches!(root.kind(to), Ok(Some(FileType::Directory)))
                            && remove_empty_dirs(&t) =>
                    {
                        root.rename(unique, to).map_err(|_| e)?;
                        true
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        if exists(&u)? {
                            // The key's folders are made here, by the one thread that moves
                            // files into keys' paths. A delete's pruning of emptied folders may
                            // race it: make them again a few times.
                            let mut tries = 0;
                            loop {
                                root.make_parents(to)?;
                                match root.rename(unique, to) {
                                    Ok(()) => break,
                                    Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => {
                                        tries += 1;
                                    }
                                    Err(e) => return Err(e),
                                }
                            }
                            // New folders' entries must be durable with the file.
                            let mut up = t.parent();
                            while let Some(d) = up.and_then(Path::parent) {
                                if !d.starts_with(root.path()) || d == root.path() {
                                    break;
                                }
                                dirty.push(d.to_path_buf());
                                up = Some(d);
                            }
                            true
                        } else {
                            false
                        }
                    }
                    Err(e) => return Err(e),
                };
                if moved {
                    dirty.push(parent(&u));
                    dirty.push(parent(&t));
                }
            }
            Step::MoveTo { from, unique } => {
                let (f, u) = (at(from), at(unique));
                // Only a file (or a symlink, moved as itself) is an object's: a folder a POSIX
                // user made where the file was holds their files, which a delete or an
                // overwrite of the key must not take away.
                let movable = matches!(
                    root.kind(from)?,
                    Some(FileType::RegularFile | FileType::Symlink)
                );
                if !exists(&u)? && movable {
                    if let Some(p) = u.parent() {
                        std::fs::create_dir_all(p)?;
                    }
                    root.rename(from, unique)?;
                    dirty.push(parent(&f));
                    dirty.push(parent(&u));
                }
            }
            Step::Remove { unique } => {
                let u = at(unique);
                match std::fs::remove_file(&u) {
                    Ok(()) => dirty.push(parent(&u)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Step::RemoveDir { unique } => {
                let u = at(unique);
                match std::fs::remove_dir_all(&u) {
                    Ok(()) => dirty.push(parent(&u)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    // Entries leaving tmp/ or trash/ need no durability: both are emptied at start-up.
    let scratch = [at(".ferry/tmp"), at(".ferry/trash")];
    if !sync_dirs {
        return Ok(());
    }
    dirty.retain(|d| !scratch.iter().any(|s| d.starts_with(s)));
    dirty.sort();
    dirty.dedup();
    for d in dirty {
        sync_existing(&d)?;
    }
    Ok(())
}

/// fsyncs `dir`, or, if it is gone (a delete emptied it and it was pruned) or is now a file
/// (another key took its name), the nearest directory above it, which holds that change.
pub(super) fn sync_existing(dir: &Path) -> io::Result<()> {
    let mut cur = dir;
    loop {
        match sync_dir(cur) {
            Ok(()) => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                cur = match cur.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => return Err(e),
                };
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `dir` holds nothing but directories, all the way down.
pub(super) fn only_dirs(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.into_iter().all(|entry| {
        entry.is_ok_and(|e| e.file_type().is_ok_and(|t| t.is_dir()) && only_dirs(&e.path()))
    })
}

/// Removes `dir` if it holds nothing but directories, all the way down; whether it is gone.
pub(super) fn remove_empty_dirs(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    for entry in entries {
        let Ok(entry) = entry else { return false };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_dir || !remove_empty_dirs(&entry.path()) {
            return false;
        }
    }
    std::fs::remove_dir(dir).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps() -> Vec<Step> {
        vec![
            Step::MoveTo {
                from: "b/key".into(),
                unique: "trash/u".into(),
            },
            Step::MoveFrom {
                unique: "tmp/t".into(),
                to: "b/key".into(),
            },
            Step::Remove {
                unique: "trash/u".into(),
            },
        ]
    }

    fn setup() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        for sub in ["b", "tmp", "trash"] {
            std::fs::create_dir_all(d.path().join(sub)).expect("mkdir");
        }
        std::fs::write(d.path().join("b/key"), b"old").expect("write");
        std::fs::write(d.path().join("tmp/t"), b"new").expect("write");
        d
    }

    fn root(d: &tempfile::TempDir) -> Root {
        Root::open(d.path()).expect("open root")
    }

    fn key(d: &tempfile::TempDir) -> Vec<u8> {
        std::fs::read(d.path().join("b/key")).expect("read key")
    }

    #[test]
    fn replaying_a_finished_intent_keeps_the_new_bytes() {
        let d = setup();
        run(&root(&d), &steps(), true).expect("run");
        assert_eq!(key(&d), b"new");
        replay(&root(&d), &steps()).expect("replay");
        assert_eq!(key(&d), b"new", "a replay must not move the new bytes away");
        assert!(!d.path().join("trash/u").exists());
    }

    #[test]
    fn replay_finishes_an_intent_at_every_point() {
        let all = steps();
        for done in 0..=all.len() {
            let d = setup();
            run(&root(&d), &all[..done], true).expect("partial run");
            replay(&root(&d), &all).expect("replay");
            assert_eq!(key(&d), b"new", "after {done} steps had run");
            assert!(!d.path().join("trash/u").exists(), "after {done} steps");
            assert!(!d.path().join("tmp/t").exists(), "after {done} steps");
        }
    }
}
