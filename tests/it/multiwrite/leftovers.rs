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

/// Two servers share a PostgreSQL state database. One's catch-up copy has an upload open on
/// the secondary (its parts held up) when the other starts: the starting server's sweep took
/// that upload for one an earlier process left, and aborted it under the live copy. It now
/// leaves the uploads of a process that says it is alive, and the copy completes.
#[test]
fn a_server_starting_leaves_the_uploads_of_a_live_server_sharing_its_state() {
    let primary = Ferry::start();
    let secondary = Ferry::start();
    let tmp = tempfile::tempdir().expect("tmp");
    let hold = tmp.path().join("hold");
    let proxy = fault_proxy(
        &secondary.s3,
        "0",
        &tmp.path().join("proxy.json"),
        &["--hold-parts-while", hold.to_str().expect("utf8")],
    );
    let db = fresh_pg_database();
    let a = Ferry::start_with(&["--db", &db]);
    a.add_s3_store("px", &primary.s3, ACCESS_KEY, SECRET_KEY);
    a.add_s3_store("dr", &proxy.endpoint, ACCESS_KEY, SECRET_KEY);
    a.ok(&a.cli(&["bucket", "create", "big", "--write-to", "px:big"]));
    let f = tmp.path().join("x");
    write_file(&f, 40 << 20, 11);
    cp_to(&a, &f, "s3://big/obj");
    std::fs::write(&hold, b"").expect("hold");
    a.ok(&a.cli(&["bucket", "policy", "big", "--write-to", "px:big,dr:big"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    let open = loop {
        if let Some(u) = uploads(&secondary, "big").first() {
            break u["UploadId"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the catch-up opened no upload on the secondary; log:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let b = Ferry::start_with(&["--db", &db]);
    // The sweep runs as the server starts; give it time to act.
    std::thread::sleep(Duration::from_secs(3));
    let ids: Vec<Value> = uploads(&secondary, "big")
        .iter()
        .map(|u| u["UploadId"].clone())
        .collect();
    assert!(
        ids.contains(&open),
        "the live copy's upload {open} is gone from the secondary ({ids:?}); second server's log:\n{}",
        b.log()
    );
    std::fs::remove_file(&hold).expect("release");
    wait_drained(&a, "big");
    assert_same(&a, "px:big", "dr:big");
    assert!(
        !b.log().contains("aborted a multipart upload"),
        "{}",
        b.log()
    );
}
