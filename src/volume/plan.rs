//! The source's decision, from its walk and the base (its own manifest, or the destination's
//! index when they disagree), of what each path needs: nothing, new metadata, a hardlink, a
//! clone of a renamed file, or its content read and sent.

use std::collections::{HashMap, HashSet};

use super::index::{Content, Index, Record};
use super::tree::{Found, FoundKind, Meta, parent};

/// A file whose content must be read.
#[derive(Clone, Debug)]
pub struct Job {
    pub path: Vec<u8>,
    pub found: Found,
    /// The base's record of this path, for chunk reuse or verification.
    pub base: Option<Record>,
    /// The base is the destination's index: if the content hashes the same, send nothing.
    pub verify: bool,
}

/// Changes that go after all content (they may name files written in this iteration).
#[derive(Clone, Debug)]
pub enum Late {
    Symlink {
        path: Vec<u8>,
        target: Vec<u8>,
        meta: Meta,
    },
    Link {
        path: Vec<u8>,
        to: Vec<u8>,
    },
    Clone {
        path: Vec<u8>,
        from: Vec<u8>,
        meta: Meta,
    },
    Meta {
        path: Vec<u8>,
        meta: Meta,
    },
}

#[derive(Debug, Default)]
pub struct Plan {
    pub deletes: Vec<Vec<u8>>,
    pub dirs: Vec<(Vec<u8>, Meta)>,
    pub small: Vec<Job>,
    pub large: Vec<Job>,
    pub late: Vec<Late>,
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

/// `trusted` says `base` is the source's own manifest of the destination's latest snapshot
/// (so size, mtime, inode and ctime decide); otherwise equal sizes are verified by hash.
/// `already` names paths whose base record came from an interrupted iteration: they count as
/// delivered when size and mtime still match.
pub fn plan(found: &[Found], base: &Index, trusted: bool, already: &HashSet<Vec<u8>>) -> Plan {
    let mut p = Plan::default();
    let here: HashSet<&[u8]> = found.iter().map(|f| &f.path[..]).collect();
    // Deletions: base paths gone from the tree, topmost only.
    let mut gone_files: HashMap<u64, (&[u8], &Record)> = HashMap::new();
    for (path, rec) in &base.entries {
        if here.contains(&path[..]) {
            continue;
        }
        if trusted && rec.ino != 0 && matches!(rec.content, Content::File { .. }) {
            gone_files.insert(rec.ino, (&path[..], rec));
        }
        let par = parent(path);
        let parent_gone = !par.is_empty() && !here.contains(par) && base.entries.contains_key(par);
        if !parent_gone {
            p.deletes.push(path.clone());
        }
    }
    let mut leaders: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let mut sent_leaders: HashSet<Vec<u8>> = HashSet::new();
    for f in found {
        let old = base.entries.get(&f.path);
        match &f.kind {
            FoundKind::Special => p.specials.push(f.path.clone()),
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
                    _ => p.late.push(Late::Symlink {
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
                            p.late.push(Late::Link {
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
    already: &HashSet<Vec<u8>>,
    gone: &HashMap<u64, (&[u8], &Record)>,
) -> bool {
    let job = |base: Option<&Record>, verify: bool| Job {
        path: f.path.clone(),
        found: f.clone(),
        base: base.cloned(),
        verify,
    };
    let push = |p: &mut Plan, j: Job| {
        if f.size >= super::index::CHUNKED_FROM {
            p.large.push(j)
        } else {
            p.small.push(j)
        }
    };
    if already.contains(&f.path)
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
        let mut rec = r.clone();
        rec.ino = f.ino;
        rec.ctime = f.ctime;
        rec.meta = f.meta.clone();
        p.keep.push((f.path.clone(), rec));
        p.resumed += 1;
        if r.meta != f.meta {
            p.late.push(Late::Meta {
                path: f.path.clone(),
                meta: f.meta.clone(),
            });
        }
        // Counts as sent: hardlinks to it are made again.
        return false;
    }
    if let Some(
        r @ Record {
            content: Content::File { size, .. },
            ..
        },
    ) = old
    {
        if trusted
            && *size == f.size
            && r.meta.mtime == f.meta.mtime
            && r.meta.mtime_ns == f.meta.mtime_ns
            && r.ino == f.ino
        {
            let mut rec = r.clone();
            rec.ctime = f.ctime;
            rec.meta = f.meta.clone();
            p.keep.push((f.path.clone(), rec));
            if r.meta != f.meta {
                p.late.push(Late::Meta {
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
    } else if trusted
        && let Some((from, r)) = gone.get(&f.ino)
        && let Content::File { size, .. } = r.content
        && size == f.size
        && r.meta.mtime == f.meta.mtime
        && r.meta.mtime_ns == f.meta.mtime_ns
    {
        p.late.push(Late::Clone {
            path: f.path.clone(),
            from: from.to_vec(),
            meta: f.meta.clone(),
        });
        let mut rec = (*r).clone();
        rec.meta = f.meta.clone();
        rec.ctime = f.ctime;
        p.keep.push((f.path.clone(), rec));
        return false;
    }
    push(p, job(old, false));
    false
}
