//! The store root as a directory handle, and every path below it resolved by the kernel with
//! symlinks refused (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`).
//!
//! Bucket folders are open to POSIX users, who may put a symlink where an object's file, a
//! folder of its key or the bucket folder itself was. Nothing Ferry does through a key may
//! follow it: a read would serve a file outside the store (`/etc/shadow`), a move or a delete
//! would change one. So reads of an object's file, the moves that put a file at a key's path
//! or take it away, and the folders made for a key all go through [`Root`], and an object's
//! file is opened without blocking and used only when it is a regular file (a FIFO at a key's
//! path would hang the reader, `/dev/zero` would never end).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// A regular file's inode, mtime, ctime (nanoseconds) and size, as [`Root::facts`] gives them.
pub type FileFacts = (i64, i64, i64, i64);

/// The error for a path that leads through a symlink or to something other than a regular
/// file: the store has no file there (the caller's `NotFound`).
#[derive(Debug)]
pub struct NotAFile;

impl std::fmt::Display for NotAFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a regular file inside the store (a symlink, folder or special file)")
    }
}

impl std::error::Error for NotAFile {}

fn not_a_file() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, NotAFile)
}

/// A symlink on the way (`ELOOP`), a path leaving the root (`EXDEV`) or a file where a
/// folder should be (`ENOTDIR`): nothing of the store's is there.
fn beneath_err(e: rustix::io::Errno) -> io::Error {
    match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::XDEV | rustix::io::Errno::NOTDIR => {
            not_a_file()
        }
        e => e.into(),
    }
}

/// The store's root directory, held open.
pub struct Root {
    path: PathBuf,
    fd: OwnedFd,
}

impl Root {
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            path: path.to_path_buf(),
            fd,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A directory beneath the root (`""` is the root), as a handle for `*at` calls.
    fn dir(&self, rel: &str) -> io::Result<OwnedFd> {
        plain(rel)?;
        let rel = if rel.is_empty() { "." } else { rel };
        rustix::fs::openat2(
            &self.fd,
            rel,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            BENEATH,
        )
        .map_err(beneath_err)
    }

    /// The directory holding `rel` and `rel`'s last name.
    fn parent<'a>(&self, rel: &'a str) -> io::Result<(OwnedFd, &'a str)> {
        plain(rel)?;
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        Ok((self.dir(dir)?, name))
    }

    /// Opens a regular file beneath the root for reading. A symlink anywhere on the way, a
    /// folder, a FIFO, a socket or a device is [`NotAFile`] (kind `NotFound`).
    pub fn open_file(&self, rel: &str) -> io::Result<File> {
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
        Ok(File::from(self.regular(rel, flags)?.0))
    }

    /// Opens `rel` beneath the root with `flags` and stats it; [`NotAFile`] unless it is a
    /// regular file.
    fn regular(&self, rel: &str, flags: OFlags) -> io::Result<(OwnedFd, rustix::fs::Stat)> {
        plain(rel)?;
        let fd = rustix::fs::openat2(
            &self.fd,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            BENEATH,
        )
        .map_err(beneath_err)?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(not_a_file());
        }
        Ok((fd, st))
    }

    /// The inode, modification time, change time (ns) and size of the regular file at
    /// `rel`: what tells whether it changed since it was indexed. Not a regular file, or
    /// reached through a symlink: [`NotAFile`].
    pub fn facts(&self, rel: &str) -> io::Result<FileFacts> {
        // Opened for reading (not `O_PATH`): a file the server may not read says so here
        // as it would to a GET.
        let (_, st) = self.regular(rel, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY)?;
        Ok((
            st.st_ino as i64,
            crate::store::fs::nanos(st.st_mtime, st.st_mtime_nsec as i64),
            crate::store::fs::nanos(st.st_ctime, st.st_ctime_nsec as i64),
            st.st_size,
        ))
    }

    /// Sets the modification time of the regular file at `rel` to `mtime_ns` (its access
    /// time unchanged); returns what [`Self::facts`] said of it before, and the mtime and
    /// ctime it has after.
    pub fn set_mtime(&self, rel: &str, mtime_ns: i64) -> io::Result<(FileFacts, (i64, i64))> {
        let (fd, st) = self.regular(rel, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY)?;
        let before = (
            st.st_ino as i64,
            crate::store::fs::nanos(st.st_mtime, st.st_mtime_nsec as i64),
            crate::store::fs::nanos(st.st_ctime, st.st_ctime_nsec as i64),
            st.st_size,
        );
        let stamps = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: mtime_ns.div_euclid(1_000_000_000),
                tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _,
            },
        };
        rustix::fs::futimens(&fd, &stamps)?;
        let st = rustix::fs::fstat(&fd)?;
        Ok((
            before,
            (
                crate::store::fs::nanos(st.st_mtime, st.st_mtime_nsec as i64),
                crate::store::fs::nanos(st.st_ctime, st.st_ctime_nsec as i64),
            ),
        ))
    }

    /// What is at `rel`, not following a symlink at its end (`None`: nothing, or a path that
    /// leads through a symlink or a file).
    pub fn kind(&self, rel: &str) -> io::Result<Option<FileType>> {
        let (dir, name) = match self.parent(rel) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Renames `from` to `to` (both relative), each resolved beneath the root.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (fd, fname) = self.parent(from)?;
        let (td, tname) = self.parent(to)?;
        rustix::fs::renameat(&fd, fname, &td, tname).map_err(io::Error::from)
    }

    /// Whether a file for a new version could be moved to `rel` right now, proven the short
    /// way: the folder that holds it opens beneath the root with no symlink on the way, what
    /// is at `rel` is not a folder, and the server may write in that folder. `false` means
    /// "not proven": the caller looks again, one folder at a time, to say what is wrong.
    pub fn ready_for_file(&self, rel: &str) -> bool {
        let Ok((dir, name)) = self.parent(rel) else {
            return false;
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => return false,
            // Another user's file, which a sticky folder keeps from being replaced: the long
            // way says so.
            Ok(st) if st.st_uid != rustix::process::geteuid().as_raw() => {
                let me = rustix::process::geteuid();
                if !me.is_root()
                    && rustix::fs::fstat(&dir)
                        .is_ok_and(|d| d.st_mode & 0o1000 != 0 && d.st_uid != me.as_raw())
                {
                    return false;
                }
            }
            Ok(_) | Err(rustix::io::Errno::NOENT) => {}
            Err(_) => return false,
        }
        rustix::fs::accessat(
            &dir,
            ".",
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            AtFlags::empty(),
        )
        .is_ok()
    }

    /// Makes the folders above `rel` that are missing, one at a time beneath the root (a
    /// symlink met on the way is refused, not followed).
    pub fn make_parents(&self, rel: &str) -> io::Result<()> {
        plain(rel)?;
        match rel.rsplit_once('/') {
            Some((dirs, _)) => self.make_dirs(dirs),
            None => Ok(()),
        }
    }

    /// Makes the folder `rel` and those above it that are missing, as [`Root::make_parents`]
    /// does. A file or a symlink where a folder goes is [`NotAFile`].
    pub fn make_dirs(&self, rel: &str) -> io::Result<()> {
        plain(rel)?;
        let mut at = self.dir("")?;
        for name in rel.split('/').filter(|s| !s.is_empty()) {
            match rustix::fs::mkdirat(&at, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            at = rustix::fs::openat2(
                &at,
                OsStr::new(name),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                BENEATH,
            )
            .map_err(beneath_err)?;
        }
        Ok(())
    }

    /// Removes the folder `rel` if it is empty (`DirectoryNotEmpty` if not), reached beneath
    /// the root with no symlink followed.
    pub fn remove_empty_dir(&self, rel: &str) -> io::Result<()> {
        let (dir, name) = self.parent(rel)?;
        rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR)?;
        Ok(())
    }
}

/// The folders one batch of moves goes through, each opened beneath the root once (with
/// symlinks refused) rather than once per file: a batch's files mostly go from a few temp
/// folders into a few key folders. Only what opened is kept, and a folder is looked up again
/// after any failure, so a folder removed meanwhile (a delete pruning it) is never used twice.
/// Kept for one batch only: a folder a POSIX user moves away is not followed for longer.
pub struct Dirs<'a> {
    root: &'a Root,
    open: HashMap<String, OwnedFd>,
}

/// Folders kept open at most, so a batch over many folders cannot run out of descriptors.
const MAX_OPEN_DIRS: usize = 64;

impl<'a> Dirs<'a> {
    pub fn new(root: &'a Root) -> Self {
        Self {
            root,
            open: HashMap::new(),
        }
    }

    pub fn root(&self) -> &'a Root {
        self.root
    }

    /// Opens `dir` (relative; `""` is the root) unless it is open already.
    fn ensure(&mut self, dir: &str) -> io::Result<()> {
        if !self.open.contains_key(dir) {
            let fd = self.root.dir(dir)?;
            if self.open.len() >= MAX_OPEN_DIRS {
                self.open.clear();
            }
            self.open.insert(dir.to_owned(), fd);
        }
        Ok(())
    }

    /// Whether the folder holding `rel` opens beneath the root: then the bucket's folder and
    /// every folder of the key are real folders, none a symlink.
    pub fn parent_is_dir(&mut self, rel: &str) -> bool {
        let (dir, _) = split(rel);
        self.ensure(dir).is_ok()
    }

    /// What is at `rel`, not following a symlink at its end, when its folder opens (see
    /// [`Root::kind`]).
    pub fn kind(&mut self, rel: &str) -> io::Result<Option<FileType>> {
        plain(rel)?;
        let (dir, name) = split(rel);
        match self.ensure(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
        let fd = self.open[dir].as_fd();
        match rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Renames `from` to `to` (both relative), as [`Root::rename`] does.
    pub fn rename(&mut self, from: &str, to: &str) -> io::Result<()> {
        plain(from)?;
        plain(to)?;
        let ((fdir, fname), (tdir, tname)) = (split(from), split(to));
        self.ensure(fdir)?;
        self.ensure(tdir)?;
        let r = match (self.open.get(fdir), self.open.get(tdir)) {
            (Some(f), Some(t)) => rustix::fs::renameat(f, fname, t, tname),
            // Both were just opened: only a full cache cleared in between gets here.
            _ => return self.root.rename(from, to),
        };
        r.map_err(|e| {
            self.open.remove(fdir);
            self.open.remove(tdir);
            io::Error::from(e)
        })
    }
}

/// A relative path's folder and last name.
/// Refuses a path with a `.` or `..` segment, or an empty one: `openat2` keeps a path
/// beneath the root, not beneath its bucket (`b/../c/k` is another bucket's file, `b/a//k`
/// is `b/a/k`). Keys are checked long before they get here (`ObjectKey::check_path`); this
/// holds whatever else a path is made from.
fn plain(rel: &str) -> io::Result<()> {
    if rel.is_empty() || rel == "." {
        return Ok(());
    }
    if rel
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?} is not a plain path beneath the store"),
        ));
    }
    Ok(())
}

fn split(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_are_resolved() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("a/x")).expect("mkdir");
        std::fs::create_dir_all(d.path().join("b")).expect("mkdir");
        std::fs::write(d.path().join("b/secret"), b"b's").expect("write");
        let root = Root::open(d.path()).expect("root");
        for bad in ["a/../b/secret", "a/./x", "a//x", "../x", "a/x/.."] {
            let e = root.kind(bad).expect_err(bad);
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(root.open_file(bad).is_err(), "{bad}");
        }
        assert!(root.kind("a/x").expect("kind").is_some());
        assert!(root.open_file("b/secret").is_ok());
    }

    fn setup() -> (tempfile::TempDir, tempfile::TempDir, Root) {
        let store = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(store.path().join("b/d")).expect("mkdir");
        std::fs::write(store.path().join("b/d/f"), b"inside").expect("write");
        std::fs::write(outside.path().join("secret"), b"outside").expect("write");
        let root = Root::open(store.path()).expect("open root");
        (store, outside, root)
    }

    fn is_not_a_file(e: &io::Error) -> bool {
        e.kind() == io::ErrorKind::NotFound && e.get_ref().is_some_and(|i| i.is::<NotAFile>())
    }

    #[test]
    fn reads_refuse_every_symlink_and_special_file() {
        use std::io::Read;
        let (store, outside, root) = setup();
        let mut s = String::new();
        root.open_file("b/d/f")
            .expect("a plain file opens")
            .read_to_string(&mut s)
            .expect("read");
        assert_eq!(s, "inside");
        let link = |at: &str, to: &Path| {
            std::os::unix::fs::symlink(to, store.path().join(at)).expect("symlink")
        };
        link("b/file-link", &outside.path().join("secret"));
        link("b/dir-link", outside.path());
        link("bucket-link", outside.path());
        rustix::process::umask(Mode::empty());
        rustix::fs::mknodat(
            rustix::fs::CWD,
            store.path().join("b/fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo");
        for rel in [
            "b/file-link",
            "b/dir-link/secret",
            "bucket-link/secret",
            "b/d",
            "b/fifo",
        ] {
            let e = root.open_file(rel).expect_err(rel);
            assert!(is_not_a_file(&e), "{rel}: {e}");
        }
        // `..` is refused before the kernel sees it (see `only_plain_paths_are_resolved`).
        assert!(root.open_file("b/../../etc/passwd").is_err());
    }

    #[test]
    fn moves_and_folders_never_go_through_a_symlink() {
        let (store, outside, root) = setup();
        std::os::unix::fs::symlink(outside.path(), store.path().join("b/out")).expect("symlink");
        let e = root
            .rename("b/out/secret", "b/taken")
            .expect_err("move out");
        assert!(is_not_a_file(&e), "{e}");
        let e = root.rename("b/d/f", "b/out/planted").expect_err("move in");
        assert!(is_not_a_file(&e), "{e}");
        let e = root.make_parents("b/out/x/y").expect_err("folders");
        assert!(is_not_a_file(&e), "{e}");
        assert!(!outside.path().join("x").exists());
        assert_eq!(
            std::fs::read(outside.path().join("secret")).expect("still there"),
            b"outside"
        );
        assert_eq!(root.kind("b/out").expect("kind"), Some(FileType::Symlink));
        assert_eq!(root.kind("b/out/secret").expect("kind"), None);
        root.make_parents("b/n/m/k").expect("folders");
        root.rename("b/d/f", "b/n/m/k").expect("rename");
        assert_eq!(
            std::fs::read(store.path().join("b/n/m/k")).expect("moved"),
            b"inside"
        );
    }

    #[test]
    fn folders_are_made_and_removed_beneath_the_root_only() {
        let (store, outside, root) = setup();
        std::os::unix::fs::symlink(outside.path(), store.path().join("b/out")).expect("symlink");
        root.make_dirs("b/new/er").expect("made");
        assert!(store.path().join("b/new/er").is_dir());
        // Through a symlink, or through a file: nothing is made, and it says so.
        assert!(is_not_a_file(
            &root.make_dirs("b/out/x").expect_err("symlink")
        ));
        assert!(!outside.path().join("x").exists());
        assert!(is_not_a_file(&root.make_dirs("b/d/f/x").expect_err("file")));
        assert!(root.make_dirs("b/../x").is_err());
        // Removed only when empty, and never through a symlink.
        std::fs::create_dir(outside.path().join("gone")).expect("mkdir");
        assert!(root.remove_empty_dir("b/out/gone").is_err());
        assert!(outside.path().join("gone").is_dir());
        assert!(root.remove_empty_dir("b/d").is_err());
        assert!(store.path().join("b/d/f").is_file());
        root.remove_empty_dir("b/new/er").expect("removed");
        assert!(!store.path().join("b/new/er").exists());
    }
}
