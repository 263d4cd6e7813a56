//! S3 behaviour through real clients: the basics with awscli and boto3, and bad input that
//! must get the S3 error AWS would give (never a 500 or a dropped connection).

use crate::support::{Ferry, ok};

#[test]
fn boto3_basics() {
    let f = Ferry::start();
    let out = f.python("basics.py", &[]);
    ok(&out);
}

#[test]
fn multipart_checksum_types() {
    let f = Ferry::start();
    ok(&f.python("checksum_types.py", &[]));
}

#[test]
fn conditional_requests() {
    let f = Ferry::start();
    ok(&f.python("conditions.py", &[]));
}

#[test]
fn s3_rules_at_the_edges() {
    let f = Ferry::start();
    ok(&f.python("s3_rules.py", &[]));
}

#[test]
fn bad_input_gets_s3_errors() {
    let f = Ferry::start();
    let out = f.python("bad_input.py", &[]);
    ok(&out);
    assert!(
        !f.log().contains("panicked"),
        "server panicked:\n{}",
        f.log()
    );
}

#[test]
fn virtual_host_style() {
    let f = Ferry::start_with(&["--domain", "s3.ferry.test"]);
    ok(&f.python("virtual_host.py", &["s3.ferry.test"]));
    // A domain given with a port is matched without it, as hosts are (it matched none, and
    // a virtual-host PUT of a key made a bucket of that name).
    let f = Ferry::start_with(&["--domain", "s3.ferry.test:9000"]);
    ok(&f.python("virtual_host.py", &["s3.ferry.test"]));
}

/// boto3's SigV2 (`signature_version='s3'`, and presigned URLs for the global endpoint)
/// signs a path-style bucket request as `/bucket/` and sends `/bucket`: listings and every
/// other bucket call were refused with SignatureDoesNotMatch, object calls worked.
#[test]
fn sigv2_bucket_requests_are_taken() {
    let f = Ferry::start();
    ok(&f.python("sigv2.py", &[]));
}

#[test]
fn requests_s3_refuses_are_refused() {
    let f = Ferry::start();
    let root = f.local_root();
    ok(&f.python("s3_guards.py", &[&root.to_string_lossy()]));
}

/// A client that stops was waited for without limit: a connection that sent nothing, a
/// trickled request head, an idle keep-alive connection and a stalled body all held their
/// connection (and a stalled body its concurrency slot and, for a conditional PUT, its key's
/// lock) for ever, so enough of them, signed or not, stopped the server. Each now ends after
/// `--client-timeout` (a request head after at most 30 s), the body with S3's RequestTimeout.
#[test]
fn clients_that_stop_are_given_up() {
    let f = Ferry::start_with(&["--client-timeout", "2"]);
    let out = f.python("stalls.py", &[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "silent closed",
        "head closed",
        "idle closed",
        "body 400 RequestTimeout",
        "lock ok",
        "xml 400 RequestTimeout",
        "form ok",
    ] {
        assert!(said.lines().any(|l| l == line), "no {line:?} in:\n{said}");
    }
}

/// If-Range was ignored: a client resuming a download of an object that had changed got the
/// new version's bytes after the old one's (RFC 9110 says: the whole object, 200).
#[test]
fn if_range_serves_the_range_only_for_the_same_object() {
    let f = Ferry::start();
    let out = f.python("if_range.py", &[]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// s3s logged every error answer at ERROR ("op returns error", "failed to prepare"): a 404 or
/// an unsigned request filled the log of a server anyone can reach. Client errors are not
/// the server's errors.
#[test]
fn client_errors_are_not_logged_as_server_errors() {
    let f = Ferry::start();
    ok(&f.aws(&["s3", "mb", "s3://quiet"]));
    let out = f.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "quiet",
        "--key",
        "missing",
    ]);
    assert!(!out.status.success());
    let anonymous = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/quiet", f.s3),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&anonymous.stdout), "403");
    // A malformed XML body (s3s logged it whole) and a 501 (s3s logged every 5xx answer
    // with a dump of the response).
    ok(&f.python("quiet_log.py", &[]));
    let log = f.log();
    assert!(!log.contains("ERROR"), "{log}");
    assert!(!log.contains("TAGCONTENTNOTFORLOGS"), "{log}");
}

/// A full disk: writes get 507 XFerryStorageFull, reads go on, and deletes and aborts go
/// through (the store's reserve), so the disk can be emptied through S3; then writes work
/// again without a restart.
#[test]
fn a_full_disk_can_be_emptied_through_s3() {
    let mut f = Ferry::start_on_small_disk(32);
    let out = f.python("full_disk.py", &[]);
    ok(&out);
    let log = f.log();
    assert!(!log.contains("panicked"), "{log}");
    f.stop();
}

/// A write refused on a full disk leaves no partial body in the store's `tmp/` (each retry
/// left one more until a restart).
#[test]
fn a_write_refused_on_a_full_disk_leaves_nothing_behind() {
    let mut f = Ferry::start_on_small_disk(24);
    // The store's tmpfs is the server's own: reached through its root.
    let pid = f.pid().expect("pid");
    let root = std::path::PathBuf::from(format!("/proc/{pid}/root"))
        .join(f.local_root().strip_prefix("/").expect("an absolute path"));
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    assert!(
        mounts.lines().any(
            |l| l.contains(" tmpfs ") && l.contains(&format!(" {} ", f.local_root().display()))
        ),
        "the store is not on the server's tmpfs (the filler must not go to the real disk):\n{mounts}"
    );
    ok(&f.python("full_disk_tmp.py", &[root.to_str().expect("utf8")]));
    f.stop();
}

/// An object kept with an archive class (GLACIER, as a migration keeps it) could not be
/// downloaded with awscli: it skips an archived object unless HEAD says a restored copy is
/// ready, and `restore-object`, its remedy, answered 501. The local store serves such
/// objects at once, so it says so, and a restore is answered as one already done.
#[test]
fn archive_class_objects_download_with_awscli() {
    let f = Ferry::start();
    let d = f.dir.path();
    f.ok(&f.aws(&["s3", "mb", "s3://cold"]));
    let file = d.join("frozen");
    std::fs::write(&file, b"kept cold\n").expect("write");
    for (key, class) in [
        ("frozen", "GLACIER"),
        ("deep", "DEEP_ARCHIVE"),
        ("warm", "STANDARD_IA"),
    ] {
        f.ok(&f.aws(&[
            "s3",
            "cp",
            "--storage-class",
            class,
            &file.to_string_lossy(),
            &format!("s3://cold/{key}"),
        ]));
    }
    for key in ["frozen", "deep"] {
        let out = d.join(format!("{key}.down"));
        f.ok(&f.aws(&[
            "s3",
            "cp",
            &format!("s3://cold/{key}"),
            &out.to_string_lossy(),
        ]));
        assert_eq!(std::fs::read(&out).expect("downloaded"), b"kept cold\n");
        f.ok(&f.aws(&[
            "s3api",
            "restore-object",
            "--bucket",
            "cold",
            "--key",
            key,
            "--restore-request",
            "Days=1",
        ]));
    }
    let head = f.ok(&f.aws(&["s3api", "head-object", "--bucket", "cold", "--key", "warm"]));
    assert!(!head.contains("Restore"), "{head}");
    let warm = f.aws(&[
        "s3api",
        "restore-object",
        "--bucket",
        "cold",
        "--key",
        "warm",
        "--restore-request",
        "Days=1",
    ]);
    let said = String::from_utf8_lossy(&warm.stderr);
    assert!(said.contains("InvalidObjectState"), "{said}");
    let missing = f.aws(&[
        "s3api",
        "restore-object",
        "--bucket",
        "cold",
        "--key",
        "nope",
    ]);
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(said.contains("NoSuchKey"), "{said}");
}

/// SIGTERM waits for the requests in flight (30 s at most); a second SIGTERM or Ctrl-C stops
/// at once, as an operator who presses Ctrl-C twice expects. It waited the 30 s regardless.
#[test]
fn a_second_signal_stops_at_once() {
    let mut f = Ferry::start();
    ok(&f.aws(&["s3", "mb", "s3://drain"]));
    let (mut up, _answer) = f.stalled_put("/drain/slow");
    f.signal("TERM");
    assert!(
        f.wait_exit(std::time::Duration::from_secs(2)).is_none(),
        "the first signal did not wait for the upload in flight"
    );
    f.signal("INT");
    let status = f.wait_exit(std::time::Duration::from_secs(10));
    let _ = up.kill();
    let _ = up.wait();
    assert!(
        status.is_some(),
        "still draining after a second signal:\n{}",
        f.log()
    );
    assert!(f.log().contains("second signal"), "{}", f.log());
    assert_eq!(status.and_then(|s| s.code()), Some(130), "Ctrl-C's status");
}

/// A server stopped on a full disk would not start again (opening the store's index needs a
/// little room: "database or disk is full"), so the disk could not be emptied through S3. It
/// starts on the reserve, serves reads, and deletes make room. The whole run happens in one
/// mount namespace (the small disk lives as long as it does).
#[test]
fn a_server_starts_on_a_full_disk() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let local = data.join("stores/local");
    std::fs::create_dir_all(&local).expect("store dir");
    let out = std::process::Command::new("unshare")
        .args(["-rm", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=32m tmpfs "$0" && exec "$@""#)
        .arg(&local)
        .arg(crate::support::venv_bin("python"))
        .arg(crate::support::repo().join("tests/it/py/full_disk_restart.py"))
        .arg(crate::support::ferry_bin())
        .arg(&data)
        .output()
        .expect("run");
    let log = std::fs::read_to_string(tmp.path().join("serve.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}{}\nserver log:\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!log.contains("panicked"), "{log}");
}
