//! A small S3 load generator for `bench/` scripts: the same client drives every server under
//! comparison. Prints one JSON line per run.
//!
//! The PUT/GET hot loop sends SigV4-signed requests (payload signed, `x-amz-content-sha256`)
//! over a plain hyper connection pool, signed by `aws-sigv4` (the SDK's own signer): on a
//! 2-core machine the full SDK spent about 190 µs of CPU per request, a third of the whole
//! budget, so it hid the difference between servers. Everything else uses aws-sdk-s3
//! (checksums only where required, so the client measures the server, not its own hashing).
//!
//! ```text
//! s3bench ENDPOINT BUCKET mb
//! s3bench ENDPOINT BUCKET put   --count N --size BYTES --concurrency C [--prefix P] [--client lean|sdk]
//! s3bench ENDPOINT BUCKET get   --count N --concurrency C [--prefix P] [--client lean|sdk]
//! s3bench ENDPOINT BUCKET list  [--prefix P]             (keys/s over the whole listing, first-page latency)
//! s3bench ENDPOINT BUCKET putfile --key K --file PATH
//! s3bench ENDPOINT BUCKET getfile --key K
//! ```
//! Credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A SigV4 signer and connection pool for the hot loop.
struct Lean {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: String,
    host: String,
    identity: aws_smithy_runtime_api::client::identity::Identity,
}

impl Lean {
    fn new(endpoint: &str, access: &str, secret: &str, conc: usize) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(conc)
            .build(conn);
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let host = endpoint.split("://").nth(1).unwrap_or(&endpoint).to_owned();
        let identity = Credentials::new(access, secret, None, None, "bench").into();
        Self {
            client,
            endpoint,
            host,
            identity,
        }
    }

    /// Sends a signed request; returns the status and the whole response body.
    async fn send(&self, method: &str, path: &str, body: Bytes) -> Result<Bytes, String> {
        use aws_sigv4::http_request::{
            PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
            SigningSettings, UriPathNormalizationMode, sign,
        };
        let uri = format!("{}{path}", self.endpoint);
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&self.identity)
            .region("us-east-1")
            .name("s3")
            .time(std::time::SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let len = body.len().to_string();
        let headers = [
            ("host", self.host.as_str()),
            ("content-length", len.as_str()),
        ];
        let signable = SignableRequest::new(
            method,
            uri.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let mut req = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header("host", &self.host)
            .header("content-length", len)
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        instructions.apply_to_request_http1x(&mut req);
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)));
        }
        Ok(bytes)
    }
}

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

fn num(args: &[String], name: &str, default: usize) -> usize {
    arg(args, name, &default.to_string())
        .parse()
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: s3bench ENDPOINT BUCKET put|get|list|putfile|getfile [options]");
        std::process::exit(2);
    }
    let (endpoint, bucket, mode) = (args[0].clone(), args[1].clone(), args[2].clone());
    let creds = Credentials::new(
        std::env::var("AWS_ACCESS_KEY_ID")?,
        std::env::var("AWS_SECRET_ACCESS_KEY")?,
        None,
        None,
        "bench",
    );
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(&endpoint)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(conf);
    let prefix = arg(&args, "--prefix", "k");
    match mode.as_str() {
        "mb" => {
            s3.create_bucket().bucket(&bucket).send().await?;
        }
        "put" | "get" => {
            let count = num(&args, "--count", 10_000);
            let conc = num(&args, "--concurrency", 64);
            let size = num(&args, "--size", 4096);
            let sdk = arg(&args, "--client", "lean") == "sdk";
            let body = Bytes::from(vec![b'x'; size]);
            let lean = Arc::new(Lean::new(
                &endpoint,
                &std::env::var("AWS_ACCESS_KEY_ID")?,
                &std::env::var("AWS_SECRET_ACCESS_KEY")?,
                conc,
            ));
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..conc {
                let (s3, lean, bucket, prefix, body, next) = (
                    s3.clone(),
                    lean.clone(),
                    bucket.clone(),
                    prefix.clone(),
                    body.clone(),
                    next.clone(),
                );
                let mode = mode.clone();
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let key = format!("{prefix}/{i:08}");
                        let t = Instant::now();
                        let path = format!("/{bucket}/{key}");
                        if sdk && mode == "put" {
                            s3.put_object()
                                .bucket(&bucket)
                                .key(&key)
                                .body(ByteStream::from(body.clone()))
                                .send()
                                .await
                                .map_err(|e| format!("PUT {key}: {e:?}"))?;
                        } else if sdk {
                            let o = s3
                                .get_object()
                                .bucket(&bucket)
                                .key(&key)
                                .send()
                                .await
                                .map_err(|e| format!("GET {key}: {e:?}"))?;
                            o.body
                                .collect()
                                .await
                                .map_err(|e| format!("GET {key}: {e}"))?;
                        } else if mode == "put" {
                            lean.send("PUT", &path, body.clone())
                                .await
                                .map_err(|e| format!("PUT {key}: {e}"))?;
                        } else {
                            let got = lean
                                .send("GET", &path, Bytes::new())
                                .await
                                .map_err(|e| format!("GET {key}: {e}"))?;
                            if got.is_empty() {
                                return Err(format!("GET {key}: empty body"));
                            }
                        }
                        lat.push(t.elapsed());
                    }
                    Ok::<_, String>(lat)
                }));
            }
            let mut lat = Vec::new();
            for t in tasks {
                lat.extend(t.await??);
            }
            let secs = started.elapsed().as_secs_f64();
            lat.sort();
            println!(
                "{{\"mode\":\"{mode}\",\"ops\":{},\"secs\":{secs:.3},\"ops_per_s\":{:.1},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
                lat.len(),
                lat.len() as f64 / secs,
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
        }
        "list" => {
            let started = Instant::now();
            let mut first_page = None;
            let mut keys = 0usize;
            let mut token: Option<String> = None;
            loop {
                let r = s3
                    .list_objects_v2()
                    .bucket(&bucket)
                    .prefix(format!("{prefix}/"))
                    .set_continuation_token(token.clone())
                    .send()
                    .await?;
                first_page.get_or_insert(started.elapsed());
                keys += r.contents().len();
                match r.next_continuation_token() {
                    Some(t) if r.is_truncated() == Some(true) => token = Some(t.to_owned()),
                    _ => break,
                }
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{{\"mode\":\"list\",\"keys\":{keys},\"secs\":{secs:.3},\"keys_per_s\":{:.1},\"first_page_ms\":{:.2}}}",
                keys as f64 / secs,
                first_page.unwrap_or_default().as_secs_f64() * 1000.0
            );
        }
        "putfile" => {
            let key = arg(&args, "--key", "big");
            let file = arg(&args, "--file", "");
            let len = std::fs::metadata(&file)?.len();
            let started = Instant::now();
            s3.put_object()
                .bucket(&bucket)
                .key(&key)
                .content_length(len as i64)
                .body(
                    // The SDK's default reads the file 4 KiB at a time: the client, not the
                    // server, would set the pace.
                    ByteStream::read_from()
                        .path(&file)
                        .buffer_size(1 << 20)
                        .build()
                        .await?,
                )
                .send()
                .await?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{{\"mode\":\"putfile\",\"bytes\":{len},\"secs\":{secs:.3},\"mb_per_s\":{:.1}}}",
                len as f64 / secs / 1e6
            );
        }
        "getfile" => {
            let key = arg(&args, "--key", "big");
            let started = Instant::now();
            let o = s3.get_object().bucket(&bucket).key(&key).send().await?;
            let mut body = o.body;
            let mut len = 0u64;
            while let Some(chunk) = body.try_next().await? {
                len += chunk.len() as u64;
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{{\"mode\":\"getfile\",\"bytes\":{len},\"secs\":{secs:.3},\"mb_per_s\":{:.1}}}",
                len as f64 / secs / 1e6
            );
        }
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
    Ok(())
}
