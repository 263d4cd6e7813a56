//! Deletes in the fs store: a delete marker or a removed file, a version deleted by id, and
//! the previous version restored to the key's path when the latest one goes.

use super::confine::Root;
use super::index::{self, VersionRow};
use super::intent::Step;
use super::keypath::prepare_key_path;
use super::object::Retiring;
use super::{Change, FsStore, versioning_from};
use crate::store::*;

/// Removes directories left empty below the bucket after a key's file went away. Each is
/// looked at beneath the root with symlinks refused, so a folder a POSIX user replaced with
/// a symlink ends the pruning instead of leading it out of the store.
fn prune_empty_parents(root: &Root, bucket: &str, key: &ObjectKey) {
    let mut rel = format!("{bucket}/{}", key.as_str().trim_end_matches('/'));
    while let Some((parent, _)) = rel.rsplit_once('/') {
        if !parent.contains('/')
            || root.kind(parent).ok().flatten() != Some(rustix::fs::FileType::Directory)
            || std::fs::remove_dir(root.path().join(parent)).is_err()
        {
            break;
        }
        rel.truncate(parent.len());
    }
}

impl FsStore {
    pub(super) async fn delete_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<DeleteResult> {
        self.check_folder(bucket).await?;
        let held = self.write_lock(bucket, key.as_str()).await;
        let b = self.bucket_row(bucket).await?;
        let versioning = versioning_from(&b.versioning);
        let mut change = Change::new(bucket, key);
        let (mut pre, mut post) = (vec![], vec![]);
        let result = match version_id {
            None => {
                let latest = self.latest(bucket, key).await?;
                if versioning == Versioning::Unversioned {
                    let Some(old) = latest else {
                        return Ok(DeleteResult {
                            version_id: None,
                            delete_marker: false,
                        });
                    };
                    self.discard(bucket, &old, &mut change, &mut pre, &mut post);
                    DeleteResult {
                        version_id: None,
                        delete_marker: false,
                    }
                } else {
                    let marker_vid = if versioning == Versioning::Enabled {
                        uuid::Uuid::new_v4().simple().to_string()
                    } else {
                        NULL_VERSION.to_owned()
                    };
                    let is_null = marker_vid == NULL_VERSION;
                    if let Some(old) = &latest {
                        let retiring = Retiring {
                            new_is_null: is_null,
                            replaces_key_path: false,
                        };
                        match self.as_on_disk(bucket, key, old, &retiring).await? {
                            Some(old) => self.retire(
                                bucket,
                                &old,
                                retiring,
                                &mut change,
                                &mut pre,
                                &mut post,
                            ),
                            None => change.deletes.push(old.seq),
                        }
                    }
                    if is_null
                        && let Some(n) = self
                            .index
                            .version(bucket.as_str(), key.as_str(), NULL_VERSION)
                            .await?
                        && latest.as_ref().is_none_or(|l| l.seq != n.seq)
                    {
                        self.discard(bucket, &n, &mut change, &mut pre, &mut post);
                    }
                    change.inserts.push(VersionRow {
                        bucket: bucket.to_string(),
                        key: key.to_string(),
                        seq: self.next_seq(),
                        version_id: marker_vid.clone(),
                        is_latest: true,
                        delete_marker: true,
                        size: 0,
                        etag: String::new(),
                        mtime_ms: index::now_ms(),
                        attrs: "{}".into(),
                        checksum: None,
                        tags: None,
                        parts_count: None,
                        path: None,
                        file_ino: None,
                        file_mtime_ns: None,
                        file_ctime_ns: None,
                    });
                    DeleteResult {
                        version_id: Some(marker_vid),
                        delete_marker: true,
                    }
                }
            }
            Some(vid) => {
                let Some(row) = self
                    .index
                    .version(bucket.as_str(), key.as_str(), vid)
                    .await?
                else {
                    return Ok(DeleteResult {
                        version_id: Some(vid.to_owned()),
                        delete_marker: false,
                    });
                };
                self.discard(bucket, &row, &mut change, &mut pre, &mut post);
                if row.is_latest {
                    let mut tx_rows = self
                        .index
                        .list_versions(bucket.as_str(), key.as_str(), None, 2)
                        .await?;
                    tx_rows.retain(|r| r.key == key.as_str() && r.seq != row.seq);
                    if let Some(mut next) = tx_rows.into_iter().next() {
                        next.is_latest = true;
                        if !next.delete_marker && next.path.is_some() && !key.is_dir_marker() {
                            // The version coming back needs its key's path, which may have
                            // become another object's parent since (`p` written after a
                            // marker hid `p/q`): refuse, as a PUT of the key would be.
                            let (root, bname, k) =
                                (self.confined.clone(), bucket.to_string(), key.clone());
                            tokio::task::spawn_blocking(move || {
                                prepare_key_path(&root, &bname, &k)
                            })
                            .await
                            .map_err(|e| Error::Index(format!("file task failed: {e}")))??;
                            let unique = Self::bytes_rel(bucket, &next);
                            // A rename keeps the file's inode and mtime: record them, or the
                            // first read would take the file for one changed behind Ferry's
                            // back and re-index it (a multipart ETag turned into an MD5, its
                            // checksum and Last-Modified lost).
                            let at = self.root.join(&unique);
                            let m = tokio::task::spawn_blocking(move || std::fs::metadata(at))
                                .await
                                .map_err(|e| Error::Index(format!("file task failed: {e}")))?
                                .map_err(|e| Error::io(format!("reading {unique}"), e))?;
                            {
                                use std::os::unix::fs::MetadataExt;
                                next.file_ino = Some(m.ino() as i64);
                                next.file_mtime_ns =
                                    Some(crate::store::fs::nanos(m.mtime(), m.mtime_nsec()));
                                // The rename back moves it.
                                next.file_ctime_ns = None;
                            }
                            pre.push(Step::MoveFrom {
                                unique,
                                to: Self::key_rel(bucket, key),
                            });
                            next.path = None;
                        }
                        change.updates.push(next);
                    }
                }
                DeleteResult {
                    version_id: Some(vid.to_owned()),
                    delete_marker: row.delete_marker,
                }
            }
        };
        change.steps = pre;
        change.steps.extend(post);
        // A folder the server may not change (permissions a POSIX user set, a read-only
        // mount) refuses the delete before anything is committed, as it refuses a write.
        let files: Vec<std::path::PathBuf> = super::stuck::object_paths(&change.steps)
            .map(|p| self.root.join(p))
            .collect();
        if !files.is_empty() {
            let (b, k) = (bucket.to_string(), key.clone());
            tokio::task::spawn_blocking(move || {
                files.iter().try_for_each(|f| {
                    let dir = f.parent().unwrap_or(f);
                    super::keypath::writable(dir, Some(f), &b, &k)
                })
            })
            .await
            .map_err(|e| Error::Index(format!("file task failed: {e}")))??;
        }
        self.commit(change, held).await?;
        if !key.is_dir_marker() {
            let (root, bname, k) = (self.confined.clone(), bucket.to_string(), key.clone());
            let _ = tokio::task::spawn_blocking(move || {
                if matches!(root.kind(&format!("{bname}/{k}")), Ok(None)) {
                    prune_empty_parents(&root, &bname, &k);
                }
            })
            .await;
        }
        Ok(result)
    }

    /// Removes a version: its row, and its bytes (moved off the key path first, so a later
    /// replay cannot remove a file that replaced it).
    fn discard(
        &self,
        bucket: &BucketName,
        row: &VersionRow,
        change: &mut Change,
        pre: &mut Vec<Step>,
        post: &mut Vec<Step>,
    ) {
        change.deletes.push(row.seq);
        if row.delete_marker {
            return;
        }
        if row.path.is_some() {
            post.push(Step::Remove {
                unique: Self::bytes_rel(bucket, row),
            });
        } else {
            let trash = Self::new_unique("trash");
            pre.push(Step::MoveTo {
                from: Self::bytes_rel(bucket, row),
                unique: trash.clone(),
            });
            post.push(Step::Remove { unique: trash });
        }
    }
}
