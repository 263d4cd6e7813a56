//! What keeps a source's CRC across a copy in parts: a CRC of the whole object (a
//! FULL_OBJECT upload's, a one-piece object's) is asked of the destination's upload and
//! checked at its completion, whatever the part sizes; a COMPOSITE one comes out the same
//! when the copy keeps the source's parts; a destination that refuses either gets a plain
//! upload and every byte.

use serde_json::Value;

use super::integrity::head_with_checksum;
use super::{Migrator, fault_proxy};
use crate::support::{ACCESS_KEY, Ferry, SECRET_KEY, ok};

/// A source object's CRC of all its bytes (a FULL_OBJECT multipart upload's, or a one-piece
/// object's) survives a multipart copy with other part sizes between stores that send
/// checksums (`--checksum-mode when-supported`): the destination's upload is created to end
/// with the same CRC and checks it at completion.
#[test]
fn a_source_crc_of_the_whole_object_is_kept_by_a_multipart_copy() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, dst) = (Ferry::start(), Ferry::start());
    let sums: Value = serde_json::from_str(&ok(&src.python("crc_source.py", &["crcsrc"])))
        .expect("checksums json");
    // A destination that refuses checksum headers (and so whole-object checksums) too.
    let stats = tmp.path().join("refusing.json");
    let proxy = fault_proxy(&dst.s3, "0", &stats, &["--refuse-checksums"]);
    let (_registry, m) = migrator_with_stores(&[
        ("srcs", &src.s3),
        ("dsts", &dst.s3),
        ("refusing", &proxy.endpoint),
    ]);
    copy_in_6m_parts(&m, &dst, "srcs:crcsrc", "dsts", "crcdst");
    for key in ["big", "one"] {
        let (algorithm, value) = (
            sums[key][0].as_str().expect("algorithm"),
            sums[key][1].as_str().expect("value"),
        );
        let head = head_with_checksum(&dst, "crcdst", key);
        assert_eq!(
            (
                head[format!("Checksum{algorithm}")].as_str(),
                head["ChecksumType"].as_str(),
            ),
            (Some(value), Some("FULL_OBJECT")),
            "{key}: the copy keeps the source's {algorithm}: {head}"
        );
        assert!(
            head["ETag"]
                .as_str()
                .is_some_and(|e| e.ends_with("-3\"") || e.ends_with("-2\"")),
            "{key} went in parts: {head}"
        );
    }
    // Copied in the source's own parts, a COMPOSITE checksum comes out the same.
    let comp = head_with_checksum(&dst, "crcdst", "comp");
    assert_eq!(
        (
            comp["ChecksumCRC32"].as_str(),
            comp["ChecksumType"].as_str()
        ),
        (sums["comp"][1].as_str(), Some("COMPOSITE")),
        "the copy keeps the source's composite CRC32: {comp}"
    );
    // Copied in the source's own 5 MiB parts (not the 6 MiB asked for), the multipart
    // object keeps its ETag: a replica compares equal to its source.
    let src_etag = head_with_checksum(&src, "crcsrc", "big")["ETag"].clone();
    assert_eq!(head_with_checksum(&dst, "crcdst", "big")["ETag"], src_etag);
    // The refusing destination gets plain uploads, and every byte.
    copy_in_6m_parts(&m, &dst, "srcs:crcsrc", "refusing", "plain");
    assert_eq!(head_with_checksum(&dst, "plain", "big")["ETag"], src_etag);
    drop(proxy);
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("proxy stats")).expect("json");
    assert!(stats["refused"].as_u64().unwrap_or(0) >= 1, "{stats}");
    for key in ["big", "one"] {
        let (a, b) = (
            head_with_checksum(&src, "crcsrc", key),
            head_with_checksum(&dst, "plain", key),
        );
        assert_eq!(a["ContentLength"], b["ContentLength"], "{key}: {a} {b}");
    }

    // `one` went in parts, so its copy's ETag cannot be compared with the source's MD5; the
    // CRC kept across the copy can. Overwritten at the source with other bytes of its size,
    // it must show as a difference, not pass as "compared by size only".
    dst.add_s3_store_with("srcs", &src.s3, (ACCESS_KEY, SECRET_KEY), "when-supported");
    let verify = |dst: &Ferry| dst.cli(&["verify", "srcs:crcsrc", "local:crcdst"]);
    let out = verify(&dst);
    assert!(
        out.status.success(),
        "before: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let other = tmp.path().join("other");
    std::fs::write(&other, vec![b'x'; 9 * 1024 * 1024]).expect("write");
    ok(&src.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "crcsrc",
        "--key",
        "one",
        "--checksum-algorithm",
        "CRC32",
        "--body",
        other.to_str().unwrap_or_default(),
    ]));
    let out = verify(&dst);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "after: {said}");
    assert!(said.contains("content differs: one"), "after: {said}");
}

/// Makes `bucket` on `dst`, then migrates `src` into it through the store `to` (registered
/// with `m`) in 6 MiB parts, one attempt each, verified after.
fn copy_in_6m_parts(m: &Migrator, dst: &Ferry, src: &str, to: &str, bucket: &str) {
    ok(&dst.aws(&["s3", "mb", &format!("s3://{bucket}")]));
    ok(&m.run(&[
        "migrate",
        src,
        &format!("{to}:{bucket}"),
        "--multipart-threshold",
        "8M",
        "--part-size",
        "6M",
        "--attempts",
        "1",
        "--verify",
    ]));
}

/// A migrator whose state database has these s3 stores registered with SDK checksums
/// (`--checksum-mode when-supported`), registered through a server that is stopped after
/// (returned too: its data directory lives as long as it does).
fn migrator_with_stores(stores: &[(&str, &str)]) -> (Ferry, Migrator) {
    let mut a = Ferry::start();
    for (name, endpoint) in stores {
        a.add_s3_store_with(name, endpoint, (ACCESS_KEY, SECRET_KEY), "when-supported");
    }
    a.stop();
    let m = Migrator {
        data: a.data(),
        env: Vec::new(),
    };
    (a, m)
}

/// A destination that takes an upload's algorithm but refuses parts checksummed with it
/// (`fault_proxy.py --refuse-part-algorithm CRC32C`): the copy of an object whose CRC32C it
/// would have kept starts again as a plain upload, and lands whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_refused_for_the_source_crc_start_again_plainly() {
    use ferry::store::{BucketName, ChecksumAlgorithm, ObjectKey, PutOptions, Store};
    let tmp = tempfile::tempdir().expect("tmp");
    let (src, dst) = (Ferry::start(), Ferry::start());
    // A one-piece 9 MiB object with a CRC32C, as an SDK uploads it.
    let store = sdk_store("src", &src);
    let bucket = BucketName::parse("c32c").expect("bucket");
    store.create_bucket(&bucket).await.expect("create bucket");
    let data: Vec<u8> = (0..9u32 << 20).map(|i| (i % 241) as u8).collect();
    let len = data.len() as u64;
    let body: ferry::store::ByteStream = Box::pin(futures::stream::once(async move {
        Ok(bytes::Bytes::from(data))
    }));
    let put = store
        .put_object(
            &bucket,
            &ObjectKey::parse("obj").expect("key"),
            body,
            PutOptions {
                checksum_algorithm: Some(ChecksumAlgorithm::Crc32c),
                size_hint: Some(len),
                ..Default::default()
            },
        )
        .await
        .expect("put");
    assert!(
        put.checksum.is_some_and(|c| !c.composite),
        "the source has a CRC32C"
    );

    let stats = tmp.path().join("parts-refused.json");
    let proxy = fault_proxy(&dst.s3, "0", &stats, &["--refuse-part-algorithm", "CRC32C"]);
    let (_registry, m) = migrator_with_stores(&[("srcs", &src.s3), ("refusing", &proxy.endpoint)]);
    copy_in_6m_parts(&m, &dst, "srcs:c32c", "refusing", "plain");
    drop(proxy);
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("proxy stats")).expect("json");
    assert!(stats["refused"].as_u64().unwrap_or(0) >= 1, "{stats}");
    let head = head_with_checksum(&dst, "plain", "obj");
    assert_eq!(head["ContentLength"].as_u64(), Some(len), "{head}");
}

/// A resumed copy never continues an upload whose parts were cut another way: an upload
/// recorded with 2 MiB parts, whose part 3 (bytes 4–6 MiB) has the length part 3 has in the
/// source's own 5 MiB parts (bytes 10–12 MiB), is abandoned, and the copy comes out whole
/// and with the source's ETag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_copy_never_mixes_part_cuts() {
    use ferry::store::fs::FsStore;
    use ferry::store::{BucketName, ObjectKey, PutOptions, Store};
    use ferry::transfer::copy::{Item, NoJournal, Outcome, Plan, Resume, copy_object};
    const MIB: usize = 1 << 20;
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let src = FsStore::open("src", a.path()).await.expect("src");
    let dst = FsStore::open("dst", b.path()).await.expect("dst");
    let (bucket, key) = (
        BucketName::parse("cuts").expect("bucket"),
        ObjectKey::parse("obj").expect("key"),
    );
    src.create_bucket(&bucket).await.expect("bucket");
    dst.create_bucket(&bucket).await.expect("bucket");
    let data: Vec<u8> = (0..12 * MIB as u32).map(|i| (i % 251) as u8).collect();
    // The source: 5, 5 and 2 MiB parts.
    let head = upload_in_parts(
        src.as_ref(),
        (&bucket, &key),
        &data,
        [0..5 * MIB, 5 * MIB..10 * MIB, 10 * MIB..12 * MIB],
        PutOptions::default,
        PutOptions::default(),
    )
    .await;
    let item = Item {
        src: src.as_ref(),
        sb: &bucket,
        sk: &key,
        dst: dst.as_ref(),
        db: &bucket,
        dk: &key,
        listed_etag: &head.etag,
    };
    let plan = Plan {
        part_size: 2 * MIB as u64,
        threshold: 8 * MIB as u64,
        ..Default::default()
    };
    let (_tx, stop) = tokio::sync::watch::channel(false);
    // Recorded with its cut, and as a Ferry that did not record the cut would have.
    for with_cut in [true, false] {
        // An interrupted copy cut in 2 MiB parts, its part 3 sent and recorded.
        let old = dst
            .create_multipart(&bucket, &key, PutOptions::default())
            .await
            .expect("create");
        let p3 = dst
            .upload_part(
                &bucket,
                &key,
                &old,
                3,
                one_chunk(&data[4 * MIB..6 * MIB]),
                PutOptions::default(),
            )
            .await
            .expect("part 3");
        let mut parts = vec![(3, p3.etag, 2 * MIB as u64)];
        if with_cut {
            parts.push((0, "part-size".to_owned(), 2 * MIB as u64));
        }
        let resume = Resume {
            upload_id: old,
            parts,
        };
        let out = copy_object(&item, &plan, Some(resume), true, &NoJournal, &stop).await;
        assert!(matches!(out, Ok(Outcome::Copied { .. })), "{out:?}");
        let got = dst.head_object(&bucket, &key, None).await.expect("head");
        assert_eq!((got.size, &got.etag), (head.size, &head.etag));
        dst.delete_object(&bucket, &key, None)
            .await
            .expect("delete");
    }
}

/// From a local store to a remote one, parts are checksummed up front before they are
/// sent; copied in the source's own parts, they go with the algorithm of the source's
/// COMPOSITE checksum (not CRC32C), so the destination's composite is the source's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_composite_checksum_is_kept_on_a_remote_store() {
    use ferry::store::fs::FsStore;
    use ferry::store::{BucketName, ChecksumAlgorithm, ObjectKey, PutOptions, Store};
    use ferry::transfer::copy::{Item, NoJournal, Outcome, Plan, copy_object};
    const MIB: usize = 1 << 20;
    let a = tempfile::tempdir().expect("a");
    let src = FsStore::open("src", a.path()).await.expect("src");
    let server = Ferry::start();
    let dst = sdk_store("dst", &server);
    let (bucket, key) = (
        BucketName::parse("comp").expect("bucket"),
        ObjectKey::parse("obj").expect("key"),
    );
    src.create_bucket(&bucket).await.expect("bucket");
    dst.create_bucket(&bucket).await.expect("bucket");
    let data: Vec<u8> = (0..11 * MIB as u32).map(|i| (i % 239) as u8).collect();
    let crc32 = || PutOptions {
        checksum_algorithm: Some(ChecksumAlgorithm::Crc32),
        ..Default::default()
    };
    let head = upload_in_parts(
        src.as_ref(),
        (&bucket, &key),
        &data,
        [0..5 * MIB, 5 * MIB..10 * MIB, 10 * MIB..11 * MIB],
        crc32,
        crc32(),
    )
    .await;
    let want = head.checksum.clone().expect("a composite CRC32");
    assert!(
        want.composite && want.algorithm == ChecksumAlgorithm::Crc32,
        "{want:?}"
    );
    let item = Item {
        src: src.as_ref(),
        sb: &bucket,
        sk: &key,
        dst: &dst,
        db: &bucket,
        dk: &key,
        listed_etag: &head.etag,
    };
    let (_tx, stop) = tokio::sync::watch::channel(false);
    let out = copy_object(&item, &Plan::default(), None, false, &NoJournal, &stop).await;
    assert!(matches!(out, Ok(Outcome::Copied { .. })), "{out:?}");
    let got = dst.head_object(&bucket, &key, None).await.expect("head");
    assert_eq!(got.etag, head.etag);
    assert_eq!(got.checksum, Some(want));
}

/// From a local store to a remote one, a CRC of the whole object (a FULL_OBJECT upload's,
/// here CRC64NVME, which S3 keeps only that way, or a one-piece object's CRC32) is kept:
/// the parts are checksummed up front with its algorithm (not CRC32C) and the destination's
/// upload is created to end with it, so a replica or a failback copy on S3 says what its
/// source said, in either checksum mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_whole_object_crc_is_kept_on_a_remote_store() {
    use ferry::store::fs::FsStore;
    use ferry::store::s3::ChecksumMode;
    use ferry::store::{BucketName, ChecksumAlgorithm, ObjectKey, PutOptions, Store};
    use ferry::transfer::copy::{Item, NoJournal, Outcome, Plan, copy_object};
    const MIB: usize = 1 << 20;
    let a = tempfile::tempdir().expect("a");
    let src = FsStore::open("src", a.path()).await.expect("src");
    let server = Ferry::start();
    let bucket = BucketName::parse("whole").expect("bucket");
    src.create_bucket(&bucket).await.expect("bucket");
    let data: Vec<u8> = (0..11 * MIB as u32).map(|i| (i % 233) as u8).collect();
    let with = |algorithm| PutOptions {
        checksum_algorithm: Some(algorithm),
        ..Default::default()
    };
    // `full`: a CRC64NVME FULL_OBJECT upload in parts of 5 MiB; `one`: a 9 MiB PUT with a
    // CRC32.
    let full = ObjectKey::parse("full").expect("key");
    let full_head = upload_in_parts(
        src.as_ref(),
        (&bucket, &full),
        &data,
        [0..5 * MIB, 5 * MIB..10 * MIB, 10 * MIB..11 * MIB],
        || with(ChecksumAlgorithm::Crc64Nvme),
        PutOptions {
            full_object_checksum: true,
            ..with(ChecksumAlgorithm::Crc64Nvme)
        },
    )
    .await;
    let one = ObjectKey::parse("one").expect("key");
    let one_head = src
        .put_object(
            &bucket,
            &one,
            one_chunk(&data[..9 * MIB]),
            with(ChecksumAlgorithm::Crc32),
        )
        .await
        .expect("put");
    for (head, algorithm) in [
        (&full_head, ChecksumAlgorithm::Crc64Nvme),
        (&one_head, ChecksumAlgorithm::Crc32),
    ] {
        let c = head.checksum.as_ref().expect("a checksum");
        assert!(!c.composite && c.algorithm == algorithm, "{c:?}");
    }
    for (n, mode) in [ChecksumMode::WhenSupported, ChecksumMode::WhenRequired]
        .into_iter()
        .enumerate()
    {
        let dst = sdk_store_with("dst", &server, mode);
        let db = BucketName::parse(&format!("whole{n}")).expect("bucket");
        dst.create_bucket(&db).await.expect("bucket");
        // Parts of 6 MiB, so not the source's own: the CRC is of the whole object, whatever
        // the cut.
        let plan = Plan {
            threshold: 8 * MIB as u64,
            part_size: 6 * MIB as u64,
            ..Plan::default()
        };
        for (key, head) in [(&full, &full_head), (&one, &one_head)] {
            let item = Item {
                src: src.as_ref(),
                sb: &bucket,
                sk: key,
                dst: &dst,
                db: &db,
                dk: key,
                listed_etag: &head.etag,
            };
            let (_tx, stop) = tokio::sync::watch::channel(false);
            let out = copy_object(&item, &plan, None, false, &NoJournal, &stop).await;
            assert!(matches!(out, Ok(Outcome::Copied { .. })), "{key}: {out:?}");
            let got = dst.head_object(&db, key, None).await.expect("head");
            assert_eq!(got.size, head.size, "{key} ({mode:?})");
            assert!(got.etag.contains('-'), "{key} went in parts: {}", got.etag);
            assert_eq!(
                got.checksum, head.checksum,
                "{key} ({mode:?}): the copy keeps the source's checksum"
            );
        }
    }
}

/// An s3 store on a Ferry endpoint that sends SDK checksums (`when-supported`).
fn sdk_store(name: &str, f: &Ferry) -> ferry::store::s3::S3Store {
    sdk_store_with(name, f, ferry::store::s3::ChecksumMode::WhenSupported)
}

/// An s3 store on a Ferry endpoint in checksum `mode`.
fn sdk_store_with(
    name: &str,
    f: &Ferry,
    checksum_mode: ferry::store::s3::ChecksumMode,
) -> ferry::store::s3::S3Store {
    use ferry::store::s3::{S3Config, S3Store};
    S3Store::new(
        name,
        S3Config {
            endpoint: Some(f.s3.clone()),
            region: "us-east-1".into(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            path_style: true,
            checksum_mode,
        },
    )
    .expect("s3 store")
}

/// An object of `data` uploaded to `store` in parts cut at `ranges`, each sent with
/// `part_opts`, the upload created with `create`.
async fn upload_in_parts<const N: usize>(
    store: &dyn ferry::store::Store,
    (bucket, key): (&ferry::store::BucketName, &ferry::store::ObjectKey),
    data: &[u8],
    ranges: [std::ops::Range<usize>; N],
    part_opts: impl Fn() -> ferry::store::PutOptions,
    create: ferry::store::PutOptions,
) -> ferry::store::ObjectMeta {
    let up = store
        .create_multipart(bucket, key, create)
        .await
        .expect("create");
    let mut parts = Vec::new();
    for (n, range) in (1..).zip(ranges) {
        let p = store
            .upload_part(bucket, key, &up, n, one_chunk(&data[range]), part_opts())
            .await
            .expect("part");
        parts.push(ferry::store::CompletedPart {
            part_number: n,
            etag: p.etag,
            checksum: p.checksum,
            claimed: None,
        });
    }
    store
        .complete_multipart(bucket, key, &up, &parts, None)
        .await
        .expect("complete")
}

/// A body of one chunk.
fn one_chunk(b: &[u8]) -> ferry::store::ByteStream {
    let b = bytes::Bytes::copy_from_slice(b);
    Box::pin(futures::stream::once(async move { Ok(b) }))
}
