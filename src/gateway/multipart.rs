//! Multipart uploads: create, upload part, upload part copy, complete, abort, list parts,
//! list uploads.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::Gateway;
use super::convert::{self, etag, ts};
use super::declared::Declared;
use super::error::{invalid_argument, s3_error};
use super::guard;
use crate::store;

fn part_number(n: i32) -> S3Result<u32> {
    if (1..=10_000).contains(&n) {
        Ok(n as u32)
    } else {
        Err(invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive",
        ))
    }
}

fn checksum_type(full_object: bool) -> ChecksumType {
    ChecksumType::from_static(if full_object {
        ChecksumType::FULL_OBJECT
    } else {
        ChecksumType::COMPOSITE
    })
}

/// Whether a new upload's checksum covers the whole object, from CreateMultipartUpload's
/// `x-amz-checksum-type`. As in S3: CRC64NVME is always `FULL_OBJECT`, SHA-1 and SHA-256
/// always `COMPOSITE` (their part values cannot be combined), CRC32 and CRC32C either
/// (`COMPOSITE` unless asked).
fn full_object(
    algorithm: Option<store::ChecksumAlgorithm>,
    kind: Option<&ChecksumType>,
) -> S3Result<bool> {
    let Some(kind) = kind else {
        return Ok(algorithm == Some(store::ChecksumAlgorithm::Crc64Nvme));
    };
    let full = match kind.as_str() {
        ChecksumType::FULL_OBJECT => true,
        ChecksumType::COMPOSITE => false,
        other => return Err(invalid_argument(format!("unknown checksum type {other:?}"))),
    };
    match algorithm {
        None => Err(s3_error!(
            InvalidRequest,
            "x-amz-checksum-type needs x-amz-checksum-algorithm"
        )),
        Some(a) if full && !a.is_crc() => Err(s3_error!(
            InvalidRequest,
            "The FULL_OBJECT checksum type cannot be used with the {} checksum algorithm.",
            a.as_str()
        )),
        Some(store::ChecksumAlgorithm::Crc64Nvme) if !full => Err(s3_error!(
            InvalidRequest,
            "The COMPOSITE checksum type cannot be used with the CRC64NVME checksum algorithm."
        )),
        Some(_) => Ok(full),
    }
}

/// The whole object's checksum a client named at CompleteMultipartUpload, if any: checked
/// against the one the parts make before anything is committed.
fn whole_object_claim(input: &CompleteMultipartUploadInput) -> S3Result<Option<store::Checksum>> {
    use store::ChecksumAlgorithm as A;
    let named = [
        (A::Crc32, &input.checksum_crc32),
        (A::Crc32c, &input.checksum_crc32c),
        (A::Crc64Nvme, &input.checksum_crc64nvme),
        (A::Sha1, &input.checksum_sha1),
        (A::Sha256, &input.checksum_sha256),
    ];
    let mut given = named
        .into_iter()
        .filter_map(|(a, v)| v.as_ref().map(|v| (a, v)));
    let Some((algorithm, value)) = given.next() else {
        return Ok(None);
    };
    if given.next().is_some() {
        return Err(s3_error!(
            InvalidRequest,
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        ));
    }
    let composite = match input.checksum_type.as_ref().map(ChecksumType::as_str) {
        Some(ChecksumType::COMPOSITE) => true,
        Some(ChecksumType::FULL_OBJECT) => false,
        Some(other) => return Err(invalid_argument(format!("unknown checksum type {other:?}"))),
        None => value.contains('-'),
    };
    Ok(Some(store::Checksum {
        algorithm,
        value: value.clone(),
        composite,
    }))
}

impl Gateway {
    pub(super) async fn create_multipart_upload_impl(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        guard::object_write(&guard::asks_of!(input))?;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        let class = convert::storage_class(input.storage_class.as_ref())?;
        let algorithm = convert::algorithm(input.checksum_algorithm.as_ref())?;
        let full_object = full_object(algorithm, input.checksum_type.as_ref())?;
        let mut attrs = convert::attrs_of!(input)?;
        attrs.storage_class = class;
        let opts = store::PutOptions {
            attrs,
            tags: convert::parse_tagging_header(input.tagging.as_deref())?,
            checksum_algorithm: algorithm,
            size_hint: None,
            source_md5: None,
            shared_digests: None,
            checksum_suffices: false,
            checksum: None,
            full_object_checksum: full_object,
            verify: None,
        };
        let upload_id = store
            .create_multipart(&bucket, &key, opts)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id),
            checksum_algorithm: input.checksum_algorithm,
            checksum_type: algorithm.map(|_| checksum_type(full_object)),
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_impl(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailers = req.trailing_headers.clone();
        let headers = req.headers;
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        let n = part_number(input.part_number)?;
        let size = self.check_part_size(input.content_length)?;
        let declared = Declared::new(
            input.content_md5.as_deref(),
            input.checksum_algorithm.as_ref(),
            input.checksum_crc32.as_ref(),
            input.checksum_crc32c.as_ref(),
            input.checksum_crc64nvme.as_ref(),
            input.checksum_sha1.as_ref(),
            input.checksum_sha256.as_ref(),
            &headers,
            trailers,
        )?;
        let opts = store::PutOptions {
            checksum_algorithm: declared.algorithm,
            size_hint: size,
            verify: Some(declared.verifier()),
            ..Default::default()
        };
        let body = convert::body_stream(input.body);
        let part = store
            .upload_part(&bucket, &key, &input.upload_id, n, body, opts)
            .await
            .map_err(s3_error)?;
        self.metrics.bytes_in(part.size);
        let c = convert::checksum_fields(part.checksum.as_ref());
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&part.etag)),
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_crc64nvme: c.crc64nvme,
            checksum_sha1: c.sha1,
            checksum_sha256: c.sha256,
            ..Default::default()
        }))
    }

    pub(super) async fn upload_part_copy_impl(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let input = req.input;
        let (src_store, src_bucket, src_key, sv) = self.copy_source(&input.copy_source)?;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        let n = part_number(input.part_number)?;
        let range = match input.copy_source_range.as_deref() {
            None => None,
            Some(r) => {
                let parsed = Range::parse(r).map_err(|_| {
                    invalid_argument(format!("the copy source range {r:?} is not valid"))
                })?;
                match parsed {
                    Range::Int {
                        first,
                        last: Some(last),
                    } => Some(store::ByteRange::FromTo(first, last)),
                    _ => {
                        return Err(invalid_argument(
                            "the copy source range must be bytes=first-last",
                        ));
                    }
                }
            }
        };
        let src = src_store
            .get_object(
                &src_bucket,
                &src_key,
                store::GetOptions {
                    version_id: sv.clone(),
                    range,
                },
            )
            .await
            .map_err(|e| match e {
                store::Error::IsDeleteMarker { .. } => s3_error!(
                    InvalidRequest,
                    "The source of a copy request may not specifically refer to a delete marker \
                     by version id."
                ),
                store::Error::InvalidRange { size } => invalid_argument(format!(
                    "Range specified is not valid for source object of size: {size}"
                )),
                e => s3_error(e),
            })?;
        // S3 refuses a copy range that does not lie within the source (a GET clamps it).
        if let Some(store::ByteRange::FromTo(_, last)) = range
            && last >= src.meta.size
        {
            return Err(invalid_argument(format!(
                "Range specified is not valid for source object of size: {}",
                src.meta.size
            )));
        }
        convert::check_copy_source_conditions(
            &src.meta,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )?;
        let size = match src.range {
            Some((a, b)) => b - a + 1,
            None => src.meta.size,
        };
        let opts = store::PutOptions {
            size_hint: Some(size),
            ..Default::default()
        };
        let part = store
            .upload_part(&bucket, &key, &input.upload_id, n, src.body, opts)
            .await
            .map_err(s3_error)?;
        // The part's checksum, when its upload keeps one, as S3 returns it (a client copies it
        // into its CompleteMultipartUpload).
        let c = convert::checksum_fields(part.checksum.as_ref());
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&part.etag)),
                last_modified: Some(ts(part.last_modified)),
                checksum_crc32: c.crc32,
                checksum_crc32c: c.crc32c,
                checksum_crc64nvme: c.crc64nvme,
                checksum_sha1: c.sha1,
                checksum_sha256: c.sha256,
            }),
            copy_source_version_id: (src.meta.version_id != store::NULL_VERSION)
                .then(|| src.meta.version_id.clone()),
            ..Default::default()
        }))
    }

    pub(super) async fn complete_multipart_upload_impl(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        // S3 names the object by an absolute URL; the request's own host is the one the
        // client reaches (this server speaks plain HTTP).
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        let claimed = whole_object_claim(&input)?;
        let conditions = (input.if_match.as_ref(), input.if_none_match.as_ref());
        let _passage = self
            .check_write_conditions(store.as_ref(), &bucket, &key, conditions)
            .await?;
        let parts = input
            .multipart_upload
            .and_then(|m| m.parts)
            .ok_or_else(|| s3_error!(MalformedXML, "the request names no parts"))?;
        let mut wanted = Vec::with_capacity(parts.len());
        for p in parts {
            let n = part_number(
                p.part_number
                    .ok_or_else(|| s3_error!(MalformedXML, "a part has no PartNumber"))?,
            )?;
            let e = p
                .e_tag
                .ok_or_else(|| s3_error!(MalformedXML, "part {n} has no ETag"))?;
            use store::ChecksumAlgorithm as A;
            let claimed = [
                (A::Crc32, p.checksum_crc32),
                (A::Crc32c, p.checksum_crc32c),
                (A::Crc64Nvme, p.checksum_crc64nvme),
                (A::Sha1, p.checksum_sha1),
                (A::Sha256, p.checksum_sha256),
            ]
            .into_iter()
            .find_map(|(algorithm, v)| {
                v.map(|value| store::Checksum {
                    algorithm,
                    value,
                    composite: false,
                })
            });
            wanted.push(store::CompletedPart {
                part_number: n,
                etag: e.value().to_owned(),
                checksum: None,
                claimed,
            });
        }
        require_part_checksums(store.as_ref(), &bucket, &key, &input.upload_id, &wanted).await?;
        let meta = store
            .complete_multipart(&bucket, &key, &input.upload_id, &wanted, claimed.as_ref())
            .await
            .map_err(s3_error)?;
        let c = convert::checksum_fields(meta.checksum.as_ref());
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(etag(&meta.etag)),
            location: Some(location(host.as_deref(), &input.bucket, &input.key)),
            version_id: convert::version_header(&meta),
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_crc64nvme: c.crc64nvme,
            checksum_sha1: c.sha1,
            checksum_sha256: c.sha256,
            checksum_type: c.kind,
            ..Default::default()
        }))
    }

    pub(super) async fn abort_multipart_upload_impl(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        store
            .abort_multipart(&bucket, &key, &input.upload_id)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    pub(super) async fn list_parts_impl(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        let max = match input.max_parts {
            Some(m) if m < 0 => {
                return Err(invalid_argument("max-parts must be a non-negative integer"));
            }
            m => m.map_or(1000, |m| m.min(1000) as usize),
        };
        if input.part_number_marker.is_some_and(|m| m < 0) {
            return Err(invalid_argument(
                "part-number-marker must be a non-negative integer",
            ));
        }
        let marker = input
            .part_number_marker
            .filter(|m| *m > 0)
            .map(|m| m as u32);
        let page = store
            .list_parts(&bucket, &key, &input.upload_id, marker, max)
            .await
            .map_err(s3_error)?;
        let parts = page
            .parts
            .iter()
            .map(|p| {
                let c = convert::checksum_fields(p.checksum.as_ref());
                Part {
                    e_tag: Some(etag(&p.etag)),
                    last_modified: Some(ts(p.last_modified)),
                    part_number: Some(p.part_number as i32),
                    size: Some(p.size as i64),
                    checksum_crc32: c.crc32,
                    checksum_crc32c: c.crc32c,
                    checksum_crc64nvme: c.crc64nvme,
                    checksum_sha1: c.sha1,
                    checksum_sha256: c.sha256,
                }
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            // As S3 (0 on the first page).
            part_number_marker: input.part_number_marker.or(Some(0)),
            initiator: Some(initiator()),
            owner: Some(convert::owner()),
            // As S3: the last part listed, truncated or not.
            next_part_number_marker: page
                .next_part_number_marker
                .or(page.parts.last().map(|p| p.part_number))
                .map(|n| n as i32),
            is_truncated: Some(page.next_part_number_marker.is_some()),
            parts: Some(parts),
            storage_class: Some(StorageClass::from(
                page.storage_class
                    .clone()
                    .unwrap_or_else(|| StorageClass::STANDARD.to_owned()),
            )),
            checksum_algorithm: page
                .checksum_algorithm
                .map(|a| ChecksumAlgorithm::from(a.as_str().to_owned())),
            checksum_type: page
                .checksum_algorithm
                .map(|_| checksum_type(page.full_object_checksum)),
            ..Default::default()
        }))
    }

    pub(super) async fn list_multipart_uploads_impl(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let enc = super::list::Enc::new(input.encoding_type.as_ref())?;
        let max = match input.max_uploads {
            Some(m) if m < 0 => {
                return Err(invalid_argument(
                    "max-uploads must be a non-negative integer",
                ));
            }
            m => m.map_or(1000, |m| m.min(1000) as usize),
        };
        let q = store::UploadsQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker: input.key_marker.clone().filter(|k| !k.is_empty()),
            upload_id_marker: input.upload_id_marker.clone().filter(|u| !u.is_empty()),
            max_uploads: max,
        };
        let page = store.list_uploads(&bucket, &q).await.map_err(s3_error)?;
        let uploads = page
            .uploads
            .into_iter()
            .map(|u| MultipartUpload {
                key: Some(enc.s(u.key.as_str())),
                upload_id: Some(u.upload_id),
                initiated: Some(ts(u.initiated)),
                initiator: Some(initiator()),
                owner: Some(convert::owner()),
                storage_class: Some(StorageClass::from(
                    u.storage_class
                        .unwrap_or_else(|| StorageClass::STANDARD.to_owned()),
                )),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: enc.o(input.prefix.as_ref()),
            key_marker: enc.o(input.key_marker.as_ref()),
            upload_id_marker: input.upload_id_marker,
            max_uploads: Some(max as i32),
            is_truncated: Some(page.next_key_marker.is_some()),
            next_key_marker: enc.o(page.next_key_marker.as_ref()),
            next_upload_id_marker: page.next_upload_id_marker,
            uploads: Some(uploads),
            common_prefixes: super::list::prefixes(page.common_prefixes, &enc),
            delimiter: enc.o(input.delimiter.as_ref()),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }
}

/// The absolute URL of `bucket/key` as reached through `host` (virtual-host style when the
/// host names the bucket), as S3's CompleteMultipartUpload gives it.
fn location(host: Option<&str>, bucket: &str, key: &str) -> String {
    let key = urlencoding::encode(key).replace("%2F", "/");
    match host {
        Some(h) if h.starts_with(&format!("{bucket}.")) => format!("http://{h}/{key}"),
        Some(h) => format!("http://{h}/{bucket}/{key}"),
        None => format!("/{bucket}/{key}"),
    }
}

/// Who began every upload: Ferry serves one key pair (see [`convert::owner`]).
fn initiator() -> Initiator {
    let o = convert::owner();
    Initiator {
        display_name: o.display_name,
        id: o.id,
    }
}

/// Refuses the completion of an upload created with a checksum algorithm (`COMPOSITE`)
/// whose part list does not name each part's checksum of that algorithm, as S3 does: code
/// tested against Ferry must not then fail on AWS. (The parts of a `FULL_OBJECT` upload need
/// not be named.) An upload that cannot be read is left to the completion to report (a
/// retried completion of a finished upload is answered again).
async fn require_part_checksums(
    store: &dyn store::Store,
    bucket: &store::BucketName,
    key: &store::ObjectKey,
    upload_id: &str,
    parts: &[store::CompletedPart],
) -> S3Result<()> {
    let Ok(page) = store.list_parts(bucket, key, upload_id, None, 1).await else {
        return Ok(());
    };
    // CRC64NVME is FULL_OBJECT only (a backend may not say the type).
    let Some(a) = page
        .checksum_algorithm
        .filter(|a| !page.full_object_checksum && *a != store::ChecksumAlgorithm::Crc64Nvme)
    else {
        return Ok(());
    };
    let unnamed = parts
        .iter()
        .find(|p| p.claimed.as_ref().is_none_or(|c| c.algorithm != a));
    // A part never uploaded is the completion's to refuse (InvalidPart), as S3 does.
    let uploaded = match unnamed {
        Some(p) => store
            .list_parts(bucket, key, upload_id, p.part_number.checked_sub(1), 1)
            .await
            .map_or(true, |page| {
                page.parts.first().map(|l| l.part_number) == Some(p.part_number)
            }),
        None => false,
    };
    match unnamed.filter(|_| uploaded) {
        Some(p) => Err(s3_error!(
            InvalidRequest,
            "The upload was created using a {} checksum. The complete request must include \
             the checksum for each part. It was missing for part {} in the request.",
            a.as_str().to_lowercase(),
            p.part_number
        )),
        None => Ok(()),
    }
}
