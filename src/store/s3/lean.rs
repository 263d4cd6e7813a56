//! The lean path for small PUTs: one SigV4-signed request on a hyper connection pool,
//! without the SDK's orchestrator.
//!
//! Owns: building, signing (aws-sigv4, the SDK's own signer), sending and retrying a PUT of a
//! buffered body, and reading its answer. Why it exists: per request the SDK's orchestration
//! (interceptors, runtime components, endpoint resolution, type-erased config layers) costs
//! more CPU than everything else in a 4 KiB copy, so bulk copies of small objects were bound
//! by it. Only bodies already in memory with their digests known take this path; they are
//! sent with `Content-MD5` and a signed payload hash, so the backend checks both. Everything
//! else (streams, multipart, checksum headers, every other operation) stays on the SDK.
//! Error answers map through the same table as the SDK's ([`super::error::map_answer`]).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::convert::{parse_http_date, tagging_header, trim_etag};
use super::error::{Answer, Ctx, chain, map_answer};
use super::{ATTEMPT_TIMEOUT, CONNECT_TIMEOUT, MAX_ATTEMPTS, S3Config};
use crate::store::types::{ObjectAttrs, Tags};
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

    /// PUTs a buffered body whose MD5 is known. Retries what may pass (no answer, 5xx, 429,
    /// SlowDown) like the SDK's standard policy: [`MAX_ATTEMPTS`] attempts with jittered
    /// exponential backoff.
    #[allow(clippy::too_many_arguments)]
    pub async fn put(
        &self,
        store: &str,
        bucket: &str,
        key: &str,
        body: Bytes,
        md5: &[u8; 16],
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
        add("content-md5", &digest::b64(md5))?;
        let standard = [
            ("content-type", &attrs.content_type),
            ("cache-control", &attrs.cache_control),
            ("content-disposition", &attrs.content_disposition),
            ("content-encoding", &attrs.content_encoding),
            ("content-language", &attrs.content_language),
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
            add(&format!("x-amz-meta-{k}"), v)?;
        }
        if !tags.is_empty() {
            add("x-amz-tagging", &tagging_header(tags))?;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send_put(bucket, key, &body, &headers).await {
                Ok(Sent::Done(put)) => return Ok(put),
                Ok(Sent::Refused { status, head, body }) => {
                    let code = Answer::code_of(&body);
                    let retry = status >= 500
                        || status == 429
                        || matches!(code, "SlowDown" | "RequestTimeout" | "InternalError");
                    if !retry || attempt >= MAX_ATTEMPTS {
                        let header = |name: &str| {
                            head.get(name)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        return Err(map_answer(
                            store,
                            ctx,
                            &Answer {
                                status,
                                code,
                                message: Answer::message_of(&body, status),
                                body: &body,
                                header: &header,
                            },
                        ));
                    }
                }
                Err(message) => {
                    if attempt >= MAX_ATTEMPTS {
                        return Err(Error::Unavailable {
                            store: store.to_owned(),
                            message,
                        });
                    }
                }
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    async fn send_put(
        &self,
        bucket: &str,
        key: &str,
        body: &Bytes,
        extra: &HeaderMap,
    ) -> std::result::Result<Sent, String> {
        let path = percent_encoding::utf8_percent_encode(key, PATH);
        let (host, uri) = if self.path_style {
            let host = self.authority.clone();
            let uri = format!("{}://{host}/{bucket}/{path}", self.scheme);
            (host, uri)
        } else {
            let host = format!("{bucket}.{}", self.authority);
            let uri = format!("{}://{host}/{path}", self.scheme);
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
        let mut signed_headers: Vec<(&str, &str)> =
            vec![("host", host.as_str()), ("content-length", len.as_str())];
        for (n, v) in extra {
            signed_headers.push((n.as_str(), v.to_str().unwrap_or_default()));
        }
        let signable = SignableRequest::new(
            "PUT",
            uri.as_str(),
            signed_headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| format!("signing: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("signing: {e}"))?
            .into_parts();
        let mut req = http::Request::builder()
            .method("PUT")
            .uri(&uri)
            .header("host", &host)
            .header("content-length", len)
            .body(Full::new(body.clone()))
            .map_err(|e| format!("request: {e}"))?;
        req.headers_mut().extend(extra.clone());
        instructions.apply_to_request_http1x(&mut req);
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| chain(&e))?;
            let (head, incoming) = resp.into_parts();
            let bytes = incoming
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((head, bytes))
        };
        let (head, bytes) = tokio::time::timeout(ATTEMPT_TIMEOUT, call)
            .await
            .map_err(|_| format!("no answer within {}s", ATTEMPT_TIMEOUT.as_secs()))??;
        let status = head.status.as_u16();
        if !head.status.is_success() {
            return Ok(Sent::Refused {
                status,
                head: head.headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok());
        Ok(Sent::Done(Put {
            etag: trim_etag(header("etag")),
            version_id: header("x-amz-version-id").map(str::to_owned),
        }))
    }
}

enum Sent {
    Done(Put),
    Refused {
        status: u16,
        head: HeaderMap,
        body: String,
    },
}

/// Jittered exponential backoff: up to 50 ms, 100 ms, 200 ms, … (capped at 5 s).
fn backoff(attempt: u32) -> Duration {
    use rand::Rng;
    let cap = 50u64.saturating_mul(1 << attempt.min(7)).min(5_000);
    Duration::from_millis(rand::thread_rng().gen_range(cap / 2..=cap))
}
