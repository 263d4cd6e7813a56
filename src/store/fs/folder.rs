//! Which folder a bucket is: its device and inode, recorded when the bucket is made (or first
//! seen). A bucket folder that went away or was replaced (a filesystem unmounted from under
//! it, a folder moved aside and an empty one made) is the store failing, not its files being
//! deleted: reads answer it as unavailable instead of "no such key", writes are refused
//! rather than landing on the wrong disk, and neither a read nor a rescan forgets the
//! bucket's objects for it. Before, a namespace bucket's catch-up took the missing files for
//! deletions and deleted the secondary's copies (found by a probe).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::FsStore;
use crate::store::{BucketName, Error, Result};

/// What the folder at a bucket's path is now.
pub(super) enum Folder {
    Missing,
    /// The folder's inode number. Not its device number, which a reboot or a remount may
    /// change (NFS, overlayfs, device-mapper minors): every bucket would read as replaced.
    At(String),
    /// Not a folder (a file, a symlink).
    Other,
}

/// How a bucket's folder compares with the one recorded.
pub(super) enum Seen {
    Same,
    /// Nothing recorded yet (a bucket from before folders were recorded): recorded now.
    Recorded,
    Missing,
    Replaced,
}

/// The inode part of a recorded identity (`dev:ino` was recorded before the device was left
/// out).
fn ino_of(recorded: &str) -> &str {
    recorded.rsplit(':').next().unwrap_or(recorded)
}

/// A bucket folder check a write makes on the blocking call it makes anyway (a small PUT's
/// body write): a hop to the blocking pool of its own cost a small PUT ~8% of its rate.
pub(super) struct FolderCheck {
    dir: PathBuf,
    ino: String,
}

/// What [`FolderCheck::holds`] failing is said as until [`FsStore::check_folder`] says
/// precisely what is wrong.
const FOLDER_CHANGED: &str = "the bucket's folder is not the one recorded";

impl FolderCheck {
    /// Refuses (with a placeholder [`FsStore::folder_checked`] replaces) when the bucket's
    /// folder is not the one recorded. Blocking.
    pub fn holds(&self) -> Result<()> {
        match std::fs::symlink_metadata(&self.dir) {
            Ok(m) if m.is_dir() && m.ino().to_string() == self.ino => Ok(()),
            _ => Err(Error::Unavailable {
                store: String::new(),
                message: FOLDER_CHANGED.to_owned(),
            }),
        }
    }
}

impl FsStore {
    /// The folder check for a write to make on its own blocking call ([`FolderCheck`]); `None`
    /// when there was nothing recorded to compare with, and it was made here instead.
    pub(super) async fn folder_check(&self, bucket: &BucketName) -> Result<Option<FolderCheck>> {
        match self.bucket_row(bucket).await?.dir {
            Some(d) => Ok(Some(FolderCheck {
                dir: self.root.join(bucket.as_str()),
                ino: ino_of(&d).to_owned(),
            })),
            None => self.check_folder(bucket).await.map(|()| None),
        }
    }

    /// A write's outcome with a failed [`FolderCheck`] said as [`Self::check_folder`] says it.
    pub(super) async fn folder_checked<T>(&self, bucket: &BucketName, r: Result<T>) -> Result<T> {
        match r {
            Err(Error::Unavailable { message, .. }) if message == FOLDER_CHANGED => {
                self.check_folder(bucket).await?;
                // Back in place since: said as a store that did not answer this once.
                Err(Error::Unavailable {
                    store: self.name.clone(),
                    message: format!(
                        "bucket {bucket}'s folder changed during the write; try again"
                    ),
                })
            }
            r => r,
        }
    }

    /// Looked at on a blocking thread: a hung network filesystem must not hold the runtime.
    pub(super) async fn folder_now(&self, bucket: &BucketName) -> Result<Folder> {
        let dir = self.root.join(bucket.as_str());
        let looked = dir.clone();
        tokio::task::spawn_blocking(move || match std::fs::symlink_metadata(&looked) {
            Ok(m) if m.is_dir() => Ok(Folder::At(m.ino().to_string())),
            Ok(_) => Ok(Folder::Other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Folder::Missing),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| Error::Index(format!("file task failed: {e}")))?
        .map_err(|e| Error::io(format!("looking at {}", dir.display()), e))
    }

    /// Compares the bucket's folder with the one recorded, recording it if none was.
    pub(super) async fn see_folder(&self, bucket: &BucketName) -> Result<Seen> {
        let row = self.bucket_row(bucket).await?;
        Ok(match (row.dir.as_deref(), self.folder_now(bucket).await?) {
            (_, Folder::Missing) => Seen::Missing,
            (_, Folder::Other) => Seen::Replaced,
            (Some(was), Folder::At(now)) if ino_of(was) == now => Seen::Same,
            (Some(_), Folder::At(_)) => Seen::Replaced,
            // First sight: an empty folder where the index has objects (an unmounted
            // filesystem's mount point) is not recorded as the bucket's.
            (None, Folder::At(_)) if self.empty_over_objects(bucket).await? => Seen::Missing,
            (None, Folder::At(now)) => {
                self.index.set_bucket_dir(bucket.as_str(), &now).await?;
                self.forget_bucket(bucket);
                Seen::Recorded
            }
        })
    }

    /// The bucket's folder is the one recorded; otherwise the store cannot serve the bucket
    /// (503 through S3, the store down for a namespace bucket).
    pub(super) async fn check_folder(&self, bucket: &BucketName) -> Result<()> {
        match self.see_folder(bucket).await? {
            Seen::Same | Seen::Recorded => Ok(()),
            seen => Err(self.folder_error(bucket, &seen)),
        }
    }

    pub(super) fn folder_error(&self, bucket: &BucketName, seen: &Seen) -> Error {
        let dir = self.root.join(bucket.as_str());
        let message = match seen {
            Seen::Missing => format!(
                "bucket {bucket}'s folder {} is missing (moved, or a filesystem not mounted?); \
                 its objects are not taken for deleted",
                dir.display()
            ),
            _ => format!(
                "bucket {bucket}'s folder {} is not the folder it was (a filesystem mounted or \
                 unmounted there, or a folder put in its place?); its objects are not taken \
                 for deleted: put the folder back, or, if this one is a copy of it (restored \
                 from a backup), adopt it with `ferry store rescan {} --adopt` (an empty \
                 folder is never adopted)",
                dir.display(),
                self.name
            ),
        };
        Error::Unavailable {
            store: self.name.clone(),
            message,
        }
    }

    /// The bucket's folder is empty while the index holds objects of it: an unmounted
    /// filesystem's mount point far more often than a bucket emptied by hand, and never a
    /// folder to adopt (that would forget every object).
    pub(super) async fn empty_over_objects(&self, bucket: &BucketName) -> Result<bool> {
        // No files below it (empty folders, a new filesystem's `lost+found`, do not count).
        let dir = self.root.join(bucket.as_str());
        let files = tokio::task::spawn_blocking(move || super::scan::has_files(&dir))
            .await
            .map_err(|e| Error::Index(format!("file task failed: {e}")))?
            .unwrap_or(true);
        Ok(!files && !self.index.bucket_is_empty(bucket.as_str()).await?)
    }

    /// Records the folder now at the bucket's path as the bucket's (a bucket made, a folder
    /// adopted).
    pub(super) async fn record_folder(&self, bucket: &BucketName) -> Result<()> {
        if let Folder::At(now) = self.folder_now(bucket).await? {
            self.index.set_bucket_dir(bucket.as_str(), &now).await?;
            self.forget_bucket(bucket);
        }
        Ok(())
    }
}
