//! Reconciling the index with files added, changed or removed behind the store's back
//! (`ferry store rescan`, and at start-up for a tree that was never indexed).
//!
//! The walk runs on a blocking thread and hands files over a bounded channel, so memory does
//! not grow with the tree. Files whose names cannot be keys (e.g. invalid UTF-8) and symlinks
//! are skipped and counted: a symlink could point outside the root.

use serde::Serialize;

use super::index::{self, VersionRow};
use super::walk::{Found, walk};
use super::{Change, FsStore, META_DIR, body};
use crate::store::*;

pub use super::walk::{escape_bytes, has_files, remove_empty_tree};

/// What a rescan found.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct ScanReport {
    pub buckets: u64,
    pub files: u64,
    pub added: u64,
    pub updated: u64,
    pub removed: u64,
    pub skipped: u64,
    /// Folders or entries that could not be read: what they hold is unknown.
    pub unreadable: u64,
    /// Buckets not rescanned, and why (a bucket folder missing or replaced).
    pub problems: Vec<String>,
}

/// Files reconciled at once during a rescan.
const RECONCILE_PARALLEL: usize = 32;

/// What reconciling one file did.
enum Reconciled {
    Skipped,
    Unchanged,
    Added,
    Updated,
    /// A file the store may not read (permissions a POSIX user set): not indexed, and
    /// named as unread, so a job makes it a dead letter and `--delete` is refused rather than
    /// taking its absence for a deletion.
    Unreadable {
        key: String,
        error: String,
    },
}

/// What a rescan of one bucket found and could not index.
#[derive(Debug, Clone, Default)]
pub(super) struct Unlisted {
    /// Folders and entries that could not be read (path and why).
    pub unreadable: Vec<String>,
    /// Names that are not UTF-8, relative to the bucket.
    pub unnamable: Vec<String>,
    /// Files whose path no S3 key can be (over 1,024 bytes), relative to the bucket, and why.
    pub unkeyable: Vec<(String, String)>,
    /// What could not be read, relative to the bucket (a folder with a trailing `/`), and why.
    pub unread_keys: Vec<(String, String)>,
    /// The bucket's folder itself could not be read (nothing of it is listed).
    pub root_unreadable: bool,
}

impl FsStore {
    /// Makes the index agree with the files under the root.
    pub async fn rescan(&self) -> Result<ScanReport> {
        self.rescan_with(false).await
    }

    /// [`Self::rescan`]; `adopt` takes a bucket folder that is not the one recorded (restored
    /// from a backup, moved to another disk) as the bucket's, where a plain rescan leaves such
    /// a bucket alone (see [`super::folder`]).
    pub async fn rescan_with(&self, adopt: bool) -> Result<ScanReport> {
        let mut report = ScanReport::default();
        let mut buckets = Vec::new();
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| Error::io(format!("reading {}", self.root.display()), e))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == META_DIR || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(b) = BucketName::parse(&name) else {
                report.skipped += 1;
                continue;
            };
            self.index
                .insert_bucket(b.as_str(), index::now_ms())
                .await?;
            buckets.push(b);
        }
        for b in self.index.buckets().await? {
            if let Ok(b) = BucketName::parse(&b.name)
                && !buckets.contains(&b)
            {
                buckets.push(b);
            }
        }
        for bucket in &buckets {
            report.buckets += 1;
            self.rescan_bucket(bucket, &mut report, adopt).await?;
        }
        self.index
            .set_meta("indexed", &index::now_ms().to_string())
            .await?;
        Ok(report)
    }

    /// What the last rescan of `bucket` could not read (path and why), if anything.
    pub fn unreadable(&self, bucket: &BucketName) -> Vec<String> {
        self.unlisted(bucket).unreadable
    }

    /// What the last rescan of `bucket` could not read, each relative to the bucket (a
    /// folder with a trailing `/`) with why; `None` when the bucket's folder itself could not
    /// be read.
    pub fn unread(&self, bucket: &BucketName) -> Option<Vec<(String, String)>> {
        let u = self.unlisted(bucket);
        (!u.root_unreadable).then_some(u.unread_keys)
    }

    /// The files and folders the last rescan of `bucket` found but could not index, each
    /// relative to the bucket (a folder with a trailing `/`) with why: names that are not
    /// UTF-8 (invalid bytes as `\xNN`; no S3 key can name them) and what could not be read.
    /// They are neither served nor copied.
    pub fn not_indexed(&self, bucket: &BucketName) -> Vec<(String, String)> {
        let u = self.unlisted(bucket);
        let why = "its name is not UTF-8, and an S3 key must be (invalid bytes are shown as \
                   \\xNN): rename it (e.g. with convmv) and run the job again";
        u.unnamable
            .into_iter()
            .map(|k| (k, why.to_owned()))
            .chain(u.unkeyable)
            .chain(u.unread_keys)
            .collect()
    }

    fn unlisted(&self, bucket: &BucketName) -> Unlisted {
        self.unlisted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(bucket.as_str())
            .cloned()
            .unwrap_or_default()
    }

    /// Makes the index of one bucket agree with its files.
    pub async fn rescan_one(&self, bucket: &BucketName) -> Result<ScanReport> {
        let mut report = ScanReport {
            buckets: 1,
            ..Default::default()
        };
        self.rescan_bucket(bucket, &mut report, false).await?;
        Ok(report)
    }

    async fn rescan_bucket(
        &self,
        bucket: &BucketName,
        report: &mut ScanReport,
        adopt: bool,
    ) -> Result<()> {
        use super::folder::{Folder, Seen};
        match self.see_folder(bucket).await? {
            Seen::Same | Seen::Recorded => {}
            // A copy of the folder (restored, moved to another disk); never an empty folder
            // where the bucket had objects (an unmounted filesystem's mount point).
            Seen::Replaced
                if adopt
                    && matches!(self.folder_now(bucket).await?, Folder::At(_))
                    && !self.empty_over_objects(bucket).await? =>
            {
                self.record_folder(bucket).await?;
                tracing::info!(store = %self.name, %bucket, "rescan: adopted the bucket's new folder");
            }
            // A folder removed on purpose: an empty one is made, and the objects forgotten.
            Seen::Missing if adopt && matches!(self.folder_now(bucket).await?, Folder::Missing) => {
                let dir = self.root.join(bucket.as_str());
                std::fs::create_dir(&dir)
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
                self.record_folder(bucket).await?;
                tracing::warn!(store = %self.name, %bucket, "rescan: the bucket's folder was missing; made an empty one and forgot its objects");
            }
            seen => {
                let e = self.folder_error(bucket, &seen);
                tracing::warn!(store = %self.name, %bucket, error = %e, "rescan: bucket left alone");
                report.unreadable += 1;
                report.problems.push(e.to_string());
                return Ok(());
            }
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(256);
        let dir = self.root.join(bucket.as_str());
        // A bucket folder replaced by a symlink is not followed (it leads out of the store).
        let walker = tokio::task::spawn_blocking(move || {
            let mut unlisted = Unlisted::default();
            if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                walk(&dir, "", &tx, &mut unlisted);
            }
            unlisted
        });
        // Files are reconciled a few dozen at a time, so their index changes share group
        // commits (one durable transaction for many files, not one each).
        use futures::StreamExt;
        let mut running = futures::stream::FuturesUnordered::new();
        let mut more = true;
        let mut unread = Vec::new();
        loop {
            while more && running.len() < RECONCILE_PARALLEL {
                match rx.recv().await {
                    Some(found) => running.push(self.reconcile_found(bucket, found)),
                    None => more = false,
                }
            }
            let Some(r) = running.next().await else { break };
            let r = match r {
                Ok(r) => r,
                // The index failing fails the rescan, and so does a full disk (files left
                // out of the index would be left out of every listing, and of a job's copy,
                // without a word); one file's trouble (a write racing it to the same path,
                // say) skips that file.
                Err(e @ Error::Index(_)) => return Err(e),
                Err(e) if e.is_storage_full() => return Err(e),
                Err(e) => {
                    tracing::warn!(store = %self.name, %bucket, error = %e, "rescan: skipped a file");
                    Reconciled::Skipped
                }
            };
            match r {
                Reconciled::Skipped => report.skipped += 1,
                Reconciled::Unchanged => report.files += 1,
                Reconciled::Added => {
                    report.files += 1;
                    report.added += 1;
                }
                Reconciled::Updated => {
                    report.files += 1;
                    report.updated += 1;
                }
                Reconciled::Unreadable { key, error } => {
                    tracing::warn!(store = %self.name, %bucket, %key, %error, "rescan: cannot read a file");
                    unread.push((key, error));
                }
            }
        }
        let mut unlisted = walker
            .await
            .map_err(|e| Error::Index(format!("walk failed: {e}")))?;
        for (key, error) in unread {
            let path = self.root.join(bucket.as_str()).join(&key);
            unlisted
                .unreadable
                .push(format!("{}: {error}", path.display()));
            unlisted
                .unread_keys
                .push((key, format!("Ferry cannot read it: {error}")));
        }
        report.unreadable += unlisted.unreadable.len() as u64;
        self.unlisted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(bucket.to_string(), unlisted);
        // Rows whose file is gone, or is no longer a regular file of the store's (a folder, a
        // symlink, a special file). One that cannot be looked at now keeps its row.
        let mut after = String::new();
        loop {
            let rows = self
                .index
                .list_at_key_path(bucket.as_str(), &after, 1000)
                .await?;
            let Some(last) = rows.last() else { break };
            after = last.key.clone();
            // One blocking call looks at the page's files.
            let root = self.confined.clone();
            let rels: Vec<String> = rows.iter().map(|r| format!("{bucket}/{}", r.key)).collect();
            let gone = tokio::task::spawn_blocking(move || {
                rels.iter()
                    .map(|rel| match root.kind(rel) {
                        Ok(k) => k != Some(rustix::fs::FileType::RegularFile),
                        Err(_) => false,
                    })
                    .collect::<Vec<bool>>()
            })
            .await
            .map_err(|e| Error::Index(format!("file task failed: {e}")))?;
            for (row, gone) in rows.into_iter().zip(gone) {
                if gone
                    && self
                        .forget_if_gone(bucket, &ObjectKey::parse(&row.key)?, row.seq)
                        .await?
                {
                    report.removed += 1;
                }
            }
        }
        Ok(())
    }

    /// Forgets the current version `seq` of `key` if its file is gone from the key's path
    /// (or is no longer a regular file of the store's: a folder, a symlink, a special file),
    /// as a rescan does; true if it did. Looked at under the key's write lock: a write may
    /// have moved the row away (an overwrite in a versioned bucket makes it a non-current
    /// version) or put a file back meanwhile. One that cannot be looked at keeps its row.
    pub(super) async fn forget_if_gone(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        seq: i64,
    ) -> Result<bool> {
        self.forget_if_gone_in(bucket, key, seq, false).await
    }

    /// [`Self::forget_if_gone`] for a read that found the file gone: only in a bucket that
    /// never had versioning, where no older version would have to become the current one
    /// (that is left to a rescan).
    pub(super) async fn forget_on_read(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        seq: i64,
    ) -> Result<bool> {
        self.forget_if_gone_in(bucket, key, seq, true).await
    }

    async fn forget_if_gone_in(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        seq: i64,
        unversioned_only: bool,
    ) -> Result<bool> {
        // A folder missing or replaced is the store failing, not the file deleted.
        self.check_folder(bucket).await?;
        if unversioned_only && self.bucket_row(bucket).await?.versioning != "Unversioned" {
            return Ok(false);
        }
        // A held change's file is not where its row says until its move is done.
        if self.is_held(bucket, key.as_str()) {
            return Ok(false);
        }
        let held = self.write_lock(bucket, key.as_str()).await;
        let still = self
            .index
            .latest(bucket.as_str(), key.as_str())
            .await?
            .is_some_and(|l| l.seq == seq && l.path.is_none());
        if !still {
            return Ok(false);
        }
        let root = self.confined.clone();
        let rel = format!("{bucket}/{key}");
        let kind = tokio::task::spawn_blocking(move || root.kind(&rel))
            .await
            .map_err(|e| Error::Index(format!("file task failed: {e}")))?;
        if !matches!(kind, Ok(k) if k != Some(rustix::fs::FileType::RegularFile)) {
            return Ok(false);
        }
        let mut change = Change::new(bucket, key);
        change.deletes.push(seq);
        self.commit(change, held).await?;
        Ok(true)
    }

    async fn reconcile_found(
        &self,
        bucket: &BucketName,
        found: std::result::Result<Found, String>,
    ) -> Result<Reconciled> {
        let f = match found {
            Ok(f) => f,
            Err(what) => {
                tracing::warn!(store = %self.name, skipped = %what, "rescan: skipped");
                return Ok(Reconciled::Skipped);
            }
        };
        let Ok(key) = ObjectKey::parse(&f.key) else {
            tracing::warn!(store = %self.name, key = %f.key, "skipped: the path is not a valid key");
            return Ok(Reconciled::Skipped);
        };
        self.reconcile_file(bucket, &key, &f).await
    }

    async fn reconcile_file(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        f: &Found,
    ) -> Result<Reconciled> {
        // The file at a held change's path is not the object yet (or any more).
        if self.is_held(bucket, key.as_str()) {
            return Ok(Reconciled::Skipped);
        }
        let held = self.write_lock(bucket, key.as_str()).await;
        let latest = self.index.latest(bucket.as_str(), key.as_str()).await?;
        let same_file = latest.as_ref().is_some_and(|row| {
            row.path.is_none()
                && !row.delete_marker
                && row.indexes(f.ino, f.mtime_ns, f.ctime_ns, f.size)
        });
        let unhashed = latest
            .as_ref()
            .is_some_and(|row| super::is_unhashed_etag(&row.etag));
        if same_file && !(self.hash_found && unhashed) {
            return Ok(Reconciled::Unchanged);
        }
        // The walk saw the file before this key's lock was taken: a write through Ferry may
        // have replaced it since (its row is then the latest, and right). Only the file the
        // walk saw is reconciled; anything else is the next rescan's (or a GET's) to look at.
        let rel = format!("{bucket}/{key}");
        let root = self.confined.clone();
        let now = tokio::task::spawn_blocking(move || root.facts(&rel))
            .await
            .map_err(|e| Error::Index(format!("file task failed: {e}")))?;
        let unreadable = |e: &std::io::Error| Reconciled::Unreadable {
            key: key.to_string(),
            error: e.to_string(),
        };
        match &now {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(unreadable(e)),
            Ok(n) if *n == (f.ino, f.mtime_ns, f.ctime_ns, f.size) => {}
            _ => return Ok(Reconciled::Skipped),
        }
        let (size, etag) = if self.hash_found {
            let rel = format!("{bucket}/{key}");
            let root = self.confined.clone();
            let d = tokio::task::spawn_blocking(move || body::hash_file(&root.open_file(&rel)?))
                .await
                .map_err(|e| Error::Index(format!("file task failed: {e}")))?;
            match d {
                Ok(d) => (d.size as i64, hex::encode(d.md5)),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Ok(unreadable(&e));
                }
                // Removed or replaced since the walk saw it, or unreadable: the next rescan
                // (or a GET) looks again.
                Err(e) => {
                    tracing::warn!(store = %self.name, %bucket, %key, error = %e, "rescan: skipped a file it could not read");
                    return Ok(Reconciled::Skipped);
                }
            }
        } else {
            (f.size, super::unhashed_etag(f.ino, f.mtime_ns, f.size))
        };
        let mut change = Change::new(bucket, key);
        match latest {
            Some(mut row) if row.path.is_none() && !row.delete_marker => {
                // Only hashed now, not changed: it keeps its modification time.
                let at = (f.ino, f.mtime_ns, f.ctime_ns);
                self.refresh_file_row(bucket, key, &mut row, at, size, etag, !same_file)
                    .await?;
                return Ok(Reconciled::Updated);
            }
            Some(mut row) => {
                row.is_latest = false;
                change.updates.push(row);
            }
            None => {}
        }
        if let Some(n) = self
            .index
            .version(bucket.as_str(), key.as_str(), NULL_VERSION)
            .await?
        {
            change.deletes.push(n.seq);
        }
        change.inserts.push(VersionRow {
            bucket: bucket.to_string(),
            key: key.to_string(),
            seq: self.next_seq(),
            version_id: NULL_VERSION.to_owned(),
            is_latest: true,
            delete_marker: false,
            size,
            etag,
            // The file's own modification time, not when the scan found it.
            mtime_ms: f.mtime_ns.div_euclid(1_000_000),
            attrs: found_attrs(key.as_str()),
            checksum: None,
            tags: None,
            parts_count: None,
            path: None,
            file_ino: Some(f.ino),
            file_mtime_ns: Some(f.mtime_ns),
            file_ctime_ns: Some(f.ctime_ns),
        });
        self.commit(change, held).await?;
        Ok(Reconciled::Added)
    }
}

/// The attributes of a file found on disk rather than written through S3: the content type
/// its extension names (as rclone, awscli and s3cmd guess it when they upload a file), else
/// none, which S3 answers as `binary/octet-stream`.
fn found_attrs(key: &str) -> String {
    let Some(guess) = mime_guess::from_path(key).first_raw() else {
        return "{}".into();
    };
    let attrs = ObjectAttrs {
        content_type: Some(guess.to_owned()),
        ..ObjectAttrs::default()
    };
    serde_json::to_string(&attrs).unwrap_or_else(|_| "{}".into())
}
