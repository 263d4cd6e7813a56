//! What `--delete` may delete: nothing at all when the source holds nothing (a mistyped
//! prefix, one naming an object), and nothing the age filters leave out.

use serde_json::Value;

use super::{Migrator, stderr};
use crate::support::{ACCESS_KEY, Ferry, SECRET_KEY, ok};

/// A probe wiped a destination with `migrate s3://b/a s3://dst --delete` where `a` was an
/// object (a prefix names the folder `a/`, which held nothing): "done", exit 0.
#[test]
fn a_source_that_holds_nothing_deletes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = Ferry::start();
    let b = Ferry::start();
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let file = tmp.path().join("body");
    std::fs::write(&file, "data").expect("write");
    let f = file.to_str().unwrap_or_default();
    a.ok(&a.aws(&["s3", "mb", "s3://src"]));
    b.ok(&b.aws(&["s3", "mb", "s3://dst"]));
    a.ok(&a.aws(&["s3", "cp", f, "s3://src/a"]));
    b.ok(&b.aws(&["s3", "cp", f, "s3://dst/keep1"]));
    b.ok(&b.aws(&["s3", "cp", f, "s3://dst/keep2"]));
    let run = |src: &str, extra: &[&str]| {
        let mut args = vec![
            "migrate",
            src,
            "s3://dst",
            "--src-endpoint",
            &a.s3,
            "--dst-endpoint",
            &b.s3,
            "--delete",
        ];
        args.extend_from_slice(extra);
        m.run(&args)
    };
    for extra in [&[][..], &["--dry-run"][..]] {
        let out = run("s3://src/a", extra);
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {e}");
        assert!(
            e.contains("holds nothing: a is an object, and a source names a folder")
                && e.contains("--delete would delete every object under the destination"),
            "{e}"
        );
        let out = run("s3://src/typo", extra);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("a prefix names a folder"),
            "{}",
            stderr(&out)
        );
    }
    // A folder holding nothing but folder markers (made in a console) holds nothing.
    a.ok(&a.aws(&["s3", "mb", "s3://marked"]));
    for key in ["empty/", "empty/2024/", "empty/2024/01/"] {
        a.ok(&a.aws(&["s3api", "put-object", "--bucket", "marked", "--key", key]));
    }
    let out = run("s3://marked/empty", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("holds nothing"), "{}", stderr(&out));
    let listed = b.ok(&b.aws(&["s3", "ls", "s3://dst/"]));
    assert!(
        listed.contains("keep1") && listed.contains("keep2"),
        "{listed}"
    );
    // A source that holds something mirrors as ever, deletions included.
    let out = run("s3://src", &["--json"]);
    let v: Value = serde_json::from_str(&ok(&out)).expect("json");
    assert_eq!(v["done"], 3, "{v}");
    let listed = b.ok(&b.aws(&["s3", "ls", "s3://dst/"]));
    assert!(
        !listed.contains("keep1") && listed.contains(" a"),
        "{listed}"
    );
}

/// `--older-than 1h --delete` deleted destination-only objects minutes old (a probe):
/// rclone's age filters hold for the destination too, and so do Ferry's now.
#[test]
fn the_age_filters_hold_for_what_delete_deletes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("tree/old");
    std::fs::create_dir_all(&src).expect("mkdir");
    let old = src.join("old.txt");
    std::fs::write(&old, "old").expect("write");
    std::fs::File::options()
        .write(true)
        .open(&old)
        .expect("open")
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .expect("mtime");
    let b = Ferry::start();
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let file = tmp.path().join("body");
    std::fs::write(&file, "new").expect("write");
    b.ok(&b.aws(&["s3", "mb", "s3://old"]));
    b.ok(&b.aws(&[
        "s3",
        "cp",
        file.to_str().unwrap_or_default(),
        "s3://old/young-only-here",
    ]));
    let out = m.run(&[
        "migrate",
        src.to_str().unwrap_or_default(),
        "s3://old",
        "--dst-endpoint",
        &b.s3,
        "--older-than",
        "1h",
        "--delete",
        "--json",
    ]);
    let v: Value = serde_json::from_str(&ok(&out)).expect("json");
    assert_eq!(v["done"], 1, "{v}");
    let listed = b.ok(&b.aws(&["s3", "ls", "s3://old/"]));
    assert!(
        listed.contains("old.txt") && listed.contains("young-only-here"),
        "{listed}"
    );
}

/// Running the command of an interrupted `--delete` job again resumed its old listing: a
/// probe saw the run end "done", exit 0, with a file added and one edited since missing from
/// the destination, and an object the source had been given since deleted from it. A
/// resumed job is now followed by a fresh listing, and a delete first checks the source.
#[test]
fn a_resumed_mirror_matches_the_source_as_it_is_now() {
    use std::time::Duration;
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/mirror");
    super::make_tree(&src, 300, &[]);
    f.ok(&f.aws(&["s3", "mb", "s3://mirror"]));
    let extra = tmp.path().join("extra");
    std::fs::write(&extra, "the destination's own").expect("write");
    let e = extra.to_str().unwrap_or_default();
    f.ok(&f.aws(&["s3", "cp", e, "s3://mirror/zzz-back"]));
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let args = [
        "migrate",
        src.to_str().unwrap_or_default(),
        "s3://mirror",
        "--dst-endpoint",
        &f.s3,
        "--delete",
        "--workers",
        "1",
        "--bandwidth-limit",
        "20K",
    ];
    let log = tmp.path().join("migrate.log");
    let mut child = m.spawn(&args, &log);
    std::thread::sleep(Duration::from_millis(1500));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let ended = super::wait_for(&mut child, Duration::from_secs(60), &log);
    assert_eq!(
        ended.code(),
        Some(130),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Since the listing: the key the job would delete is on the source now, a file is new,
    // and one already copied (the first, in key order) changed.
    let first = src.join("dir0/f00000");
    std::fs::write(src.join("zzz-back"), "put back on the source").expect("write");
    std::fs::write(src.join("aaa-new"), "new").expect("write");
    std::fs::write(&first, "edited since it was copied").expect("write");
    let again = [&args[..args.len() - 2], &["--json"]].concat();
    let out = m.run(&again);
    assert!(out.status.success(), "{}", stderr(&out));
    // One JSON document: the last job's.
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["state"], "done", "{report}");
    assert!(
        stderr(&out).contains("listing both sides again"),
        "{}",
        stderr(&out)
    );
    let cat = |key: &str| f.ok(&f.aws(&["s3", "cp", &format!("s3://mirror/{key}"), "-"]));
    assert_eq!(cat("zzz-back"), "put back on the source");
    assert_eq!(cat("aaa-new"), "new");
    let name = first
        .strip_prefix(&src)
        .expect("rel")
        .to_string_lossy()
        .into_owned();
    assert_eq!(cat(&name), "edited since it was copied");
    // Copied over, never deleted in between.
    let deletes = super::counter(
        &f,
        "ferry_s3_requests_total",
        "op=\"DeleteObject\",outcome=\"ok\"",
    );
    assert_eq!(deletes, 0.0, "the object the source has again was deleted");
}
