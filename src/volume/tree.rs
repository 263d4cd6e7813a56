//! What a tree is made of, as both sides see it: relative byte paths (validated so nothing
//! leaves the tree), file metadata as `rsync -aAX` keeps it, and the parallel stat walk of the
//! source.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use serde::{Deserialize, Serialize};

/// The directory Ferry keeps its own state in, never replicated from a source's top level.
pub const STATE_DIR: &str = ".ferry";

/// Metadata kept for every entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Permission bits including setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_ns: u32,
    /// Extended attributes kept (name, value), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Which extended attributes travel.
#[derive(Clone, Copy, Debug, Default)]
pub struct XattrPolicy {
    /// `security.*` (e.g. SELinux labels).
    pub security: bool,
    /// `trusted.*` (needs CAP_SYS_ADMIN on both sides).
    pub trusted: bool,
}

impl XattrPolicy {
    /// How a manifest records the policy its attributes were read with.
    pub fn label(&self) -> &'static str {
        match (self.security, self.trusted) {
            (false, false) => "user",
            (true, false) => "user security",
            (false, true) => "user trusted",
            (true, true) => "user security trusted",
        }
    }

    /// `user.*` and POSIX ACLs always; `security.*` and `trusted.*` when asked for.
    pub fn keeps(&self, name: &[u8]) -> bool {
        name.starts_with(b"user.")
            || name == b"system.posix_acl_access"
            || name == b"system.posix_acl_default"
            || (self.security && name.starts_with(b"security."))
            || (self.trusted && name.starts_with(b"trusted."))
    }
}

/// What the walk found at one path.
#[derive(Clone, Debug)]
pub struct Found {
    pub path: Vec<u8>,
    pub kind: FoundKind,
    pub size: u64,
    pub meta: Meta,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub ctime: (i64, u32),
    /// The walk skipped the extended attributes (see [`fill_xattrs`]).
    pub xattrs_pending: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FoundKind {
    File,
    Dir,
    Symlink(Vec<u8>),
    /// A device, FIFO or socket: reported, not copied.
    Special,
}

/// Checks a relative path from the wire: non-empty, `/`-separated, no empty, `.` or `..`
/// component, no NUL, not absolute, and not Ferry's own top-level state directory.
pub fn check_path(path: &[u8]) -> Result<(), String> {
    let shown = String::from_utf8_lossy(path);
    if path.is_empty() {
        return Err("an empty path".into());
    }
    if path[0] == b'/' {
        return Err(format!("absolute path {shown:?}"));
    }
    if path.contains(&0) {
        return Err(format!("path {shown:?} contains NUL"));
    }
    for (i, part) in path.split(|b| *b == b'/').enumerate() {
        if part.is_empty() || part == b"." || part == b".." {
            return Err(format!("path {shown:?} leaves the tree or is not normal"));
        }
        if i == 0 && part == STATE_DIR.as_bytes() {
            return Err(format!("path {shown:?} is Ferry's state directory"));
        }
    }
    Ok(())
}

/// The parent of a relative path (empty for top-level entries).
pub fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => &path[..i],
        None => b"",
    }
}

/// The last component of a relative path.
pub fn name(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

pub fn join(root: &Path, rel: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(rel))
}

pub fn shown(path: &[u8]) -> String {
    // Said on one line, and found again from what is said: a byte that is not UTF-8 is
    // `\xNN` (not U+FFFD, which loses it), a control character escaped (`\n`: a newline
    // would split a report's line in two, the second looking like a line of its own).
    crate::cli::flat(&crate::store::fs::scan::escape_bytes(path)).into_owned()
}

/// Reads the kept extended attributes of `path` without following a symlink.
pub fn read_xattrs(path: &Path, policy: XattrPolicy) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if names.len() < 1 << 20 => {
                names.resize(names.len() * 4, 0)
            }
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !policy.keeps(name) {
            continue;
        }
        let mut value = vec![0u8; 4096];
        let len = loop {
            match rustix::fs::lgetxattr(path, OsStr::from_bytes(name), &mut value[..]) {
                Ok(len) => break len,
                Err(rustix::io::Errno::RANGE) if value.len() < 1 << 20 => {
                    value.resize(value.len() * 4, 0)
                }
                Err(rustix::io::Errno::NODATA) => break usize::MAX,
                Err(e) => return Err(e.into()),
            }
        };
        if len != usize::MAX {
            value.truncate(len);
            out.push((name.to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// Stats one path (not following a symlink) into a [`Found`]; with `xattrs` false the
/// extended attributes are left to [`fill_xattrs`].
pub fn stat(root: &Path, rel: &[u8], policy: XattrPolicy, xattrs: bool) -> std::io::Result<Found> {
    let full = join(root, rel);
    let md = std::fs::symlink_metadata(&full)?;
    let ft = md.file_type();
    let kind = if ft.is_file() {
        FoundKind::File
    } else if ft.is_dir() {
        FoundKind::Dir
    } else if ft.is_symlink() {
        FoundKind::Symlink(std::fs::read_link(&full)?.into_os_string().into_vec())
    } else {
        // FIFOs, sockets, devices.
        FoundKind::Special
    };
    // Symlinks cannot carry user.* attributes on Linux; skip the syscalls.
    let carries = !matches!(kind, FoundKind::Symlink(_) | FoundKind::Special);
    let xattrs_pending = carries && !xattrs;
    let xattrs = if carries && xattrs {
        read_xattrs(&full, policy)?
    } else {
        Vec::new()
    };
    Ok(Found {
        path: rel.to_vec(),
        size: if kind == FoundKind::File {
            md.size()
        } else {
            0
        },
        kind,
        meta: Meta {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: md.mtime(),
            mtime_ns: md.mtime_nsec() as u32,
            xattrs,
        },
        dev: md.dev(),
        ino: md.ino(),
        nlink: md.nlink(),
        ctime: (md.ctime(), md.ctime_nsec() as u32),
        xattrs_pending,
    })
}

/// Fills in the extended attributes the walk skipped: from `known` when the entry's ctime
/// has not moved (setting an attribute moves ctime), else read from the file, with
/// `threads` threads.
pub fn fill_xattrs(
    root: &Path,
    found: &mut [Found],
    known: impl Fn(&Found) -> Option<Vec<(Vec<u8>, Vec<u8>)>> + Sync,
    policy: XattrPolicy,
    threads: usize,
) {
    let per = found.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for part in found.chunks_mut(per) {
            let known = &known;
            scope.spawn(move || {
                for f in part.iter_mut().filter(|f| f.xattrs_pending) {
                    f.meta.xattrs = match known(f) {
                        Some(x) => x,
                        None => read_xattrs(&join(root, &f.path), policy).unwrap_or_default(),
                    };
                    f.xattrs_pending = false;
                }
            });
        }
    });
}

use std::os::unix::ffi::OsStringExt;

/// Walks `root` with `threads` threads, skipping the top-level [`STATE_DIR`]. Entries come
/// back sorted by path (so a directory precedes what it holds); entries that vanish while the
/// walk runs are left out, other errors are returned by path.
pub fn walk(
    root: &Path,
    threads: usize,
    policy: XattrPolicy,
    xattrs: bool,
) -> (Vec<Found>, Vec<(Vec<u8>, String)>) {
    struct Shared {
        queue: VecDeque<Vec<u8>>,
        busy: usize,
        found: Vec<Found>,
        errors: Vec<(Vec<u8>, String)>,
    }
    let state = Mutex::new(Shared {
        queue: VecDeque::from([Vec::new()]),
        busy: 0,
        found: Vec::new(),
        errors: Vec::new(),
    });
    let wake = Condvar::new();
    let worker = || {
        let mut local = Vec::new();
        let mut errors = Vec::new();
        loop {
            let dir = {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if let Some(d) = s.queue.pop_front() {
                        s.busy += 1;
                        break Some(d);
                    }
                    if s.busy == 0 {
                        break None;
                    }
                    s = wake.wait(s).unwrap_or_else(|e| e.into_inner());
                }
            };
            let Some(dir) = dir else { break };
            let mut subdirs = Vec::new();
            match std::fs::read_dir(join(root, &dir)) {
                Ok(rd) => {
                    for ent in rd {
                        let ent = match ent {
                            Ok(e) => e,
                            Err(e) => {
                                errors.push((dir.clone(), e.to_string()));
                                continue;
                            }
                        };
                        let name = ent.file_name().into_vec();
                        if dir.is_empty() && name == STATE_DIR.as_bytes() {
                            continue;
                        }
                        let mut rel = dir.clone();
                        if !rel.is_empty() {
                            rel.push(b'/');
                        }
                        rel.extend_from_slice(&name);
                        match stat(root, &rel, policy, xattrs) {
                            Ok(f) => {
                                if f.kind == FoundKind::Dir {
                                    subdirs.push(rel);
                                }
                                local.push(f);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => errors.push((rel, e.to_string())),
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.is_empty() => {}
                Err(e) => errors.push((dir.clone(), e.to_string())),
            }
            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
            s.queue.extend(subdirs);
            s.busy -= 1;
            wake.notify_all();
        }
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.found.append(&mut local);
        s.errors.append(&mut errors);
    };
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(worker);
        }
    });
    let s = state.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut found = s.found;
    found.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    (found, s.errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name with a newline split a report's problem line in two (the second part read as
    /// a line of its own), and one not UTF-8 lost its bytes to U+FFFD in the JSON report.
    #[test]
    fn a_shown_path_is_one_line_and_keeps_its_bytes() {
        assert_eq!(shown(b"plain/name.txt"), "plain/name.txt");
        assert_eq!(
            shown(b"evil\nsnapshot FAKE: all good"),
            "evil\\nsnapshot FAKE: all good"
        );
        assert_eq!(shown(b"bad\xff\xfename"), "bad\\xFF\\xFEname");
        assert_eq!(shown("caf\u{e9}\t".as_bytes()), "caf\u{e9}\\t");
    }

    #[test]
    fn paths_that_leave_the_tree_are_refused() {
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"..",
            b"a/../../b",
            b"a//b",
            b"./a",
            b"a/.",
            b"a\0b",
            b".ferry/keys/server.key",
        ] {
            assert!(check_path(bad).is_err(), "{:?} accepted", shown(bad));
        }
        for good in [&b"a"[..], b"a/b/c", b"..a", b"a/.ferry", b"\xff\xfe"] {
            assert!(check_path(good).is_ok(), "{:?} refused", shown(good));
        }
    }

    #[test]
    fn walk_sorts_parents_first_and_skips_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::fs::create_dir_all(root.join(".ferry/x")).expect("mkdir");
        std::fs::write(root.join("a-b"), b"1").expect("write");
        std::fs::write(root.join("a/b/c"), b"2").expect("write");
        let (found, errors) = walk(root, 3, XattrPolicy::default(), true);
        assert!(errors.is_empty(), "{errors:?}");
        let paths: Vec<String> = found.iter().map(|f| shown(&f.path)).collect();
        assert_eq!(paths, ["a", "a-b", "a/b", "a/b/c"]);
    }
}
