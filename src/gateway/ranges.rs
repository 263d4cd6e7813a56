//! `Range` headers S3 does not act on (several ranges, another unit, one that does not parse
//! or ends before it starts): S3 ignores them, as RFC 9110 allows, and answers with the whole
//! object; s3s refuses them with 400. One the signature does not cover is taken off before
//! s3s sees the request ([`super::guard::drop_unusable_range`]). A signed one cannot be taken
//! off before the signature is checked, so such a request is routed here once it has been:
//! it is served again without the header by a service over the same gateway that checks no
//! signature (reachable only from here, for requests whose signature held).

use http::{HeaderMap, Method, Uri};
use s3s::route::S3Route;
use s3s::service::S3Service;
use s3s::{Body, S3Request, S3Response, S3Result, s3_error};

/// Whether a `Range` header is one S3 acts on.
pub fn usable(headers: &HeaderMap) -> bool {
    match headers.get(http::header::RANGE) {
        None => true,
        Some(v) => v.to_str().is_ok_and(|v| s3s::dto::Range::parse(v).is_ok()),
    }
}

/// The route for GET and HEAD requests with a signed range S3 would ignore.
pub struct IgnoredRange {
    /// The gateway's service without signature checks.
    pub unsigned: S3Service,
}

/// Query parameters of a presigned URL (SigV4 and SigV2): the signature, checked already.
const PRESIGN_PARAMS: &[&str] = &[
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "AWSAccessKeyId",
    "Signature",
    "Expires",
];

/// `uri` without the presigned URL's signature parameters (the others as they were sent).
fn without_signature(uri: &Uri) -> S3Result<Uri> {
    let Some(query) = uri.query() else {
        return Ok(uri.clone());
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split_once('=').map_or(*p, |(k, _)| k);
            !PRESIGN_PARAMS.contains(&name)
        })
        .collect();
    let path_and_query = match kept.is_empty() {
        true => uri.path().to_owned(),
        false => format!("{}?{}", uri.path(), kept.join("&")),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| s3_error!(InvalidRequest, "the request's URI cannot be read"))?,
    );
    Uri::from_parts(parts)
        .map_err(|_| s3_error!(InvalidRequest, "the request's URI cannot be read"))
}

#[async_trait::async_trait]
impl S3Route for IgnoredRange {
    fn is_match(
        &self,
        method: &Method,
        _uri: &Uri,
        headers: &HeaderMap,
        _extensions: &mut http::Extensions,
    ) -> bool {
        matches!(*method, Method::GET | Method::HEAD) && !usable(headers)
    }

    // The default `check_access` refuses a request without credentials: only a request
    // whose signature held gets here.

    async fn call(&self, req: S3Request<Body>) -> S3Result<S3Response<Body>> {
        let mut headers = req.headers;
        headers.remove(http::header::RANGE);
        headers.remove(http::header::AUTHORIZATION);
        let mut again = http::Request::new(Body::empty());
        *again.method_mut() = req.method;
        *again.uri_mut() = without_signature(&req.uri)?;
        *again.headers_mut() = headers;
        let res = self.unsigned.call(again).await.map_err(|e| {
            tracing::error!(error = ?e, "serving a request without its range failed");
            s3_error!(
                InternalError,
                "We encountered an internal error. Please try again."
            )
        })?;
        let (parts, body) = res.into_parts();
        let mut out = S3Response::new(body);
        out.status = Some(parts.status);
        out.headers = parts.headers;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presigned_urls_signature_is_taken_off_and_the_rest_kept() {
        let u: Uri =
            "http://h:9/b/k?X-Amz-Algorithm=A&versionId=v%2B1&X-Amz-Signature=s&x-id=GetObject"
                .parse()
                .expect("uri");
        assert_eq!(
            without_signature(&u).expect("uri").to_string(),
            "http://h:9/b/k?versionId=v%2B1&x-id=GetObject"
        );
        let u: Uri = "/b/k?Signature=x&Expires=1&AWSAccessKeyId=a"
            .parse()
            .expect("uri");
        assert_eq!(without_signature(&u).expect("uri").to_string(), "/b/k");
    }

    #[test]
    fn only_ranges_s3_ignores_are_unusable() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(http::header::RANGE, v.parse().expect("value"));
            usable(&h)
        };
        assert!(with("bytes=0-1") && with("bytes=-5") && with("bytes=3-"));
        assert!(!with("bytes=0-0,2-3") && !with("bytes=5-2") && !with("chars=0-1"));
        assert!(usable(&HeaderMap::new()));
    }
}
