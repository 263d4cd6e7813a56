//! PutObject on the s3 store: how a body's integrity is protected on its way to the backend,
//! and what the store has learned about the backend's checksums.
//!
//! Owns the choice between `Content-MD5` (a buffered body whose MD5 is known or needed), an
//! `x-amz-checksum-*` header instead (a buffered body whose MD5 nobody needs, see
//! [`PutOptions::checksum_suffices`]: CRC32C costs a small fraction of MD5), and a streamed
//! body hashed as it goes (see [`super::body`]).
//!
//! A backend that checks a checksum header echoes its own value in the answer. One that
//! does not echo may not have checked it either: the body's MD5 is then computed from the
//! buffered bytes and compared with the returned ETag (the object is deleted again if they
//! differ), and the store sends `Content-MD5` from then on. So does a store whose backend
//! refuses the header.

use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use md5::Digest as _;

use super::body::{self, Known, Prepared, prepare_upload};
use super::convert::{
    checksum_of, etag_contradicts_md5, tagging_header, trim_etag, version_or_null, with_attrs,
    with_upload_digests,
};
use super::lean::{Integrity, Lean};
use super::{Ctx, S3Store, sdk, written};
use crate::store::types::{ChecksumAlgorithm, Digests, ObjectAttrs};
use crate::store::{
    BucketName, ByteStream, Error, ObjectKey, ObjectMeta, PutOptions, Result, Tags,
};

const UNKNOWN: u8 = 0;
const ECHOES: u8 = 1;
const IGNORED: u8 = 2;

/// Whether the backend checks and echoes `x-amz-checksum-*` headers on PUT, as learned from
/// its answers.
#[derive(Debug)]
pub(super) struct Echo(AtomicU8);

impl Default for Echo {
    fn default() -> Self {
        Self(AtomicU8::new(UNKNOWN))
    }
}

impl Echo {
    /// The backend did not echo a checksum, or refused one.
    pub fn ignored(&self) -> bool {
        self.0.load(Ordering::Relaxed) == IGNORED
    }

    fn seen(&self) -> bool {
        self.0.load(Ordering::Relaxed) == ECHOES
    }

    fn set(&self, state: u8) -> bool {
        self.0.swap(state, Ordering::Relaxed) != state
    }
}

impl S3Store {
    pub(super) async fn put_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: ByteStream,
        opts: PutOptions,
    ) -> Result<ObjectMeta> {
        let PutOptions {
            attrs,
            tags,
            checksum_algorithm,
            size_hint,
            source_md5,
            shared_digests,
            checksum_suffices,
            verify,
        } = opts;
        // Held until the request is done: a buffered body stays in memory until then.
        let _room = match size_hint.filter(|n| *n <= body::MEMORY_LIMIT) {
            Some(n) => {
                let permits = u32::try_from(n.div_ceil(4096).max(1)).unwrap_or(u32::MAX);
                Some(
                    self.buffers
                        .clone()
                        .acquire_many_owned(permits)
                        .await
                        .map_err(|_| Error::Unavailable {
                            store: self.name.clone(),
                            message: "shutting down".to_owned(),
                        })?,
                )
            }
            None => None,
        };
        // A body nobody needs the MD5 of goes with a checksum instead of Content-MD5, to a
        // backend not yet known to ignore checksums: far cheaper to compute.
        let checksum_only = checksum_suffices
            && source_md5.is_none()
            && shared_digests.is_none()
            && self.lean.is_some()
            && size_hint.is_some_and(|n| n <= body::MEMORY_LIMIT)
            && !self.echo.ignored();
        let algorithm = match checksum_algorithm {
            None if checksum_only => Some(ChecksumAlgorithm::Crc32c),
            a => a,
        };
        let Prepared {
            body,
            buffered,
            md5_from_source,
            len,
            pending,
        } = prepare_upload(
            body,
            size_hint,
            algorithm,
            Known {
                source_md5,
                shared: shared_digests,
                checksum_only,
            },
            verify,
        )
        .await?;
        let (b, k) = (bucket.as_str(), key.as_str());
        if checksum_only {
            let (Some(lean), Some(bytes), Some(digests)) =
                (&self.lean, buffered, pending.known().cloned())
            else {
                return Err(Error::Index(
                    "a body to send with a checksum was not buffered".to_owned(),
                ));
            };
            return self
                .put_checksummed(lean, (key, b), bytes, digests, attrs, &tags)
                .await;
        }
        if let (Some(lean), Some(bytes), Some(digests)) = (&self.lean, buffered, pending.known())
            && (digests.checksum.is_none() || !self.supported())
        {
            return self
                .put_md5(
                    lean,
                    (key, b),
                    bytes,
                    digests,
                    md5_from_source,
                    attrs,
                    &tags,
                )
                .await;
        }
        let mut req = self
            .client
            .put_object()
            .bucket(b)
            .key(k)
            .body(body)
            .content_length(i64::try_from(len).unwrap_or(i64::MAX));
        req = with_attrs!(req, &attrs);
        if !tags.is_empty() {
            req = req.tagging(tagging_header(&tags));
        }
        req = with_upload_digests!(req, pending.known(), algorithm, self.supported());
        let result = req
            .customize()
            .config_override(Self::long_call())
            .send()
            .await;
        let (out, digests) = pending.settle(&self.name, result, |e| self.err(Ctx::key(b, k), e))?;
        let etag = trim_etag(out.e_tag());
        let sse = (out.server_side_encryption(), out.sse_customer_algorithm());
        // The backend's ETag is the check on a streamed body (its MD5 was not known up
        // front), and on a buffered one sent to a backend that ignores Content-MD5.
        if etag_contradicts_md5(&etag, &digests.md5, sse.0, sse.1) {
            self.discard(b, k, out.version_id()).await;
            return Err(Error::BadDigest {
                what: "MD5: the backend's ETag differs (damaged on the way?)".to_owned(),
            });
        }
        let version = version_or_null(out.version_id());
        let checksum = digests.checksum.or_else(|| checksum_of!(&out));
        Ok(written(
            key,
            version,
            etag,
            digests.size,
            attrs,
            checksum,
            &tags,
        ))
    }

    /// PUTs a buffered body with `Content-MD5` on the lean path, and compares the returned
    /// ETag too, also with an MD5 computed here: a backend that does not check `Content-MD5`
    /// (moto, some gateways) would otherwise keep a body damaged on the way.
    #[allow(clippy::too_many_arguments)]
    async fn put_md5(
        &self,
        lean: &Lean,
        (key, bucket): (&ObjectKey, &str),
        bytes: Bytes,
        digests: &Digests,
        md5_from_source: bool,
        attrs: ObjectAttrs,
        tags: &Tags,
    ) -> Result<ObjectMeta> {
        let k = key.as_str();
        let integrity = Integrity::Md5(&digests.md5);
        let put = lean
            .put(&self.name, bucket, k, bytes, integrity, &attrs, tags)
            .await?;
        let sse = put.sse.as_deref().map(sdk::ServerSideEncryption::from);
        if etag_contradicts_md5(&put.etag, &digests.md5, sse.as_ref(), put.sse_c.as_deref()) {
            self.discard(bucket, k, put.version_id.as_deref()).await;
            let whose = if md5_from_source { "source's " } else { "" };
            return Err(Error::BadDigest {
                what: format!("{whose}MD5: the backend's ETag differs (damaged on the way?)"),
            });
        }
        let version = version_or_null(put.version_id.as_deref());
        let checksum = digests.checksum.clone();
        Ok(written(
            key,
            version,
            put.etag,
            digests.size,
            attrs,
            checksum,
            tags,
        ))
    }

    /// PUTs a buffered body with its checksum instead of `Content-MD5`, then makes sure the
    /// backend checked it (see the module docs).
    async fn put_checksummed(
        &self,
        lean: &Lean,
        (key, bucket): (&ObjectKey, &str),
        bytes: Bytes,
        digests: Digests,
        attrs: ObjectAttrs,
        tags: &Tags,
    ) -> Result<ObjectMeta> {
        let k = key.as_str();
        let Some(sent) = digests.checksum.clone() else {
            return Err(Error::Index(
                "a checksum-only body has no checksum".to_owned(),
            ));
        };
        let integrity = Integrity::Checksum(&sent);
        let answer = lean
            .put(
                &self.name,
                bucket,
                k,
                bytes.clone(),
                integrity,
                &attrs,
                tags,
            )
            .await;
        let put = match answer {
            Ok(put) => put,
            Err(e) if !self.echo.seen() && refuses_header(&e) => {
                if self.echo.set(IGNORED) {
                    tracing::info!(store = %self.name, error = %e,
                        "the backend refused an x-amz-checksum header; sending Content-MD5 instead");
                }
                let digests = Digests {
                    md5: md5_of(&bytes),
                    checksum: None,
                    ..digests
                };
                return self
                    .put_md5(lean, (key, bucket), bytes, &digests, false, attrs, tags)
                    .await;
            }
            Err(e) => return Err(e),
        };
        let stored = match put.checksum.as_deref() {
            Some(v) if v == sent.value => {
                self.echo.set(ECHOES);
                Some(sent)
            }
            Some(other) => {
                self.discard(bucket, k, put.version_id.as_deref()).await;
                return Err(Error::BadDigest {
                    what: format!(
                        "{} (the backend's {other}, against the {} sent)",
                        sent.algorithm.as_str(),
                        sent.value
                    ),
                });
            }
            None => {
                // Not echoed, so maybe not checked: the ETag is the check of this body.
                if self.echo.set(IGNORED) {
                    tracing::info!(store = %self.name,
                        "the backend does not echo x-amz-checksum headers; sending Content-MD5 instead");
                }
                let md5 = md5_of(&bytes);
                let sse = put.sse.as_deref().map(sdk::ServerSideEncryption::from);
                if etag_contradicts_md5(&put.etag, &md5, sse.as_ref(), put.sse_c.as_deref()) {
                    self.discard(bucket, k, put.version_id.as_deref()).await;
                    return Err(Error::BadDigest {
                        what: "MD5: the backend's ETag differs (damaged on the way?)".to_owned(),
                    });
                }
                None
            }
        };
        let version = version_or_null(put.version_id.as_deref());
        Ok(written(
            key,
            version,
            put.etag,
            digests.size,
            attrs,
            stored,
            tags,
        ))
    }
}

/// An error that may be the backend refusing the checksum header itself (an older or partial
/// S3 implementation) rather than the body or the request.
fn refuses_header(e: &Error) -> bool {
    matches!(
        e,
        Error::Remote {
            status: 400 | 501,
            ..
        }
    )
}

fn md5_of(bytes: &[u8]) -> [u8; 16] {
    md5::Md5::digest(bytes).into()
}
