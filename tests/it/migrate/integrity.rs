//! What checks a copy. Bodies damaged on their way to the destination never land: a
//! directory's files go with a CRC32C instead of `Content-MD5` (nobody needs their MD5), which
//! Ferry checks, refusing a damaged body; moto ignores both the checksum and `Content-MD5` and
//! keeps what it got, so Ferry's own comparison of the returned ETag catches it and deletes
//! the object again. A destination that refuses checksum headers gets `Content-MD5`. And a
//! source whose ETags are not MD5s (S3 with SSE-KMS) is copied and verified without its ETag
//! being taken for an MD5.

use std::process::Command;

use serde_json::Value;

use super::{MOTO_KEY, Migrator, assert_same_tree, fault_proxy, make_tree, stderr};
use crate::support::{ACCESS_KEY, Ferry, Moto, SECRET_KEY, ok};

/// PUT bodies the proxy damages, per destination.
const DAMAGED: u32 = 3;

/// One destination reached through `fault_proxy.py --corrupt-first DAMAGED`.
struct Side<'a> {
    name: &'a str,
    upstream: &'a str,
    access_key: &'a str,
    secret_key: &'a str,
}

/// Copies `src` to `s3://BUCKET` on `side` through `fault_proxy.py` with `flags` (`extra` are
/// more `migrate` flags), checks the copy finished, then reads the bucket back straight from
/// the server and compares it with `src`. Returns the proxy's counts.
fn copy_through_proxy(
    tmp: &std::path::Path,
    src: &std::path::Path,
    bucket: &str,
    side: &Side<'_>,
    flags: &[&str],
    extra: &[&str],
) -> Value {
    let name = side.name;
    let stats = tmp.join(format!("{name}-{bucket}.json"));
    let proxy = fault_proxy(side.upstream, "0", &stats, flags);
    let keys = (side.access_key, side.secret_key);
    let m = Migrator::new(&tmp.join(format!("{name}-{bucket}"))).creds("DST", keys.0, keys.1);
    let dst = format!("s3://{bucket}");
    let mut args = vec![
        "migrate",
        src.to_str().unwrap_or_default(),
        &dst,
        "--dst-endpoint",
        &proxy.endpoint,
    ];
    args.extend_from_slice(extra);
    let out = m.run(&args);
    drop(proxy);
    assert!(out.status.success(), "{name}: {}", stderr(&out));
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("proxy stats")).expect("json");
    // Read back straight from the server, not through the proxy.
    let back = tmp.join(format!("back-{name}-{bucket}")).join(bucket);
    let m2 = Migrator::new(&tmp.join(format!("{name}-{bucket}-back"))).creds("SRC", keys.0, keys.1);
    ok(&m2.run(&[
        "migrate",
        &dst,
        back.to_str().unwrap_or_default(),
        "--src-endpoint",
        side.upstream,
    ]));
    assert_same_tree(src, &back);
    stats
}

/// [`copy_through_proxy`] with the first PUT bodies damaged, one worker: the damaged bodies
/// are the first ones, sent before Ferry has learned whether this destination checks
/// checksums (moto does not) and after (the rest).
fn copy_through_damage(
    tmp: &std::path::Path,
    src: &std::path::Path,
    bucket: &str,
    side: &Side<'_>,
    extra: &[&str],
) -> Value {
    let damaged = DAMAGED.to_string();
    let mut args = vec!["--workers", "1", "--attempts", "10"];
    args.extend_from_slice(extra);
    let flags = ["--corrupt-first", damaged.as_str()];
    let stats = copy_through_proxy(tmp, src, bucket, side, &flags, &args);
    assert_eq!(
        stats["corrupted"].as_u64(),
        Some(u64::from(DAMAGED)),
        "{}: {stats}",
        side.name
    );
    stats
}

/// Ferry's own endpoint as a [`Side`].
fn ferry_side(f: &Ferry) -> Side<'_> {
    Side {
        name: "ferry",
        upstream: &f.s3,
        access_key: ACCESS_KEY,
        secret_key: SECRET_KEY,
    }
}

/// Multipart at 8 MiB in 5 MiB parts, one attempt.
const PARTS_ONCE: [&str; 6] = [
    "--attempts",
    "1",
    "--multipart-threshold",
    "8M",
    "--part-size",
    "5M",
];

/// HEAD of `bucket/key` on Ferry with its checksum, as awscli answers it.
fn head_with_checksum(f: &Ferry, bucket: &str, key: &str) -> Value {
    let mut head = Command::new(crate::support::venv_bin("aws"));
    head.args(["--endpoint-url", &f.s3, "s3api", "head-object"])
        .args([
            "--bucket",
            bucket,
            "--key",
            key,
            "--checksum-mode",
            "ENABLED",
        ])
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_DEFAULT_REGION", "us-east-1");
    serde_json::from_str(&ok(&head.output().expect("aws"))).expect("json")
}

fn ferry_and_moto<'a>(f: &'a Ferry, moto: &'a Moto) -> [Side<'a>; 2] {
    [
        ferry_side(f),
        Side {
            name: "moto",
            upstream: &moto.endpoint,
            access_key: MOTO_KEY,
            secret_key: MOTO_KEY,
        },
    ]
}

#[test]
fn bodies_damaged_on_the_way_never_land() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let moto = Moto::start();
    let src = tmp.path().join("tree/dmg");
    make_tree(&src, 40, &[]);
    for side in ferry_and_moto(&f, &moto) {
        copy_through_damage(tmp.path(), &src, "dmg", &side, &[]);
    }
    // What reached Ferry carries the CRC32C it was checked with.
    let meta = head_with_checksum(&f, "dmg", "f00001");
    assert!(
        meta["ChecksumCRC32C"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{meta}"
    );
}

/// A source whose ETags are not MD5s (S3 with SSE-KMS, as `fault_proxy.py --kms` answers):
/// the copies are checked another way instead of refused for a "wrong" MD5, and `--verify`
/// asks both sides with HEAD before it calls differing ETags a difference.
#[test]
fn a_source_whose_etags_are_not_md5s_copies_and_verifies() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/kms");
    make_tree(&src, 30, &[super::mib(12)]);
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let parts = [
        "--multipart-threshold",
        "8M",
        "--part-size",
        "5M",
        "--attempts",
        "3",
    ];
    let mut up = vec![
        "migrate",
        src.to_str().unwrap_or_default(),
        "s3://kmssrc",
        "--dst-endpoint",
        &f.s3,
    ];
    up.extend(parts);
    ok(&m.run(&up));
    let proxy = fault_proxy(&f.s3, "0", &tmp.path().join("kms.json"), &["--kms"]);
    let kms = proxy.endpoint.clone();

    // The stand-in is in effect: through the proxy, a small object's ETag is not its MD5.
    let mut head = Command::new(crate::support::venv_bin("aws"));
    head.args([
        "--endpoint-url",
        &kms,
        "s3api",
        "head-object",
        "--bucket",
        "kmssrc",
    ])
    .args(["--key", "f00001"])
    .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    .env("AWS_DEFAULT_REGION", "us-east-1");
    let meta: Value = serde_json::from_str(&ok(&head.output().expect("aws"))).expect("json");
    let md5 = {
        use md5::Digest as _;
        hex::encode(md5::Md5::digest(
            std::fs::read(src.join("f00001")).expect("f00001"),
        ))
    };
    assert_eq!(meta["ServerSideEncryption"], "aws:kms", "{meta}");
    assert_ne!(meta["ETag"], format!("\"{md5}\""), "{meta}");

    // To a directory and to another bucket, each checked with --verify.
    let back = tmp.path().join("back/kms");
    let mut down = vec![
        "migrate",
        "s3://kmssrc",
        back.to_str().unwrap_or_default(),
        "--src-endpoint",
        &kms,
        "--verify",
    ];
    down.extend(parts);
    let out = m.run(&down);
    let err = stderr(&out);
    assert!(out.status.success(), "to a directory: {err}");
    // Neither a false difference nor a false match: those objects compare by the CRC32C
    // they were uploaded with (HEAD asks for checksums in either checksum mode), not by
    // their ETags.
    assert!(err.contains("31 objects compared, no differences"), "{err}");
    assert_same_tree(&src, &back);
    let mut across = vec![
        "migrate",
        "s3://kmssrc",
        "s3://kmsdst",
        "--src-endpoint",
        &kms,
        "--dst-endpoint",
        &f.s3,
        "--verify",
    ];
    across.extend(parts);
    let out = m.run(&across);
    drop(proxy);
    let err = stderr(&out);
    assert!(out.status.success(), "to a bucket: {err}");
    assert!(err.contains("31 objects compared, no differences"), "{err}");
    // Again with --checksum: nothing goes twice (the small objects compare by size, the
    // multipart one by its ETag).
    across.retain(|a| *a != "--verify");
    across.extend(["--checksum", "--json"]);
    let proxy = fault_proxy(&f.s3, "0", &tmp.path().join("kms2.json"), &["--kms"]);
    let kms = proxy.endpoint.clone();
    across[4] = &kms;
    let out = ok(&m.run(&across));
    drop(proxy);
    let rec: Value = serde_json::from_str(out.lines().next().unwrap_or("{}")).expect("json");
    assert_eq!(
        (rec["done"].as_i64(), rec["unchanged"].as_i64()),
        (Some(0), Some(31)),
        "{rec}"
    );
    let again = tmp.path().join("again/kms");
    ok(&m.run(&[
        "migrate",
        "s3://kmsdst",
        again.to_str().unwrap_or_default(),
        "--src-endpoint",
        &f.s3,
    ]));
    assert_same_tree(&src, &again);
}

/// A destination that refuses `x-amz-checksum-*` headers outright (400, as an S3
/// implementation that does not know them might): the first body's probe finds that out, and
/// every body goes with `Content-MD5` instead; a multipart upload refused with a checksum
/// algorithm is created without one, and its parts go the MD5 way. Nothing fails.
#[test]
fn a_destination_that_refuses_checksum_headers_gets_content_md5() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/plain");
    make_tree(&src, 20, &[super::mib(12)]);
    let flags = ["--refuse-checksums"];
    let stats = copy_through_proxy(
        tmp.path(),
        &src,
        "plain",
        &ferry_side(&f),
        &flags,
        &PARTS_ONCE,
    );
    assert_eq!(
        (
            stats["refused"].as_u64(),
            stats["parts_checksummed"].as_u64()
        ),
        (Some(2), Some(0)),
        "only the PUT's probe and the upload's first create: {stats}"
    );
}

/// The parts of a directory's large file go with a CRC32C computed before each is sent
/// (the file is read twice), not an MD5: Ferry checks it and refuses parts damaged on the
/// way. moto takes a part with a wrong checksum (the one-byte probe finds that out), so its
/// parts, which carry the checksum all the same, are hashed too, and Ferry's comparison of
/// each part's ETag with its MD5 catches the damage instead.
#[test]
fn parts_of_a_directory_file_are_checked_by_a_checksum_computed_first() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let moto = Moto::start();
    let src = tmp.path().join("tree/parts");
    make_tree(&src, 0, &[super::mib(12), super::mib(11)]);
    let parts = ["--multipart-threshold", "8M", "--part-size", "5M"];
    for side in ferry_and_moto(&f, &moto) {
        let stats = copy_through_damage(tmp.path(), &src, "parts", &side, &parts);
        // Six parts, the probe, and the damaged ones again; every one with its checksum.
        let (sent, checksummed) = (&stats["parts"], &stats["parts_checksummed"]);
        assert!(
            sent.as_u64() >= Some(6 + u64::from(DAMAGED)),
            "{}: {stats}",
            side.name
        );
        assert_eq!(sent, checksummed, "{}: {stats}", side.name);
    }
    // Ferry keeps the parts' checksums: the object's is the composite of three.
    let meta = head_with_checksum(&f, "parts", "big/b0");
    assert!(
        meta["ChecksumCRC32C"]
            .as_str()
            .is_some_and(|c| c.ends_with("-3")),
        "{meta}"
    );
}

/// A destination that answers a wrong part checksum with a 400 of another name that mentions
/// the checksum (not `BadDigest`): the probe cannot tell that from a refusal of the header,
/// so it sends a part with the right checksum too; that one is taken, so the destination
/// checks, and every part goes with its checksum.
#[test]
fn a_checksum_refusal_worded_otherwise_is_told_apart_from_a_refused_header() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/worded");
    make_tree(&src, 0, &[super::mib(12)]);
    let flags = ["--mismatch-as-invalid-request"];
    let stats = copy_through_proxy(
        tmp.path(),
        &src,
        "worded",
        &ferry_side(&f),
        &flags,
        &PARTS_ONCE,
    );
    // Three parts and the two probes, every one with a checksum; only the wrong one refused.
    assert_eq!(
        (
            stats["parts"].as_u64(),
            stats["parts_checksummed"].as_u64(),
            stats["reworded"].as_u64()
        ),
        (Some(5), Some(5), Some(1)),
        "{stats}"
    );
}

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
    use ferry::store::{BucketName, CompletedPart, ObjectKey, PutOptions, Store};
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
    let up = src
        .create_multipart(&bucket, &key, PutOptions::default())
        .await
        .expect("create");
    let mut parts = Vec::new();
    for (n, range) in [
        (1, 0..5 * MIB),
        (2, 5 * MIB..10 * MIB),
        (3, 10 * MIB..12 * MIB),
    ] {
        let p = src
            .upload_part(
                &bucket,
                &key,
                &up,
                n,
                one_chunk(&data[range]),
                PutOptions::default(),
            )
            .await
            .expect("part");
        parts.push(CompletedPart {
            part_number: n,
            etag: p.etag,
            checksum: None,
            claimed: None,
        });
    }
    let head = src
        .complete_multipart(&bucket, &key, &up, &parts, None)
        .await
        .expect("complete");
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
    use ferry::store::{
        BucketName, ChecksumAlgorithm, CompletedPart, ObjectKey, PutOptions, Store,
    };
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
    let up = src
        .create_multipart(&bucket, &key, crc32())
        .await
        .expect("create");
    let mut parts = Vec::new();
    for (n, range) in [
        (1, 0..5 * MIB),
        (2, 5 * MIB..10 * MIB),
        (3, 10 * MIB..11 * MIB),
    ] {
        let p = src
            .upload_part(&bucket, &key, &up, n, one_chunk(&data[range]), crc32())
            .await
            .expect("part");
        parts.push(CompletedPart {
            part_number: n,
            etag: p.etag,
            checksum: p.checksum,
            claimed: None,
        });
    }
    let head = src
        .complete_multipart(&bucket, &key, &up, &parts, None)
        .await
        .expect("complete");
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

/// An s3 store on a Ferry endpoint that sends SDK checksums (`when-supported`).
fn sdk_store(name: &str, f: &Ferry) -> ferry::store::s3::S3Store {
    use ferry::store::s3::{ChecksumMode, S3Config, S3Store};
    S3Store::new(
        name,
        S3Config {
            endpoint: Some(f.s3.clone()),
            region: "us-east-1".into(),
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
            path_style: true,
            checksum_mode: ChecksumMode::WhenSupported,
        },
    )
    .expect("s3 store")
}

/// A body of one chunk.
fn one_chunk(b: &[u8]) -> ferry::store::ByteStream {
    let b = bytes::Bytes::copy_from_slice(b);
    Box::pin(futures::stream::once(async move { Ok(b) }))
}
