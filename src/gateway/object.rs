//! Object operations: PUT, GET, HEAD, DELETE (one and many), COPY, object tagging.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result, s3_error};

use super::Gateway;
use super::conditions::DeleteConditions;
use super::convert::{self, etag, ts};
use super::declared::Declared;
use super::error::{invalid_argument, s3_error};
use super::{form, guard};
use crate::store::{self, ObjectKey};

impl Gateway {
    pub(super) async fn put_object_impl(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        guard::plain(&req.uri)?;
        let trailers = req.trailing_headers.clone();
        let headers = req.headers;
        let posted = req.method == http::Method::POST;
        // A browser form's fields s3s does not map (see `form`).
        let form = match req.method {
            http::Method::POST => req.extensions.get::<form::FormFields>().cloned(),
            _ => None,
        }
        .unwrap_or_default();
        let input = req.input;
        // From headers or, for POST Object, from the form's fields.
        guard::object_write(&guard::asks_of!(input))?;
        form.check()?;
        guard::form_acl(form.acl.as_deref())?;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&form.key(&input.key))?;
        let size = self.check_size(input.content_length)?;
        let class = convert::storage_class(input.storage_class.as_ref())?;
        let conditions = (input.if_match.as_ref(), input.if_none_match.as_ref());
        let _passage = self
            .check_write_conditions(store.as_ref(), &bucket, &key, conditions)
            .await?;
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
        let mut attrs = convert::attrs_of!(input)?;
        attrs.storage_class = class;
        let opts = store::PutOptions {
            attrs,
            tags: match form.tags()? {
                Some(tags) => tags,
                None => convert::parse_tagging_header(input.tagging.as_deref())?,
            },
            checksum_algorithm: declared.algorithm,
            size_hint: size,
            source_md5: None,
            shared_digests: None,
            checksum_suffices: false,
            checksum: None,
            full_object_checksum: false,
            verify: Some(declared.verifier()),
        };
        let body = convert::body_stream(input.body);
        let meta = store
            .put_object(&bucket, &key, body, opts)
            .await
            .map_err(s3_error)?;
        self.metrics.bytes_in(meta.size);
        let c = convert::checksum_fields(meta.checksum.as_ref());
        let mut resp = S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&meta.etag)),
            version_id: convert::version_header(&meta),
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_crc64nvme: c.crc64nvme,
            checksum_sha1: c.sha1,
            checksum_sha256: c.sha256,
            checksum_type: c.kind,
            ..Default::default()
        });
        if posted {
            super::form::answer_headers(&mut resp, &headers, &bucket, &key, &meta);
        }
        Ok(resp)
    }

    pub(super) async fn get_object_impl(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let if_range = req
            .headers
            .get(http::header::IF_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        guard::version_id(input.version_id.as_deref())?;
        let part = check_part_number(input.part_number, input.range.is_some())?;
        let mut asked = convert::range(input.range);
        // If-Range (RFC 9110 13.1.5): the range only if the object is still the one the
        // client has part of; otherwise all of it, so a resumed download never joins two
        // versions' bytes.
        let same =
            |meta: &store::ObjectMeta| if_range.as_deref().is_none_or(|v| same_object(v, meta));
        if asked.is_some()
            && if_range.is_some()
            && store
                .head_object(&bucket, &key, input.version_id.as_deref())
                .await
                .is_ok_and(|m| !same(&m))
        {
            asked = None;
        }
        let conditions = |meta: &store::ObjectMeta| {
            convert::check_read_conditions(
                meta,
                input.if_match.as_ref(),
                input.if_none_match.as_ref(),
                input.if_modified_since.as_ref(),
                input.if_unmodified_since.as_ref(),
            )
        };
        let mut tries = 0;
        let (mut res, located) = loop {
            // A part is the range the store recorded for it, in the version read next.
            let located = match part {
                Some(n) => Some(
                    store
                        .part_range(&bucket, &key, input.version_id.as_deref(), n)
                        .await
                        .map_err(s3_error)?,
                ),
                None => None,
            };
            let range = match &located {
                Some(p) => p.range.map(|(a, b)| store::ByteRange::FromTo(a, b)),
                None => asked,
            };
            let opts = store::GetOptions {
                version_id: input.version_id.clone(),
                range,
            };
            let res = match store.get_object(&bucket, &key, opts).await {
                // Changed since the check above: all of the version read.
                Ok(res) if res.range.is_some() && part.is_none() && !same(&res.meta) => {
                    asked = None;
                    continue;
                }
                Ok(res) => res,
                // Preconditions come before the range: a failed one answers 412 or 304.
                Err(e @ store::Error::InvalidRange { .. }) => {
                    if let Ok(meta) = store
                        .head_object(&bucket, &key, input.version_id.as_deref())
                        .await
                    {
                        conditions(&meta)?;
                    }
                    return Err(s3_error(e));
                }
                Err(e) => return Err(s3_error(e)),
            };
            match &located {
                Some(p) if p.etag != res.meta.etag => {
                    tries += 1;
                    if tries == 3 {
                        return Err(changed_while_read());
                    }
                }
                _ => break (res, located),
            }
        };
        if located.as_ref().is_some_and(|p| p.range.is_none()) {
            // An empty part: none of the object's bytes.
            res.body = Box::pin(futures::stream::empty());
        }
        let meta = res.meta;
        conditions(&meta)?;
        let (len, content_range) = match (res.range, &located) {
            (Some((a, b)), _) => (b - a + 1, Some(format!("bytes {a}-{b}/{}", meta.size))),
            (None, Some(_)) => (0, None),
            (None, None) => (meta.size, None),
        };
        self.metrics.bytes_out(len);
        let want_checksum = input
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
            && res.range.is_none()
            && part.is_none();
        let c = convert::checksum_fields(if want_checksum {
            meta.checksum.as_ref()
        } else {
            None
        });
        let a = meta.attrs.clone();
        let h = convert::served(&a, convert::overrides_of!(input));
        Ok(S3Response::new(GetObjectOutput {
            body: Some(convert::blob(res.body)),
            accept_ranges: Some("bytes".into()),
            content_length: Some(len as i64),
            content_range,
            content_type: h.content_type,
            cache_control: h.cache_control,
            content_disposition: h.content_disposition,
            content_encoding: h.content_encoding,
            content_language: h.content_language,
            expires: h.expires,
            metadata: convert::metadata_dto(&a),
            storage_class: a.storage_class.clone().map(StorageClass::from),
            restore: super::archive::restore_header(&*store, &meta),
            website_redirect_location: a.website_redirect.clone(),
            e_tag: Some(etag(&meta.etag)),
            last_modified: Some(ts(meta.last_modified)),
            version_id: convert::version_header(&meta),
            tag_count: (meta.tag_count > 0).then_some(meta.tag_count as i32),
            // Only for an object uploaded in parts (S3 leaves it out for a plain PUT).
            parts_count: located
                .as_ref()
                .filter(|_| meta.etag.contains('-'))
                .map(|p| p.parts as i32),
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_crc64nvme: c.crc64nvme,
            checksum_sha1: c.sha1,
            checksum_sha256: c.sha256,
            checksum_type: c.kind,
            ..Default::default()
        }))
    }

    pub(super) async fn head_object_impl(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        guard::version_id(input.version_id.as_deref())?;
        let part = check_part_number(input.part_number, input.range.is_some())?;
        let mut tries = 0;
        let (meta, located) = loop {
            let meta = store
                .head_object(&bucket, &key, input.version_id.as_deref())
                .await
                .map_err(s3_error)?;
            let Some(n) = part else { break (meta, None) };
            let p = store
                .part_range(&bucket, &key, input.version_id.as_deref(), n)
                .await
                .map_err(s3_error)?;
            if p.etag == meta.etag {
                break (meta, Some(p));
            }
            tries += 1;
            if tries == 3 {
                return Err(changed_while_read());
            }
        };
        convert::check_read_conditions(
            &meta,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let range = match &located {
            Some(p) => p.range.map(|(a, b)| store::ByteRange::FromTo(a, b)),
            None => convert::range(input.range),
        };
        let (len, content_range) = match range {
            // An empty part.
            None if located.is_some() => (0, None),
            Some(r) => {
                let (a, b) = r
                    .resolve(meta.size)
                    .ok_or_else(|| s3_error(store::Error::InvalidRange { size: meta.size }))?;
                (b - a + 1, Some(format!("bytes {a}-{b}/{}", meta.size)))
            }
            None => (meta.size, None),
        };
        // The object's checksum covers all of it, not a part.
        let want_checksum = input
            .checksum_mode
            .as_ref()
            .is_some_and(|m| m.as_str() == ChecksumMode::ENABLED)
            && located.is_none();
        let c = convert::checksum_fields(if want_checksum {
            meta.checksum.as_ref()
        } else {
            None
        });
        let a = &meta.attrs;
        // The response-* overrides apply to HEAD as to the GET it stands for.
        let h = convert::served(a, convert::overrides_of!(input));
        let mut res = S3Response::new(HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(len as i64),
            content_range,
            content_type: h.content_type,
            cache_control: h.cache_control,
            content_disposition: h.content_disposition,
            content_encoding: h.content_encoding,
            content_language: h.content_language,
            expires: h.expires,
            metadata: convert::metadata_dto(a),
            storage_class: a.storage_class.clone().map(StorageClass::from),
            restore: super::archive::restore_header(&*store, &meta),
            website_redirect_location: a.website_redirect.clone(),
            e_tag: Some(etag(&meta.etag)),
            last_modified: Some(ts(meta.last_modified)),
            version_id: convert::version_header(&meta),
            // Only for an object uploaded in parts (S3 leaves it out for a plain PUT).
            parts_count: located
                .as_ref()
                .filter(|_| meta.etag.contains('-'))
                .map(|p| p.parts as i32),
            checksum_crc32: c.crc32,
            checksum_crc32c: c.crc32c,
            checksum_crc64nvme: c.crc64nvme,
            checksum_sha1: c.sha1,
            checksum_sha256: c.sha256,
            checksum_type: c.kind,
            ..Default::default()
        });
        // S3 names the tag count on HEAD as on GET; s3s 0.14's HeadObject has no field for it.
        if meta.tag_count > 0 {
            res.headers.insert(
                "x-amz-tagging-count",
                http::HeaderValue::from(meta.tag_count),
            );
        }
        Ok(res)
    }

    pub(super) async fn delete_object_impl(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        guard::plain(&req.uri)?;
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        guard::version_id(input.version_id.as_deref())?;
        let conditions = DeleteConditions {
            etag: input.if_match.as_ref(),
            last_modified: input.if_match_last_modified_time.as_ref(),
            size: input.if_match_size,
        };
        let _passage = self
            .check_delete_conditions(
                store.as_ref(),
                &bucket,
                &key,
                input.version_id.as_deref(),
                &conditions,
            )
            .await?;
        let r = store
            .delete_object(&bucket, &key, input.version_id.as_deref())
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: r.delete_marker.then_some(true),
            version_id: r.version_id,
            ..Default::default()
        }))
    }

    pub(super) async fn delete_objects_impl(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        // A missing bucket fails the request, not each key.
        store.head_bucket(&bucket).await.map_err(s3_error)?;
        let quiet = input.delete.quiet.unwrap_or(false);
        if input.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "a DeleteObjects request names at most 1000 keys"
            ));
        }
        let mut deleted = Vec::new();
        let mut errors = Vec::new();
        for obj in input.delete.objects {
            let key = match ObjectKey::parse(&obj.key) {
                Ok(k) => k,
                Err(e) => {
                    errors.push(Error {
                        key: Some(obj.key),
                        code: Some("InvalidArgument".into()),
                        message: Some(e.to_string()),
                        version_id: obj.version_id,
                    });
                    continue;
                }
            };
            let etag = obj.e_tag.as_ref().map(|e| ETagCondition::ETag(e.clone()));
            let conditions = DeleteConditions {
                etag: etag.as_ref(),
                last_modified: obj.last_modified_time.as_ref(),
                size: obj.size,
            };
            let passage = match self
                .check_delete_conditions(
                    store.as_ref(),
                    &bucket,
                    &key,
                    obj.version_id.as_deref(),
                    &conditions,
                )
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    errors.push(Error {
                        key: Some(obj.key),
                        code: Some(e.code().as_str().to_owned()),
                        message: e.message().map(str::to_owned),
                        version_id: obj.version_id,
                    });
                    continue;
                }
            };
            let deleted_one = store
                .delete_object(&bucket, &key, obj.version_id.as_deref())
                .await;
            drop(passage);
            match deleted_one {
                Ok(r) => {
                    if !quiet {
                        let marker_vid = r.delete_marker.then(|| r.version_id.clone()).flatten();
                        deleted.push(DeletedObject {
                            key: Some(obj.key),
                            version_id: obj.version_id.clone(),
                            delete_marker: r.delete_marker.then_some(true),
                            // The marker made, or the marker a versioned delete removed.
                            delete_marker_version_id: marker_vid.or_else(|| {
                                r.delete_marker.then(|| obj.version_id.clone()).flatten()
                            }),
                        });
                    }
                }
                Err(e) => {
                    let e = s3_error(e);
                    errors.push(Error {
                        key: Some(obj.key),
                        code: Some(e.code().as_str().to_owned()),
                        message: e.message().map(str::to_owned),
                        version_id: obj.version_id,
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    pub(super) async fn get_object_tagging_impl(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        let (vid, tags) = store
            .get_object_tags(&bucket, &key, input.version_id.as_deref())
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(GetObjectTaggingOutput {
            tag_set: convert::tags_to_dto(tags),
            version_id: (vid != store::NULL_VERSION).then_some(vid),
        }))
    }

    pub(super) async fn put_object_tagging_impl(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        let tags = convert::tags_from_dto(input.tagging.tag_set)?;
        let vid = store
            .put_object_tags(&bucket, &key, input.version_id.as_deref(), tags)
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(PutObjectTaggingOutput {
            version_id: (vid != store::NULL_VERSION).then_some(vid),
        }))
    }

    pub(super) async fn delete_object_tagging_impl(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let key = self.key(&input.key)?;
        let vid = store
            .put_object_tags(&bucket, &key, input.version_id.as_deref(), vec![])
            .await
            .map_err(s3_error)?;
        Ok(S3Response::new(DeleteObjectTaggingOutput {
            version_id: (vid != store::NULL_VERSION).then_some(vid),
        }))
    }
}

/// `?partNumber=N` of a GET or HEAD: 1..=10000, and not with a `Range`.
fn check_part_number(n: Option<i32>, ranged: bool) -> S3Result<Option<u32>> {
    match n {
        None => Ok(None),
        Some(_) if ranged => Err(s3_error!(
            InvalidRequest,
            "Cannot specify both Range header and partNumber query parameter"
        )),
        Some(n) if !(1..=10_000).contains(&n) => Err(invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive",
        )),
        Some(n) => Ok(Some(n as u32)),
    }
}

/// The object changed each time one of its parts was located and read: the client may try
/// again (S3 clients retry `SlowDown`).
fn changed_while_read() -> s3s::S3Error {
    s3_error!(
        SlowDown,
        "the object changed while one of its parts was read; try again"
    )
}

/// Whether an `If-Range` validator names `meta`: a strong entity tag equal to its ETag, or an
/// HTTP date equal to its Last-Modified (to the second). A weak tag never matches.
fn same_object(validator: &str, meta: &store::ObjectMeta) -> bool {
    let v = validator.trim();
    if v.starts_with('"') {
        return v.trim_matches('"') == meta.etag.trim_matches('"');
    }
    if v.starts_with("W/") {
        return false;
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822)
        .is_ok_and(|t| t.unix_timestamp() == meta.last_modified.unix_timestamp())
}
