//! The sides of a migration: every direction between Ferry, moto and a directory, registered
//! stores, keys S3 allows that are no paths, and input refused before any work.

use super::*;

#[test]
fn every_direction_between_ferry_moto_and_a_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let moto = Moto::start();
    let src = tmp.path().join("tree/photos");
    make_tree(&src, 40, &[mib(12)]);
    let small = ["--multipart-threshold", "8M", "--part-size", "5M"];
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let run = |m: &Migrator, args: &[&str]| {
        let mut a = args.to_vec();
        a.extend_from_slice(&small);
        a.push("--verify");
        ok(&m.run(&a))
    };
    // dir -> Ferry (the bucket is created), with metadata set on the way back below.
    run(
        &m,
        &[
            "migrate",
            src.to_str().unwrap_or_default(),
            "s3://photos/in",
            "--dst-endpoint",
            &f.s3,
        ],
    );
    // Ferry -> moto.
    let m_fm = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", MOTO_KEY, MOTO_KEY);
    ok(&f.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "photos",
        "--key",
        "in/meta.txt",
        "--body",
        "/etc/hostname",
        "--content-type",
        "text/x-test",
        "--metadata",
        "owner=ops",
        "--tagging",
        "team=blue",
    ]));
    run(
        &m_fm,
        &[
            "migrate",
            "s3://photos/in",
            "s3://mirror",
            "--src-endpoint",
            &f.s3,
            "--dst-endpoint",
            &moto.endpoint,
        ],
    );
    // What the destination got is the object with its metadata and tags.
    let head = moto.boto(
        "h=c.head_object(Bucket='mirror',Key='meta.txt'); t=c.get_object_tagging(Bucket='mirror',Key='meta.txt');\
         print(h['ContentType'], h['Metadata'].get('owner'), t['TagSet'])",
    );
    assert!(head.contains("text/x-test ops"), "{head}");
    assert!(head.contains("'Key': 'team', 'Value': 'blue'"), "{head}");
    // moto -> dir.
    let m_md = Migrator::new(tmp.path()).creds("SRC", MOTO_KEY, MOTO_KEY);
    let back = tmp.path().join("back/photos2");
    run(
        &m_md,
        &[
            "migrate",
            "s3://mirror",
            back.to_str().unwrap_or_default(),
            "--src-endpoint",
            &moto.endpoint,
        ],
    );
    std::fs::remove_file(back.join("meta.txt")).expect("meta.txt came through");
    assert_same_tree(&src, &back);
    // And the other way round: dir -> moto, moto -> Ferry, Ferry -> dir.
    let m_dm = Migrator::new(tmp.path()).creds("DST", MOTO_KEY, MOTO_KEY);
    run(
        &m_dm,
        &[
            "migrate",
            src.to_str().unwrap_or_default(),
            "s3://direct",
            "--dst-endpoint",
            &moto.endpoint,
        ],
    );
    let m_mf = Migrator::new(tmp.path())
        .creds("SRC", MOTO_KEY, MOTO_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    run(
        &m_mf,
        &[
            "migrate",
            "s3://direct",
            "s3://fromto",
            "--src-endpoint",
            &moto.endpoint,
            "--dst-endpoint",
            &f.s3,
        ],
    );
    let m_fd = Migrator::new(tmp.path()).creds("SRC", ACCESS_KEY, SECRET_KEY);
    let back2 = tmp.path().join("back/photos3");
    run(
        &m_fd,
        &[
            "migrate",
            "s3://fromto",
            back2.to_str().unwrap_or_default(),
            "--src-endpoint",
            &f.s3,
        ],
    );
    assert_same_tree(&src, &back2);

    // An incremental re-run copies only what changed; --delete mirrors a removal.
    write_file(&src.join("f00001"), 777, 99);
    std::fs::remove_file(src.join("f00002")).expect("rm");
    let out = ok(&m.run(&[
        "migrate",
        src.to_str().unwrap_or_default(),
        "s3://photos/in",
        "--dst-endpoint",
        &f.s3,
        "--delete",
        "--verify",
        "--multipart-threshold",
        "8M",
        "--part-size",
        "5M",
        "--json",
    ]));
    let rec: Value = serde_json::from_str(out.lines().next().unwrap_or("{}")).expect("json");
    // One changed file, one deletion, and meta.txt (only on the destination) deleted too.
    assert_eq!(rec["done"], 3, "{out}");
    assert_eq!(rec["unchanged"], 39, "{out}");
    let ls = ok(&f.aws(&["s3", "ls", "--recursive", "s3://photos/in/"]));
    assert!(!ls.contains("f00002") && !ls.contains("meta.txt"), "{ls}");

    // A dry run lists and changes nothing.
    write_file(&src.join("new-one"), 10, 1);
    let out = ok(&m.run(&[
        "migrate",
        src.to_str().unwrap_or_default(),
        "s3://photos/in",
        "--dst-endpoint",
        &f.s3,
        "--dry-run",
    ]));
    assert!(out.contains("would copy new-one (10 bytes)"), "{out}");
    assert!(out.contains("dry run: 1 object "), "{out}");
    let ls = ok(&f.aws(&["s3", "ls", "--recursive", "s3://photos/in/"]));
    assert!(!ls.contains("new-one"), "{ls}");
    // A dry run into a bucket that does not exist yet plans every object and creates nothing.
    let out = ok(&m.run(&[
        "migrate",
        src.to_str().unwrap_or_default(),
        "s3://not-yet",
        "--dst-endpoint",
        &f.s3,
        "--dry-run",
        "--json",
    ]));
    // A JSON line per key, then the totals.
    let plan: Value =
        serde_json::from_str(out.trim().lines().last().unwrap_or_default()).expect("json");
    assert_eq!(plan["copy"], 41, "{out}");
    assert_eq!(out.trim().lines().count(), 42, "{out}");
    let buckets = ok(&f.aws(&["s3", "ls"]));
    assert!(!buckets.contains("not-yet"), "{buckets}");
}

#[test]
fn registered_stores_and_a_store_another_process_holds() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    ok(&a.aws(&["s3", "mb", "s3://reg"]));
    for i in 0..20 {
        let p = tmp.path().join(format!("o{i}"));
        write_file(&p, 1000 + i, i as u64);
        ok(&a.aws(&[
            "s3",
            "cp",
            p.to_str().unwrap_or_default(),
            &format!("s3://reg/k{i}"),
        ]));
    }
    let m = Migrator {
        data: a.data(),
        env: Vec::new(),
    };
    // The server holds its local store: the migration says so instead of corrupting it.
    let out = m.run(&["migrate", "local:reg", "dr:reg"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // Naming the holder and what to do.
    assert!(
        err.contains("is held by a running `ferry serve` (pid ")
            && err.contains("use that server's S3 endpoint"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // So is its bucket's folder named as a directory (read without an index beside it,
    // it must still not be read behind the server's back), and its root is no directory
    // to copy (its index would go with it).
    let folder = a.local_root().join("reg");
    let out = m.run(&["migrate", folder.to_str().unwrap_or_default(), "dr:reg2"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is held by a running `ferry serve`"), "{err}");
    let out = m.run(&[
        "migrate",
        a.local_root().to_str().unwrap_or_default(),
        "dr:reg3",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("root of a Ferry fs store"), "{err}");
    // Nor is a folder inside its bucket a destination (the job's index would be objects).
    let inside = folder.join("sub");
    let plain = tmp.path().join("plain/tree");
    make_tree(&plain, 2, &[]);
    let out = m.run(&[
        "migrate",
        plain.to_str().unwrap_or_default(),
        inside.to_str().unwrap_or_default(),
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("inside a bucket of the Ferry fs store"),
        "{err}"
    );
    a.stop();
    // A file a POSIX user added to the stopped server's store is copied too: the store is
    // read as its files are, not as its index last saw them.
    std::fs::write(a.local_root().join("reg/added"), b"behind its back").expect("add");
    ok(&m.run(&["migrate", "local:reg", "dr:reg", "--verify"]));
    let ls = ok(&b.aws(&["s3", "ls", "s3://reg/"]));
    assert_eq!(ls.lines().count(), 21, "{ls}");
    assert!(ls.contains(" added"), "{ls}");
}

/// A destination folder nothing can be written to made every file a dead letter (a probe:
/// 3,000 dead letters and ~6,000 log lines); it is refused in one line before any copy.
#[test]
fn an_unwritable_destination_folder_is_refused_before_any_copy() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("tree/ro-src");
    make_tree(&src, 20, &[]);
    let dst = tmp.path().join("out/ro-dst");
    std::fs::create_dir_all(&dst).expect("mkdir");
    // Immutable, which holds for root too; else without write permission.
    let immutable = Command::new("chattr")
        .arg("+i")
        .arg(&dst)
        .status()
        .is_ok_and(|s| s.success());
    if !immutable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    }
    if std::fs::write(dst.join("probe"), b"x").is_ok() {
        eprintln!("skipped: cannot make a folder unwritable here");
        return;
    }
    let m = Migrator::new(tmp.path());
    let out = m.run(&[
        "migrate",
        src.to_str().unwrap_or_default(),
        dst.to_str().unwrap_or_default(),
    ]);
    if immutable {
        let _ = Command::new("chattr").arg("-i").arg(&dst).status();
    }
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot write to"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
}

#[test]
fn bad_input_fails_before_any_work() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    ok(&f.aws(&["s3", "mb", "s3://there"]));
    let src = tmp.path().join("src/data");
    make_tree(&src, 3, &[]);
    let s = src.to_str().unwrap_or_default();
    let afile_path = tmp.path().join("src/plain-file");
    std::fs::write(&afile_path, b"x").expect("write");
    let afile = afile_path.to_string_lossy().into_owned();
    let good = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let cases: Vec<(Migrator, Vec<&str>, i32, &str)> = vec![
        (
            Migrator::new(tmp.path()),
            vec!["migrate", "nosuch:bucket", s],
            2,
            "no store named \"nosuch\"",
        ),
        (
            Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY),
            vec![
                "migrate",
                s,
                "s3://there",
                "--dst-endpoint",
                "http://127.0.0.1:9",
            ],
            1,
            "unavailable",
        ),
        (
            Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, "wrong-secret"),
            vec!["migrate", s, "s3://there", "--dst-endpoint", &f.s3],
            1,
            "SignatureDoesNotMatch",
        ),
        (
            Migrator::new(tmp.path()),
            vec!["migrate", s, s],
            2,
            "are the same place",
        ),
        (
            Migrator::new(tmp.path()),
            vec!["migrate", s, "s3://there"],
            2,
            "no credentials for the destination",
        ),
        (
            Migrator::new(tmp.path()),
            vec!["migrate", "/nonexistent/dir", s],
            2,
            "does not exist",
        ),
        // A missing folder whose name is no bucket name is said as missing.
        (
            Migrator::new(tmp.path()),
            vec!["migrate", "/nonexistent/Bad_Name", s],
            2,
            "does not exist",
        ),
        (
            Migrator::new(tmp.path()),
            vec!["migrate", s, "s3://there", "--part-size", "1M"],
            2,
            "--part-size",
        ),
        (
            Migrator::new(tmp.path()),
            vec![
                "migrate",
                s,
                "s3://there",
                "--newer-than",
                "1d",
                "--older-than",
                "7d",
            ],
            2,
            "select nothing",
        ),
        (
            Migrator::new(tmp.path()),
            vec!["migrate", s, "s3://there", "--multipart-threshold", "6G"],
            2,
            "at most 5 GiB",
        ),
        (
            Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY),
            vec!["migrate", s, "s3://there", "--dst-endpoint", "notaurl"],
            2,
            "--dst-endpoint \"notaurl\" is not an http:// or https:// URL",
        ),
        (
            Migrator::new(tmp.path()),
            vec!["migrate", s, &afile],
            2,
            "is a file, not a directory",
        ),
        (
            Migrator::new(tmp.path()),
            vec!["migrate", &afile, s],
            2,
            "source",
        ),
        (
            Migrator::new(tmp.path()),
            vec!["migrate", s, "s3://there", "--newer-than", "soon"],
            2,
            "--newer-than",
        ),
        // Accepted before, failing every object on its own (or never trying one).
        (
            Migrator::new(tmp.path()),
            vec!["migrate", s, "s3://there", "--attempts", "0"],
            2,
            "--attempts",
        ),
        (
            Migrator::new(tmp.path()),
            vec!["migrate", s, "s3://there/q//"],
            2,
            "the key prefix \"q//\" is not usable",
        ),
        (
            Migrator::new(tmp.path()),
            vec!["migrate", s, "s3://there/../x"],
            2,
            "is not usable",
        ),
    ];
    for (m, args, code, want) in cases {
        let out = m.run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "{args:?}: not one line: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // None of them recorded a job.
    let list = ok(&good.run(&["job", "list", "--json"]));
    assert_eq!(list.trim(), "[]", "{list}");
}

/// Keys S3 allows that are no paths (`a//b`, a `..` segment, a leading `/`) were dead
/// letters even between two S3 servers. They are copied as they are between S3 sides; a
/// directory (or a Ferry whose buckets are folders) refuses each by name, the job exits 1, and
/// the dry run says so. The prefix's own folder marker is its root, not an object. And a
/// destination inside the source is refused however the endpoint is spelled or whichever
/// credentials each side uses.
#[test]
fn keys_that_are_no_paths_go_between_s3_stores_and_are_refused_by_directories() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let moto = Moto::start();
    moto.boto(
        "c.create_bucket(Bucket='odd'); [c.put_object(Bucket='odd',Key=k,Body=b'x') for k in ['pre/','pre/a.txt','pre/b//c','pre/d/../e','pre//lead','pre/z.txt']]",
    );
    let m = Migrator::new(tmp.path())
        .creds("SRC", MOTO_KEY, MOTO_KEY)
        .creds("DST", MOTO_KEY, MOTO_KEY);

    // S3 to S3: every key as it is (S3 takes `b//c` and `d/../e`; so does rclone).
    let out = m.run(&[
        "migrate",
        "s3://odd/pre",
        "s3://copy",
        "--src-endpoint",
        &moto.endpoint,
        "--dst-endpoint",
        &moto.endpoint,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let listed =
        moto.boto("print(sorted(o['Key'] for o in c.list_objects_v2(Bucket='copy')['Contents']))");
    assert_eq!(
        listed.trim(),
        "['/lead', 'a.txt', 'b//c', 'd/../e', 'z.txt']",
        "{listed}"
    );

    // Into a directory (or a Ferry whose buckets are folders), a key that is no path is
    // refused by name, and the others are copied.
    let dir = tmp.path().join("tree");
    let to_dir = [
        "migrate",
        "s3://odd/pre",
        dir.to_str().expect("utf-8"),
        "--src-endpoint",
        &moto.endpoint,
    ];
    let mut dry = to_dir.to_vec();
    dry.push("--dry-run");
    let out = dry_with_dead_letters(&m.run(&dry));
    assert!(out.contains("cannot copy \"b//c\""), "{out}");
    assert!(out.contains("cannot copy \"d/../e\""), "{out}");
    let out = m.run(&to_dir);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("could not copy b//c"), "{err}");
    assert!(err.contains("empty path segment"), "{err}");
    assert!(err.contains("could not copy d/../e"), "{err}");
    assert!(err.contains("3 objects could not be copied"), "{err}");
    assert!(
        !err.contains("must not be empty"),
        "the folder marker is not an object: {err}"
    );
    assert!(dir.join("a.txt").is_file() && dir.join("z.txt").is_file());
    assert!(!tmp.path().join("e").exists() && !dir.join("lead").exists());

    let m = Migrator::new(tmp.path())
        .creds("SRC", MOTO_KEY, MOTO_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let out = m.run(&[
        "migrate",
        "s3://odd/pre",
        "s3://even",
        "--src-endpoint",
        &moto.endpoint,
        "--dst-endpoint",
        &f.s3,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("could not copy b//c"), "{err}");
    assert!(err.contains("3 objects could not be copied"), "{err}");
    let ls = f.ok(&f.aws(&["s3", "ls", "--recursive", "s3://even"]));
    assert!(ls.contains(" a.txt") && ls.contains(" z.txt"), "{ls}");
    assert_eq!(ls.lines().count(), 2, "{ls}");

    // A prefix with nothing under it (a typo, or a single key named like a folder) says so.
    let out = m.run(&[
        "migrate",
        "s3://odd/pre/a.txt",
        "s3://even/one",
        "--src-endpoint",
        &moto.endpoint,
        "--dst-endpoint",
        &f.s3,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("nothing found under s3://odd/pre/a.txt"),
        "{err}"
    );

    // The same bucket and endpoint, spelled with a trailing slash and with other credentials
    // on one side: still the same place.
    let m2 = Migrator::new(tmp.path())
        .creds("SRC", MOTO_KEY, MOTO_KEY)
        .creds("DST", "other-key", MOTO_KEY);
    let inside = format!("{}/", moto.endpoint);
    let out = m2.run(&[
        "migrate",
        "s3://odd",
        "s3://odd/copy",
        "--src-endpoint",
        &moto.endpoint,
        "--dst-endpoint",
        &inside,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("are the same place"), "{err}");
}

/// One server under two names is one place: `localhost` and `127.0.0.1`, a registered store
/// and an inline side on its endpoint, and (told by a key written to the destination and
/// read at the source) a proxy in front of it. A `--delete` from a folder of a bucket into
/// that same bucket, named the other way, deleted the folder's 2,500 objects in a probe.
#[test]
fn one_server_under_two_names_is_refused_as_the_same_place() {
    let tmp = tempfile::tempdir().expect("tmp");
    let a = Ferry::start();
    let b = Ferry::start();
    let local = b.s3.replace("127.0.0.1", "localhost");
    a.add_s3_store("twin", &local, ACCESS_KEY, SECRET_KEY);
    ok(&b.aws(&["s3", "mb", "s3://loopb"]));
    ok(&a.aws(&["s3", "mb", "s3://loopb"]));
    for i in 0..5 {
        let p = tmp.path().join(format!("o{i}"));
        write_file(&p, 100 + i, i as u64);
        let key = format!("s3://loopb/zz/k{i}");
        ok(&b.aws(&["s3", "cp", p.to_str().unwrap_or_default(), &key]));
    }
    let m = Migrator {
        data: a.data(),
        env: Vec::new(),
    }
    .creds("SRC", ACCESS_KEY, SECRET_KEY)
    .creds("DST", ACCESS_KEY, SECRET_KEY);
    let proxy = fault_proxy(&b.s3, "0", &tmp.path().join("proxy.json"), &[]);
    b.ok(&b.aws(&[
        "s3api",
        "put-bucket-versioning",
        "--bucket",
        "loopb",
        "--versioning-configuration",
        "Status=Suspended",
    ]));
    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec![
                "s3://loopb/zz",
                "s3://loopb",
                "--src-endpoint",
                &b.s3,
                "--dst-endpoint",
                &local,
            ],
            "are the same place",
        ),
        (
            vec!["twin:loopb/zz", "s3://loopb", "--dst-endpoint", &b.s3],
            "are the same place",
        ),
        (
            vec![
                "s3://loopb/zz",
                "s3://loopb",
                "--src-endpoint",
                &b.s3,
                "--dst-endpoint",
                &proxy.endpoint,
            ],
            "one server under two names",
        ),
    ];
    for (sides, why) in cases {
        // A dry run writes nothing, so it cannot ask a proxy's server (its listing shows
        // the deletions it would make).
        let proxied = why.contains("two names");
        let runs: &[&[&str]] = match proxied {
            true => &[&["--delete"]],
            false => &[&["--delete"], &["--delete", "--dry-run"]],
        };
        for extra in runs {
            let mut args = vec!["migrate"];
            args.extend(&sides);
            args.extend(extra.iter());
            let out = m.run(&args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(why), "{args:?}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "not one line: {err}");
        }
    }
    let ls = b.ok(&b.aws(&["s3", "ls", "--recursive", "s3://loopb"]));
    assert_eq!(ls.lines().count(), 5, "{ls}");
    // The key written to ask leaves nothing, not even a delete marker where versioning is
    // suspended.
    let versions = b.ok(&b.aws(&["s3api", "list-object-versions", "--bucket", "loopb"]));
    assert!(!versions.contains("same-place"), "{versions}");
    // The same bucket name on another server is another place.
    let out = m.run(&[
        "migrate",
        "s3://loopb/zz",
        "s3://loopb",
        "--src-endpoint",
        &b.s3,
        "--dst-endpoint",
        &a.s3,
        "--delete",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let ls = a.ok(&a.aws(&["s3", "ls", "--recursive", "s3://loopb"]));
    assert_eq!(ls.lines().count(), 5, "{ls}");
}

/// What does not run leaves nothing behind: a dry run into a directory that does not exist,
/// a run whose source does not answer, a store name in a `--data` with no state, a worker
/// on a mistyped `--data` (a probe found each of them making folders, indexes or a state
/// database).
#[test]
fn what_does_not_run_makes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src/tree");
    make_tree(&src, 5, &[]);
    let s = src.to_str().unwrap_or_default();
    let m = Migrator::new(tmp.path());
    let missing = tmp.path().join("nowhere/copy");
    let out = m.run(&[
        "migrate",
        s,
        missing.to_str().unwrap_or_default(),
        "--dry-run",
    ]);
    let text = ok(&out);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("would copy")).count(),
        5,
        "{text}"
    );
    assert!(
        !tmp.path().join("nowhere").exists(),
        "the dry run made the destination"
    );
    // With --json: a line per action, then the totals.
    let out = m.run(&[
        "migrate",
        s,
        missing.to_str().unwrap_or_default(),
        "--dry-run",
        "--json",
    ]);
    let lines: Vec<Value> = ok(&out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let (totals, actions) = lines.split_last().expect("lines");
    assert_eq!(totals["copy"], 5, "{totals}");
    assert_eq!(actions.len(), 5);
    assert!(
        actions
            .iter()
            .all(|a| a["action"] == "copy" && a["key"].is_string() && a["size"].is_u64()),
        "{actions:?}"
    );
    assert!(
        !m.data.join("state.db").exists(),
        "the dry run made a state database"
    );

    let m = m.creds("SRC", ACCESS_KEY, SECRET_KEY);
    let out = m.run(&[
        "migrate",
        "s3://gone",
        missing.to_str().unwrap_or_default(),
        "--src-endpoint",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        !tmp.path().join("nowhere").exists(),
        "a failed run made the destination"
    );

    let fresh = Migrator::new(&tmp.path().join("other"));
    let out = fresh.run(&["migrate", "nosuch:b", s]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no store named \"nosuch\""), "{err}");
    assert!(
        !fresh.data.exists(),
        "a refused run made {}",
        fresh.data.display()
    );

    let out = fresh.run(&["worker"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no job state in"), "{err}");
    assert!(
        !fresh.data.exists(),
        "a refused worker made {}",
        fresh.data.display()
    );
}

/// A moto server after `code` ran against it in Python (`c` is a boto3 client of it), and a
/// migrator with its credentials on both sides.
fn moto_after(tmp: &std::path::Path, code: &str) -> (Moto, Migrator) {
    let moto = Moto::start();
    moto.boto(code);
    let m = Migrator::new(tmp)
        .creds("SRC", MOTO_KEY, MOTO_KEY)
        .creds("DST", MOTO_KEY, MOTO_KEY);
    (moto, m)
}

/// A key of whitespace alone, which the AWS SDK refuses to send ("key was missing"), was a
/// dead letter whose message named neither the key (printed bare: `could not copy  after`)
/// nor why in words a user could act on (a probe).
#[test]
fn a_key_of_whitespace_alone_is_named_and_explained() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (moto, m) = moto_after(
        tmp.path(),
        "c.create_bucket(Bucket='wsp'); [c.put_object(Bucket='wsp',Key=k,Body=b'x') for k in [' ', 'fine']]",
    );
    let out = m.run(&[
        "migrate",
        "s3://wsp",
        "s3://ws-copy",
        "--src-endpoint",
        &moto.endpoint,
        "--dst-endpoint",
        &moto.endpoint,
        "--attempts",
        "1",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("could not copy \" \"") && err.contains("is whitespace alone"),
        "{err}"
    );
    assert!(err.contains("1 object could not be copied"), "{err}");
}

/// A bucket named by S3's rules before 2018 (capitals, `_`: us-east-1 still holds such
/// buckets) could not be migrated off: refused as an invalid name (a probe). An S3 side takes
/// it; a directory's folder name is still held to today's rules.
#[test]
fn a_bucket_named_by_the_old_rules_can_be_migrated_off() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (moto, m) = moto_after(
        tmp.path(),
        "c.create_bucket(Bucket='Old_Photos'); c.put_object(Bucket='Old_Photos',Key='a.jpg',Body=b'x')",
    );
    let out = m.run(&[
        "migrate",
        "s3://Old_Photos",
        "s3://new-photos",
        "--src-endpoint",
        &moto.endpoint,
        "--dst-endpoint",
        &moto.endpoint,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let dir = tmp.path().join("Old_Dir");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let out = m.run(&[
        "migrate",
        dir.to_str().unwrap_or_default(),
        "s3://new-photos",
        "--dst-endpoint",
        &moto.endpoint,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
