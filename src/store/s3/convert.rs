//! Conversions between the store-neutral types and aws-sdk-s3's: times, ETags, version ids,
//! checksums, tags, object attributes, ranges and copy sources. Plain functions, plus a few
//! macros for the SDK's request builders and outputs, which share method names but no trait.

use std::collections::HashMap;

use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use aws_sdk_s3::types as sdk;
use time::OffsetDateTime;

use crate::store::types::{ByteRange, Checksum, ChecksumAlgorithm, NULL_VERSION, Tags};

/// An SDK time as an `OffsetDateTime`; the epoch when absent or out of range.
pub(super) fn to_time(t: Option<&DateTime>) -> OffsetDateTime {
    t.and_then(|t| OffsetDateTime::from_unix_timestamp_nanos(t.as_nanos()).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A version id as the trait spells it: `"null"` for null versions and when absent.
pub(super) fn version_or_null(v: Option<&str>) -> String {
    match v {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => NULL_VERSION.to_owned(),
    }
}

/// An ETag without its quotes.
pub(super) fn trim_etag(etag: Option<&str>) -> String {
    etag.unwrap_or_default().trim().trim_matches('"').to_owned()
}

/// An ETag with quotes, as S3 expects it in CompleteMultipartUpload.
pub(super) fn quote_etag(etag: &str) -> String {
    format!("\"{}\"", etag.trim_matches('"'))
}

/// True when the ETag is a plain hex MD5 (not multipart, not opaque).
pub(super) fn is_plain_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether an object's ETag is not its MD5 because of how S3 encrypts it: SSE-KMS (also
/// dual-layer) or SSE-C. SSE-S3 (`AES256`) keeps the MD5.
pub(super) fn etag_is_opaque(
    sse: Option<&sdk::ServerSideEncryption>,
    sse_customer_algorithm: Option<&str>,
) -> bool {
    sse_customer_algorithm.is_some()
        || matches!(
            sse,
            Some(sdk::ServerSideEncryption::AwsKms | sdk::ServerSideEncryption::AwsKmsDsse)
        )
}

/// Whether the backend's ETag for a body shows the body arrived different: it is a plain MD5
/// (not opaque because of SSE-KMS or SSE-C encryption) other than the one computed.
pub(super) fn etag_contradicts_md5(
    etag: &str,
    md5: &[u8; 16],
    sse: Option<&sdk::ServerSideEncryption>,
    sse_customer_algorithm: Option<&str>,
) -> bool {
    etag_differs_from_md5(etag, md5, etag_is_opaque(sse, sse_customer_algorithm))
}

/// [`etag_contradicts_md5`] for an answer whose opacity is already known.
pub(super) fn etag_differs_from_md5(etag: &str, md5: &[u8; 16], opaque: bool) -> bool {
    !opaque && is_plain_md5(etag) && !etag.eq_ignore_ascii_case(&hex::encode(md5))
}

/// The part count of a multipart ETag (`hex-N`).
pub(super) fn parts_from_etag(etag: &str) -> Option<u32> {
    etag.rsplit_once('-')?.1.parse().ok()
}

pub(super) fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub(super) fn to_u64(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

pub(super) fn sdk_algorithm(a: ChecksumAlgorithm) -> sdk::ChecksumAlgorithm {
    match a {
        ChecksumAlgorithm::Crc32 => sdk::ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32c => sdk::ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme => sdk::ChecksumAlgorithm::Crc64Nvme,
        ChecksumAlgorithm::Sha1 => sdk::ChecksumAlgorithm::Sha1,
        ChecksumAlgorithm::Sha256 => sdk::ChecksumAlgorithm::Sha256,
    }
}

pub(super) fn from_sdk_algorithm(a: &sdk::ChecksumAlgorithm) -> Option<ChecksumAlgorithm> {
    ChecksumAlgorithm::parse(a.as_str())
}

/// The first checksum present among an output's `checksum_*` values (in
/// [`ChecksumAlgorithm::ALL`] order). Values with a `-N` suffix are composite.
pub(super) fn pick_checksum(values: [Option<&str>; 5], composite: bool) -> Option<Checksum> {
    ChecksumAlgorithm::ALL
        .into_iter()
        .zip(values)
        .find_map(|(algorithm, value)| {
            let value = value.filter(|v| !v.is_empty())?;
            Some(Checksum {
                algorithm,
                composite: composite || value.contains('-'),
                value: value.to_owned(),
            })
        })
}

/// The checksum an SDK output carries; `$out` needs the `checksum_*()` getters, and
/// `checksum_type()` unless a composite flag is given.
macro_rules! checksum_of {
    ($out:expr) => {{
        let out = $out;
        let composite = matches!(
            out.checksum_type(),
            Some(aws_sdk_s3::types::ChecksumType::Composite)
        );
        checksum_of!(out, composite)
    }};
    ($out:expr, $composite:expr) => {{
        let out = $out;
        $crate::store::s3::convert::pick_checksum(
            [
                out.checksum_crc32(),
                out.checksum_crc32_c(),
                out.checksum_crc64_nvme(),
                out.checksum_sha1(),
                out.checksum_sha256(),
            ],
            $composite,
        )
    }};
}
pub(super) use checksum_of;

/// Sets a known checksum value on a request builder (as a header, never a trailer).
macro_rules! with_checksum_value {
    ($req:expr, $checksum:expr) => {{
        let req = $req;
        let c: &$crate::store::types::Checksum = $checksum;
        let v = c.value.clone();
        match c.algorithm {
            $crate::store::types::ChecksumAlgorithm::Crc32 => req.checksum_crc32(v),
            $crate::store::types::ChecksumAlgorithm::Crc32c => req.checksum_crc32_c(v),
            $crate::store::types::ChecksumAlgorithm::Crc64Nvme => req.checksum_crc64_nvme(v),
            $crate::store::types::ChecksumAlgorithm::Sha1 => req.checksum_sha1(v),
            $crate::store::types::ChecksumAlgorithm::Sha256 => req.checksum_sha256(v),
        }
    }};
}
pub(super) use with_checksum_value;

/// Sets what is known about an upload body on a PutObject or UploadPart request builder:
/// for a buffered body (`$known` digests), `Content-MD5` and — when `$sends_known` — the
/// checksum value as a header (which keeps the SDK from computing a trailer); for a streamed
/// one, when `$supported`, the algorithm the SDK computes into a trailer.
macro_rules! with_upload_digests {
    ($req:expr, $known:expr, $algorithm:expr, $supported:expr, $sends_known:expr) => {{
        let mut req = $req;
        let known: Option<&$crate::store::types::Digests> = $known;
        let algorithm: Option<$crate::store::types::ChecksumAlgorithm> = $algorithm;
        let supported: bool = $supported;
        let sends_known: bool = $sends_known;
        match known {
            Some(d) => {
                req = req.content_md5($crate::store::digest::b64(&d.md5));
                if let Some(c) = d.checksum.as_ref().filter(|_| sends_known) {
                    // Named too, as the AWS SDKs send it: a backend may look for the value
                    // only under the algorithm named (moto keeps none otherwise). The SDK
                    // computes nothing more for a request that carries a value.
                    req = $crate::store::s3::convert::with_checksum_value!(req, c)
                        .checksum_algorithm($crate::store::s3::convert::sdk_algorithm(c.algorithm));
                }
            }
            None => {
                if let Some(a) = algorithm.filter(|_| supported) {
                    req = req.checksum_algorithm($crate::store::s3::convert::sdk_algorithm(a));
                }
            }
        }
        req
    }};
}
pub(super) use with_upload_digests;

/// Sets an [`ObjectAttrs`](crate::store::types::ObjectAttrs) on a PutObject, CopyObject or
/// CreateMultipartUpload request builder.
macro_rules! with_attrs {
    ($req:expr, $attrs:expr) => {{
        let attrs: &$crate::store::types::ObjectAttrs = $attrs;
        $req.set_content_type(attrs.content_type.clone())
            .set_cache_control(attrs.cache_control.clone())
            .set_content_disposition(attrs.content_disposition.clone())
            .set_content_encoding(attrs.content_encoding.clone())
            .set_content_language(attrs.content_language.clone())
            .set_expires(
                attrs
                    .expires
                    .as_deref()
                    .and_then($crate::store::s3::convert::parse_http_date),
            )
            .set_metadata($crate::store::s3::convert::sdk_metadata(
                &attrs.user_metadata,
            ))
            .set_website_redirect_location(attrs.website_redirect.clone())
    }};
}
pub(super) use with_attrs;

/// Reads an [`ObjectAttrs`](crate::store::types::ObjectAttrs) from a HeadObject or GetObject
/// output.
macro_rules! attrs_of {
    ($out:expr) => {{
        let out = $out;
        $crate::store::types::ObjectAttrs {
            content_type: out.content_type().map(str::to_owned),
            cache_control: out.cache_control().map(str::to_owned),
            content_disposition: out.content_disposition().map(str::to_owned),
            content_encoding: out.content_encoding().map(str::to_owned),
            content_language: out.content_language().map(str::to_owned),
            expires: out.expires_string().map(str::to_owned),
            user_metadata: out
                .metadata()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            (
                                k.to_ascii_lowercase(),
                                $crate::store::s3::convert::metadata_in(v),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            storage_class: out
                .storage_class()
                .map(|c| c.as_str().to_owned())
                .filter(|c| c != "STANDARD"),
            website_redirect: out.website_redirect_location().map(str::to_owned),
        }
    }};
}
pub(super) use attrs_of;

/// Builds [`ObjectMeta`](crate::store::types::ObjectMeta) from a HeadObject or GetObject
/// output, given the key, the object's full size and whether it is known to be the latest.
macro_rules! meta_of {
    ($out:expr, $key:expr, $size:expr, $is_latest:expr) => {{
        let out = $out;
        let etag = $crate::store::s3::convert::trim_etag(out.e_tag());
        $crate::store::types::ObjectMeta {
            key: $key,
            version_id: $crate::store::s3::convert::version_or_null(out.version_id()),
            is_latest: $is_latest,
            delete_marker: out.delete_marker().unwrap_or(false),
            size: $size,
            last_modified: $crate::store::s3::convert::to_time(out.last_modified()),
            attrs: $crate::store::s3::convert::attrs_of!(out),
            checksum: $crate::store::s3::convert::checksum_of!(out),
            tag_count: out
                .tag_count()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0),
            parts_count: $crate::store::s3::convert::parts_from_etag(&etag),
            opaque_etag: $crate::store::s3::convert::etag_is_opaque(
                out.server_side_encryption(),
                out.sse_customer_algorithm(),
            ),
            etag,
        }
    }};
}
pub(super) use meta_of;

pub(super) fn parse_http_date(s: &str) -> Option<DateTime> {
    DateTime::from_str(s.trim(), DateTimeFormat::HttpDate).ok()
}

pub(super) fn sdk_metadata(
    m: &std::collections::BTreeMap<String, String>,
) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| {
        m.iter()
            .map(|(k, v)| (k.clone(), metadata_out(v).into_owned()))
            .collect()
    })
}

/// A user-metadata value as a header carries it: as it is when it is printable ASCII, else
/// as an RFC 2047 encoded word (`=?UTF-8?B?...?=`), which is how S3 and its SDKs carry
/// non-ASCII metadata (raw UTF-8 in a header breaks signatures on the way).
pub(super) fn metadata_out(v: &str) -> std::borrow::Cow<'_, str> {
    if v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        return std::borrow::Cow::Borrowed(v);
    }
    std::borrow::Cow::Owned(format!(
        "=?UTF-8?B?{}?=",
        crate::store::digest::b64(v.as_bytes())
    ))
}

/// A user-metadata value read from a backend: RFC 2047 encoded words (UTF-8, `B` or `Q`)
/// decoded, anything else as it is.
pub(super) fn metadata_in(v: &str) -> String {
    let words: Option<Vec<Vec<u8>>> = v.split_ascii_whitespace().map(decode_word).collect();
    match words {
        Some(w) if !w.is_empty() => String::from_utf8(w.concat()).unwrap_or_else(|_| v.to_owned()),
        _ => v.to_owned(),
    }
}

fn decode_word(w: &str) -> Option<Vec<u8>> {
    let inner = w.strip_prefix("=?")?.strip_suffix("?=")?;
    let mut parts = inner.splitn(3, '?');
    let (charset, encoding, text) = (parts.next()?, parts.next()?, parts.next()?);
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    if encoding.eq_ignore_ascii_case("b") {
        return crate::store::digest::b64_decode(text);
    }
    if !encoding.eq_ignore_ascii_case("q") {
        return None;
    }
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = [bytes.next()?, bytes.next()?];
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
            }
            b => out.push(b),
        }
    }
    Some(out)
}

/// Tags as the `x-amz-tagging` header wants them: a URL-encoded query string.
pub(super) fn tagging_header(tags: &Tags) -> String {
    tags.iter()
        .map(|(k, v)| format!("{}={}", urlencoding::encode(k), urlencoding::encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(super) fn sdk_tags(tags: &Tags) -> Result<Vec<sdk::Tag>, String> {
    tags.iter()
        .map(|(k, v)| {
            sdk::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

pub(super) fn from_sdk_tags(tags: &[sdk::Tag]) -> Tags {
    tags.iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

/// The `Range` header for a byte range.
pub(super) fn range_header(r: ByteRange) -> String {
    match r {
        ByteRange::FromTo(first, last) => format!("bytes={first}-{last}"),
        ByteRange::From(first) => format!("bytes={first}-"),
        ByteRange::Suffix(n) => format!("bytes=-{n}"),
    }
}

/// Parses `Content-Range: bytes first-last/size` into `((first, last), size)`; the size is
/// `None` when the server sent `*`.
pub(super) fn parse_content_range(v: &str) -> Option<((u64, u64), Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, size) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let range = (first.trim().parse().ok()?, last.trim().parse().ok()?);
    Some((range, size.trim().parse().ok()))
}

/// The `x-amz-copy-source` value: bucket and URL-encoded key (segments encoded, `/` kept),
/// with the source version when given.
pub(super) fn copy_source(bucket: &str, key: &str, version_id: Option<&str>) -> String {
    let key = key
        .split('/')
        .map(|s| urlencoding::encode(s).into_owned())
        .collect::<Vec<_>>();
    let mut source = format!("{bucket}/{}", key.join("/"));
    if let Some(v) = version_id {
        source.push_str("?versionId=");
        source.push_str(&urlencoding::encode(v));
    }
    source
}

/// A `StartAfter` that skips everything rolled up into a common prefix the caller has
/// already seen.
///
/// With a delimiter, `start_after` may be a common prefix `p`: the `next_marker` of the
/// previous page. Keys under `p` sort after `p` itself, so passing it through unchanged would
/// make the backend roll those keys up into `p` again: the marker becomes `p` padded with the
/// highest code point up to the 1024-byte key limit, which sorts after every real key under
/// `p` (keys made of U+10FFFF characters aside). A `start_after` that lies inside `p` (a
/// client's StartAfter) goes as it is: keys of `p` after it still make `p` a common prefix,
/// as on S3.
pub(super) fn list_start_after(prefix: &str, delimiter: Option<&str>, start_after: &str) -> String {
    const MAX_KEY: usize = crate::store::key::MAX_KEY_BYTES;
    let Some(delim) = delimiter.filter(|d| !d.is_empty()) else {
        return start_after.to_owned();
    };
    let Some(rest) = start_after.strip_prefix(prefix) else {
        return start_after.to_owned();
    };
    let Some(pos) = rest.find(delim) else {
        return start_after.to_owned();
    };
    if pos + delim.len() != rest.len() {
        return start_after.to_owned();
    }
    let mut marker = start_after[..prefix.len() + pos + delim.len()].to_owned();
    while marker.len() + char::MAX.len_utf8() <= MAX_KEY {
        marker.push(char::MAX);
    }
    marker
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_and_versions() {
        assert_eq!(trim_etag(Some("\"abc\"")), "abc");
        assert_eq!(quote_etag("abc"), "\"abc\"");
        assert!(is_plain_md5("5d41402abc4b2a76b9719d911017c592"));
        assert!(!is_plain_md5("5d41402abc4b2a76b9719d911017c592-2"));
        assert_eq!(
            parts_from_etag("5d41402abc4b2a76b9719d911017c592-2"),
            Some(2)
        );
        assert_eq!(parts_from_etag("5d41402abc4b2a76b9719d911017c592"), None);
        assert_eq!(version_or_null(None), "null");
        assert_eq!(version_or_null(Some("v1")), "v1");
    }

    #[test]
    fn ranges() {
        assert_eq!(range_header(ByteRange::Suffix(5)), "bytes=-5");
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some(((0, 9), Some(100)))
        );
        assert_eq!(parse_content_range("bytes 0-9/*"), Some(((0, 9), None)));
        assert_eq!(parse_content_range("garbage"), None);
    }

    #[test]
    fn markers_and_sources() {
        assert_eq!(list_start_after("", None, "a/"), "a/");
        assert_eq!(list_start_after("", Some("/"), "a"), "a");
        let m = list_start_after("", Some("/"), "a/");
        assert!(m.starts_with("a/\u{10FFFF}") && m.len() <= 1024 && m.len() > 1020);
        assert!(list_start_after("x/", Some("/"), "x/a/").starts_with("x/a/\u{10FFFF}"));
        assert_eq!(list_start_after("x/", Some("/"), "x/a/b"), "x/a/b");
        assert_eq!(
            copy_source("b", "a b/c", Some("v 1")),
            "b/a%20b/c?versionId=v%201"
        );
        assert_eq!(
            tagging_header(&vec![("k 1".into(), "v&".into())]),
            "k%201=v%26"
        );
    }

    #[test]
    fn checksums() {
        let c = pick_checksum([None, Some("abc=-2"), None, None, None], false);
        assert_eq!(
            c,
            Some(Checksum {
                algorithm: ChecksumAlgorithm::Crc32c,
                value: "abc=-2".into(),
                composite: true
            })
        );
        assert_eq!(pick_checksum([None; 5], false), None);
    }

    #[test]
    fn non_ascii_metadata_round_trips_as_encoded_words() {
        assert_eq!(metadata_out("plain value"), "plain value");
        let out = metadata_out("café ☕");
        assert!(out.starts_with("=?UTF-8?B?") && out.is_ascii(), "{out}");
        assert_eq!(metadata_in(&out), "café ☕");
        assert_eq!(metadata_in("=?utf-8?Q?caf=C3=A9_au_lait?="), "café au lait");
        assert_eq!(metadata_in("=?UTF-8?B?Y2Fm?= =?UTF-8?B?w6k=?="), "café");
        // Not encoded words, or not UTF-8 ones: as they are.
        for v in [
            "=?",
            "a =?UTF-8?B?Y2Fm?=",
            "=?ISO-8859-1?Q?caf=E9?=",
            "=?UTF-8?B?!!?=",
        ] {
            assert_eq!(metadata_in(v), v);
        }
    }
}
