//! Multipart uploads Ferry opens itself on a target (a catch-up copy of a large object) end,
//! even when the process that opened one is killed mid-copy.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::{assert_same, cp_to, wait_drained};
use crate::support::{ACCESS_KEY, Ferry, SECRET_KEY, fault_proxy, fresh_pg_database, write_file};

/// The uploads `f` lists in `bucket`.
fn uploads(f: &Ferry, bucket: &str) -> Vec<Value> {
    let out = f.ok(&f.aws(&["s3api", "list-multipart-uploads", "--bucket", bucket]));
    if out.trim().is_empty() {
        return Vec::new();
    }
    let v: Value = serde_json::from_str(&out).expect("uploads json");
    v["Uploads"].as_array().cloned().unwrap_or_default()
}

/// A catch-up worker copying a multipart object to a secondary was killed with the upload
/// open there (its parts held up on the way): the upload stayed on the secondary for ever,
/// its parts stored and nobody knowing its id. The next process aborts it.
#[test]
fn an_upload_a_killed_catch_up_opened_is_aborted_by_the_next_process() {
    let mut a = Ferry::start();
    let b = Ferry::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let hold = tmp.path().join("hold");
    let proxy = fault_proxy(
        &b.s3,
        "0",
        &tmp.path().join("proxy.json"),
        &["--hold-parts-while", hold.to_str().expect("utf8")],
    );
    a.add_s3_store("dr", &proxy.endpoint, ACCESS_KEY, SECRET_KEY);
    a.ok(&a.cli(&["bucket", "create", "big", "--write-to", "local:big"]));
    // awscli uploads 40 MiB in 8 MiB parts: the catch-up copies it in the same parts.
    let f = tmp.path().join("x");
    write_file(&f, 40 << 20, 9);
    cp_to(&a, &f, "s3://big/obj");
    std::fs::write(&hold, b"").expect("hold");
    a.ok(&a.cli(&["bucket", "policy", "big", "--write-to", "local:big,dr:big"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while uploads(&b, "big").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the catch-up opened no upload on the secondary; log:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    a.kill9();
    std::fs::remove_file(&hold).expect("release");
    a.restart();
    wait_drained(&a, "big");
    assert_same(&a, "local:big", "dr:big");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = uploads(&b, "big");
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uploads left on the secondary: {left:?}; log:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        a.log()
            .contains("aborted a multipart upload an interrupted copy left behind"),
        "{}",
        a.log()
    );
}

/// Two `ferry serve` on one PostgreSQL state database would each serve its namespace
/// buckets and run catch-up workers over one journal, with locks each holds in its own
/// memory, and each take a starting one's sweep for its own uploads' (a review). A second
/// server elsewhere is refused, naming the first; the first started again at its own place
/// (after kill -9) is not.
#[test]
fn a_second_server_on_one_postgresql_state_database_is_refused() {
    let db = fresh_pg_database();
    let mut a = Ferry::start_with(&["--db", &db]);
    let other = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(crate::support::ferry_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--db",
            &db,
            "--data",
        ])
        .arg(other.path().join("data"))
        .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another `ferry serve` uses this state database")
            && err.contains(&a.data().canonicalize().expect("dir").display().to_string()),
        "{err}"
    );
    a.kill9();
    a.restart();
    a.ok(&a.aws(&["s3", "mb", "s3://still"]));
}
