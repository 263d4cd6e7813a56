//! A source object deleted or shrunk while its multipart copy runs. A probe saw the deleted
//! one dead-lettered ("does not exist") and the shrunk one dead-lettered after one attempt
//! (a part's range no longer satisfiable), both uploads left open on the destination for
//! good. A deleted object is now "vanished" (its upload aborted), a shrunk one is copied
//! again as it now is.

use std::time::Duration;

use super::{Migrator, stderr, wait_for};
use crate::support::{ACCESS_KEY, Ferry, SECRET_KEY, write_file};

#[test]
fn an_object_deleted_or_shrunk_mid_copy_leaves_no_upload_behind() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = Ferry::start();
    let b = Ferry::start();
    a.ok(&a.aws(&["s3", "mb", "s3://moving"]));
    b.ok(&b.aws(&["s3", "mb", "s3://landing"]));
    for name in ["gone.bin", "shrunk.bin"] {
        let file = tmp.path().join(name);
        write_file(&file, 40 << 20, name.len() as u64);
        let f = file.to_str().unwrap_or_default();
        a.ok(&a.aws(&["s3", "cp", f, &format!("s3://moving/{name}")]));
    }
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let args = [
        "migrate",
        "s3://moving",
        "s3://landing",
        "--src-endpoint",
        &a.s3,
        "--dst-endpoint",
        &b.s3,
        "--part-size",
        "5M",
        "--multipart-threshold",
        "5M",
        "--bandwidth-limit",
        "8M",
    ];
    let log = tmp.path().join("migrate.log");
    let mut child = m.spawn(&args, &log);
    // Both uploads open on the destination, their first parts (four at a time) on the way.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let open = b.ok(&b.aws(&["s3api", "list-multipart-uploads", "--bucket", "landing"]));
        if open.matches("UploadId").count() == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "uploads never opened: {open}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    a.ok(&a.aws(&["s3", "rm", "s3://moving/gone.bin"]));
    let small = tmp.path().join("small");
    std::fs::write(&small, "now one small object").expect("write");
    a.ok(&a.aws(&[
        "s3",
        "cp",
        small.to_str().unwrap_or_default(),
        "s3://moving/shrunk.bin",
    ]));
    let status = wait_for(&mut child, Duration::from_secs(120), &log);
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{said}");
    assert!(
        said.contains("vanished") && said.contains("gone.bin"),
        "{said}"
    );
    let copied = b.ok(&b.aws(&["s3", "cp", "s3://landing/shrunk.bin", "-"]));
    assert_eq!(copied, "now one small object");
    let out = b.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "landing",
        "--key",
        "gone.bin",
    ]);
    assert!(
        !out.status.success(),
        "gone.bin was copied: {}",
        stderr(&out)
    );
    let open = b.ok(&b.aws(&["s3api", "list-multipart-uploads", "--bucket", "landing"]));
    assert!(!open.contains("UploadId"), "uploads left open: {open}");
}
