//! PutObject on the s3 store: how a body's integrity is protected on its way to the backend,
//! and what the store has learned about the backend's checksums.
//!
//! Owns the choice between `Content-MD5` (a buffered body whose MD5 is known or needed), an
//! `x-amz-checksum-*` header instead (a buffered body whose MD5 nobody needs, see
//! [`PutOptions::checksum_suffices`]: CRC32C costs a small fraction of MD5), and a streamed
//! body hashed as it goes (see [`super::body`]).
//!
//! Before a store first trusts its backend with a checksum instead of `Content-MD5`, it
//! finds out whether the backend checks it: the first such body goes with a deliberately
//! wrong checksum. A backend that checks refuses it (`BadDigest`), and the body then goes
//! with its right checksum, which the backend checks from then on. One that accepts it (moto)
//! or refuses the header itself does not check checksums: the probe's version is deleted
//! again (its bytes were right, its stored checksum was not) and the store sends `Content-MD5`
//! from then on. Every body sent with `Content-MD5` also has its returned ETag compared with
//! the MD5, for backends that do not check `Content-MD5` either (moto again).

use bytes::Bytes;
use md5::Digest as _;

use super::body::{self, Known, Prepared, prepare_upload};
use super::convert::{
    checksum_of, etag_contradicts_md5, etag_differs_from_md5, etag_is_opaque, tagging_header,
    trim_etag, version_or_null, with_attrs, with_upload_digests,
};
use super::lean::{Integrity, Lean};
use super::parts::HeaderChecks;
use super::{Ctx, S3Store, written};
use crate::store::digest;
use crate::store::types::{Checksum, ChecksumAlgorithm, Digests, ObjectAttrs};
use crate::store::{
    BucketName, ByteStream, Error, ObjectKey, ObjectMeta, PutOptions, Result, Tags,
};

/// Whether the backend checks `x-amz-checksum-*` headers on PutObject, found out once per
/// store (see the module docs; parts have their own, [`super::parts::PartEcho`]).
#[derive(Debug, Default)]
pub(super) struct Echo(
    tokio::sync::OnceCell<HeaderChecks>,
    /// PUTs refused with a checksum header for a reason that does not name it, then taken
    /// without it, in a row: after [`UNEXPLAINED`] the header is taken to be refused.
    std::sync::atomic::AtomicU32,
);

/// See [`Echo`]'s count.
const UNEXPLAINED: u32 = 3;

impl Echo {
    /// The backend was found not to check checksums.
    pub fn ignored(&self) -> bool {
        self.0.get().is_some_and(|c| *c != HeaderChecks::Checks)
    }

    /// The backend was found to refuse checksum headers.
    pub fn refuses(&self) -> bool {
        self.0.get() == Some(&HeaderChecks::Refuses)
    }

    /// Records that the backend refused a checksum header (a PUT that went through without
    /// it). A probe's verdict, if one was made, stands.
    pub fn refused(&self) {
        let _ = self.0.set(HeaderChecks::Refuses);
    }

    /// Counts a PUT refused with the header for a reason that does not name it and taken
    /// without it; says whether that happened [`UNEXPLAINED`] times in a row.
    fn unexplained(&self) -> bool {
        self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 >= UNEXPLAINED
    }

    /// A PUT with the header went through: the refusals before it said nothing of it.
    fn taken(&self) {
        self.1.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// What the backend does with checksums, found out with `probe` the first time (calls
    /// at the same time wait for that probe; a probe that fails is tried again next time).
    pub async fn find_out<F, Fut>(&self, probe: F) -> Result<HeaderChecks>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<HeaderChecks>>,
    {
        self.0.get_or_try_init(probe).await.copied()
    }
}

/// `sent` with its first byte flipped: a checksum no body of the same bytes has.
pub(super) fn wrong(sent: &Checksum) -> Checksum {
    let mut raw = digest::b64_decode(&sent.value).unwrap_or_default();
    if let Some(b) = raw.first_mut() {
        *b ^= 0xFF;
    }
    Checksum {
        value: digest::b64(&raw),
        ..sent.clone()
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
            checksum: _,
            full_object_checksum: _,
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
        if attrs.content_type.is_none() {
            // The SDK would send application/octet-stream; S3 itself says binary/octet-stream
            // for an object stored without a type, and a copy must read back as its source.
            req = req.content_type(crate::store::DEFAULT_CONTENT_TYPE);
        }
        if !tags.is_empty() {
            req = req.tagging(tagging_header(&tags));
        }
        req = with_upload_digests!(
            req,
            pending.known(),
            algorithm,
            self.supported(),
            self.sends_known_checksums()
        );
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
        let opaque = etag_is_opaque(sse.0, sse.1);
        Ok(written(
            key,
            (version, etag, opaque),
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
        // The checksum checked here (the client's, the source's) goes beside Content-MD5 as
        // a plain header, in either checksum mode (when_required avoids the SDK's trailers,
        // not headers), so reads with ChecksumMode return it as from S3; a backend that
        // checks it checks it. One that turns the header down is sent none from then on.
        let kept = digests.checksum.as_ref().filter(|_| !self.echo.refuses());
        let put = match lean
            .put(
                &self.name,
                bucket,
                k,
                bytes.clone(),
                Integrity::Md5(&digests.md5, kept),
                &attrs,
                tags,
            )
            .await
        {
            Err(e) if kept.is_some() && turned_down(&e) => {
                let put = lean
                    .put(
                        &self.name,
                        bucket,
                        k,
                        bytes,
                        Integrity::Md5(&digests.md5, None),
                        &attrs,
                        tags,
                    )
                    .await
                    .inspect_err(|_| {
                        tracing::debug!(store = %self.name, first = %e,
                            "a PUT refused with a checksum header was refused without it too");
                    })?;
                // A refusal that names the checksum (or says the feature is missing) is a
                // verdict on the header; another 400 that a second try passed is one only
                // when it happens every time.
                if refuses_header(&e) || self.echo.unexplained() {
                    tracing::info!(store = %self.name, error = %e,
                        "the backend turns down x-amz-checksum headers; objects keep no checksum there");
                    self.echo.refused();
                }
                put
            }
            r => {
                let put = r?;
                if kept.is_some() {
                    self.echo.taken();
                }
                put
            }
        };
        if etag_differs_from_md5(&put.etag, &digests.md5, put.opaque_etag) {
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
            (version, put.etag, put.opaque_etag),
            digests.size,
            attrs,
            checksum,
            tags,
        ))
    }

    /// PUTs a buffered body with its checksum instead of `Content-MD5`, once the backend is
    /// known to check it (see the module docs).
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
        let checks = self
            .echo
            .find_out(|| self.probe(lean, (k, bucket), &bytes, &sent, &attrs, tags))
            .await?;
        if checks != HeaderChecks::Checks {
            let digests = Digests {
                md5: md5_of(&bytes),
                checksum: Some(sent).filter(|_| checks == HeaderChecks::Ignores),
                ..digests
            };
            return self
                .put_md5(lean, (key, bucket), bytes, &digests, false, attrs, tags)
                .await;
        }
        let integrity = Integrity::Checksum(&sent);
        let put = lean
            .put(&self.name, bucket, k, bytes, integrity, &attrs, tags)
            .await?;
        // The backend checked the checksum (it refused a wrong one); an echo that differs
        // says it stored something else all the same.
        if let Some(other) = put.checksum.as_deref().filter(|v| *v != sent.value) {
            self.discard(bucket, k, put.version_id.as_deref()).await;
            return Err(Error::BadDigest {
                what: format!(
                    "{} checksum: the backend answered {other} for the {} sent",
                    sent.algorithm.as_str(),
                    sent.value
                ),
            });
        }
        let version = version_or_null(put.version_id.as_deref());
        Ok(written(
            key,
            (version, put.etag, put.opaque_etag),
            digests.size,
            attrs,
            Some(sent),
            tags,
        ))
    }

    /// Sends `bytes` to `key` with a wrong checksum: whether the backend refuses it says
    /// whether it checks checksums. A backend that took it keeps the right bytes under a
    /// wrong checksum; that version is deleted again (the caller writes the key next).
    async fn probe(
        &self,
        lean: &Lean,
        (k, bucket): (&str, &str),
        bytes: &Bytes,
        sent: &Checksum,
        attrs: &ObjectAttrs,
        tags: &Tags,
    ) -> Result<HeaderChecks> {
        let wrong = wrong(sent);
        let answer = lean
            .put(
                &self.name,
                bucket,
                k,
                bytes.clone(),
                Integrity::Checksum(&wrong),
                attrs,
                tags,
            )
            .await;
        let checks = match answer {
            Err(Error::BadDigest { .. }) => HeaderChecks::Checks,
            Err(e) if refuses_header(&e) => {
                tracing::info!(store = %self.name, error = %e,
                    "the backend refuses x-amz-checksum headers; sending Content-MD5");
                HeaderChecks::Refuses
            }
            Err(e) => return Err(e),
            Ok(put) => {
                self.discard(bucket, k, put.version_id.as_deref()).await;
                tracing::info!(store = %self.name,
                    "the backend does not check x-amz-checksum headers; sending Content-MD5");
                HeaderChecks::Ignores
            }
        };
        Ok(checks)
    }
}

/// An answer that may be the backend turning down a checksum header sent beside
/// `Content-MD5` (which protects the body on its own): a refusal of the request as such,
/// tried again without the header (a server may word it without naming the checksum); not
/// one a second try may pass anyway (its SDK-level retries are spent by then).
fn turned_down(e: &Error) -> bool {
    const PASSING: &[&str] = &[
        "RequestTimeout",
        "IncompleteBody",
        "ExpiredToken",
        "SlowDown",
        "RequestTimeTooSkewed",
    ];
    refuses_header(e)
        || matches!(e, Error::Remote { status: 400, code, .. } if !PASSING.contains(&code.as_str()))
}

/// An error that is the backend refusing the checksum header itself (an older or partial S3
/// implementation) rather than the body or the request.
pub(super) fn refuses_header(e: &Error) -> bool {
    match e {
        Error::Remote { status: 501, .. } => true,
        Error::Remote {
            status: 400,
            code,
            message,
            ..
        } => {
            let says = |s: &str| s.to_ascii_lowercase().contains("checksum");
            says(code) || says(message)
        }
        _ => false,
    }
}

fn md5_of(bytes: &[u8]) -> [u8; 16] {
    md5::Md5::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(status: u16, code: &str, message: &str) -> Error {
        Error::Remote {
            store: "s".into(),
            code: code.into(),
            message: message.into(),
            status,
        }
    }

    #[test]
    fn only_a_refusal_of_the_checksum_counts_as_one() {
        assert!(refuses_header(&remote(501, "NotImplemented", "")));
        assert!(refuses_header(&remote(
            400,
            "InvalidArgument",
            "x-amz-checksum-crc32c is not supported"
        )));
        assert!(refuses_header(&remote(400, "InvalidChecksum", "")));
        assert!(!refuses_header(&remote(
            400,
            "InvalidArgument",
            "bad metadata"
        )));
        assert!(!refuses_header(&remote(400, "RequestTimeout", "")));
        assert!(!refuses_header(&Error::BadDigest { what: "x".into() }));
    }
}
