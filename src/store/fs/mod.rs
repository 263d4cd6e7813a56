//! The `fs` store: buckets are directories under a root, and the current version of an
//! object is a plain file at its key's path, so an existing tree can be served and POSIX
//! users see the same data.
//!
//! Owns: the on-disk layout, the mapping of keys to paths, crash safety of file changes
//! ([`intent`]), the ordered key index ([`index`]) and reconciling it with files changed behind
//! its back ([`scan`]). Layout under the root:
//!
//! ```text
//! ROOT/<bucket>/<key path>          current version of each object
//! ROOT/.ferry/index.db              SQLite: buckets, versions, uploads, parts, intents
//! ROOT/.ferry/tmp/{0..f}/            bodies being received (cleared at start-up)
//! ROOT/.ferry/versions/xx/<id>      non-current versions
//! ROOT/.ferry/blobs/xx/<id>         bodies of "directory marker" keys (`photos/`)
//! ROOT/.ferry/uploads/<upload>/     multipart parts, most of them placed in `object`
//! ROOT/.ferry/trash/                files on their way out
//! ROOT/.ferry/reserve               room held back for deletes on a full disk
//! ```

mod api;
mod assembly;
mod body;
mod commit;
mod completed;
mod confine;
mod delete;
mod folder;
pub mod index;
pub mod intent;
mod keypath;
mod layout;
mod list;
mod multipart;
mod object;
mod open;
mod part_checksums;
mod reserve;
pub mod scan;
mod stuck;
mod walk;

pub use assembly::copy_range;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use tokio::sync::RwLock;

/// A key's write lock held across a commit (see [`FsStore::commit`]).
type KeyHeld = tokio::sync::OwnedRwLockWriteGuard<()>;

use self::index::{Index, VersionRow, ms_to_time};
use self::intent::Step;
use super::*;

const LOCK_STRIPES: usize = 512;
/// How many keys' latest rows are cached (a row is a few hundred bytes).
const LATEST_CACHE: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(32 * 1024) {
    Some(n) => n,
    None => panic!("non-zero"),
};
/// The hidden folder under the root that holds everything that is not an object's bytes.
pub const META_DIR: &str = ".ferry";

/// A store over a local directory.
pub struct FsStore {
    name: String,
    root: PathBuf,
    /// The root held open: objects' files are read and moved only through it (see
    /// [`confine`]).
    confined: Arc<confine::Root>,
    index: Arc<Index>,
    committer: commit::Committer,
    seq: AtomicI64,
    locks: Vec<Arc<RwLock<()>>>,
    /// Bucket rows by name. This process is the only writer of the index, and every bucket
    /// change goes through it, so the cache cannot go stale; misses always ask the index.
    buckets: std::sync::RwLock<std::collections::HashMap<String, index::BucketRow>>,
    /// Latest version rows of recently used keys. Filled and changed only while the key's
    /// lock is held (readers: shared; writers: exclusive), so it never disagrees with the
    /// index for longer than an unacknowledged write.
    latest: Arc<std::sync::Mutex<lru::LruCache<(String, String), VersionRow>>>,
    /// Bumped by every bucket change, so a row read before the change is not cached after it.
    bucket_gen: std::sync::atomic::AtomicU64,
    /// Files found by a rescan (or changed behind the store's back) are hashed for their
    /// ETag. Off for a directory a copy job reads without comparing content: such a file
    /// gets an [`unhashed_etag`] and is hashed only as it is copied, so the copy does not
    /// read the whole tree once before it starts.
    hash_found: bool,
    /// Where parts of multipart uploads are being written (see [`assembly`]).
    placements: assembly::Placements,
    /// Per bucket, what its last rescan could not index (see [`FsStore::unreadable`] and
    /// [`FsStore::unnamable`]).
    unlisted: std::sync::Mutex<std::collections::HashMap<String, scan::Unlisted>>,
    /// Room held back for deletes on a full disk (see [`reserve`]).
    reserve: Arc<reserve::Reserve>,
    /// An exclusive `flock` on `.ferry/lock`, held while the store is open: the index cache
    /// and crash recovery assume one process per store.
    /// Where the index, the lock and the scratch folders are: `ROOT/.ferry`, or elsewhere
    /// for a store opened read-only.
    meta: PathBuf,
    /// Opened only to be read: writes are refused (their files would go through `.ferry/`).
    read_only: bool,
    /// Object paths whose change could not be finished yet (see [`stuck`]).
    held: stuck::HeldPaths,
    /// For a store opened read-only: a shared lock on the root's own `.ferry/lock`, if it
    /// has one (another process's store), so no server opens it while this one reads.
    root_lock: std::sync::Mutex<Option<std::fs::File>>,
    _lock: std::fs::File,
}

/// The ETag a file indexed without reading it gets: 32 hex digits derived from the facts
/// that move when its content is rewritten (inode, modification time, size), then `-0`. The
/// dash keeps it from being taken for an MD5 (as with a multipart ETag; no multipart upload
/// has 0 parts), and the facts still tell a changed file from an unchanged one.
pub fn unhashed_etag(ino: i64, mtime_ns: i64, size: i64) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for v in [ino, mtime_ns, size] {
        h.update(v.to_le_bytes());
    }
    format!("{}-0", hex::encode(h.finalize()))
}

/// A file time in nanoseconds since the epoch, clamped to what an `i64` holds (years 1678 to
/// 2262): a file dated 2446 (ext4's latest) wrapped around to 1861, and panicked a debug build.
pub fn nanos(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

/// Whether `etag` was made by [`unhashed_etag`].
pub fn is_unhashed_etag(etag: &str) -> bool {
    etag.len() == 34 && etag.ends_with("-0")
}

/// Whether `etag` is a multipart upload's (`md5-N`), which no file's MD5 can be compared with.
pub fn is_multipart_etag(etag: &str) -> bool {
    etag.len() > 33 && !is_unhashed_etag(etag)
}

impl FsStore {
    /// Runs a change that frees space (a delete, an abort); if it fails for lack of room,
    /// releases the [`reserve`] and tries once more. Once one succeeds, the reserve is taken
    /// again when the disk has room for it.
    pub(super) async fn freeing<T, F, Fut>(&self, change: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        // Another change may have released the reserve while this one ran out of room.
        let releases = self.reserve.releases();
        let r = match change().await {
            Err(e)
                if e.is_storage_full()
                    && (self.reserve.release() || self.reserve.releases() != releases) =>
            {
                change().await
            }
            r => r,
        };
        if r.is_ok() {
            self.reserve.refill();
        }
        r
    }

    /// Refuses a write of a body while the [`reserve`] is released and the disk has no room
    /// to take it back: what deletes freed is for the deletes still to come.
    pub(super) async fn room_for_writes(&self) -> Result<()> {
        if self.reserve.room_for_writes().await {
            return Ok(());
        }
        Err(Error::io(
            "the store's disk is nearly full (its reserve is in use)",
            std::io::Error::from_raw_os_error(28),
        ))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn next_seq(&self) -> i64 {
        self.seq.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn lock_for(&self, bucket: &BucketName, key: &str) -> &Arc<RwLock<()>> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bucket.as_str().hash(&mut h);
        key.hash(&mut h);
        &self.locks[(h.finish() as usize) % LOCK_STRIPES]
    }

    /// The key's path relative to the root.
    fn key_rel(bucket: &BucketName, key: &ObjectKey) -> String {
        format!("{}/{}", bucket.as_str(), key.as_str())
    }

    /// Whether a change of `key` waits to be finished (see [`stuck`]).
    fn is_held(&self, bucket: &BucketName, key: &str) -> bool {
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        !held.is_empty() && held.contains(&format!("{}/{key}", bucket.as_str()))
    }

    /// The answer to a read of a held key.
    fn held_error(&self, key: &str) -> Error {
        Error::Unavailable {
            store: self.name.clone(),
            message: format!(
                "a change of {key} could not move its file yet (see the server's log); it is tried again"
            ),
        }
    }

    fn new_unique(kind: &str) -> String {
        let id = uuid::Uuid::new_v4().simple().to_string();
        match kind {
            "tmp" => format!("{META_DIR}/tmp/{}/{id}", &id[..1]),
            "trash" => format!("{META_DIR}/trash/{id}"),
            _ => format!("{META_DIR}/{kind}/{}/{id}", &id[..2]),
        }
    }

    /// Where a version's bytes are, relative to the root.
    fn bytes_rel(bucket: &BucketName, row: &VersionRow) -> String {
        match &row.path {
            Some(p) => format!("{META_DIR}/{p}"),
            None => format!("{}/{}", bucket.as_str(), row.key),
        }
    }

    async fn bucket_row(&self, bucket: &BucketName) -> Result<index::BucketRow> {
        if let Ok(cache) = self.buckets.read()
            && let Some(b) = cache.get(bucket.as_str())
        {
            return Ok(b.clone());
        }
        let generation = self.bucket_gen.load(Ordering::SeqCst);
        let row = self
            .index
            .bucket(bucket.as_str())
            .await?
            .ok_or_else(|| Error::NoSuchBucket {
                bucket: bucket.to_string(),
            })?;
        if let Ok(mut cache) = self.buckets.write()
            && self.bucket_gen.load(Ordering::SeqCst) == generation
        {
            cache.insert(row.name.clone(), row.clone());
        }
        Ok(row)
    }

    /// Drops a bucket's cached row after a change to it.
    fn forget_bucket(&self, bucket: &BucketName) {
        if let Ok(mut cache) = self.buckets.write() {
            self.bucket_gen.fetch_add(1, Ordering::SeqCst);
            cache.remove(bucket.as_str());
        }
    }

    /// Commits index changes and an intent in one transaction, then performs the intent
    /// (batched with concurrent writers: see [`commit`]).
    ///
    /// The caller holds the key's write lock; the cached latest row follows the change.
    async fn commit(&self, change: Change, held: KeyHeld) -> Result<()> {
        let cache_key = (change.bucket.clone(), change.key.clone());
        let new_latest = change
            .inserts
            .iter()
            .chain(change.updates.iter())
            .find(|r| r.is_latest)
            .cloned();
        let cache = self.latest.clone();
        // On the commit thread, before the key's lock is let go (see `commit::Then`).
        let then: commit::Then = Box::new(move |ok| {
            if let Ok(mut cache) = cache.lock() {
                match (ok, new_latest) {
                    (true, Some(row)) => {
                        cache.put(cache_key, row);
                    }
                    _ => {
                        cache.pop(&cache_key);
                    }
                }
            }
            drop(held);
        });
        self.committer.commit(change, Some(then)).await
    }

    /// The key's write lock, owned: [`FsStore::commit`] hands it to the commit thread.
    async fn write_lock(&self, bucket: &BucketName, key: &str) -> KeyHeld {
        self.lock_for(bucket, key).clone().write_owned().await
    }

    /// The latest version row of a key (cached). The caller holds the key's lock.
    async fn latest(&self, bucket: &BucketName, key: &ObjectKey) -> Result<Option<VersionRow>> {
        let cache_key = (bucket.to_string(), key.to_string());
        if let Ok(mut cache) = self.latest.lock()
            && let Some(row) = cache.get(&cache_key)
        {
            return Ok(Some(row.clone()));
        }
        let row = self.index.latest(bucket.as_str(), key.as_str()).await?;
        if let (Some(r), Ok(mut cache)) = (&row, self.latest.lock()) {
            cache.put(cache_key, r.clone());
        }
        Ok(row)
    }

    /// Drops a key's cached latest row after the index changed outside [`FsStore::commit`].
    fn forget_latest(&self, bucket: &BucketName, key: &ObjectKey) {
        if let Ok(mut cache) = self.latest.lock() {
            cache.pop(&(bucket.to_string(), key.to_string()));
        }
    }

    /// Records what a key's plain file now is (its size and ETag, and the inode and mtime
    /// they were taken from), in place of the row's old facts. The row's modification time
    /// moves only when the file did (`moved`), not when it was merely hashed.
    #[allow(clippy::too_many_arguments)]
    async fn refresh_file_row(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        row: &mut VersionRow,
        (ino, mtime_ns, ctime_ns): (i64, i64, i64),
        size: i64,
        etag: String,
        moved: bool,
    ) -> Result<()> {
        // Other bytes than the row's: a size that moved, or both MD5s known and different
        // (a file touched, moved, or restored as it was is the same object). A multipart
        // ETag cannot be compared with the file's MD5: its file changing at all counts (a
        // re-probe found an edited multipart object keeping rclone's `md5chksum` of the old
        // bytes, and `rclone sync` missing the edit).
        let md5 = |e: &str| e.len() == 32;
        let multipart = is_multipart_etag(&row.etag);
        let other_bytes = row.size != size
            || (md5(&row.etag) && md5(&etag) && row.etag != etag)
            || (multipart && moved);
        row.size = size;
        row.etag = etag;
        row.checksum = None;
        row.parts_count = None;
        if moved {
            // A file changed outside Ferry was last modified when its own mtime says (what
            // `ls -l`, rsync and rclone go by), not when Ferry noticed.
            row.mtime_ms = mtime_ns.div_euclid(1_000_000);
        }
        if other_bytes {
            // Its user metadata described the bytes it held: rclone's `mtime` and
            // `md5chksum`, s3cmd's `s3cmd-attrs` kept their old values, and `rclone sync`
            // from this store found the edited file unchanged.
            if let Ok(mut attrs) = serde_json::from_str::<ObjectAttrs>(&row.attrs)
                && !attrs.user_metadata.is_empty()
            {
                attrs.user_metadata.clear();
                row.attrs = serde_json::to_string(&attrs).unwrap_or_else(|_| row.attrs.clone());
            }
        }
        row.file_ino = Some(ino);
        row.file_mtime_ns = Some(mtime_ns);
        row.file_ctime_ns = Some(ctime_ns);
        self.index.update_file_facts(row).await?;
        self.forget_latest(bucket, key);
        Ok(())
    }

    fn meta_of(&self, row: &VersionRow) -> Result<ObjectMeta> {
        row_to_meta(row)
    }
}

/// Index and file changes committed together by [`FsStore::commit`].
struct Change {
    bucket: String,
    key: String,
    inserts: Vec<VersionRow>,
    updates: Vec<VersionRow>,
    deletes: Vec<i64>,
    /// The part sizes of an inserted multipart version: its seq and [`layout`] text.
    part_sizes: Option<(i64, String)>,
    delete_upload: Option<String>,
    steps: Vec<Step>,
    /// A body this change moves into place is not fdatasynced yet (see [`commit`]).
    unsynced_body: bool,
}

impl Change {
    fn new(bucket: &BucketName, key: &ObjectKey) -> Self {
        Self {
            bucket: bucket.to_string(),
            key: key.to_string(),
            inserts: vec![],
            updates: vec![],
            deletes: vec![],
            part_sizes: None,
            delete_upload: None,
            steps: vec![],
            unsynced_body: false,
        }
    }
}

pub(crate) fn row_to_meta(row: &VersionRow) -> Result<ObjectMeta> {
    let attrs: ObjectAttrs = serde_json::from_str(&row.attrs).unwrap_or_default();
    let checksum = row
        .checksum
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok());
    let tag_count = row
        .tags
        .as_deref()
        .and_then(|t| serde_json::from_str::<Tags>(t).ok())
        .map_or(0, |t| t.len());
    Ok(ObjectMeta {
        key: ObjectKey::parse(&row.key)?,
        version_id: row.version_id.clone(),
        is_latest: row.is_latest,
        delete_marker: row.delete_marker,
        size: row.size.max(0) as u64,
        etag: row.etag.clone(),
        last_modified: modified_of(row),
        attrs,
        checksum,
        tag_count,
        parts_count: row.parts_count.map(|n| n.max(0) as u32),
        opaque_etag: false,
    })
}

/// When a version was last modified: its file's own time to the nanosecond where the index
/// has it and it is the time the row names (a file's time is rclone's `mtime` and what
/// `cp -p` keeps, so a copy carries it whole), else the row's milliseconds.
fn modified_of(row: &VersionRow) -> OffsetDateTime {
    match row.file_mtime_ns {
        Some(ns) if ns.div_euclid(1_000_000) == row.mtime_ms => {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
                .unwrap_or_else(|_| ms_to_time(row.mtime_ms))
        }
        _ => ms_to_time(row.mtime_ms),
    }
}

fn versioning_from(s: &str) -> Versioning {
    match s {
        "Enabled" => Versioning::Enabled,
        "Suspended" => Versioning::Suspended,
        _ => Versioning::Unversioned,
    }
}

fn versioning_str(v: Versioning) -> &'static str {
    match v {
        Versioning::Enabled => "Enabled",
        Versioning::Suspended => "Suspended",
        Versioning::Unversioned => "Unversioned",
    }
}

fn tags_json(tags: &Tags) -> Option<String> {
    if tags.is_empty() {
        None
    } else {
        serde_json::to_string(tags).ok()
    }
}
