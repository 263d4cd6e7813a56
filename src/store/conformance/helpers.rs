//! Helpers the checks share: names, bodies, reads, assertions with messages that name the store.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;

use super::Gaps;
use crate::store::digest::{BodyHasher, ChecksumHasher};
use crate::store::*;

pub(super) fn bucket(prefix: &str, what: &str) -> BucketName {
    let name = format!("{prefix}-{what}");
    BucketName::parse(&name).unwrap_or_else(|e| panic!("conformance bucket name {name}: {e}"))
}

pub(super) fn k(key: &str) -> ObjectKey {
    ObjectKey::parse(key).unwrap_or_else(|e| panic!("conformance key {key:?}: {e}"))
}

/// Deterministic bytes that differ with `seed` and are not periodic at part boundaries.
pub(super) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A body in chunks of 64 KiB (so large bodies arrive as many chunks).
pub(super) fn body(data: &[u8]) -> ByteStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

pub(super) fn sized(len: usize) -> PutOptions {
    PutOptions {
        size_hint: Some(len as u64),
        ..Default::default()
    }
}

pub(super) fn by_version(vid: &str) -> GetOptions {
    GetOptions {
        version_id: Some(vid.to_owned()),
        ..Default::default()
    }
}

pub(super) fn ranged(r: ByteRange) -> GetOptions {
    GetOptions {
        range: Some(r),
        ..Default::default()
    }
}

pub(super) fn md5_hex(data: &[u8]) -> String {
    let mut h = BodyHasher::new(None);
    h.update(data);
    hex::encode(h.finalize().md5)
}

pub(super) fn checksum_of(algorithm: ChecksumAlgorithm, data: &[u8]) -> Checksum {
    let mut h = ChecksumHasher::new(algorithm);
    h.update(data);
    h.finalize()
}

pub(super) fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub(super) fn skip(s: &dyn Store, what: &str, why: &str) {
    eprintln!("{}: conformance: skipping {what}: {why}", s.name());
}

/// The value of an `Ok`, or a panic naming the store and the operation.
#[track_caller]
pub(super) fn ok<T>(s: &dyn Store, what: &str, r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{}: {what} failed: {e} ({e:?})", s.name()))
}

pub(super) async fn read_all(s: &dyn Store, what: &str, mut body: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = body.next().await {
        match c {
            Ok(c) => out.extend_from_slice(&c),
            Err(e) => panic!("{}: {what}: reading the body failed: {e}", s.name()),
        }
    }
    out
}

pub(super) async fn put(s: &dyn Store, bk: &BucketName, key: &str, data: &[u8]) -> ObjectMeta {
    put_with(s, bk, key, data, sized(data.len())).await
}

pub(super) async fn put_with(
    s: &dyn Store,
    bk: &BucketName,
    key: &str,
    data: &[u8],
    opts: PutOptions,
) -> ObjectMeta {
    let meta = ok(
        s,
        &format!("put {bk}/{key}"),
        s.put_object(bk, &k(key), body(data), opts).await,
    );
    assert_eq!(meta.key.as_str(), key, "{}: put {key}: key", s.name());
    assert_eq!(
        meta.size,
        data.len() as u64,
        "{}: put {key}: size",
        s.name()
    );
    assert_eq!(
        meta.etag,
        md5_hex(data),
        "{}: put {key}: the ETag of a single PUT is the hex MD5 of the body",
        s.name()
    );
    assert!(
        meta.is_latest && !meta.delete_marker,
        "{}: put {key}: the new version is the latest and not a delete marker: {meta:?}",
        s.name()
    );
    meta
}

/// GETs a whole object; returns its metadata and body.
pub(super) async fn get(s: &dyn Store, bk: &BucketName, key: &str) -> (ObjectMeta, Vec<u8>) {
    get_with(s, bk, key, GetOptions::default()).await
}

pub(super) async fn get_with(
    s: &dyn Store,
    bk: &BucketName,
    key: &str,
    opts: GetOptions,
) -> (ObjectMeta, Vec<u8>) {
    let what = format!("get {bk}/{key} {opts:?}");
    let r = ok(s, &what, s.get_object(bk, &k(key), opts).await);
    let data = read_all(s, &what, r.body).await;
    (r.meta, data)
}

/// Asserts a key's current content (GET body, GET and HEAD ETag and size).
pub(super) async fn assert_content(
    s: &dyn Store,
    bk: &BucketName,
    key: &str,
    want: &[u8],
    why: &str,
) {
    let (meta, data) = get(s, bk, key).await;
    assert!(
        data == want,
        "{}: {why}: GET {key} returned {} bytes (MD5 {}), expected {} bytes (MD5 {})",
        s.name(),
        data.len(),
        md5_hex(&data),
        want.len(),
        md5_hex(want)
    );
    assert_eq!(
        (meta.size, meta.etag.as_str()),
        (want.len() as u64, md5_hex(want).as_str()),
        "{}: {why}: GET {key} metadata (size, ETag)",
        s.name()
    );
    let head = ok(
        s,
        &format!("head {key}"),
        s.head_object(bk, &k(key), None).await,
    );
    assert_eq!(
        (head.size, head.etag.as_str()),
        (want.len() as u64, md5_hex(want).as_str()),
        "{}: {why}: HEAD {key} (size, ETag)",
        s.name()
    );
}

pub(super) async fn assert_missing(s: &dyn Store, bk: &BucketName, key: &str, why: &str) {
    expect_err!(
        s,
        format!("{why}: GET {bk}/{key}"),
        s.get_object(bk, &k(key), GetOptions::default()).await,
        Error::NoSuchKey { .. }
    );
    expect_err!(
        s,
        format!("{why}: HEAD {bk}/{key}"),
        s.head_object(bk, &k(key), None).await,
        Error::NoSuchKey { .. }
    );
}

/// Asserts a time is a plausible "now" (after 2020, at most a day ahead): not the epoch a
/// missing value turns into.
#[track_caller]
pub(super) fn assert_recent(s: &dyn Store, what: &str, t: time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    let floor = time::macros::datetime!(2020-01-01 0:00 UTC);
    assert!(
        t > floor && t < now + time::Duration::days(1),
        "{}: {what}: {t} is not a plausible time",
        s.name()
    );
}

/// Every entry (keys and common prefixes) of a listing, following `next_marker` page by page.
pub(super) async fn list_all(s: &dyn Store, bk: &BucketName, q: &ListQuery) -> Vec<String> {
    let mut entries = Vec::new();
    let mut q = q.clone();
    let mut pages = 0;
    loop {
        let page = ok(s, &format!("list {bk} {q:?}"), s.list_objects(bk, &q).await);
        pages += 1;
        assert!(
            page.objects.len() + page.common_prefixes.len() <= q.max_keys,
            "{}: list {q:?}: a page holds at most max_keys entries, got {} objects and {} prefixes",
            s.name(),
            page.objects.len(),
            page.common_prefixes.len()
        );
        // A page's objects and prefixes are each in order; merged, they are the entries.
        let keys: Vec<String> = page.objects.iter().map(|o| o.key.to_string()).collect();
        for (what, names) in [
            ("objects", &keys),
            ("common prefixes", &page.common_prefixes),
        ] {
            assert!(
                names.windows(2).all(|w| w[0].as_bytes() < w[1].as_bytes()),
                "{}: list {q:?}: the page's {what} are not in UTF-8 byte order: {names:?}",
                s.name()
            );
        }
        let mut names: Vec<String> = keys.into_iter().chain(page.common_prefixes).collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        entries.extend(names);
        match page.next_marker {
            Some(m) => {
                // It advances, or is the common prefix a StartAfter lay inside (listed now;
                // as a marker it skips everything under it).
                assert!(
                    q.start_after.as_ref().is_none_or(
                        |prev| m > *prev || prev.len() > m.len() && prev.starts_with(&m)
                    ),
                    "{}: list {q:?}: next_marker {m:?} does not advance",
                    s.name()
                );
                q.start_after = Some(m);
            }
            None => break,
        }
        assert!(pages < 1000, "{}: list {q:?}: no end in sight", s.name());
    }
    entries
}

pub(super) fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    v.dedup();
    v
}

pub(super) fn assert_once_in_order(s: &dyn Store, what: &str, got: &[String], want: &[String]) {
    let mut seen = HashSet::new();
    let repeated: Vec<&String> = got.iter().filter(|e| !seen.insert(*e)).collect();
    assert!(
        repeated.is_empty(),
        "{}: {what}: entries listed more than once: {repeated:?}",
        s.name()
    );
    let missing: Vec<&String> = want.iter().filter(|e| !got.contains(e)).collect();
    let extra: Vec<&String> = got.iter().filter(|e| !want.contains(e)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{}: {what}: missing {missing:?}, unexpected {extra:?}",
        s.name()
    );
    assert_eq!(got, want, "{}: {what}: not in UTF-8 byte order", s.name());
}

/// A verifier that records the digests it was shown, and refuses them when `reject`.
pub(super) fn recording_verifier(seen: &Arc<Mutex<Option<Digests>>>, reject: bool) -> Verifier {
    let seen = Arc::clone(seen);
    Box::new(move |d: &Digests| {
        *seen.lock().unwrap() = Some(d.clone());
        if reject {
            Err(Error::BadDigest {
                what: "conformance verifier".into(),
            })
        } else {
            Ok(())
        }
    })
}

/// `(key, version id, delete marker, latest)` of every version under `prefix`, paged by
/// `max_keys`.
pub(super) async fn all_versions(
    s: &dyn Store,
    bk: &BucketName,
    prefix: &str,
    max_keys: usize,
) -> Vec<(String, String, bool, bool)> {
    let mut q = VersionsQuery {
        prefix: prefix.to_owned(),
        max_keys,
        ..Default::default()
    };
    let mut out = Vec::new();
    for _ in 0..1000 {
        let page = ok(
            s,
            &format!("list_versions {q:?}"),
            s.list_versions(bk, &q).await,
        );
        assert!(
            page.versions.len() <= max_keys,
            "{}: list_versions: a page holds at most max_keys versions",
            s.name()
        );
        out.extend(page.versions.iter().map(|v| {
            (
                v.key.to_string(),
                v.version_id.clone(),
                v.delete_marker,
                v.is_latest,
            )
        }));
        match page.next_key_marker {
            Some(km) => {
                let next = (Some(km), page.next_version_id_marker);
                assert!(
                    next != (q.key_marker.clone(), q.version_id_marker.clone()),
                    "{}: list_versions markers do not advance: {next:?}",
                    s.name()
                );
                (q.key_marker, q.version_id_marker) = next;
            }
            None => return out,
        }
    }
    panic!("{}: list_versions: no end in sight", s.name());
}

pub(super) async fn assert_versioning(
    s: &dyn Store,
    bk: &BucketName,
    want: Versioning,
    gaps: Gaps,
    when: &str,
) {
    match gaps.get_versioning {
        Some(why) => skip(s, &format!("get_versioning {when}"), why),
        None => assert_eq!(
            ok(s, "get_versioning", s.get_versioning(bk).await),
            want,
            "{}: get_versioning {when}",
            s.name()
        ),
    }
}

pub(super) async fn assert_content_version(
    s: &dyn Store,
    bk: &BucketName,
    key: &str,
    vid: &str,
    want: &[u8],
) {
    let (meta, data) = get_with(s, bk, key, by_version(vid)).await;
    assert!(
        data == want,
        "{}: GET {key} version {vid}: got {:?}, expected {:?}",
        s.name(),
        String::from_utf8_lossy(&data),
        String::from_utf8_lossy(want)
    );
    assert_eq!(
        meta.version_id,
        vid,
        "{}: GET {key} version {vid}",
        s.name()
    );
}
