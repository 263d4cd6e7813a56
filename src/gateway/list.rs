//! Listings: ListObjects (v1), ListObjectsV2, ListObjectVersions, with prefix, delimiter,
//! markers, continuation tokens, max-keys and `encoding-type=url`.

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

use super::Gateway;
use super::convert::{self, etag, owner, ts};
use super::error::{invalid_argument, s3_error};
use crate::store::{self, ObjectMeta};

/// `encoding-type=url`: names in a listing's answer are URL-encoded when the client asks.
pub(super) struct Enc(bool);

impl Enc {
    pub(super) fn new(e: Option<&EncodingType>) -> S3Result<Self> {
        match e.map(|e| e.as_str()) {
            None => Ok(Self(false)),
            Some(s) if s.eq_ignore_ascii_case("url") => Ok(Self(true)),
            Some(s) => Err(invalid_argument(format!(
                "invalid encoding-type {s:?}: only 'url' is supported"
            ))),
        }
    }
    pub(super) fn s(&self, v: &str) -> String {
        if self.0 {
            convert::url_encode(v)
        } else {
            v.to_owned()
        }
    }
    pub(super) fn o(&self, v: Option<&String>) -> Option<String> {
        v.map(|v| self.s(v))
    }
}

fn object_entry(m: &ObjectMeta, enc: &Enc, with_owner: bool) -> Object {
    Object {
        key: Some(enc.s(m.key.as_str())),
        e_tag: Some(etag(&m.etag)),
        last_modified: Some(ts(m.last_modified)),
        size: Some(m.size as i64),
        storage_class: Some(ObjectStorageClass::from(convert::class_of(m).to_owned())),
        owner: with_owner.then(owner),
        checksum_algorithm: m
            .checksum
            .as_ref()
            .map(|c| vec![ChecksumAlgorithm::from(c.algorithm.as_str().to_owned())]),
        ..Default::default()
    }
}

pub(super) fn prefixes(cps: Vec<String>, enc: &Enc) -> Option<Vec<CommonPrefix>> {
    (!cps.is_empty()).then(|| {
        cps.into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc.s(&p)),
            })
            .collect()
    })
}

/// A continuation token is the base64 of the bucket's name, a NUL and the last name of the
/// page before (a non-empty name without NUL: no key has one), so a made-up token, or one
/// from another bucket's listing, is refused, as S3 refuses it.
fn decode_token(t: &str, bucket: &str) -> S3Result<String> {
    store::digest::b64_decode(t)
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| {
            let (b, k) = s.split_once('\0')?;
            (b == bucket).then(|| k.to_owned())
        })
        .filter(|k| !k.is_empty() && !k.contains('\0'))
        .ok_or_else(|| invalid_argument("The continuation token provided is incorrect"))
}

/// The token [`decode_token`] reads.
fn encode_token(bucket: &str, last: &str) -> String {
    store::digest::b64(format!("{bucket}\0{last}").as_bytes())
}

impl Gateway {
    pub(super) async fn list_objects_impl(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let enc = Enc::new(input.encoding_type.as_ref())?;
        let max_keys = convert::max_keys(input.max_keys)?;
        let q = store::ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            start_after: input.marker.clone().filter(|m| !m.is_empty()),
            max_keys,
        };
        let page = store.list_objects(&bucket, &q).await.map_err(s3_error)?;
        let truncated = page.next_marker.is_some();
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc.s(&q.prefix)),
            marker: Some(enc.s(input.marker.as_deref().unwrap_or(""))),
            max_keys: Some(max_keys as i32),
            is_truncated: Some(truncated),
            contents: Some(
                page.objects
                    .iter()
                    .map(|m| object_entry(m, &enc, true))
                    .collect(),
            ),
            common_prefixes: prefixes(page.common_prefixes, &enc),
            delimiter: enc.o(input.delimiter.as_ref()),
            // AWS returns NextMarker only with a delimiter; clients use the last key otherwise.
            next_marker: if truncated && q.delimiter.is_some() {
                enc.o(page.next_marker.as_ref())
            } else {
                None
            },
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    pub(super) async fn list_objects_v2_impl(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let enc = Enc::new(input.encoding_type.as_ref())?;
        let max_keys = convert::max_keys(input.max_keys)?;
        let start = match input.continuation_token.as_deref() {
            Some(t) => Some(decode_token(t, &input.bucket)?),
            None => input.start_after.clone().filter(|s| !s.is_empty()),
        };
        let q = store::ListQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            start_after: start,
            max_keys,
        };
        let page = store.list_objects(&bucket, &q).await.map_err(s3_error)?;
        let with_owner = input.fetch_owner.unwrap_or(false);
        let next_token = page
            .next_marker
            .as_deref()
            .map(|m| encode_token(&input.bucket, m));
        let key_count = page.objects.len() + page.common_prefixes.len();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc.s(&q.prefix)),
            max_keys: Some(max_keys as i32),
            key_count: Some(key_count as i32),
            continuation_token: input.continuation_token,
            is_truncated: Some(page.next_marker.is_some()),
            next_continuation_token: next_token,
            contents: Some(
                page.objects
                    .iter()
                    .map(|m| object_entry(m, &enc, with_owner))
                    .collect(),
            ),
            common_prefixes: prefixes(page.common_prefixes, &enc),
            delimiter: enc.o(input.delimiter.as_ref()),
            encoding_type: input.encoding_type,
            start_after: enc.o(input.start_after.as_ref()),
            ..Default::default()
        }))
    }

    pub(super) async fn list_object_versions_impl(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let input = req.input;
        let (store, bucket) = self.target(&input.bucket)?;
        let enc = Enc::new(input.encoding_type.as_ref())?;
        let max_keys = convert::max_keys(input.max_keys)?;
        if input
            .version_id_marker
            .as_ref()
            .is_some_and(|v| !v.is_empty())
            && input.key_marker.is_none()
        {
            return Err(invalid_argument(
                "a version-id marker cannot be specified without a key marker",
            ));
        }
        let q = store::VersionsQuery {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone().filter(|d| !d.is_empty()),
            key_marker: input.key_marker.clone().filter(|k| !k.is_empty()),
            version_id_marker: input.version_id_marker.clone(),
            max_keys,
        };
        let page = store.list_versions(&bucket, &q).await.map_err(s3_error)?;
        let mut versions = Vec::new();
        let mut markers = Vec::new();
        for v in &page.versions {
            if v.delete_marker {
                markers.push(DeleteMarkerEntry {
                    is_latest: Some(v.is_latest),
                    key: Some(enc.s(v.key.as_str())),
                    last_modified: Some(ts(v.last_modified)),
                    owner: Some(owner()),
                    version_id: Some(v.version_id.clone()),
                });
            } else {
                versions.push(ObjectVersion {
                    e_tag: Some(etag(&v.etag)),
                    is_latest: Some(v.is_latest),
                    key: Some(enc.s(v.key.as_str())),
                    last_modified: Some(ts(v.last_modified)),
                    owner: Some(owner()),
                    size: Some(v.size as i64),
                    // The version's own class, as S3 names it in this listing.
                    storage_class: Some(ObjectVersionStorageClass::from(
                        convert::class_of(v).to_owned(),
                    )),
                    version_id: Some(v.version_id.clone()),
                    ..Default::default()
                });
            }
        }
        let truncated = page.next_key_marker.is_some();
        let order = VersionOrder(page.versions.iter().map(|v| v.delete_marker).collect());
        let mut res = S3Response::new(ListObjectVersionsOutput {
            common_prefixes: prefixes(page.common_prefixes, &enc),
            delete_markers: (!markers.is_empty()).then_some(markers),
            versions: (!versions.is_empty()).then_some(versions),
            delimiter: enc.o(input.delimiter.as_ref()),
            encoding_type: input.encoding_type,
            is_truncated: Some(truncated),
            key_marker: Some(enc.s(input.key_marker.as_deref().unwrap_or(""))),
            version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
            max_keys: Some(max_keys as i32),
            name: Some(input.bucket),
            next_key_marker: enc.o(page.next_key_marker.as_ref()),
            next_version_id_marker: page.next_version_id_marker,
            prefix: Some(enc.s(&q.prefix)),
            ..Default::default()
        });
        res.extensions.insert(order);
        Ok(res)
    }
}

/// The order of a ListObjectVersions page's entries (`true` for a delete marker), carried in
/// the response's extensions to [`interleave_versions`].
#[derive(Clone)]
pub(super) struct VersionOrder(pub Vec<bool>);

/// s3s writes a ListObjectVersions answer's delete markers all together, then its versions
/// all together; S3 writes them as one list in key order, newest first within a key. Parsers
/// that keep the document's order (minio-go, so `mc ls --versions`) saw a page out of
/// order. The entries are put back in `order` where the first of them was. Keys are escaped
/// in the XML, so `<Version>` and `<DeleteMarker>` appear only as elements.
pub(super) fn interleave_versions(res: &mut s3s::HttpResponse, order: &[bool]) {
    if !order.windows(2).any(|w| w[0] != w[1]) {
        return;
    }
    let Some(text) = res
        .body()
        .bytes()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
    else {
        return;
    };
    // Each entry's span and kind, in document order (one pass per kind).
    let find = |open: &str, close: &str, marker: bool| {
        let mut found = Vec::new();
        let mut at = 0;
        while let Some(start) = text[at..].find(open).map(|i| at + i) {
            let Some(end) = text[start..].find(close).map(|i| start + i + close.len()) else {
                break;
            };
            found.push((start, end, marker));
            at = end;
        }
        found
    };
    let mut spans = find("<Version>", "</Version>", false);
    spans.extend(find("<DeleteMarker>", "</DeleteMarker>", true));
    spans.sort_unstable();
    if spans.len() != order.len()
        || spans.iter().filter(|s| s.2).count() != order.iter().filter(|m| **m).count()
    {
        return;
    }
    let mut markers = spans.iter().filter(|s| s.2);
    let mut versions = spans.iter().filter(|s| !s.2);
    let mut entries = String::new();
    for &marker in order {
        let span = if marker {
            markers.next()
        } else {
            versions.next()
        };
        if let Some(&(start, end, _)) = span {
            entries.push_str(&text[start..end]);
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for (i, &(start, end, _)) in spans.iter().enumerate() {
        out.push_str(&text[from..start]);
        if i == 0 {
            out.push_str(&entries);
        }
        from = end;
    }
    out.push_str(&text[from..]);
    super::error::set_body(res, out);
}

/// A carriage return in a key (S3 allows any UTF-8) was written raw into the XML of an
/// answer, and every XML parser reads a raw CR as a line feed: a listing without
/// `encoding-type=url` named a key that is not there (`s3cmd sync` then failed with
/// NoSuchKey). S3 writes it as `&#13;`, which parsers keep. s3s's writer escapes only
/// markup, and writes no CR of its own, so any CR in a buffered XML answer is in a value.
pub(super) fn escape_carriage_returns(res: &mut s3s::HttpResponse) {
    let xml = res
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/xml"));
    if !xml {
        return;
    }
    let Some(body) = res.body().bytes() else {
        return;
    };
    if !body.contains(&b'\r') {
        return;
    }
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return;
    };
    super::error::set_body(res, text.replace('\r', "&#13;"));
}
