//! The one place an aws-sdk-s3 error becomes a [`store::Error`](crate::store::Error).
//!
//! Errors are mapped by meaning: the S3 error code when the backend sent one, the status and
//! the `x-amz-delete-marker` header for bodiless (HEAD) answers, and the kind of failure for
//! errors that never got an answer (timeouts and connection failures are `Unavailable`).

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::store::Error;

/// What the failed call was about, so the mapped error can name it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ctx<'a> {
    pub bucket: &'a str,
    pub key: Option<&'a str>,
    pub version_id: Option<&'a str>,
    pub upload_id: Option<&'a str>,
}

impl<'a> Ctx<'a> {
    pub fn bucket(bucket: &'a str) -> Self {
        Self {
            bucket,
            ..Self::default()
        }
    }

    pub fn key(bucket: &'a str, key: &'a str) -> Self {
        Self {
            bucket,
            key: Some(key),
            ..Self::default()
        }
    }

    pub fn version(mut self, version_id: Option<&'a str>) -> Self {
        self.version_id = version_id;
        self
    }

    pub fn upload(mut self, upload_id: &'a str) -> Self {
        self.upload_id = Some(upload_id);
        self
    }
}

/// An error's message and its sources', joined with ": " on one line (the SDK's own
/// `DisplayErrorContext` appends the whole error's Debug form, hundreds of characters that
/// end up in `ferry bucket status`).
pub(super) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(e) = next {
        let m = e.to_string();
        if !m.is_empty() && !out.ends_with(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        next = e.source();
    }
    out
}

/// What an answer without an error document (a HEAD's) says: its status alone, worded, not
/// the SDK's debug text of an "unhandled error".
fn bare(status: u16, body: &str) -> Option<String> {
    if !body.trim().is_empty() || status == 0 {
        return None;
    }
    let meaning = match status {
        401 | 403 => ": access denied (credentials the backend refuses, or a policy)",
        404 => ": not found",
        _ => "",
    };
    Some(format!("HTTP {status} without an error document{meaning}"))
}

/// Maps an SDK error to a store error by meaning. Never panics.
pub(super) fn map_sdk_error<E>(store: &str, ctx: Ctx<'_>, err: SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let unavailable = |err: &SdkError<E>| Error::Unavailable {
        store: store.to_owned(),
        message: chain(err),
    };
    match &err {
        SdkError::ServiceError(_) => {}
        // No answer, or an answer that could not be read: the backend (or the path to it) is
        // the problem, and trying again later may work.
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            return unavailable(&err);
        }
        // The SDK refuses a key of whitespace alone before sending it (it takes it for a
        // missing key: "key was missing"), though S3 holds such keys.
        SdkError::ConstructionFailure(_)
            if ctx
                .key
                .is_some_and(|k| !k.is_empty() && k.trim().is_empty()) =>
        {
            return Error::InvalidArgument(format!(
                "the key {:?} is whitespace alone, which the AWS SDK Ferry talks to S3 with \
                 refuses to send",
                ctx.key.unwrap_or_default()
            ));
        }
        SdkError::ConstructionFailure(_) => {
            return Error::Remote {
                store: store.to_owned(),
                code: "ConstructionFailure".to_owned(),
                message: chain(&err),
                status: 0,
            };
        }
        _ => return unavailable(&err),
    }

    let raw = err.raw_response();
    let status = raw.map(|r| r.status().as_u16()).unwrap_or(0);
    let body = raw
        .and_then(|r| r.body().bytes())
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let answer = Answer {
        status,
        code: err.code().unwrap_or_default(),
        message: err
            .message()
            .map(str::to_owned)
            .unwrap_or_else(|| bare(status, &body).unwrap_or_else(|| chain(&err))),
        body: &body,
        header: &|name| raw.and_then(|r| r.headers().get(name)).map(str::to_owned),
    };
    map_answer(store, ctx, &answer)
}

/// An error answer from the backend, however it was received.
pub(super) struct Answer<'a> {
    pub status: u16,
    /// The S3 error code; empty for bodiless (HEAD) answers.
    pub code: &'a str,
    pub message: String,
    /// The error document, or empty.
    pub body: &'a str,
    pub header: &'a dyn Fn(&str) -> Option<String>,
}

impl Answer<'_> {
    /// Reads an error answer's code and message from its error document (for requests sent
    /// outside the SDK).
    pub fn code_of(body: &str) -> &str {
        xml_field(body, "Code").unwrap_or_default()
    }

    pub fn message_of(body: &str, status: u16) -> String {
        xml_field(body, "Message")
            .map(|m| {
                quick_xml::escape::unescape(m).map_or_else(|_| m.to_owned(), |u| u.into_owned())
            })
            .unwrap_or_else(|| format!("HTTP {status}"))
    }
}

/// Maps an error answer to a store error by meaning. Never panics.
pub(super) fn map_answer(store: &str, ctx: Ctx<'_>, answer: &Answer<'_>) -> Error {
    let Answer {
        status,
        code,
        body,
        header,
        ..
    } = *answer;
    let delete_marker =
        header("x-amz-delete-marker").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let marker_version = header("x-amz-version-id");

    // Copies involve two buckets; S3 names the missing one in the error document.
    let bucket = || {
        xml_field(body, "BucketName")
            .unwrap_or(ctx.bucket)
            .to_owned()
    };
    let key = || ctx.key.unwrap_or_default().to_owned();
    let no_such_key = || Error::NoSuchKey {
        bucket: bucket(),
        key: key(),
        delete_marker: if delete_marker {
            marker_version.clone()
        } else {
            None
        },
    };
    let no_such_version = || Error::NoSuchVersion {
        key: key(),
        version_id: ctx.version_id.unwrap_or_default().to_owned(),
    };
    let is_delete_marker = || Error::IsDeleteMarker {
        key: key(),
        version_id: ctx
            .version_id
            .map(str::to_owned)
            .or_else(|| marker_version.clone())
            .unwrap_or_default(),
        last_modified: None,
    };
    let part_number = || {
        xml_field(body, "PartNumber")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };

    match code {
        "NoSuchBucket" => Error::NoSuchBucket { bucket: bucket() },
        "NoSuchKey" => no_such_key(),
        "NoSuchVersion" => no_such_version(),
        "NoSuchUpload" => Error::NoSuchUpload {
            upload_id: ctx.upload_id.unwrap_or_default().to_owned(),
        },
        "InvalidPart" => Error::InvalidPart {
            part_number: part_number(),
        },
        "InvalidPartOrder" => Error::InvalidPartOrder,
        "InvalidPartNumber" => Error::InvalidPartNumber {
            part_number: part_number(),
        },
        // MinIO answers a checksum that does not match with a code of its own; a payload
        // whose SHA-256 differs from the signed one was damaged on the way just the same.
        "BadDigest" | "XAmzContentChecksumMismatch" | "XAmzContentSHA256Mismatch" => {
            Error::BadDigest {
                what: "Content-MD5, checksum or payload hash: the backend refused it".to_owned(),
            }
        }
        "EntityTooSmall" => Error::EntityTooSmall {
            part_number: part_number(),
        },
        "InvalidRange" => Error::InvalidRange {
            size: range_size(body, header("content-range").as_deref()),
        },
        "BucketAlreadyExists" | "BucketAlreadyOwnedByYou" => {
            Error::BucketAlreadyExists { bucket: bucket() }
        }
        "BucketNotEmpty" => Error::BucketNotEmpty { bucket: bucket() },
        "MethodNotAllowed" if delete_marker && ctx.key.is_some() => is_delete_marker(),
        // HEAD answers carry no body, so no code: decide by status and what was asked.
        "" | "NotFound" if status == 404 => match (ctx.key, ctx.version_id) {
            (None, _) => Error::NoSuchBucket { bucket: bucket() },
            (Some(_), Some(_)) if !delete_marker => no_such_version(),
            (Some(_), _) => no_such_key(),
        },
        "" if status == 405 && delete_marker && ctx.key.is_some() => is_delete_marker(),
        "" if status == 416 => Error::InvalidRange {
            size: range_size(body, header("content-range").as_deref()),
        },
        _ => Error::Remote {
            store: store.to_owned(),
            code: if code.is_empty() {
                format!("Http{status}")
            } else {
                code.to_owned()
            },
            message: answer.message.clone(),
            status,
        },
    }
}

/// The text of the first `<name>…</name>` element of an S3 error document.
fn xml_field<'b>(body: &'b str, name: &str) -> Option<&'b str> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find("</")?;
    Some(body[start..start + len].trim())
}

/// The object size an `InvalidRange` answer reports: `<ActualObjectSize>` in the body, or
/// `Content-Range: bytes */size`; 0 when neither is present.
fn range_size(body: &str, content_range: Option<&str>) -> u64 {
    xml_field(body, "ActualObjectSize")
        .and_then(|s| s.parse().ok())
        .or_else(|| content_range?.rsplit('/').next()?.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bodiless_answer_is_worded_by_its_status() {
        let said = bare(403, "").unwrap_or_default();
        assert!(
            said.contains("HTTP 403") && said.contains("access denied"),
            "{said}"
        );
        assert_eq!(bare(403, "<Error><Code>AccessDenied</Code></Error>"), None);
        assert_eq!(bare(0, ""), None);
    }

    #[test]
    fn xml_fields() {
        let body = "<Error><Code>InvalidPart</Code><PartNumber>3</PartNumber></Error>";
        assert_eq!(xml_field(body, "PartNumber"), Some("3"));
        assert_eq!(xml_field(body, "ETag"), None);
        assert_eq!(
            range_size("<ActualObjectSize>12</ActualObjectSize>", None),
            12
        );
        assert_eq!(range_size("", Some("bytes */34")), 34);
        assert_eq!(range_size("", None), 0);
        let body =
            "<Error><Code>X</Code><Message>its parent &quot;a&quot; &amp; more</Message></Error>";
        assert_eq!(Answer::message_of(body, 400), "its parent \"a\" & more");
    }
}
