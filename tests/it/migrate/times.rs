//! A directory's file put back, after its copy, with an older time and the same size (`cp -p`,
//! `tar x`, a restore) is copied again: the copy carries the file's time in rclone's `mtime`
//! metadata, which a later run reads where the listings alone would call the file unchanged.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::{Migrator, edit_keeping_time};
use crate::support::{ACCESS_KEY, Ferry, SECRET_KEY, ok};

fn dated(path: &std::path::Path, body: &[u8], days_ago: u64) {
    std::fs::write(path, body).expect("write");
    let when = SystemTime::now() - Duration::from_secs(days_ago * 86_400);
    std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open")
        .set_modified(when)
        .expect("mtime");
}

#[test]
fn a_file_put_back_with_an_older_time_is_copied_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/dated");
    std::fs::create_dir_all(&src).expect("mkdir");
    dated(&src.join("conf.txt"), b"version-2", 30);
    dated(&src.join("other.txt"), b"stays", 40);
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let run = || -> Value {
        let out = m.run(&[
            "migrate",
            src.to_str().unwrap_or_default(),
            "s3://dated",
            "--dst-endpoint",
            &f.s3,
            "--json",
        ]);
        serde_json::from_str(&ok(&out)).expect("json")
    };
    let first = run();
    assert_eq!(first["done"], 2, "{first}");
    // The copy carries the file's time as rclone does (seconds, with a fraction if any).
    let head: Value = serde_json::from_str(&ok(&f.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "dated",
        "--key",
        "conf.txt",
    ])))
    .expect("head json");
    let secs = std::fs::metadata(src.join("conf.txt"))
        .expect("stat")
        .modified()
        .expect("mtime")
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let mtime = head["Metadata"]["mtime"].as_str().unwrap_or_default();
    assert!(mtime.starts_with(&secs.to_string()), "{head}");
    // Put back: an older version, the same size, an older time.
    dated(&src.join("conf.txt"), b"version-1", 60);
    let second = run();
    assert_eq!(
        (second["done"].as_i64(), second["unchanged"].as_i64()),
        (Some(1), Some(1)),
        "{second}"
    );
    assert_eq!(
        ok(&f.aws(&["s3", "cp", "s3://dated/conf.txt", "-"])),
        "version-1"
    );
    // And nothing more the next time.
    let third = run();
    assert_eq!(
        (third["done"].as_i64(), third["unchanged"].as_i64()),
        (Some(0), Some(2)),
        "{third}"
    );
    // A time less than a second older (a restore's whole second against the copy's `.7`) is
    // a change too: the metadata is an exact time, not a listing's rounded one.
    let at = |secs: u64, millis: u64| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    };
    let set = |body: &[u8], t: SystemTime| {
        std::fs::write(src.join("conf.txt"), body).expect("write");
        std::fs::File::options()
            .write(true)
            .open(src.join("conf.txt"))
            .expect("open")
            .set_modified(t)
            .expect("mtime");
    };
    set(b"version-3", at(1_714_903_200, 700));
    assert_eq!(run()["done"], 1);
    set(b"version-4", at(1_714_903_200, 0));
    let fourth = run();
    assert_eq!(fourth["done"], 1, "{fourth}");
    assert_eq!(
        ok(&f.aws(&["s3", "cp", "s3://dated/conf.txt", "-"])),
        "version-4"
    );
}

/// S3 → S3, a same-size change the times cannot show (the destination's copy edited in place
/// after the copy, so it is newer than the source; the source overwritten in the second of its
/// copy): both listings carry the content's MD5, which decides. A probe found such copies kept
/// for ever ("unchanged"), where rclone copied them again.
#[test]
fn a_same_size_change_the_times_cannot_show_is_copied_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = Ferry::start();
    let b = Ferry::start();
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    a.ok(&a.aws(&["s3", "mb", "s3://same"]));
    let put = |f: &Ferry, url: &str, body: &str| {
        let file = tmp.path().join("body");
        std::fs::write(&file, body).expect("write");
        f.ok(&f.aws(&["s3", "cp", file.to_str().unwrap_or_default(), url]));
    };
    put(&a, "s3://same/k", "orig X");
    put(&a, "s3://same/other", "stays");
    let run = || -> Value {
        let out = m.run(&[
            "migrate",
            "s3://same",
            "s3://copy",
            "--src-endpoint",
            &a.s3,
            "--dst-endpoint",
            &b.s3,
            "--json",
        ]);
        serde_json::from_str(&ok(&out)).expect("json")
    };
    assert_eq!(run()["done"], 2);
    // The copy edited in place: same size, newer than its source.
    put(&b, "s3://copy/k", "EVIL X");
    let second = run();
    assert_eq!(
        (second["done"].as_i64(), second["unchanged"].as_i64()),
        (Some(1), Some(1)),
        "{second}"
    );
    assert_eq!(ok(&b.aws(&["s3", "cp", "s3://copy/k", "-"])), "orig X");
    // The source overwritten right after its copy (within its second, most runs).
    put(&a, "s3://same/k", "next X");
    let third = run();
    assert_eq!(third["done"], 1, "{third}");
    assert_eq!(ok(&b.aws(&["s3", "cp", "s3://copy/k", "-"])), "next X");
    // Nothing more the next time.
    let fourth = run();
    assert_eq!(
        (fourth["done"].as_i64(), fourth["unchanged"].as_i64()),
        (Some(0), Some(2)),
        "{fourth}"
    );
}

/// A directory's copy carries each file's time to the nanosecond in `mtime`, as rclone
/// writes it: rclone then finds the copies up to date. With milliseconds (a probe), `rclone
/// copy` of the same tree "updated the modification time" of every object (a CopyObject each).
#[test]
fn rclone_finds_a_directory_copy_up_to_date() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/stamped");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    for (name, nanos) in [("a.txt", 123_456_789u64), ("sub/b.bin", 987_654_321)] {
        let p = src.join(name);
        std::fs::write(&p, name).expect("write");
        std::fs::File::options()
            .write(true)
            .open(&p)
            .expect("open")
            .set_modified(
                SystemTime::UNIX_EPOCH + Duration::from_nanos(1_714_903_200_000_000_000 + nanos),
            )
            .expect("mtime");
    }
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    ok(&m.run(&[
        "migrate",
        src.to_str().unwrap_or_default(),
        "s3://stamped",
        "--dst-endpoint",
        &f.s3,
    ]));
    let out = crate::interop::rclone(
        &f,
        &[
            "copy",
            "-v",
            src.to_str().unwrap_or_default(),
            "ferry:stamped",
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("Updated modification time"), "{text}");
    assert!(!text.contains("Copied"), "{text}");
}

/// A file edited with its size and mtime put back (`touch -d`), after a `--checksum` run had
/// hashed it: the directory's index kept its old MD5 (known by inode, size and mtime), so
/// `--checksum` copied nothing, `--verify` said "no differences", and a copy to a new bucket
/// failed every attempt on its own Content-MD5. Any write moves a file's ctime, which the
/// index now also knows it by; the same holds for a file in a destination directory.
#[test]
fn an_edit_that_puts_the_time_back_is_seen_by_checksum_and_verify() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/touched");
    std::fs::create_dir_all(&src).expect("mkdir");
    dated(&src.join("f.txt"), b"file six A", 10);
    dated(&src.join("g.txt"), b"stays", 10);
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let run = |bucket: &str, extra: &[&str]| -> std::process::Output {
        let url = format!("s3://{bucket}");
        let mut args = vec![
            "migrate",
            src.to_str().unwrap_or_default(),
            &url,
            "--dst-endpoint",
            &f.s3,
            "--json",
        ];
        args.extend_from_slice(extra);
        m.run(&args)
    };
    let edit = edit_keeping_time;
    let json =
        |out: std::process::Output| -> Value { serde_json::from_str(&ok(&out)).expect("json") };
    let cat = |url: &str| ok(&f.aws(&["s3", "cp", url, "-"]));
    let first = json(run("touched", &["--checksum"]));
    assert_eq!(first["done"], 2, "{first}");
    edit(&src.join("f.txt"), b"file six B");
    let second = json(run("touched", &["--checksum"]));
    assert_eq!(second["done"], 1, "{second}");
    assert_eq!(cat("s3://touched/f.txt"), "file six B");
    // `--verify` (size and time say unchanged): the hashes compared are the files' own.
    edit(&src.join("f.txt"), b"file six C");
    let third = json(run("touched", &["--verify"]));
    assert_eq!(third["done"], 1, "{third}");
    assert_eq!(cat("s3://touched/f.txt"), "file six C");
    // Copied to a new bucket with a Content-MD5 of what the file holds now.
    edit(&src.join("f.txt"), b"file six D");
    let fourth = json(run("elsewhere", &[]));
    assert_eq!(fourth["done"], 2, "{fourth}");
    assert_eq!(cat("s3://elsewhere/f.txt"), "file six D");
    // A destination directory: its copy of f.txt edited the same way is copied again.
    let back = tmp.path().join("restore/back");
    let home = |extra: &[&str]| -> Value {
        let mut args = vec!["migrate", "s3://touched", back.to_str().unwrap_or_default()];
        args.extend_from_slice(&["--src-endpoint", &f.s3, "--json", "--checksum"]);
        args.extend_from_slice(extra);
        let m = Migrator::new(tmp.path()).creds("SRC", ACCESS_KEY, SECRET_KEY);
        serde_json::from_str(&ok(&m.run(&args))).expect("json")
    };
    assert_eq!(home(&[])["done"], 2);
    let copy = back.join("f.txt");
    edit(&copy, b"file six E");
    let again = home(&[]);
    assert_eq!(again["done"], 1, "{again}");
    assert_eq!(std::fs::read(&copy).expect("read"), b"file six C");
}

/// An object's `mtime` metadata (rclone's, and Ferry's copies of files) dates its copy in a
/// directory, as `rclone copy` dates it: a probe's restore got each file's upload time
/// instead, and migrating the restored tree back copied every file again.
#[test]
fn a_copy_into_a_directory_keeps_the_objects_own_time() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/old");
    std::fs::create_dir_all(&src).expect("mkdir");
    dated(&src.join("a.txt"), b"from 2020", 2000);
    let m = Migrator::new(tmp.path())
        .creds("DST", ACCESS_KEY, SECRET_KEY)
        .creds("SRC", ACCESS_KEY, SECRET_KEY);
    let json =
        |out: std::process::Output| -> Value { serde_json::from_str(&ok(&out)).expect("json") };
    let s3 = f.s3.clone();
    let up = |extra: &[&str]| {
        let mut args = vec!["migrate", src.to_str().unwrap_or_default(), "s3://kept"];
        args.extend_from_slice(&["--dst-endpoint", &s3, "--json"]);
        args.extend_from_slice(extra);
        json(m.run(&args))
    };
    assert_eq!(up(&[])["done"], 1);
    // An object rclone uploaded: its time is in `mtime`, seconds with nine decimals.
    let body = tmp.path().join("body");
    std::fs::write(&body, "by rclone").expect("write");
    f.ok(&f.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "kept",
        "--key",
        "b.txt",
        "--body",
        body.to_str().unwrap_or_default(),
        "--metadata",
        "mtime=1577934245.123456789",
    ]));
    let back = tmp.path().join("restore/back");
    let down = || {
        let mut args = vec!["migrate", "s3://kept", back.to_str().unwrap_or_default()];
        args.extend_from_slice(&["--src-endpoint", &s3, "--json"]);
        json(m.run(&args))
    };
    assert_eq!(down()["done"], 2);
    let mtime = |p: &std::path::Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .expect("mtime")
    };
    assert_eq!(mtime(&back.join("a.txt")), mtime(&src.join("a.txt")));
    assert_eq!(
        mtime(&back.join("b.txt")),
        SystemTime::UNIX_EPOCH + Duration::from_nanos(1_577_934_245_123_456_789)
    );
    // Both directions now agree nothing changed.
    let again = down();
    assert_eq!(
        (again["done"].as_i64(), again["unchanged"].as_i64()),
        (Some(0), Some(2)),
        "{again}"
    );
    let up_again = {
        let mut args = vec!["migrate", back.to_str().unwrap_or_default(), "s3://kept"];
        args.extend_from_slice(&["--dst-endpoint", &s3, "--json"]);
        json(m.run(&args))
    };
    assert_eq!(
        (up_again["done"].as_i64(), up_again["unchanged"].as_i64()),
        (Some(0), Some(2)),
        "{up_again}"
    );
}

/// An S3 source newer than its copy, with the same bytes (a bucket seeded by another tool,
/// or an object put again unchanged), was sent again: rclone compares the hashes first and
/// sends nothing. A newer source of the same size with other bytes is still copied.
#[test]
fn a_newer_source_with_the_same_bytes_is_not_sent_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = (Ferry::start(), Ferry::start());
    let body = tmp.path().join("body");
    let put = |f: &Ferry, bucket: &str, key: &str, data: &[u8]| {
        std::fs::write(&body, data).expect("write");
        ok(&f.aws(&[
            "s3",
            "cp",
            body.to_str().unwrap_or_default(),
            &format!("s3://{bucket}/{key}"),
        ]));
    };
    ok(&a.aws(&["s3", "mb", "s3://seeded"]));
    ok(&b.aws(&["s3", "mb", "s3://seeded"]));
    // The destination first, then the source, a second later: the source is newer.
    put(&b, "seeded", "same.bin", b"same bytes");
    put(&b, "seeded", "edited.bin", b"old bytes!");
    std::thread::sleep(Duration::from_millis(1100));
    put(&a, "seeded", "same.bin", b"same bytes");
    put(&a, "seeded", "edited.bin", b"new bytes!");
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    // Copies one and finds the other unchanged.
    let run_once = || {
        let out = m.run(&[
            "migrate",
            "s3://seeded",
            "s3://seeded",
            "--src-endpoint",
            &a.s3,
            "--dst-endpoint",
            &b.s3,
            "--json",
        ]);
        let v: Value = serde_json::from_str(&ok(&out)).expect("json");
        assert_eq!(
            (v["done"].as_i64(), v["unchanged"].as_i64()),
            (Some(1), Some(1)),
            "{v}"
        );
    };
    run_once();
    assert_eq!(
        ok(&b.aws(&["s3", "cp", "s3://seeded/edited.bin", "-"])),
        "new bytes!"
    );
    // Only its headers changed (a CopyObject in place: a newer time, the same ETag): the
    // copy is made again, carrying them.
    std::thread::sleep(Duration::from_millis(1100));
    ok(&a.aws(&[
        "s3api",
        "copy-object",
        "--bucket",
        "seeded",
        "--key",
        "same.bin",
        "--copy-source",
        "seeded/same.bin",
        "--metadata-directive",
        "REPLACE",
        "--content-type",
        "text/x-changed",
    ]));
    run_once();
    let head: Value = serde_json::from_str(&ok(&b.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "seeded",
        "--key",
        "same.bin",
    ])))
    .expect("head json");
    assert_eq!(head["ContentType"], "text/x-changed", "{head}");
}
