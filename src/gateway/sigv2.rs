//! SigV2 path-style bucket requests signed as `/bucket/`. The canonical resource of a
//! bucket is `/bucket/` to botocore, boto and the Java SDK, which send `/bucket`, and AWS
//! takes it; other signers (rclone's `v2_auth`, s3curl) sign the path as they send it, which
//! is what s3s checks. So a request is given the trailing slash only when its signature is
//! the one of the slashed path: computed here (HMAC-SHA1 of the string to sign, per the
//! SigV2 rules) with the endpoint's one secret. A request signed any other way goes to s3s
//! as it came, and s3s decides.

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};

/// The query parameters that are part of SigV2's canonical resource, sorted.
const SUBRESOURCES: &[&str] = &[
    "acl",
    "cors",
    "delete",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "partNumber",
    "policy",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// Adds the slash to a SigV2 path-style bucket request (`/bucket`) whose signature is that
/// of `/bucket/`. `secret` is the endpoint's secret key.
pub fn bucket_path<B>(req: &mut http::Request<B>, secret: &str) {
    let path = req.uri().path();
    let Some(bucket) = path.strip_prefix('/') else {
        return;
    };
    if bucket.is_empty() || bucket.contains('/') {
        return;
    }
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let d = |s: &str| urlencoding::decode(s).map_or_else(|_| s.to_owned(), |c| c.into());
            (d(k), d(v))
        })
        .collect();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    // Header auth (`AWS KEY:SIG`) or a presigned URL (`Signature`, `Expires`).
    let (signature, date) = match header("authorization").strip_prefix("AWS ") {
        Some(creds) => {
            let Some((_, sig)) = creds.rsplit_once(':') else {
                return;
            };
            let date = match req.headers().contains_key("x-amz-date") {
                true => "",
                false => header("date"),
            };
            (sig.trim().to_owned(), date.to_owned())
        }
        None => match (
            param("AWSAccessKeyId"),
            param("Signature"),
            param("Expires"),
        ) {
            (Some(_), Some(sig), Some(expires)) => (sig.to_owned(), expires.to_owned()),
            _ => return,
        },
    };
    let mut amz: Vec<(String, Vec<&str>)> = Vec::new();
    for (name, value) in req.headers() {
        let name = name.as_str();
        if !name.starts_with("x-amz-") {
            continue;
        }
        let value = value.to_str().unwrap_or("").trim();
        match amz.iter_mut().find(|(n, _)| n == name) {
            Some((_, values)) => values.push(value),
            None => amz.push((name.to_owned(), vec![value])),
        }
    }
    amz.sort_by(|a, b| a.0.cmp(&b.0));
    let mut to_sign = format!(
        "{}\n{}\n{}\n{date}\n",
        req.method(),
        header("content-md5"),
        header("content-type")
    );
    for (name, values) in &amz {
        to_sign.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    to_sign.push_str(&format!("/{bucket}/"));
    let mut first = true;
    for sub in SUBRESOURCES {
        if let Some(v) = param(sub) {
            to_sign.push(if first { '?' } else { '&' });
            first = false;
            to_sign.push_str(sub);
            if !v.is_empty() {
                to_sign.push('=');
                to_sign.push_str(v);
            }
        }
    }
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) else {
        return;
    };
    mac.update(to_sign.as_bytes());
    let ours = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    if ours != signature {
        return;
    }
    let slashed = match req.uri().query() {
        Some(q) => format!("{path}/?{q}"),
        None => format!("{path}/"),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = slashed.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}
