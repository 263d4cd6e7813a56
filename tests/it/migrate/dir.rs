//! A directory source a job reads without comparing content: its files are indexed by their
//! facts and hashed only as they are copied (each upload checked: a small one by the CRC32C
//! the server verifies, a larger one by the MD5 compared with its ETag); a file
//! changed since its last copy goes again; `--verify` and `--checksum` still compare content
//! (the directory is hashed first for them).

use std::path::Path;

use serde_json::Value;

use super::{Migrator, assert_same_tree, make_tree, mib};
use crate::support::{ACCESS_KEY, Ferry, SECRET_KEY, ok, write_file};

#[test]
fn a_directory_is_hashed_as_it_is_copied_and_changed_files_go_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/lazy");
    make_tree(&src, 30, &[mib(12)]);
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let src_arg = src.to_str().unwrap_or_default();
    let up = |extra: &[&str]| {
        let mut a = vec![
            "migrate",
            src_arg,
            "s3://lazy",
            "--dst-endpoint",
            &f.s3,
            "--multipart-threshold",
            "8M",
            "--part-size",
            "5M",
            "--json",
        ];
        a.extend_from_slice(extra);
        m.run(&a)
    };
    let record = |out: &std::process::Output| -> Value {
        let text = ok(out);
        serde_json::from_str(text.lines().next().unwrap_or("{}")).expect("json")
    };
    let down = |to: &Path| {
        ok(&m.run(&[
            "migrate",
            "s3://lazy",
            to.to_str().unwrap_or_default(),
            "--src-endpoint",
            &f.s3,
        ]));
    };

    let rec = record(&up(&[]));
    assert_eq!(rec["done"], 31, "{rec}");
    let back = tmp.path().join("back1/lazy");
    down(&back);
    assert_same_tree(&src, &back);

    // New content at the same size, small and multipart: both go again, the rest stay.
    write_file(&src.join("f00001"), 137, 4242);
    write_file(&src.join("big/b0"), mib(12), 4343);
    let rec = record(&up(&[]));
    assert_eq!(rec["done"], 2, "{rec}");
    assert_eq!(rec["unchanged"], 29, "{rec}");
    let back = tmp.path().join("back2/lazy");
    down(&back);
    assert_same_tree(&src, &back);

    // --verify hashes the directory first and compares content: only the multipart object
    // (whose ETag is of its parts) is compared by size alone; nothing is copied again.
    let out = up(&["--verify"]);
    let rec = record(&out);
    assert_eq!(rec["done"], 0, "{rec}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("31 objects compared, no differences (1 by size only)"),
        "{err}"
    );
    // And says what that leaves unchecked, and how to check it.
    assert!(
        err.contains("the content of 1 object was not compared") && err.contains("--download"),
        "{err}"
    );
}

#[test]
fn checksum_compares_a_directory_by_content() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/chk");
    make_tree(&src, 10, &[]);
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let up = |extra: &[&str]| -> Value {
        let mut a = vec![
            "migrate",
            src.to_str().unwrap_or_default(),
            "s3://chk",
            "--dst-endpoint",
            &f.s3,
            "--json",
        ];
        a.extend_from_slice(extra);
        let out = ok(&m.run(&a));
        serde_json::from_str(out.lines().next().unwrap_or("{}")).expect("json")
    };
    assert_eq!(up(&[])["done"], 10);
    // The destination's copy of f00001 is replaced by other bytes of the same size, later
    // than the file: size and modification time say nothing changed, content does.
    let other = tmp.path().join("other");
    write_file(&other, 137, 777);
    f.ok(&f.aws(&[
        "s3",
        "cp",
        other.to_str().unwrap_or_default(),
        "s3://chk/f00001",
    ]));
    assert_eq!(up(&[])["done"], 0);
    let rec = up(&["--checksum"]);
    assert_eq!(rec["done"], 1, "{rec}");
    assert_eq!(rec["unchanged"], 9, "{rec}");
    let back = tmp.path().join("back/chk");
    ok(&m.run(&[
        "migrate",
        "s3://chk",
        back.to_str().unwrap_or_default(),
        "--src-endpoint",
        &f.s3,
    ]));
    assert_same_tree(&src, &back);

    // A file's type is guessed from its extension, as rclone and awscli do on upload; one
    // large enough to go in parts gets it too.
    write_file(&src.join("site/style.css"), 300, 31);
    write_file(&src.join("site/movie.mp4"), 12 * 1024 * 1024, 32);
    let rec = up(&["--multipart-threshold", "8M", "--part-size", "5M"]);
    assert_eq!(rec["done"], 2, "{rec}");
    let type_of = |key: &str| {
        let head = f.ok(&f.aws(&["s3api", "head-object", "--bucket", "chk", "--key", key]));
        let v: Value = serde_json::from_str(&head).expect("json");
        v["ContentType"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(type_of("site/style.css"), "text/css");
    assert_eq!(type_of("site/movie.mp4"), "video/mp4");
    assert_eq!(type_of("f00001"), "binary/octet-stream");
}

/// A source directory named through a symlink (`current -> photos-v2`) was listed as empty,
/// so `--delete` removed every object of the destination; directories nested in each other
/// were not refused, so a `--delete` from a folder inside the destination removed the
/// source's own files. The link is followed (as rclone, `cp -r` and rsync do with a root),
/// and nested directories are refused before any work.
#[test]
fn a_symlinked_root_is_followed_and_nested_directories_are_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let real = tmp.path().join("data/photos-v2");
    make_tree(&real, 5, &[]);
    let link = tmp.path().join("data/current");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let arg = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    ok(&m.run(&[
        "migrate",
        &arg(&real),
        "s3://photos",
        "--dst-endpoint",
        &f.s3,
    ]));
    let out = m.run(&[
        "migrate",
        &arg(&link),
        "s3://photos",
        "--dst-endpoint",
        &f.s3,
        "--delete",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", super::stderr(&out));
    let back = tmp.path().join("back/photos");
    ok(&m.run(&[
        "migrate",
        "s3://photos",
        &arg(&back),
        "--src-endpoint",
        &f.s3,
    ]));
    assert_same_tree(&real, &back);

    let outer = tmp.path().join("data/outer");
    write_file(&outer.join("inner/i"), 10, 1);
    write_file(&outer.join("o"), 10, 2);
    for (src, dst) in [
        (outer.join("inner"), outer.clone()),
        (outer.clone(), outer.join("backup")),
        (tmp.path().join("data/current"), real.join("copy")),
    ] {
        let out = m.run(&["migrate", &arg(&src), &arg(&dst), "--delete"]);
        let err = super::stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{src:?} -> {dst:?}: {err}");
        assert!(err.contains("inside the other"), "{err}");
    }
    assert!(
        outer.join("inner/i").exists(),
        "the source's own file was deleted"
    );
    assert!(
        !outer.join("backup").exists(),
        "a copy landed inside its source"
    );
}

/// A directory's files were dated by when Ferry indexed them, not by their mtime: age
/// filters picked the wrong files (`--older-than 7d` copied nothing from a month-old tree),
/// and a stale destination file (same size, years older than the object) was "unchanged".
#[test]
fn a_directory_file_is_as_old_as_its_mtime() {
    use std::time::{Duration, SystemTime};
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("t/ages");
    write_file(&src.join("old.txt"), 12, 1);
    write_file(&src.join("new.txt"), 12, 2);
    let month_ago = SystemTime::now() - Duration::from_secs(30 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(src.join("old.txt"))
        .and_then(|h| h.set_modified(month_ago))
        .expect("date old.txt");
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let arg = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    let done = |out: &std::process::Output| -> Value {
        let text = ok(out);
        serde_json::from_str(text.lines().next().unwrap_or("{}")).expect("json")
    };
    for (flag, bucket) in [("--older-than", "older"), ("--newer-than", "newer")] {
        let out = m.run(&[
            "migrate",
            &arg(&src),
            &format!("s3://{bucket}"),
            "--dst-endpoint",
            &f.s3,
            flag,
            "7d",
            "--json",
        ]);
        assert_eq!(done(&out)["done"], 1, "{flag}: {}", super::stderr(&out));
    }
    // A stale file at the destination, as long as the object and dated 2001: copied over.
    let back = tmp.path().join("back/older");
    write_file(&back.join("old.txt"), 12, 99);
    let y2001 = SystemTime::UNIX_EPOCH + Duration::from_secs(978_307_200);
    std::fs::File::options()
        .write(true)
        .open(back.join("old.txt"))
        .and_then(|h| h.set_modified(y2001))
        .expect("date the stale file");
    ok(&m.run(&[
        "migrate",
        "s3://older",
        &arg(&back),
        "--src-endpoint",
        &f.s3,
    ]));
    assert_eq!(
        std::fs::read(back.join("old.txt")).expect("read"),
        std::fs::read(src.join("old.txt")).expect("read"),
        "the stale destination file was kept"
    );
}

/// A source folder the job could not read counted as empty: with `--delete`, the copies of
/// its files were deleted at the destination (exit 0). Such a job is refused now.
#[test]
fn an_unreadable_source_folder_stops_a_deleting_job() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("t/locked");
    write_file(&src.join("a"), 10, 1);
    write_file(&src.join("m/2"), 10, 2);
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let arg = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    // A run as the test's own user (root reads everything).
    let copy_as_self = || {
        ok(&m.run(&[
            "migrate",
            &arg(&src),
            "s3://locked",
            "--dst-endpoint",
            &f.s3,
        ]))
    };
    copy_as_self();

    // Run as an unprivileged user when the tests run as root (root reads everything).
    let root = rustix::process::geteuid().is_root();
    let exe = tmp.path().join("ferry");
    crate::support::ferry_copy(&exe);
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = tmp.path().join("user-data");
    std::fs::create_dir_all(&data).expect("data");
    if root {
        for p in [
            data.clone(),
            tmp.path().join("t"),
            src.clone(),
            src.join("a"),
            src.join("m"),
        ] {
            std::os::unix::fs::lchown(&p, Some(65534), Some(65534)).expect("chown");
        }
    }
    std::fs::set_permissions(src.join("m"), std::fs::Permissions::from_mode(0o000))
        .expect("lock m");
    let run = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("--data")
            .arg(&data)
            .args([
                "migrate",
                &arg(&src),
                "s3://locked",
                "--dst-endpoint",
                &f.s3,
            ])
            .args(extra)
            .env("FERRY_SRC_ACCESS_KEY", ACCESS_KEY)
            .env("FERRY_SRC_SECRET_KEY", SECRET_KEY)
            .env("FERRY_DST_ACCESS_KEY", ACCESS_KEY)
            .env("FERRY_DST_SECRET_KEY", SECRET_KEY);
        if root {
            cmd.uid(65534).gid(65534);
        }
        cmd.output().expect("run ferry")
    };
    let out = run(&["--delete"]);
    // What the job's filter leaves out is not in the way (as with `rclone sync --exclude`).
    let excluded = run(&["--delete", "--exclude", "m/"]);
    // Without --delete the rest is copied, but the folder it could not read is a dead
    // letter and the run fails (it exited 0 with a log line; rsync exits 23).
    let partial = run(&[]);
    std::fs::set_permissions(src.join("m"), std::fs::Permissions::from_mode(0o755))
        .expect("unlock m");
    let err = super::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot read") && err.contains("--delete"),
        "{err}"
    );
    let err = super::stderr(&excluded);
    assert_eq!(excluded.status.code(), Some(0), "excluded: {err}");
    let err = super::stderr(&partial);
    assert_eq!(partial.status.code(), Some(1), "{err}");
    assert!(
        err.contains("could not copy m/: Ferry cannot read this folder"),
        "{err}"
    );
    let back = tmp.path().join("back/locked");
    ok(&m.run(&[
        "migrate",
        "s3://locked",
        &arg(&back),
        "--src-endpoint",
        &f.s3,
    ]));
    assert!(
        back.join("m/2").exists(),
        "the unreadable folder's copy was deleted"
    );
    // A file it may not read (new, so never indexed) was left out without a word: not
    // copied, no dead letter, exit 0, and with --delete its copy would go.
    write_file(&src.join("n"), 10, 3);
    copy_as_self();
    // A source's index is kept under the data directory, nothing beside the source.
    assert!(!tmp.path().join("t/.ferry").exists());
    let index = data.join("dirs");
    if index.exists() {
        std::fs::remove_dir_all(&index).expect("forget the source's index");
    }
    std::fs::set_permissions(src.join("n"), std::fs::Permissions::from_mode(0o000))
        .expect("lock n");
    let out = run(&["--delete"]);
    let excluded = run(&["--delete", "--exclude", "n"]);
    let partial = run(&[]);
    let err = super::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot read") && err.contains("/n"), "{err}");
    let err = super::stderr(&excluded);
    assert_eq!(excluded.status.code(), Some(0), "excluded: {err}");
    let err = super::stderr(&partial);
    assert_eq!(partial.status.code(), Some(1), "{err}");
    assert!(
        err.contains("could not copy n: Ferry cannot read it"),
        "{err}"
    );
    let listed = ok(&f.aws(&["s3", "ls", "s3://locked/"]));
    assert!(
        listed.contains(" n\n") || listed.ends_with(" n"),
        "n's copy went: {listed}"
    );
}

/// Files whose names are not UTF-8 cannot become S3 keys. They were skipped without a word
/// (exit 0): the destination silently lacked them. They are dead letters now, saying why, the
/// run exits 1, a dry run names them, and `retry-dead` leaves them (a rename is the fix).
#[test]
fn names_that_are_not_utf8_or_too_long_are_reported_not_skipped() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("t/latin1");
    write_file(&src.join("ok.txt"), 10, 1);
    write_file(&src.join(OsStr::from_bytes(b"caf\xe9.txt")), 10, 2);
    write_file(&src.join(OsStr::from_bytes(b"d\xfcr/inner.txt")), 10, 3);
    // A path longer than an S3 key may be (1,024 bytes): reported too, not skipped.
    let long: std::path::PathBuf = (0..5).map(|i| format!("{i}{}", "l".repeat(240))).collect();
    write_file(&src.join(&long).join("deep.txt"), 10, 4);
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let src_arg = src.to_str().unwrap_or_default();
    let run = |extra: &[&str]| {
        let mut a = vec!["migrate", src_arg, "s3://latin1", "--dst-endpoint", &f.s3];
        a.extend_from_slice(extra);
        m.run(&a)
    };
    let dry = super::dry_with_dead_letters(&run(&["--dry-run"]));
    assert!(
        dry.contains("cannot copy caf\\xE9.txt: its name is not UTF-8"),
        "{dry}"
    );
    assert!(
        dry.contains("cannot copy d\\xFCr/: its name is not UTF-8"),
        "{dry}"
    );
    assert!(dry.contains("would copy ok.txt"), "{dry}");
    assert!(
        dry.contains("deep.txt: its path cannot be an S3 key"),
        "{dry}"
    );

    let out = run(&[]);
    let err = super::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("could not copy caf\\xE9.txt: its name is not UTF-8"),
        "{err}"
    );
    assert!(err.contains("could not copy d\\xFCr/: its name"), "{err}");
    // `retry-dead` leaves entries the listing could not index: not offered for them.
    assert!(
        !err.contains("tries them again") && err.contains("fix"),
        "{err}"
    );
    assert!(
        err.contains("deep.txt: its path cannot be an S3 key"),
        "{err}"
    );
    let ls = ok(&f.aws(&["s3", "ls", "--recursive", "s3://latin1/"]));
    assert!(ls.contains("ok.txt"), "{ls}");

    // The job lists them as dead letters; retry-dead cannot make them copyable.
    let jobs: Value = serde_json::from_str(&ok(&m.run(&["job", "list", "--json"]))).expect("json");
    let id = jobs[0]["id"].as_i64().expect("job id").to_string();
    let show = ok(&m.run(&["job", "show", &id]));
    assert!(
        show.contains("caf\\xE9.txt") && show.contains("not UTF-8"),
        "{show}"
    );
    ok(&m.run(&["job", "retry-dead", &id]));
    let again = run(&[]);
    assert_eq!(again.status.code(), Some(1), "{}", super::stderr(&again));
}

/// A copy into a directory kept the copy's own time, so a file edited in place at the
/// destination (newer than its source) was never restored, and nothing in the tree said when
/// the source had changed. Like rsync -a and rclone, a directory's copy now keeps the
/// source's modification time, and a re-run copies what differs in size or time, either way.
#[test]
fn a_directory_copy_keeps_times_and_restores_edited_files() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/times");
    make_tree(&src, 6, &[mib(9)]);
    // Source times far from now, to tell them from the copy's.
    let old =
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_600_000_000_123);
    let files = [
        "f00001",
        "f00002",
        "f00003",
        "f00004",
        "dir0/f00000",
        "dir2/f00005",
        "big/b0",
    ];
    for name in files {
        let file = std::fs::File::options()
            .write(true)
            .open(src.join(name))
            .expect("open");
        file.set_modified(old).expect("set mtime");
    }
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let run = |from: &str, to: &str, endpoint: &[&str]| -> Value {
        let mut a = vec![
            "migrate",
            from,
            to,
            "--multipart-threshold",
            "8M",
            "--part-size",
            "5M",
            "--json",
        ];
        a.extend_from_slice(endpoint);
        let out = ok(&m.run(&a));
        serde_json::from_str(out.lines().next().unwrap_or("{}")).expect("json")
    };
    let mtime_ms = |p: &Path| {
        let md = std::fs::metadata(p).expect("stat");
        md.mtime() * 1000 + md.mtime_nsec() / 1_000_000
    };
    // dir -> dir keeps the times (to the millisecond), small files and the multipart one.
    let copy = tmp.path().join("copy/times");
    let rec = run(
        src.to_str().unwrap_or_default(),
        copy.to_str().unwrap_or_default(),
        &[],
    );
    assert_eq!(rec["done"], 7, "{rec}");
    assert_same_tree(&src, &copy);
    for name in files {
        assert_eq!(mtime_ms(&copy.join(name)), 1_600_000_000_123, "{name}");
    }
    // Up to Ferry, then back down to another directory: the files carry the times the
    // objects' `mtime` metadata keeps (the sources', as `rclone copy` restores them).
    let s3 = ["--dst-endpoint", f.s3.as_str()];
    run(src.to_str().unwrap_or_default(), "s3://times", &s3);
    let down = tmp.path().join("down/times");
    let from_s3 = ["--src-endpoint", f.s3.as_str()];
    let rec = run("s3://times", down.to_str().unwrap_or_default(), &from_s3);
    assert_eq!(rec["done"], 7, "{rec}");
    for name in files {
        assert_eq!(
            mtime_ms(&down.join(name)),
            1_600_000_000_123,
            "{name} is not dated as its object's mtime says"
        );
    }
    // A re-run copies nothing; a destination file edited in place (same size) is restored.
    let rec = run("s3://times", down.to_str().unwrap_or_default(), &from_s3);
    assert_eq!(
        (rec["done"].as_i64(), rec["unchanged"].as_i64()),
        (Some(0), Some(7)),
        "{rec}"
    );
    let edited = down.join("f00002");
    let size = std::fs::metadata(&edited).expect("stat").len() as usize;
    // Not in the second the objects were uploaded (an S3 listing's whole seconds could not
    // tell that edit from a copy dated by its upload).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write_file(&edited, size, 99);
    let rec = run("s3://times", down.to_str().unwrap_or_default(), &from_s3);
    assert_eq!(rec["done"], 1, "{rec}");
    assert_same_tree(&src, &down);
}

/// A file deleted from the source after the listing saw it counted as copied, without a word.
/// The run now says which objects vanished (rsync's "file has vanished").
#[test]
fn a_file_that_vanishes_mid_run_is_reported() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("t/going");
    for i in 0..10 {
        write_file(&src.join(format!("a{i:02}")), 100 << 10, i);
    }
    write_file(&src.join("z-last"), 10, 99);
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let log = tmp.path().join("run.log");
    // One worker at 200 KB/s: the ten 100 KiB files take about five seconds, and z-last,
    // last in key order, is copied after them.
    let mut child = m.spawn(
        &[
            "migrate",
            src.to_str().unwrap_or_default(),
            "s3://going",
            "--dst-endpoint",
            &f.s3,
            "--workers",
            "1",
            "--bandwidth-limit",
            "200K",
        ],
        &log,
    );
    // Once the first file is at the destination the listing is done (z-last in it), and
    // nine files (about four seconds) are still ahead of z-last.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ls = f.aws(&["s3", "ls", "s3://going/"]);
        if String::from_utf8_lossy(&ls.stdout).contains("a00") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the copy never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::fs::remove_file(src.join("z-last")).expect("rm");
    let status = child.wait().expect("wait");
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{out}");
    assert!(
        out.contains("1 object vanished from the source while the job ran, not copied: z-last"),
        "{out}"
    );
    // The summary counts it apart from the copies (a probe read "32 copied" for 18), and so
    // does the job's record, for `ferry job show` and a worker's jobs alike.
    assert!(out.contains(" copied or deleted, 1 vanished,"), "{out}");
    let v = m.job(1);
    assert_eq!(v["tasks"]["vanished"], 1, "{v}");
    let text = ok(&m.run(&["job", "show", "1"]));
    assert!(
        text.contains("of them 1 vanished from the source"),
        "{text}"
    );
}

/// `--delete` into a directory where the source turned a folder into a file (and a file into
/// a folder): the copy of `a` ran into the destination's folder `a/` before the delete of
/// `a/x` cleared it, went to the dead-letter list, and the mirror needed a second run. A
/// path conflict in a deleting job is retried, so one run makes the mirror. (With both
/// directories in one folder, the destination's files were not even listed on a first run,
/// so nothing there was deleted: the store opened for the source did not index its sibling.)
#[test]
fn one_deleting_run_mirrors_a_folder_that_became_a_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    write_file(&src.join("a"), 100, 1);
    write_file(&src.join("b/y"), 100, 2);
    write_file(&dst.join("a/x"), 100, 3);
    write_file(&dst.join("b"), 100, 4);
    let m = Migrator::new(tmp.path());
    let arg = |p: &Path| p.to_str().unwrap_or_default().to_owned();
    let out = m.run(&["migrate", &arg(&src), &arg(&dst), "--delete"]);
    assert_eq!(out.status.code(), Some(0), "{}", super::stderr(&out));
    assert_same_tree(&src, &dst);
}
