//! Multipart uploads on the backend: create, upload part, complete, abort.
//!
//! Parts stream like PUT bodies (see [`super::body`]): hashed as they go, the returned ETag
//! compared with the part's MD5. CompleteMultipartUpload names each part's checksum when the
//! upload was created with an algorithm, as S3 requires: with [`ChecksumMode::WhenSupported`]
//! the backend is asked for them (ListParts); parts whose checksum the caller gave up front
//! (see [`super::parts`]) name their own. With [`ChecksumMode::WhenRequired`] an upload gets
//! an algorithm only when the caller gives every part's checksum up front
//! ([`PutOptions::checksum_suffices`]); otherwise the parts could not carry one, and only the
//! digests computed here report it.
//!
//! [`ChecksumMode::WhenSupported`]: super::ChecksumMode::WhenSupported
//! [`ChecksumMode::WhenRequired`]: super::ChecksumMode::WhenRequired

use std::collections::HashMap;

use aws_sdk_s3::types as sdk;
use time::OffsetDateTime;

use super::S3Store;
use super::body::{Known, Prepared, prepare_upload};
use super::convert::{
    checksum_of, quote_etag, sdk_algorithm, tagging_header, with_attrs, with_checksum_value,
    with_upload_digests,
};
use super::error::Ctx;
use super::parts::{self, HeaderChecks, Target};
use super::put::refuses_header;
use crate::store::types::{ChecksumAlgorithm, ObjectAttrs};
use crate::store::{
    BucketName, ByteStream, Checksum, CompletedPart, Error, NULL_VERSION, ObjectKey, ObjectMeta,
    PartInfo, PartRange, PutOptions, Result, Store, Tags,
};

pub(super) async fn create(
    store: &S3Store,
    bucket: &BucketName,
    key: &ObjectKey,
    opts: PutOptions,
) -> Result<String> {
    let described = (&opts.attrs, &opts.tags);
    let full = opts.full_object_checksum;
    if store.supported() {
        let algorithm = opts.checksum_algorithm.map(|a| (a, full));
        return create_with(store, bucket, key, described, algorithm).await;
    }
    // Parts can carry a checksum only if the caller gives each one up front.
    let known = store.part_echo.known();
    let given = opts
        .checksum_algorithm
        .filter(|_| opts.checksum_suffices && known != Some(HeaderChecks::Refuses))
        .map(|a| (a, full));
    match create_with(store, bucket, key, described, given).await {
        Err(e) if given.is_some() && known.is_none() && refuses_header(&e) => {
            tracing::info!(store = %store.name, error = %e,
                "the backend refuses a multipart upload's checksum algorithm; parts go without");
            store.part_echo.refused();
            create_with(store, bucket, key, described, None).await
        }
        r => r,
    }
}

async fn create_with(
    store: &S3Store,
    bucket: &BucketName,
    key: &ObjectKey,
    (attrs, tags): (&ObjectAttrs, &Tags),
    algorithm: Option<(ChecksumAlgorithm, bool)>,
) -> Result<String> {
    let mut req = store
        .client
        .create_multipart_upload()
        .bucket(bucket.as_str())
        .key(key.as_str());
    req = with_attrs!(req, attrs);
    if !tags.is_empty() {
        req = req.tagging(tagging_header(tags));
    }
    if let Some((a, full_object)) = algorithm {
        req = req.checksum_algorithm(sdk_algorithm(a));
        if full_object {
            req = req.checksum_type(sdk::ChecksumType::FullObject);
        }
    }
    let out = req
        .send()
        .await
        .map_err(|e| store.err(Ctx::key(bucket.as_str(), key.as_str()), e))?;
    out.upload_id()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Error::Remote {
            store: store.name.clone(),
            code: "MissingUploadId".to_owned(),
            message: "CreateMultipartUpload answered without an upload id".to_owned(),
            status: 200,
        })
}

pub(super) async fn upload_part(
    store: &S3Store,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
    part_number: u32,
    body: ByteStream,
    opts: PutOptions,
) -> Result<PartInfo> {
    let number = i32::try_from(part_number)
        .map_err(|_| Error::InvalidArgument(format!("part number {part_number} is too large")))?;
    let target = Target {
        store,
        bucket,
        key,
        upload_id,
        number,
    };
    let given = opts
        .checksum
        .clone()
        .filter(|_| opts.checksum_suffices && opts.size_hint.is_some());
    if let Some(sent) = given.clone() {
        let checks = store.part_echo.find_out(&target, &sent).await?;
        if checks != HeaderChecks::Refuses {
            return parts::upload_given(&target, body, opts, sent, checks).await;
        }
    }
    // A checksum given up front that the backend refuses: the part is checked by its MD5
    // alone (the SDK could not carry the algorithm either), and names no checksum.
    let algorithm = opts
        .checksum_algorithm
        .filter(|_| given.is_none() || store.supported());
    let Prepared {
        body, len, pending, ..
    } = prepare_upload(
        body,
        opts.size_hint,
        algorithm,
        Known {
            source_md5: None,
            shared: opts.shared_digests,
            checksum_only: false,
        },
        opts.verify,
    )
    .await?;
    let mut req = target
        .request()
        .body(body)
        .content_length(i64::try_from(len).unwrap_or(i64::MAX));
    req = with_upload_digests!(
        req,
        pending.known(),
        algorithm,
        store.supported(),
        store.supported()
    );
    let mut call = S3Store::long_call();
    let names_checksum = algorithm.is_some()
        || pending
            .known()
            .is_some_and(|d| d.checksum.is_some() && store.supported());
    if !names_checksum {
        // No checksum asked for: the SDK must not add its default CRC32, which an upload
        // created with another algorithm refuses as a mismatch (the part is still checked
        // by its MD5 against the ETag the backend returns).
        call = call.request_checksum_calculation(
            aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
        );
    }
    let result = req.customize().config_override(call).send().await;
    let (out, digests) = pending.settle(&store.name, result, |e| store.err(target.ctx(), e))?;
    let etag = parts::part_etag(&out, &digests.md5)?;
    let checksum = digests.checksum.or_else(|| checksum_of!(&out, false));
    Ok(PartInfo {
        part_number,
        etag,
        size: digests.size,
        last_modified: OffsetDateTime::now_utc(),
        checksum: checksum.filter(|_| given.is_none()),
    })
}

pub(super) async fn complete(
    store: &S3Store,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
    parts: &[CompletedPart],
    claimed: Option<&Checksum>,
) -> Result<ObjectMeta> {
    let ctx = Ctx::key(bucket.as_str(), key.as_str()).upload(upload_id);
    // Parts sent with a checksum given up front name it themselves; with SDK checksums the
    // backend is asked (ListParts is not asked otherwise: moto answers it in a form the
    // SDK cannot read, and then none is named).
    let checksums = if store.supported() {
        match crate::store::upload_checksums(store, bucket, key, upload_id).await {
            Ok(found) => found.parts,
            // A success the SDK cannot read (moto's ListParts answer has another root
            // element): completed without naming them; a backend that needs them says so.
            Err(Error::Remote { status, .. }) if (200..300).contains(&status) => {
                tracing::debug!(bucket = %bucket, key = %key, upload_id,
                    "the backend's list of parts cannot be read; completing without their checksums");
                HashMap::new()
            }
            Err(e) => return Err(e),
        }
    } else {
        HashMap::new()
    };
    let mut completed = Vec::with_capacity(parts.len());
    for p in parts {
        let number = i32::try_from(p.part_number).map_err(|_| Error::InvalidPart {
            part_number: p.part_number,
        })?;
        let mut part = sdk::CompletedPart::builder()
            .part_number(number)
            .e_tag(quote_etag(&p.etag));
        // A client's claim goes on for the backend to check, where its upload has the
        // client's algorithm (with SDK checksums); otherwise it could not be checked there.
        let claimed = p.claimed.as_ref().filter(|_| store.supported());
        if let Some(c) = p
            .checksum
            .as_ref()
            .or(claimed)
            .or_else(|| checksums.get(&p.part_number))
        {
            part = with_checksum_value!(part, c);
        }
        completed.push(part.build());
    }
    let mut req = store
        .client
        .complete_multipart_upload()
        .bucket(bucket.as_str())
        .key(key.as_str())
        .upload_id(upload_id)
        .multipart_upload(
            sdk::CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        );
    // The whole object's checksum the client named goes on for the backend to check, where
    // the backend's upload has the client's algorithm (with SDK checksums). Otherwise the
    // backend could not check it, and it would refuse a value for an algorithm it lacks.
    if let Some(c) = claimed.filter(|_| store.supported()) {
        req = with_checksum_value!(req, c).checksum_type(if c.composite {
            sdk::ChecksumType::Composite
        } else {
            sdk::ChecksumType::FullObject
        });
    }
    let out = req
        .customize()
        .config_override(S3Store::long_call())
        .send()
        .await
        .map_err(|e| store.err(ctx, e))?;
    // Read back what was written (S3 does not say its size); the version when there is one.
    let version = out.version_id().filter(|v| *v != NULL_VERSION);
    let mut meta = store.head_object(bucket, key, version).await?;
    meta.is_latest = true;
    Ok(meta)
}

pub(super) async fn abort(
    store: &S3Store,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
) -> Result<()> {
    let ctx = Ctx::key(bucket.as_str(), key.as_str()).upload(upload_id);
    store
        .client
        .abort_multipart_upload()
        .bucket(bucket.as_str())
        .key(key.as_str())
        .upload_id(upload_id)
        .send()
        .await
        .map_err(|e| store.err(ctx, e))?;
    Ok(())
}

/// Part `part` of a version, from a HEAD with `partNumber` (the backend answers with the
/// part's `Content-Range`). A backend that ignores `partNumber` sends none: its answer is
/// taken for part 1 of an object of one part, and refused otherwise rather than guessed.
pub(super) async fn part_range(
    store: &S3Store,
    bucket: &BucketName,
    key: &ObjectKey,
    version_id: Option<&str>,
    part: u32,
) -> Result<PartRange> {
    let invalid = || Error::InvalidPartNumber { part_number: part };
    let number = i32::try_from(part).map_err(|_| invalid())?;
    let ctx = Ctx::key(bucket.as_str(), key.as_str()).version(version_id);
    let out = store
        .client
        .head_object()
        .bucket(bucket.as_str())
        .key(key.as_str())
        .set_version_id(version_id.map(str::to_owned))
        .part_number(number)
        .send()
        .await
        .map_err(|e| match store.err(ctx, e) {
            Error::InvalidRange { .. } | Error::InvalidPartNumber { .. } => invalid(),
            Error::Remote { status: 416, .. } => invalid(),
            e => e,
        })?;
    let etag = super::convert::trim_etag(out.e_tag());
    let parts = out
        .parts_count()
        .and_then(|n| u32::try_from(n).ok())
        .or_else(|| super::convert::parts_from_etag(&etag))
        .unwrap_or(1);
    let range = match out.content_range().and_then(content_range) {
        Some(r) => Some(r),
        None if part == 1 && parts == 1 => {
            let size = u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0);
            (size > 0).then(|| (0, size - 1))
        }
        None if parts == 1 => return Err(invalid()),
        None => {
            return Err(Error::NotImplemented(
                "one part of a multipart object, from a backend that does not serve parts",
            ));
        }
    };
    Ok(PartRange { range, etag, parts })
}

/// `bytes FIRST-LAST/TOTAL` as (first, last).
fn content_range(v: &str) -> Option<(u64, u64)> {
    let (range, _) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}
