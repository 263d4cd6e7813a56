//! Namespace buckets (issue 4): writes reach the primary and every secondary (a second
//! `ferry serve` over HTTP, `moto_server`), a secondary outage is journaled and caught up,
//! kill -9 loses no acknowledged write, failover and failback, and bad policy input.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Ferry, Moto, venv_bin, write_file};

fn status(f: &Ferry, bucket: &str) -> Value {
    let out = f.ok(&f.cli(&["bucket", "status", bucket, "--json"]));
    serde_json::from_str(&out).expect("status json")
}

/// A Ferry `a` with a second Ferry `b` added as the store `dr`, and a bucket `bucket` on
/// `a` writing to `local:bucket` (primary) and `dr:bucket`; `b` on a fixed port when it is
/// to be restarted.
fn two_sites(bucket: &str, fixed_port_b: bool) -> (Ferry, Ferry) {
    let a = Ferry::start();
    let b = if fixed_port_b {
        Ferry::start_fixed_port()
    } else {
        Ferry::start()
    };
    a.add_remote("dr", &b);
    let write_to = format!("local:{bucket},dr:{bucket}");
    a.ok(&a.cli(&["bucket", "create", bucket, "--write-to", &write_to]));
    (a, b)
}

/// Waits until no target of `bucket` is owed anything.
#[track_caller]
fn wait_drained(f: &Ferry, bucket: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = status(f, bucket);
        if s["owed_total"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the journal did not drain: {s}\nlog:\n{}",
            f.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A server with a second one registered as store `dr`, and a namespace bucket writing to
/// `local:BUCKET` and `dr:BUCKET`.
fn pair(bucket: &str) -> (Ferry, Ferry) {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    let targets = format!("local:{bucket},dr:{bucket}");
    a.ok(&a.cli(&["bucket", "create", bucket, "--write-to", &targets]));
    (a, b)
}

/// `ferry verify` of two targets must report no difference.
#[track_caller]
fn assert_same(f: &Ferry, a: &str, b: &str) {
    let out = f.cli(&["verify", a, b]);
    assert!(
        out.status.success(),
        "verify {a} {b} found differences:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every PUT acknowledged in `acks` (a `load.py` log) is in the primary's fs bucket with its
/// bytes (the last acknowledgement of a key wins); returns how many keys were checked.
#[track_caller]
fn assert_acks_on_primary(f: &Ferry, bucket: &str, acks: &std::path::Path) -> usize {
    let log = std::fs::read_to_string(acks).unwrap_or_default();
    let mut want = std::collections::BTreeMap::new();
    for l in log.lines() {
        if let Some((k, md5)) = l.split_once(' ') {
            want.insert(k.to_owned(), md5.to_owned());
        }
    }
    for (k, md5) in &want {
        let p = f.local_root().join(bucket).join(k);
        let got = std::fs::read(&p).unwrap_or_else(|e| panic!("acknowledged {k} missing: {e}"));
        assert_eq!(&hex_md5(&got), md5, "{k} has other bytes");
    }
    want.len()
}

/// `aws s3 cp FILE URL` against `to`, which must succeed.
fn cp_to(to: &Ferry, file: &std::path::Path, url: &str) {
    to.ok(&to.aws(&["s3", "cp", file.to_str().expect("utf8"), url]));
}

fn hex_md5(data: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts `load.py put BUCKET COUNT ACKS [PREFIX]` against `f` (see tests/it/py/load.py).
fn spawn_load(
    f: &Ferry,
    bucket: &str,
    count: u32,
    acks: &std::path::Path,
    prefix: Option<&str>,
) -> std::process::Child {
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(crate::support::repo().join("tests/it/py/load.py"))
        .args([
            "put",
            bucket,
            &count.to_string(),
            acks.to_str().expect("utf8"),
        ])
        .args(prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    f.client_env(&mut cmd);
    cmd.spawn().expect("load")
}

/// The server's `/metrics` text.
fn metrics(f: &Ferry) -> String {
    let out = Command::new("curl")
        .args(["-s", &format!("{}/metrics", f.admin)])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many keys the catch-up worker has synced to `target` (`store:bucket`).
fn synced_keys(f: &Ferry, target: &str) -> u64 {
    metrics(f)
        .lines()
        .find(|l| l.starts_with("ferry_journal_synced_keys_total{") && l.contains(target))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// S3 takes `a//b` and `x/../y`; an fs store cannot hold them. A namespace bucket over an S3
/// primary and an fs secondary took such a key on the primary and owed it to the secondary
/// for ever (and a failback waited on it for ever). A write of a key some target cannot hold
/// is refused before anything is sent or journaled; a key the primary already had when the
/// secondary was added is left out by the catch-up, which says so.
#[test]
fn keys_a_target_cannot_hold_are_refused_up_front() {
    let a = Ferry::start();
    let moto = Moto::start();
    a.add_s3_store("moto", &moto.endpoint, "testing", "testing");
    let py = format!(
        "import boto3; c=boto3.client('s3',endpoint_url='{}',aws_access_key_id='testing',aws_secret_access_key='testing',region_name='us-east-1');\
         c.create_bucket(Bucket='odd-m'); c.put_object(Bucket='odd-m',Key='old//key',Body=b'x'); c.put_object(Bucket='odd-m',Key='fine',Body=b'y')",
        moto.endpoint
    );
    let out = Command::new(venv_bin("python"))
        .args(["-c", &py])
        .output()
        .expect("python");
    assert!(out.status.success(), "{out:?}");
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "odd",
        "--write-to",
        "moto:odd-m,local:odd",
    ]));
    wait_drained(&a, "odd");
    let s = status(&a, "odd");
    assert!(s.to_string().contains("left out"), "{s}");

    let body = a.dir.path().join("body");
    write_file(&body, 10, 1);
    for key in ["a//b", "x/../y"] {
        let out = a.aws(&[
            "s3api",
            "put-object",
            "--bucket",
            "odd",
            "--key",
            key,
            "--body",
            body.to_str().expect("utf8"),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("InvalidArgument"),
            "{key}: {err}"
        );
    }
    let s = status(&a, "odd");
    assert_eq!(s["owed_total"], 0, "nothing owed for refused keys: {s}");
    let ls = a.ok(&a.aws(&["s3", "ls", "--recursive", "s3://odd"]));
    assert!(!ls.contains("a//b") && !ls.contains("x/../y"), "{ls}");
}

#[test]
fn writes_reach_a_remote_ferry_and_moto() {
    let a = Ferry::start();
    let b = Ferry::start();
    let moto = Moto::start();
    a.add_remote("dr", &b);
    a.add_s3_store("moto", &moto.endpoint, "testing", "testing");
    let out = a.ok(&a.cli(&[
        "bucket",
        "create",
        "multi",
        "--write-to",
        "local:multi,dr:multi-copy,moto:multi-moto",
    ]));
    assert!(out.contains("created bucket multi"), "{out}");

    // awscli: a tree of small files and one multipart upload (over its 8 MiB threshold).
    let tree = a.dir.path().join("tree");
    for i in 0..20 {
        write_file(
            &tree.join(format!("d{}/f{i}", i % 3)),
            100 + i * 500,
            i as u64,
        );
    }
    write_file(&tree.join("big.bin"), 12 * 1024 * 1024 + 5, 99);
    a.ok(&a.aws(&[
        "s3",
        "cp",
        "--recursive",
        tree.to_str().expect("utf8"),
        "s3://multi/tree/",
    ]));
    a.ok(&a.aws(&["s3", "rm", "s3://multi/tree/d0/f0"]));
    // boto3: metadata, tags, copy, delete-many, multipart.
    let out = a.python("multiwrite_ops.py", &["multi"]);
    assert_eq!(a.ok(&out).trim(), "ok");
    // CopyObject between the namespace bucket and a plain one (two stores) both ways.
    a.ok(&a.aws(&["s3", "mb", "s3://plain"]));
    a.ok(&a.aws(&["s3", "cp", "s3://multi/tree/d1/f1", "s3://plain/f1"]));
    a.ok(&a.aws(&["s3", "cp", "s3://plain/f1", "s3://multi/back/f1"]));
    let got = a.dir.path().join("back-f1");
    a.ok(&a.aws(&[
        "s3",
        "cp",
        "s3://multi/back/f1",
        got.to_str().expect("utf8"),
    ]));
    assert_eq!(
        std::fs::read(&got).expect("read back"),
        std::fs::read(tree.join("d1/f1")).expect("read source"),
        "a copy from the namespace bucket to a plain one and back"
    );

    wait_drained(&a, "multi");
    assert_same(&a, "local:multi", "dr:multi-copy");
    assert_same(&a, "local:multi", "moto:multi-moto");
    // A large single PUT reaches the remote secondary with the client's request, not later
    // through the journal: a secondary a little slower than the local primary is waited for
    // (within a bounded slack) rather than cut once it is a 4 MiB buffer behind.
    let synced_before = synced_keys(&a, "dr:multi-copy");
    let large = a.dir.path().join("large.bin");
    write_file(&large, 24 * 1024 * 1024 + 1, 5);
    a.ok(&a.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "multi",
        "--key",
        "large.bin",
        "--body",
        large.to_str().expect("utf8"),
    ]));
    wait_drained(&a, "multi");
    assert_eq!(
        synced_keys(&a, "dr:multi-copy"),
        synced_before,
        "the large PUT was left to the catch-up worker; log:\n{}",
        a.log()
    );
    assert_same(&a, "local:multi", "dr:multi-copy");
    // Sent without a type, it reads back from the secondary with S3's default, as from the
    // primary (the SDK would have stored application/octet-stream).
    let head = b.ok(&b.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "multi-copy",
        "--key",
        "large.bin",
    ]));
    assert!(
        head.contains("\"ContentType\": \"binary/octet-stream\""),
        "{head}"
    );
    // Metadata and tags travelled with the data.
    let head = b.ok(&b.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "multi-copy",
        "--key",
        "meta.txt",
    ]));
    assert!(head.contains("\"color\": \"blue\""), "{head}");
    // Non-ASCII metadata reached the remote secondary (S3 returns it RFC 2047-encoded).
    assert!(head.contains("=?UTF-8?B?WsO8cmljaA==?="), "{head}");
    // The multipart object kept its ETag on the secondary: it was copied in its own parts.
    let etag_of = |f: &Ferry, bucket: &str| {
        let head = f.ok(&f.aws(&[
            "s3api",
            "head-object",
            "--bucket",
            bucket,
            "--key",
            "multi.bin",
        ]));
        let v: Value = serde_json::from_str(&head).expect("head json");
        v["ETag"].as_str().unwrap_or_default().to_owned()
    };
    let primary_etag = etag_of(&a, "multi");
    assert!(primary_etag.ends_with("-2\""), "{primary_etag}");
    assert_eq!(etag_of(&b, "multi-copy"), primary_etag);
    let tags = b.ok(&b.aws(&[
        "s3api",
        "get-object-tagging",
        "--bucket",
        "multi-copy",
        "--key",
        "many/2",
    ]));
    assert!(tags.contains("\"Value\": \"v\""), "{tags}");
    // The namespace bucket is listed once, and reads come from the primary.
    let ls = a.ok(&a.aws(&["s3", "ls"]));
    assert_eq!(ls.matches(" multi\n").count(), 1, "{ls}");
}

#[test]
fn secondary_outage_is_caught_up_from_the_journal() {
    let (a, mut b) = two_sites("load", true);

    let acks = a.dir.path().join("acks");
    let load = spawn_load(&a, "load", 2000, &acks, None);
    // Kill the secondary once a quarter of the PUTs are acknowledged.
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines(&acks) < 500 {
        assert!(Instant::now() < deadline, "the load made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    b.kill9();
    let out = load.wait_with_output().expect("load");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2000",
        "the client saw errors while the secondary was down; log:\n{}",
        a.log()
    );
    // An object over the catch-up's multipart threshold (64 MiB) also waits for the
    // secondary: it is copied in parts.
    let big = a.dir.path().join("big.bin");
    write_file(&big, 70 * 1024 * 1024 + 3, 7);
    a.ok(&a.aws(&["s3", "cp", big.to_str().expect("utf8"), "s3://load/big.bin"]));
    // And one sent in a single PUT: the replica keeps its plain MD5 ETag (one streamed PUT
    // too), so a client comparing ETags after a failover sees the same object.
    a.ok(&a.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "load",
        "--key",
        "one.bin",
        "--body",
        big.to_str().expect("utf8"),
    ]));
    let out = a.python(
        "load.py",
        &["delete", "load", "200", acks.to_str().expect("utf8")],
    );
    assert_eq!(
        a.ok(&out).trim(),
        "200",
        "deletes failed while the secondary was down"
    );

    let s = status(&a, "load");
    let dr = s["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["target"] == "dr:load"))
        .cloned()
        .expect("dr target in status");
    assert!(
        dr["owed_count"].as_i64().unwrap_or(0) > 0,
        "no backlog shown: {s}"
    );
    assert_eq!(dr["healthy"], false, "{s}");
    assert!(dr["oldest_owed_age_s"].as_f64().is_some(), "{s}");
    let m = metrics(&a);
    let owed_line = m
        .lines()
        .find(|l| l.starts_with("ferry_journal_owed_writes{") && l.contains("dr:load"))
        .unwrap_or_else(|| panic!("no backlog metric:\n{m}"));
    assert!(!owed_line.ends_with(" 0"), "{owed_line}");

    b.restart();
    wait_drained(&a, "load");
    assert_same(&a, "local:load", "dr:load");
    let m = metrics(&a);
    assert!(
        m.lines()
            .any(|l| l.starts_with("ferry_journal_synced_keys_total{") && l.contains("dr:load")),
        "no catch-up metric:\n{m}"
    );
    let n = b.ok(&b.aws(&["s3", "ls", "--recursive", "s3://load/"]));
    assert_eq!(
        n.lines().count(),
        1802,
        "the secondary should hold 2000 - 200 objects, big.bin and one.bin"
    );
    let etag = |f: &Ferry, key: &str| {
        let head = f.ok(&f.aws(&["s3api", "head-object", "--bucket", "load", "--key", key]));
        let v: Value = serde_json::from_str(&head).expect("head json");
        v["ETag"].as_str().unwrap_or_default().to_owned()
    };
    for key in ["one.bin", "big.bin"] {
        assert_eq!(etag(&b, key), etag(&a, key), "{key}: the replica's ETag");
    }
    assert!(!etag(&a, "one.bin").contains('-'));
    // Compare the caught-up bytes too, not only what the listings say.
    let back = a.dir.path().join("back.bin");
    b.ok(&b.aws(&[
        "s3",
        "cp",
        "s3://load/big.bin",
        back.to_str().expect("utf8"),
    ]));
    assert!(
        std::fs::read(&back).expect("read") == std::fs::read(&big).expect("read"),
        "the caught-up big object has other bytes"
    );
}

#[test]
fn kill9_during_load_loses_no_acknowledged_write() {
    let (mut a, _b) = pair("crash");
    let acks = a.dir.path().join("acks");
    for round in 0..20u64 {
        let before = lines(&acks);
        // Keys of its own per round: an unacknowledged overwrite that landed anyway would
        // make "the last acknowledged bytes" ambiguous.
        let prefix = format!("k/{round}/");
        let mut load = spawn_load(&a, "crash", 400, &acks, Some(&prefix));
        // Once writes flow, a different moment each round: 0-700 ms later.
        let deadline = Instant::now() + Duration::from_secs(60);
        while lines(&acks) < before + 5 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis((round * 397) % 700));
        a.kill9();
        let _ = load.wait();
        a.restart();
    }
    let n = assert_acks_on_primary(&a, "crash", &acks);
    assert!(n > 50, "too few acknowledged writes ({n}) to mean anything");
    wait_drained(&a, "crash");
    assert_same(&a, "local:crash", "dr:crash");
}

#[test]
fn failover_and_failback() {
    let (a, b) = pair("fover");
    let f = a.dir.path().join("x");
    write_file(&f, 1000, 1);
    let fp = f.to_str().expect("utf8");
    a.ok(&a.aws(&["s3", "cp", fp, "s3://fover/before"]));
    wait_drained(&a, "fover");

    // Read-only: reads come from the secondary, writes are refused with a clear error.
    b.ok(&b.aws(&["s3", "cp", fp, "s3://fover/only-on-dr"]));
    let out = a.ok(&a.cli(&[
        "bucket",
        "failover",
        "fover",
        "--to",
        "dr",
        "--mode",
        "read-only",
    ]));
    assert!(out.contains("read-only"), "{out}");
    a.ok(&a.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "fover",
        "--key",
        "only-on-dr",
    ]));
    let out = a.aws(&["s3", "cp", fp, "s3://fover/refused"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AccessDenied") && err.contains("read-only"),
        "{err}"
    );
    a.ok(&a.cli(&["bucket", "failback", "fover", "--wait"]));
    assert_eq!(status(&a, "fover")["mode"], "normal");
    let out = a.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "fover",
        "--key",
        "only-on-dr",
    ]);
    assert!(
        !out.status.success(),
        "reads should come from the primary again"
    );
    b.ok(&b.aws(&["s3", "rm", "s3://fover/only-on-dr"]));

    // Read-write: 500 writes and deletes land on the secondary, then fail back with --wait.
    a.ok(&a.cli(&[
        "bucket",
        "failover",
        "fover",
        "--to",
        "dr",
        "--mode",
        "read-write",
    ]));
    let tree = a.dir.path().join("rw");
    for i in 0..400 {
        write_file(&tree.join(format!("k{i:03}")), 50 + i, 1000 + i as u64);
    }
    a.ok(&a.aws(&[
        "s3",
        "cp",
        "--recursive",
        tree.to_str().expect("utf8"),
        "s3://fover/rw/",
    ]));
    // 100 deletes: every fourth key.
    a.ok(&a.aws(&[
        "s3",
        "rm",
        "--recursive",
        "s3://fover/rw/",
        "--exclude",
        "*",
        "--include",
        "*[02468]0",
        "--include",
        "*[02468]4",
        "--include",
        "*[02468]8",
        "--include",
        "*[13579]2",
        "--include",
        "*[13579]6",
    ]));
    let out = a.python("multiwrite_ops.py", &["fover"]);
    a.ok(&out);
    // Writes went to the secondary; the primary is only owed them (the catch-up worker may
    // already have delivered some).
    b.ok(&b.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "fover",
        "--key",
        "rw/k001",
    ]));
    let s = status(&a, "fover");
    assert!(
        s["mode"].as_str().unwrap_or("").contains("read-write"),
        "{s}"
    );
    assert_eq!(s["targets"][0]["target"], "dr:fover", "{s}");
    assert_eq!(s["targets"][1]["role"], "owed", "{s}");
    // Writes keep coming during the failback; every acknowledged one must survive it.
    let acks = a.dir.path().join("acks");
    let load = spawn_load(&a, "fover", 300, &acks, None);
    a.ok(&a.cli(&["bucket", "failback", "fover", "--wait"]));
    let out = load.wait_with_output().expect("load");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "300",
        "writes failed during failback"
    );
    assert_eq!(status(&a, "fover")["mode"], "normal");
    assert_eq!(assert_acks_on_primary(&a, "fover", &acks), 300);
    assert!(
        a.local_root().join("fover/rw/k001").exists(),
        "failback did not sync back"
    );
    assert!(
        !a.local_root().join("fover/rw/k000").exists(),
        "a delete was not synced back"
    );
    wait_drained(&a, "fover");
    assert_same(&a, "local:fover", "dr:fover");
}

#[test]
fn bad_policy_input_changes_nothing() {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    let err = |out: std::process::Output| {
        assert!(!out.status.success(), "expected a failure");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(a.cli(&[
        "bucket",
        "create",
        "bad",
        "--write-to",
        "local:bad,nosuch:bad",
    ]));
    assert!(e.contains("nosuch") && e.contains("no store"), "{e}");
    let e = err(a.cli(&["bucket", "create", "bad", "--write-to", "local"]));
    assert!(e.contains("store:bucket"), "{e}");
    // An empty write_to through the API.
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-H",
        ])
        .arg(format!(
            "authorization: Bearer {}",
            crate::support::ADMIN_TOKEN
        ))
        .args(["-d", r#"{"name":"bad","write_to":[]}"#])
        .arg(format!("{}/api/v1/buckets", a.admin))
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("write_to is empty"), "{body}");
    // A read target that gets no writes and has no bucket would serve only NoSuchBucket.
    let e = err(a.cli(&[
        "bucket",
        "create",
        "bad",
        "--write-to",
        "local:bad",
        "--read-from",
        "dr:bad",
    ]));
    assert!(e.contains("read target dr:bad has no bucket"), "{e}");
    let list = a.ok(&a.cli(&["bucket", "list", "--json"]));
    assert_eq!(list.trim(), "[]", "a refused create left a bucket behind");

    a.ok(&a.cli(&[
        "bucket",
        "create",
        "good",
        "--write-to",
        "local:good,dr:good",
    ]));
    let before = status(&a, "good");
    let e = err(a.cli(&[
        "bucket",
        "failover",
        "good",
        "--to",
        "local",
        "--mode",
        "read-only",
    ]));
    assert!(e.contains("not a secondary write target"), "{e}");
    let e = err(a.cli(&[
        "bucket",
        "failover",
        "good",
        "--to",
        "elsewhere",
        "--mode",
        "read-write",
    ]));
    assert!(e.contains("elsewhere"), "{e}");
    let e = err(a.cli(&["bucket", "failback", "good"]));
    assert!(e.contains("not failed over"), "{e}");
    let e = err(a.cli(&[
        "bucket",
        "policy",
        "good",
        "--write-to",
        "dr:good,ghost:x1y",
    ]));
    assert!(e.contains("ghost"), "{e}");
    let after = status(&a, "good");
    assert_eq!(before["mode"], after["mode"]);
    let list = a.ok(&a.cli(&["bucket", "list", "--json"]));
    assert!(
        list.contains("\"local\"") && list.contains("\"dr\""),
        "{list}"
    );
    let e = err(a.cli(&["bucket", "status", "nope"]));
    assert!(e.contains("nope"), "{e}");
    // "Could not compare" is not "they differ" (1): a script must be able to tell.
    let out = a.cli(&["verify", "local:good", "nostore:good"]);
    assert_eq!(out.status.code(), Some(3), "verify of an unknown store");
    let e = err(out);
    assert!(
        e.contains("could not compare") && e.contains("nostore"),
        "{e}"
    );

    // A valid policy change takes effect for the next write.
    let out = a.ok(&a.cli(&[
        "bucket",
        "policy",
        "good",
        "--write-to",
        "local:good,dr:good-two",
    ]));
    assert!(out.contains("dr:good-two"), "{out}");
    let f = a.dir.path().join("x");
    write_file(&f, 321, 5);
    cp_to(&a, &f, "s3://good/after");
    wait_drained(&a, "good");
    assert_same(&a, "local:good", "dr:good-two");
    b.ok(&b.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "good-two",
        "--key",
        "after",
    ]));
}

/// A read-write failover to a secondary that was behind (down while writes were acknowledged,
/// so it owed them): failback must not make the primary "equal" to it by undoing those
/// writes. The keys it still owes keep the primary's newer state, and reach the secondary
/// once roles are back; writes made during the failover reach the primary.
#[test]
fn failback_keeps_writes_the_failover_target_never_got() {
    let (a, mut b) = two_sites("lag", true);
    let file = |name: &str, body: &str| {
        let p = a.dir.path().join(name);
        std::fs::write(&p, body).expect("write");
        p.to_str().expect("utf8").to_owned()
    };
    let (old, new) = (file("old.txt", "old\n"), file("new.txt", "new\n"));
    a.ok(&a.aws(&["s3", "cp", &old, "s3://lag/doc.txt"]));
    a.ok(&a.aws(&["s3", "cp", &old, "s3://lag/gone.txt"]));
    a.ok(&a.aws(&["s3", "cp", &old, "s3://lag/both.txt"]));
    wait_drained(&a, "lag");

    // The secondary goes down; these are acknowledged and owed to it.
    b.kill9();
    a.ok(&a.aws(&["s3", "cp", &new, "s3://lag/doc.txt"]));
    a.ok(&a.aws(&["s3", "cp", &new, "s3://lag/fresh.txt"]));
    a.ok(&a.aws(&["s3", "rm", "s3://lag/gone.txt"]));
    a.ok(&a.aws(&["s3", "cp", &new, "s3://lag/both.txt"]));
    // Fail over to it anyway (the primary site is "lost"), then it comes back.
    let out = a.cli(&[
        "bucket",
        "failover",
        "lag",
        "--to",
        "dr",
        "--mode",
        "read-write",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("dr:lag took over 4 writes behind"), "{err}");
    b.restart();
    a.ok(&a.aws(&["s3", "cp", &new, "s3://lag/during.txt"]));
    // A key it owed, written again during the failover: that write is the newest.
    let later = file("later.txt", "later\n");
    a.ok(&a.aws(&["s3", "cp", &later, "s3://lag/both.txt"]));
    a.ok(&a.cli(&["bucket", "failback", "lag", "--wait"]));
    assert_eq!(status(&a, "lag")["mode"], "normal");

    let body = |key: &str| {
        let out = a.aws(&["s3", "cp", &format!("s3://lag/{key}"), "-"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(
        body("doc.txt").as_deref(),
        Some("new\n"),
        "a newer write was undone"
    );
    assert_eq!(
        body("fresh.txt").as_deref(),
        Some("new\n"),
        "a write was deleted"
    );
    assert_eq!(body("gone.txt"), None, "a delete was undone");
    assert_eq!(
        body("during.txt").as_deref(),
        Some("new\n"),
        "a failover write was lost"
    );
    assert_eq!(
        body("both.txt").as_deref(),
        Some("later\n"),
        "the newest write was lost"
    );
    wait_drained(&a, "lag");
    assert_same(&a, "local:lag", "dr:lag");
}

/// While a failback waits for its primary, other changes to the bucket are refused at once
/// (they used to queue behind it and apply minutes later), and status says it is running.
#[test]
fn changes_during_a_failback_are_refused_not_queued() {
    let a = Ferry::start();
    let mut b = Ferry::start_fixed_port();
    a.add_remote("dr", &b);
    a.ok(&a.cli(&["bucket", "create", "fbk", "--write-to", "dr:fbk,local:fbk"]));
    a.ok(&a.cli(&[
        "bucket",
        "failover",
        "fbk",
        "--to",
        "local",
        "--mode",
        "read-write",
    ]));
    b.kill9();
    let f = a.dir.path().join("x");
    write_file(&f, 100, 3);
    cp_to(&a, &f, "s3://fbk/x");
    // `failback --wait`, given up by its client (Ctrl-C): the failback goes on.
    let mut waiting = Command::new(crate::support::ferry_bin())
        .args(["--server", &a.admin, "bucket", "failback", "fbk", "--wait"])
        .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn failback");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !status(&a, "fbk")["mode"]
        .as_str()
        .unwrap_or("")
        .contains("failing back")
    {
        assert!(
            Instant::now() < deadline,
            "status never showed the failback"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    waiting.kill().expect("kill the waiting client");
    let _ = waiting.wait();
    std::thread::sleep(Duration::from_millis(300));
    for args in [
        &[
            "bucket",
            "failover",
            "fbk",
            "--to",
            "local",
            "--mode",
            "read-only",
        ][..],
        &["bucket", "policy", "fbk", "--write-to", "local:fbk"][..],
        &["bucket", "failback", "fbk"][..],
    ] {
        let started = Instant::now();
        let out = a.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was taken");
        assert!(err.contains("is failing back"), "{args:?}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{args:?} waited"
        );
    }
    b.restart();
    let deadline = Instant::now() + Duration::from_secs(120);
    while status(&a, "fbk")["mode"] != "normal" {
        assert!(Instant::now() < deadline, "the failback never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_drained(&a, "fbk");
    assert_same(&a, "dr:fbk", "local:fbk");
}

/// A policy change or a removal that would strand acknowledged writes the journal still owes
/// was accepted without a word: a secondary that owed writes could be dropped (its rows then
/// owed for ever), made the primary (acknowledged keys answered 404), or the bucket removed
/// (the journal dropped). Each is refused while anything is owed, and state stays as it was.
#[test]
fn changes_that_would_strand_owed_writes_are_refused() {
    let (a, mut b) = two_sites("owe", true);
    b.kill9();
    let f = a.dir.path().join("x");
    write_file(&f, 100, 1);
    cp_to(&a, &f, "s3://owe/k");
    let owed = |s: &Value| s["owed_total"].as_i64().expect("owed_total");
    assert_eq!(owed(&status(&a, "owe")), 1);
    for args in [
        &["bucket", "policy", "owe", "--write-to", "local:owe"][..],
        &["bucket", "remove", "owe"][..],
    ] {
        let out = a.cli(args);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(e.contains("dr:owe") && e.contains("owed"), "{args:?}: {e}");
    }
    // Making it the primary (refused already since it cannot be reached: tried anyway).
    let out = a.cli(&["bucket", "policy", "owe", "--write-to", "dr:owe,local:owe"]);
    assert!(!out.status.success(), "the swap was accepted");
    let s = status(&a, "owe");
    assert_eq!(owed(&s), 1, "{s}");
    let list = a.ok(&a.cli(&["bucket", "list", "--json"]));
    assert!(list.contains(r#"{"bucket":"owe","store":"dr"}"#), "{list}");
    // Nor can the store a bucket writes to be removed (the bucket would stop being served
    // at the next start, its name falling back to a plain bucket).
    let out = a.cli(&["store", "remove", "dr"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("bucket owe uses it"),
        "{e}"
    );
    // Once the secondary is back and paid, the same removals go through.
    b.restart();
    wait_drained(&a, "owe");
    a.ok(&a.cli(&["bucket", "remove", "owe"]));
    a.ok(&a.cli(&["store", "remove", "dr"]));
}

/// Failback made the primary equal to the failover target by deleting what only the primary
/// held: objects the secondary was never given (here: files picked up by a rescan of the
/// primary's store) were deleted by a failover and failback with no write at all in between.
#[test]
fn failback_never_deletes_what_only_the_primary_holds() {
    let (a, _b) = two_sites("keep", false);
    for k in ["one", "two"] {
        write_file(&a.local_root().join("keep").join(k), 200, 7);
    }
    a.ok(&a.cli(&["store", "rescan", "local"]));
    a.ok(&a.cli(&[
        "bucket",
        "failover",
        "keep",
        "--to",
        "dr",
        "--mode",
        "read-write",
    ]));
    a.ok(&a.cli(&["bucket", "failback", "keep", "--wait"]));
    assert_eq!(status(&a, "keep")["mode"], "normal");
    for k in ["one", "two"] {
        a.ok(&a.aws(&["s3api", "head-object", "--bucket", "keep", "--key", k]));
    }
}

/// A secondary that stalls (a hung host: SIGSTOP here) was never marked down: every write
/// waited the full grace for it again, so a DeleteObjects of N keys took N times the grace
/// and clients timed out with a healthy primary; bucket changes waited out the S3 client's
/// whole retry budget (minutes). After the first write that waits the grace, writes owe the
/// secondary at once, and bucket changes wait at most the grace.
#[test]
fn a_stalled_secondary_is_waited_for_once() {
    let (a, b) = two_sites("stall", false);
    let pid = rustix::process::Pid::from_raw(b.pid().expect("pid") as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    let f = a.dir.path().join("x");
    write_file(&f, 100, 1);
    for i in 0..4 {
        cp_to(&a, &f, &format!("s3://stall/k{i}"));
    }
    a.ok(&a.aws(&[
        "s3api",
        "put-bucket-versioning",
        "--bucket",
        "stall",
        "--versioning-configuration",
        "Status=Enabled",
    ]));
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT");
    let log = a.log();
    let waited = log.matches("secondary write too slow").count();
    assert_eq!(waited, 1, "writes waited the grace {waited} times:\n{log}");
    wait_drained(&a, "stall");
    assert_same(&a, "local:stall", "dr:stall");
}

/// The catch-up worker held a key's lock while it copied the key to its target: with the
/// target stalled, that copy waits out the S3 client's attempt timeouts (minutes), and a
/// client write of the same key waited as long, though the primary was fine. The copy now
/// runs without the lock, and a write during it keeps the key owed.
#[test]
fn a_write_does_not_wait_for_a_catch_up_copy_of_its_key() {
    let (a, b) = two_sites("hot", false);
    let pid = rustix::process::Pid::from_raw(b.pid().expect("pid") as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    let (v1, v2) = (a.dir.path().join("v1"), a.dir.path().join("v2"));
    write_file(&v1, 1000, 1);
    write_file(&v2, 1000, 2);
    // Owed to the stalled secondary; the worker takes the row after a moment and its copy
    // hangs on the secondary.
    cp_to(&a, &v1, "s3://hot/k");
    std::thread::sleep(std::time::Duration::from_secs(4));
    let a_ref = &a;
    let second = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::channel();
        s.spawn(move || {
            let _ = tx.send(a_ref.aws(&["s3", "cp", v2.to_str().expect("utf8"), "s3://hot/k"]));
        });
        // Far below the copy's wait (an attempt timeout of 60 s), far above a write's.
        let r = rx.recv_timeout(std::time::Duration::from_secs(30));
        rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT");
        r
    });
    let out =
        second.expect("a write of the key waited for the catch-up's copy to a stalled target");
    a.ok(&out);
    // The copy of the older bytes lands after the secondary resumes; the key stays owed
    // and ends with the newer bytes on both.
    wait_drained(&a, "hot");
    assert_same(&a, "local:hot", "dr:hot");
}

/// A multipart completion and a copy are owed to the secondaries before their size is known:
/// status showed 0 bytes owed for them, whatever their size. They carry the size once the
/// primary has made them.
#[test]
fn owed_bytes_count_multipart_uploads_and_copies() {
    let (a, mut b) = two_sites("sized", true);
    b.kill9();
    let f = a.dir.path().join("big");
    write_file(&f, 20 << 20, 7);
    // 20 MiB: awscli sends it in parts (its threshold is 8 MiB); then a server-side copy.
    cp_to(&a, &f, "s3://sized/big");
    a.ok(&a.aws(&["s3", "cp", "s3://sized/big", "s3://sized/copy"]));
    let st = status(&a, "sized");
    let dr = st["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["target"] == "dr:sized"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(dr["owed_count"], 2, "{st}");
    assert_eq!(dr["owed_bytes"], 2 * (20 << 20), "{st}");
    b.restart();
    wait_drained(&a, "sized");
    assert_same(&a, "local:sized", "dr:sized");
}

/// A secondary added to a bucket that already held objects never got them: status said it
/// owed nothing, `verify` differed for ever, and a failover to it served an empty bucket.
/// What the primary holds is owed to a new secondary, and caught up.
#[test]
fn a_secondary_added_later_is_given_what_the_primary_holds() {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    a.ok(&a.cli(&["bucket", "create", "late", "--write-to", "local:late"]));
    let f = a.dir.path().join("x");
    write_file(&f, 300, 3);
    for i in 0..5 {
        cp_to(&a, &f, &format!("s3://late/k{i}"));
    }
    a.ok(&a.cli(&[
        "bucket",
        "policy",
        "late",
        "--write-to",
        "local:late,dr:late",
    ]));
    wait_drained(&a, "late");
    assert_same(&a, "local:late", "dr:late");
}

/// After a failover to a target that does not answer, failback was refused (the bucket was
/// stuck failing every request); `failback --wait` with the failover target gone waited an
/// hour while it owed the primary writes. Failback from a target that is gone fails at once
/// when the primary is owed writes, and goes through when it is owed none. `--to
/// store:bucket` names one of two targets on a store.
#[test]
fn failover_and_failback_with_a_target_that_does_not_answer() {
    let a = Ferry::start();
    let mut b = Ferry::start_fixed_port();
    a.add_remote("dr", &b);
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "dead",
        "--write-to",
        "local:dead,dr:dead-a,dr:dead-b",
    ]));
    let fail = |args: &[&str], want: &str| {
        let out = a.cli(args);
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success() && e.contains(want), "{args:?}: {e}");
    };
    let over = |to: &str| {
        a.cli(&[
            "bucket",
            "failover",
            "dead",
            "--to",
            to,
            "--mode",
            "read-write",
        ])
    };
    // The second target on the store, by its full name.
    a.ok(&over("dr:dead-b"));
    assert!(status(&a, "dead").to_string().contains("dead-b"));
    a.ok(&a.cli(&["bucket", "failback", "dead", "--wait"]));
    wait_drained(&a, "dead");

    // Failed over to a target that does not answer (taken: the operator decides), then
    // failback: nothing was written meanwhile, so failback needs nothing from it.
    b.kill9();
    a.ok(&over("dr"));
    a.ok(&a.cli(&["bucket", "failback", "dead", "--wait"]));
    assert_eq!(status(&a, "dead")["mode"], "normal");
    // Failed over, written to, then gone: the primary is owed what only it holds (large, so
    // the catch-up worker is still copying it to the primary when the target dies).
    b.restart();
    a.ok(&over("dr"));
    let f = a.dir.path().join("x");
    write_file(&f, 100 << 20, 4);
    cp_to(&a, &f, "s3://dead/during");
    b.kill9();
    fail(&["bucket", "failback", "dead", "--wait"], "does not answer");
    // Started in the background, its failure was only in the server's log; status says it.
    a.ok(&a.cli(&["bucket", "failback", "dead"]));
    let mut shown = String::new();
    for _ in 0..100 {
        shown = String::from_utf8_lossy(&a.cli(&["bucket", "status", "dead"]).stdout).into_owned();
        if shown.contains("last failback failed") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        shown.contains("last failback failed") && shown.contains("does not answer"),
        "{shown}"
    );
    assert!(
        status(&a, "dead")["failback_error"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not answer")),
        "{}",
        status(&a, "dead")
    );
    b.restart();
    a.ok(&a.cli(&["bucket", "failback", "dead", "--wait"]));
    // A failback that succeeds clears it.
    assert!(status(&a, "dead").get("failback_error").is_none());
    a.ok(&a.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "dead",
        "--key",
        "during",
    ]));
}

/// The catch-up worker always read the oldest page of the journal: once a full page of rows
/// were keys the secondary refuses (here `x/NNNN`, which its `x` object blocks), no other
/// key was ever delivered. It looks past a page that failed.
#[test]
fn keys_a_secondary_refuses_do_not_hold_back_the_others() {
    let (a, mut b) = two_sites("hol", true);
    // On the secondary alone, an object `x`: it cannot hold `x/...` keys (a path conflict).
    let f = a.dir.path().join("x");
    write_file(&f, 10, 1);
    cp_to(&b, &f, "s3://hol/x");
    let tree = a.dir.path().join("t/x");
    for i in 0..2100 {
        write_file(&tree.join(format!("{i:04}")), 10, i);
    }
    a.ok(&a.aws(&[
        "s3",
        "cp",
        "--recursive",
        "--quiet",
        a.dir.path().join("t").to_str().expect("utf8"),
        "s3://hol/",
    ]));
    // `z` is owed too: the secondary is down a moment while it is written.
    b.kill9();
    cp_to(&a, &f, "s3://hol/z");
    b.restart();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !b
        .aws(&["s3api", "head-object", "--bucket", "hol", "--key", "z"])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "z never reached the secondary: {}",
            status(&a, "hol")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Starts a PUT of `path` on `f` whose client trickles its body and never finishes; returns
/// once its first bytes are out.
fn stalled_put(
    f: &Ferry,
    path: &str,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(crate::support::repo().join("tests/it/py/stalled_put.py"))
        .arg(path)
        .stdout(Stdio::piped());
    f.client_env(&mut cmd);
    let mut child = cmd.spawn().expect("spawn stalled_put.py");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(|l| l.ok());
    assert_eq!(
        first.as_deref(),
        Some("sending"),
        "the stalled upload did not start"
    );
    (child, lines)
}

/// Runs the admin command `args` on `f`; returns whether it succeeded and its stderr. Fails
/// the test if it is still running after two minutes (it waits for something that never
/// comes).
#[track_caller]
fn run_bounded(f: &Ferry, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(crate::support::ferry_bin())
        .args(["--server", &f.admin])
        .args(args)
        .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            return (
                st.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} is still waiting\nlog:\n{}", f.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`run_bounded`], which must succeed.
#[track_caller]
fn ok_bounded(f: &Ferry, args: &[&str]) {
    let (ok, err) = run_bounded(f, args);
    assert!(ok, "{args:?}: {err}");
}

/// A role change waited without limit for the writes in flight, and the writes after it
/// queued behind: one client stalled mid-body held a failover or a failback for as long as it
/// kept trickling bytes. Now a body still streaming after a short hold is cut, its client is
/// answered 503 (S3 clients retry that), and the change goes ahead.
#[test]
fn a_stalled_upload_holds_neither_failover_nor_failback() {
    let (a, b) = pair("stall");
    let (mut up, mut answer) = stalled_put(&a, "/stall/one");
    run_bounded(
        &a,
        &[
            "bucket",
            "failover",
            "stall",
            "--to",
            "dr",
            "--mode",
            "read-write",
        ],
    );
    let said = answer.next().and_then(|l| l.ok());
    assert_eq!(said.as_deref(), Some("503 ServiceUnavailable"));
    let _ = up.wait();
    // Writes after the change go to the new primary.
    let f = a.dir.path().join("after");
    write_file(&f, 1000, 7);
    cp_to(&a, &f, "s3://stall/after");
    b.ok(&b.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "stall",
        "--key",
        "after",
    ]));

    let (mut up, mut answer) = stalled_put(&a, "/stall/two");
    ok_bounded(&a, &["bucket", "failback", "stall", "--wait"]);
    let said = answer.next().and_then(|l| l.ok());
    assert_eq!(said.as_deref(), Some("503 ServiceUnavailable"));
    let _ = up.wait();
    assert_eq!(status(&a, "stall")["mode"], "normal");
    // Neither cut upload left an object anywhere.
    for f in [&a, &b] {
        let out = f.aws(&["s3api", "list-objects-v2", "--bucket", "stall"]);
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            !listing.contains("\"one\"") && !listing.contains("\"two\""),
            "{listing}"
        );
    }
}

/// A failback to a primary that had died waited out the hour-long drain limit before it said
/// so. Once nothing has drained for a while and the primary does not answer, it gives up,
/// naming the primary, and the bucket stays failed over.
#[test]
fn failback_to_a_dead_primary_gives_up() {
    let a = Ferry::start();
    let mut b = Ferry::start();
    a.add_remote("dr", &b);
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "gone",
        "--write-to",
        "dr:gone,local:gone",
    ]));
    a.ok(&a.cli(&[
        "bucket",
        "failover",
        "gone",
        "--to",
        "local",
        "--mode",
        "read-write",
    ]));
    let f = a.dir.path().join("x");
    write_file(&f, 1000, 5);
    b.kill9();
    cp_to(&a, &f, "s3://gone/x");
    let (ok, err) = run_bounded(&a, &["bucket", "failback", "gone", "--wait"]);
    assert!(
        !ok && err.contains("dr:gone does not answer") && err.contains("owed 1 write"),
        "{err}"
    );
    assert!(
        status(&a, "gone")["mode"]
            .as_str()
            .is_some_and(|m| m.contains("read-write")),
        "{}",
        status(&a, "gone")
    );
}

/// Multipart uploads across role changes. An upload lives on the target that took the
/// bucket's writes when it began, but its calls went to whichever target took them at the
/// time of the call; uploads begun during a read-write failover stayed on the failover target
/// for ever after failback (unlisted, unremovable through Ferry); a read-only failover let an
/// abort through to the primary and listed the primary's uploads. Now an upload's calls go
/// to its holder or fail with NoSuchUpload saying why, failback aborts the uploads begun
/// during the failover, and a read-only failover refuses aborts and lists the uploads of the
/// target serving reads.
#[test]
fn multipart_uploads_across_failover_and_failback() {
    let (a, b) = pair("mpr");
    let mp = |f: &Ferry, args: &[&str]| -> String {
        let out = f.python("multipart_roles.py", args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let failover = |mode: &str| {
        a.ok(&a.cli(&["bucket", "failover", "mpr", "--to", "dr", "--mode", mode]));
    };
    let before = mp(&a, &["begin", "mpr", "before"]);
    let dropped = mp(&a, &["begin", "mpr", "dropped"]);
    let listed = mp(&a, &["uploads", "mpr"]);
    assert!(
        listed.contains(&before) && listed.contains(&dropped),
        "{listed}"
    );

    failover("read-write");
    let said = mp(&a, &["part", "mpr", "before", &before, "2"]);
    assert!(
        said.starts_with("NoSuchUpload: ") && said.contains("begun on local:mpr"),
        "{said}"
    );
    // An abort reaches the upload where it is: a client told "no such upload" would leave
    // its parts on the old primary for ever.
    assert_eq!(mp(&a, &["abort", "mpr", "dropped", &dropped]), "ok");
    let during = mp(&a, &["begin", "mpr", "during"]);
    assert_eq!(mp(&a, &["uploads", "mpr"]), during);
    assert_eq!(mp(&a, &["complete", "mpr", "during", &during]), "ok");
    let left = mp(&a, &["begin", "mpr", "left"]);
    a.ok(&a.cli(&["bucket", "failback", "mpr", "--wait"]));

    let said = mp(&a, &["part", "mpr", "left", &left, "2"]);
    assert!(
        said.starts_with("NoSuchUpload: ") && said.contains("begun on dr:mpr"),
        "{said}"
    );
    assert_eq!(mp(&b, &["uploads", "mpr"]), "", "an upload was left on dr");
    assert_eq!(
        mp(&a, &["uploads", "mpr"]),
        before,
        "the aborted upload is still listed"
    );
    // The upload begun before the failover is the primary's again, and completes.
    assert_eq!(mp(&a, &["part", "mpr", "before", &before, "2"]), "ok");
    assert_eq!(mp(&a, &["complete", "mpr", "before", &before]), "ok");
    for key in ["before", "during"] {
        a.ok(&a.aws(&["s3api", "head-object", "--bucket", "mpr", "--key", key]));
    }

    let ro = mp(&a, &["begin", "mpr", "ro"]);
    failover("read-only");
    let said = mp(&a, &["abort", "mpr", "ro", &ro]);
    assert!(said.starts_with("AccessDenied: "), "{said}");
    assert_eq!(mp(&a, &["uploads", "mpr"]), "");
    a.ok(&a.cli(&["bucket", "failback", "mpr", "--wait"]));
    assert_eq!(mp(&a, &["abort", "mpr", "ro", &ro]), "ok");
}

/// A write stuck inside a store that stopped answering (here a DELETE waiting on a primary
/// that is frozen, as a hung host would be) held a failover away from that primary: only
/// streaming bodies were cut, so the change gave up after its bound, and gave up again on
/// every retry while clients kept writing. The whole write is cut now (its client gets 503;
/// what it journaled stays owed), and the failover goes through.
#[test]
fn a_write_stuck_on_a_hung_primary_does_not_hold_the_failover() {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "hung",
        "--write-to",
        "dr:hung,local:hung",
    ]));
    let f = a.dir.path().join("k");
    write_file(&f, 1000, 9);
    cp_to(&a, &f, "s3://hung/k");
    wait_drained(&a, "hung");
    let pid = b.pid().expect("b runs").to_string();
    let signal = |sig: &str| {
        let st = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(st.success(), "kill {sig}");
    };
    signal("-STOP");
    let mut cmd = Command::new(venv_bin("aws"));
    cmd.args(["--endpoint-url", &a.s3, "s3api", "delete-object"])
        .args(["--bucket", "hung", "--key", "k"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    a.client_env(&mut cmd);
    let mut deleting = cmd.spawn().expect("spawn aws");
    std::thread::sleep(Duration::from_secs(2));
    let (ok, err) = run_bounded(
        &a,
        &[
            "bucket",
            "failover",
            "hung",
            "--to",
            "local",
            "--mode",
            "read-write",
        ],
    );
    signal("-CONT");
    let _ = deleting.kill();
    let _ = deleting.wait();
    assert!(
        ok,
        "the failover was held by a write stuck on the hung primary: {err}"
    );
    assert!(
        status(&a, "hung")["mode"]
            .as_str()
            .is_some_and(|m| m.contains("read-write")),
        "{}",
        status(&a, "hung")
    );
}
