//! Checks a request must pass before its operation runs, for what s3s routes but Ferry does
//! not do: a sub-resource s3s does not know for the method, and headers asking for a
//! feature Ferry lacks (Object Lock, KMS or customer-key encryption).
//!
//! Each answers with the error AWS gives instead of doing something else: s3s routes
//! `DELETE /bucket?acl` as DeleteBucket and `PUT /bucket/key?restore` as PutObject, and a
//! retention header that is dropped would leave a client believing its object is locked.

use http::{HeaderMap, StatusCode, Uri};
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

/// Query parameters that name an S3 sub-resource (an operation of its own, not a parameter
/// of the plain bucket or object operation).
const SUBRESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "delete",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "location",
    "logging",
    "metadataConfiguration",
    "metadataInventoryTable",
    "metadataJournalTable",
    "metadataTable",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "partNumber",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "renameObject",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "select-type",
    "session",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versioning",
    "versions",
    "website",
];

/// For the operations a request falls through to when s3s does not know its sub-resource
/// (CreateBucket, DeleteBucket, PutObject, CopyObject, DeleteObject): refuses one that
/// names a sub-resource, as S3 does, rather than create, overwrite or delete.
pub fn plain(uri: &Uri) -> S3Result<()> {
    let Some(query) = uri.query() else {
        return Ok(());
    };
    for pair in query.split('&') {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        if let Some(sub) = SUBRESOURCES.iter().find(|s| **s == name) {
            let mut e = S3Error::with_message(
                S3ErrorCode::MethodNotAllowed,
                format!("The specified method is not allowed against the ?{sub} sub-resource."),
            );
            e.set_status_code(StatusCode::METHOD_NOT_ALLOWED);
            return Err(e);
        }
    }
    Ok(())
}

/// What a write asks for beyond its bytes that Ferry may not be able to honour, from the
/// parsed request (headers, or a browser form's fields): see [`asks_of`].
pub struct Asks<'a> {
    /// Object Lock: a mode, a retain-until date or a legal hold.
    pub lock: bool,
    /// `x-amz-server-side-encryption`.
    pub sse: Option<&'a str>,
    /// Customer-provided keys (SSE-C), for the object or its copy source.
    pub sse_c: bool,
    /// The canned ACL (`x-amz-acl`, or a form's `acl` field).
    pub acl: Option<&'a str>,
    /// Grants named in `x-amz-grant-*` headers.
    pub grants: bool,
}

/// The [`Asks`] of a PutObject, CopyObject or CreateMultipartUpload input.
macro_rules! asks_of {
    ($input:expr) => {
        $crate::gateway::guard::Asks {
            lock: $input.object_lock_mode.is_some()
                || $input.object_lock_retain_until_date.is_some()
                || $input.object_lock_legal_hold_status.is_some(),
            sse: $input.server_side_encryption.as_ref().map(|s| s.as_str()),
            sse_c: $input.sse_customer_algorithm.is_some(),
            acl: $input.acl.as_ref().map(|a| a.as_str()),
            grants: $input.grant_full_control.is_some()
                || $input.grant_read.is_some()
                || $input.grant_read_acp.is_some()
                || $input.grant_write_acp.is_some(),
        }
    };
}
pub(crate) use asks_of;

/// A browser form's `acl` field, which s3s does not map: a canned ACL S3 knows, and then,
/// as for `x-amz-acl`, the owner's alone.
pub fn form_acl(acl: Option<&str>) -> S3Result<()> {
    let Some(acl) = acl else { return Ok(()) };
    if !matches!(
        acl,
        "private"
            | "public-read"
            | "public-read-write"
            | "authenticated-read"
            | "aws-exec-read"
            | "bucket-owner-read"
            | "bucket-owner-full-control"
    ) {
        return Err(s3s::s3_error!(
            InvalidArgument,
            "The form's acl field {acl:?} is not a canned ACL"
        ));
    }
    super::unconfigured::check_owner_only(Some(acl), false, None)
}

/// For requests that write an object (PutObject and so POST Object, CreateMultipartUpload,
/// CopyObject): refuses Object Lock, encryption and ACLs Ferry cannot honour (an object
/// made public would not be: taking the ACL and serving it private misled `s3cmd put -P`,
/// which printed a public URL that answered 403). SSE-S3 (`AES256`) is
/// taken and not echoed: Ferry's stores keep bytes as they are, and an answer without
/// `x-amz-server-side-encryption` tells a client that checks.
pub fn object_write(asks: &Asks<'_>) -> S3Result<()> {
    super::unconfigured::check_owner_only(asks.acl, asks.grants, None)?;
    if asks.lock {
        return Err(s3_error!(
            InvalidRequest,
            "Bucket is missing Object Lock Configuration"
        ));
    }
    if asks.sse_c {
        return Err(s3_error!(
            NotImplemented,
            "Server-side encryption with customer-provided keys (SSE-C) is not implemented"
        ));
    }
    match asks.sse {
        None | Some("AES256") => Ok(()),
        Some("aws:kms" | "aws:kms:dsse") => Err(s3_error!(
            NotImplemented,
            "Server-side encryption with KMS keys is not implemented"
        )),
        Some(other) => Err(s3_error!(
            InvalidArgument,
            "x-amz-server-side-encryption {other:?} is not a server-side encryption method"
        )),
    }
}

/// For CreateBucket: a bucket with Object Lock, or with an ACL other than the owner's, is
/// refused, not created without it.
/// A bucket is made in this endpoint's region: a `LocationConstraint` naming another is
/// refused as S3 refuses it (`EU` is eu-west-1's old name), not taken and ignored. Ferry
/// takes signatures for any region, so a client set up for one (`aws s3 mb` sends its
/// profile's region as the constraint) may name the region it signed for.
pub fn create_bucket(
    input: &s3s::dto::CreateBucketInput,
    headers: &HeaderMap,
    region: &str,
    signed_for: Option<&str>,
) -> S3Result<()> {
    let asked = input
        .create_bucket_configuration
        .as_ref()
        .and_then(|c| c.location_constraint.as_ref())
        .map(|l| l.as_str())
        .filter(|l| !l.is_empty());
    if let Some(asked) = asked {
        let named = |r: &str| asked == r || (asked == "EU" && r == "eu-west-1");
        let same = named(region) || signed_for.is_some_and(named);
        if !same {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("IllegalLocationConstraintException".into()),
                format!(
                    "The {asked} location constraint is incompatible for the region specific \
                     endpoint this request was sent to (this endpoint's region is {region})."
                ),
            );
            e.set_status_code(http::StatusCode::BAD_REQUEST);
            return Err(e);
        }
    }
    let grants = input.grant_full_control.is_some()
        || input.grant_read.is_some()
        || input.grant_read_acp.is_some()
        || input.grant_write.is_some()
        || input.grant_write_acp.is_some();
    super::unconfigured::check_owner_only(input.acl.as_ref().map(|a| a.as_str()), grants, None)?;
    let lock = headers
        .get("x-amz-bucket-object-lock-enabled")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if lock {
        return Err(s3_error!(NotImplemented, "Object Lock is not implemented"));
    }
    Ok(())
}

/// The longest a presigned URL may be valid for (S3: seven days).
const MAX_PRESIGNED_SECS: u64 = 604_800;

/// Checks what s3s does not of how a request is signed: a presigned URL valid for longer than
/// S3 allows, and a request signed both ways at once.
pub fn auth_shape(uri: &Uri, headers: &HeaderMap, region: &str) -> S3Result<()> {
    let mut presigned = false;
    let header_scope = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once("Credential="))
        .map(|(_, rest)| rest.split([',', ' ']).next().unwrap_or(""));
    if let Some(scope) = header_scope {
        credential_region(scope, region)?;
    }
    // The fields of a SigV4 presigned URL seen (as `V4_FIELDS` names them).
    let mut fields = [false; V4_FIELDS.len()];
    for pair in uri.query().unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if let Some(i) = V4_FIELDS.iter().position(|f| *f == name) {
            fields[i] = true;
        }
        match name {
            "X-Amz-Credential" => {
                presigned = true;
                let scope = urlencoding::decode(value).unwrap_or_default();
                // From the right: the key is the rest (one holding `/` is still a key).
                let parts: Vec<&str> = scope.rsplitn(5, '/').collect();
                if parts.len() != 5
                    || parts[0] != "aws4_request"
                    || parts.iter().any(|p| p.is_empty())
                {
                    return Err(query_auth_error(
                        "Error parsing the X-Amz-Credential parameter; the Credential is \
                         mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\"",
                    ));
                }
                credential_region(&scope, region)?;
            }
            "X-Amz-Date" => {
                presigned = true;
                let b = value.as_bytes();
                let long = b.len() == 16
                    && b[8] == b'T'
                    && b[15] == b'Z'
                    && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
                if !long {
                    return Err(query_auth_error(
                        "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
                    ));
                }
            }
            "X-Amz-Algorithm" => presigned = true,
            "X-Amz-Signature" => {
                presigned = true;
                // s3s takes only 64 lowercase hex digits and calls anything else a missing
                // field (400): a URL cut short or re-cased in a chat is, as S3 says, a
                // signature that does not match.
                let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
                if value.len() != 64 || !value.bytes().all(hex) {
                    return Err(s3_error!(
                        SignatureDoesNotMatch,
                        "The request signature we calculated does not match the signature \
                         you provided (X-Amz-Signature is not 64 lowercase hex digits)"
                    ));
                }
            }
            "X-Amz-Expires" => {
                presigned = true;
                let ok = value.parse::<u64>().is_ok_and(|n| n <= MAX_PRESIGNED_SECS);
                if !ok {
                    return Err(query_auth_error(format!(
                        "X-Amz-Expires must be a number of seconds from 0 to \
                         {MAX_PRESIGNED_SECS} (a week); got {value:?}"
                    )));
                }
            }
            _ => {}
        }
    }
    // A URL that names the algorithm names every field, or says which S3 wants (s3s said
    // "missing presigned url v4 fields" of a field there but malformed, too).
    if fields[0] && fields.iter().any(|f| !f) {
        return Err(query_auth_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, \
             X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and \
             X-Amz-Expires parameters.",
        ));
    }
    if presigned && headers.contains_key(http::header::AUTHORIZATION) {
        return Err(s3_error!(
            InvalidArgument,
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
             Signature query string parameter or the Authorization header should be specified"
        ));
    }
    Ok(())
}

/// The query parameters of a SigV4 presigned URL, `X-Amz-Algorithm` first.
const V4_FIELDS: [&str; 6] = [
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
];

/// S3's answer to a presigned URL whose query fields are malformed (400).
fn query_auth_error(message: impl Into<String>) -> S3Error {
    let mut e = S3Error::with_message(
        S3ErrorCode::Custom("AuthorizationQueryParametersError".into()),
        message.into(),
    );
    e.set_status_code(StatusCode::BAD_REQUEST);
    e
}

/// A SigV4 credential scope (`KEY/DATE/REGION/s3/aws4_request`) naming a region that cannot
/// exist (s3cmd's default `US`): S3 answers AuthorizationHeaderMalformed naming the region to
/// sign for (its `<Region>`, see `error::name_region`), which clients such as s3cmd read and
/// retry with. s3s would refuse it with a bare
/// InvalidRequest. Any well-formed region is taken (Ferry does not hold clients to one).
fn credential_region(scope: &str, region: &str) -> S3Result<()> {
    let mut parts = scope.rsplitn(4, '/');
    let (Some("aws4_request"), Some(_service), Some(named)) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Ok(());
    };
    if named.is_empty() || s3s::region::Region::new(named.into()).is_ok() {
        return Ok(());
    }
    let mut e = S3Error::with_message(
        S3ErrorCode::AuthorizationHeaderMalformed,
        format!(
            "The authorization header is malformed; the region '{named}' is wrong; expecting \
             '{region}'"
        ),
    );
    e.set_status_code(StatusCode::BAD_REQUEST);
    Err(e)
}

/// A GET or HEAD `Range` header S3 does not act on (several ranges, another unit, one that
/// does not parse or ends before it starts) is ignored, as RFC 9110 says and S3 does: the
/// whole object is the answer, not s3s's 400. Here only when the signature does not cover it
/// (a presigned URL fetched by a browser or `curl -r`, an anonymous read): a signed header
/// cannot be taken away before the signature is checked ([`super::ranges`] serves those).
pub fn drop_unusable_range<B>(req: &mut http::Request<B>) {
    if !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
        return;
    }
    if super::ranges::usable(req.headers()) || signs_header(req, "range") {
        return;
    }
    req.headers_mut().remove(http::header::RANGE);
}

/// A user-metadata header given more than once (`x-amz-meta-a: 1` and `x-amz-meta-a: 2`) is
/// one value joined with commas, as S3 stores it (s3s refused the request). The signature
/// still holds: SigV4 joins a repeated header's values with commas too.
pub fn join_repeated_metadata<B>(req: &mut http::Request<B>) {
    let headers = req.headers();
    let repeated: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| {
            k.as_str().starts_with("x-amz-meta-") && headers.get_all(*k).iter().nth(1).is_some()
        })
        .cloned()
        .collect();
    for name in repeated {
        let values: Vec<&[u8]> = req
            .headers()
            .get_all(&name)
            .iter()
            .map(|v| v.as_bytes().trim_ascii())
            .collect();
        if let Ok(v) = http::HeaderValue::from_bytes(&values.join(&b',')) {
            req.headers_mut().insert(name, v);
        }
    }
}

/// Whether a SigV4 request's signature covers the header `name` (lower case): the
/// `SignedHeaders` of its Authorization header or `X-Amz-SignedHeaders` of its query.
fn signs_header<B>(req: &http::Request<B>, name: &str) -> bool {
    let listed = |list: &str| list.split(';').any(|h| h.trim().eq_ignore_ascii_case(name));
    let in_header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once("SignedHeaders="))
        .is_some_and(|(_, rest)| listed(rest.split([',', ' ']).next().unwrap_or("")));
    let in_query = req.uri().query().unwrap_or("").split('&').any(|pair| {
        pair.split_once('=').is_some_and(|(k, v)| {
            k == "X-Amz-SignedHeaders" && listed(&urlencoding::decode(v).unwrap_or_default())
        })
    });
    in_header || in_query
}

/// A `versionId` that is present must name a version (S3: 400 for an empty one).
pub fn version_id(v: Option<&str>) -> S3Result<()> {
    if v == Some("") {
        return Err(s3_error!(
            InvalidArgument,
            "Version id cannot be the empty string"
        ));
    }
    Ok(())
}

/// Content-Encoding as stored: `aws-chunked` describes how the request's body was framed,
/// not the object, so S3 drops it (`aws-chunked,gzip` is stored as `gzip`).
pub fn stored_encoding(value: Option<String>) -> Option<String> {
    let v = value?;
    if !v
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("aws-chunked"))
    {
        return Some(v);
    }
    let kept: Vec<&str> = v
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subresources_are_refused_on_plain_operations() {
        for q in [
            "/b?acl",
            "/b/k?x-id=PutObject&restore",
            "/b?versioning=",
            "/b/k?uploads",
        ] {
            let e = plain(&q.parse().expect("uri")).expect_err("refused");
            assert_eq!(e.status_code(), Some(StatusCode::METHOD_NOT_ALLOWED), "{q}");
        }
        for q in [
            "/b",
            "/b/k?x-id=PutObject",
            "/b/k?versionId=abc",
            "/b/k?bogus",
            "/b/k?aclx=1",
        ] {
            assert!(plain(&q.parse().expect("uri")).is_ok(), "{q}");
        }
    }

    #[test]
    fn presigned_urls_are_bounded_and_alone() {
        let uri = |q: &str| format!("/b/k?{q}").parse::<Uri>().expect("uri");
        let none = HeaderMap::new();
        let fields = format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261202%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20261202T080000Z&X-Amz-SignedHeaders=host&X-Amz-Signature={}",
            "0a".repeat(32)
        );
        let presigned = format!("{fields}&X-Amz-Expires=");
        assert!(auth_shape(&uri(&format!("{presigned}604800")), &none, "us-east-1").is_ok());
        // A field malformed or missing is named, not taken for a missing signature.
        for (from, to) in [
            ("X-Amz-Date=20261202T080000Z", "X-Amz-Date=2026"),
            ("X-Amz-Credential=AKID%2F", "X-Amz-Credential=AKID"),
            ("&X-Amz-SignedHeaders=host", ""),
            ("X-Amz-Signature=0a", "X-Amz-Signature=0A"),
        ] {
            let q = format!("{presigned}60").replace(from, to);
            assert!(auth_shape(&uri(&q), &none, "us-east-1").is_err(), "{q}");
        }
        for bad in ["604801", "-1", "soon"] {
            assert!(
                auth_shape(&uri(&format!("{presigned}{bad}")), &none, "us-east-1").is_err(),
                "{bad}"
            );
        }
        let mut signed = HeaderMap::new();
        signed.insert(
            http::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 x".parse().expect("value"),
        );
        assert!(auth_shape(&uri(&format!("{presigned}60")), &signed, "us-east-1").is_err());
        assert!(auth_shape(&uri("versionId=1"), &signed, "us-east-1").is_ok());
    }

    #[test]
    fn aws_chunked_is_not_stored() {
        let enc = |s: &str| stored_encoding(Some(s.to_owned()));
        assert_eq!(enc("aws-chunked"), None);
        assert_eq!(enc("aws-chunked,gzip").as_deref(), Some("gzip"));
        assert_eq!(enc("gzip, aws-chunked").as_deref(), Some("gzip"));
        assert_eq!(enc("br").as_deref(), Some("br"));
        assert_eq!(stored_encoding(None), None);
    }

    #[test]
    fn lock_and_encryption_asks() {
        let asks = |lock, sse, sse_c| Asks {
            lock,
            sse,
            sse_c,
            acl: None,
            grants: false,
        };
        assert!(object_write(&asks(false, None, false)).is_ok());
        assert!(object_write(&asks(false, Some("AES256"), false)).is_ok());
        for (a, code) in [
            (asks(true, None, false), S3ErrorCode::InvalidRequest),
            (
                asks(false, Some("aws:kms"), false),
                S3ErrorCode::NotImplemented,
            ),
            (
                asks(false, Some("bogus"), false),
                S3ErrorCode::InvalidArgument,
            ),
            (asks(false, None, true), S3ErrorCode::NotImplemented),
            (
                Asks {
                    acl: Some("public-read"),
                    ..asks(false, None, false)
                },
                S3ErrorCode::AccessControlListNotSupported,
            ),
            (
                Asks {
                    grants: true,
                    ..asks(false, None, false)
                },
                S3ErrorCode::AccessControlListNotSupported,
            ),
        ] {
            assert_eq!(*object_write(&a).expect_err("refused").code(), code);
        }
        for owner_only in ["private", "bucket-owner-full-control"] {
            let a = Asks {
                acl: Some(owner_only),
                ..asks(false, None, false)
            };
            assert!(object_write(&a).is_ok(), "{owner_only}");
        }
        let h = |k: &'static str, v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(k, v.parse().expect("header value"));
            m
        };
        let plain = s3s::dto::CreateBucketInput::default();
        let lock = |v| {
            create_bucket(
                &plain,
                &h("x-amz-bucket-object-lock-enabled", v),
                "us-east-1",
                None,
            )
        };
        assert!(lock("true").is_err());
        assert!(lock("false").is_ok());
        let public = s3s::dto::CreateBucketInput {
            acl: Some(s3s::dto::BucketCannedACL::from_static(
                s3s::dto::BucketCannedACL::PUBLIC_READ,
            )),
            ..Default::default()
        };
        assert!(create_bucket(&public, &HeaderMap::new(), "us-east-1", None).is_err());
    }
}
