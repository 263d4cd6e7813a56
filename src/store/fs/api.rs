//! The [`Store`] trait over the fs store: bucket operations here, each object, listing and
//! multipart operation handed to the module that owns it (`object`, `list`, `multipart`,
//! `delete`).

use async_trait::async_trait;

use super::index::ms_to_time;
use super::*;

/// Refuses a key that cannot be a path beneath its bucket's folder (`a//b`, `../x`, a segment
/// over 255 bytes): S3 takes them, this store cannot hold them, and must never resolve them.
fn path(key: &ObjectKey) -> Result<()> {
    key.check_path().map_err(Error::from)
}

/// [`path`], for a key being made: not under `.ferry/` either (see
/// [`ObjectKey::check_new_path`]). Such files found in a bucket's folder are still served.
fn new_path(key: &ObjectKey) -> Result<()> {
    key.check_new_path().map_err(Error::from)
}

#[async_trait]
impl Store for FsStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn caps(&self) -> Caps {
        Caps {
            versioning: true,
            tagging: true,
            path_semantics: true,
            local: true,
            keeps_modified: true,
        }
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        Ok(self
            .index
            .buckets()
            .await?
            .into_iter()
            .map(|b| BucketInfo {
                name: b.name,
                created: ms_to_time(b.created_ms),
            })
            .collect())
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.writes()?;
        // Asked first: making the folder of a bucket whose folder is missing (moved aside, a
        // filesystem not mounted) would turn "missing" into "replaced", which a rescan
        // --adopt would take for the bucket's folder (found by a probe: `aws s3 mb`).
        if self.index.bucket(bucket.as_str()).await?.is_some() {
            return Err(Error::BucketAlreadyExists {
                bucket: bucket.to_string(),
            });
        }
        let dir = self.root.join(bucket.as_str());
        // A POSIX user's folder becomes the bucket; anything else there is not taken over
        // (a symlink would lead out of the store, a file is someone's data).
        let existed = match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => true,
            Ok(m) => {
                let what = if m.file_type().is_symlink() {
                    "a symlink (which Ferry does not follow)"
                } else if m.is_file() {
                    "a file"
                } else {
                    "a special file"
                };
                tracing::warn!(store = %self.name, path = %dir.display(), "CreateBucket refused: {what} where the bucket's folder would be");
                return Err(Error::BucketNameTaken {
                    bucket: bucket.to_string(),
                    why: format!(
                        "the store holds {what} where its folder would be; remove it or pick another name"
                    ),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io(format!("checking {}", dir.display()), e)),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        intent::sync_dir(&self.root).map_err(|e| Error::io("syncing the store root", e))?;
        if !self
            .index
            .insert_bucket(bucket.as_str(), index::now_ms())
            .await?
        {
            return Err(Error::BucketAlreadyExists {
                bucket: bucket.to_string(),
            });
        }
        self.record_folder(bucket).await?;
        // A user's folder taken as the bucket is served with what it holds at once.
        if existed {
            self.rescan_one(bucket).await?;
        }
        Ok(())
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.writes()?;
        // A folder that is not the bucket's (a symlink leads out of the store) is not emptied.
        self.check_folder(bucket).await?;
        let not_empty = || Error::BucketNotEmpty {
            bucket: bucket.to_string(),
        };
        if self.index.bucket_has_versions(bucket.as_str()).await? {
            return Err(not_empty());
        }
        let dir = self.root.join(bucket.as_str());
        // Files the index does not know yet (put there by a POSIX user) keep it too; checked
        // before any upload is aborted, so a refused delete loses nothing.
        if scan::has_files(&dir).map_err(|e| Error::io(format!("checking {}", dir.display()), e))? {
            return Err(not_empty());
        }
        // Unfinished multipart uploads do not keep a bucket alive on S3: they go with it.
        let mut after: Option<(String, String)> = None;
        loop {
            let cursor = after.as_ref().map(|(k, u)| (k.as_str(), u.as_str()));
            let uploads = self
                .index
                .list_uploads(bucket.as_str(), "", cursor, 1000)
                .await?;
            let Some(last) = uploads.last() else { break };
            after = Some((last.key.clone(), last.upload_id.clone()));
            for u in uploads {
                let aborted = match ObjectKey::parse(&u.key) {
                    Ok(key) => {
                        self.freeing(|| self.abort_multipart_impl(bucket, &key, &u.upload_id))
                            .await
                    }
                    Err(_) => Err(Error::NoSuchUpload {
                        upload_id: u.upload_id.clone(),
                    }),
                };
                match aborted {
                    Ok(()) => {}
                    // A row its own checks do not take: forget it (its files are in the
                    // store's meta folder, never in the bucket's).
                    Err(Error::NoSuchUpload { .. }) => {
                        self.index.delete_upload(&u.upload_id).await?
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // An object written meanwhile keeps the bucket.
        if !self.index.bucket_is_empty(bucket.as_str()).await? {
            return Err(not_empty());
        }
        // Only empty directories may remain (left by deleted keys); anything else is data a
        // POSIX user put there, which the index does not know yet.
        if let Err(e) = scan::remove_empty_tree(&dir) {
            return Err(if e.kind() == std::io::ErrorKind::DirectoryNotEmpty {
                Error::BucketNotEmpty {
                    bucket: bucket.to_string(),
                }
            } else {
                Error::io(format!("removing {}", dir.display()), e)
            });
        }
        // An object committed since the check above keeps the bucket (its file may have
        // made the folder again): checked and deleted in one step of the index's writer.
        self.forget_bucket(bucket);
        if !self
            .freeing(|| self.index.delete_bucket_if_empty(bucket.as_str()))
            .await?
        {
            return Err(not_empty());
        }
        self.forget_bucket(bucket);
        Ok(())
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<BucketInfo> {
        let b = self.bucket_row(bucket).await?;
        self.check_folder(bucket).await?;
        Ok(BucketInfo {
            name: b.name,
            created: ms_to_time(b.created_ms),
        })
    }

    async fn get_versioning(&self, bucket: &BucketName) -> Result<Versioning> {
        Ok(versioning_from(&self.bucket_row(bucket).await?.versioning))
    }

    async fn set_versioning(&self, bucket: &BucketName, state: Versioning) -> Result<()> {
        self.writes()?;
        let current = versioning_from(&self.bucket_row(bucket).await?.versioning);
        if state == Versioning::Unversioned && current != Versioning::Unversioned {
            return Err(Error::InvalidArgument(
                "versioning cannot be turned off once enabled; suspend it instead".into(),
            ));
        }
        self.index
            .set_versioning(bucket.as_str(), versioning_str(state))
            .await?;
        self.forget_bucket(bucket);
        Ok(())
    }

    async fn get_bucket_tags(&self, bucket: &BucketName) -> Result<Option<Tags>> {
        let b = self.bucket_row(bucket).await?;
        Ok(b.tags.and_then(|t| serde_json::from_str(&t).ok()))
    }

    async fn put_bucket_tags(&self, bucket: &BucketName, tags: Option<Tags>) -> Result<()> {
        self.writes()?;
        self.bucket_row(bucket).await?;
        let json = tags.as_ref().and_then(|t| serde_json::to_string(t).ok());
        self.index
            .set_bucket_tags(bucket.as_str(), json.as_deref())
            .await?;
        self.forget_bucket(bucket);
        Ok(())
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        self.writes()?;
        new_path(key)?;
        self.room_for_writes().await?;
        self.put_impl(bucket, key, body, opts).await
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        path(key)?;
        self.get_impl(bucket, key, opts).await
    }

    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<ObjectMeta> {
        path(key)?;
        let row = {
            let _g = self.lock_for(bucket, key.as_str()).read().await;
            self.resolve(bucket, key, version_id).await?
        };
        // A file at the key's path that a POSIX user changed or removed answers HEAD as it
        // answers GET (one stat tells; the GET path re-indexes it).
        if row.path.is_none() {
            let root = self.confined.clone();
            let rel = Self::bytes_rel(bucket, &row);
            let facts = tokio::task::spawn_blocking(move || root.facts(&rel))
                .await
                .map_err(|e| Error::Index(format!("file task failed: {e}")))?;
            let same = match facts {
                Ok((ino, mtime_ns, ctime_ns, size)) => row.indexes(ino, mtime_ns, ctime_ns, size),
                // Forgotten as the GET path forgets it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.check_folder(bucket).await?;
                    if let Err(e) = self.forget_on_read(bucket, key, row.seq).await {
                        tracing::warn!(store = %self.name(), %bucket, %key, error = %e, "forgetting a file removed outside Ferry failed");
                    }
                    return Err(Error::NoSuchKey {
                        bucket: bucket.to_string(),
                        key: key.to_string(),
                        delete_marker: None,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(Error::Denied(format!(
                        "cannot read {key} in bucket {bucket}: the store may not read its file"
                    )));
                }
                // Whatever it is, the GET path says it.
                Err(_) => false,
            };
            if !same {
                let (row, _) = self.open_version(bucket, key, version_id).await?;
                return self.meta_of(&row);
            }
        }
        self.meta_of(&row)
    }

    async fn delete_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<DeleteResult> {
        self.writes()?;
        if path(key).is_err() && version_id.is_none() {
            // A key this store cannot hold is not here: its delete is done (S3 answers 204
            // for a key it lacks), and nothing is resolved from it.
            self.bucket_row(bucket).await?;
            return Ok(DeleteResult {
                version_id: None,
                delete_marker: false,
            });
        }
        path(key)?;
        self.freeing(|| self.delete_impl(bucket, key, version_id))
            .await
    }

    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<ObjectMeta> {
        self.writes()?;
        path(src_key)?;
        new_path(dst_key)?;
        self.room_for_writes().await?;
        self.copy_impl(src_bucket, src_key, dst_bucket, dst_key, opts)
            .await
    }

    async fn get_object_tags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
    ) -> Result<(String, Tags)> {
        path(key)?;
        let _g = self.lock_for(bucket, key.as_str()).read().await;
        let row = self.resolve(bucket, key, version_id).await?;
        let tags = row
            .tags
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        Ok((row.version_id, tags))
    }

    async fn put_object_tags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        tags: Tags,
    ) -> Result<String> {
        self.writes()?;
        path(key)?;
        self.check_folder(bucket).await?;
        let held = self.write_lock(bucket, key.as_str()).await;
        let mut row = self.resolve(bucket, key, version_id).await?;
        row.tags = tags_json(&tags);
        let mut change = Change::new(bucket, key);
        let vid = row.version_id.clone();
        change.updates.push(row);
        self.commit(change, held).await?;
        Ok(vid)
    }

    async fn set_modified(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        at: OffsetDateTime,
    ) -> Result<()> {
        self.writes()?;
        path(key)?;
        self.set_modified_impl(bucket, key, at).await
    }

    async fn list_objects(&self, bucket: &BucketName, query: &ListQuery) -> Result<ListPage> {
        // A bucket whose folder is missing or replaced lists nothing it could serve: 503, as
        // its objects answer, not the index's rows (a mirror job would take an empty or
        // stale listing at face value).
        self.check_folder(bucket).await?;
        self.list_impl(bucket, query).await
    }

    async fn list_versions(
        &self,
        bucket: &BucketName,
        query: &VersionsQuery,
    ) -> Result<VersionsPage> {
        self.check_folder(bucket).await?;
        self.list_versions_impl(bucket, query).await
    }

    async fn create_multipart(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: PutOptions,
    ) -> Result<String> {
        self.writes()?;
        new_path(key)?;
        self.create_multipart_impl(bucket, key, opts).await
    }

    async fn upload_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<PartInfo> {
        self.writes()?;
        path(key)?;
        self.room_for_writes().await?;
        let r = self
            .upload_part_impl(bucket, key, upload_id, part_number, body, opts)
            .await;
        match r {
            // The upload was aborted or completed while the part was written (its folder
            // went away under it): say so, as S3 does, rather than report the I/O error.
            Err(Error::Io { .. }) | Ok(_)
                if matches!(
                    self.upload_of(bucket, key, upload_id).await,
                    Err(Error::NoSuchUpload { .. })
                ) =>
            {
                // A part recorded after its upload went: forget its row too.
                let _ = self.index.delete_upload(upload_id).await;
                Err(Error::NoSuchUpload {
                    upload_id: upload_id.to_owned(),
                })
            }
            r => r,
        }
    }

    async fn complete_multipart(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
        checksum: Option<&Checksum>,
    ) -> Result<ObjectMeta> {
        self.writes()?;
        path(key)?;
        // Completing may copy parts into a new file.
        self.room_for_writes().await?;
        self.complete_multipart_impl(bucket, key, upload_id, parts, checksum)
            .await
    }

    async fn abort_multipart(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<()> {
        self.writes()?;
        path(key)?;
        self.freeing(|| self.abort_multipart_impl(bucket, key, upload_id))
            .await
    }

    async fn part_range(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        part: u32,
    ) -> Result<PartRange> {
        path(key)?;
        self.part_range_impl(bucket, key, version_id, part).await
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part_number_marker: Option<u32>,
        max_parts: usize,
    ) -> Result<PartsPage> {
        path(key)?;
        self.list_parts_impl(bucket, key, upload_id, part_number_marker, max_parts)
            .await
    }

    async fn list_uploads(&self, bucket: &BucketName, query: &UploadsQuery) -> Result<UploadsPage> {
        self.list_uploads_impl(bucket, query).await
    }
}
