//! The conformance suite every store passes: plain async functions over `&dyn Store`, called by
//! each backend's test (`tests/it/store.rs`). Differences between stores are [`Caps`], never
//! forked tests. A contract violation panics with a message naming the operation.
//!
//! Compiled into the library (not only tests) so every store kind, present or future, can run
//! the same suite.

#![allow(clippy::unwrap_used, clippy::panic)]

use bytes::Bytes;
use futures::StreamExt;

use super::digest::BodyHasher;
use super::*;

fn b(name: &str) -> BucketName {
    BucketName::parse(name).unwrap_or_else(|e| panic!("test bucket name {name}: {e}"))
}

fn k(key: &str) -> ObjectKey {
    ObjectKey::parse(key).unwrap_or_else(|e| panic!("test key {key}: {e}"))
}

fn body(data: &[u8]) -> ByteStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

fn opts(len: usize) -> PutOptions {
    PutOptions {
        size_hint: Some(len as u64),
        ..Default::default()
    }
}

async fn read_all(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.expect("body stream"));
    }
    out
}

async fn put(s: &dyn Store, bucket: &BucketName, key: &str, data: &[u8]) -> ObjectMeta {
    s.put_object(bucket, &k(key), body(data), opts(data.len()))
        .await
        .unwrap_or_else(|e| panic!("{}: put {key}: {e}", s.name()))
}

async fn get(s: &dyn Store, bucket: &BucketName, key: &str) -> Vec<u8> {
    let r = s
        .get_object(bucket, &k(key), GetOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: get {key}: {e}", s.name()));
    read_all(r.body).await
}

fn md5_hex(data: &[u8]) -> String {
    let mut h = BodyHasher::new(None);
    h.update(data);
    hex::encode(h.finalize().md5)
}

/// Known gaps of a third-party server behind an s3 store: each names why a check is skipped,
/// and the skip is printed, so a gap is never silent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gaps {
    /// ListParts cannot be used (e.g. the server's XML is not what the SDK parses).
    pub list_parts: Option<&'static str>,
    /// GetBucketVersioning cannot be used.
    pub get_versioning: Option<&'static str>,
}

/// Runs every check. `prefix` keeps bucket names of concurrent runs apart (3–20 characters
/// of lowercase letters and digits).
pub async fn run_all(s: &dyn Store, prefix: &str) {
    run_all_with(s, prefix, Gaps::default()).await;
}

/// [`run_all`] for a server with known gaps.
pub async fn run_all_with(s: &dyn Store, prefix: &str, gaps: Gaps) {
    buckets(s, prefix).await;
    objects(s, prefix).await;
    listing(s, prefix).await;
    multipart(s, prefix, gaps).await;
    if s.caps().versioning {
        versioning(s, prefix, gaps).await;
    }
    if s.caps().path_semantics {
        path_conflicts(s, prefix).await;
    }
}

pub async fn buckets(s: &dyn Store, prefix: &str) {
    let bk = b(&format!("{prefix}-buckets"));
    s.create_bucket(&bk).await.expect("create bucket");
    assert!(
        matches!(
            s.create_bucket(&bk).await,
            Err(Error::BucketAlreadyExists { .. })
        ),
        "{}: creating an existing bucket must fail with BucketAlreadyExists",
        s.name()
    );
    s.head_bucket(&bk).await.expect("head bucket");
    let names: Vec<String> = s
        .list_buckets()
        .await
        .expect("list")
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert!(
        names.contains(&bk.to_string()),
        "{}: list_buckets lacks {bk}: {names:?}",
        s.name()
    );
    put(s, &bk, "x", b"x").await;
    assert!(
        matches!(
            s.delete_bucket(&bk).await,
            Err(Error::BucketNotEmpty { .. })
        ),
        "{}: deleting a non-empty bucket must fail with BucketNotEmpty",
        s.name()
    );
    s.delete_object(&bk, &k("x"), None).await.expect("delete");
    s.delete_bucket(&bk).await.expect("delete empty bucket");
    let missing = b(&format!("{prefix}-missing"));
    assert!(
        matches!(
            s.head_bucket(&missing).await,
            Err(Error::NoSuchBucket { .. })
        ),
        "{}: head of a missing bucket must be NoSuchBucket",
        s.name()
    );
    assert!(
        matches!(
            s.delete_bucket(&missing).await,
            Err(Error::NoSuchBucket { .. })
        ),
        "{}: delete of a missing bucket must be NoSuchBucket",
        s.name()
    );
}

pub async fn objects(s: &dyn Store, prefix: &str) {
    let bk = b(&format!("{prefix}-objects"));
    s.create_bucket(&bk).await.expect("create bucket");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut o = opts(data.len());
    o.attrs.content_type = Some("application/x-test".into());
    o.attrs.user_metadata.insert("owner".into(), "alice".into());
    o.tags = vec![("team".into(), "storage".into())];
    o.checksum_algorithm = Some(ChecksumAlgorithm::Sha256);
    let meta = s
        .put_object(&bk, &k("dir/obj.bin"), body(&data), o)
        .await
        .expect("put");
    assert_eq!(
        meta.etag,
        md5_hex(&data),
        "{}: ETag of a single PUT is the MD5",
        s.name()
    );
    assert_eq!(meta.size, data.len() as u64);
    let head = s
        .head_object(&bk, &k("dir/obj.bin"), None)
        .await
        .expect("head");
    assert_eq!(
        head.attrs.content_type.as_deref(),
        Some("application/x-test"),
        "{}: content type",
        s.name()
    );
    assert_eq!(
        head.attrs.user_metadata.get("owner").map(String::as_str),
        Some("alice"),
        "{}: metadata",
        s.name()
    );
    assert_eq!(
        get(s, &bk, "dir/obj.bin").await,
        data,
        "{}: round trip",
        s.name()
    );
    if s.caps().tagging {
        let (_, tags) = s
            .get_object_tags(&bk, &k("dir/obj.bin"), None)
            .await
            .expect("tags");
        assert_eq!(
            tags,
            vec![("team".to_owned(), "storage".to_owned())],
            "{}: tags",
            s.name()
        );
    }
    let mut sha = super::digest::ChecksumHasher::new(ChecksumAlgorithm::Sha256);
    sha.update(&data);
    let want = sha.finalize().value;
    let got = s
        .head_object(&bk, &k("dir/obj.bin"), None)
        .await
        .expect("head")
        .checksum
        .map(|c| c.value);
    if let Some(got) = got {
        assert_eq!(got, want, "{}: stored SHA256 checksum", s.name());
    }
    // Ranges.
    for (range, want) in [
        (ByteRange::FromTo(10, 19), &data[10..20]),
        (ByteRange::From(299_990), &data[299_990..]),
        (ByteRange::Suffix(5), &data[data.len() - 5..]),
        (ByteRange::FromTo(299_995, 400_000), &data[299_995..]),
    ] {
        let r = s
            .get_object(
                &bk,
                &k("dir/obj.bin"),
                GetOptions {
                    range: Some(range),
                    ..Default::default()
                },
            )
            .await
            .expect("range get");
        assert_eq!(
            read_all(r.body).await,
            want,
            "{}: range {range:?}",
            s.name()
        );
    }
    assert!(
        matches!(
            s.get_object(
                &bk,
                &k("dir/obj.bin"),
                GetOptions {
                    range: Some(ByteRange::From(300_000)),
                    ..Default::default()
                }
            )
            .await,
            Err(Error::InvalidRange { .. })
        ),
        "{}: a range past the end must be InvalidRange",
        s.name()
    );
    // Missing things.
    assert!(
        matches!(
            s.get_object(&bk, &k("nope"), GetOptions::default()).await,
            Err(Error::NoSuchKey { .. })
        ),
        "{}: missing key",
        s.name()
    );
    let missing = b(&format!("{prefix}-nobucket"));
    assert!(
        matches!(
            s.head_object(&missing, &k("x"), None).await,
            Err(Error::NoSuchBucket { .. } | Error::NoSuchKey { .. })
        ),
        "{}: missing bucket",
        s.name()
    );
    s.delete_object(&bk, &k("never-existed"), None)
        .await
        .expect("deleting a missing key succeeds");
    // Overwrite; a rejected body leaves the previous version in place.
    put(s, &bk, "over", b"first").await;
    put(s, &bk, "over", b"second").await;
    assert_eq!(get(s, &bk, "over").await, b"second");
    let mut rejected = opts(5);
    rejected.verify = Some(Box::new(|_: &Digests| {
        Err(Error::BadDigest {
            what: "test".into(),
        })
    }));
    assert!(
        matches!(
            s.put_object(&bk, &k("over"), body(b"third"), rejected)
                .await,
            Err(Error::BadDigest { .. })
        ),
        "{}: a verifier error must abort the PUT",
        s.name()
    );
    assert_eq!(
        get(s, &bk, "over").await,
        b"second",
        "{}: a rejected PUT must not be visible",
        s.name()
    );
    let short = s.put_object(&bk, &k("over"), body(b"abc"), opts(10)).await;
    assert!(
        short.is_err(),
        "{}: a body shorter than declared must be refused",
        s.name()
    );
    assert_eq!(
        get(s, &bk, "over").await,
        b"second",
        "{}: a short PUT must not be visible",
        s.name()
    );
    // Copy: metadata copied, or replaced.
    let c = s
        .copy_object(
            &bk,
            &k("dir/obj.bin"),
            &bk,
            &k("copy1"),
            CopyOptions::default(),
        )
        .await
        .expect("copy");
    assert_eq!(c.etag, meta.etag);
    let h = s
        .head_object(&bk, &k("copy1"), None)
        .await
        .expect("head copy");
    assert_eq!(
        h.attrs.user_metadata.get("owner").map(String::as_str),
        Some("alice"),
        "{}: copied metadata",
        s.name()
    );
    let mut attrs = ObjectAttrs::default();
    attrs.user_metadata.insert("new".into(), "yes".into());
    s.copy_object(
        &bk,
        &k("dir/obj.bin"),
        &bk,
        &k("copy2"),
        CopyOptions {
            attrs: Some(attrs),
            ..Default::default()
        },
    )
    .await
    .expect("copy replace");
    let h = s
        .head_object(&bk, &k("copy2"), None)
        .await
        .expect("head copy");
    assert!(
        !h.attrs.user_metadata.contains_key("owner"),
        "{}: replaced metadata",
        s.name()
    );
    assert_eq!(get(s, &bk, "copy2").await, data);
}

pub async fn listing(s: &dyn Store, prefix: &str) {
    let bk = b(&format!("{prefix}-listing"));
    s.create_bucket(&bk).await.expect("create bucket");
    let mut keys: Vec<String> = Vec::new();
    for d in ["a", "b b", "é"] {
        for i in 0..8 {
            keys.push(format!("{d}/{i:02} ü.txt"));
        }
    }
    keys.push("top".into());
    for key in &keys {
        put(s, &bk, key, key.as_bytes()).await;
    }
    keys.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    // Paging collects every key once, in byte order.
    let mut got = Vec::new();
    let mut after = None;
    loop {
        let q = ListQuery {
            start_after: after.clone(),
            max_keys: 4,
            ..Default::default()
        };
        let page = s.list_objects(&bk, &q).await.expect("list");
        got.extend(page.objects.iter().map(|o| o.key.to_string()));
        match page.next_marker {
            Some(m) => after = Some(m),
            None => break,
        }
    }
    assert_eq!(got, keys, "{}: paged listing", s.name());
    // Delimiter and prefix.
    let q = ListQuery {
        delimiter: Some("/".into()),
        max_keys: 1000,
        ..Default::default()
    };
    let page = s.list_objects(&bk, &q).await.expect("list");
    assert_eq!(
        page.common_prefixes,
        vec!["a/", "b b/", "é/"],
        "{}: common prefixes",
        s.name()
    );
    assert_eq!(
        page.objects
            .iter()
            .map(|o| o.key.to_string())
            .collect::<Vec<_>>(),
        vec!["top"]
    );
    let q = ListQuery {
        prefix: "b b/".into(),
        max_keys: 1000,
        ..Default::default()
    };
    assert_eq!(
        s.list_objects(&bk, &q).await.expect("list").objects.len(),
        8,
        "{}: prefix",
        s.name()
    );
    // Delimiter paging with one entry per page walks past each common prefix once.
    let mut entries = Vec::new();
    let mut after = None;
    loop {
        let q = ListQuery {
            delimiter: Some("/".into()),
            start_after: after.clone(),
            max_keys: 1,
            ..Default::default()
        };
        let page = s.list_objects(&bk, &q).await.expect("list");
        entries.extend(page.common_prefixes.clone());
        entries.extend(page.objects.iter().map(|o| o.key.to_string()));
        match page.next_marker {
            Some(m) => after = Some(m),
            None => break,
        }
    }
    assert_eq!(
        entries,
        vec!["a/", "b b/", "top", "é/"],
        "{}: delimiter paging",
        s.name()
    );
    let q = ListQuery {
        start_after: Some("b b/03 ü.txt".into()),
        prefix: "b b/".into(),
        max_keys: 2,
        ..Default::default()
    };
    let page = s.list_objects(&bk, &q).await.expect("list");
    assert_eq!(
        page.objects
            .iter()
            .map(|o| o.key.to_string())
            .collect::<Vec<_>>(),
        vec!["b b/04 ü.txt", "b b/05 ü.txt"],
        "{}: start_after",
        s.name()
    );
}

pub async fn multipart(s: &dyn Store, prefix: &str, gaps: Gaps) {
    let bk = b(&format!("{prefix}-multipart"));
    s.create_bucket(&bk).await.expect("create bucket");
    let key = k("mp/object");
    let part = |n: u8, len: usize| vec![n; len];
    let (p1, p2, p3) = (part(1, 5 << 20), part(2, 5 << 20), part(3, 1000));
    let id = s
        .create_multipart(&bk, &key, PutOptions::default())
        .await
        .expect("create upload");
    let uploads = s
        .list_uploads(
            &bk,
            &UploadsQuery {
                max_uploads: 100,
                ..Default::default()
            },
        )
        .await
        .expect("list uploads");
    assert!(
        uploads.uploads.iter().any(|u| u.upload_id == id),
        "{}: list_uploads",
        s.name()
    );
    let mut done = Vec::new();
    for (n, data) in [(1u32, &p1), (2, &p2), (3, &p3)] {
        let info = s
            .upload_part(&bk, &key, &id, n, body(data), opts(data.len()))
            .await
            .expect("upload part");
        assert_eq!(info.etag, md5_hex(data), "{}: part ETag", s.name());
        done.push(CompletedPart {
            part_number: n,
            etag: info.etag,
        });
    }
    if let Some(why) = gaps.list_parts {
        eprintln!("{}: skipping the list_parts checks: {why}", s.name());
    } else {
        let parts = s
            .list_parts(&bk, &key, &id, None, 2)
            .await
            .expect("list parts");
        assert_eq!(parts.parts.len(), 2, "{}: list_parts max", s.name());
        assert_eq!(
            parts.next_part_number_marker,
            Some(2),
            "{}: list_parts marker",
            s.name()
        );
    }
    let bad = vec![CompletedPart {
        part_number: 1,
        etag: "0".repeat(32),
    }];
    assert!(
        matches!(
            s.complete_multipart(&bk, &key, &id, &bad).await,
            Err(Error::InvalidPart { .. })
        ),
        "{}: a wrong part ETag must be InvalidPart",
        s.name()
    );
    let meta = s
        .complete_multipart(&bk, &key, &id, &done)
        .await
        .expect("complete");
    assert!(
        meta.etag.ends_with("-3"),
        "{}: multipart ETag {}",
        s.name(),
        meta.etag
    );
    let all = get(s, &bk, "mp/object").await;
    assert_eq!(all.len(), p1.len() + p2.len() + p3.len());
    assert!(
        all[..p1.len()] == p1[..]
            && all[p1.len()..p1.len() + p2.len()] == p2[..]
            && all[p1.len() + p2.len()..] == p3[..]
    );
    // Small non-last parts are refused; aborted uploads are gone.
    let id2 = s
        .create_multipart(&bk, &key, PutOptions::default())
        .await
        .expect("create upload");
    let a = s
        .upload_part(&bk, &key, &id2, 1, body(b"tiny"), opts(4))
        .await
        .expect("part");
    let c = s
        .upload_part(&bk, &key, &id2, 2, body(b"tiny"), opts(4))
        .await
        .expect("part");
    let parts = vec![
        CompletedPart {
            part_number: 1,
            etag: a.etag,
        },
        CompletedPart {
            part_number: 2,
            etag: c.etag,
        },
    ];
    assert!(
        matches!(
            s.complete_multipart(&bk, &key, &id2, &parts).await,
            Err(Error::EntityTooSmall { .. })
        ),
        "{}: a non-last part under 5 MiB must be EntityTooSmall",
        s.name()
    );
    s.abort_multipart(&bk, &key, &id2).await.expect("abort");
    if gaps.list_parts.is_none() {
        assert!(
            matches!(
                s.list_parts(&bk, &key, &id2, None, 10).await,
                Err(Error::NoSuchUpload { .. })
            ),
            "{}: an aborted upload must be NoSuchUpload",
            s.name()
        );
    }
    let upload_ids: Vec<String> = s
        .list_uploads(
            &bk,
            &UploadsQuery {
                max_uploads: 100,
                ..Default::default()
            },
        )
        .await
        .expect("list uploads")
        .uploads
        .into_iter()
        .map(|u| u.upload_id)
        .collect();
    assert!(
        !upload_ids.contains(&id2),
        "{}: an aborted upload is not listed",
        s.name()
    );
    assert_eq!(
        get(s, &bk, "mp/object").await.len(),
        all.len(),
        "{}: the completed object is untouched",
        s.name()
    );
}

pub async fn versioning(s: &dyn Store, prefix: &str, gaps: Gaps) {
    let bk = b(&format!("{prefix}-versions"));
    s.create_bucket(&bk).await.expect("create bucket");
    put(s, &bk, "v", b"null version").await;
    s.set_versioning(&bk, Versioning::Enabled)
        .await
        .expect("enable");
    match gaps.get_versioning {
        Some(why) => eprintln!("{}: skipping the get_versioning check: {why}", s.name()),
        None => assert_eq!(
            s.get_versioning(&bk).await.expect("get"),
            Versioning::Enabled
        ),
    }
    let m1 = put(s, &bk, "v", b"one").await;
    let m2 = put(s, &bk, "v", b"two").await;
    assert_ne!(m1.version_id, m2.version_id);
    assert_ne!(m1.version_id, NULL_VERSION);
    let by_id = |vid: &str| GetOptions {
        version_id: Some(vid.to_owned()),
        ..Default::default()
    };
    let r = s
        .get_object(&bk, &k("v"), by_id(&m1.version_id))
        .await
        .expect("get by version");
    assert_eq!(read_all(r.body).await, b"one");
    let r = s
        .get_object(&bk, &k("v"), by_id(NULL_VERSION))
        .await
        .expect("get null version");
    assert_eq!(read_all(r.body).await, b"null version");
    let d = s.delete_object(&bk, &k("v"), None).await.expect("delete");
    assert!(
        d.delete_marker,
        "{}: a DELETE with versioning makes a delete marker",
        s.name()
    );
    match s.get_object(&bk, &k("v"), GetOptions::default()).await {
        Err(Error::NoSuchKey {
            delete_marker: Some(_),
            ..
        }) => {}
        Err(Error::NoSuchKey { .. }) if !s.caps().path_semantics => {} // remote stores may not say
        other => panic!(
            "{}: GET behind a delete marker: {:?}",
            s.name(),
            other.err()
        ),
    }
    let marker = d.version_id.expect("marker id");
    s.delete_object(&bk, &k("v"), Some(&marker))
        .await
        .expect("delete marker");
    assert_eq!(
        get(s, &bk, "v").await,
        b"two",
        "{}: removing the marker restores the previous version",
        s.name()
    );
    s.delete_object(&bk, &k("v"), Some(&m2.version_id))
        .await
        .expect("delete version");
    assert_eq!(
        get(s, &bk, "v").await,
        b"one",
        "{}: deleting the latest version restores the previous",
        s.name()
    );
    for i in 0..3 {
        put(s, &bk, &format!("w{i}"), b"a").await;
        put(s, &bk, &format!("w{i}"), b"b").await;
    }
    let mut seen = Vec::new();
    let mut q = VersionsQuery {
        max_keys: 2,
        ..Default::default()
    };
    loop {
        let page = s.list_versions(&bk, &q).await.expect("list versions");
        seen.extend(
            page.versions
                .iter()
                .map(|v| (v.key.to_string(), v.version_id.clone())),
        );
        match page.next_key_marker {
            Some(km) => {
                q.key_marker = Some(km);
                q.version_id_marker = page.next_version_id_marker;
            }
            None => break,
        }
    }
    let unique: std::collections::HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(
        seen.len(),
        unique.len(),
        "{}: version paging repeated entries: {seen:?}",
        s.name()
    );
    assert_eq!(seen.len(), 2 + 6, "{}: version paging: {seen:?}", s.name());
    s.set_versioning(&bk, Versioning::Suspended)
        .await
        .expect("suspend");
    put(s, &bk, "v", b"s1").await;
    put(s, &bk, "v", b"s2").await;
    let page = s
        .list_versions(
            &bk,
            &VersionsQuery {
                prefix: "v".into(),
                max_keys: 100,
                ..Default::default()
            },
        )
        .await
        .expect("list versions");
    let nulls = page
        .versions
        .iter()
        .filter(|v| v.version_id == NULL_VERSION)
        .count();
    assert_eq!(
        nulls,
        1,
        "{}: suspended PUTs replace the one null version",
        s.name()
    );
}

pub async fn path_conflicts(s: &dyn Store, prefix: &str) {
    let bk = b(&format!("{prefix}-paths"));
    s.create_bucket(&bk).await.expect("create bucket");
    put(s, &bk, "f", b"1").await;
    assert!(
        matches!(
            s.put_object(&bk, &k("f/child"), body(b"2"), opts(1)).await,
            Err(Error::PathConflict { .. })
        ),
        "{}: a key below an object must be PathConflict",
        s.name()
    );
    put(s, &bk, "d/child", b"3").await;
    assert!(
        matches!(
            s.put_object(&bk, &k("d"), body(b"4"), opts(1)).await,
            Err(Error::PathConflict { .. })
        ),
        "{}: a key that is a prefix of others must be PathConflict",
        s.name()
    );
    s.delete_object(&bk, &k("d/child"), None)
        .await
        .expect("delete");
    put(s, &bk, "d", b"5").await;
    assert_eq!(
        get(s, &bk, "d").await,
        b"5",
        "{}: the emptied directory made room",
        s.name()
    );
}
