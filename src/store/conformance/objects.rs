//! Objects: put, get, head, delete, ranges, body verification and checksums.

use std::sync::{Arc, Mutex};

use super::Gaps;
use super::helpers::*;
use crate::store::*;

pub async fn objects(s: &dyn Store, prefix: &str) {
    let caps = s.caps();
    let bk = bucket(prefix, "objects");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    let key = "dir/obj.bin";
    let data = pattern(300_000, 1);
    let mut attrs = ObjectAttrs {
        content_type: Some("application/x-ferry-test".into()),
        cache_control: Some("max-age=60".into()),
        content_disposition: Some("attachment; filename=\"a b.bin\"".into()),
        website_redirect: Some("/moved/obj.bin".into()),
        ..Default::default()
    };
    attrs.user_metadata.insert("owner".into(), "alice".into());
    attrs.user_metadata.insert("project".into(), "ferry".into());
    // Non-ASCII values round-trip (S3 carries them RFC 2047-encoded in headers).
    attrs
        .user_metadata
        .insert("city".into(), "Zürich café ☕".into());
    let object_tags = tags(&[("team", "storage"), ("tier", "hot")]);
    let mut o = sized(data.len());
    o.attrs = attrs.clone();
    o.tags = object_tags.clone();
    let meta = put_with(s, &bk, key, &data, o).await;
    assert_eq!(
        meta.version_id,
        NULL_VERSION,
        "{}: a PUT into an unversioned bucket makes the null version",
        s.name()
    );

    // HEAD and GET return what was stored.
    let head = ok(s, "head", s.head_object(&bk, &k(key), None).await);
    assert_eq!(head.key.as_str(), key, "{}: head key", s.name());
    assert_eq!(
        (head.size, head.etag.as_str()),
        (data.len() as u64, meta.etag.as_str()),
        "{}: head size and ETag",
        s.name()
    );
    assert!(!head.delete_marker, "{}: head delete_marker", s.name());
    assert_recent(s, "HEAD last_modified", head.last_modified);
    assert_eq!(
        head.attrs.content_type,
        attrs.content_type,
        "{}: HEAD content type",
        s.name()
    );
    assert_eq!(
        head.attrs.cache_control,
        attrs.cache_control,
        "{}: HEAD cache control",
        s.name()
    );
    assert_eq!(
        head.attrs.content_disposition,
        attrs.content_disposition,
        "{}: HEAD content disposition",
        s.name()
    );
    assert_eq!(
        head.attrs.user_metadata,
        attrs.user_metadata,
        "{}: HEAD user metadata",
        s.name()
    );
    assert_eq!(
        head.attrs.website_redirect,
        attrs.website_redirect,
        "{}: HEAD website redirect",
        s.name()
    );
    let (got, got_data) = get(s, &bk, key).await;
    assert!(got_data == data, "{}: GET returns the body put", s.name());
    assert_eq!(
        (got.size, got.etag.as_str()),
        (data.len() as u64, meta.etag.as_str()),
        "{}: GET size and ETag",
        s.name()
    );
    assert_eq!(
        got.attrs.content_type,
        attrs.content_type,
        "{}: GET content type",
        s.name()
    );
    assert_eq!(
        got.attrs.user_metadata,
        attrs.user_metadata,
        "{}: GET user metadata",
        s.name()
    );
    assert_eq!(
        got.attrs.website_redirect,
        attrs.website_redirect,
        "{}: GET website redirect",
        s.name()
    );
    if caps.tagging {
        assert_eq!(
            got.tag_count,
            object_tags.len(),
            "{}: GET tag count",
            s.name()
        );
    }

    if caps.tagging {
        let (vid, t) = ok(
            s,
            "get_object_tags",
            s.get_object_tags(&bk, &k(key), None).await,
        );
        assert_eq!(t, object_tags, "{}: tags given with the PUT", s.name());
        assert_eq!(vid, NULL_VERSION, "{}: tags of the null version", s.name());
        let new_tags = tags(&[("tier", "cold")]);
        ok(
            s,
            "put_object_tags",
            s.put_object_tags(&bk, &k(key), None, new_tags.clone())
                .await,
        );
        let (_, t) = ok(
            s,
            "get_object_tags",
            s.get_object_tags(&bk, &k(key), None).await,
        );
        assert_eq!(
            t,
            new_tags,
            "{}: put_object_tags replaces the set",
            s.name()
        );
        assert_content(s, &bk, key, &data, "retagging keeps the body").await;
        // An empty set removes the tags (what DeleteObjectTagging does; a catch-up worker
        // sends it when a key's tags were removed).
        ok(
            s,
            "put_object_tags (empty)",
            s.put_object_tags(&bk, &k(key), None, Vec::new()).await,
        );
        let (_, t) = ok(
            s,
            "get_object_tags",
            s.get_object_tags(&bk, &k(key), None).await,
        );
        assert!(t.is_empty(), "{}: an empty set removes the tags", s.name());
        ok(
            s,
            "put_object_tags",
            s.put_object_tags(&bk, &k(key), None, new_tags.clone())
                .await,
        );
        expect_err!(
            s,
            "get_object_tags of a missing key",
            s.get_object_tags(&bk, &k("nope"), None).await,
            Error::NoSuchKey { .. }
        );
    }

    // An overwrite replaces body, attributes and tags.
    let short = b"short and new".to_vec();
    let over = put(s, &bk, key, &short).await;
    assert_eq!(over.version_id, NULL_VERSION, "{}: overwrite", s.name());
    assert_content(s, &bk, key, &short, "an overwrite replaces the body").await;
    let head = ok(s, "head", s.head_object(&bk, &k(key), None).await);
    assert!(
        head.attrs.user_metadata.is_empty(),
        "{}: an overwrite without metadata drops the old: {:?}",
        s.name(),
        head.attrs.user_metadata
    );
    assert_ne!(
        head.attrs.content_type,
        attrs.content_type,
        "{}: an overwrite without a content type drops the old one",
        s.name()
    );
    if caps.tagging {
        let (_, t) = ok(
            s,
            "get_object_tags",
            s.get_object_tags(&bk, &k(key), None).await,
        );
        assert!(
            t.is_empty(),
            "{}: an overwrite without tags drops the old: {t:?}",
            s.name()
        );
    }

    // Empty objects and keys that need escaping.
    let empty = put(s, &bk, "empty", b"").await;
    assert_eq!(empty.etag, "d41d8cd98f00b204e9800998ecf8427e");
    assert_content(s, &bk, "empty", b"", "an empty object").await;
    for odd in [
        "with space/ünï cødé ✓.txt",
        "plus+eq=amp&q?h#pct%25~*'()!$,;:@",
        "日本語/キー",
        "dir/",
    ] {
        let body_ = format!("body of {odd}");
        put(s, &bk, odd, body_.as_bytes()).await;
        assert_content(s, &bk, odd, body_.as_bytes(), "a key that needs escaping").await;
        ok(s, "delete", s.delete_object(&bk, &k(odd), None).await);
        assert_missing(s, &bk, odd, "a deleted key that needs escaping").await;
    }

    // Missing things.
    assert_missing(s, &bk, "nope", "a key never written").await;
    match s.get_object(&bk, &k("nope"), GetOptions::default()).await {
        Err(Error::NoSuchKey {
            delete_marker: None,
            ..
        }) => {}
        Err(e) => panic!(
            "{}: GET of a key never written: expected NoSuchKey without a delete marker, got {e:?}",
            s.name()
        ),
        Ok(_) => panic!("{}: GET of a key never written succeeded", s.name()),
    }
    let missing = bucket(prefix, "no-such");
    expect_err!(
        s,
        "GET in a missing bucket",
        s.get_object(&missing, &k(key), GetOptions::default()).await,
        Error::NoSuchBucket { .. }
    );
    expect_err!(
        s,
        "HEAD in a missing bucket",
        s.head_object(&missing, &k(key), None).await,
        Error::NoSuchBucket { .. }
    );
    expect_err!(
        s,
        "DELETE in a missing bucket",
        s.delete_object(&missing, &k(key), None).await,
        Error::NoSuchBucket { .. }
    );

    // Deletes: of a missing key succeeds; of an existing key removes it.
    let d = ok(
        s,
        "deleting a key that does not exist",
        s.delete_object(&bk, &k("never-existed"), None).await,
    );
    assert!(
        !d.delete_marker,
        "{}: a delete in an unversioned bucket makes no delete marker: {d:?}",
        s.name()
    );
    assert_missing(s, &bk, "never-existed", "a delete does not create the key").await;
    ok(s, "delete", s.delete_object(&bk, &k(key), None).await);
    assert_missing(s, &bk, key, "a deleted key").await;
    ok(
        s,
        "deleting a deleted key",
        s.delete_object(&bk, &k(key), None).await,
    );
}

pub async fn ranges(s: &dyn Store, prefix: &str) {
    let bk = bucket(prefix, "ranges");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    const N: usize = 300_000;
    let data = pattern(N, 2);
    let meta = put(s, &bk, "r", &data).await;
    let n = N as u64;
    for (range, first, last) in [
        (ByteRange::FromTo(0, 0), 0, 0),
        (ByteRange::FromTo(10, 19), 10, 19),
        (ByteRange::FromTo(100_000, 250_000), 100_000, 250_000),
        (ByteRange::FromTo(0, n - 1), 0, n - 1),
        (ByteRange::FromTo(n - 5, n + 100_000), n - 5, n - 1),
        (ByteRange::From(n - 10), n - 10, n - 1),
        (ByteRange::From(0), 0, n - 1),
        (ByteRange::Suffix(5), n - 5, n - 1),
        (ByteRange::Suffix(n + 1000), 0, n - 1),
    ] {
        let what = format!("GET range {range:?}");
        let r = ok(s, &what, s.get_object(&bk, &k("r"), ranged(range)).await);
        assert_eq!(
            r.range,
            Some((first, last)),
            "{}: {what}: the range served",
            s.name()
        );
        assert_eq!(
            (r.meta.size, r.meta.etag.as_str()),
            (n, meta.etag.as_str()),
            "{}: {what}: the metadata describes the whole object",
            s.name()
        );
        let got = read_all(s, &what, r.body).await;
        assert!(
            got == data[first as usize..=last as usize],
            "{}: {what}: got {} bytes, expected bytes {first}..={last}",
            s.name(),
            got.len()
        );
    }
    for range in [ByteRange::From(n), ByteRange::FromTo(n, n + 10)] {
        match s.get_object(&bk, &k("r"), ranged(range)).await {
            // The size is part of the answer: S3 sends it (`<ActualObjectSize>`), so a remote
            // store can report it too.
            Err(Error::InvalidRange { size }) if size == n => {}
            Err(e) => panic!(
                "{}: GET range {range:?} of a {n}-byte object: expected InvalidRange {{ size: {n} }}, got {e:?}",
                s.name()
            ),
            Ok(r) => panic!(
                "{}: GET range {range:?} of a {n}-byte object: expected InvalidRange, got {:?}",
                s.name(),
                r.range
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Verification before commit

pub async fn verification(s: &dyn Store, prefix: &str) {
    let bk = bucket(prefix, "verify");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    // A source MD5 may be trusted instead of hashing, but never lets a body that does not
    // match it be stored under it: refused, or stored with its own MD5.
    {
        use md5::Digest;
        let data = pattern(5000, 3);
        let real: [u8; 16] = md5::Md5::digest(&data).into();
        let right = PutOptions {
            size_hint: Some(data.len() as u64),
            source_md5: Some(real),
            ..Default::default()
        };
        let meta = put_with(s, &bk, "md5/right", &data, right).await;
        assert_eq!(
            meta.etag,
            hex::encode(real),
            "{}: ETag with a source MD5",
            s.name()
        );
        let wrong = PutOptions {
            size_hint: Some(data.len() as u64),
            source_md5: Some([9u8; 16]),
            ..Default::default()
        };
        match s.put_object(&bk, &k("md5/wrong"), body(&data), wrong).await {
            Err(Error::BadDigest { .. }) => {
                assert_missing(s, &bk, "md5/wrong", "a body refused for its source MD5").await;
            }
            Ok(meta) => assert_eq!(
                meta.etag,
                hex::encode(real),
                "{}: a wrong source MD5 must not be believed",
                s.name()
            ),
            Err(e) => panic!("{}: put with a wrong source MD5: {e}", s.name()),
        }
    }
    // Three shapes of body: small with a declared size, large (over a MiB: streamed by remote
    // stores) with a declared size, and of unknown size.
    let shapes: [(&str, usize, bool); 3] = [
        ("small", 1000, true),
        ("large", (2 << 20) + 12_345, true),
        ("unsized", 70_000, false),
    ];
    for (i, (shape, len, declared)) in shapes.into_iter().enumerate() {
        let data = pattern(len, 10 + i as u64);
        let opts_for =
            |verify: Option<Verifier>, algorithm: Option<ChecksumAlgorithm>| PutOptions {
                size_hint: declared.then_some(len as u64),
                checksum_algorithm: algorithm,
                verify,
                ..Default::default()
            };

        // The verifier sees the digests of exactly the body received.
        let seen = Arc::new(Mutex::new(None));
        let key = format!("{shape}/accepted");
        put_with(
            s,
            &bk,
            &key,
            &data,
            opts_for(
                Some(recording_verifier(&seen, false)),
                Some(ChecksumAlgorithm::Sha256),
            ),
        )
        .await;
        let d =
            seen.lock().unwrap().take().unwrap_or_else(|| {
                panic!("{}: {shape} PUT: the verifier was never called", s.name())
            });
        assert_eq!(d.size, len as u64, "{}: {shape}: verifier size", s.name());
        assert_eq!(
            hex::encode(d.md5),
            md5_hex(&data),
            "{}: {shape}: verifier MD5",
            s.name()
        );
        assert_eq!(
            d.checksum,
            Some(checksum_of(ChecksumAlgorithm::Sha256, &data)),
            "{}: {shape}: verifier checksum",
            s.name()
        );
        assert_content(s, &bk, &key, &data, "a verified PUT").await;

        // A rejected body leaves the previous version in place, and a new key absent.
        let key = format!("{shape}/rejected");
        let previous = format!("previous version of {key}").into_bytes();
        put(s, &bk, &key, &previous).await;
        let seen = Arc::new(Mutex::new(None));
        match s
            .put_object(
                &bk,
                &k(&key),
                body(&data),
                opts_for(Some(recording_verifier(&seen, true)), None),
            )
            .await
        {
            Err(Error::BadDigest { what }) if what == "conformance verifier" => {}
            Err(e) => panic!(
                "{}: {shape} PUT refused by its verifier: expected the verifier's error, got {e:?}",
                s.name()
            ),
            Ok(m) => panic!(
                "{}: {shape} PUT refused by its verifier succeeded: {m:?}",
                s.name()
            ),
        }
        assert!(
            seen.lock().unwrap().is_some(),
            "{}: {shape}: the verifier was never called",
            s.name()
        );
        assert_content(
            s,
            &bk,
            &key,
            &previous,
            &format!("a {shape} PUT refused by its verifier keeps the previous version"),
        )
        .await;
        let fresh = format!("{shape}/never");
        let r = s
            .put_object(
                &bk,
                &k(&fresh),
                body(&data),
                opts_for(Some(recording_verifier(&seen, true)), None),
            )
            .await;
        assert!(r.is_err(), "{}: {shape}: a refused PUT succeeded", s.name());
        assert_missing(
            s,
            &bk,
            &fresh,
            &format!("a {shape} PUT refused by its verifier"),
        )
        .await;

        // A body of another length than declared is refused, and nothing changes.
        if declared {
            let mut o = sized(len);
            o.size_hint = Some(len as u64 + 10);
            expect_err!(
                s,
                format!("{shape} PUT of a body shorter than declared"),
                s.put_object(&bk, &k(&key), body(&data), o).await,
                Error::IncompleteBody { .. }
            );
            assert_content(
                s,
                &bk,
                &key,
                &previous,
                &format!("a {shape} PUT shorter than declared keeps the previous version"),
            )
            .await;
            let mut o = sized(len);
            o.size_hint = Some(len as u64 - 10);
            let r = s.put_object(&bk, &k(&key), body(&data), o).await;
            assert!(
                r.is_err(),
                "{}: {shape} PUT of a body longer than declared succeeded: {:?}",
                s.name(),
                r.ok()
            );
            assert_content(
                s,
                &bk,
                &key,
                &previous,
                &format!("a {shape} PUT longer than declared keeps the previous version"),
            )
            .await;
            let r = s
                .put_object(&bk, &k(&fresh), body(&data), {
                    let mut o = sized(len);
                    o.size_hint = Some(len as u64 + 1);
                    o
                })
                .await;
            assert!(r.is_err(), "{}: {shape}: a short PUT succeeded", s.name());
            assert_missing(s, &bk, &fresh, &format!("a short {shape} PUT")).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checksums

pub async fn checksums(s: &dyn Store, prefix: &str, gaps: Gaps) {
    let bk = bucket(prefix, "checksums");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    for algorithm in [ChecksumAlgorithm::Sha256, ChecksumAlgorithm::Crc32c] {
        for (shape, len) in [("small", 4096), ("large", (3 << 20) / 2)] {
            let data = pattern(len, 20 + len as u64);
            let key = format!("{}/{shape}", algorithm.as_str());
            let want = checksum_of(algorithm, &data);
            let mut o = sized(len);
            o.checksum_algorithm = Some(algorithm);
            let meta = put_with(s, &bk, &key, &data, o).await;
            assert_eq!(
                meta.checksum,
                Some(want.clone()),
                "{}: PUT {key}: the checksum asked for",
                s.name()
            );
            // A small body's checksum is known before it is sent, so it goes as a header
            // whatever the store's checksum mode: only a larger one's may be a gap.
            if let Some(why) = gaps.stored_checksums.filter(|_| shape != "small") {
                skip(s, &format!("the stored checksum of {key}"), why);
                continue;
            }
            let head = ok(s, "head", s.head_object(&bk, &k(&key), None).await);
            assert_eq!(
                head.checksum,
                Some(want.clone()),
                "{}: HEAD {key}: the stored checksum",
                s.name()
            );
            let (got, got_data) = get(s, &bk, &key).await;
            assert!(got_data == data, "{}: GET {key}: body", s.name());
            assert_eq!(
                got.checksum,
                Some(want),
                "{}: GET {key}: the stored checksum",
                s.name()
            );
        }
    }
}
