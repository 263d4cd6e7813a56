//! The digests S3 checks an XML request body against (`Content-MD5`, `x-amz-checksum-*`) on
//! DeleteObjects, Put*Tagging, PutBucketVersioning and Put*Acl; s3s checks neither.
//!
//! The body is checked as s3s reads it, after s3s has checked the request's signature: a
//! [`Checked`] body hashes what passes through it and, at its end, fails the read when a digest
//! does not match, so the operation never runs on that document, and leaves its refusal in a
//! [`Verdict`] for the server to answer with (s3s would call a failed read an internal error).
//! Nothing is read for a request whose signature is wrong, so an unsigned client cannot hold
//! the server with a body that trickles in, or never comes.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, Uri};
use md5::Digest as _;
use s3s::{S3Error, S3Result, s3_error};

use crate::store::ChecksumAlgorithm;
use crate::store::digest::{self, ChecksumHasher};

/// The largest XML body checked against its digests: a DeleteObjects of 1000 keys of 1024
/// bytes with version ids is ~1.2 MB; tagging and versioning documents are tiny.
pub const XML_DIGEST_MAX_BYTES: u64 = 2 * 1024 * 1024;

/// What to do with a request that may carry an XML document S3 checks against its
/// `Content-MD5` or `x-amz-checksum-*` header. CompleteMultipartUpload is not one: its
/// checksum header claims the object's.
#[derive(Debug, PartialEq, Eq)]
pub enum XmlDigests {
    /// Nothing to check (or s3s refuses the request anyway: unsigned, no Content-Length).
    No,
    /// Check the body as it is read ([`Checked`]).
    Check,
    /// Larger than any such document.
    TooLarge,
}

pub fn wanted(method: &http::Method, uri: &Uri, headers: &HeaderMap) -> XmlDigests {
    let query = uri.query().unwrap_or("");
    let named = |name: &str| {
        query
            .split('&')
            .any(|p| p.split_once('=').map_or(p, |(n, _)| n) == name)
    };
    let xml_op = (method == http::Method::POST && named("delete"))
        || (method == http::Method::PUT
            && (named("tagging") || named("versioning") || named("acl")));
    let digests = headers.contains_key("content-md5")
        || ChecksumAlgorithm::ALL
            .iter()
            .any(|a| headers.contains_key(a.header_name()));
    // Only signed requests are checked (s3s refuses the others before reading), and not
    // aws-chunked ones, whose framing is not the document.
    let signed = headers.contains_key(http::header::AUTHORIZATION) || named("X-Amz-Signature");
    let chunked = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    if !(xml_op && digests && signed) || chunked {
        return XmlDigests::No;
    }
    match headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        None => XmlDigests::No,
        Some(n) if n > XML_DIGEST_MAX_BYTES => XmlDigests::TooLarge,
        Some(_) => XmlDigests::Check,
    }
}

/// Where a [`Checked`] body leaves the error the request is to be answered with.
pub type Verdict = Arc<Mutex<Option<S3Error>>>;

/// A request body hashed as it is read and checked against the digests its headers claim
/// (S3: `InvalidDigest` for a Content-MD5 that is not one, `BadDigest` for one that does not
/// match). Only the running hashes are kept, never the body.
pub struct Checked<B> {
    inner: B,
    /// The claimed Content-MD5, as sent, and the hash of what arrived.
    md5: Option<(String, md5::Md5)>,
    /// Each claimed checksum, as sent, and the hash of what arrived.
    sums: Vec<(ChecksumAlgorithm, String, ChecksumHasher)>,
    verdict: Verdict,
    ended: bool,
}

impl<B> Checked<B> {
    pub fn new(inner: B, headers: &HeaderMap, verdict: Verdict) -> Self {
        let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
        let md5 = headers
            .get("content-md5")
            .map(|v| (text(v), md5::Md5::new()));
        let sums = ChecksumAlgorithm::ALL
            .iter()
            .filter_map(|a| {
                let v = headers.get(a.header_name())?;
                Some((*a, text(v), ChecksumHasher::new(*a)))
            })
            .collect();
        Self {
            inner,
            md5,
            sums,
            verdict,
            ended: false,
        }
    }

    fn update(&mut self, data: &[u8]) {
        if let Some((_, h)) = &mut self.md5 {
            h.update(data);
        }
        for (_, _, h) in &mut self.sums {
            h.update(data);
        }
    }

    /// Compares what arrived with what was claimed.
    fn check(&mut self) -> S3Result<()> {
        if let Some((claimed, h)) = self.md5.take() {
            let claimed = digest::b64_decode(&claimed)
                .filter(|d| d.len() == 16)
                .ok_or_else(|| {
                    s3_error!(InvalidDigest, "The Content-MD5 you specified is not valid.")
                })?;
            if claimed.as_slice() != h.finalize().as_slice() {
                return Err(s3_error!(
                    BadDigest,
                    "The Content-MD5 you specified did not match what we received."
                ));
            }
        }
        for (a, claimed, h) in std::mem::take(&mut self.sums) {
            if claimed != h.finalize().value {
                return Err(s3_error!(
                    BadDigest,
                    "The {} you specified did not match the calculated checksum.",
                    a.header_name()
                ));
            }
        }
        Ok(())
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> http_body::Body for Checked<B>
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.update(data);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => {
                this.ended = true;
                match this.check() {
                    Ok(()) => Poll::Ready(None),
                    Err(e) => {
                        let said = e.to_string();
                        if let Ok(mut v) = this.verdict.lock() {
                            *v = Some(e);
                        }
                        Poll::Ready(Some(Err(said.into())))
                    }
                }
            }
        }
    }

    // Never ends early by this answer: the digests are compared when the inner body ends.
    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    fn body(doc: &'static [u8]) -> http_body_util::combinators::BoxBody<Bytes, BoxError> {
        http_body_util::Full::new(Bytes::from_static(doc))
            .map_err(|e| -> BoxError { match e {} })
            .boxed()
    }

    async fn read(headers: &[(&str, &str)]) -> (Result<Bytes, BoxError>, Option<S3Error>) {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        let verdict = Verdict::default();
        let got = Checked::new(body(b"<Delete/>"), &h, verdict.clone())
            .collect()
            .await
            .map(|c| c.to_bytes());
        let v = verdict.lock().expect("verdict").take();
        (got, v)
    }

    #[tokio::test]
    async fn a_matching_body_passes_and_a_wrong_one_fails_its_read() {
        let md5 = digest::b64(&md5::Md5::digest(b"<Delete/>"));
        let (got, verdict) = read(&[("content-md5", &md5)]).await;
        assert_eq!(got.expect("read").as_ref(), b"<Delete/>");
        assert!(verdict.is_none());

        let other = digest::b64(&md5::Md5::digest(b"other"));
        for (headers, code) in [
            (vec![("content-md5", other.as_str())], "BadDigest"),
            (vec![("content-md5", "not-md5")], "InvalidDigest"),
            (
                vec![
                    ("content-md5", md5.as_str()),
                    ("x-amz-checksum-crc32", "AAAAAA=="),
                ],
                "BadDigest",
            ),
        ] {
            let (got, verdict) = read(&headers).await;
            assert!(got.is_err(), "{headers:?}: the read must fail");
            let e = verdict.expect("a verdict");
            assert_eq!(e.code().as_str(), code, "{headers:?}");
        }
    }
}
