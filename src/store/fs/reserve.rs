//! Room held back so a full disk can still be emptied: `ROOT/.ferry/reserve`, a few MiB of
//! allocated file. On a full disk even a DELETE needs space (its index transaction appends to
//! SQLite's write-ahead log), so without it the only way out would be `rm` behind the store's
//! back. A change that frees space (a delete, an abort of an upload, removing a bucket) and
//! fails for lack of room releases the reserve and is tried once more; so is one that failed
//! while another released it. While the reserve is released, writes of bodies are refused
//! until it is taken again (which needs room for it twice over), so the room a delete freed
//! is not eaten by the next upload.
//!
//! Owns: the reserve file and when it is released and taken back. Callers decide which
//! changes may use it ([`super::FsStore::freeing`]) and which must leave it
//! ([`Reserve::room_for_writes`]).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The reserve's size, unless the filesystem is small: 8 MiB, at most 1/64 of it.
const SIZE: u64 = 8 << 20;

pub struct Reserve {
    path: PathBuf,
    /// Off for a directory a job reads or writes: no reserve, no refusals.
    enabled: bool,
    /// Whether the file is there, and how many times it was released: taken and released
    /// under this lock, so a release never races a refill.
    state: Mutex<State>,
    /// `state.held` for readers that must not wait on the lock (every body write asks).
    held_now: AtomicBool,
    /// A background refill runs.
    filling: AtomicBool,
}

#[derive(Default)]
struct State {
    held: bool,
    releases: u64,
}

impl Reserve {
    /// Takes the reserve at `path` if the disk has room for it (a full disk starts without).
    pub fn take(path: PathBuf) -> Arc<Self> {
        let r = Arc::new(Self {
            path,
            enabled: true,
            state: Mutex::default(),
            held_now: AtomicBool::new(false),
            filling: AtomicBool::new(false),
        });
        r.fill();
        r
    }

    /// A reserve that holds nothing and refuses nothing (a directory a job reads).
    pub fn none() -> Arc<Self> {
        Arc::new(Self {
            path: PathBuf::new(),
            enabled: false,
            state: Mutex::default(),
            held_now: AtomicBool::new(false),
            filling: AtomicBool::new(false),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many times the reserve was released: a change that failed for lack of room may
    /// try again if this moved since it started.
    pub fn releases(&self) -> u64 {
        self.state().releases
    }

    /// Gives the room back to the filesystem; false if there was none to give.
    pub fn release(&self) -> bool {
        let mut st = self.state();
        if !st.held {
            return false;
        }
        st.held = false;
        self.held_now.store(false, Ordering::Release);
        match std::fs::remove_file(&self.path) {
            Ok(()) => {
                st.releases += 1;
                tracing::warn!(file = %self.path.display(), "the disk is full: released the store's reserve so deletes can go through");
                true
            }
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "releasing the store's reserve failed");
                false
            }
        }
    }

    /// Whether a body may be written: always while the reserve is held; while it is
    /// released, only once it is taken again (tried here, off the async threads, when the
    /// disk has room for it twice over), so uploads do not eat what deletes freed.
    pub async fn room_for_writes(self: &Arc<Self>) -> bool {
        if !self.enabled || self.held_now.load(Ordering::Acquire) {
            return true;
        }
        let me = self.clone();
        let _ = tokio::task::spawn_blocking(move || me.fill()).await;
        self.held_now.load(Ordering::Acquire)
    }

    /// Takes the reserve again in the background if it was released and the disk has room.
    pub fn refill(self: &Arc<Self>) {
        if !self.enabled
            || self.held_now.load(Ordering::Acquire)
            || self.filling.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            me.fill();
            me.filling.store(false, Ordering::Release);
        });
    }

    /// The reserve's size on this filesystem and the room free on it.
    fn room(&self) -> Option<(u64, u64)> {
        let fs = rustix::fs::statvfs(self.path.parent()?).ok()?;
        let total = fs.f_blocks.saturating_mul(fs.f_frsize);
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        Some((SIZE.min(total / 64), free))
    }

    /// Writes the file if the disk has room for it twice over; a file already there with its
    /// blocks allocated counts.
    fn fill(&self) {
        let mut st = self.state();
        if st.held {
            return;
        }
        let Some((size, free)) = self.room() else {
            return;
        };
        // Blocks, not length: zeros written on a compressing filesystem hold no room.
        if let Ok(m) = std::fs::metadata(&self.path)
            && m.blocks().saturating_mul(512) >= size
        {
            st.held = true;
            self.held_now.store(true, Ordering::Release);
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
            // Held even where its zeros take no room (a compressing filesystem without
            // fallocate): taking it again after every delete would only churn.
            Ok(()) => {
                st.held = true;
                self.held_now.store(true, Ordering::Release);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::debug!(file = %self.path.display(), error = %e, "taking the store's reserve failed");
            }
        }
    }
}
