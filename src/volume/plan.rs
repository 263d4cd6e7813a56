//! The source's decision, from its walk and the base (its own manifest, or the destination's
//! index when they disagree), of what each path needs: nothing, new metadata, a hardlink, a
//! clone of a renamed file, or its content read and sent.

use std::collections::{HashMap, HashSet};

use super::index::{Content, Index, Record};
use super::tree::{Found, FoundKind, Meta};
use super::wire::Msg;

/// A file whose content must be read.
#[derive(Clone, Debug)]
pub struct Job {
    pub path: Vec<u8>,
    pub found: Found,
    /// The base's record of this path, for chunk reuse or verification.
    pub base: Option<Record>,
    /// The base is the destination's index: if the content hashes the same, send nothing.
    pub verify: bool,
    /// A clone of the file taken for this iteration (see `image`), read instead of the file.
    pub image: Option<std::path::PathBuf>,
    /// The chunks an interrupted iteration had already delivered of this file.
    pub partial: Option<Vec<super::index::Chunk>>,
    /// A file that vanished from the base with this file's inode, size and mtime: if the
    /// content hashes the same (`base` is that file's record) the destination clones it,
    /// else this file is sent. An inode number alone proves nothing: a new file may reuse the
    /// number of one just deleted.
    pub renamed_from: Option<Vec<u8>>,
    /// With `verify`, the record to compare with when it is not `base`: what an interrupted
    /// iteration delivered, while `base` stays the last snapshot's version the destination
    /// copies ranges from.
    pub check: Option<Record>,
}

impl Job {
    /// The record a verify compares the file with.
    pub fn compared(&self) -> Option<&Record> {
        self.check.as_ref().or(self.base.as_ref())
    }
}

/// Paths an interrupted iteration delivered (their journaled records are in the base), each
/// with the last snapshot's record of it, if any: the version the destination copies from.
pub type Already = HashMap<Vec<u8>, Option<Record>>;

#[derive(Debug, Default)]
pub struct Plan {
    pub deletes: Vec<Vec<u8>>,
    pub dirs: Vec<(Vec<u8>, Meta)>,
    pub small: Vec<Job>,
    pub large: Vec<Job>,
    /// Changes that go after all content (they may name files written in this iteration):
    /// symlinks, hardlinks, clones of renamed files, metadata-only changes.
    pub late: Vec<Msg>,
    /// Records of the new manifest known without reading (unchanged entries, clones, metadata).
    pub keep: Vec<(Vec<u8>, Record)>,
    /// Hardlink followers and their leaders: the follower's record is the leader's.
    pub followers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Devices, FIFOs and sockets: not copied.
    pub specials: Vec<Vec<u8>>,
    pub files: u64,
    pub bytes: u64,
    /// Files kept because an interrupted iteration had delivered them.
    pub resumed: u64,
}

fn record(content: Content, f: &Found) -> Record {
    Record {
        content,
        meta: f.meta.clone(),
        ino: f.ino,
        ctime: f.ctime,
    }
}

/// Whether `path` is one of `unreadable` or lies below one (`""` is the root: everything).
fn under_any(path: &[u8], unreadable: &[Vec<u8>]) -> bool {
    unreadable.iter().any(|u| {
        u.is_empty() || (path.starts_with(u) && (path.len() == u.len() || path[u.len()] == b'/'))
    })
}

/// `trusted` says `base` is the source's own manifest of the destination's latest snapshot
/// (so size, mtime, inode and ctime decide); otherwise equal sizes are verified by hash.
/// `already` names paths whose base record came from an interrupted iteration: when size and
/// mtime still match they are read and compared by hash (sent only if the content differs),
/// and sent against the last snapshot's version when not. `unreadable` names what the walk could not
/// list or stat: what the base has there is kept as it is, never deleted (as rsync skips
/// deletions after an I/O error), since not seeing an entry does not mean it is gone.
pub fn plan(
    found: &[Found],
    base: &Index,
    trusted: bool,
    already: &Already,
    unreadable: &[Vec<u8>],
) -> Plan {
    let mut p = Plan::default();
    // Both lists are sorted by path bytes: one merge finds what is gone, a second pairs each
    // entry with its base record (no lookups).
    let mut gone_files: HashMap<u64, (&[u8], &Record)> = HashMap::new();
    let mut deleted: HashSet<&[u8]> = HashSet::new();
    {
        let mut it = found.iter().peekable();
        for (path, rec) in &base.entries {
            while it.next_if(|f| f.path < *path).is_some() {}
            if let Some(f) = it.peek().filter(|f| f.path == *path) {
                // Another file at the path now (a log rotated, two files swapped): the old
                // one may have moved to another path, where it goes as a clone too.
                if trusted
                    && rec.ino != 0
                    && f.ino != rec.ino
                    && matches!(rec.content, Content::File { .. })
                {
                    gone_files.insert(rec.ino, (&path[..], rec));
                }
                continue;
            }
            if under_any(path, unreadable) {
                p.keep.push((path.clone(), rec.clone()));
                continue;
            }
            if trusted && rec.ino != 0 && matches!(rec.content, Content::File { .. }) {
                gone_files.insert(rec.ino, (&path[..], rec));
            }
            // Topmost only: a deleted directory takes what it held with it.
            let mut anc: &[u8] = path;
            let mut under_deleted = false;
            while let Some(i) = anc.iter().rposition(|b| *b == b'/') {
                anc = &anc[..i];
                if deleted.contains(anc) {
                    under_deleted = true;
                    break;
                }
            }
            if !under_deleted {
                p.deletes.push(path.clone());
                deleted.insert(&path[..]);
            }
        }
    }
    let mut leaders: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut sent_leaders: HashSet<Vec<u8>> = HashSet::new();
    let mut base_it = base.entries.iter().peekable();
    for f in found {
        while base_it.next_if(|(k, _)| **k < f.path).is_some() {}
        let old = base_it.next_if(|(k, _)| **k == f.path).map(|(_, r)| r);
        match &f.kind {
            FoundKind::Special => {
                // Not replicated; but what the base held at this path (a file, a folder)
                // is no longer the source's, and must not stay in the replica as if it were.
                if old.is_some() {
                    p.deletes.push(f.path.clone());
                }
                p.specials.push(f.path.clone())
            }
            FoundKind::Dir => {
                match old {
                    Some(r) if r.content == Content::Dir && r.meta == f.meta => {}
                    _ => p.dirs.push((f.path.clone(), f.meta.clone())),
                }
                p.keep.push((f.path.clone(), record(Content::Dir, f)));
            }
            FoundKind::Symlink(target) => {
                let content = Content::Symlink(target.clone());
                match old {
                    Some(r) if r.content == content && r.meta == f.meta => {}
                    _ => p.late.push(Msg::Symlink {
                        path: f.path.clone(),
                        target: target.clone(),
                        meta: f.meta.clone(),
                    }),
                }
                p.keep.push((f.path.clone(), record(content, f)));
            }
            FoundKind::File => {
                p.files += 1;
                p.bytes += f.size;
                if f.nlink > 1 {
                    if let Some(leader) = leaders.get(&(f.dev, f.ino)) {
                        let same = trusted
                            && !sent_leaders.contains(leader)
                            && matches!(old, Some(r) if r.ino == f.ino
                                && matches!(r.content, Content::File { .. }));
                        if !same {
                            p.late.push(Msg::Link {
                                path: f.path.clone(),
                                to: leader.clone(),
                            });
                        }
                        p.followers.push((f.path.clone(), leader.clone()));
                        continue;
                    }
                    leaders.insert((f.dev, f.ino), f.path.clone());
                }
                if !file(&mut p, f, old, trusted, already, &gone_files) {
                    sent_leaders.insert(f.path.clone());
                }
            }
        }
    }
    p
}

/// Plans one regular file; returns true when nothing at all is sent for it.
fn file(
    p: &mut Plan,
    f: &Found,
    old: Option<&Record>,
    trusted: bool,
    already: &Already,
    gone: &HashMap<u64, (&[u8], &Record)>,
) -> bool {
    let job = |base: Option<&Record>, verify: bool| Job {
        path: f.path.clone(),
        found: f.clone(),
        base: base.cloned(),
        verify,
        image: None,
        partial: None,
        renamed_from: None,
        check: None,
    };
    let push = |p: &mut Plan, j: Job| {
        if f.size >= super::index::CHUNKED_FROM {
            p.large.push(j)
        } else {
            p.small.push(j)
        }
    };
    if already.contains_key(&f.path)
        && let Some(
            r @ Record {
                content: Content::File { size, .. },
                ..
            },
        ) = old
        && *size == f.size
        && r.meta.mtime == f.meta.mtime
        && r.meta.mtime_ns == f.meta.mtime_ns
    {
        // Size and mtime say nothing of a file replaced since by one of the same size and
        // mtime (`cp -p`, `tar x`, `rsync -t` into a temp name, then `mv`), and what the
        // interrupted iteration recorded has no change time to tell: read and compared by
        // hash, so only a content change is sent again.
        p.resumed += 1;
        let snapshot = already.get(&f.path).and_then(Option::as_ref);
        push(
            p,
            Job {
                check: Some(r.clone()),
                ..job(snapshot, true)
            },
        );
        return false;
    }
    if let Some(snapshot) = already.get(&f.path) {
        // Changed since it was delivered: the destination writes it afresh with ranges of
        // the last snapshot's version, so its chunks are the ones to refer to.
        push(p, job(snapshot.as_ref(), false));
        return false;
    }
    if let Some(
        r @ Record {
            content: Content::File { size, .. },
            ..
        },
    ) = old
    {
        let same_file = *size == f.size
            && r.meta.mtime == f.meta.mtime
            && r.meta.mtime_ns == f.meta.mtime_ns
            && r.ino == f.ino;
        // A change time that moved with size, mtime and inode kept: a metadata change, or
        // content rewritten in place with its mtime put back (`touch -r`, a restore). Read
        // and compared by hash: only a content change is sent.
        if trusted && same_file && r.ctime != f.ctime {
            push(p, job(Some(r), true));
            return false;
        }
        if trusted && same_file {
            let mut rec = r.clone();
            rec.ctime = f.ctime;
            rec.meta = f.meta.clone();
            p.keep.push((f.path.clone(), rec));
            if r.meta != f.meta {
                p.late.push(Msg::Meta {
                    path: f.path.clone(),
                    meta: f.meta.clone(),
                });
                return false;
            }
            return true;
        }
        if !trusted && *size == f.size {
            push(p, job(Some(r), true));
            return false;
        }
    }
    // A new path, or one whose file is another inode than the base's: the file the base
    // knew under another path, moved here (renamed, or its old name reused since).
    if trusted
        && old.is_none_or(|o| o.ino != f.ino)
        && let Some((from, r)) = gone.get(&f.ino)
        && *from != &f.path[..]
        && let Content::File { size, .. } = r.content
        && size == f.size
        && r.meta.mtime == f.meta.mtime
        && r.meta.mtime_ns == f.meta.mtime_ns
    {
        let mut j = job(Some(r), true);
        j.renamed_from = Some(from.to_vec());
        push(p, j);
        return false;
    }
    push(p, job(old, false));
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::index::Index;

    fn found(path: &str, kind: FoundKind) -> Found {
        Found {
            path: path.as_bytes().to_vec(),
            kind,
            size: 0,
            meta: Meta {
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: 1,
                mtime_ns: 0,
                xattrs: Vec::new(),
            },
            dev: 1,
            ino: 0,
            nlink: 1,
            ctime: (1, 0),
            xattrs_pending: false,
        }
    }

    /// A base index of these paths: folders, and empty files.
    fn base_of(entries: &[(&str, FoundKind)]) -> Index {
        let mut base = Index::default();
        for (p, k) in entries {
            let f = found(p, k.clone());
            let content = match f.kind {
                FoundKind::Dir => Content::Dir,
                _ => Content::File {
                    size: 0,
                    hash: [0; 32],
                    chunks: Vec::new(),
                },
            };
            base.entries.insert(f.path.clone(), record(content, &f));
        }
        base
    }

    #[test]
    fn deletions_are_topmost_even_with_siblings_between() {
        let base = base_of(&[
            ("a", FoundKind::Dir),
            ("a-b", FoundKind::Dir),
            ("a/x", FoundKind::Dir),
            ("a/x/y", FoundKind::Dir),
            ("keep", FoundKind::Dir),
            ("z", FoundKind::Dir),
        ]);
        let now = vec![found("keep", FoundKind::Dir)];
        let p = plan(&now, &base, true, &Already::new(), &[]);
        let deletes: Vec<String> = p
            .deletes
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect();
        assert_eq!(deletes, ["a", "a-b", "z"]);
        assert!(p.dirs.is_empty(), "keep is unchanged");
    }

    #[test]
    fn what_the_walk_could_not_read_is_kept_not_deleted() {
        let base = base_of(&[
            ("locked", FoundKind::Dir),
            ("locked/a", FoundKind::File),
            ("locked/deep", FoundKind::Dir),
            ("locked/deep/b", FoundKind::File),
            ("locked-not", FoundKind::File),
            ("nox", FoundKind::Dir),
            ("nox/f", FoundKind::File),
        ]);
        // "locked" could not be listed; "nox" could, but "nox/f" could not be stat'ed.
        let now = vec![
            found("locked", FoundKind::Dir),
            found("nox", FoundKind::Dir),
        ];
        let unreadable = [b"locked".to_vec(), b"nox/f".to_vec()];
        let p = plan(&now, &base, true, &Already::new(), &unreadable);
        let deletes: Vec<String> = p
            .deletes
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect();
        assert_eq!(deletes, ["locked-not"]);
        let kept: HashSet<&[u8]> = p.keep.iter().map(|(k, _)| &k[..]).collect();
        for k in ["locked/a", "locked/deep", "locked/deep/b", "nox/f"] {
            assert!(kept.contains(k.as_bytes()), "{k} is not kept: {kept:?}");
        }
    }

    /// Size, mtime and inode kept but the change time moved (probe 14: rewritten in place,
    /// mtime restored): the file is read and compared by hash, not taken as unchanged.
    #[test]
    fn a_moved_change_time_has_the_content_checked() {
        let base = base_of(&[("f", FoundKind::File)]);
        let f = found("f", FoundKind::File);
        let p = plan(std::slice::from_ref(&f), &base, true, &Already::new(), &[]);
        assert!(
            p.small.is_empty() && p.large.is_empty(),
            "unchanged: nothing to read"
        );
        let mut touched = f;
        touched.ctime = (2, 0);
        let p = plan(&[touched], &base, true, &Already::new(), &[]);
        assert_eq!(p.small.len(), 1, "the file is read again");
        assert!(
            p.small[0].verify,
            "and compared by hash before anything is sent"
        );
    }

    /// A file (or folder) that became a FIFO, socket or device at the source is deleted
    /// from the replica (probe 17: the old bytes stayed there for good).
    #[test]
    fn a_path_that_became_a_special_file_is_deleted() {
        let base = base_of(&[("f", FoundKind::File), ("d", FoundKind::Dir)]);
        let now = vec![
            found("d", FoundKind::Special),
            found("f", FoundKind::Special),
            found("new", FoundKind::Special),
        ];
        let p = plan(&now, &base, true, &Already::new(), &[]);
        let deletes: Vec<String> = p
            .deletes
            .iter()
            .map(|d| String::from_utf8_lossy(d).into_owned())
            .collect();
        assert_eq!(deletes, ["d", "f"]);
        assert_eq!(p.specials.len(), 3);
        assert!(p.keep.iter().all(|(k, _)| k != b"f" && k != b"d"));
    }

    /// A new file that got a deleted file's inode number (and its size and mtime) is no
    /// rename until its content says so.
    #[test]
    fn a_reused_inode_is_a_rename_only_once_the_content_agrees() {
        let mut base = Index::default();
        let mut old = found("old", FoundKind::File);
        old.ino = 42;
        old.size = 16;
        let content = Content::File {
            size: 16,
            hash: [7; 32],
            chunks: Vec::new(),
        };
        base.entries.insert(old.path.clone(), record(content, &old));
        let mut new = old.clone();
        new.path = b"new".to_vec();
        let p = plan(&[new], &base, true, &Already::new(), &[]);
        assert!(
            !p.late.iter().any(|m| matches!(m, Msg::Clone { .. })),
            "cloned on the inode number alone: {:?}",
            p.late
        );
        assert_eq!(p.small.len(), 1, "new is read");
        let j = &p.small[0];
        assert!(j.verify, "and compared with old's content");
        assert_eq!(j.renamed_from.as_deref(), Some(&b"old"[..]));
        assert_eq!(p.deletes, [b"old".to_vec()]);
    }

    /// A file renamed and its old name given to a new file (a log rotated), and two files
    /// swapped: each moved file is a rename (a clone once its content agrees), not sent
    /// whole, as the docs promise; the new file at the old name is read and sent.
    #[test]
    fn a_rename_whose_old_name_is_reused_is_still_a_rename() {
        let file = |path: &str, ino: u64, size: u64| {
            let mut f = found(path, FoundKind::File);
            f.ino = ino;
            f.size = size;
            f
        };
        let mut base = Index::default();
        for f in [file("log", 1, 100), file("x", 2, 200), file("y", 3, 300)] {
            let content = Content::File {
                size: f.size,
                hash: [f.ino as u8; 32],
                chunks: Vec::new(),
            };
            base.entries.insert(f.path.clone(), record(content, &f));
        }
        let mut renamed = file("log.1", 1, 100);
        renamed.meta = base.entries[&b"log".to_vec()].meta.clone();
        let now = [
            file("log", 9, 5),
            renamed,
            file("x", 3, 300),
            file("y", 2, 200),
        ];
        let p = plan(&now, &base, true, &Already::new(), &[]);
        let from = |path: &str| {
            p.small
                .iter()
                .find(|j| j.path == path.as_bytes())
                .map(|j| j.renamed_from.clone())
        };
        assert_eq!(from("log.1"), Some(Some(b"log".to_vec())));
        assert_eq!(from("x"), Some(Some(b"y".to_vec())));
        assert_eq!(from("y"), Some(Some(b"x".to_vec())));
        assert_eq!(from("log"), Some(None), "the new log is sent");
        assert!(p.deletes.is_empty(), "{:?}", p.deletes);
    }
}
