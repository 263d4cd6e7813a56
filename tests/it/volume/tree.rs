//! What a replicated tree must preserve, recorded as a [`Manifest`] so that a tree can be
//! checked both against another tree and against itself as it was earlier: file type, mode
//! (all 0o7777 bits), owner, mtime with nanoseconds, content (BLAKE3, read 1 MiB at a time),
//! symlink targets as bytes, `user.*` xattrs, hardlink groups and holes. A top-level
//! `.ferry` is never part of a tree; the root's own metadata is not compared.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

type Xattrs = BTreeMap<Vec<u8>, Vec<u8>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// One entry's observable state.
struct Entry {
    kind: Kind,
    /// `st_mode & 0o7777`; 0 for symlinks (their mode means nothing on Linux).
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    size: u64,
    /// `st_blocks * 512`.
    allocated: u64,
    hash: Option<blake3::Hash>,
    target: Option<Vec<u8>>,
    xattrs: Xattrs,
    /// `(st_dev, st_ino)`: only used to find the hardlink groups within one tree.
    inode: (u64, u64),
}

/// A tree's state: entries by path relative to the root (bytes, `/`-separated).
pub struct Manifest {
    root: PathBuf,
    entries: BTreeMap<Vec<u8>, Entry>,
}

/// Records the tree under `root`.
pub fn manifest(root: &Path) -> Manifest {
    let entries = walk(root)
        .into_iter()
        .map(|(rel, path)| (rel, Entry::read(&path)))
        .collect();
    Manifest {
        root: root.to_path_buf(),
        entries,
    }
}

/// Every path under `root` except a top-level `.ferry` (parents before their children).
pub fn paths(root: &Path) -> Vec<PathBuf> {
    walk(root).into_iter().map(|(_, path)| path).collect()
}

/// The tree under `root` is exactly what `want` recorded; panics with every difference.
#[track_caller]
pub fn assert_matches(want: &Manifest, root: &Path) {
    let got = manifest(root);
    let diffs = differences(want, &got);
    if diffs.is_empty() {
        return;
    }
    let shown: Vec<&str> = diffs.iter().take(80).map(String::as_str).collect();
    panic!(
        "{} does not match {} (as recorded), {} difference(s) (expected vs actual):\n  {}",
        root.display(),
        want.root.display(),
        diffs.len(),
        shown.join("\n  ")
    );
}

/// The trees under `a` and `b` are the same; panics with every difference.
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path) {
    assert_matches(&manifest(a), b);
}

fn walk(root: &Path) -> Vec<(Vec<u8>, PathBuf)> {
    let mut out = Vec::new();
    let mut dirs = vec![(Vec::new(), root.to_path_buf())];
    while let Some((rel, dir)) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
            let name = entry.file_name();
            if rel.is_empty() && name.as_bytes() == b".ferry" {
                continue;
            }
            let mut r = rel.clone();
            if !r.is_empty() {
                r.push(b'/');
            }
            r.extend_from_slice(name.as_bytes());
            let path = entry.path();
            let is_dir = entry
                .file_type()
                .unwrap_or_else(|e| panic!("file type of {}: {e}", path.display()))
                .is_dir();
            if is_dir {
                dirs.push((r.clone(), path.clone()));
            }
            out.push((r, path));
        }
    }
    out
}

impl Entry {
    fn read(path: &Path) -> Self {
        let md = std::fs::symlink_metadata(path)
            .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
        let ft = md.file_type();
        let kind = if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        Entry {
            kind,
            mode: if kind == Kind::Symlink {
                0
            } else {
                md.mode() & 0o7777
            },
            uid: md.uid(),
            gid: md.gid(),
            mtime: (md.mtime(), md.mtime_nsec()),
            size: md.size(),
            allocated: md.blocks() * 512,
            hash: (kind == Kind::File).then(|| content_hash(path)),
            target: (kind == Kind::Symlink).then(|| {
                std::fs::read_link(path)
                    .unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()))
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            }),
            xattrs: user_xattrs(path),
            inode: (md.dev(), md.ino()),
        }
    }
}

fn content_hash(path: &Path) -> blake3::Hash {
    let mut file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            return hasher.finalize();
        }
        hasher.update(&buf[..n]);
    }
}

/// The `user.*` extended attributes of `path` (not following a symlink).
fn user_xattrs(path: &Path) -> Xattrs {
    let mut out = Xattrs::new();
    let len = match rustix::fs::llistxattr_query(path) {
        Ok(len) => len,
        Err(e) if e == rustix::io::Errno::NOTSUP => return out,
        Err(e) => panic!("llistxattr {}: {e}", path.display()),
    };
    let mut names = vec![0u8; len];
    let n = rustix::fs::llistxattr(path, &mut names[..])
        .unwrap_or_else(|e| panic!("llistxattr {}: {e}", path.display()));
    for name in names[..n].split(|&b| b == 0) {
        if !name.starts_with(b"user.") {
            continue;
        }
        let show = name.escape_ascii();
        let vlen = rustix::fs::lgetxattr_query(path, name)
            .unwrap_or_else(|e| panic!("lgetxattr {} {show}: {e}", path.display()));
        let mut value = vec![0u8; vlen];
        let got = rustix::fs::lgetxattr(path, name, &mut value[..])
            .unwrap_or_else(|e| panic!("lgetxattr {} {show}: {e}", path.display()));
        value.truncate(got);
        out.insert(name.to_vec(), value);
    }
    out
}

impl Manifest {
    /// The sets of (two or more) regular-file paths that share an inode.
    fn link_groups(&self) -> BTreeSet<Vec<Vec<u8>>> {
        let mut by_inode: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
        for (path, e) in &self.entries {
            if e.kind == Kind::File {
                by_inode.entry(e.inode).or_default().push(path.clone());
            }
        }
        by_inode.into_values().filter(|g| g.len() > 1).collect()
    }
}

/// Every way `got` differs from `want`, one readable line each.
fn differences(want: &Manifest, got: &Manifest) -> Vec<String> {
    let mut out = Vec::new();
    for (path, a) in &want.entries {
        let name = path.escape_ascii().to_string();
        match got.entries.get(path) {
            None => out.push(format!("{name}: missing ({:?})", a.kind)),
            Some(b) => compare(&name, a, b, &mut out),
        }
    }
    for (path, b) in &got.entries {
        if !want.entries.contains_key(path) {
            out.push(format!(
                "{}: unexpected ({:?})",
                path.escape_ascii(),
                b.kind
            ));
        }
    }
    let (want_links, got_links) = (want.link_groups(), got.link_groups());
    for g in want_links.difference(&got_links) {
        out.push(format!(
            "hardlink group [{}] is not one inode",
            show_group(g)
        ));
    }
    for g in got_links.difference(&want_links) {
        out.push(format!("unexpected hardlink group [{}]", show_group(g)));
    }
    out
}

fn compare(name: &str, a: &Entry, b: &Entry, out: &mut Vec<String>) {
    if a.kind != b.kind {
        out.push(format!("{name}: type {:?} vs {:?}", a.kind, b.kind));
        return;
    }
    if a.mode != b.mode {
        out.push(format!("{name}: mode {:04o} vs {:04o}", a.mode, b.mode));
    }
    if (a.uid, a.gid) != (b.uid, b.gid) {
        out.push(format!(
            "{name}: owner {}:{} vs {}:{}",
            a.uid, a.gid, b.uid, b.gid
        ));
    }
    if a.mtime != b.mtime {
        out.push(format!(
            "{name}: mtime {}.{:09} vs {}.{:09}",
            a.mtime.0, a.mtime.1, b.mtime.0, b.mtime.1
        ));
    }
    if a.xattrs != b.xattrs {
        out.push(format!(
            "{name}: user xattrs {{{}}} vs {{{}}}",
            show_xattrs(&a.xattrs),
            show_xattrs(&b.xattrs)
        ));
    }
    match a.kind {
        Kind::File => {
            if a.size != b.size {
                out.push(format!("{name}: size {} vs {}", a.size, b.size));
            } else if a.hash != b.hash {
                out.push(format!("{name}: content differs"));
            }
            if a.allocated < a.size / 2 && b.allocated >= b.size / 2 {
                out.push(format!(
                    "{name}: not sparse: {} bytes allocated for {} (the original has {})",
                    b.allocated, b.size, a.allocated
                ));
            }
        }
        Kind::Symlink => {
            if a.target != b.target {
                let show = |t: Option<&[u8]>| t.unwrap_or_default().escape_ascii().to_string();
                out.push(format!(
                    "{name}: symlink target {} vs {}",
                    show(a.target.as_deref()),
                    show(b.target.as_deref())
                ));
            }
        }
        Kind::Dir | Kind::Other => {}
    }
}

fn show_xattrs(x: &Xattrs) -> String {
    x.iter()
        .map(|(k, v)| format!("{}={:?}", k.escape_ascii(), v.escape_ascii().to_string()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn show_group(group: &[Vec<u8>]) -> String {
    group
        .iter()
        .map(|p| p.escape_ascii().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
