//! Opening an fs store: its folders, index and lock, the replay of changes a crash left
//! unfinished, and the first scan of a tree never indexed.

use super::*;

impl FsStore {
    /// Opens (creating if needed) a store at `root`: replays unfinished intents, clears temp
    /// files, and indexes the tree if it was never indexed.
    pub async fn open(name: &str, root: &Path) -> Result<Arc<Self>> {
        // Opening writes (the index's schema and write-ahead log, replayed intents): on a
        // full disk the reserve makes the room, so the store opens and can be emptied.
        let store = match Self::open_unscanned(name, root, None, true, true).await {
            Err(e)
                if e.is_storage_full()
                    && std::fs::remove_file(root.join(META_DIR).join("reserve")).is_ok() =>
            {
                tracing::warn!(
                    store = name,
                    "the disk is full: released the store's reserve to open it"
                );
                Self::open_unscanned(name, root, None, true, true).await?
            }
            r => r?,
        };
        if store.index.get_meta("indexed").await?.is_none() {
            store.rescan_with(true).await?;
        }
        Ok(store)
    }

    /// Opens a store at `root` for one bucket only (a local directory a job reads or
    /// writes): brings that bucket's index up to date with its files and leaves the rest of
    /// the root alone.
    ///
    /// `hash_found` false leaves the files found unhashed (see [`FsStore::hash_found`]); a
    /// later open that hashes picks up what an earlier one left unhashed.
    pub async fn open_dir(
        name: &str,
        root: &Path,
        bucket: &BucketName,
        hash_found: bool,
    ) -> Result<Arc<Self>> {
        let store = Self::open_unscanned(name, root, None, hash_found, false).await?;
        store.adopt_dir(bucket).await?;
        Ok(store)
    }

    /// [`FsStore::open_dir`] for a directory only read (a job's source, a dry run's
    /// destination): its index and lock live in `meta`, not beside the directory, so nothing
    /// is written there (a read-only mount, another user's tree, a snapshot can be read), and
    /// two jobs reading sibling directories do not share a lock. Writes are refused.
    pub async fn open_dir_read_only(
        name: &str,
        root: &Path,
        bucket: &BucketName,
        hash_found: bool,
        meta: &Path,
    ) -> Result<Arc<Self>> {
        // A store a running server holds is read through that server: its index and its files
        // change under a reader that is not it. Held shared, so a server does not start on it
        // while the job reads.
        let root_lock = match std::fs::File::open(root.join(META_DIR).join("lock")) {
            Ok(f) => {
                if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
                {
                    return Err(held_elsewhere(
                        name,
                        root,
                        &root.join(META_DIR).join("lock"),
                    ));
                }
                Some(f)
            }
            Err(_) => None,
        };
        let store = Self::open_unscanned(name, root, Some(meta), hash_found, false).await?;
        *store
            .root_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = root_lock;
        let dir = store.root().join(bucket.as_str());
        if !dir.is_dir() {
            return Err(Error::NoSuchBucket {
                bucket: bucket.to_string(),
            });
        }
        store
            .index
            .insert_bucket(bucket.as_str(), index::now_ms())
            .await?;
        store.record_folder(bucket).await?;
        store.rescan_one(bucket).await?;
        Ok(store)
    }

    /// Refuses a write to a store opened read-only ([`FsStore::open_dir_read_only`]).
    pub(super) fn writes(&self) -> Result<()> {
        match self.read_only {
            false => Ok(()),
            true => Err(Error::Denied(format!(
                "{} is opened only to be read",
                self.root.display()
            ))),
        }
    }

    /// Serves the directory `bucket` below the root as a bucket (made if missing), with what
    /// it holds indexed: a store opened for one directory can take a sibling.
    pub async fn adopt_dir(&self, bucket: &BucketName) -> Result<()> {
        let dir = self.root().join(bucket.as_str());
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        self.index
            .insert_bucket(bucket.as_str(), index::now_ms())
            .await?;
        self.record_folder(bucket).await?;
        self.rescan_one(bucket).await.map(|_| ())
    }

    /// `reserve`: hold back room so a full disk can still be emptied (a served store; not a
    /// directory a job reads or writes).
    async fn open_unscanned(
        name: &str,
        root: &Path,
        external_meta: Option<&Path>,
        hash_found: bool,
        reserve: bool,
    ) -> Result<Arc<Self>> {
        let meta = external_meta.map_or_else(|| root.join(META_DIR), Path::to_path_buf);
        for d in ["tmp", "versions", "blobs", "uploads", "trash"] {
            std::fs::create_dir_all(meta.join(d))
                .map_err(|e| Error::io(format!("creating {}", meta.join(d).display()), e))?;
        }
        let root = std::fs::canonicalize(root)
            .map_err(|e| Error::io(format!("opening {}", root.display()), e))?;
        let meta = std::fs::canonicalize(&meta)
            .map_err(|e| Error::io(format!("opening {}", meta.display()), e))?;
        let lock_path = meta.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        // Held by this very process: a handle of a run that just ended, which its last task
        // lets go of in a moment (a resumed job relisting, a server's next try), is waited
        // for; another process's is said at once.
        let mut waited = std::time::Duration::ZERO;
        while rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .is_err()
        {
            if waited >= OWN_LOCK_WAIT || !held_by_this_process(&lock_path) {
                return Err(held_elsewhere(name, &root, &lock_path));
            }
            tokio::time::sleep(OWN_LOCK_POLL).await;
            waited += OWN_LOCK_POLL;
        }
        // Who holds it, for the next process that finds it held (not needed for safety: a
        // failure to say so is not one to open the store).
        {
            use std::io::Write;
            let _ = lock.set_len(0);
            let _ = (&lock).write_all(format!("{}\n", holder()).as_bytes());
        }
        let reserve_path = meta.join("reserve");
        let index = Arc::new(Index::open(&meta.join("index.db")).await?);
        let seq = AtomicI64::new(index.max_seq().await?);
        let confined = Arc::new(
            confine::Root::open(&root)
                .map_err(|e| Error::io(format!("opening {}", root.display()), e))?,
        );
        let held = stuck::HeldPaths::default();
        let committer =
            commit::Committer::start(&index, confined.clone(), name.to_owned(), held.clone())?;
        let reserve = if reserve {
            reserve::Reserve::take(reserve_path)
        } else {
            reserve::Reserve::none()
        };
        let store = Arc::new(Self {
            name: name.to_owned(),
            root,
            confined,
            index,
            committer,
            seq,
            locks: (0..LOCK_STRIPES)
                .map(|_| Arc::new(RwLock::new(())))
                .collect(),
            buckets: Default::default(),
            latest: Arc::new(std::sync::Mutex::new(lru::LruCache::new(LATEST_CACHE))),
            bucket_gen: Default::default(),
            hash_found,
            placements: Default::default(),
            unlisted: Default::default(),
            reserve,
            meta,
            read_only: external_meta.is_some(),
            held,
            root_lock: std::sync::Mutex::new(None),
            _lock: lock,
        });
        store.recover().await?;
        Ok(store)
    }

    /// Replays intents left by a crash and empties `tmp/` and `trash/`.
    async fn recover(&self) -> Result<()> {
        for (id, steps) in self.index.intents().await? {
            let steps: Vec<Step> = serde_json::from_str(&steps)
                .map_err(|e| Error::Index(format!("intent {id} is unreadable: {e}")))?;
            self.replay_steps(steps).await?;
            self.index.delete_intent(id).await?;
            tracing::info!(store = %self.name, intent = id, "replayed an unfinished change");
        }
        for d in ["tmp", "trash"] {
            let dir = self.meta.join(d);
            let entries = std::fs::read_dir(&dir)
                .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
            for entry in entries.flatten() {
                let p = entry.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        // Bodies are received into 16 subfolders of tmp/: creating a file locks its folder,
        // and one folder for every concurrent PUT made them queue on that lock.
        for shard in 0..16u8 {
            let dir = self.meta.join("tmp").join(format!("{shard:x}"));
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(())
    }

    async fn replay_steps(&self, steps: Vec<Step>) -> Result<()> {
        let root = self.confined.clone();
        let mut at: Vec<String> = stuck::object_paths(&steps)
            .map(|p| self.root.join(p).display().to_string())
            .collect();
        at.sort();
        at.dedup();
        tokio::task::spawn_blocking(move || intent::replay(&root, &steps))
            .await
            .map_err(|e| Error::Index(format!("file task failed: {e}")))?
            .map_err(|e| {
                let what = if at.is_empty() {
                    "a file change recorded before the last stop".to_owned()
                } else {
                    format!("a file change at {} recorded before the last stop", at.join(", "))
                };
                Error::io(
                    format!("finishing {what} (let the server change that folder and file, then start again)"),
                    e,
                )
            })
    }
}

/// How long an open waits for a store's lock that this process holds (see
/// [`FsStore::open_unscanned`]), and how often it looks.
const OWN_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const OWN_LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether the lock file at `lock_path` names this process as its holder.
fn held_by_this_process(lock_path: &Path) -> bool {
    std::fs::read_to_string(lock_path).is_ok_and(|said| {
        said.split_whitespace().next() == Some(std::process::id().to_string().as_str())
    })
}

/// This process as a store's lock names it: its pid and `ferry` command (never its other
/// arguments, which may hold a secret).
fn holder() -> String {
    const COMMANDS: &[&str] = &[
        "serve", "migrate", "worker", "volume", "store", "bucket", "job", "verify",
    ];
    let command = std::env::args()
        .skip(1)
        .find(|a| COMMANDS.contains(&a.as_str()))
        .unwrap_or_default();
    format!("{} ferry {command}", std::process::id())
}

/// The error for a store whose lock another process holds, naming that process from what
/// it wrote in the lock file, and what to do.
fn held_elsewhere(name: &str, root: &Path, lock_path: &Path) -> Error {
    let said = std::fs::read_to_string(lock_path).unwrap_or_default();
    let (pid, what) = said.trim().split_once(' ').unwrap_or(("", ""));
    let message = match what.trim() {
        "" => format!(
            "{} is open in another Ferry process; use the S3 endpoint of the server that \
             holds it, or wait for the job that does",
            root.display()
        ),
        w if w.ends_with(" serve") => format!(
            "{} is held by a running `{w}` (pid {pid}); use that server's S3 endpoint",
            root.display()
        ),
        w => format!(
            "{} is held by a running `{w}` (pid {pid}): a job writing a directory keeps its \
             index in the directory's parent; wait for it to end",
            root.display()
        ),
    };
    Error::Unavailable {
        store: name.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run that ended in this process lets go of its stores a moment later (its aborted
    /// tasks are dropped after it returns); the next run's open waits for that, where it
    /// failed with "held by a running `ferry migrate`" naming this very process (CI).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_this_process_is_letting_go_of_is_waited_for() {
        let tmp = tempfile::tempdir().expect("tmp");
        let first = FsStore::open("a", tmp.path()).await.expect("first open");
        let letting_go = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            drop(first);
        });
        let second = FsStore::open("a", tmp.path()).await;
        assert!(second.is_ok(), "{:?}", second.err());
        letting_go.await.expect("task");
    }

    #[tokio::test]
    async fn a_store_another_process_holds_is_refused_at_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let _first = FsStore::open("a", tmp.path()).await.expect("first open");
        // As another process would have written it.
        std::fs::write(tmp.path().join(META_DIR).join("lock"), "1 ferry serve\n").expect("lock");
        let second = FsStore::open("a", tmp.path()).await;
        let err = second.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err.contains("held by a running `ferry serve` (pid 1)"),
            "{err}"
        );
    }
}
