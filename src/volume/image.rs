//! The point-in-time image a source reads from where its filesystem can clone files (reflink,
//! `FICLONE`: btrfs, xfs): every file the iteration will read is cloned first into
//! `DIR/.ferry/image/`, which takes moments and no space, and then read at leisure while the
//! application keeps writing. Each clone is one instant of its file; it is taken between two
//! stats of the live file, retried while they disagree, so the size, mtime and ctime recorded
//! describe it. Elsewhere the live files are read (with stat checks around each read).

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::plan::Job;
use super::tree::{STATE_DIR, XattrPolicy, join, read_xattrs};

const ATTEMPTS: usize = 5;

/// The clones of one iteration; removed when dropped.
pub struct Image {
    dir: PathBuf,
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = super::snapshot::remove_tree(&self.dir);
    }
}

enum Cloned {
    Done,
    /// The filesystem cannot clone.
    Unsupported,
    /// The file kept changing, or is gone: read it live.
    Live,
}

fn clone_one(
    root: &Path,
    job: &mut Job,
    to: &Path,
    policy: XattrPolicy,
) -> std::io::Result<Cloned> {
    for attempt in 0..ATTEMPTS {
        let src = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(join(root, &job.path))
        {
            Ok(f) => f,
            Err(_) => return Ok(Cloned::Live),
        };
        let a = src.metadata()?;
        if !a.is_file() {
            return Ok(Cloned::Live);
        }
        let dst = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(to)?;
        match rustix::fs::ioctl_ficlone(&dst, &src) {
            Ok(()) => {}
            Err(
                rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::XDEV
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::NOTTY
                | rustix::io::Errno::NOSYS,
            ) => return Ok(Cloned::Unsupported),
            Err(e) => return Err(e.into()),
        }
        let b = src.metadata()?;
        let key = |m: &std::fs::Metadata| {
            (
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
                m.ino(),
            )
        };
        if key(&a) != key(&b) && attempt + 1 < ATTEMPTS {
            continue;
        }
        // The clone is one instant of the file (FICLONE locks it). When it was written to
        // around every attempt, the stat from before the clone is kept: it is older than the
        // content, never newer, so the next iteration sends the file again rather than
        // believing a stat that describes content this clone may not have.
        let f = &mut job.found;
        if (f.ctime.0, f.ctime.1 as i64) != (a.ctime(), a.ctime_nsec()) {
            f.meta.xattrs = read_xattrs(&join(root, &job.path), policy)?;
        }
        // The size is the clone's, though: it is what will be read and sent (the file may
        // have grown past the small-file size between the stat and the clone).
        f.size = dst.metadata()?.size();
        f.ino = a.ino();
        f.ctime = (a.ctime(), a.ctime_nsec() as u32);
        f.meta.mode = a.mode() & 0o7777;
        f.meta.uid = a.uid();
        f.meta.gid = a.gid();
        f.meta.mtime = a.mtime();
        f.meta.mtime_ns = a.mtime_nsec() as u32;
        job.image = Some(to.to_path_buf());
        return Ok(Cloned::Done);
    }
    Ok(Cloned::Live)
}

/// Clones every job's file; `None` when the filesystem cannot (nothing is cloned then).
pub fn take(
    root: &Path,
    jobs: &mut [&mut Job],
    policy: XattrPolicy,
    threads: usize,
) -> anyhow::Result<Option<Image>> {
    if jobs.is_empty() {
        return Ok(None);
    }
    let dir = root.join(STATE_DIR).join("image");
    super::snapshot::remove_tree(&dir)?;
    if let Err(e) = std::fs::create_dir_all(&dir) {
        // A tree that cannot be written (a read-only mount, a mounted LVM snapshot, an
        // immutable folder) holds still by itself: read it live. The iteration failed on it,
        // and only after the destination's timeout (a probe).
        use rustix::io::Errno;
        let unwritable = [Errno::ROFS, Errno::ACCESS, Errno::PERM];
        if unwritable
            .iter()
            .any(|n| e.raw_os_error() == Some(n.raw_os_error()))
        {
            tracing::info!(dir = %dir.display(), error = %e, "no image: the tree cannot be written here; reading it live");
            return Ok(None);
        }
        return Err(e).with_context(|| format!("cannot create {}", dir.display()));
    }
    let image = Image { dir: dir.clone() };
    // Clones one at a time first, until one tells whether the filesystem can: a file read
    // live (unreadable, gone, changing) tells nothing, and taking it for a yes claimed an
    // image where every clone then failed (a probe on ext4, `"image": true`).
    let mut decided = None;
    for (n, job) in jobs.iter_mut().enumerate() {
        match clone_one(root, job, &dir.join(n.to_string()), policy)
            .with_context(|| format!("cannot clone into {}", dir.display()))?
        {
            Cloned::Unsupported => return Ok(None),
            Cloned::Done => {
                decided = Some(n + 1);
                break;
            }
            Cloned::Live => {}
        }
    }
    // Every file is read live: no image.
    let Some(first) = decided else {
        return Ok(None);
    };
    let rest = &mut jobs[first..];
    let per = rest.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = rest
            .chunks_mut(per)
            .enumerate()
            .map(|(c, part)| {
                let dir = &dir;
                scope.spawn(move || -> anyhow::Result<()> {
                    for (i, job) in part.iter_mut().enumerate() {
                        let n = first + c * per + i;
                        clone_one(root, job, &dir.join(n.to_string()), policy)
                            .with_context(|| format!("cannot clone into {}", dir.display()))?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a clone thread panicked"))??;
        }
        Ok(())
    })?;
    Ok(Some(image))
}
