//! Conversions between s3s wire types and store types: metadata headers, tags, checksums,
//! ranges, bodies, conditional requests.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use s3s::dto::{self, ETag, ETagCondition, StreamingBlob, Timestamp};
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

use super::error::invalid_argument;
use crate::store::{self, ByteStream, Checksum, ChecksumAlgorithm, ObjectAttrs, ObjectMeta, Tags};

pub fn etag(s: &str) -> ETag {
    ETag::Strong(s.to_owned())
}

/// A time as S3 writes it: in whole seconds, everywhere. AWS's listings end in `.000Z`, as
/// its `Last-Modified` headers have no fraction; a listing more precise than HEAD made awscli's
/// `s3 sync --exact-timestamps` download every object again on every run (it dates each copy
/// from the listing, in seconds, then compares with the listing), and gave rclone two times
/// for one object.
pub fn ts(t: time::OffsetDateTime) -> Timestamp {
    Timestamp::from(t.replace_nanosecond(0).unwrap_or(t))
}

/// The request body as a store stream (empty when the request has none).
pub fn body_stream(body: Option<StreamingBlob>) -> ByteStream {
    match body {
        Some(b) => Box::pin(b.map_err(std::io::Error::other)),
        None => Box::pin(futures::stream::empty()),
    }
}

pub fn blob(body: ByteStream) -> StreamingBlob {
    StreamingBlob::wrap(sync_wrapper::SyncStream::new(body))
}

pub fn user_metadata(m: Option<dto::Metadata>) -> BTreeMap<String, String> {
    m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

pub fn expires_str(e: Option<Timestamp>) -> Option<String> {
    e.and_then(|t| {
        let mut buf = Vec::new();
        t.format(dto::TimestampFormat::HttpDate, &mut buf).ok()?;
        String::from_utf8(buf).ok()
    })
}

pub fn expires_ts(s: Option<&String>) -> Option<Timestamp> {
    s.and_then(|s| Timestamp::parse(dto::TimestampFormat::HttpDate, s).ok())
}

/// Parses a `x-amz-tagging` header / query-string tag set, enforcing S3's limits.
pub fn parse_tagging_header(s: Option<&str>) -> S3Result<Tags> {
    let mut tags = Tags::new();
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(tags);
    };
    for pair in s.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let dec = |x: &str| {
            urlencoding::decode(&x.replace('+', " "))
                .map(|c| c.into_owned())
                .map_err(|_| s3_error!(InvalidTag, "the tag {x:?} is not valid URL encoding"))
        };
        tags.push((dec(k)?, dec(v)?));
    }
    validate_tags(&tags)?;
    Ok(tags)
}

/// The most tags an object may carry (a bucket: [`MAX_BUCKET_TAGS`]).
const MAX_OBJECT_TAGS: usize = 10;
pub const MAX_BUCKET_TAGS: usize = 50;

/// A character S3 allows in tag keys and values: letters, digits and white space in any
/// script, and `_ . : / = + - @`.
fn tag_char(c: char) -> bool {
    c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c)
}

pub fn validate_tags(tags: &Tags) -> S3Result<()> {
    validate_tags_up_to(tags, MAX_OBJECT_TAGS)
}

pub fn validate_tags_up_to(tags: &Tags, max: usize) -> S3Result<()> {
    if tags.len() > max {
        return Err(super::error::bad_request(&format!(
            "tags cannot be greater than {max}"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, v) in tags {
        if let Some(c) = k.chars().chain(v.chars()).find(|c| !tag_char(*c)) {
            return Err(s3_error!(
                InvalidTag,
                "the tag {k:?} has the character {c:?}, which tags may not have"
            ));
        }
        if k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
            return Err(s3_error!(
                InvalidTag,
                "the tag key {k:?} uses the prefix aws:, reserved for AWS"
            ));
        }
        if k.is_empty() || k.chars().count() > 128 {
            return Err(s3_error!(
                InvalidTag,
                "the tag key {k:?} must be 1 to 128 characters"
            ));
        }
        if v.chars().count() > 256 {
            return Err(s3_error!(
                InvalidTag,
                "the value of tag {k:?} is longer than 256 characters"
            ));
        }
        if !seen.insert(k) {
            return Err(s3_error!(
                InvalidTag,
                "the tag key {k:?} appears more than once"
            ));
        }
    }
    Ok(())
}

pub fn tags_to_dto(tags: Tags) -> Vec<dto::Tag> {
    tags.into_iter()
        .map(|(k, v)| dto::Tag {
            key: Some(k),
            value: Some(v),
        })
        .collect()
}

pub fn tags_from_dto(tags: Vec<dto::Tag>) -> S3Result<Tags> {
    // Key and Value are both required by S3's schema: a tag without one is refused as AWS
    // refuses it, not stored with an empty value.
    let tags: Tags = tags
        .into_iter()
        .map(|t| match (t.key, t.value) {
            (Some(k), Some(v)) => Ok((k, v)),
            (None, _) => Err(s3_error!(MalformedXML, "a Tag has no Key")),
            (Some(k), None) => Err(s3_error!(MalformedXML, "the tag {k:?} has no Value")),
        })
        .collect::<S3Result<_>>()?;
    validate_tags(&tags)?;
    Ok(tags)
}

pub fn algorithm(a: Option<&dto::ChecksumAlgorithm>) -> S3Result<Option<ChecksumAlgorithm>> {
    match a {
        None => Ok(None),
        Some(a) => ChecksumAlgorithm::parse(a.as_str())
            .map(Some)
            .ok_or_else(|| {
                invalid_argument(format!("unknown checksum algorithm {:?}", a.as_str()))
            }),
    }
}

/// Checksum fields of an output, set from a stored checksum.
#[derive(Default)]
pub struct ChecksumFields {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
    pub kind: Option<dto::ChecksumType>,
}

pub fn checksum_fields(c: Option<&Checksum>) -> ChecksumFields {
    let mut f = ChecksumFields::default();
    if let Some(c) = c {
        let v = Some(c.value.clone());
        match c.algorithm {
            ChecksumAlgorithm::Crc32 => f.crc32 = v,
            ChecksumAlgorithm::Crc32c => f.crc32c = v,
            ChecksumAlgorithm::Crc64Nvme => f.crc64nvme = v,
            ChecksumAlgorithm::Sha1 => f.sha1 = v,
            ChecksumAlgorithm::Sha256 => f.sha256 = v,
        }
        f.kind = Some(dto::ChecksumType::from_static(if c.composite {
            dto::ChecksumType::COMPOSITE
        } else {
            dto::ChecksumType::FULL_OBJECT
        }));
    }
    f
}

pub fn range(r: Option<dto::Range>) -> Option<store::ByteRange> {
    r.map(|r| match r {
        dto::Range::Int {
            first,
            last: Some(last),
        } => store::ByteRange::FromTo(first, last),
        dto::Range::Int { first, last: None } => store::ByteRange::From(first),
        dto::Range::Suffix { length } => store::ByteRange::Suffix(length),
    })
}

/// The standard headers an object is served with (GET and HEAD alike): the request's
/// `response-*` overrides where it names them, else the object's own.
#[derive(Default)]
pub struct Served {
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub content_disposition: Option<String>,
    pub content_encoding: Option<String>,
    pub content_language: Option<String>,
    pub expires: Option<dto::Timestamp>,
}

/// The `response-*` overrides of a GetObject or HeadObject input, as a [`Served`].
macro_rules! overrides_of {
    ($input:expr) => {
        $crate::gateway::convert::Served {
            content_type: $input.response_content_type,
            cache_control: $input.response_cache_control,
            content_disposition: $input.response_content_disposition,
            content_encoding: $input.response_content_encoding,
            content_language: $input.response_content_language,
            expires: $input.response_expires,
        }
    };
}
pub(crate) use overrides_of;

/// What an object with `a` is served with, given the request's `over`rides.
pub fn served(a: &ObjectAttrs, over: Served) -> Served {
    Served {
        content_type: over
            .content_type
            .or(a.content_type.clone())
            .or_else(|| Some(store::DEFAULT_CONTENT_TYPE.into())),
        cache_control: over.cache_control.or(a.cache_control.clone()),
        content_disposition: over.content_disposition.or(a.content_disposition.clone()),
        content_encoding: over
            .content_encoding
            .or(super::guard::stored_encoding(a.content_encoding.clone())),
        content_language: over.content_language.or(a.content_language.clone()),
        expires: over.expires.or(expires_ts(a.expires.as_ref())),
    }
}

/// The owner of every bucket and object: Ferry serves one key pair.
pub fn owner() -> dto::Owner {
    dto::Owner {
        display_name: Some("ferry".into()),
        id: Some("ferry".into()),
    }
}

#[allow(clippy::too_many_arguments)] // one per header, called through `attrs_of!`
pub fn attrs_from(
    content_type: Option<String>,
    cache_control: Option<String>,
    content_disposition: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    expires: Option<Timestamp>,
    metadata: Option<dto::Metadata>,
    website_redirect: Option<String>,
) -> S3Result<ObjectAttrs> {
    let user_metadata = user_metadata(metadata);
    let size: usize = user_metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_USER_METADATA {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size: {size} bytes of \
             user metadata, at most {MAX_USER_METADATA}"
        ));
    }
    Ok(ObjectAttrs {
        content_type,
        cache_control,
        content_disposition,
        content_encoding: super::guard::stored_encoding(content_encoding),
        content_language,
        expires: expires_str(expires),
        user_metadata,
        storage_class: None,
        website_redirect,
    })
}

/// The storage class a write asks for, as kept (`None` for STANDARD). Every class S3 has for
/// a general-purpose bucket is kept and served as written; an archive class's object
/// (GLACIER, DEEP_ARCHIVE) is readable at once, there being nothing to restore it from.
pub fn storage_class(c: Option<&dto::StorageClass>) -> S3Result<Option<String>> {
    use dto::StorageClass as C;
    match c.map(C::as_str) {
        None | Some(C::STANDARD) => Ok(None),
        Some(
            c @ (C::REDUCED_REDUNDANCY
            | C::STANDARD_IA
            | C::ONEZONE_IA
            | C::INTELLIGENT_TIERING
            | C::GLACIER
            | C::GLACIER_IR
            | C::DEEP_ARCHIVE),
        ) => Ok(Some(c.to_owned())),
        // Classes of other kinds of bucket (directory buckets, Outposts, Snow devices).
        Some(c @ (C::OUTPOSTS | C::SNOW | C::EXPRESS_ONEZONE)) => Err(s3_error!(
            InvalidStorageClass,
            "The storage class you specified is not valid for this bucket: {c}"
        )),
        Some(other) => Err(s3_error!(
            InvalidStorageClass,
            "The storage class you specified is not valid: {other:?}"
        )),
    }
}

/// The class to name for an object: its own, or STANDARD.
pub fn class_of(m: &ObjectMeta) -> &str {
    m.attrs
        .storage_class
        .as_deref()
        .unwrap_or(dto::StorageClass::STANDARD)
}

/// S3's limit on user metadata: the UTF-8 bytes of every name (without `x-amz-meta-`) and
/// value together.
const MAX_USER_METADATA: usize = 2048;

pub fn metadata_dto(attrs: &ObjectAttrs) -> Option<dto::Metadata> {
    if attrs.user_metadata.is_empty() {
        None
    } else {
        Some(
            attrs
                .user_metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    }
}

/// The version id to put in a response header: none for objects of a never-versioned bucket.
pub fn version_header(meta: &ObjectMeta) -> Option<String> {
    (meta.version_id != store::NULL_VERSION).then(|| meta.version_id.clone())
}

pub(super) fn etag_matches(cond: &ETagCondition, current: &str) -> bool {
    match cond {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == current,
    }
}

/// Evaluates GET/HEAD preconditions in the order RFC 9110 and S3 use.
pub fn check_read_conditions(
    meta: &ObjectMeta,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let modified = time::OffsetDateTime::from(ts(meta.last_modified));
    if let Some(c) = if_match {
        if !etag_matches(c, &meta.etag) {
            return Err(S3Error::new(S3ErrorCode::PreconditionFailed));
        }
    } else if let Some(t) = if_unmodified_since
        && modified > time::OffsetDateTime::from(t.clone())
    {
        return Err(S3Error::new(S3ErrorCode::PreconditionFailed));
    }
    let not_modified = match if_none_match {
        Some(c) => etag_matches(c, &meta.etag),
        None => {
            if_modified_since.is_some_and(|t| modified <= time::OffsetDateTime::from(t.clone()))
        }
    };
    if not_modified {
        return Err(not_modified_error(meta));
    }
    Ok(())
}

/// The `x-amz-copy-source-if-*` conditions of a copy: as a GET's, but a copy that would be
/// "not modified" fails with 412.
pub fn check_copy_source_conditions(
    meta: &ObjectMeta,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    check_read_conditions(
        meta,
        if_match,
        if_none_match,
        if_modified_since,
        if_unmodified_since,
    )
    .map_err(|e| {
        if *e.code() == S3ErrorCode::NotModified {
            S3Error::new(S3ErrorCode::PreconditionFailed)
        } else {
            e
        }
    })
}

/// The standard headers and user metadata of a PUT-like request (PutObject,
/// CreateMultipartUpload, CopyObject with `REPLACE`), checked against S3's limits.
macro_rules! attrs_of {
    ($input:expr) => {
        $crate::gateway::convert::attrs_from(
            $input.content_type,
            $input.cache_control,
            $input.content_disposition,
            $input.content_encoding,
            $input.content_language,
            $input.expires,
            $input.metadata,
            $input.website_redirect_location,
        )
    };
}
pub(crate) use attrs_of;

/// 304 Not Modified, with the ETag, Last-Modified and version id S3 sends so a cache can
/// revalidate.
fn not_modified_error(meta: &ObjectMeta) -> S3Error {
    let mut e = S3Error::new(S3ErrorCode::NotModified);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", meta.etag)) {
        headers.insert(http::header::ETAG, v);
    }
    if let Some(v) = version_header(meta).and_then(|v| http::HeaderValue::from_str(&v).ok()) {
        headers.insert("x-amz-version-id", v);
    }
    let mut date = Vec::new();
    if ts(meta.last_modified)
        .format(dto::TimestampFormat::HttpDate, &mut date)
        .is_ok()
        && let Ok(v) = http::HeaderValue::from_bytes(&date)
    {
        headers.insert(http::header::LAST_MODIFIED, v);
    }
    e.set_headers(headers);
    e
}

pub fn max_keys(v: Option<i32>) -> S3Result<usize> {
    match v {
        None => Ok(1000),
        Some(n) if n < 0 => Err(invalid_argument("max-keys must be a non-negative integer")),
        Some(n) => Ok((n as usize).min(1000)),
    }
}

/// Encodes a key for `encoding-type=url` responses.
pub fn url_encode(s: &str) -> String {
    urlencoding::encode(s).replace("%2F", "/")
}
