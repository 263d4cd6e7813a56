//! The destination's directory layout and its snapshots: listing, publishing a finished
//! staging tree atomically, retention, the hardlink farm a new iteration starts from, and
//! `promote`, which materialises a snapshot as a writable tree.
//!
//! ```text
//! DIR/.ferry/keys/               the destination's TLS identity and the client it accepts
//! DIR/.ferry/staging/            the iteration being received (never published half-done)
//! DIR/.ferry/next/               the next staging tree, prepared while idle after a publish
//! DIR/.ferry/snapshots/<id>/     published snapshots, one tree each, read-only root
//! DIR/.ferry/index/<id>.idx      each snapshot's index (hashes, chunks, metadata)
//! DIR/.ferry/index/<id>.json     each snapshot's summary
//! DIR/.ferry/trash/<id>/         snapshots being removed (moved here whole, then deleted)
//! ```

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::store::fs::copy_range;

use super::confine::Confined;
use super::durable;
use super::index::{Content, Index, SnapshotInfo};
use super::meta;
use super::tree::{self, FoundKind, STATE_DIR, XattrPolicy, join};

pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }
    pub fn state(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }
    pub fn keys(&self) -> PathBuf {
        self.state().join("keys")
    }
    pub fn staging(&self) -> PathBuf {
        self.state().join("staging")
    }
    /// The journal of files made durable in the staging tree (see `resume`).
    pub fn journal(&self) -> PathBuf {
        self.state().join("staging.journal")
    }
    /// What an interrupted iteration had written of a large file, kept aside for a resume.
    pub fn partial(&self) -> PathBuf {
        self.state().join("partial")
    }
    /// The next iteration's staging tree, prepared after a publish.
    pub fn next(&self) -> PathBuf {
        self.state().join("next")
    }
    pub fn snapshots(&self) -> PathBuf {
        self.state().join("snapshots")
    }
    pub fn snapshot(&self, id: &str) -> PathBuf {
        self.snapshots().join(id)
    }
    fn index_dir(&self) -> PathBuf {
        self.state().join("index")
    }
    pub fn index(&self, id: &str) -> PathBuf {
        self.index_dir().join(format!("{id}.idx"))
    }
    fn info(&self, id: &str) -> PathBuf {
        self.index_dir().join(format!("{id}.json"))
    }
    fn trash(&self) -> PathBuf {
        self.state().join("trash")
    }

    pub fn create(&self) -> anyhow::Result<()> {
        for d in [self.snapshots(), self.index_dir()] {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create {}", d.display()))?;
        }
        Ok(())
    }

    /// Takes the directory for one destination process (the lock lasts as long as the
    /// returned file is open): two destinations on one directory would share its staging
    /// tree and break each other's iterations.
    pub fn lock(&self) -> anyhow::Result<std::fs::File> {
        let path = self.state().join("destination.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            anyhow::bail!(
                "another `ferry volume destination` serves {} (it holds {})",
                self.root.display(),
                path.display()
            );
        }
        Ok(file)
    }

    /// Holds snapshot `id` for reading, as long as the returned file is open (a shared
    /// `flock` on its folder): [`Layout::retain`] keeps a held snapshot for a later iteration
    /// to remove rather than take it from under a `promote`. A removal already under way is
    /// waited for, and then said.
    pub fn hold(&self, id: &str) -> anyhow::Result<std::fs::File> {
        use std::os::unix::fs::MetadataExt;
        let path = self.snapshot(id);
        let gone = || {
            anyhow::anyhow!(
                "snapshot {id} was removed while it was opened (the destination keeps the \
                 newest --keep snapshots): promote a newer one"
            )
        };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(gone()),
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockShared)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        // A removal that took the folder first has moved it to the trash by now.
        let held = file.metadata()?.ino();
        if std::fs::metadata(&path).map(|m| m.ino()).ok() != Some(held) {
            return Err(gone());
        }
        Ok(file)
    }

    /// Published snapshots, oldest first.
    pub fn list(&self) -> anyhow::Result<Vec<SnapshotInfo>> {
        let mut out = Vec::new();
        let dir = self.index_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        for ent in rd {
            let name = ent?.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if !self.snapshot(id).is_dir() || !self.index(id).is_file() {
                continue;
            }
            let text = std::fs::read(self.info(id))?;
            let info: SnapshotInfo = serde_json::from_slice(&text)
                .with_context(|| format!("{} is damaged", self.info(id).display()))?;
            out.push(info);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    pub fn latest(&self) -> anyhow::Result<Option<SnapshotInfo>> {
        Ok(self.list()?.pop())
    }

    /// Removes what an interrupted iteration or publish left: index files of snapshots that
    /// were never published, and the staging tree unless its journal says it can be resumed
    /// (it was built from the latest snapshot).
    /// Forgets an interrupted iteration: the next one starts from the last snapshot.
    pub fn drop_resume(&self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(self.journal());
        let _ = std::fs::remove_file(self.partial());
        remove_tree(&self.staging())
    }

    pub fn clean_partial(&self) -> anyhow::Result<()> {
        let latest = self.latest()?.map(|i| i.id);
        let resumable = self.staging().is_dir()
            && super::resume::Journal::read(&self.journal()).is_some_and(|(b, _)| b == latest);
        if !resumable {
            remove_tree(&self.staging())?;
            let _ = std::fs::remove_file(self.journal());
            let _ = std::fs::remove_file(self.partial());
        }
        if let Ok(rd) = std::fs::read_dir(self.index_dir()) {
            for ent in rd.flatten() {
                let name = ent.file_name();
                let Some(n) = name.to_str() else { continue };
                let id = n
                    .strip_suffix(".json")
                    .or_else(|| n.strip_suffix(".idx"))
                    .unwrap_or(n);
                if !self.snapshot(id).is_dir() {
                    let _ = std::fs::remove_file(ent.path());
                }
            }
        }
        // Snapshots a removal was cut short in: those moved to the trash, and (left by
        // earlier versions, which deleted in place) folders whose summary went first. A
        // published snapshot always has its summary (it is written before the publish), and
        // pruning takes the oldest: only a folder older than every listed snapshot is one.
        remove_tree(&self.trash())?;
        let oldest = self.list()?.first().map(|i| i.id.clone());
        if let (Some(oldest), Ok(rd)) = (oldest, std::fs::read_dir(self.snapshots())) {
            for ent in rd.flatten() {
                let name = ent.file_name();
                if name
                    .to_str()
                    .is_some_and(|id| id < oldest.as_str() && !self.info(id).is_file())
                {
                    tracing::warn!(folder = %ent.path().display(), "removing a snapshot whose removal was cut short");
                    remove_tree(&ent.path())?;
                }
            }
        }
        Ok(())
    }

    /// Publishes the staging tree as snapshot `info.id`: index and summary first, then one
    /// rename, then the directory sync that makes the rename durable.
    pub fn publish(&self, index: &Index, info: &SnapshotInfo) -> anyhow::Result<()> {
        index.save(&self.index(&info.id))?;
        durable::write_file(
            &self.info(&info.id),
            &serde_json::to_vec_pretty(info)?,
            0o644,
        )?;
        let to = self.snapshot(&info.id);
        std::fs::rename(self.staging(), &to)
            .with_context(|| format!("cannot publish {}", to.display()))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o555))?;
        durable::sync_dir(&self.snapshots())?;
        let _ = std::fs::remove_file(self.journal());
        let _ = std::fs::remove_file(self.partial());
        Ok(())
    }

    /// Keeps the newest `keep` snapshots and removes the rest. Each leaves `snapshots/` in
    /// one rename before it is deleted: one killed while being deleted is not left there
    /// half-emptied, looking like a snapshot to whoever restores from the folder by hand.
    pub fn retain(&self, keep: usize) -> anyhow::Result<()> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(keep.max(1));
        if excess > 0 {
            std::fs::create_dir_all(self.trash())
                .with_context(|| format!("cannot create {}", self.trash().display()))?;
        }
        for info in &all[..excess] {
            // One a `promote` reads (see `hold`) stays until an iteration after it. Only a
            // lock held elsewhere says so: a folder that cannot be opened or locked (a
            // filesystem without `flock`) is removed as before, or no snapshot would ever be.
            let folder = std::fs::File::open(self.snapshot(&info.id));
            let _held = match &folder {
                Ok(f) => {
                    match rustix::fs::flock(f, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                    {
                        Err(rustix::io::Errno::WOULDBLOCK) => {
                            tracing::info!(snapshot = %info.id, "kept past --keep while a promote reads it");
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(snapshot = %info.id, error = %e, "could not lock the snapshot before removing it");
                            None
                        }
                        Ok(()) => Some(f),
                    }
                }
                Err(e) => {
                    tracing::warn!(snapshot = %info.id, error = %e, "could not open the snapshot to lock it before removing it");
                    None
                }
            };
            // Moved away first, its summary after: a removal cut short leaves a summary
            // without a folder (cleaned up at start-up), never a folder without a summary
            // that is newer than a snapshot kept past --keep.
            let gone = self.trash().join(&info.id);
            std::fs::rename(self.snapshot(&info.id), &gone).with_context(|| {
                format!("cannot move {} away", self.snapshot(&info.id).display())
            })?;
            durable::sync_dir(&self.snapshots())?;
            let _ = std::fs::remove_file(self.info(&info.id));
            remove_tree(&gone)?;
            let _ = std::fs::remove_file(self.index(&info.id));
        }
        if excess > 0 {
            durable::sync_dir(&self.index_dir())?;
        }
        Ok(())
    }
}

/// Removes a tree, making directories writable first where needed (snapshots are read-only).
pub fn remove_tree(path: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        Ok(m) if !m.is_dir() => {
            return std::fs::remove_file(path)
                .with_context(|| format!("cannot remove {}", path.display()));
        }
        Ok(_) => {}
    }
    if std::fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    fn unlock(p: &Path) {
        if let Ok(md) = std::fs::symlink_metadata(p)
            && md.is_dir()
        {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    unlock(&e.path());
                }
            }
        }
    }
    unlock(path);
    std::fs::remove_dir_all(path).with_context(|| format!("cannot remove {}", path.display()))
}

/// Fills `staging` with the tree of the previous snapshot: directories created, files and
/// symlinks hard-linked (so unchanged files cost one link, and nothing in the old snapshot is
/// ever written through). Directories first, then links from several threads. Paths are
/// resolved from handles on the two trees' folders, never whole: a tree's deepest paths may
/// fit within PATH_MAX only relative to its root (a probe's 4,051-byte path stopped every
/// iteration after the first, beneath `DIR/.ferry/...`).
pub fn link_farm(prev: &Path, staging: &Path, index: &Index) -> anyhow::Result<()> {
    use std::ffi::OsStr;
    std::fs::create_dir(staging).with_context(|| format!("cannot create {}", staging.display()))?;
    let stage = Confined::open(staging)?;
    let old = Confined::open(prev)?;
    readable_tree(&old, index).with_context(|| format!("cannot read {}", prev.display()))?;
    let at = |path: &[u8]| {
        format!(
            "cannot prepare {} in {}",
            tree::shown(path),
            staging.display()
        )
    };
    let mut links = Vec::new();
    {
        let mut stage = stage.share();
        for (path, rec) in &index.entries {
            if rec.content == Content::Dir {
                let (dir, name) = stage.parent(path).with_context(|| at(path))?;
                rustix::fs::mkdirat(
                    dir,
                    OsStr::from_bytes(name),
                    rustix::fs::Mode::from_raw_mode(0o777),
                )
                .with_context(|| at(path))?;
            } else {
                links.push(&path[..]);
            }
        }
    }
    const THREADS: usize = 4;
    let per = links.len().div_ceil(THREADS).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = links
            .chunks(per)
            .map(|part| {
                let (mut stage, old) = (stage.share(), old.share());
                scope.spawn(move || -> anyhow::Result<()> {
                    // The previous snapshot's folder of the last path, kept while paths stay in it.
                    let mut from: Option<(&[u8], std::os::fd::OwnedFd)> = None;
                    for path in part {
                        let folder = tree::parent(path);
                        let (_, src) = match from.take() {
                            Some((f, fd)) if f == folder => from.insert((f, fd)),
                            _ => from.insert((folder, old.dir(folder).with_context(|| at(path))?)),
                        };
                        let (dst, name) = stage.parent(path).with_context(|| at(path))?;
                        let name = OsStr::from_bytes(name);
                        rustix::fs::linkat(src, name, dst, name, rustix::fs::AtFlags::empty())
                            .with_context(|| at(path))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a link thread panicked"))??;
        }
        Ok(())
    })
}

/// Gives a snapshot's directories and files what a destination run as an ordinary user
/// keeps for itself (see [`meta::on_disk_mode`]), parents first: a snapshot published
/// before it did lacks it. Nothing for root, which reads them anyway, nor once they have it.
fn readable_tree(tree: &Confined, index: &Index) -> anyhow::Result<()> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    // The folder of the last entry, kept while entries stay in it.
    let mut at: Option<(&[u8], std::os::fd::OwnedFd)> = None;
    for (path, rec) in &index.entries {
        if !matches!(rec.content, Content::Dir | Content::File { .. }) || path.is_empty() {
            continue;
        }
        let folder = tree::parent(path);
        let (_, parent) = match at.take() {
            Some((f, fd)) if f == folder => at.insert((f, fd)),
            _ => at.insert((folder, tree.dir(folder)?)),
        };
        let name = std::ffi::OsStr::from_bytes(tree::name(path));
        let st = rustix::fs::statat(&*parent, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        let mode = meta::on_disk_mode(st.st_mode, st.st_mode & 0o7777);
        if mode != st.st_mode & 0o7777 {
            let mode = rustix::fs::Mode::from_raw_mode(mode);
            rustix::fs::chmodat(&*parent, name, mode, rustix::fs::AtFlags::empty())?;
        }
    }
    Ok(())
}

/// Gives every directory of a hardlink farm its metadata from `index` (deepest first), then
/// syncs the filesystem: a farm prepared ahead of time is then complete and durable, and the
/// iteration that uses it only fixes the directories it changes.
pub fn finish_farm(root: &Path, index: &Index) -> anyhow::Result<()> {
    let mut problems = meta::Problems::default();
    let tree = Confined::open(root)?;
    for (path, rec) in index.entries.iter().rev() {
        if rec.content == Content::Dir {
            let d = tree.open_dir(path)?;
            meta::apply_fd(&d, path, &rec.meta, true, &mut problems)?;
        }
    }
    let d = std::fs::File::open(root)?;
    rustix::fs::syncfs(&d)?;
    Ok(())
}

/// Copies snapshot tree `from` to a new writable tree `to` (made if missing, its parent
/// not): files cloned by reflink where the filesystem can, else copied with holes kept;
/// hardlinks, symlinks and metadata kept.
/// Returns files and bytes. One that fails leaves `to` as it found it (missing or empty), so
/// it can be run again.
pub fn promote(from: &Path, index: &Index, to: &Path) -> anyhow::Result<(u64, u64)> {
    let made = match std::fs::read_dir(to) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                bail!("{} exists and is not empty", to.display());
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(to).with_context(|| format!("cannot create {}", to.display()))?;
            true
        }
        Err(e) => return Err(e).with_context(|| format!("cannot use {}", to.display())),
    };
    let done = promote_into(from, index, to);
    if done.is_err() {
        let undone = match made {
            true => remove_tree(to),
            false => std::fs::read_dir(to)
                .map_err(anyhow::Error::from)
                .and_then(|rd| rd.flatten().try_for_each(|e| remove_tree(&e.path()))),
        };
        if let Err(e) = undone {
            tracing::warn!(to = %to.display(), error = %e, "could not remove the part of the promoted tree made before the failure");
        }
    }
    // Every byte is there: what metadata could not be given is said, the tree kept.
    let (files, bytes, problems) = done?;
    if let Some(p) = problems.first() {
        bail!(
            "promoted to {} ({files} files, {bytes} bytes), but not all its metadata: {p}{}",
            to.display(),
            match problems.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            }
        );
    }
    Ok((files, bytes))
}

/// [`promote`]'s work: files, bytes, and the metadata it could not give (owners, extended
/// attributes), which leave the tree whole.
fn promote_into(from: &Path, index: &Index, to: &Path) -> anyhow::Result<(u64, u64, Vec<String>)> {
    let policy = XattrPolicy {
        security: true,
        trusted: true,
    };
    let (found, errors) = tree::walk(from, 2, policy, true);
    if let Some((p, e)) = errors.first() {
        bail!("cannot read {}: {e}", join(from, p).display());
    }
    let mut problems = meta::Problems::default();
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let (mut files, mut bytes) = (0, 0);
    for f in &found {
        let dst = join(to, &f.path);
        match &f.kind {
            FoundKind::Dir => std::fs::create_dir(&dst)
                .with_context(|| format!("cannot create {}", dst.display()))?,
            FoundKind::Symlink(target) => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &dst)
                    .with_context(|| format!("cannot create {}", dst.display()))?;
                let parent = std::fs::File::open(dst.parent().unwrap_or(to))?;
                let name = dst.file_name().map(|n| n.as_bytes()).unwrap_or_default();
                meta::apply_symlink(&parent, name, &f.path, &f.meta, &mut problems)?;
            }
            FoundKind::File => {
                if f.nlink > 1 {
                    if let Some(first) = links.get(&(f.dev, f.ino)) {
                        std::fs::hard_link(join(to, first), &dst)
                            .with_context(|| format!("cannot link {}", dst.display()))?;
                        continue;
                    }
                    links.insert((f.dev, f.ino), f.path.clone());
                }
                let at = join(from, &f.path);
                let src = std::fs::File::open(&at)
                    .with_context(|| format!("cannot read {}", at.display()))?;
                let out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&dst)
                    .with_context(|| format!("cannot create {}", dst.display()))?;
                copy_file(&src, &out, f.size)
                    .with_context(|| format!("cannot copy to {}", dst.display()))?;
                meta::apply_fd(&out, &f.path, &f.meta, true, &mut problems)?;
                exact_mode(&out, &f.path, f.meta.mode, index)?;
                files += 1;
                bytes += f.size;
            }
            FoundKind::Special => {}
        }
    }
    for f in found.iter().rev().filter(|f| f.kind == FoundKind::Dir) {
        let d = std::fs::File::open(join(to, &f.path))?;
        meta::apply_fd(&d, &f.path, &f.meta, true, &mut problems)?;
        exact_mode(&d, &f.path, f.meta.mode, index)?;
    }
    let root = std::fs::File::open(to)?;
    rustix::fs::syncfs(&root)?;
    Ok((files, bytes, problems.said))
}

use std::os::unix::ffi::OsStrExt;

/// Gives a promoted file or directory the mode the source has (its snapshot's index says;
/// a destination run as a user keeps `u+r` on disk, see [`meta::on_disk_mode`]), after its
/// times: a mode change moves only its ctime. `found` is the mode on disk, for an entry the
/// index lacks.
fn exact_mode(fd: &std::fs::File, path: &[u8], found: u32, index: &Index) -> anyhow::Result<()> {
    let mode = index.entries.get(path).map_or(found, |r| r.meta.mode);
    rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", tree::shown(path)))
}

/// Copies `len` bytes: a reflink when the filesystem can, else the data segments only
/// (holes stay holes).
pub fn copy_file(src: &std::fs::File, dst: &std::fs::File, len: u64) -> std::io::Result<()> {
    if rustix::fs::ioctl_ficlone(dst, src).is_ok() {
        return Ok(());
    }
    let mut pos = 0u64;
    while pos < len {
        let data = match rustix::fs::seek(src, rustix::fs::SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => pos,
        };
        let hole = match rustix::fs::seek(src, rustix::fs::SeekFrom::Hole(data)) {
            Ok(h) => h.min(len),
            Err(_) => len,
        };
        copy_range(src, data, dst, data, hole - data)?;
        pos = hole;
    }
    dst.set_len(len)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(layout: &Layout, id: &str) {
        std::fs::create_dir_all(layout.staging()).expect("staging");
        std::fs::write(layout.staging().join("f"), id).expect("file");
        let info = SnapshotInfo {
            id: id.into(),
            time: String::new(),
            files: 1,
            bytes: 1,
            duration_ms: 0,
            consistent: true,
        };
        layout.publish(&Index::default(), &info).expect("publish");
    }

    fn ids(layout: &Layout) -> Vec<String> {
        layout
            .list()
            .expect("list")
            .into_iter()
            .map(|i| i.id)
            .collect()
    }

    /// A promote once failed with a bare "No such file or directory" when the destination's
    /// `--keep` removed the snapshot it was copying: a held snapshot is kept until later.
    #[test]
    fn a_held_snapshot_outlives_retention_and_a_removed_one_is_said() {
        let d = tempfile::tempdir().expect("tmp");
        let layout = Layout::new(d.path());
        layout.create().expect("create");
        for id in ["a", "b", "c"] {
            publish(&layout, id);
        }
        let held = layout.hold("a").expect("hold");
        layout.retain(1).expect("retain");
        assert_eq!(ids(&layout), ["a", "c"]);
        drop(held);
        layout.retain(1).expect("retain");
        assert_eq!(ids(&layout), ["c"]);
        let e = layout.hold("a").expect_err("gone").to_string();
        assert!(e.contains("snapshot a was removed"), "{e}");
    }

    /// A promote that fails part way (here a path too long for the system under `to`)
    /// removes what it made, so the folder can be used again.
    #[test]
    fn a_failed_promote_leaves_nothing_behind() {
        let d = tempfile::tempdir().expect("tmp");
        let from = d.path().join("from");
        let long = "n".repeat(250);
        std::fs::create_dir_all(from.join("deep")).expect("from");
        std::fs::write(from.join("a.txt"), b"a").expect("a");
        std::fs::write(from.join("deep").join(&long), b"b").expect("b");
        // `to` itself fits in PATH_MAX (4096); `to/deep/<250 bytes>` does not.
        let mut base = d.path().join("to");
        while base.as_os_str().len() < 3860 {
            let room = 3860 - base.as_os_str().len();
            base.push("n".repeat(room.clamp(1, 200)));
        }
        std::fs::create_dir_all(&base).expect("base");
        let empty = base.join("empty");
        std::fs::create_dir(&empty).expect("empty");
        assert!(promote(&from, &Index::default(), &empty).is_err());
        assert_eq!(std::fs::read_dir(&empty).expect("read").count(), 0);
        let missing = base.join("missing");
        assert!(promote(&from, &Index::default(), &missing).is_err());
        assert!(!missing.exists());
    }
}
