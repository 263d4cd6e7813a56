//! The one place where errors become S3 error codes and HTTP statuses.
//!
//! Every [`store::Error`] variant is matched exhaustively, so a new variant does not compile
//! until someone decides what a client sees for it. Internal failures are logged here with
//! their detail and reach the client as `InternalError` without paths or secrets.

use http::{HeaderMap, HeaderValue, StatusCode};
use s3s::{S3Error, S3ErrorCode};

use crate::store::{self, NameError};

fn custom(code: &'static str, status: StatusCode, msg: String) -> S3Error {
    let mut e = S3Error::with_message(S3ErrorCode::Custom(code.into()), msg);
    e.set_status_code(status);
    e
}

fn with(code: S3ErrorCode, msg: String) -> S3Error {
    S3Error::with_message(code, msg)
}

/// Sets headers on an error answer beside its XML body. s3s puts them in place of its own,
/// the body's `Content-Type` with them: without it minio-py read no error code at all
/// ("non-XML response from server") from a delete marker's NoSuchKey or an InvalidRange.
fn set_error_headers(e: &mut S3Error, mut h: HeaderMap) {
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    e.set_headers(h);
}

fn version_headers(delete_marker: bool, version_id: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if delete_marker {
        h.insert("x-amz-delete-marker", HeaderValue::from_static("true"));
    }
    if let Some(v) = version_id.and_then(|v| HeaderValue::from_str(v).ok()) {
        h.insert("x-amz-version-id", v);
    }
    h
}

/// Maps a store error to the S3 error a client gets.
pub fn s3_error(err: store::Error) -> S3Error {
    use store::Error as E;
    let msg = err.to_string();
    match err {
        E::NoSuchBucket { .. } => with(S3ErrorCode::NoSuchBucket, msg),
        // Ferry is single-tenant: an existing bucket is always "yours".
        E::BucketAlreadyExists { .. } => with(S3ErrorCode::BucketAlreadyOwnedByYou, msg),
        E::BucketNameTaken { .. } => with(S3ErrorCode::BucketAlreadyExists, msg),
        E::BucketNotEmpty { .. } => with(S3ErrorCode::BucketNotEmpty, msg),
        E::NoSuchKey { delete_marker, .. } => {
            let mut e = with(S3ErrorCode::NoSuchKey, msg);
            if let Some(v) = delete_marker {
                set_error_headers(&mut e, version_headers(true, Some(&v)));
            }
            e
        }
        E::NoSuchVersion { .. } => with(S3ErrorCode::NoSuchVersion, msg),
        E::IsDeleteMarker {
            version_id,
            last_modified,
            ..
        } => {
            let mut e = with(S3ErrorCode::MethodNotAllowed, msg);
            let mut h = version_headers(true, Some(&version_id));
            // As S3: what the marker is, when it was made, and the one method it allows.
            h.insert(http::header::ALLOW, HeaderValue::from_static("DELETE"));
            if let Some(v) = last_modified
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc2822)
                        .ok()
                })
                .map(|s| s.replace("+0000", "GMT"))
                .and_then(|s| HeaderValue::from_str(&s).ok())
            {
                h.insert(http::header::LAST_MODIFIED, v);
            }
            set_error_headers(&mut e, h);
            e
        }
        E::NoSuchUpload { .. } | E::UploadElsewhere { .. } => with(S3ErrorCode::NoSuchUpload, msg),
        E::InvalidPart { .. } => with(S3ErrorCode::InvalidPart, msg),
        E::InvalidPartOrder => with(S3ErrorCode::InvalidPartOrder, msg),
        E::InvalidPartNumber { part_number } => invalid_part_number(part_number as i32),
        E::EntityTooSmall { .. } => with(S3ErrorCode::EntityTooSmall, msg),
        // MinIO answers the same situation with XMinioParentIsObject (400).
        E::PathConflict { .. } => custom("XFerryKeyConflict", StatusCode::BAD_REQUEST, msg),
        E::InvalidRange { size } => {
            // S3 puts the size in `<ActualObjectSize>`, which s3s's error XML cannot carry;
            // HTTP's own place for it on a 416 is `Content-Range: bytes */size` (RFC 9110).
            let mut e = with(S3ErrorCode::InvalidRange, msg);
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                h.insert(http::header::CONTENT_RANGE, v);
            }
            set_error_headers(&mut e, h);
            e
        }
        E::BadDigest { .. } => with(S3ErrorCode::BadDigest, msg),
        E::IncompleteBody { .. } => with(S3ErrorCode::IncompleteBody, msg),
        E::MalformedTrailer { .. } => custom(
            "MalformedTrailerError",
            StatusCode::BAD_REQUEST,
            "The request contained trailing data that was not well-formed or did not conform \
             to our published schema."
                .to_owned(),
        ),
        E::InvalidArgument(_) => with(S3ErrorCode::InvalidArgument, msg),
        E::InvalidRequest(_) => with(S3ErrorCode::InvalidRequest, msg),
        E::Name(n) => name_error(n),
        E::Unavailable { .. } => {
            tracing::warn!(error = %msg, "store unavailable");
            with(S3ErrorCode::ServiceUnavailable, msg)
        }
        // A backend's answer Ferry could not read: a success in another form (moto's
        // `ListPartsResponse`) is no success to pass on, and a 5xx without a code is AWS's
        // InternalError or ServiceUnavailable (a client knows those; "Http500" it does not).
        E::Remote {
            code,
            status,
            message,
            store,
        } if (200..300).contains(&status) || (status >= 500 && code.starts_with("Http")) => {
            tracing::warn!(store = %store, status, error = %message, "a backend's answer could not be read");
            let (code, status) = match status {
                503 => (
                    S3ErrorCode::ServiceUnavailable,
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
                500..=599 => (
                    S3ErrorCode::InternalError,
                    StatusCode::INTERNAL_SERVER_ERROR,
                ),
                _ => (S3ErrorCode::InternalError, StatusCode::BAD_GATEWAY),
            };
            let mut e = S3Error::with_message(
                code,
                format!(
                    "the backend store {store} answered in a form Ferry cannot read: {message}"
                ),
            );
            e.set_status_code(status);
            e
        }
        E::Remote {
            code,
            status,
            message,
            ..
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut e = S3Error::with_message(
                S3ErrorCode::from_bytes(code.as_bytes())
                    .unwrap_or(S3ErrorCode::Custom(code.clone().into())),
                message,
            );
            e.set_status_code(status);
            e
        }
        // s3s's own check of the signed payload hash fails the body stream; AWS answers it
        // with a code of its own (its error type is private to s3s: known by its text).
        E::Body(e) if e.to_string().contains("Sha256Mismatch") => custom(
            "XAmzContentSHA256Mismatch",
            StatusCode::BAD_REQUEST,
            "The provided 'x-amz-content-sha256' header does not match what was computed."
                .to_owned(),
        ),
        // A chunk of an `aws-chunked` body whose signature does not verify.
        E::Body(e) if e.to_string().contains("SignatureMismatch") => with(
            S3ErrorCode::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided \
             for a chunk of the body."
                .to_owned(),
        ),
        // The client stopped sending its body (see `timeouts`).
        E::Body(e) if super::timeouts::is_stall(&e) => with(
            S3ErrorCode::RequestTimeout,
            super::timeouts::STALLED_MESSAGE.to_owned(),
        ),
        E::Body(_) => with(S3ErrorCode::IncompleteBody, msg),
        // MinIO answers a full disk with XMinioStorageFull (507); saying so beats a bare 500.
        // The detail (which file) is the server's, not the client's.
        e @ E::Io { .. } if e.is_storage_full() => {
            tracing::warn!(error = %msg, "a store is full");
            custom(
                "XFerryStorageFull",
                StatusCode::INSUFFICIENT_STORAGE,
                "the store has no space left; deleting objects or aborting multipart uploads makes room"
                    .to_owned(),
            )
        }
        E::Io { .. } | E::Index(_) => {
            tracing::error!(error = %msg, "internal store error");
            with(
                S3ErrorCode::InternalError,
                "the server could not complete the request".into(),
            )
        }
        // Not retryable by the client: it needs an admin's failback.
        E::ReadOnly { .. } | E::Denied(_) => with(S3ErrorCode::AccessDenied, msg),
        E::NotImplemented(what) => with(
            S3ErrorCode::NotImplemented,
            format!("{what} is not implemented"),
        ),
    }
}

pub fn name_error(n: NameError) -> S3Error {
    let msg = n.to_string();
    match n {
        NameError::Bucket { .. } => with(S3ErrorCode::InvalidBucketName, msg),
        NameError::Key { .. } => with(S3ErrorCode::InvalidArgument, msg),
        NameError::KeyTooLong { .. } => with(S3ErrorCode::KeyTooLongError, msg),
    }
}

/// A part number past the object's parts (S3: 416 `InvalidPartNumber`).
pub fn invalid_part_number(n: i32) -> S3Error {
    custom(
        "InvalidPartNumber",
        StatusCode::RANGE_NOT_SATISFIABLE,
        format!("The requested partnumber {n} is not satisfiable"),
    )
}

/// S3's `InvalidRequest` (400) with a message.
pub fn invalid_request(msg: impl Into<String>) -> S3Error {
    with(S3ErrorCode::InvalidRequest, msg.into())
}

pub fn invalid_argument(msg: impl Into<String>) -> S3Error {
    with(S3ErrorCode::InvalidArgument, msg.into())
}

/// AWS's generic `BadRequest` (400), e.g. for too many tags.
pub fn bad_request(msg: &str) -> S3Error {
    custom("BadRequest", StatusCode::BAD_REQUEST, msg.to_owned())
}

/// AWS's message for an error code, for the errors s3s raises with a code alone (a bad
/// signature, a bucket name it cannot route, …), so a client always has a sentence to show.
fn default_message(code: &str) -> Option<&'static str> {
    Some(match code {
        "AccessDenied" => "Access Denied",
        "BadDigest" => "The Content-MD5 you specified did not match what we received.",
        "EntityTooLarge" => "Your proposed upload exceeds the maximum allowed object size.",
        "IncompleteBody" => {
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        }
        "InternalError" => "We encountered an internal error. Please try again.",
        "InvalidAccessKeyId" => "The AWS Access Key Id you provided does not exist in our records.",
        "InvalidArgument" => "Invalid Argument",
        "InvalidBucketName" => "The specified bucket is not valid.",
        "InvalidDigest" => "The Content-MD5 you specified is not valid.",
        "InvalidRequest" => "Invalid Request",
        "InvalidURI" => "Couldn't parse the specified URI.",
        "KeyTooLongError" => "Your key is too long.",
        "MalformedXML" => {
            "The XML you provided was not well-formed or did not validate against our published schema."
        }
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        "PreconditionFailed" => "At least one of the pre-conditions you specified did not hold",
        "InvalidRange" => "The requested range is not satisfiable",
        "RequestTimeTooSkewed" => {
            "The difference between the request time and the current time is too large."
        }
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. \
             Check your key and signing method."
        }
        _ => return None,
    })
}

/// Gives an error answer that has a code but no `<Message>` AWS's message for it, and names
/// the request in the body as S3 does. Other answers pass untouched.
/// Adds `<Region>` to an error document, as S3 does where the request was signed for the
/// wrong region (s3cmd reads it and signs again for that region); and the
/// `x-amz-bucket-region` header. A region that is not plain letters, digits and dashes is left
/// out rather than escaped.
pub fn name_region(res: &mut s3s::HttpResponse, region: &str) {
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return;
    }
    let Some(body) = res.body().bytes() else {
        return;
    };
    let Some(text) = std::str::from_utf8(&body)
        .ok()
        .filter(|t| t.ends_with("</Error>"))
    else {
        return;
    };
    let named = format!(
        "{}<Region>{region}</Region></Error>",
        &text[..text.len() - "</Error>".len()]
    );
    if let Ok(v) = http::HeaderValue::from_str(&named.len().to_string()) {
        res.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = http::HeaderValue::from_str(region) {
        res.headers_mut().insert("x-amz-bucket-region", v);
    }
    *res.body_mut() = s3s::Body::from(named);
}

/// A browser-form upload whose fields break its POST policy: S3 answers 403 AccessDenied,
/// "Invalid according to Policy: Policy Condition failed: ...", where s3s says 400
/// InvalidPolicyDocument (which S3 keeps for a policy that cannot be read).
pub fn policy_refusal(res: &mut s3s::HttpResponse, request_id: &str) {
    if res.status() != http::StatusCode::BAD_REQUEST {
        return;
    }
    let Some(body) = res.body().bytes() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return;
    };
    if xml_field(text, "Code") != Some("InvalidPolicyDocument") {
        return;
    }
    let Some(said) = xml_field(text, "Message").filter(|m| m.starts_with("Policy condition"))
    else {
        return;
    };
    let said = said
        .replace("&apos;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let mut err = S3Error::with_message(
        S3ErrorCode::AccessDenied,
        format!("Invalid according to Policy: {said}"),
    );
    err.set_request_id(request_id);
    err.set_status_code(http::StatusCode::FORBIDDEN);
    if let Ok(rebuilt) = err.to_http_response() {
        replace_error(res, rebuilt);
    }
}

/// The text of the first `<name>` element of an error document s3s wrote.
fn xml_field<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    text.split_once(&format!("<{name}>"))
        .and_then(|(_, rest)| rest.split_once(&format!("</{name}>")))
        .map(|(v, _)| v)
}

/// Puts `rebuilt`'s status, body and content headers in `res`, keeping `res`'s other headers.
fn replace_error(res: &mut s3s::HttpResponse, rebuilt: s3s::HttpResponse) {
    let (parts, new_body) = rebuilt.into_parts();
    *res.status_mut() = parts.status;
    *res.body_mut() = new_body;
    for name in [http::header::CONTENT_LENGTH, http::header::CONTENT_TYPE] {
        match parts.headers.get(&name) {
            Some(v) => {
                res.headers_mut().insert(name, v.clone());
            }
            None => {
                res.headers_mut().remove(name);
            }
        }
    }
}

/// Every error document names its request, as S3's do (`<RequestId>`, the same id as the
/// `x-amz-request-id` header): s3s writes it only into the errors it builds with one.
pub fn name_request(res: &mut s3s::HttpResponse, request_id: &str) {
    let Some(text) = error_document(res) else {
        return;
    };
    if text.len() > 8192 || text.contains("<RequestId>") || !text.contains("<Error>") {
        return;
    }
    let Some(end) = text.rfind("</Error>") else {
        return;
    };
    let id: String = request_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    let named = format!(
        "{}<RequestId>{id}</RequestId>{}",
        &text[..end],
        &text[end..]
    );
    set_body(res, named);
}

/// The text of a buffered answer's body (an XML document s3s wrote), if it has one.
pub(super) fn buffered_text(res: &s3s::HttpResponse) -> Option<String> {
    let body = res.body().bytes()?;
    String::from_utf8(body.to_vec()).ok()
}

/// The document of an error answer (4xx, 5xx), if it is buffered text.
fn error_document(res: &s3s::HttpResponse) -> Option<String> {
    (res.status().is_client_error() || res.status().is_server_error())
        .then(|| buffered_text(res))
        .flatten()
}

/// Replaces a buffered answer's document, its Content-Length (when it has one) with it.
pub(super) fn set_body(res: &mut s3s::HttpResponse, text: String) {
    if res.headers().contains_key(http::header::CONTENT_LENGTH)
        && let Ok(n) = http::HeaderValue::from_str(&text.len().to_string())
    {
        res.headers_mut().insert(http::header::CONTENT_LENGTH, n);
    }
    *res.body_mut() = s3s::Body::from(text);
}

pub fn explain(res: &mut s3s::HttpResponse, request_id: &str) {
    let Some(text) = error_document(res) else {
        return;
    };
    if text.len() > 4096 || text.contains("<Message>") {
        return;
    }
    let Some(code) = xml_field(&text, "Code") else {
        return;
    };
    let Some(message) = default_message(code) else {
        return;
    };
    let code = S3ErrorCode::from_bytes(code.as_bytes())
        .unwrap_or_else(|| S3ErrorCode::Custom(code.to_owned().into()));
    let mut err = S3Error::with_message(code, message);
    err.set_request_id(request_id);
    err.set_status_code(res.status());
    if let Ok(rebuilt) = err.to_http_response() {
        replace_error(res, rebuilt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_said_as_such() {
        let full = store::Error::io("writing a body", std::io::Error::from_raw_os_error(28));
        assert!(full.is_storage_full());
        let e = s3_error(full);
        assert_eq!(e.code().as_str(), "XFerryStorageFull");
        assert_eq!(e.status_code(), Some(StatusCode::INSUFFICIENT_STORAGE));
        let other = store::Error::io("writing a body", std::io::Error::from_raw_os_error(5));
        assert_eq!(s3_error(other).code().as_str(), "InternalError");
    }

    /// A backend's answer that could not be read was passed on with its status: a 200 with
    /// an error document (`Http200`), a bare `Http500` (a probe against moto).
    #[test]
    fn a_backend_answer_that_cannot_be_read_is_no_success() {
        let remote = |status: u16, code: &str| {
            s3_error(store::Error::Remote {
                store: "dr".into(),
                code: code.into(),
                message: "error parsing XML".into(),
                status,
            })
        };
        let e = remote(200, "Http200");
        assert_eq!(
            (e.code().as_str(), e.status_code()),
            ("InternalError", Some(StatusCode::BAD_GATEWAY))
        );
        assert!(e.message().is_some_and(|m| m.contains("backend store dr")));
        let e = remote(500, "Http500");
        assert_eq!(
            (e.code().as_str(), e.status_code()),
            ("InternalError", Some(StatusCode::INTERNAL_SERVER_ERROR))
        );
        let e = remote(503, "Http503");
        assert_eq!(e.code().as_str(), "ServiceUnavailable");
        // A backend's own code stays, with its status.
        let e = remote(503, "SlowDown");
        assert_eq!(
            (e.code().as_str(), e.status_code()),
            ("SlowDown", Some(StatusCode::SERVICE_UNAVAILABLE))
        );
        let e = remote(403, "Http403");
        assert_eq!(e.status_code(), Some(StatusCode::FORBIDDEN));
        // A redirect with its code is the backend's own answer, passed on.
        let e = remote(301, "PermanentRedirect");
        assert_eq!(
            (e.code().as_str(), e.status_code()),
            ("PermanentRedirect", Some(StatusCode::MOVED_PERMANENTLY))
        );
    }
}
