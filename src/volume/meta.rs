//! Applying kept metadata to what was written: owner, mode, extended attributes, times, in
//! that order (a chown clears setuid bits; any change moves ctime, never mtime after the
//! last step). An owner or an extended attribute (an ACL) the destination cannot set (chown
//! as a normal user, a filesystem without xattrs, no room for them) is a per-file problem,
//! reported, not fatal; an attribute not set is also recorded ([`Problems::unset`]), so the
//! snapshot's index says what the file really has and the source sends it again.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};

use super::tree::{Meta, shown};

/// What applying metadata could not do: said per file; and the extended attributes (ACLs
/// among them) not set, per path, which the snapshot's index leaves out so that the source
/// sends them again. An owner not set is said only: a destination run as an ordinary user
/// cannot give any file another owner, and trying again every iteration would copy every
/// such file every time.
#[derive(Debug, Default)]
pub struct Problems {
    pub said: Vec<String>,
    /// (path, attribute name).
    pub unset: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Problems {
    pub fn append(&mut self, other: &mut Problems) {
        self.said.append(&mut other.said);
        self.unset.append(&mut other.unset);
    }

    /// `meta` of `path` as it was applied: without the attributes that could not be set.
    pub fn applied_to(&self, path: &[u8], mut meta: Meta) -> Meta {
        for (p, name) in &self.unset {
            if p == path {
                meta.xattrs.retain(|(k, _)| k != name);
            }
        }
        meta
    }

    /// The paths that lack an attribute, each once.
    pub fn unset_paths(&self) -> Vec<Vec<u8>> {
        let paths: std::collections::BTreeSet<&Vec<u8>> =
            self.unset.iter().map(|(p, _)| p).collect();
        paths.into_iter().cloned().collect()
    }
}

fn stamps(meta: &Meta) -> Timestamps {
    let t = Timespec {
        tv_sec: meta.mtime,
        tv_nsec: meta.mtime_ns as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// The mode a file or directory is given on disk: `mode`, except that a process not run as
/// root keeps its own read permission on files and read and search permission on
/// directories (`u+r`, `u+rx`). A destination run as an ordinary user reads its snapshots
/// to build the next tree and to copy unchanged ranges of a changed file: a source folder
/// of mode 000 or 0300, or a file of mode 000 or 0200, stopped every later iteration for
/// good (probes), as rsync run as a user would not. The snapshot's index keeps the mode the
/// source has, which `promote` gives.
pub fn on_disk_mode(file_type: u32, mode: u32) -> u32 {
    if rustix::process::geteuid().is_root() {
        return mode;
    }
    match rustix::fs::FileType::from_raw_mode(file_type) {
        rustix::fs::FileType::Directory => mode | 0o500,
        rustix::fs::FileType::RegularFile => mode | 0o400,
        _ => mode,
    }
}

fn owner(meta: &Meta) -> (Option<Uid>, Option<Gid>) {
    (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)))
}

/// Applies `meta` to an open file or directory. `fresh` says it has no extended attributes
/// yet (so none need removing).
pub fn apply_fd<F: AsFd>(
    fd: F,
    path: &[u8],
    meta: &Meta,
    fresh: bool,
    problems: &mut Problems,
) -> std::io::Result<()> {
    let st = rustix::fs::fstat(&fd)?;
    if st.st_uid != meta.uid || st.st_gid != meta.gid {
        let (u, g) = owner(meta);
        if let Err(e) = rustix::fs::fchown(&fd, u, g) {
            problems.said.push(format!(
                "{}: cannot set owner {}:{}: {e}",
                shown(path),
                meta.uid,
                meta.gid
            ));
        }
    }
    let mode = on_disk_mode(st.st_mode, meta.mode);
    if (st.st_mode & 0o7777) != mode || st.st_uid != meta.uid || st.st_gid != meta.gid {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    }
    if !fresh {
        let mut names = vec![0u8; 65536];
        if let Ok(n) = rustix::fs::flistxattr(&fd, &mut names[..]) {
            for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
                if !meta.xattrs.iter().any(|(k, _)| k == name)
                    && (name.starts_with(b"user.") || name.starts_with(b"system.posix_acl"))
                {
                    let _ = rustix::fs::fremovexattr(&fd, OsStr::from_bytes(name));
                }
            }
        }
    }
    for (name, value) in &meta.xattrs {
        if let Err(e) =
            rustix::fs::fsetxattr(&fd, OsStr::from_bytes(name), value, XattrFlags::empty())
        {
            problems.said.push(format!(
                "{}: cannot set extended attribute {}: {e}",
                shown(path),
                shown(name)
            ));
            problems.unset.push((path.to_vec(), name.clone()));
        }
    }
    rustix::fs::futimens(&fd, &stamps(meta))?;
    Ok(())
}

/// Applies owner and times to a symlink (`name` in directory `dir`); its mode means nothing
/// on Linux.
pub fn apply_symlink<F: AsFd>(
    dir: F,
    name: &[u8],
    path: &[u8],
    meta: &Meta,
    problems: &mut Problems,
) -> std::io::Result<()> {
    let (u, g) = owner(meta);
    let name = OsStr::from_bytes(name);
    if let Err(e) = rustix::fs::chownat(&dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW) {
        problems.said.push(format!(
            "{}: cannot set owner {}:{}: {e}",
            shown(path),
            meta.uid,
            meta.gid
        ));
    }
    rustix::fs::utimensat(&dir, name, &stamps(meta), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}
