//! CopyObject: within a store (the store copies), or between stores (the source streams
//! into a PUT), with the source's conditions and the destination's conditional writes.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::Gateway;
use super::convert::{self, etag, ts};
use super::error::{invalid_argument, s3_error};
use super::guard;
use crate::store::{self, Digests, ObjectKey};

impl Gateway {
    pub(super) async fn copy_object_impl(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        guard::plain(&req.uri)?;
        let input = req.input;
        let mut asks = guard::asks_of!(input);
        asks.sse_c |= input.copy_source_sse_customer_algorithm.is_some();
        guard::object_write(&asks)?;
        let (src_store, src_bucket, src_key, sv) = self.copy_source(&input.copy_source)?;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        // S3 gives a copy the class it names, STANDARD without one, whatever the source's.
        let class = convert::storage_class(input.storage_class.as_ref())?;
        let replace_meta = replaces(
            input.metadata_directive.as_ref().map(|d| d.as_str()),
            "metadata",
        )?;
        let replace_tags = replaces(
            input.tagging_directive.as_ref().map(|d| d.as_str()),
            "tagging",
        )?;
        let src = src_store
            .head_object(&src_bucket, &src_key, sv.as_deref())
            .await
            .map_err(|e| match e {
                store::Error::IsDeleteMarker { .. } => s3_error!(
                    InvalidRequest,
                    "The source of a copy request may not specifically refer to a delete marker \
                     by version id."
                ),
                e => s3_error(e),
            })?;
        if src_bucket == bucket
            && src_key == key
            && sv.is_none()
            && !replace_meta
            && !replace_tags
            && input.checksum_algorithm.is_none()
            && input.storage_class.is_none()
            // Naming these is a change to S3 (`aws s3 cp --sse AES256` of an object onto
            // itself re-encrypts it; Ferry keeps no encryption), so the copy is taken as one.
            && input.website_redirect_location.is_none()
            && input.server_side_encryption.is_none()
        {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
            ));
        }
        convert::check_copy_source_conditions(
            &src,
            input.copy_source_if_match.as_ref(),
            input.copy_source_if_none_match.as_ref(),
            input.copy_source_if_modified_since.as_ref(),
            input.copy_source_if_unmodified_since.as_ref(),
        )?;
        let onto_itself = src_bucket == bucket && src_key == key && sv.is_none();
        // S3 does not copy a website redirect: the copy has the one the request names.
        let redirect = input.website_redirect_location.clone();
        let attrs = if replace_meta {
            Some(convert::attrs_of!(input)?)
        } else if onto_itself
            || src.attrs.storage_class != class
            || src.attrs.website_redirect != redirect
        {
            // Its own metadata, named: a backend S3 store takes a copy onto itself whose
            // metadata is replaced, whatever else it changes (or not, for Ferry: encryption).
            Some(src.attrs.clone())
        } else {
            None
        }
        .map(|mut a: store::ObjectAttrs| {
            a.storage_class = class;
            a.website_redirect = redirect;
            a
        });
        let tags = if replace_tags {
            Some(convert::parse_tagging_header(input.tagging.as_deref())?)
        } else {
            None
        };
        let opts = store::CopyOptions {
            source_version_id: sv.clone(),
            attrs,
            tags,
            checksum_algorithm: convert::algorithm(input.checksum_algorithm.as_ref())?,
        };
        // s3s 0.14 does not parse CopyObject's own If-Match / If-None-Match (newer than its
        // model), so they come from the headers.
        let (if_match, if_none_match) = (
            header_condition(&req.headers, "if-match")?,
            header_condition(&req.headers, "if-none-match")?,
        );
        let conditions = (if_match.as_ref(), if_none_match.as_ref());
        let _passage = self
            .check_write_conditions(store.as_ref(), &bucket, &key, conditions)
            .await?;
        let meta = if std::ptr::addr_eq(
            std::sync::Arc::as_ptr(&src_store),
            std::sync::Arc::as_ptr(&store),
        ) {
            store
                .copy_object(&src_bucket, &src_key, &bucket, &key, opts)
                .await
                .map_err(s3_error)?
        } else {
            let from = (src_store.as_ref(), &src_bucket, &src, sv.clone());
            copy_between(from, store.as_ref(), &bucket, &key, opts).await?
        };
        let c = convert::checksum_fields(meta.checksum.as_ref());
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&meta.etag)),
                last_modified: Some(ts(meta.last_modified)),
                checksum_crc32: c.crc32,
                checksum_crc32c: c.crc32c,
                checksum_crc64nvme: c.crc64nvme,
                checksum_sha1: c.sha1,
                checksum_sha256: c.sha256,
                checksum_type: c.kind,
            }),
            version_id: convert::version_header(&meta),
            copy_source_version_id: (src.version_id != store::NULL_VERSION)
                .then(|| src.version_id.clone()),
            ..Default::default()
        }))
    }
}

/// A copy between two stores (a plain bucket and a namespace bucket, say): the source
/// version streams from one into a PUT on the other, its attributes, tags and checksum
/// algorithm kept unless the request replaces them. The new object is checked against the
/// source's MD5 when that is its ETag, else against its size.
async fn copy_between(
    (src_store, src_bucket, src, asked): (
        &dyn store::Store,
        &store::BucketName,
        &store::ObjectMeta,
        Option<String>,
    ),
    dst: &dyn store::Store,
    bucket: &store::BucketName,
    key: &ObjectKey,
    opts: store::CopyOptions,
) -> S3Result<store::ObjectMeta> {
    // The version the request named (`null` too), else the one the HEAD found.
    let version = asked.or(Some(src.version_id.clone()).filter(|v| v != store::NULL_VERSION));
    let tags = match opts.tags {
        Some(t) => t,
        None if src.tag_count > 0 => {
            src_store
                .get_object_tags(src_bucket, &src.key, version.as_deref())
                .await
                .map_err(s3_error)?
                .1
        }
        None => Vec::new(),
    };
    let got = src_store
        .get_object(
            src_bucket,
            &src.key,
            store::GetOptions {
                version_id: version,
                range: None,
            },
        )
        .await
        .map_err(s3_error)?;
    let size = src.size;
    let md5: Option<[u8; 16]> = (!src.opaque_etag)
        .then(|| hex::decode(&src.etag).ok()?.try_into().ok())
        .flatten();
    let verify: store::Verifier = Box::new(move |d: &Digests| {
        if d.size != size || md5.is_some_and(|m| m != d.md5) {
            return Err(store::Error::BadDigest {
                what: "copy source, which changed while it was read".into(),
            });
        }
        Ok(())
    });
    let put = store::PutOptions {
        attrs: opts.attrs.unwrap_or_else(|| src.attrs.clone()),
        tags,
        checksum_algorithm: opts
            .checksum_algorithm
            .or(src.checksum.as_ref().map(|c| c.algorithm)),
        size_hint: Some(size),
        verify: Some(verify),
        ..Default::default()
    };
    dst.put_object(bucket, key, got.body, put)
        .await
        .map_err(s3_error)
}

/// An `If-Match` / `If-None-Match` header s3s left unparsed.
fn header_condition(headers: &http::HeaderMap, name: &str) -> S3Result<Option<ETagCondition>> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => ETagCondition::parse_http_header(v.as_bytes())
            .map(Some)
            .map_err(|_| invalid_argument(format!("{name} is not an ETag or *"))),
    }
}

/// Whether a copy's `x-amz-{what}-directive` says REPLACE (COPY when absent); any other
/// value is refused as S3 does, never taken for COPY.
fn replaces(directive: Option<&str>, what: &str) -> S3Result<bool> {
    match directive {
        None | Some(MetadataDirective::COPY) => Ok(false),
        Some(MetadataDirective::REPLACE) => Ok(true),
        Some(_) => Err(super::error::invalid_argument(format!(
            "Unknown {what} directive."
        ))),
    }
}
