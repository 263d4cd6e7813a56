//! Room held back so a full disk can still be emptied: `ROOT/.ferry/reserve`, a few MiB of
//! allocated file. On a full disk even a DELETE needs space (its index transaction appends to
//! SQLite's write-ahead log), so without it the only way out would be `rm` behind the store's
//! back. A change that frees space (a delete, an abort of an upload, removing a bucket) and
//! fails for lack of room releases the reserve and is tried once more; the reserve is taken
//! again in the background once the disk has room for it twice over.
//!
//! Owns: the reserve file and when it is released and taken back. Callers decide which
//! changes may use it ([`super::FsStore::freeing`]).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The reserve's size, unless the filesystem is small: 8 MiB, at most 1/64 of it.
const SIZE: u64 = 8 << 20;

pub struct Reserve {
    path: PathBuf,
    /// Whether the file is there (as far as this process knows).
    held: AtomicBool,
    /// A background refill runs.
    filling: AtomicBool,
}

impl Reserve {
    /// Takes the reserve at `path` if the disk has room for it (a full disk starts without).
    pub fn take(path: PathBuf) -> Arc<Self> {
        let r = Arc::new(Self {
            held: AtomicBool::new(false),
            filling: AtomicBool::new(false),
            path,
        });
        r.fill();
        r
    }

    /// A reserve that holds nothing (a directory a job reads).
    pub fn none() -> Arc<Self> {
        Arc::new(Self {
            path: PathBuf::new(),
            held: AtomicBool::new(false),
            filling: AtomicBool::new(true),
        })
    }

    /// Gives the room back to the filesystem; false if there was none to give.
    pub fn release(&self) -> bool {
        if !self.held.swap(false, Ordering::AcqRel) {
            return false;
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                tracing::warn!(file = %self.path.display(), "the disk is full: released the store's reserve so the delete can go through");
                true
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "releasing the store's reserve failed");
                false
            }
        }
    }

    /// Takes the reserve again in the background if it was released and the disk has room.
    pub fn refill(self: &Arc<Self>) {
        if self.held.load(Ordering::Acquire) || self.filling.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            me.fill();
            me.filling.store(false, Ordering::Release);
        });
    }

    /// Writes the file if the disk has room for it twice over; a file already there counts.
    fn fill(&self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        let Ok(fs) = rustix::fs::statvfs(dir) else {
            return;
        };
        let total = fs.f_blocks.saturating_mul(fs.f_frsize);
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        let size = SIZE.min(total / 64);
        if let Ok(m) = std::fs::metadata(&self.path)
            && m.len() >= size
        {
            self.held.store(true, Ordering::Release);
            return;
        }
        if size == 0 || free < size * 2 {
            return;
        }
        // Allocated (not only sized), so the blocks are the file's; synced, so they stay.
        let tmp = self.path.with_extension("tmp");
        let written = (|| -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            let allocated = rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, size);
            if allocated.is_err() {
                // A filesystem without fallocate: the bytes themselves.
                let zeros = vec![0u8; 1 << 20];
                let mut left = size;
                while left > 0 {
                    let n = left.min(zeros.len() as u64) as usize;
                    f.write_all(&zeros[..n])?;
                    left -= n as u64;
                }
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        match written {
            Ok(()) => self.held.store(true, Ordering::Release),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::debug!(file = %self.path.display(), error = %e, "taking the store's reserve failed");
            }
        }
    }
}
