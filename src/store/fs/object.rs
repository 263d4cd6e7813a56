//! Object operations of the fs store: put, get, copy, and the version bookkeeping they share
//! with deletes ([`FsStore::commit_version`], [`FsStore::retire`]; deletes are in
//! [`super::delete`]).

use std::io;
use std::path::Path;

use super::index::{self, VersionRow};
use super::intent::Step;
use super::keypath::prepare_key_path;
use super::{Change, FsStore, META_DIR, body, tags_json, versioning_from};
use crate::store::*;

/// What the writer thread already did for a new body: made room for the key's path, and
/// noted the temp file's identity (kept by the rename).
pub(super) struct Prepared {
    pub ino: i64,
    pub mtime_ns: i64,
    /// The body is fdatasynced; if not, the commit must make it durable first.
    pub synced: bool,
}

/// What takes the place of the latest version, for [`FsStore::retire`].
#[derive(Clone, Copy)]
pub(super) struct Retiring {
    /// The new version is the null version (the bucket is not versioning).
    pub new_is_null: bool,
    /// The new version's bytes are renamed onto the key path (not a delete marker, not a
    /// directory-marker key).
    pub replaces_key_path: bool,
}

/// A new version's facts, known once its body is in a temp file.
pub(super) struct NewVersion {
    pub size: u64,
    pub etag: String,
    pub attrs: ObjectAttrs,
    pub checksum: Option<Checksum>,
    pub tags: Tags,
    pub parts_count: Option<u32>,
    /// The sizes of a multipart version's parts, as [`super::layout`] text.
    pub part_sizes: Option<String>,
}

fn rel_in_meta(unique: &str) -> String {
    unique
        .strip_prefix(&format!("{META_DIR}/"))
        .unwrap_or(unique)
        .to_owned()
}

#[cfg(unix)]
fn file_facts(p: &Path) -> io::Result<(i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p)?;
    Ok((
        m.ino() as i64,
        crate::store::fs::nanos(m.mtime(), m.mtime_nsec()),
    ))
}

impl FsStore {
    pub(super) async fn put_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        // The bucket's folder is checked on the body's own blocking call (below), but for a
        // folder marker, which writes no file at its key's path.
        let folder = match key.is_dir_marker() {
            true => self.check_folder(bucket).await.map(|()| None)?,
            false => self.folder_check(bucket).await?,
        };
        let tmp = Self::new_unique("tmp");
        let tmp_abs = self.root.join(&tmp);
        // Making room for the key's path rides along with the body's write (one blocking
        // call). The key's lock would not add anything: a path conflict is between two
        // different keys (`a` and `a/b`), and the rename recreates a parent pruned meanwhile.
        let prepare: Option<body::Prepare> = (!key.is_dir_marker()).then(|| {
            let (root, bname, k) = (self.confined.clone(), bucket.to_string(), key.clone());
            Box::new(move || {
                if let Some(f) = &folder {
                    f.holds()?;
                }
                prepare_key_path(&root, &bname, &k)
            }) as body::Prepare
        });
        let received = body::receive(
            &tmp_abs,
            body,
            body::Hash::new(opts.checksum_algorithm, opts.shared_digests.clone()),
            opts.size_hint,
            prepare,
            true,
        )
        .await;
        let got = self.folder_checked(bucket, received).await?;
        let digests = got.digests;
        if let Some(verify) = opts.verify
            && let Err(e) = verify(&digests)
        {
            let _ = tokio::fs::remove_file(&tmp_abs).await;
            return Err(e);
        }
        let new = NewVersion {
            size: digests.size,
            etag: hex::encode(digests.md5),
            attrs: opts.attrs,
            checksum: digests.checksum,
            tags: opts.tags,
            parts_count: None,
            part_sizes: None,
        };
        let ready = Prepared {
            ino: got.ino,
            mtime_ns: got.mtime_ns,
            synced: got.synced,
        };
        self.commit_version(bucket, key, tmp, new, None, Some(ready))
            .await
    }

    /// Makes the body in `tmp` the new latest version of `key`, keeping, replacing or
    /// discarding the previous one as the bucket's versioning state says.
    pub(super) async fn commit_version(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        tmp: String,
        new: NewVersion,
        completes_upload: Option<String>,
        ready: Option<Prepared>,
    ) -> Result<ObjectMeta> {
        let tmp_abs = self.root.join(&tmp);
        // Set once the change is handed to the commit thread: from then on its intent may be
        // committed with a move from `tmp`, whatever the answer (moves that failed after the
        // transaction are held and tried again), so the file must stay. But for a full disk:
        // the commit thread says so only of a change of which nothing is in (see `commit`),
        // and its body is removed at once. Each retry of a write on a full disk left one
        // more body in `tmp/` until a restart (a probe), so freeing room by deleting objects
        // could never catch up.
        let handed = std::sync::atomic::AtomicBool::new(false);
        let result = async {
            // A PUT asked before its body (`put_impl`); a copy or a completion asks here.
            if ready.is_none() {
                self.check_folder(bucket).await?;
            }
            let held = self.write_lock(bucket, key.as_str()).await;
            let b = self.bucket_row(bucket).await?;
            let versioning = versioning_from(&b.versioning);
            let mut change = Change::new(bucket, key);
            let (ino, mtime_ns) = match ready {
                Some(r) => {
                    change.unsynced_body = !r.synced;
                    (r.ino, r.mtime_ns)
                }
                None => {
                    if !key.is_dir_marker() {
                        let (root, bname, k) =
                            (self.confined.clone(), bucket.to_string(), key.clone());
                        tokio::task::spawn_blocking(move || prepare_key_path(&root, &bname, &k))
                            .await
                            .map_err(|e| Error::Index(format!("file task failed: {e}")))??;
                    }
                    file_facts(&tmp_abs)
                        .map_err(|e| Error::io(format!("checking {}", tmp_abs.display()), e))?
                }
            };
            let new_vid = if versioning == Versioning::Enabled {
                uuid::Uuid::new_v4().simple().to_string()
            } else {
                NULL_VERSION.to_owned()
            };
            let (mut pre, mut post) = (vec![], vec![]);
            if let Some(u) = &completes_upload {
                post.push(Step::RemoveDir {
                    unique: format!("{META_DIR}/uploads/{u}"),
                });
            }
            change.delete_upload = completes_upload;
            let latest = self.latest(bucket, key).await?;
            if let Some(old) = &latest {
                let retiring = Retiring {
                    new_is_null: new_vid == NULL_VERSION,
                    replaces_key_path: !key.is_dir_marker(),
                };
                match self.as_on_disk(bucket, key, old, &retiring).await? {
                    Some(old) => {
                        self.retire(bucket, &old, retiring, &mut change, &mut pre, &mut post)
                    }
                    None => change.deletes.push(old.seq),
                }
            }
            // A never-versioned bucket holds only the null version, and it is the latest.
            if new_vid == NULL_VERSION
                && versioning == Versioning::Suspended
                && let Some(n) = self
                    .index
                    .version(bucket.as_str(), key.as_str(), NULL_VERSION)
                    .await?
                && latest.as_ref().is_none_or(|l| l.seq != n.seq)
            {
                change.deletes.push(n.seq);
                if n.path.is_some() {
                    post.push(Step::Remove {
                        unique: Self::bytes_rel(bucket, &n),
                    });
                }
            }
            let (to, path) = if key.is_dir_marker() {
                let blob = Self::new_unique("blobs");
                (blob.clone(), Some(rel_in_meta(&blob)))
            } else {
                (Self::key_rel(bucket, key), None)
            };
            let row = VersionRow {
                bucket: bucket.to_string(),
                key: key.to_string(),
                seq: self.next_seq(),
                version_id: new_vid,
                is_latest: true,
                delete_marker: false,
                size: new.size as i64,
                etag: new.etag,
                mtime_ms: index::now_ms(),
                attrs: serde_json::to_string(&new.attrs).unwrap_or_else(|_| "{}".into()),
                checksum: new
                    .checksum
                    .as_ref()
                    .and_then(|c| serde_json::to_string(c).ok()),
                tags: tags_json(&new.tags),
                parts_count: new.parts_count.map(i64::from),
                file_ino: path.is_none().then_some(ino),
                file_mtime_ns: path.is_none().then_some(mtime_ns),
                // Moved by the rename that puts the file in place.
                file_ctime_ns: None,
                path,
            };
            change.steps = pre;
            change.steps.push(Step::MoveFrom {
                unique: tmp.clone(),
                to,
            });
            change.steps.extend(post);
            change.part_sizes = new.part_sizes.map(|s| (row.seq, s));
            change.inserts.push(row.clone());
            handed.store(true, std::sync::atomic::Ordering::Relaxed);
            self.commit(change, held).await?;
            super::row_to_meta(&row)
        }
        .await;
        if let Err(e) = &result
            && (e.is_storage_full() || !handed.load(std::sync::atomic::Ordering::Relaxed))
        {
            let _ = tokio::fs::remove_file(&tmp_abs).await;
        }
        result
    }

    /// The latest version as its file at the key's path now is, when it is about to be kept
    /// as a non-current version: a file a POSIX user changed since it was indexed is hashed
    /// (or given an unhashed ETag, see [`FsStore::hash_found`]) so the version keeps the
    /// bytes it holds with their own size and ETag, not the row of the bytes it replaced.
    /// `None` when no file of it is left (removed, or replaced by a symlink, a folder or a
    /// special file, behind Ferry's back): a version kept without bytes would be listed and
    /// never readable, so the caller forgets it.
    pub(super) async fn as_on_disk(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        old: &VersionRow,
        new: &Retiring,
    ) -> Result<Option<VersionRow>> {
        let replaced = old.version_id == NULL_VERSION && new.new_is_null;
        if replaced || old.delete_marker || old.path.is_some() {
            return Ok(Some(old.clone()));
        }
        let rel = Self::bytes_rel(bucket, old);
        let root = self.confined.clone();
        let hash = self.hash_found;
        let known = old.clone();
        let looked = tokio::task::spawn_blocking(move || -> io::Result<_> {
            let (opened, facts) = body::open(root.open_file(&rel)?)?;
            if known.indexes(facts.ino, facts.mtime_ns, facts.ctime_ns, facts.size) {
                return Ok(None);
            }
            let etag = if hash {
                hex::encode(opened.digests()?.md5)
            } else {
                super::unhashed_etag(facts.ino, facts.mtime_ns, facts.size)
            };
            Ok(Some((facts, etag)))
        })
        .await
        .map_err(|e| Error::Index(format!("file task failed: {e}")))?;
        let mut row = old.clone();
        match looked {
            Ok(None) => {}
            Ok(Some((facts, etag))) => {
                tracing::info!(store = %self.name, %bucket, %key, "re-indexed a file changed outside Ferry before keeping it as a version");
                row.size = facts.size;
                row.etag = etag;
                row.checksum = None;
                row.parts_count = None;
                row.mtime_ms = facts.mtime_ns.div_euclid(1_000_000);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::info!(store = %self.name, %bucket, %key, version = %old.version_id, "the file of a version was removed outside Ferry: the version is forgotten");
                return Ok(None);
            }
            Err(e) if body::changed_while_read(&e) => return Err(self.changed(key)),
            Err(e) => return Err(Error::io(format!("reading {bucket}/{key}"), e)),
        }
        Ok(Some(row))
    }

    /// Handles the previous latest version when a new version or marker takes its place:
    /// replaced outright when both are the null version, else kept as non-current (its bytes
    /// moved off the key path).
    pub(super) fn retire(
        &self,
        bucket: &BucketName,
        old: &VersionRow,
        new: Retiring,
        change: &mut Change,
        pre: &mut Vec<Step>,
        post: &mut Vec<Step>,
    ) {
        if old.version_id == NULL_VERSION && new.new_is_null {
            change.deletes.push(old.seq);
            if old.path.is_some() {
                post.push(Step::Remove {
                    unique: Self::bytes_rel(bucket, old),
                });
            } else if !old.delete_marker && !new.replaces_key_path {
                // New bytes replace the file by rename; when nothing does (the new version
                // is a delete marker), move the old file out.
                let trash = Self::new_unique("trash");
                pre.push(Step::MoveTo {
                    from: Self::bytes_rel(bucket, old),
                    unique: trash.clone(),
                });
                post.push(Step::Remove { unique: trash });
            }
            return;
        }
        let mut kept = old.clone();
        kept.is_latest = false;
        if !old.delete_marker && old.path.is_none() {
            let unique = Self::new_unique("versions");
            pre.push(Step::MoveTo {
                from: Self::bytes_rel(bucket, old),
                unique: unique.clone(),
            });
            kept.path = Some(rel_in_meta(&unique));
            kept.file_ino = None;
            kept.file_mtime_ns = None;
            kept.file_ctime_ns = None;
        }
        change.updates.push(kept);
    }

    /// Finds the version a request names; errors say what is missing.
    /// Dates the latest version of `key` `at`: its file's modification time (when the file
    /// is the one indexed) and the time listings show, in one commit.
    pub(super) async fn set_modified_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        at: time::OffsetDateTime,
    ) -> Result<()> {
        self.check_folder(bucket).await?;
        let held = self.write_lock(bucket, key.as_str()).await;
        let mut row = self.resolve(bucket, key, None).await?;
        if row.delete_marker {
            return Ok(());
        }
        let ns = i64::try_from(at.unix_timestamp_nanos()).unwrap_or(i64::MAX);
        if row.path.is_none() && !key.is_dir_marker() {
            let (root, rel) = (self.confined.clone(), Self::key_rel(bucket, key));
            let ((ino, was_mtime, was_ctime, size), (mtime_ns, ctime_ns)) =
                tokio::task::spawn_blocking(move || root.set_mtime(&rel, ns))
                    .await
                    .map_err(|e| Error::Index(format!("file task failed: {e}")))?
                    .map_err(|e| Error::io(format!("dating {key}"), e))?;
            // Another file than the one indexed (changed behind Ferry's back): it is indexed
            // again when next read; its row is left as it is.
            if !row.indexes(ino, was_mtime, was_ctime, size) {
                return Ok(());
            }
            row.file_mtime_ns = Some(mtime_ns);
            // Known from here on by its change time too (a copy's file in a directory is
            // dated this way: an edit there that puts size and mtime back shows). Not a
            // multipart object's: a chmod (which moves ctime) would make it one re-hashed,
            // whose MD5 cannot be compared with its ETag, so taken for changed bytes: its
            // user metadata and ETag lost for nothing (a review's find).
            row.file_ctime_ns = (!super::is_multipart_etag(&row.etag)).then_some(ctime_ns);
        }
        row.mtime_ms = ns.div_euclid(1_000_000);
        let mut change = Change::new(bucket, key);
        change.updates.push(row);
        self.commit(change, held).await
    }

    pub(super) async fn resolve(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<VersionRow> {
        self.bucket_row(bucket).await?;
        // Its index and its file disagree until the held move is done.
        if self.is_held(bucket, key.as_str()) {
            return Err(self.held_error(key.as_str()));
        }
        let row = match version_id {
            Some(v) => self
                .index
                .version(bucket.as_str(), key.as_str(), v)
                .await?
                .ok_or_else(|| Error::NoSuchVersion {
                    key: key.to_string(),
                    version_id: v.to_owned(),
                })?,
            None => self
                .latest(bucket, key)
                .await?
                .ok_or_else(|| Error::NoSuchKey {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    delete_marker: None,
                })?,
        };
        if row.delete_marker {
            return Err(match version_id {
                Some(v) => Error::IsDeleteMarker {
                    key: key.to_string(),
                    version_id: v.to_owned(),
                    last_modified: time::OffsetDateTime::from_unix_timestamp_nanos(
                        i128::from(row.mtime_ms) * 1_000_000,
                    )
                    .ok(),
                },
                None => Error::NoSuchKey {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    delete_marker: Some(row.version_id),
                },
            });
        }
        Ok(row)
    }

    /// Opens a version's bytes (one hop to the blocking pool: open, stat, and for a small
    /// file the read). A file at the key path that changed behind the store's back is
    /// re-indexed first, so the ETag and size served are the file's.
    pub(super) async fn open_version(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<(VersionRow, body::Opened)> {
        let _g = self.lock_for(bucket, key.as_str()).read().await;
        let mut row = self.resolve(bucket, key, version_id).await?;
        let rel = Self::bytes_rel(bucket, &row);
        let abs = self.root.join(&rel);
        let root = self.confined.clone();
        let opened = tokio::task::spawn_blocking(move || body::open(root.open_file(&rel)?))
            .await
            .map_err(|e| Error::Index(format!("file task failed: {e}")))?;
        let (opened, facts) = match opened {
            Ok(o) => o,
            // Gone, or no longer a regular file of the store (a folder, a symlink, a FIFO):
            // a current version's file removed behind the store's back is forgotten, as a
            // rescan would, so listings stop naming what cannot be read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                drop(_g);
                self.check_folder(bucket).await?;
                if row.path.is_none()
                    && let Err(e) = self.forget_on_read(bucket, key, row.seq).await
                {
                    tracing::warn!(store = %self.name, %bucket, %key, error = %e, "forgetting a file removed outside Ferry failed");
                }
                return Err(Error::NoSuchKey {
                    bucket: bucket.to_string(),
                    key: key.to_string(),
                    delete_marker: None,
                });
            }
            // Written to in place (by a POSIX user) while read: worth another try.
            Err(e) if body::changed_while_read(&e) => return Err(self.changed(key)),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                return Err(Error::Denied(format!(
                    "cannot read {key} in bucket {bucket}: the store may not read its file"
                )));
            }
            Err(e) => return Err(Error::io(format!("opening {}", abs.display()), e)),
        };
        let moved = !row.indexes(facts.ino, facts.mtime_ns, facts.ctime_ns, facts.size);
        // Every file of a replaced bucket folder looks changed: the folder is asked first
        // (it costs a stat only when a file changed), so another disk's file of that name is
        // neither served nor indexed as the object.
        if row.path.is_none() && moved {
            self.check_folder(bucket).await?;
        }
        if row.path.is_none() && moved && !self.hash_found {
            // Re-indexed from the opened file's facts; the copy that reads it hashes it.
            let etag = super::unhashed_etag(facts.ino, facts.mtime_ns, facts.size);
            let at = (facts.ino, facts.mtime_ns, facts.ctime_ns);
            self.refresh_file_row(bucket, key, &mut row, at, facts.size, etag, true)
                .await?;
            return Ok((row, opened));
        }
        if row.path.is_none() && self.hash_found && (moved || super::is_unhashed_etag(&row.etag)) {
            // Hashed from the file opened above, which is then what is served: a file
            // replaced meanwhile (a POSIX tool's temp file and rename) is not mixed in.
            let (d, opened) = tokio::task::spawn_blocking(move || {
                let d = opened.digests();
                (d, opened)
            })
            .await
            .map_err(|e| Error::Index(format!("file task failed: {e}")))?;
            let d = match d {
                Ok(d) => d,
                Err(e) if body::changed_while_read(&e) => return Err(self.changed(key)),
                Err(e) => return Err(Error::io(format!("reading {}", abs.display()), e)),
            };
            let (size, etag) = (d.size as i64, hex::encode(d.md5));
            let at = (facts.ino, facts.mtime_ns, facts.ctime_ns);
            self.refresh_file_row(bucket, key, &mut row, at, size, etag, moved)
                .await?;
            tracing::info!(store = %self.name, %bucket, %key, "re-indexed a file changed outside Ferry");
            return Ok((row, opened));
        }
        Ok((row, opened))
    }

    /// The answer to a read of a file a POSIX user is writing to in place: try again.
    fn changed(&self, key: &ObjectKey) -> Error {
        Error::Unavailable {
            store: self.name.clone(),
            message: format!("{key} changed while it was being read; try again"),
        }
    }

    pub(super) async fn get_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        let (row, file) = self
            .open_version(bucket, key, opts.version_id.as_deref())
            .await?;
        let meta = super::row_to_meta(&row)?;
        let (offset, len, range) = match opts.range {
            Some(r) => {
                let (first, last) = r
                    .resolve(meta.size)
                    .ok_or(Error::InvalidRange { size: meta.size })?;
                (first, last - first + 1, Some((first, last)))
            }
            None => (0, meta.size, None),
        };
        let body = file.into_stream(offset, len).await?;
        Ok(GetResult { meta, range, body })
    }

    pub(super) async fn copy_impl(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<ObjectMeta> {
        let (row, file) = self
            .open_version(src_bucket, src_key, opts.source_version_id.as_deref())
            .await?;
        let src = super::row_to_meta(&row)?;
        let src_tags: Tags = row
            .tags
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        let body = file.into_stream(0, src.size).await?;
        let put = PutOptions {
            attrs: opts.attrs.unwrap_or(src.attrs),
            tags: opts.tags.unwrap_or(src_tags),
            checksum_algorithm: opts
                .checksum_algorithm
                .or(src.checksum.as_ref().map(|c| c.algorithm)),
            size_hint: Some(src.size),
            source_md5: None,
            shared_digests: None,
            checksum_suffices: false,
            checksum: None,
            full_object_checksum: false,
            verify: None,
        };
        self.put_impl(dst_bucket, dst_key, body, put).await
    }
}
