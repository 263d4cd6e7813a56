//! Multipart uploads of the fs store. Parts are files under `.ferry/uploads/<id>/`, each
//! written under a fresh name and recorded in the index, so a re-uploaded part replaces the
//! old one atomically. Complete concatenates the parts into a temp file (the kernel copies,
//! `copy_file_range`), fsyncs it, and commits it like a PUT, removing the upload in the same
//! transaction.

use super::index::{self, PartRow, UploadRow, ms_to_time};
use super::object::NewVersion;
use super::{FsStore, META_DIR, body, tags_json};
use crate::store::digest::{composite_checksum, multipart_etag};
use crate::store::*;

const MIN_PART: u64 = 5 * 1024 * 1024;
pub const MAX_PART_NUMBER: u32 = 10_000;

impl FsStore {
    async fn upload_of(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<UploadRow> {
        self.bucket_row(bucket).await?;
        // Upload ids are ours (uuid hex); anything else cannot name an upload or a path.
        if upload_id.is_empty() || !upload_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NoSuchUpload {
                upload_id: upload_id.to_owned(),
            });
        }
        match self.index.upload(upload_id).await? {
            Some(u) if u.bucket == bucket.as_str() && u.key == key.as_str() => Ok(u),
            _ => Err(Error::NoSuchUpload {
                upload_id: upload_id.to_owned(),
            }),
        }
    }

    fn upload_dir(upload_id: &str) -> String {
        format!("{META_DIR}/uploads/{upload_id}")
    }

    pub(super) async fn create_multipart_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: PutOptions,
    ) -> Result<String> {
        self.bucket_row(bucket).await?;
        let upload_id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.root.join(Self::upload_dir(&upload_id));
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        self.index
            .insert_upload(&UploadRow {
                upload_id: upload_id.clone(),
                bucket: bucket.to_string(),
                key: key.to_string(),
                initiated_ms: index::now_ms(),
                attrs: serde_json::to_string(&opts.attrs).unwrap_or_else(|_| "{}".into()),
                tags: tags_json(&opts.tags),
                checksum_algorithm: opts.checksum_algorithm.map(|a| a.as_str().to_owned()),
            })
            .await?;
        Ok(upload_id)
    }

    pub(super) async fn upload_part_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<PartInfo> {
        if !(1..=MAX_PART_NUMBER).contains(&part_number) {
            return Err(Error::InvalidArgument(format!(
                "part number {part_number} is outside 1..=10000"
            )));
        }
        let upload = self.upload_of(bucket, key, upload_id).await?;
        let algorithm = opts.checksum_algorithm.or(upload
            .checksum_algorithm
            .as_deref()
            .and_then(ChecksumAlgorithm::parse));
        let file = format!("{part_number}-{}", uuid::Uuid::new_v4().simple());
        let path = self.root.join(Self::upload_dir(upload_id)).join(&file);
        let digests = body::receive(
            &path,
            body,
            body::Hash::new(algorithm, None),
            opts.size_hint,
            None,
            false,
        )
        .await?
        .digests;
        if let Some(verify) = opts.verify
            && let Err(e) = verify(&digests)
        {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
        let dir = self.root.join(Self::upload_dir(upload_id));
        super::intent::sync_dir(&dir)
            .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
        let row = PartRow {
            part_number: i64::from(part_number),
            size: digests.size as i64,
            etag: hex::encode(digests.md5),
            mtime_ms: index::now_ms(),
            checksum: digests
                .checksum
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok()),
            file,
        };
        if let Some(old) = self.index.upsert_part(upload_id, &row).await? {
            let _ =
                tokio::fs::remove_file(self.root.join(Self::upload_dir(upload_id)).join(old)).await;
        }
        Ok(PartInfo {
            part_number,
            etag: row.etag,
            size: digests.size,
            last_modified: ms_to_time(row.mtime_ms),
            checksum: digests.checksum,
        })
    }

    pub(super) async fn complete_multipart_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
    ) -> Result<ObjectMeta> {
        let upload = self.upload_of(bucket, key, upload_id).await?;
        if parts.is_empty() {
            return Err(Error::InvalidArgument(
                "a multipart upload needs at least one part".into(),
            ));
        }
        if parts
            .windows(2)
            .any(|w| w[0].part_number >= w[1].part_number)
        {
            return Err(Error::InvalidPartOrder);
        }
        // Stored parts are read in pages so memory stays bounded for 10,000 parts.
        let mut chosen: Vec<PartRow> = Vec::with_capacity(parts.len());
        let mut stored = self
            .index
            .parts(upload_id, 0, 1000)
            .await?
            .into_iter()
            .peekable();
        let mut after = 0i64;
        for want in parts {
            loop {
                if stored.peek().is_none() {
                    let next = self.index.parts(upload_id, after, 1000).await?;
                    if next.is_empty() {
                        break;
                    }
                    stored = next.into_iter().peekable();
                }
                match stored.peek() {
                    Some(p) if p.part_number < i64::from(want.part_number) => {
                        after = p.part_number;
                        stored.next();
                    }
                    _ => break,
                }
            }
            match stored.peek() {
                Some(p)
                    if p.part_number == i64::from(want.part_number)
                        && p.etag == want.etag.trim_matches('"') =>
                {
                    after = p.part_number;
                    chosen.extend(stored.next());
                }
                _ => {
                    return Err(Error::InvalidPart {
                        part_number: want.part_number,
                    });
                }
            }
        }
        for p in &chosen[..chosen.len() - 1] {
            if (p.size as u64) < MIN_PART {
                return Err(Error::EntityTooSmall {
                    part_number: p.part_number as u32,
                });
            }
        }
        let etag = multipart_etag(chosen.iter().map(|p| p.etag.as_str()))
            .ok_or_else(|| Error::Index("a stored part ETag is not hex".into()))?;
        let algorithm = upload
            .checksum_algorithm
            .as_deref()
            .and_then(ChecksumAlgorithm::parse);
        let part_sums: Vec<Checksum> = chosen
            .iter()
            .filter_map(|p| {
                p.checksum
                    .as_deref()
                    .and_then(|c| serde_json::from_str(c).ok())
            })
            .collect();
        let checksum = match algorithm {
            Some(a)
                if part_sums.len() == chosen.len()
                    && part_sums.iter().all(|c| c.algorithm == a) =>
            {
                composite_checksum(a, part_sums.iter().map(|c| c.value.as_str()))
            }
            _ => None,
        };
        let tmp = Self::new_unique("tmp");
        let tmp_abs = self.root.join(&tmp);
        let dir = self.root.join(Self::upload_dir(upload_id));
        let files: Vec<String> = chosen.iter().map(|p| p.file.clone()).collect();
        let size = tokio::task::spawn_blocking({
            let tmp_abs = tmp_abs.clone();
            move || concat(&dir, &files, &tmp_abs)
        })
        .await
        .map_err(|e| Error::Index(format!("file task failed: {e}")))?
        .map_err(|e| Error::io(format!("assembling upload {upload_id}"), e))?;
        let new = NewVersion {
            size,
            etag,
            attrs: serde_json::from_str(&upload.attrs).unwrap_or_default(),
            checksum,
            tags: upload
                .tags
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
                .unwrap_or_default(),
            parts_count: Some(chosen.len() as u32),
        };
        let mut meta = self
            .commit_version(bucket, key, tmp, new, Some(upload_id.to_owned()), None)
            .await?;
        meta.parts_count = Some(chosen.len() as u32);
        Ok(meta)
    }

    pub(super) async fn abort_multipart_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<()> {
        self.upload_of(bucket, key, upload_id).await?;
        self.index.delete_upload(upload_id).await?;
        let _ = tokio::fs::remove_dir_all(self.root.join(Self::upload_dir(upload_id))).await;
        Ok(())
    }

    pub(super) async fn list_parts_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        marker: Option<u32>,
        max_parts: usize,
    ) -> Result<PartsPage> {
        let upload = self.upload_of(bucket, key, upload_id).await?;
        let checksum_algorithm = upload
            .checksum_algorithm
            .as_deref()
            .and_then(ChecksumAlgorithm::parse);
        let rows = self
            .index
            .parts(upload_id, i64::from(marker.unwrap_or(0)), max_parts + 1)
            .await?;
        let truncated = rows.len() > max_parts;
        let parts: Vec<PartInfo> = rows
            .into_iter()
            .take(max_parts)
            .map(|p| PartInfo {
                part_number: p.part_number as u32,
                etag: p.etag,
                size: p.size as u64,
                last_modified: ms_to_time(p.mtime_ms),
                checksum: p
                    .checksum
                    .as_deref()
                    .and_then(|c| serde_json::from_str(c).ok()),
            })
            .collect();
        let next = if truncated {
            parts.last().map(|p| p.part_number)
        } else {
            None
        };
        Ok(PartsPage {
            parts,
            next_part_number_marker: next,
            checksum_algorithm,
        })
    }

    pub(super) async fn list_uploads_impl(
        &self,
        bucket: &BucketName,
        q: &UploadsQuery,
    ) -> Result<UploadsPage> {
        self.bucket_row(bucket).await?;
        let after = q
            .key_marker
            .as_deref()
            .map(|k| (k, q.upload_id_marker.as_deref().unwrap_or("")));
        let rows = self
            .index
            .list_uploads(bucket.as_str(), &q.prefix, after, q.max_uploads + 1)
            .await?;
        let truncated = rows.len() > q.max_uploads;
        let mut uploads = Vec::new();
        for u in rows.into_iter().take(q.max_uploads) {
            uploads.push(UploadInfo {
                key: ObjectKey::parse(&u.key)?,
                upload_id: u.upload_id,
                initiated: ms_to_time(u.initiated_ms),
            });
        }
        let (nk, nu) = match (truncated, uploads.last()) {
            (true, Some(u)) => (Some(u.key.to_string()), Some(u.upload_id.clone())),
            _ => (None, None),
        };
        Ok(UploadsPage {
            uploads,
            next_key_marker: nk,
            next_upload_id_marker: nu,
        })
    }
}

/// Concatenates part files into `out` and fsyncs it; returns its size.
fn concat(dir: &std::path::Path, files: &[String], out: &std::path::Path) -> std::io::Result<u64> {
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)?;
    let mut total = 0;
    for f in files {
        let mut r = std::fs::File::open(dir.join(f))?;
        total += std::io::copy(&mut r, &mut w)?;
    }
    w.sync_all()?;
    Ok(total)
}
