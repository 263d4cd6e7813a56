//! Moving one object between stores, and comparing two listings.
//!
//! Owns: [`copy_current`] (make a destination key equal to a source key's current state:
//! stream the body with its metadata and tags, multipart for large objects, or delete it
//! when the source has none) and [`diff`] (walk two listings in lock step). Does not own:
//! when to copy (journal, jobs) or retries (callers ask [`store::Error::is_retryable`]).

pub mod diff;

use crate::store::{
    self, BucketName, ByteRange, CompletedPart, GetOptions, ObjectKey, PutOptions, Store,
};

/// Objects above this size are copied as a multipart upload, part by part.
pub const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
/// Part size of those uploads.
pub const PART_SIZE: u64 = 16 * 1024 * 1024;

/// What [`copy_current`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The object was copied; this many bytes moved.
    Object(u64),
    /// The source has no current version: the destination's was deleted (or was absent).
    Deleted,
}

/// Makes `dst/dk` equal to the current state of `src/sk`.
pub async fn copy_current(
    src: &dyn Store,
    sb: &BucketName,
    sk: &ObjectKey,
    dst: &dyn Store,
    db: &BucketName,
    dk: &ObjectKey,
) -> store::Result<Copied> {
    let got = match src.get_object(sb, sk, GetOptions::default()).await {
        Ok(g) => g,
        Err(store::Error::NoSuchKey { .. }) => {
            dst.delete_object(db, dk, None).await?;
            return Ok(Copied::Deleted);
        }
        Err(e) => return Err(e),
    };
    let meta = got.meta;
    let tags = if meta.tag_count > 0 && src.caps().tagging {
        src.get_object_tags(sb, sk, Some(&meta.version_id)).await?.1
    } else {
        Vec::new()
    };
    let algo = meta
        .checksum
        .as_ref()
        .filter(|c| !c.composite)
        .map(|c| c.algorithm);
    if meta.size <= MULTIPART_THRESHOLD {
        dst.put_object(
            db,
            dk,
            got.body,
            PutOptions {
                attrs: meta.attrs.clone(),
                tags,
                checksum_algorithm: algo,
                size_hint: Some(meta.size),
                verify: None,
            },
        )
        .await?;
        return Ok(Copied::Object(meta.size));
    }
    drop(got.body);
    let upload = dst
        .create_multipart(
            db,
            dk,
            PutOptions {
                attrs: meta.attrs.clone(),
                tags,
                ..Default::default()
            },
        )
        .await?;
    let result = copy_parts(
        src,
        sb,
        sk,
        &meta.version_id,
        meta.size,
        dst,
        db,
        dk,
        &upload,
    )
    .await;
    match result {
        Ok(parts) => {
            dst.complete_multipart(db, dk, &upload, &parts).await?;
            Ok(Copied::Object(meta.size))
        }
        Err(e) => {
            let _ = dst.abort_multipart(db, dk, &upload).await;
            Err(e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn copy_parts(
    src: &dyn Store,
    sb: &BucketName,
    sk: &ObjectKey,
    version_id: &str,
    size: u64,
    dst: &dyn Store,
    db: &BucketName,
    dk: &ObjectKey,
    upload: &str,
) -> store::Result<Vec<CompletedPart>> {
    let mut parts = Vec::new();
    let mut first = 0u64;
    let mut n = 1u32;
    while first < size {
        let last = (first + PART_SIZE).min(size) - 1;
        // Every part from the same version, so a concurrent overwrite cannot mix two.
        let g = src
            .get_object(
                sb,
                sk,
                GetOptions {
                    version_id: Some(version_id.to_owned()),
                    range: Some(ByteRange::FromTo(first, last)),
                },
            )
            .await?;
        let p = dst
            .upload_part(
                db,
                dk,
                upload,
                n,
                g.body,
                PutOptions {
                    size_hint: Some(last - first + 1),
                    ..Default::default()
                },
            )
            .await?;
        parts.push(CompletedPart {
            part_number: n,
            etag: p.etag,
        });
        first = last + 1;
        n += 1;
    }
    Ok(parts)
}
