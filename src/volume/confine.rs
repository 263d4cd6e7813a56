//! Every path the destination writes is resolved by the kernel beneath the staging root with
//! symlinks refused (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), after a lexical
//! check: a stream cannot reach outside the tree with `..`, an absolute path, or a symlink it
//! planted earlier. A destination that is not root gives itself write access to a
//! read-only folder of its own before writing in it (as rsync does); the folder's metadata is
//! set again at the end of the iteration, since writing in it touches it.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, anyhow};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

use super::tree::{check_path, parent, shown};

/// A handle on the staging root that hands out parent directories of checked paths.
pub struct Confined {
    root: Arc<OwnedFd>,
    /// Bumped whenever a directory may have been replaced: cached handles are then stale.
    generation: Arc<AtomicU64>,
    cache: Option<(u64, Vec<u8>, OwnedFd)>,
}

impl Confined {
    pub fn open(root: &std::path::Path) -> anyhow::Result<Confined> {
        let fd = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("cannot open {}", root.display()))?;
        Ok(Confined {
            root: Arc::new(fd),
            generation: Arc::new(AtomicU64::new(0)),
            cache: None,
        })
    }

    /// Another handle on the same root, sharing the staleness counter.
    pub fn share(&self) -> Confined {
        Confined {
            root: self.root.clone(),
            generation: self.generation.clone(),
            cache: None,
        }
    }

    /// Marks every cached directory handle stale.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Opens a directory beneath the root (the root itself for an empty path).
    pub fn dir(&self, rel: &[u8]) -> anyhow::Result<OwnedFd> {
        let p: &[u8] = if rel.is_empty() { b"." } else { rel };
        rustix::fs::openat2(
            &*self.root,
            OsStr::from_bytes(p),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| anyhow!("{}: not a directory inside the tree: {e}", shown(rel)))
    }

    /// Opens a directory beneath the root for reading and changing its metadata (`dir`'s
    /// handles only name a place).
    pub fn open_dir(&self, rel: &[u8]) -> anyhow::Result<OwnedFd> {
        let p: &[u8] = if rel.is_empty() { b"." } else { rel };
        rustix::fs::openat2(
            &*self.root,
            OsStr::from_bytes(p),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|e| anyhow!("{}: not a directory inside the tree: {e}", shown(rel)))
    }

    /// Checks `path` and returns its parent directory and final name.
    pub fn parent<'p>(&mut self, path: &'p [u8]) -> anyhow::Result<(&OwnedFd, &'p [u8])> {
        check_path(path).map_err(|e| anyhow!("refused {e}"))?;
        let dir = parent(path);
        let name = if dir.is_empty() {
            path
        } else {
            &path[dir.len() + 1..]
        };
        let generation = self.generation.load(Ordering::SeqCst);
        let fresh = matches!(&self.cache, Some((g, d, _)) if *g == generation && d == dir);
        if !fresh {
            let fd = self.dir(dir)?;
            self.writable(dir, &fd)?;
            self.cache = Some((generation, dir.to_vec(), fd));
        }
        let Some((_, _, fd)) = &self.cache else {
            unreachable!("cache filled above")
        };
        Ok((fd, name))
    }
}

impl Confined {
    /// Makes the folder `rel` (open as `fd`) writable and searchable by its owner when that
    /// is this process and it is not (a 0555 folder of the source's); root writes anyway.
    fn writable(&self, rel: &[u8], fd: &OwnedFd) -> anyhow::Result<()> {
        let me = rustix::process::geteuid();
        if me.is_root() {
            return Ok(());
        }
        let st = rustix::fs::fstat(fd)?;
        if st.st_uid != me.as_raw() || st.st_mode & 0o300 == 0o300 {
            return Ok(());
        }
        let p: &[u8] = if rel.is_empty() { b"." } else { rel };
        let dir = rustix::fs::openat2(
            &*self.root,
            OsStr::from_bytes(p),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )?;
        rustix::fs::fchmod(&dir, Mode::from_raw_mode((st.st_mode & 0o7777) | 0o300))
            .with_context(|| format!("cannot make {} writable", shown(rel)))
    }
}

/// What is at `name` in `dir`, not following a symlink.
pub fn kind_at(dir: &OwnedFd, name: &[u8]) -> std::io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Removes whatever is at `name` in `dir` (a directory with everything in it). `full` is the
/// same entry as a path, used for directory trees (std's removal does not follow symlinks).
pub fn clear(dir: &OwnedFd, name: &[u8], full: &std::path::Path) -> anyhow::Result<()> {
    match kind_at(dir, name)? {
        None => Ok(()),
        Some(FileType::Directory) => super::snapshot::remove_tree(full),
        Some(_) => rustix::fs::unlinkat(dir, OsStr::from_bytes(name), AtFlags::empty())
            .with_context(|| format!("cannot remove {}", full.display())),
    }
}
