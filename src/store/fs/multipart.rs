//! Multipart uploads of the fs store. Parts live under `.ferry/uploads/<id>/`: most are
//! written straight to their place in the finished object (see [`assembly`]), the rest to
//! files of their own under fresh names; either way a part counts once it is recorded in the
//! index, so a re-uploaded part replaces the old one atomically. Complete finishes the
//! assembly file in place when the parts allow it, and otherwise concatenates the parts into
//! a temp file (the kernel copies, `copy_file_range`); the result is synced and committed like
//! a PUT, removing the upload in the same transaction.

use super::assembly;
use super::index::{self, PartRow, UploadRow, ms_to_time};
use super::object::NewVersion;
use super::part_checksums::{check_claim, checksum_column, claim_holds, upload_checksum};
use super::{FsStore, META_DIR, body, tags_json};
use crate::store::digest::{composite_checksum, full_object_checksum, multipart_etag};
use crate::store::*;

const MIN_PART: u64 = 5 * 1024 * 1024;
pub const MAX_PART_NUMBER: u32 = 10_000;

impl FsStore {
    pub(super) async fn upload_of(
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

    /// Claims the part's place in the upload's assembly file when it can go there (see
    /// [`assembly`]): a part of declared size larger than a small body whose number is not
    /// already placed (checked once the region is held, so no writer can record it between).
    async fn place(
        &self,
        upload_id: &str,
        part_number: u32,
        size: Option<u64>,
    ) -> Result<Option<assembly::Slot>> {
        let Some(len) = size.filter(|n| *n > body::SMALL_BODY) else {
            return Ok(None);
        };
        let derived = if self.placements.knows(upload_id) {
            None
        } else {
            self.derive_stride(upload_id).await?
        };
        let Some(slot) = self
            .placements
            .claim(upload_id, part_number, len, MIN_PART, derived)
        else {
            return Ok(None);
        };
        // Checked once the region is held: a part recorded as placed is never written over,
        // and an upload completed meanwhile (its row is gone) gets nothing placed.
        let n = i64::from(part_number);
        let existing = self.index.parts(upload_id, n - 1, 1).await?;
        if existing
            .first()
            .is_some_and(|p| p.part_number == n && assembly::placed_offset(&p.file).is_some())
            || self.index.upload(upload_id).await?.is_none()
        {
            return Ok(None);
        }
        Ok(Some(slot))
    }

    /// The stride the upload's placed parts were written with, from the index (after a
    /// restart): a placed part after the first says it; the first alone, by its size.
    async fn derive_stride(&self, upload_id: &str) -> Result<Option<u64>> {
        let (mut after, mut first) = (0i64, None);
        loop {
            let rows = self.index.parts(upload_id, after, 1000).await?;
            let Some(last) = rows.last() else {
                return Ok(first);
            };
            after = last.part_number;
            for p in &rows {
                match assembly::stride_of(p.part_number, p.size, &p.file) {
                    Some(s) if p.part_number > 1 => return Ok(Some(s)),
                    Some(s) => first = Some(s),
                    None => {}
                }
            }
        }
    }

    /// Whether the chosen parts can be finished in the assembly file (see [`assembly`]):
    /// parts 1..N, all of part 1's size but the last (which is no larger), each placed at its
    /// place or not placed at all, one at least placed, and no placed part after them (the
    /// file is cut at their end). Returns the object's size.
    async fn in_place(&self, upload_id: &str, chosen: &[PartRow]) -> Result<Option<u64>> {
        let Some(stride) = chosen.first().map(|p| p.size as u64) else {
            return Ok(None);
        };
        let mut any = false;
        for (i, p) in chosen.iter().enumerate() {
            let size = p.size as u64;
            let fits = if i + 1 == chosen.len() {
                size <= stride
            } else {
                size == stride
            };
            if p.part_number != i as i64 + 1 || !fits {
                return Ok(None);
            }
            match assembly::placed_offset(&p.file) {
                Some(o) if o == i as u64 * stride => any = true,
                Some(_) => return Ok(None),
                None => {}
            }
        }
        if !any {
            return Ok(None);
        }
        let mut after = chosen.len() as i64;
        loop {
            let rows = self.index.parts(upload_id, after, 1000).await?;
            let Some(last) = rows.last() else { break };
            after = last.part_number;
            if rows
                .iter()
                .any(|p| assembly::placed_offset(&p.file).is_some())
            {
                return Ok(None);
            }
        }
        Ok(Some(chosen.iter().map(|p| p.size as u64).sum()))
    }

    pub(super) async fn create_multipart_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: PutOptions,
    ) -> Result<String> {
        self.check_folder(bucket).await?;
        // Time-ordered (v7): uploads of one key list by id, which is then their age, as S3
        // lists them by initiation time.
        let upload_id = uuid::Uuid::now_v7().simple().to_string();
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
                checksum_algorithm: checksum_column(
                    opts.checksum_algorithm,
                    opts.full_object_checksum,
                ),
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
        let algorithm = match (opts.checksum_algorithm, upload_checksum(&upload).0) {
            // S3 refuses a part checksummed otherwise than its upload: the finished object
            // could not have the upload's checksum.
            (Some(part), Some(up)) if part != up => {
                return Err(Error::InvalidRequest(format!(
                    "Checksum Type mismatch occurred, expected checksum Type: {}, actual \
                     checksum Type: {}",
                    up.as_str().to_ascii_lowercase(),
                    part.as_str().to_ascii_lowercase()
                )));
            }
            (part, up) => part.or(up),
        };
        let dir = self.root.join(Self::upload_dir(upload_id));
        let hash = body::Hash::new(algorithm, None);
        // Held until the part is recorded: no other writer touches its region meanwhile.
        let slot = self.place(upload_id, part_number, opts.size_hint).await?;
        let (file, digests) = match (&slot, opts.size_hint) {
            (Some(slot), Some(len)) => {
                let path = dir.join(assembly::ASSEMBLY);
                let keep = slot.token();
                let received = body::receive_at(&path, slot.offset, body, hash, len, keep).await?;
                (assembly::placed_name(slot.offset), received.digests)
            }
            _ => {
                let file = format!("{part_number}-{}", uuid::Uuid::new_v4().simple());
                let path = dir.join(&file);
                let received =
                    body::receive(&path, body, hash, opts.size_hint, None, false).await?;
                (file, received.digests)
            }
        };
        if let Some(verify) = opts.verify
            && let Err(e) = verify(&digests)
        {
            if assembly::placed_offset(&file).is_none() {
                let _ = tokio::fs::remove_file(dir.join(&file)).await;
            }
            return Err(e);
        }
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
        if let Some(old) = self.index.upsert_part(upload_id, &row).await?
            && assembly::placed_offset(&old).is_none()
        {
            let _ = tokio::fs::remove_file(dir.join(old)).await;
        }
        drop(slot);
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
        claimed: Option<&Checksum>,
    ) -> Result<ObjectMeta> {
        if let Err(e) = self.upload_of(bucket, key, upload_id).await {
            return self
                .completed_before(bucket, key, upload_id, parts, e)
                .await;
        }
        // The finished object may be the assembly file itself: one completion at a time, no
        // part placed in it from here on, and the parts chosen below are read once none is
        // being written (or the wait ran out: then they are concatenated).
        let (completing, idle) = self.placements.complete(upload_id).await;
        // Again: a completion before this one may have finished the upload.
        let upload = match self.upload_of(bucket, key, upload_id).await {
            Ok(u) => u,
            Err(e) => {
                return self
                    .completed_before(bucket, key, upload_id, parts, e)
                    .await;
            }
        };
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
                        && p.etag == want.etag.trim_matches('"')
                        && claim_holds(want.claimed.as_ref(), p.checksum.as_deref()) =>
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
        let (algorithm, full_object) = upload_checksum(&upload);
        let part_sums: Vec<(Checksum, u64)> = chosen
            .iter()
            .filter_map(|p| {
                let c: Checksum = serde_json::from_str(p.checksum.as_deref()?).ok()?;
                Some((c, p.size as u64))
            })
            .collect();
        let checksum = match algorithm {
            Some(a)
                if part_sums.len() == chosen.len()
                    && part_sums.iter().all(|(c, _)| c.algorithm == a) =>
            {
                if full_object {
                    // Combining CRCs costs a few matrix products per part: off the async
                    // threads for uploads of thousands of parts.
                    tokio::task::spawn_blocking(move || {
                        let sums = part_sums.iter().map(|(c, n)| (c.value.as_str(), *n));
                        full_object_checksum(a, sums)
                    })
                    .await
                    .map_err(|e| Error::Index(format!("checksum task failed: {e}")))?
                } else {
                    composite_checksum(a, part_sums.iter().map(|(c, _)| c.value.as_str()))
                }
            }
            _ => None,
        };
        check_claim(claimed, checksum.as_ref(), algorithm)?;
        let tmp = Self::new_unique("tmp");
        let tmp_abs = self.root.join(&tmp);
        let dir = self.root.join(Self::upload_dir(upload_id));
        let in_place = if idle {
            self.in_place(upload_id, &chosen).await?
        } else {
            None
        };
        let files: Vec<(String, u64)> = chosen
            .iter()
            .map(|p| (p.file.clone(), p.size as u64))
            .collect();
        let size = tokio::task::spawn_blocking({
            let tmp_abs = tmp_abs.clone();
            // Held by this thread too: a cancelled request does not end the completion while
            // the file is being finished.
            let completing = completing.clone();
            move || {
                match in_place {
                    Some(total) => {
                        let stride = files.first().map_or(0, |f| f.1);
                        let patches: Vec<(std::path::PathBuf, u64, u64)> = files
                            .iter()
                            .enumerate()
                            .filter(|(_, f)| assembly::placed_offset(&f.0).is_none())
                            .map(|(i, f)| (dir.join(&f.0), i as u64 * stride, f.1))
                            .collect();
                        let out = dir.join(assembly::ASSEMBLY);
                        let finished = assembly::finish(&out, &patches, total, &tmp_abs);
                        // Linked as a version's file (or perhaps): never placed in again.
                        completing.seal();
                        finished.map(|()| total)
                    }
                    None => concat(&dir, &files, &tmp_abs),
                }
                // What was assembled of a body that failed (a full disk) is not kept in `tmp/`
                // till a restart: every retry would leave one more.
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp_abs);
                })
            }
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
            part_sizes: Some(super::layout::encode(chosen.iter().map(|p| p.size as u64))),
        };
        let mut meta = self
            .commit_version(bucket, key, tmp, new, Some(upload_id.to_owned()), None)
            .await?;
        completing.done();
        meta.parts_count = Some(chosen.len() as u32);
        Ok(meta)
    }

    /// A completion of an upload that is not there (`missing`): if it was completed within
    /// the last day, with these `parts`, into a version that is still as it made it, the
    /// same answer again (S3's answer to a retried completion); otherwise `missing`. A
    /// completion naming other parts is not a retry: it would be told that an object it did
    /// not ask for is what it made.
    async fn completed_before(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[CompletedPart],
        missing: Error,
    ) -> Result<ObjectMeta> {
        if !matches!(missing, Error::NoSuchUpload { .. }) {
            return Err(missing);
        }
        let Some(done) = self.index.completed_upload(upload_id).await? else {
            return Err(missing);
        };
        let asked = crate::store::digest::multipart_etag(parts.iter().map(|p| p.etag.as_str()));
        if done.bucket != bucket.as_str()
            || done.key != key.as_str()
            || asked.as_deref() != Some(done.etag.trim_matches('"'))
        {
            return Err(missing);
        }
        match self.head_object(bucket, key, Some(&done.version_id)).await {
            Ok(meta) if meta.etag == done.etag && !meta.delete_marker => Ok(meta),
            _ => Err(missing),
        }
    }

    pub(super) async fn abort_multipart_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<()> {
        self.upload_of(bucket, key, upload_id).await?;
        // One at a time with completions (and after parts being placed): an abort racing a
        // completion must neither pull the parts from under it (a 500) nor be acknowledged
        // beside it. A completion that finished first leaves no upload to abort.
        let (completing, _idle) = self.placements.complete(upload_id).await;
        self.upload_of(bucket, key, upload_id).await?;
        self.index.delete_upload(upload_id).await?;
        let _ = tokio::fs::remove_dir_all(self.root.join(Self::upload_dir(upload_id))).await;
        completing.seal();
        drop(completing);
        self.placements.forget(upload_id);
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
        let (checksum_algorithm, full_object_checksum) = upload_checksum(&upload);
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
            full_object_checksum,
            storage_class: serde_json::from_str::<ObjectAttrs>(&upload.attrs)
                .ok()
                .and_then(|a| a.storage_class),
        })
    }
}

/// Writes the parts (file name and size; a placed part is read from the assembly file) one
/// after the other into a new file `out`, synced. Blocking.
fn concat(
    dir: &std::path::Path,
    files: &[(String, u64)],
    out: &std::path::Path,
) -> std::io::Result<u64> {
    let w = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)?;
    let mut total = 0;
    for (f, size) in files {
        let (r, from) = match assembly::placed_offset(f) {
            Some(offset) => (std::fs::File::open(dir.join(assembly::ASSEMBLY))?, offset),
            None => (std::fs::File::open(dir.join(f))?, 0),
        };
        assembly::copy_range(&r, from, &w, total, *size)?;
        total += size;
    }
    w.sync_all()?;
    Ok(total)
}
