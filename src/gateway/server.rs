//! The HTTP server around the gateway: accepts connections, applies what s3s leaves to the
//! server (header size limit, XML body limit, a concurrency limit, the time limits of
//! [`super::timeouts`]), and shuts down gracefully, letting in-flight requests finish.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use s3s::auth::{S3Auth, SecretKey};
use s3s::config::{S3Config, StaticConfigProvider};
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3Result, s3_error};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::Gateway;
use super::timeouts::{self, IdleBody, StallIo};
use super::xml_digests::{self, XmlDigests};

/// Server limits and identity.
#[derive(Clone)]
pub struct ServerOptions {
    pub access_key: String,
    pub secret_key: String,
    /// Base domain for virtual-host style requests (`bucket.DOMAIN`); path style always works.
    pub domain: Option<String>,
    /// Requests handled at once; more wait for a slot.
    pub max_concurrency: usize,
    /// How long a client may send nothing of a body, or read nothing of an answer (see
    /// [`super::timeouts`]); a request head has at most 30 s, or this if shorter.
    pub client_timeout: Duration,
    /// The largest request head (request line and headers) accepted.
    pub max_header_bytes: usize,
    /// The largest XML request body accepted (DeleteObjects, CompleteMultipartUpload, …).
    pub max_xml_bytes: usize,
    /// The largest file a browser-form upload (POST Object) may carry.
    pub max_post_object_bytes: u64,
    /// The region this endpoint names to a client that signed for a region no one has.
    pub region: String,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("domain", &self.domain)
            .field("max_concurrency", &self.max_concurrency)
            .finish_non_exhaustive()
    }
}

/// Builds the s3s service: auth, host parsing, limits.
pub fn build_service(gateway: Gateway, opts: &ServerOptions) -> anyhow::Result<S3Service> {
    let configure = |b: &mut S3ServiceBuilder| -> anyhow::Result<()> {
        if let Some(given) = &opts.domain {
            // Hosts are matched without their port, so the domain is too (`s3.local:9000`
            // matched no host, and every virtual-host request was read as path style).
            let d = match given.rsplit_once(':') {
                Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                    h
                }
                _ => given.as_str(),
            };
            s3s::host::SingleDomain::new(d)
                .map_err(|e| anyhow::anyhow!("invalid --domain {given:?}: {e}"))?;
            b.set_host(PortlessHost {
                domain: d.to_ascii_lowercase(),
            });
        }
        let mut cfg = S3Config::default();
        cfg.xml_max_body_size = opts.max_xml_bytes;
        // s3s holds a browser-form upload's file in memory while it checks the POST policy
        // (its default allows 5 GB): bound it, and the number of such uploads at once
        // (`Limited`).
        cfg.post_object_max_file_size = opts.max_post_object_bytes;
        b.set_config(Arc::new(StaticConfigProvider::new(Arc::new(cfg))));
        Ok(())
    };
    // Reached only through the route, for reads whose signature held (see `ranges`).
    let mut unsigned = S3ServiceBuilder::new(gateway.clone());
    configure(&mut unsigned)?;
    let mut b = S3ServiceBuilder::new(gateway);
    b.set_auth(SingleKey {
        access_key: opts.access_key.clone(),
        secret_key: SecretKey::from(opts.secret_key.clone()),
    });
    configure(&mut b)?;
    b.set_route(super::ranges::IgnoredRange {
        unsigned: unsigned.build(),
    });
    Ok(b.build())
}

/// Virtual-host parsing (`bucket.domain`, with or without a port; host names compare
/// without case, as DNS does). Only names under the domain carry a bucket: any other host
/// (the domain itself, an IP address, `localhost`, the machine's name, a DNS alias) means
/// path style, as `--domain` promises (s3s's `SingleDomain` takes any other name for a
/// bucket, S3's CNAME style, so path-style requests to the server's own name failed, and
/// it refuses a Host with a port).
struct PortlessHost {
    /// The domain, lowercase.
    domain: String,
}

impl s3s::host::S3Host for PortlessHost {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<s3s::host::VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        // A fully qualified name's trailing dot (`b.example.com.`) is the same name.
        let name = name.strip_suffix('.').unwrap_or(name);
        let lower = name.to_ascii_lowercase();
        let bucket = lower
            .strip_suffix(self.domain.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
            .filter(|b| !b.is_empty());
        Ok(match bucket {
            Some(b) => s3s::host::VirtualHost::new(self.domain.as_str()).with_bucket(b.to_owned()),
            None => s3s::host::VirtualHost::new(name),
        })
    }
}

/// One key pair; an unknown access key gets AWS's `InvalidAccessKeyId` (s3s's sample
/// answers `NotSignedUp`, which clients do not explain well).
struct SingleKey {
    access_key: String,
    secret_key: SecretKey,
}

#[async_trait::async_trait]
impl S3Auth for SingleKey {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if access_key == self.access_key {
            Ok(self.secret_key.clone())
        } else {
            Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            ))
        }
    }
}

/// Request header fields accepted (hyper's default is 100).
const MAX_HEADERS: usize = 300;

/// Browser-form uploads served at once (each may hold `max_post_object_bytes` in memory).
const POST_OBJECT_SLOTS: usize = 4;

#[derive(Clone)]
struct Limited {
    inner: S3Service,
    slots: Arc<Semaphore>,
    post_slots: Arc<Semaphore>,
    region: Arc<str>,
    client_timeout: Duration,
    /// The secret key, for [`super::sigv2`]'s check of which path a SigV2 request signed.
    secret: Arc<str>,
    /// `--domain`, for naming a virtual-host request's bucket in its error answers.
    domain: Option<Arc<str>>,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Limited {
    type Response = s3s::HttpResponse;
    type Error = s3s::HttpError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn call(&self, mut req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let this = self.clone();
        let head = req.method() == http::Method::HEAD;
        let attributes = super::attributes::is_attributes_request(req.method(), req.uri());
        super::guard::drop_unusable_range(&mut req);
        super::guard::join_repeated_metadata(&mut req);
        super::sigv2::bucket_path(&mut req, &self.secret);
        let subject = super::subject::Subject::of_request(&req, self.domain.as_deref());
        // Whether the request carries a body (see the `Connection: close` below).
        let has_body = req.headers().contains_key(http::header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v != "0");
        // Refused before routing: how it is signed (see `guard::auth_shape`).
        let mut refused = super::guard::auth_shape(req.uri(), req.headers(), &this.region).err();
        let xml = xml_digests::wanted(req.method(), req.uri(), req.headers());
        if xml == XmlDigests::TooLarge && refused.is_none() {
            refused = Some(s3s::S3Error::with_message(
                s3s::S3ErrorCode::MaxMessageLengthExceeded,
                "Your request was too big.",
            ));
        }
        let form_upload = req.method() == http::Method::POST
            && req
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
        Box::pin(async move {
            // A browser-form upload holds its body in memory before s3s has checked its
            // signature (which is in the form): those wait for one of a few slots of their
            // own first, so they never hold a general slot while waiting (nor can slow ones
            // take all of them).
            let _held = match form_upload {
                true => Some(this.post_slots.clone().acquire_owned().await),
                false => None,
            };
            let permit = this.slots.acquire_owned().await;
            let idle = this.client_timeout;
            // An XML document is checked against its digests as s3s reads it, which is after
            // the signature is (see `xml_digests`).
            let verdict: Option<xml_digests::Verdict> =
                (xml == XmlDigests::Check && refused.is_none()).then(Default::default);
            let claims = match verdict {
                Some(_) => req.headers().clone(),
                None => http::HeaderMap::new(),
            };
            let stalled = Arc::new(AtomicBool::new(false));
            let mut req = req.map(|b| {
                let b = IdleBody::new(b, idle).flagging(stalled.clone());
                match &verdict {
                    Some(v) => {
                        s3s::Body::http_body(xml_digests::Checked::new(b, &claims, v.clone()))
                    }
                    None => s3s::Body::http_body(b),
                }
            });
            // A form's fields come before its signature is checked: they have `client_timeout`
            // in all, or a client without credentials trickling a byte at a time would hold
            // one of the few form slots for ever (found by a probe), and four of them every
            // browser upload.
            let mut refused = refused;
            if form_upload
                && refused.is_none()
                && tokio::time::timeout(idle, super::form::read_fields(&mut req))
                    .await
                    .is_err()
            {
                refused = Some(s3s::S3Error::with_message(
                    s3s::S3ErrorCode::RequestTimeout,
                    timeouts::STALLED_MESSAGE,
                ));
            }
            let mut res = match refused {
                Some(e) => {
                    let wrong_region = *e.code() == s3s::S3ErrorCode::AuthorizationHeaderMalformed;
                    let mut res = e
                        .to_http_response()
                        .map_err(|e| s3s::HttpError::new(Box::new(e)))?;
                    if wrong_region {
                        super::error::name_region(&mut res, &this.region);
                    }
                    res
                }
                None => {
                    // Run to its end even if the client goes away: hyper drops the request's
                    // future then, which could stop a write between its steps (a commit
                    // queued, a namespace bucket's journal). The slot goes with it.
                    let inner = this.inner.clone();
                    let handled = tokio::spawn(async move {
                        let _permit = permit;
                        inner.call(req).await
                    })
                    .await;
                    let res = match handled {
                        Ok(res) => res?,
                        Err(e) => {
                            tracing::error!(error = %e, "a request's handler failed");
                            s3s::S3Error::with_message(
                                s3s::S3ErrorCode::InternalError,
                                "We encountered an internal error. Please try again.",
                            )
                            .to_http_response()
                            .map_err(|e| s3s::HttpError::new(Box::new(e)))?
                        }
                    };
                    let mut refusal = verdict.and_then(|v| v.lock().ok()?.take());
                    // A body s3s read itself (an XML document) and that stopped arriving: s3s
                    // calls it an internal error.
                    if refusal.is_none()
                        && res.status() == http::StatusCode::INTERNAL_SERVER_ERROR
                        && stalled.load(Ordering::Relaxed)
                    {
                        refusal = Some(s3s::S3Error::with_message(
                            s3s::S3ErrorCode::RequestTimeout,
                            timeouts::STALLED_MESSAGE,
                        ));
                    }
                    match refusal {
                        Some(e) => e
                            .to_http_response()
                            .map_err(|e| s3s::HttpError::new(Box::new(e)))?,
                        None => res,
                    }
                }
            };
            // Every answer names its request, as S3's do, for logs on both sides to meet.
            let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_ascii_uppercase();
            if let Ok(v) = http::HeaderValue::from_str(&id) {
                res.headers_mut().insert("x-amz-request-id", v);
            }
            if form_upload {
                super::error::policy_refusal(&mut res, &id);
                super::form::mend_answer(&mut res);
            }
            super::error::explain(&mut res, &id);
            subject.name(&mut res);
            super::error::name_request(&mut res, &id);
            if let Some(order) = res.extensions_mut().remove::<super::list::VersionOrder>() {
                super::list::interleave_versions(&mut res, &order.0);
            }
            super::list::escape_carriage_returns(&mut res);
            if attributes {
                super::attributes::unquote_etag(&mut res);
            }
            // An error may be answered before the request's body was read (a failed
            // precondition, a refused header): the connection is closed after it rather than
            // kept, so no unread byte of that body is ever taken for the next request. The
            // case seen (a packet capture of the namespace probe): a client that sent
            // `Expect: 100-continue` and, refused before the 100, never sends the body
            // (botocore). When the unread body is dropped, hyper reads what has arrived "in
            // case a tiny body was included"; if the client's next request is already there,
            // its first bytes are taken as that body and the rest fails to parse (a bare 400).
            if has_body && (res.status().is_client_error() || res.status().is_server_error()) {
                res.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            if res.extensions_mut().remove::<NoContent>().is_some()
                && res.status() == http::StatusCode::OK
            {
                *res.status_mut() = http::StatusCode::NO_CONTENT;
            }
            // S3 answers a HEAD with a Range as the GET it stands for, 206; s3s 0.14 always
            // says 200 (and ignores a status set on the response).
            if head
                && res.status() == http::StatusCode::OK
                && res.headers().contains_key(http::header::CONTENT_RANGE)
            {
                *res.status_mut() = http::StatusCode::PARTIAL_CONTENT;
            }
            Ok(res)
        })
    }
}

/// Put in a handler's response extensions (which s3s 0.14 carries to the HTTP response, unlike
/// the status it ignores) when S3 answers that operation 204 No Content where s3s says 200.
#[derive(Clone, Copy)]
pub(super) struct NoContent;

/// Serves until `shutdown` resolves, then waits up to 30 s for in-flight requests.
pub async fn serve(
    listener: TcpListener,
    service: S3Service,
    opts: &ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let svc = Limited {
        inner: service,
        slots: Arc::new(Semaphore::new(opts.max_concurrency.max(1))),
        post_slots: Arc::new(Semaphore::new(POST_OBJECT_SLOTS)),
        region: opts.region.as_str().into(),
        client_timeout: opts.client_timeout,
        secret: opts.secret_key.as_str().into(),
        domain: opts.domain.as_deref().map(Into::into),
    };
    let head = timeouts::HEAD.min(opts.client_timeout);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(head)
        .max_buf_size(opts.max_header_bytes.max(8192))
        // S3 takes up to 2 KB of user metadata, which can be many small headers.
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let conn = builder
                    .serve_connection(
                        TokioIo::new(StallIo::new(stream, head, opts.client_timeout)),
                        svc.clone(),
                    )
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(30)) => {
            tracing::warn!("in-flight requests did not finish within 30 s; closing them");
        }
    }
    Ok(())
}
