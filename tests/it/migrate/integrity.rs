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
pub(super) fn head_with_checksum(f: &Ferry, bucket: &str, key: &str) -> Value {
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
