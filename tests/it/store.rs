//! The store conformance suite (`ferry::store::conformance`) on every store kind: the fs store,
//! the s3 store against Ferry's own endpoint (both checksum modes), and the s3 store against
//! `moto_server`; plus what only the fs store promises: it survives a reopen, and `rescan`
//! reconciles files changed behind its back.

use bytes::Bytes;
use ferry::store::conformance::{self, Gaps};
use ferry::store::fs::FsStore;
use ferry::store::s3::{ChecksumMode, S3Config, S3Store};
use ferry::store::{
    BucketName, ByteStream, ChecksumAlgorithm, CompletedPart, Error, GetOptions, ObjectKey,
    PutOptions, Store,
};
use futures::StreamExt;

use crate::support::{ACCESS_KEY, Ferry, Moto, SECRET_KEY};

fn s3_store(endpoint: &str, mode: ChecksumMode) -> S3Store {
    S3Store::new(
        "remote",
        S3Config {
            endpoint: Some(endpoint.to_owned()),
            region: "us-east-1".into(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            path_style: true,
            checksum_mode: mode,
        },
    )
    .expect("s3 store")
}

/// With [`ChecksumMode::WhenRequired`] the s3 store sends no checksum trailers (that mode
/// exists for servers that refuse them): a checksum goes only as a header, known before the
/// body is sent (a small body's), so a larger body's has no checksum on the backend.
const WHEN_REQUIRED_GAPS: Gaps = Gaps {
    stored_checksums: Some(
        "checksum mode when_required sends no trailers: a body streamed has no checksum there",
    ),
    ..FERRY_GAPS
};

/// A Ferry server's buckets are on its fs store, which keeps keys as paths.
const FERRY_GAPS: Gaps = Gaps {
    keys_beyond_paths: Some("the Ferry server behind it keeps keys as paths (its fs store)"),
    ..Gaps::NONE
};

#[tokio::test]
async fn fs_store_conforms() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open("fs", dir.path()).await.expect("open");
    conformance::run_all(store.as_ref(), "fsconf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_against_ferry_conforms() {
    let f = Ferry::start();
    conformance::run_all_with(
        &s3_store(&f.s3, ChecksumMode::WhenSupported),
        "viasupported",
        FERRY_GAPS,
    )
    .await;
    conformance::run_all_with(
        &s3_store(&f.s3, ChecksumMode::WhenRequired),
        "viarequired",
        WHEN_REQUIRED_GAPS,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_against_moto_conforms() {
    let moto = Moto::start();
    // moto 5.2 answers ListParts and GetBucketVersioning with the wrong XML root element
    // (`ListPartsResponse`, `GetBucketVersioningResponse`), which aws-sdk-s3 refuses to parse.
    // With when_supported the s3 store reads part checksums through ListParts before every
    // CompleteMultipartUpload, so moto runs with when_required (and its gap).
    let gaps = Gaps {
        list_parts: Some("moto answers ListParts with a ListPartsResponse root element"),
        part_ranges: Some("moto answers a HEAD with partNumber without a Content-Range"),
        start_after_in_prefix: Some("moto filters common prefixes by StartAfter after grouping"),
        get_versioning: Some(
            "moto answers GetBucketVersioning with a GetBucketVersioningResponse root element",
        ),
        // moto checks part sizes in the order given before the order itself, so parts out
        // of order whose first is the small last part come back as EntityTooSmall.
        invalid_part_order: Some("moto does not check the part order before the part sizes"),
        // moto looks the upload up without checking it exists (a KeyError).
        writes_to_unknown_upload: Some(
            "moto answers UploadPart and CompleteMultipartUpload of an unknown upload with 500",
        ),
        upload_listing_order: Some(
            "moto ignores max-uploads and the markers, and lists uploads in creation order",
        ),
        delete_marker_reporting: Some(
            "moto's GET behind a delete marker sends no x-amz-delete-marker header, its GET of \
             a delete marker by version id answers NoSuchVersion instead of 405, and its DELETE \
             of a delete marker by version id sends no x-amz-delete-marker header",
        ),
        suspended_versioning: Some(
            "moto treats a suspended bucket as unversioned: a PUT replaces every version of \
             the key, and a DELETE removes the key without a null delete marker",
        ),
        ..WHEN_REQUIRED_GAPS
    };
    conformance::run_all_with(
        &s3_store(&moto.endpoint, ChecksumMode::WhenRequired),
        "moto",
        gaps,
    )
    .await;
    // Single PUTs with when_supported: moto keeps a checksum only when the algorithm is
    // named beside its value, as the AWS SDKs send it (a probe found a client's CRC32 lost
    // on a namespace bucket whose primary is moto).
    conformance::checksums(
        &s3_store(&moto.endpoint, ChecksumMode::WhenSupported),
        "motosup",
        Gaps {
            stored_checksums: None,
            ..gaps
        },
    )
    .await;
}

/// A HEAD refused for its credentials has no error document: its error said the SDK's debug
/// text ("unhandled error: Error { aws_request_id: … }"), shown as is by `bucket status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_refusal_is_worded() {
    let f = Ferry::start();
    let s = S3Store::new(
        "remote",
        S3Config {
            endpoint: Some(f.s3.clone()),
            region: "us-east-1".into(),
            access_key: ACCESS_KEY.into(),
            secret_key: "not-the-secret".into(),
            path_style: true,
            checksum_mode: ChecksumMode::WhenRequired,
        },
    )
    .expect("s3 store");
    let b = BucketName::parse("anybucket").expect("name");
    let said = s
        .head_bucket(&b)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        said.contains("HTTP 403") && said.contains("access denied"),
        "{said}"
    );
    assert!(!said.contains("unhandled"), "{said}");
}

/// A when_required store sends a small body's checksum beside Content-MD5 (so the backend
/// keeps it); a backend that turns the header down gets the body again without it, and no
/// header from then on: at once when its refusal names the checksum, after a few in a row
/// when it does not. No PUT fails for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_checksum_header_is_dropped_and_nothing_fails() {
    let f = Ferry::start();
    for (flag, bucket, refusals) in [
        ("--refuse-checksums", "refusednamed", 1),
        ("--refuse-checksums-quietly", "refusedquiet", 3),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = dir.path().join("stats.json");
        let proxy = crate::support::fault_proxy(&f.s3, "0", &stats, &[flag]);
        let s = s3_store(&proxy.endpoint, ChecksumMode::WhenRequired);
        let b = BucketName::parse(bucket).expect("name");
        s.create_bucket(&b).await.expect("bucket");
        let data: &'static [u8] = b"a small body with a checksum";
        for i in 0..6 {
            let key = format!("k{i}");
            s.put_object(
                &b,
                &ObjectKey::parse(&key).expect("key"),
                one_chunk(data),
                PutOptions {
                    size_hint: Some(data.len() as u64),
                    checksum_algorithm: Some(ChecksumAlgorithm::Sha256),
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{flag}: put {key}: {e}"));
            assert_eq!(read(&s, &b, &key).await, data, "{flag}: {key}");
        }
        let said: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats")).expect("json");
        assert_eq!(said["refused"], refusals, "{flag}: {said}");
    }
}

/// A copy whose source has no MD5 goes with a checksum alone; moto takes such a header
/// without checking it, so the store sends Content-MD5 from then on, with the checksum beside
/// it, which moto keeps: on the PUT that found that out as on every later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_moto_does_not_check_is_kept_all_the_same() {
    let moto = Moto::start();
    let s = s3_store(&moto.endpoint, ChecksumMode::WhenSupported);
    let b = BucketName::parse("keptsums").expect("name");
    s.create_bucket(&b).await.expect("bucket");
    let data: &'static [u8] = b"a body whose source had no MD5";
    for key in ["first", "second"] {
        let k = ObjectKey::parse(key).expect("key");
        let put = s
            .put_object(
                &b,
                &k,
                one_chunk(data),
                PutOptions {
                    size_hint: Some(data.len() as u64),
                    checksum_algorithm: Some(ChecksumAlgorithm::Sha256),
                    checksum_suffices: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
        let head = s.head_object(&b, &k, None).await.expect("head");
        assert!(head.checksum.is_some(), "{key}: no checksum kept");
        assert_eq!(head.checksum, put.checksum, "{key}");
        assert_eq!(read(&s, &b, key).await, data, "{key}");
    }
}

/// With SDK checksums a completion names each part's checksum, asked of the backend with
/// ListParts; moto answers that in a form the SDK cannot read, and every multipart upload
/// to a `when-supported` store on moto failed at its completion. The store completes it
/// without naming them then (a backend that needs them says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_completes_where_list_parts_cannot_be_read() {
    let moto = Moto::start();
    let s = s3_store(&moto.endpoint, ChecksumMode::WhenSupported);
    let b = BucketName::parse("unreadparts").expect("name");
    s.create_bucket(&b).await.expect("bucket");
    static FIRST: [u8; 5 * 1024 * 1024] = [7u8; 5 * 1024 * 1024];
    let last: &'static [u8] = b"the last part";
    for (key, algorithm) in [("plain", None), ("crc", Some(ChecksumAlgorithm::Crc32))] {
        let k = ObjectKey::parse(key).expect("key");
        let opts = || PutOptions {
            checksum_algorithm: algorithm,
            ..Default::default()
        };
        let up = s.create_multipart(&b, &k, opts()).await.expect("create");
        let mut parts = Vec::new();
        for (n, body) in [(1u32, &FIRST[..]), (2, last)] {
            let p = s
                .upload_part(&b, &k, &up, n, one_chunk(body), opts())
                .await
                .unwrap_or_else(|e| panic!("{key} part {n}: {e}"));
            parts.push(CompletedPart {
                part_number: n,
                etag: p.etag,
                checksum: None,
                claimed: None,
            });
        }
        let done = s.complete_multipart(&b, &k, &up, &parts, None).await;
        let done = done.unwrap_or_else(|e| panic!("{key}: complete: {e}"));
        assert_eq!(done.size, (FIRST.len() + last.len()) as u64, "{key}");
        assert!(done.etag.ends_with("-2"), "{key}: {}", done.etag);
    }
}

// ---------------------------------------------------------------------------------------------
// What only the fs store promises

pub(crate) fn one_chunk(data: &'static [u8]) -> ByteStream {
    Box::pin(futures::stream::once(async move {
        Ok(Bytes::from_static(data))
    }))
}

async fn read(store: &dyn Store, b: &BucketName, key: &str) -> Vec<u8> {
    let key = ObjectKey::parse(key).expect("key");
    let r = store
        .get_object(b, &key, GetOptions::default())
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"));
    let mut out = Vec::new();
    let mut body = r.body;
    while let Some(c) = body.next().await {
        out.extend_from_slice(&c.expect("body"));
    }
    out
}

#[tokio::test]
async fn fs_store_survives_reopen_and_rescans() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BucketName::parse("reopen").expect("name");
    let objects: [(&str, &'static [u8]); 3] = [
        ("a/b.txt", b"kept"),
        ("top", b"also kept"),
        ("deep/er/x", b"and this"),
    ];
    let mut etags = Vec::new();
    {
        let store = FsStore::open("fs", dir.path()).await.expect("open");
        store.create_bucket(&b).await.expect("bucket");
        for (key, data) in objects {
            let meta = store
                .put_object(
                    &b,
                    &ObjectKey::parse(key).expect("key"),
                    one_chunk(data),
                    PutOptions {
                        size_hint: Some(data.len() as u64),
                        ..Default::default()
                    },
                )
                .await
                .expect("put");
            etags.push(meta.etag);
        }
    }
    let store = FsStore::open("fs", dir.path()).await.expect("reopen");
    for ((key, data), etag) in objects.iter().zip(&etags) {
        let meta = store
            .head_object(&b, &ObjectKey::parse(key).expect("key"), None)
            .await
            .unwrap_or_else(|e| panic!("head {key} after reopen: {e}"));
        assert_eq!(&meta.etag, etag, "{key}: ETag after reopen");
        assert_eq!(
            read(store.as_ref(), &b, key).await,
            *data,
            "{key} after reopen"
        );
    }

    // A file written behind the store's back is picked up; one deleted is forgotten.
    let added = dir.path().join("reopen/dir/file.txt");
    std::fs::create_dir_all(added.parent().expect("parent")).expect("mkdir");
    std::fs::write(&added, b"written directly").expect("write");
    std::fs::remove_file(dir.path().join("reopen/top")).expect("rm");
    let report = store.rescan().await.expect("rescan");
    assert_eq!(
        (report.added, report.removed),
        (1, 1),
        "rescan report: {report:?}"
    );
    assert_eq!(
        read(store.as_ref(), &b, "dir/file.txt").await,
        b"written directly"
    );
    let meta = store
        .head_object(&b, &ObjectKey::parse("dir/file.txt").expect("key"), None)
        .await
        .expect("head the rescanned file");
    let mut h = ferry::store::digest::BodyHasher::new(None);
    h.update(b"written directly");
    assert_eq!(
        meta.etag,
        hex::encode(h.finalize().md5),
        "ETag of a rescanned file"
    );
    match store
        .head_object(&b, &ObjectKey::parse("top").expect("key"), None)
        .await
    {
        Err(Error::NoSuchKey { .. }) => {}
        other => panic!("a file deleted behind the store's back: {other:?}"),
    }
    let listed: Vec<String> = store
        .list_objects(
            &b,
            &ferry::store::ListQuery {
                max_keys: 100,
                ..Default::default()
            },
        )
        .await
        .expect("list")
        .objects
        .into_iter()
        .map(|o| o.key.to_string())
        .collect();
    assert_eq!(listed, ["a/b.txt", "deep/er/x", "dir/file.txt"]);
    // And the rescanned index survives another reopen.
    drop(store);
    let store = FsStore::open("fs", dir.path()).await.expect("reopen");
    assert_eq!(
        read(store.as_ref(), &b, "dir/file.txt").await,
        b"written directly"
    );
}

/// Parts written at their place in the finished object keep their place across a reopen:
/// after a restart and a completion refused for a missing part, a part of another size is
/// not written over the recorded ones (the stride comes from the index), and the object is
/// the parts in order.
#[tokio::test]
async fn placed_parts_survive_a_reopen_and_a_refused_completion() {
    use ferry::store::CompletedPart;
    const MIB: usize = 1 << 20;
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BucketName::parse("placed").expect("name");
    let key = ObjectKey::parse("big").expect("key");
    let part = |n: u8, len: usize| -> Vec<u8> { (0..len).map(|i| n ^ (i % 251) as u8).collect() };
    let send = |data: Vec<u8>| -> ByteStream {
        let chunks: Vec<std::io::Result<Bytes>> = data
            .chunks(64 << 10)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(chunks))
    };
    let sized = |len: usize| PutOptions {
        size_hint: Some(len as u64),
        ..Default::default()
    };
    let mut done = Vec::new();
    let upload;
    {
        let store = FsStore::open("fs", dir.path()).await.expect("open");
        store.create_bucket(&b).await.expect("bucket");
        upload = store
            .create_multipart(&b, &key, PutOptions::default())
            .await
            .expect("create");
        for n in 1..=3u8 {
            let info = store
                .upload_part(
                    &b,
                    &key,
                    &upload,
                    u32::from(n),
                    send(part(n, 8 * MIB)),
                    sized(8 * MIB),
                )
                .await
                .expect("part");
            done.push(CompletedPart {
                part_number: u32::from(n),
                etag: info.etag,
                checksum: None,
                claimed: None,
            });
        }
    }
    let store = FsStore::open("fs", dir.path()).await.expect("reopen");
    let mut missing = done.clone();
    missing.push(CompletedPart {
        part_number: 4,
        etag: "0".repeat(32),
        checksum: None,
        claimed: None,
    });
    let refused = store
        .complete_multipart(&b, &key, &upload, &missing, None)
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidPart { .. })),
        "{refused:?}"
    );
    let info = store
        .upload_part(&b, &key, &upload, 4, send(part(4, 6 * MIB)), sized(6 * MIB))
        .await
        .expect("part 4");
    done.push(CompletedPart {
        part_number: 4,
        etag: info.etag,
        checksum: None,
        claimed: None,
    });
    store
        .complete_multipart(&b, &key, &upload, &done, None)
        .await
        .expect("complete");
    let want: Vec<u8> = [
        part(1, 8 * MIB),
        part(2, 8 * MIB),
        part(3, 8 * MIB),
        part(4, 6 * MIB),
    ]
    .concat();
    assert!(
        read(store.as_ref(), &b, "big").await == want,
        "the object is the four parts in order"
    );
}

/// Writers dropped while their change waits for the commit thread (a client that
/// disconnects mid-PUT; hyper drops the request's future): the key's lock was let go before
/// the change was in, and the next writer built on the state before it. A probe found a
/// versioned key listed several times, versions whose bytes were another's, and "UNIQUE
/// constraint failed" errors. Every version must read as its ETag says, one latest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_dropped_mid_commit_leave_the_key_consistent() {
    use md5::Digest;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open("fs", dir.path()).await.expect("open");
    for (name, versioned) in [("dropped-v", true), ("dropped-u", false)] {
        let b = BucketName::parse(name).expect("name");
        store.create_bucket(&b).await.expect("bucket");
        if versioned {
            store
                .set_versioning(&b, ferry::store::Versioning::Enabled)
                .await
                .expect("versioning");
        }
        let key = ObjectKey::parse("k").expect("key");
        for round in 0..40u64 {
            let puts = (0..6u64).map(|w| {
                let (store, b, key) = (store.clone(), b.clone(), key.clone());
                let size = if w % 2 == 0 { 10 } else { 100_000 };
                let data = Bytes::from(vec![(round * 6 + w) as u8; size]);
                // Some finish, some are dropped at every point of their way.
                let patience = std::time::Duration::from_micros((round * 7 + w * 311) % 4000);
                tokio::spawn(async move {
                    let body: ByteStream = Box::pin(futures::stream::once(async move { Ok(data) }));
                    let opts = PutOptions {
                        size_hint: Some(size as u64),
                        ..Default::default()
                    };
                    tokio::time::timeout(patience, store.put_object(&b, &key, body, opts)).await
                })
            });
            for p in futures::future::join_all(puts).await {
                if let Ok(Err(e)) = p.expect("task") {
                    panic!("{name} round {round}: a put failed: {e}");
                }
            }
        }
        // A dropped writer's change still lands if it was queued: one more write, queued
        // behind them all, is the last.
        let last = Bytes::from_static(b"the last write");
        let body: ByteStream = Box::pin(futures::stream::once(async move { Ok(last) }));
        store
            .put_object(&b, &key, body, PutOptions::default())
            .await
            .expect("the last put");
        assert_eq!(read(store.as_ref(), &b, "k").await, b"the last write");
        // Whatever landed: one latest version, and every version reads as its ETag says.
        let page = store
            .list_versions(
                &b,
                &ferry::store::VersionsQuery {
                    max_keys: 1000,
                    ..Default::default()
                },
            )
            .await
            .expect("versions");
        let latest = page.versions.iter().filter(|v| v.is_latest).count();
        assert_eq!(
            latest, 1,
            "{name}: latest versions of k: {:#?}",
            page.versions
        );
        for v in &page.versions {
            let r = store
                .get_object(
                    &b,
                    &key,
                    GetOptions {
                        version_id: Some(v.version_id.clone()),
                        range: None,
                    },
                )
                .await
                .unwrap_or_else(|e| panic!("{name}: get version {}: {e}", v.version_id));
            let mut body = r.body;
            let mut md5 = md5::Md5::new();
            let mut size = 0u64;
            while let Some(c) = body.next().await {
                let c = c.expect("body");
                size += c.len() as u64;
                md5.update(&c);
            }
            assert_eq!(
                (size, hex::encode(md5.finalize())),
                (v.size, v.etag.clone()),
                "{name}: version {} reads as another's bytes",
                v.version_id
            );
        }
        let listed = store
            .list_objects(
                &b,
                &ferry::store::ListQuery {
                    max_keys: 1000,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        assert_eq!(listed.objects.len(), 1, "{name}: {:#?}", listed.objects);
    }
}

/// Writes of `p/a` and `p/a/b` racing each other (both pass the check made as a write starts):
/// one wins, the other is refused as a key conflict, and writes of other keys in the same
/// moment are untouched. Before, both could be committed to the index and one of the moves
/// then failed: the loser was listed but unreadable, and the unrelated writes committed with
/// it were answered with an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writes_of_a_key_and_its_child_leave_one_and_list_only_what_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open("fs", dir.path()).await.expect("open");
    for round in 0..20 {
        let b = BucketName::parse(&format!("race{round}")).expect("name");
        store.create_bucket(&b).await.expect("bucket");
        // Every other round the child is two levels down (its folders are made later).
        let child = if round % 4 < 2 { "p/a/b" } else { "p/a/b/c" };
        let mut keys = vec!["p/a".to_owned(), child.to_owned()];
        keys.extend((0..10).map(|i| format!("k{i}")));
        if round % 2 == 1 {
            keys.swap(0, 1);
        }
        let puts = keys.iter().map(|key| {
            let (store, b, key) = (store.clone(), b.clone(), key.clone());
            tokio::spawn(async move {
                let data = Bytes::from(key.clone().into_bytes());
                let body: ByteStream = Box::pin(futures::stream::once(async move { Ok(data) }));
                let opts = PutOptions {
                    size_hint: Some(key.len() as u64),
                    ..Default::default()
                };
                let r = store
                    .put_object(&b, &ObjectKey::parse(&key).expect("key"), body, opts)
                    .await;
                (key, r)
            })
        });
        let mut ok = Vec::new();
        for p in futures::future::join_all(puts).await {
            let (key, r) = p.expect("task");
            match r {
                Ok(_) => ok.push(key),
                Err(Error::PathConflict { .. }) if key.starts_with("p/") => {}
                Err(e) => panic!("round {round}: put {key}: {e}"),
            }
        }
        let winners = ok.iter().filter(|k| k.starts_with("p/")).count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one of p/a, p/a/b: {ok:?}"
        );
        ok.sort();
        let page = store
            .list_objects(
                &b,
                &ferry::store::ListQuery {
                    max_keys: 1000,
                    ..Default::default()
                },
            )
            .await
            .expect("list");
        let listed: Vec<String> = page.objects.iter().map(|o| o.key.to_string()).collect();
        assert_eq!(
            listed, ok,
            "round {round}: the listing is what was acknowledged"
        );
        for key in &listed {
            assert_eq!(read(store.as_ref(), &b, key).await, key.as_bytes(), "{key}");
        }
    }
}

/// DeleteBucket racing PUTs into the bucket: either the bucket goes and no PUT was
/// acknowledged, or it stays (BucketNotEmpty) with every acknowledged object readable. Before,
/// both could succeed: the objects' rows and files outlived their bucket and came back when
/// a bucket of that name was made again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bucket_racing_puts_never_acknowledges_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open("fs", dir.path()).await.expect("open");
    for round in 0..30 {
        let b = BucketName::parse(&format!("gone{round}")).expect("name");
        store.create_bucket(&b).await.expect("bucket");
        let puts = (0..4).map(|i| {
            let (store, b) = (store.clone(), b.clone());
            tokio::spawn(async move {
                let key = format!("k{i}");
                let body: ByteStream = Box::pin(futures::stream::once(async move {
                    Ok(Bytes::from_static(b"data"))
                }));
                let opts = PutOptions {
                    size_hint: Some(4),
                    ..Default::default()
                };
                let r = store
                    .put_object(&b, &ObjectKey::parse(&key).expect("key"), body, opts)
                    .await;
                (key, r)
            })
        });
        let (store2, b2) = (store.clone(), b.clone());
        let del = tokio::spawn(async move { store2.delete_bucket(&b2).await });
        let puts = futures::future::join_all(puts).await;
        let deleted = del.await.expect("task");
        let acked: Vec<String> = puts
            .into_iter()
            .filter_map(|p| {
                let (key, r) = p.expect("task");
                r.ok().map(|_| key)
            })
            .collect();
        match deleted {
            Ok(()) => {
                assert!(
                    acked.is_empty(),
                    "round {round}: deleted, yet acknowledged {acked:?}"
                );
                store.create_bucket(&b).await.expect("make it again");
                let page = store
                    .list_objects(
                        &b,
                        &ferry::store::ListQuery {
                            max_keys: 10,
                            ..Default::default()
                        },
                    )
                    .await
                    .expect("list");
                assert!(
                    page.objects.is_empty(),
                    "round {round}: old objects came back"
                );
            }
            Err(Error::BucketNotEmpty { .. }) => {
                for key in &acked {
                    assert_eq!(read(store.as_ref(), &b, key).await, b"data", "{key}");
                }
            }
            Err(e) => panic!("round {round}: delete_bucket: {e}"),
        }
    }
}

/// CompleteMultipartUpload racing AbortMultipartUpload of the same upload: exactly one of
/// them is acknowledged (the other gets NoSuchUpload), and the object exists exactly when the
/// completion won. Before, the abort could pull the parts from under the completion (500) or
/// both were acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_racing_abort_acknowledges_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FsStore::open("fs", dir.path()).await.expect("open");
    let b = BucketName::parse("racing-mpu").expect("name");
    store.create_bucket(&b).await.expect("bucket");
    for round in 0..15 {
        let key = ObjectKey::parse(&format!("m{round}")).expect("key");
        let id = store
            .create_multipart(&b, &key, PutOptions::default())
            .await
            .expect("create");
        let part = store
            .upload_part(
                &b,
                &key,
                &id,
                1,
                one_chunk(b"the only part"),
                PutOptions {
                    size_hint: Some(13),
                    ..Default::default()
                },
            )
            .await
            .expect("part");
        let parts = vec![ferry::store::CompletedPart {
            part_number: 1,
            etag: part.etag,
            checksum: None,
            claimed: None,
        }];
        let (s1, b1, k1, id1) = (store.clone(), b.clone(), key.clone(), id.clone());
        let complete =
            tokio::spawn(async move { s1.complete_multipart(&b1, &k1, &id1, &parts, None).await });
        let (s2, b2, k2) = (store.clone(), b.clone(), key.clone());
        let abort = tokio::spawn(async move { s2.abort_multipart(&b2, &k2, &id).await });
        let (c, a) = (complete.await.expect("task"), abort.await.expect("task"));
        let exists = store.head_object(&b, &key, None).await.is_ok();
        match (&c, &a) {
            (Ok(_), Err(Error::NoSuchUpload { .. })) => assert!(exists, "round {round}"),
            (Err(Error::NoSuchUpload { .. }), Ok(())) => assert!(!exists, "round {round}"),
            _ => panic!("round {round}: complete {c:?}, abort {a:?}"),
        }
    }
}
