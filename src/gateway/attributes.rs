//! GetObjectAttributes: what HEAD knows of a version, the fields the client names.
//!
//! A multipart object reports its part count; its `Parts` (each part's size and checksum)
//! are left out, as S3 leaves them out of objects uploaded without a checksum: the stores
//! keep part sizes but no part checksums once an upload completes.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use super::Gateway;
use super::convert::{self, etag, ts};
use super::error::{invalid_argument, s3_error};

impl Gateway {
    pub(super) async fn get_object_attributes_impl(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        let mut wanted = std::collections::HashSet::new();
        for a in &input.object_attributes {
            // A header may list several, comma-separated.
            for name in a.as_str().split(',').map(str::trim) {
                match name {
                    ObjectAttributes::CHECKSUM
                    | ObjectAttributes::ETAG
                    | ObjectAttributes::OBJECT_PARTS
                    | ObjectAttributes::OBJECT_SIZE
                    | ObjectAttributes::STORAGE_CLASS => {
                        wanted.insert(name.to_owned());
                    }
                    other => {
                        return Err(invalid_argument(format!(
                            "Invalid attribute name specified: {other:?}"
                        )));
                    }
                }
            }
        }
        if wanted.is_empty() {
            return Err(invalid_argument(
                "x-amz-object-attributes names no attribute",
            ));
        }
        let meta = store
            .head_object(&bucket, &key, input.version_id.as_deref())
            .await
            .map_err(s3_error)?;
        let want = |name: &str| wanted.contains(name);
        let checksum = meta
            .checksum
            .as_ref()
            .filter(|_| want(ObjectAttributes::CHECKSUM));
        let c = convert::checksum_fields(checksum);
        let parts = meta
            .parts_count
            .filter(|_| want(ObjectAttributes::OBJECT_PARTS))
            .map(|n| GetObjectAttributesParts {
                total_parts_count: Some(n as i32),
                part_number_marker: input.part_number_marker,
                max_parts: Some(input.max_parts.unwrap_or(1000)),
                is_truncated: Some(false),
                ..Default::default()
            });
        Ok(S3Response::new(GetObjectAttributesOutput {
            e_tag: want(ObjectAttributes::ETAG).then(|| etag(&meta.etag)),
            object_size: want(ObjectAttributes::OBJECT_SIZE).then_some(meta.size as i64),
            storage_class: want(ObjectAttributes::STORAGE_CLASS)
                .then(|| StorageClass::from(convert::class_of(&meta).to_owned())),
            checksum: checksum.map(|_| Checksum {
                checksum_crc32: c.crc32,
                checksum_crc32c: c.crc32c,
                checksum_crc64nvme: c.crc64nvme,
                checksum_sha1: c.sha1,
                checksum_sha256: c.sha256,
                checksum_type: c.kind,
            }),
            object_parts: parts,
            last_modified: Some(ts(meta.last_modified)),
            version_id: convert::version_header(&meta),
            ..Default::default()
        }))
    }
}

/// Whether a request is a GetObjectAttributes (`GET /bucket/key?attributes`).
pub(super) fn is_attributes_request(method: &http::Method, uri: &http::Uri) -> bool {
    *method == http::Method::GET
        && uri
            .query()
            .unwrap_or("")
            .split('&')
            .any(|p| p == "attributes" || p.starts_with("attributes="))
}

/// S3 writes the ETag of a GetObjectAttributes answer without quotes, unlike every other
/// ETag it sends (code comparing it with an MD5's hex otherwise never matches); s3s quotes
/// every ETag it writes, so the answer's document is mended.
pub(super) fn unquote_etag(res: &mut s3s::HttpResponse) {
    if res.status() != http::StatusCode::OK {
        return;
    }
    let Some(text) = super::error::buffered_text(res) else {
        return;
    };
    let Some(start) = text.find("<ETag>\"") else {
        return;
    };
    let value = start + "<ETag>\"".len();
    let Some(len) = text[value..].find("\"</ETag>") else {
        return;
    };
    let mended = format!(
        "{}<ETag>{}</ETag>{}",
        &text[..start],
        &text[value..value + len],
        &text[value + len + "\"</ETag>".len()..]
    );
    super::error::set_body(res, mended);
}
