//! The lean path for small PUTs and for GETs: one SigV4-signed request on a hyper pool,
//! without the SDK's orchestrator.
//!
//! Owns: building, signing (aws-sigv4, the SDK's own signer), sending and retrying a PUT of a
//! buffered body, and reading its answer. Why it exists: per request the SDK's orchestration
//! (interceptors, runtime components, endpoint resolution, type-erased config layers) costs
//! more CPU than everything else in a 4 KiB copy, so bulk copies of small objects were bound
//! by it. Only bodies already in memory with their digests known take this path; they are
//! sent with `Content-MD5` (or, when the caller needs no MD5, an `x-amz-checksum-*` header)
//! so the backend checks them. Everything else (streams, multipart, buffered bodies whose
//! checksum the SDK sends under `ChecksumMode::WhenSupported`, every other operation) stays
//! on the SDK.
//! Error answers map through the same table as the SDK's ([`super::error::map_answer`]).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use aws_sdk_s3::types::ServerSideEncryption;

use super::S3Config;
use super::config::{ATTEMPT_TIMEOUT, CONNECT_TIMEOUT, MAX_ATTEMPTS, STALL_GRACE};
use super::convert::{
    etag_is_opaque, metadata_in, metadata_out, parse_http_date, parts_from_etag, pick_checksum,
    tagging_header, to_time, trim_etag, version_or_null,
};
use super::error::{Answer, Ctx, chain, map_answer};
use crate::store::ObjectKey;
use crate::store::types::{ByteStream, Checksum, ObjectAttrs, ObjectMeta, Tags};
use crate::store::{Error, Result, digest};

/// Characters a key keeps unescaped in a request path (RFC 3986 unreserved, and `/`).
const PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A signed-request client for one endpoint.
pub(super) struct Lean {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `http` or `https`.
    scheme: String,
    /// `host[:port]` of the endpoint.
    authority: String,
    path_style: bool,
    region: String,
    identity: Identity,
}

/// What a successful PUT answered.
pub(super) struct Put {
    pub etag: String,
    pub version_id: Option<String>,
    /// The ETag is not the MD5 (the object is encrypted with SSE-KMS or SSE-C).
    pub opaque_etag: bool,
    /// The backend's value of the checksum the request carried (`x-amz-checksum-*`), when it
    /// echoed one: it computed that checksum over the bytes it received.
    pub checksum: Option<String>,
}

/// How a lean PUT lets the backend check the body it receives.
pub(super) enum Integrity<'a> {
    /// `Content-MD5`, and the object's checksum for a backend that keeps it without
    /// checking it (moto).
    Md5(&'a [u8; 16], Option<&'a Checksum>),
    /// An `x-amz-checksum-*` header, for a backend that checks it (and echoes it).
    Checksum(&'a Checksum),
}

impl Lean {
    /// `None` when the lean path cannot serve this configuration (no custom endpoint: AWS
    /// itself, whose endpoints depend on the region and bucket, stays with the SDK).
    pub fn new(cfg: &S3Config) -> Option<Self> {
        let endpoint = cfg.endpoint.as_deref().map(str::trim)?;
        let uri: http::Uri = endpoint.trim_end_matches('/').parse().ok()?;
        if !uri.path().trim_matches('/').is_empty() {
            return None;
        }
        let scheme = uri.scheme_str()?.to_owned();
        let authority = uri.authority()?.as_str().to_owned();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::aws_lc_rs::default_provider())
            .ok()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            // Many connections at once (one per worker): keep each read buffer small.
            .http1_max_buf_size(64 * 1024)
            .build(connector);
        let identity =
            Credentials::new(&cfg.access_key, &cfg.secret_key, None, None, "ferry-static").into();
        Some(Self {
            client,
            scheme,
            authority,
            path_style: cfg.path_style,
            region: cfg.region.trim().to_owned(),
            identity,
        })
    }

    /// PUTs a buffered body whose MD5 or checksum is known (retried as [`Self::call`] says).
    #[allow(clippy::too_many_arguments)]
    pub async fn put(
        &self,
        store: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        integrity: Integrity<'_>,
        attrs: &ObjectAttrs,
        tags: &Tags,
    ) -> Result<Put> {
        let ctx = Ctx::key(bucket, key);
        let mut headers = HeaderMap::new();
        let mut add = |name: &str, value: &str| -> Result<()> {
            let v = HeaderValue::from_str(value).map_err(|_| {
                Error::InvalidArgument(format!("{name}: {value:?} is not a valid header value"))
            })?;
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::InvalidArgument(format!("{name:?} is not a header name")))?;
            headers.insert(n, v);
            Ok(())
        };
        // A checksum goes with the algorithm's name, as the AWS SDKs send it: a backend may
        // look for the value only under the algorithm named (moto keeps none otherwise).
        let mut checksum = |c: &Checksum| -> Result<()> {
            add("x-amz-sdk-checksum-algorithm", c.algorithm.as_str())?;
            add(c.algorithm.header_name(), &c.value)
        };
        let echo = match integrity {
            Integrity::Md5(md5, kept) => {
                if let Some(c) = kept {
                    checksum(c)?;
                }
                add("content-md5", &digest::b64(md5))?;
                None
            }
            Integrity::Checksum(c) => {
                checksum(c)?;
                Some(c.algorithm.header_name())
            }
        };
        let standard = [
            ("content-type", &attrs.content_type),
            ("cache-control", &attrs.cache_control),
            ("content-disposition", &attrs.content_disposition),
            ("content-encoding", &attrs.content_encoding),
            ("content-language", &attrs.content_language),
            ("x-amz-website-redirect-location", &attrs.website_redirect),
        ];
        for (name, value) in standard {
            if let Some(v) = value {
                add(name, v)?;
            }
        }
        // As the SDK does: an Expires that is not an HTTP date is not sent.
        if let Some(e) = attrs
            .expires
            .as_deref()
            .filter(|e| parse_http_date(e).is_some())
        {
            add("expires", e)?;
        }
        for (k, v) in &attrs.user_metadata {
            add(&format!("x-amz-meta-{k}"), &metadata_out(v))?;
        }
        if !tags.is_empty() {
            add("x-amz-tagging", &tagging_header(tags))?;
        }
        let (head, incoming) = self.call(store, ctx, "PUT", None, &headers, body).await?;
        // The answer to a PUT has no body worth reading; drain it so the connection is reused.
        let _ = incoming.collect().await;
        let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok());
        Ok(Put {
            etag: trim_etag(header("etag")),
            version_id: header("x-amz-version-id").map(str::to_owned),
            opaque_etag: opaque_etag(&head.headers),
            checksum: echo.and_then(header).map(str::to_owned),
        })
    }

    /// GETs an object (or a range of it, or a version): the answer's head and its body as a
    /// stream that fails if no byte arrives for [`STALL_GRACE`].
    pub async fn get(
        &self,
        store: &str,
        ctx: Ctx<'_>,
        range: Option<String>,
    ) -> Result<(http::response::Parts, ByteStream)> {
        let mut headers = HeaderMap::new();
        if let Some(r) = range.and_then(|r| HeaderValue::from_str(&r).ok()) {
            headers.insert(http::header::RANGE, r);
        }
        // The object's checksum is said in the answer (not checked here: the caller's
        // reader does, where it must).
        headers.insert(
            HeaderName::from_static("x-amz-checksum-mode"),
            HeaderValue::from_static("ENABLED"),
        );
        let query = ctx
            .version_id
            .map(|v| format!("versionId={}", urlencoding::encode(v)));
        let (head, incoming) = self
            .call(store, ctx, "GET", query.as_deref(), &headers, Bytes::new())
            .await?;
        let frames = http_body_util::BodyStream::new(incoming);
        let body = futures::stream::unfold(Some(frames), |state| async move {
            let mut frames = state?;
            loop {
                return match tokio::time::timeout(STALL_GRACE, frames.next()).await {
                    Err(_) => Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no data for {}s", STALL_GRACE.as_secs()),
                        )),
                        None,
                    )),
                    Ok(None) => None,
                    Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
                    Ok(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => Some((Ok(data), Some(frames))),
                        Err(_) => continue, // trailers
                    },
                };
            }
        });
        Ok((head, Box::pin(body)))
    }

    /// Sends one request, retrying what may pass (no answer, 5xx, 429, SlowDown) like the
    /// SDK's standard policy: [`MAX_ATTEMPTS`] attempts with jittered exponential backoff.
    /// An error answer is read and mapped; a success is returned with its body unread.
    async fn call(
        &self,
        store: &str,
        ctx: Ctx<'_>,
        method: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<(http::response::Parts, Incoming)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let failure = match self
                .send(
                    method,
                    ctx.bucket,
                    ctx.key.unwrap_or_default(),
                    query,
                    headers,
                    &body,
                )
                .await
            {
                Ok((head, incoming)) if head.status.is_success() => {
                    return Ok((head, incoming));
                }
                Ok((head, incoming)) => {
                    let status = head.status.as_u16();
                    let text = match tokio::time::timeout(ATTEMPT_TIMEOUT, incoming.collect()).await
                    {
                        Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                        _ => String::new(),
                    };
                    let code = Answer::code_of(&text);
                    // 501 Not Implemented will not change on a second try.
                    let retry = (status >= 500 && status != 501)
                        || status == 429
                        || matches!(code, "SlowDown" | "RequestTimeout" | "InternalError");
                    let header = |name: &str| {
                        head.headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned)
                    };
                    let err = map_answer(
                        store,
                        ctx,
                        &Answer {
                            status,
                            code,
                            message: Answer::message_of(&text, status),
                            body: &text,
                            header: &header,
                        },
                    );
                    if !retry {
                        return Err(err);
                    }
                    err
                }
                Err(message) => Error::Unavailable {
                    store: store.to_owned(),
                    message,
                },
            };
            if attempt >= MAX_ATTEMPTS {
                return Err(failure);
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Signs and sends one request; returns the answer's head once it has arrived.
    async fn send(
        &self,
        method: &str,
        bucket: &str,
        key: &str,
        query: Option<&str>,
        extra: &HeaderMap,
        body: &Bytes,
    ) -> std::result::Result<(http::response::Parts, Incoming), String> {
        let path = percent_encoding::utf8_percent_encode(key, PATH);
        let query = query.map(|q| format!("?{q}")).unwrap_or_default();
        // A name that cannot be a DNS label (S3's pre-2018 names: capitals, `_`) or that
        // has dots (a TLS wildcard certificate covers one label) goes in the path, as the
        // SDK's endpoint rules put it.
        let hostable = crate::store::BucketName::parse(bucket).is_ok() && !bucket.contains('.');
        let (host, uri) = if self.path_style || !hostable {
            let host = self.authority.clone();
            let uri = format!("{}://{host}/{bucket}/{path}{query}", self.scheme);
            (host, uri)
        } else {
            let host = format!("{bucket}.{}", self.authority);
            let uri = format!("{}://{host}/{path}{query}", self.scheme);
            (host, uri)
        };
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| format!("signing: {e}"))?
            .into();
        let len = body.len().to_string();
        let mut signed_headers: Vec<(&str, &str)> = vec![("host", host.as_str())];
        if method == "PUT" {
            signed_headers.push(("content-length", len.as_str()));
        }
        for (n, v) in extra {
            signed_headers.push((n.as_str(), v.to_str().unwrap_or_default()));
        }
        // A PUT carries Content-MD5 or a checksum, which the backend checks; hashing the
        // payload again for the signature would only cost CPU (what the SDK does over TLS
        // too).
        let payload = if method == "PUT" {
            SignableBody::UnsignedPayload
        } else {
            SignableBody::Bytes(body)
        };
        let signable = SignableRequest::new(
            method,
            uri.as_str(),
            signed_headers.iter().copied(),
            payload,
        )
        .map_err(|e| format!("signing: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("signing: {e}"))?
            .into_parts();
        let mut req = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header("host", &host);
        if method == "PUT" {
            req = req.header("content-length", len);
        }
        let mut req = req
            .body(Full::new(body.clone()))
            .map_err(|e| format!("request: {e}"))?;
        req.headers_mut().extend(extra.clone());
        instructions.apply_to_request_http1x(&mut req);
        let resp = tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()))?
            .map_err(|e| chain(&e))?;
        Ok(resp.into_parts())
    }
}

/// Jittered exponential backoff: up to 50 ms, 100 ms, 200 ms, … (capped at 5 s).
fn backoff(attempt: u32) -> Duration {
    use rand::Rng;
    let cap = 50u64.saturating_mul(1 << attempt.min(7)).min(5_000);
    Duration::from_millis(rand::thread_rng().gen_range(cap / 2..=cap))
}

/// Whether an answer's encryption headers say its ETag is not the MD5
/// ([`etag_is_opaque`]).
fn opaque_etag(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let sse = header("x-amz-server-side-encryption").map(ServerSideEncryption::from);
    etag_is_opaque(
        sse.as_ref(),
        header("x-amz-server-side-encryption-customer-algorithm"),
    )
}

/// The object an answer's headers describe (what the SDK's `meta_of!` reads from its output).
pub(super) fn meta_from_head(
    key: ObjectKey,
    headers: &HeaderMap,
    size: u64,
    is_latest: bool,
) -> ObjectMeta {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let owned = |name: &str| header(name).map(str::to_owned);
    let etag = trim_etag(header("etag"));
    let user_metadata = headers
        .iter()
        .filter_map(|(n, v)| {
            let name = n.as_str().strip_prefix("x-amz-meta-")?;
            // S3 encodes non-ASCII values (RFC 2047); some servers (moto, MinIO) send the
            // UTF-8 bytes as they are, which a strict header reading would drop.
            let value = std::str::from_utf8(v.as_bytes()).ok()?;
            Some((name.to_ascii_lowercase(), metadata_in(value)))
        })
        .collect();
    ObjectMeta {
        key,
        version_id: version_or_null(header("x-amz-version-id")),
        is_latest,
        delete_marker: header("x-amz-delete-marker")
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        size,
        last_modified: to_time(header("last-modified").and_then(parse_http_date).as_ref()),
        attrs: ObjectAttrs {
            content_type: owned("content-type"),
            cache_control: owned("cache-control"),
            content_disposition: owned("content-disposition"),
            content_encoding: owned("content-encoding"),
            content_language: owned("content-language"),
            expires: owned("expires"),
            user_metadata,
            storage_class: owned("x-amz-storage-class").filter(|c| c != "STANDARD"),
            website_redirect: owned("x-amz-website-redirect-location"),
        },
        checksum: pick_checksum(
            [
                header("x-amz-checksum-crc32"),
                header("x-amz-checksum-crc32c"),
                header("x-amz-checksum-crc64nvme"),
                header("x-amz-checksum-sha1"),
                header("x-amz-checksum-sha256"),
            ],
            header("x-amz-checksum-type").is_some_and(|t| t.eq_ignore_ascii_case("COMPOSITE")),
        ),
        tag_count: header("x-amz-tagging-count")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        parts_count: parts_from_etag(&etag),
        opaque_etag: opaque_etag(headers),
        etag,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn user_metadata_is_read_encoded_or_raw() {
        let mut h = HeaderMap::new();
        h.insert("etag", HeaderValue::from_static("\"abc\""));
        h.insert("x-amz-meta-plain", HeaderValue::from_static("v"));
        h.insert(
            "x-amz-meta-encoded",
            HeaderValue::from_static("=?UTF-8?B?Y2Fmw6k=?="),
        );
        h.insert(
            "x-amz-meta-raw",
            HeaderValue::from_bytes("café".as_bytes()).expect("value"),
        );
        let m = meta_from_head(ObjectKey::parse("k").expect("key"), &h, 1, true);
        let md = &m.attrs.user_metadata;
        assert_eq!(md.get("plain").map(String::as_str), Some("v"));
        assert_eq!(md.get("encoded").map(String::as_str), Some("café"));
        assert_eq!(md.get("raw").map(String::as_str), Some("café"));
    }
}
