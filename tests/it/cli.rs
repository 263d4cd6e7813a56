//! The command line: admin commands against a running server, config errors, exit codes.

use std::process::Command;

use crate::support::{Ferry, ferry_bin, ok, write_file};

#[test]
fn store_commands() {
    let f = Ferry::start();
    let list = ok(&f.cli(&["store", "list"]));
    assert!(list.contains("local"), "{list}");
    let extra = f.dir.path().join("extra-store");
    let extra_s = extra.to_string_lossy().into_owned();
    ok(&f.cli(&["store", "add", "extra", "--kind", "fs", "--path", &extra_s]));
    let json = ok(&f.cli(&["store", "list", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let names: Vec<&str> = v
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["extra", "local"]);
    // Duplicate, unknown kind usage, removal of the built-in store: clear errors.
    let dup = f.cli(&["store", "add", "extra", "--kind", "fs", "--path", &extra_s]);
    assert_eq!(dup.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already registered"));
    // Stores inside stores or the data directory: one's files (its index among them) would
    // be another's objects, for any S3 client to overwrite.
    let local_bucket = f.local_root().join("nsbkt");
    for (path, why) in [
        (local_bucket.as_path(), "is inside the store \"local\""),
        (&f.data(), "holds the store \"local\""),
        (&f.data().join("elsewhere"), "is inside the data directory"),
        (&extra.join("sub"), "is inside the store \"extra\""),
        (f.dir.path(), "holds the store"),
    ] {
        let p = path.to_string_lossy();
        let out = f.cli(&["store", "add", "nest", "--kind", "fs", "--path", &p]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{p} was taken");
        assert!(err.contains(why), "{p}: {err}");
    }
    let bad = f.cli(&["store", "add", "x", "--kind", "nope"]);
    assert_eq!(bad.status.code(), Some(2));
    // A flag of the other kind was ignored without a word.
    let bad = f.cli(&[
        "store",
        "add",
        "x",
        "--kind",
        "fs",
        "--path",
        &extra_s,
        "--endpoint",
        "http://h:1",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--endpoint does not apply"));
    let local = f.cli(&["store", "remove", "local"]);
    assert_eq!(local.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&local.stderr).contains("cannot be removed"));
    // An s3 store (Ferry's own endpoint): the secret goes in through an environment variable
    // and never comes back out.
    let add = std::process::Command::new(crate::support::ferry_bin())
        .args([
            "--server",
            &f.admin,
            "store",
            "add",
            "remote",
            "--kind",
            "s3",
            "--endpoint",
            &f.s3,
        ])
        .args([
            "--path-style",
            "--access-key-env",
            "T_AK",
            "--secret-key-env",
            "T_SK",
        ])
        .args(["--checksum-mode", "when-required"])
        .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .env("T_AK", crate::support::ACCESS_KEY)
        .env("T_SK", crate::support::SECRET_KEY)
        .output()
        .expect("run");
    ok(&add);
    assert!(
        !String::from_utf8_lossy(&add.stderr).contains("warning"),
        "a store that answers is added without a warning: {}",
        String::from_utf8_lossy(&add.stderr)
    );
    // One that does not answer, or refuses the key, is added with a warning that says so.
    for (name, endpoint, ak) in [
        ("nobody", "http://127.0.0.1:1", crate::support::ACCESS_KEY),
        ("wrongkey", f.s3.as_str(), "AKIANOSUCHKEY0000000"),
    ] {
        let out = f.cli_env(
            &[
                "store",
                "add",
                name,
                "--kind",
                "s3",
                "--endpoint",
                endpoint,
                "--path-style",
                "--access-key-env",
                "T_AK",
                "--secret-key-env",
                "T_SK",
            ],
            &[("T_AK", ak), ("T_SK", crate::support::SECRET_KEY)],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {err}");
        assert!(
            err.contains(&format!(
                "ferry: warning: a first call to store {name} failed"
            )),
            "{name}: {err}"
        );
        if name == "wrongkey" {
            assert!(err.contains("InvalidAccessKeyId"), "{err}");
        }
        ok(&f.cli(&["store", "remove", name]));
    }
    let json = ok(&f.cli(&["store", "list", "--json"]));
    assert!(
        json.contains("\"remote\"") && json.contains(&f.s3),
        "{json}"
    );
    assert!(
        !json.contains(crate::support::SECRET_KEY),
        "secrets are never listed"
    );
    let missing_env = f.cli(&[
        "store",
        "add",
        "r2",
        "--kind",
        "s3",
        "--access-key-env",
        "NO_SUCH_VAR_X",
        "--secret-key-env",
        "NO_SUCH_VAR_Y",
    ]);
    assert_eq!(missing_env.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing_env.stderr).contains("NO_SUCH_VAR_X"));
    ok(&f.cli(&["store", "remove", "remote"]));
    ok(&f.cli(&["store", "remove", "extra"]));
    let gone = f.cli(&["store", "remove", "extra"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no store named"));
}

/// A bucket folder restored as a copy (another folder than the one recorded) is left alone
/// by a rescan, which says so; `--adopt` takes it, and the bucket serves again.
#[test]
fn rescan_adopts_a_restored_bucket_folder_only_when_asked() {
    let f = Ferry::start();
    ok(&f.aws(&["s3", "mb", "s3://restored"]));
    let file = f.dir.path().join("body");
    std::fs::write(&file, b"kept").expect("write");
    ok(&f.aws(&["s3", "cp", file.to_str().expect("utf8"), "s3://restored/k"]));
    let folder = f.local_root().join("restored");
    std::fs::rename(&folder, f.local_root().join("restored.old")).expect("aside");
    std::fs::create_dir(&folder).expect("mkdir");
    std::fs::copy(f.local_root().join("restored.old/k"), folder.join("k")).expect("cp");
    let get = f.aws(&["s3", "cp", "s3://restored/k", "-"]);
    assert!(!get.status.success());
    let err = String::from_utf8_lossy(&get.stderr);
    assert!(
        err.contains("503") || err.contains("ServiceUnavailable"),
        "{err}"
    );
    // The bucket left as it was fails the command (exit 1), saying why and what to do.
    let plain = f.cli(&["store", "rescan", "local"]);
    assert_eq!(
        plain.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(
        said.contains("--adopt") && said.contains("restored"),
        "{said}"
    );
    assert!(
        !f.aws(&["s3", "cp", "s3://restored/k", "-"])
            .status
            .success()
    );
    ok(&f.cli(&["store", "rescan", "local", "--adopt"]));
    assert_eq!(ok(&f.aws(&["s3", "cp", "s3://restored/k", "-"])), "kept");
}

#[test]
fn rescan_picks_up_files_written_behind_our_back() {
    let f = Ferry::start();
    ok(&f.aws(&["s3", "mb", "s3://posix"]));
    let dir = f.local_root().join("posix/docs");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("readme.txt"), b"written by a POSIX user\n").expect("write");
    std::fs::write(dir.join("index.html"), b"<p>hi</p>\n").expect("write");
    std::fs::write(dir.join("LICENSE"), b"terms\n").expect("write");
    let out = ok(&f.cli(&["store", "rescan", "local", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["added"], 3, "{out}");
    // A file found on disk is served with the type its extension names, as rclone, awscli
    // and s3cmd would have uploaded it; one without is S3's default.
    let type_of = |key: &str| {
        let head = ok(&f.aws(&["s3api", "head-object", "--bucket", "posix", "--key", key]));
        let v: serde_json::Value = serde_json::from_str(&head).expect("json");
        v["ContentType"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(type_of("docs/index.html"), "text/html");
    assert_eq!(type_of("docs/readme.txt"), "text/plain");
    assert_eq!(type_of("docs/LICENSE"), "binary/octet-stream");
    let ls = ok(&f.aws(&["s3", "ls", "--recursive", "s3://posix"]));
    assert!(ls.contains("docs/readme.txt"), "{ls}");
    let body = ok(&f.aws(&["s3", "cp", "s3://posix/docs/readme.txt", "-"]));
    assert_eq!(body, "written by a POSIX user\n");
    // Changed again behind Ferry's back: a GET serves the new bytes with their own ETag.
    std::fs::write(dir.join("readme.txt"), b"edited in place\n").expect("rewrite");
    let head = ok(&f.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "posix",
        "--key",
        "docs/readme.txt",
    ]));
    let body = ok(&f.aws(&["s3", "cp", "s3://posix/docs/readme.txt", "-"]));
    assert_eq!(body, "edited in place\n");
    let head2 = ok(&f.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "posix",
        "--key",
        "docs/readme.txt",
    ]));
    let etag: serde_json::Value = serde_json::from_str(&head2).expect("json");
    // md5("edited in place\n")
    assert_eq!(
        etag["ETag"], "\"0a938026cedf7cf17d32e08630c1577b\"",
        "{head} -> {head2}"
    );
}

#[test]
fn broken_config_is_one_line_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("ferry.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:0\"\nadmin_lissen = \"127.0.0.1:0\"\n",
    )
    .expect("write");
    let out = Command::new(ferry_bin())
        .args(["serve", "--config"])
        .arg(&cfg)
        .arg("--data")
        .arg(dir.path().join("d"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("ferry:"))
        .unwrap_or_default();
    assert!(
        line.contains("ferry.toml:2:") && line.contains("admin_lissen"),
        "{err}"
    );
}

/// Runs `ferry ARGS` (no server needed): it must exit 2, naming `names` on stderr.
#[track_caller]
pub fn bad_usage(args: &[&str], names: &str) {
    let out = Command::new(ferry_bin()).args(args).output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(names), "{args:?}: {err}");
}

#[test]
fn bad_usage_exits_2() {
    bad_usage(&["serve", "--no-such-flag"], "--no-such-flag");
    bad_usage(
        &[
            "serve",
            "--listen",
            "not-an-address",
            "--data",
            "/nonexistent/x",
        ],
        "not-an-address",
    );
    // A data directory that is a file: said so, not "File exists".
    let file = tempfile::NamedTempFile::new().expect("file");
    let f = file.path().to_string_lossy();
    bad_usage(&["serve", "--data", &f], "is not a directory");
}

/// A `--db` URL: malformed is bad usage (2), one that cannot connect is 1; the password is
/// never printed (in the user info or a `password=` parameter), and the cause is said once.
#[test]
fn db_url_errors_hide_the_password_and_say_it_once() {
    let data = tempfile::tempdir().expect("tempdir");
    for (url, code) in [
        ("postgres://ferry@127.0.0.1:1/x?password=S3cr3tPW", 1),
        ("postgres://ferry:S3cr3tPW@127.0.0.1:1/x", 1),
        ("notaurl", 2),
        ("mysql://ferry:S3cr3tPW@127.0.0.1/x", 2),
        ("postgres://ferry:S3cr3tPW@127.0.0.1:notaport/x", 2),
        ("", 2),
    ] {
        let out = Command::new(ferry_bin())
            .args(["job", "list", "--db", url])
            .arg("--data")
            .arg(data.path())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{url}: {err}");
        assert!(
            !err.contains("S3cr3tPW"),
            "{url}: the password is printed: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{url}: {err}");
        let causes: Vec<&str> = err.trim().split(": ").collect();
        let mut seen = std::collections::HashSet::new();
        assert!(
            causes.iter().all(|c| seen.insert(*c)),
            "{url}: a cause is repeated: {err}"
        );
    }
}

/// A store's folder reached by another path (a bind mount) was taken as a new store
/// inside it: paths cannot tell, devices and inodes can.
#[test]
fn a_store_inside_another_through_a_bind_mount_is_refused() {
    let f = Ferry::start_with_bound_local();
    let add = |path: std::path::PathBuf| {
        let p = path.to_string_lossy().into_owned();
        let out = f.cli(&["store", "add", "bound", "--kind", "fs", "--path", &p]);
        assert!(!out.status.success(), "{p} was taken");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = add(f.dir.path().join("bound/somebucket"));
    assert!(err.contains("is inside the store \"local\""), "{err}");
    let err = add(f.dir.path().join("bound"));
    assert!(err.contains("is already the store \"local\""), "{err}");
}

/// `--help` shows where `--db` may come from, never the value `FERRY_DB` holds (its
/// password).
#[test]
fn help_does_not_print_the_database_url() {
    for cmd in [
        &["serve", "--help"][..],
        &["migrate", "--help"],
        &["worker", "--help"],
        &["job", "list", "--help"],
    ] {
        let out = Command::new(ferry_bin())
            .args(cmd)
            .env("FERRY_DB", "postgres://u:HelpLeakPw@db.example/ferry")
            .output()
            .expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{cmd:?}: {text}");
        assert!(text.contains("FERRY_DB"), "{cmd:?}: {text}");
        assert!(
            !text.contains("HelpLeakPw"),
            "{cmd:?} prints the URL: {text}"
        );
    }
}

/// Volume commands: an address that is not one and a missing directory are bad usage.
#[test]
fn volume_bad_usage_exits_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("d");
    let missing = tmp.path().join("no/such/dir");
    for args in [
        vec![
            "volume",
            "destination",
            "--dir",
            dir.to_str().unwrap_or_default(),
            "--listen",
            "nonsense",
        ],
        vec![
            "volume",
            "snapshots",
            "--dir",
            missing.to_str().unwrap_or_default(),
        ],
    ] {
        let out = Command::new(ferry_bin()).args(&args).output().expect("run");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Each refused before anything starts, on one line naming its flag (a probe found them
    // accepted, exit 1, or clap's "unexpected argument '-1'" naming none).
    let d = dir.to_str().unwrap_or_default();
    let secret = tmp.path().join("s");
    std::fs::write(&secret, b"{}").expect("secret");
    let s = secret.to_str().unwrap_or_default();
    let dest = |extra: &[&str]| {
        let mut v = vec![
            "volume",
            "destination",
            "--dir",
            d,
            "--listen",
            "127.0.0.1:0",
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let dest_at = |dir: &str| {
        [
            "volume",
            "destination",
            "--dir",
            dir,
            "--listen",
            "127.0.0.1:0",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let src = |extra: &[&str]| {
        let mut v = vec!["volume", "source", "--dir", d, "--secret", s, "--once"];
        v.extend_from_slice(extra);
        v.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    for (args, flag) in [
        (dest(&["--threads", "0"]), "--threads"),
        (dest(&["--threads", "100000"]), "--threads"),
        (dest(&["--metrics-listen", "notanaddr"]), "--metrics-listen"),
        (dest(&["--db", "bogus://x"]), "--db"),
        (dest(&["--timeout", "-1"]), "--timeout"),
        (src(&["--threads", "0"]), "--threads"),
        (src(&["--db", "bogus://x"]), "--db"),
        (src(&["--timeout", "-1"]), "--timeout"),
        // A file where the destination's folder should be, or one of its parents (it exited
        // 1 with a raw error).
        (dest_at(s), "--dir"),
        (dest_at(&format!("{s}/sub")), "--dir"),
        // A mistyped destination folder was made with all its parents, as rsync does not;
        // a secret file in a missing folder failed (exit 1) after the folder was made.
        (dest_at(missing.to_str().unwrap_or_default()), "--dir"),
        (
            dest(&[
                "--secret-out",
                tmp.path()
                    .join("nodir/x.secret")
                    .to_str()
                    .unwrap_or_default(),
            ]),
            "--secret-out",
        ),
        // Not a destination's folder: said as such, not "no snapshots" (exit 0) or "holds
        // no snapshot" (exit 1).
        (
            [
                "volume",
                "snapshots",
                "--dir",
                &tmp.path().to_string_lossy(),
            ]
            .map(str::to_owned)
            .to_vec(),
            "not a volume destination",
        ),
        (
            [
                "volume",
                "promote",
                "--dir",
                missing.to_str().unwrap_or_default(),
                "--to",
                &tmp.path().to_string_lossy(),
            ]
            .map(str::to_owned)
            .to_vec(),
            "exists and is not empty",
        ),
        (
            ["volume", "status", "--dir", &tmp.path().to_string_lossy()]
                .map(str::to_owned)
                .to_vec(),
            "no volume source or destination has run there",
        ),
        (
            [
                "volume",
                "promote",
                "--dir",
                missing.to_str().unwrap_or_default(),
                "--to",
                &tmp.path().join("p").to_string_lossy(),
            ]
            .map(str::to_owned)
            .to_vec(),
            "--dir",
        ),
    ] {
        let out = Command::new(ferry_bin()).args(&args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
    }
    assert!(!tmp.path().join("no").exists(), "a missing --dir was made");
    assert!(
        !dir.exists(),
        "--dir was made before the bad --secret-out was said"
    );
    // A secret kept in the destination's own folder, made on this first start, is fine.
    let fresh = tmp.path().join("fresh");
    let secret = fresh.join("app.secret");
    let mut child = Command::new(ferry_bin())
        .args(["volume", "destination", "--dir"])
        .arg(&fresh)
        .args(["--listen", "127.0.0.1:0", "--secret-out"])
        .arg(&secret)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let mut exited = None;
    for _ in 0..600 {
        exited = child.try_wait().expect("wait");
        if secret.exists() || exited.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(secret.exists(), "no secret written (exited: {exited:?})");
}

/// `--bandwidth-limit 0` is no limit (rsync's and rclone's reading), not one byte a second.
#[test]
fn a_bandwidth_limit_of_0_is_no_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("f"), vec![7u8; 200 * 1024]).expect("write");
    let dst = tmp.path().join("dst");
    let mut child = Command::new(ferry_bin())
        .args(["migrate"])
        .arg(&src)
        .arg(&dst)
        .args(["--bandwidth-limit", "0", "--data"])
        .arg(tmp.path().join("data"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // At one byte a second this would take more than two days.
    let mut status = None;
    for _ in 0..1200 {
        status = child.try_wait().expect("wait");
        if status.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    assert!(
        status.is_some_and(|s| s.success()),
        "migrate with --bandwidth-limit 0: {status:?}"
    );
    assert_eq!(
        std::fs::read(dst.join("f")).expect("copied").len(),
        200 * 1024
    );
}

/// `ferry job list | head -0`: a reader that went away ends the command quietly (141, as
/// SIGPIPE would), never with a panic and its backtrace.
#[test]
fn a_closed_output_pipe_ends_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src/tree");
    for i in 0..3000 {
        write_file(&src.join(format!("f{i}")), 10, i);
    }
    // The state `job list` reads (a dry run records none).
    write_file(&dir.path().join("small/tree/f"), 10, 1);
    let made = Command::new(ferry_bin())
        .arg("migrate")
        .arg(dir.path().join("small/tree"))
        .arg(dir.path().join("one/tree"))
        .arg("--data")
        .arg(dir.path().join("d"))
        .output()
        .expect("run");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let runs: [Vec<std::ffi::OsString>; 2] = [
        // writeln! with `?` (an error line, before)
        vec![
            "migrate".into(),
            src.clone().into(),
            dir.path().join("dst/tree").into(),
            "--dry-run".into(),
            "--data".into(),
            dir.path().join("d").into(),
        ],
        // println! (a panic, before)
        vec![
            "job".into(),
            "list".into(),
            "--data".into(),
            dir.path().join("d").into(),
        ],
    ];
    for args in runs {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = Command::new(ferry_bin())
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[test]
fn first_start_generates_credentials_with_mode_0600_and_never_reprints_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    // Made by hand, readable by all: the state database, which holds registered stores'
    // secret keys, was then readable by every local user.
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // `ferry serve` on `data` with generated secrets, its S3 port `listen`.
    let serve = |listen: &str| {
        let mut cmd = Command::new(ferry_bin());
        cmd.args(["serve", "--listen", listen, "--admin-listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(&data)
            .env_remove("FERRY_ACCESS_KEY")
            .env_remove("FERRY_SECRET_KEY")
            .env_remove("FERRY_ADMIN_TOKEN");
        cmd
    };
    // A first start that cannot listen generated the secret, failed, and never showed it.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = busy.local_addr().expect("addr").to_string();
    let out = serve(&taken).output().expect("run");
    assert!(!out.status.success());
    assert!(
        !data.join("credentials.json").exists(),
        "a failed start left credentials it never showed"
    );
    drop(busy);
    let run = || {
        let child = serve("127.0.0.1:0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !data.join("serve.json").exists() {
            assert!(std::time::Instant::now() < deadline, "no start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "clean shutdown on SIGTERM");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run();
    let creds: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("credentials.json")).expect("creds"),
    )
    .expect("json");
    let secret = creds["secret_key"].as_str().expect("secret").to_owned();
    assert!(
        first.contains(&secret),
        "the generated secret is shown once"
    );
    for f in ["credentials.json", "admin-token", "state.db"] {
        let mode = std::fs::metadata(data.join(f))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let second = run();
    assert!(
        !second.contains(&secret),
        "the secret is never printed again:\n{second}"
    );
}

/// An existing tree is served: files put into the data directory's local store before the
/// first start are indexed at start-up (a store that was never indexed is scanned).
#[test]
fn existing_tree_is_indexed_on_first_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("pre/data/stores/local");
    std::fs::create_dir_all(root.join("existing/a/b")).expect("mkdir");
    std::fs::write(root.join("existing/a/b/file one.txt"), b"one").expect("write");
    std::fs::write(root.join("existing/top.txt"), b"top").expect("write");
    let mut f = Ferry::start();
    f.kill9();
    // Move the prepared tree in place of the fresh data directory, then start on it.
    std::fs::remove_dir_all(f.data()).expect("rm");
    std::fs::rename(dir.path().join("pre/data"), f.data()).expect("mv");
    f.restart();
    let ls = ok(&f.aws(&["s3", "ls", "--recursive", "s3://existing"]));
    assert!(
        ls.contains("a/b/file one.txt") && ls.contains("top.txt"),
        "{ls}"
    );
    assert_eq!(
        ok(&f.aws(&["s3", "cp", "s3://existing/a/b/file one.txt", "-"])),
        "one"
    );
}

/// `ferry verify` read `store:bucket/solo` as a raw key prefix: `solox` was compared as `x`
/// (and an object `solo` was skipped without a word). A prefix names a folder, as for
/// `ferry migrate` and rclone. "Could not compare" exits 3, apart from "they differ" (1), and
/// a prefix no key could start with is bad usage (2).
#[test]
fn verify_reads_a_prefix_as_a_folder_and_tells_failure_from_difference() {
    let f = Ferry::start();
    for b in ["vera", "verb"] {
        ok(&f.aws(&["s3", "mb", &format!("s3://{b}")]));
        ok(&f.aws(&["s3api", "put-object", "--bucket", b, "--key", "solo/x"]));
    }
    ok(&f.aws(&["s3api", "put-object", "--bucket", "vera", "--key", "solox"]));
    let out = f.cli(&["verify", "local:vera/solo", "local:verb/solo/"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("compared 1 object: 0 differences"), "{said}");
    let out = f.cli(&["verify", "local:vera", "local:verb"]);
    assert_eq!(out.status.code(), Some(1));
    // A mistyped prefix on both sides compares nothing: equal, and said so.
    let out = f.cli(&["verify", "local:vera/typo", "local:verb/typo"]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("are both empty"), "{err}");
    let out = f.cli(&["verify", "local:vera", "local:nobucket"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = f.cli(&["verify", "local:Bad_Bucket", "local:verb"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = f.cli(&["verify", "s3://vera", "local:verb"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("store:bucket[/prefix]"), "{err}");
    let out = f.cli(&["verify", "local:vera/a//b", "local:verb"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("a//b"), "{err}");
}

/// Objects of the same size whose multipart ETags cannot be compared (other part sizes) were
/// only "compared by size only": a changed byte passed. `--download` reads both and compares
/// their bytes, as rclone's `check --download` does; without it the output says how many
/// were taken on size alone.
#[test]
fn verify_download_compares_what_etags_cannot() {
    let f = Ferry::start();
    ok(&f.python("part_sizes.py", &[]));
    let out = f.cli(&["verify", "local:psa", "local:psb"]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 objects were compared by size only"),
        "{err}"
    );
    let out = f.cli(&["verify", "local:psa", "local:psb", "--download"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("content differs: diff"), "{said}");
    assert!(!said.contains("content differs: same"), "{said}");
    assert!(
        said.contains("1 differences (0 compared by size only)"),
        "{said}"
    );
}

/// `ferry verify` compared an fs store by its index, so files changed behind the server's back
/// (edited in place with the same size, added, removed) were reported "0 differences" until a
/// `ferry store rescan`. An fs side is compared as its files are now.
#[test]
fn verify_sees_files_changed_behind_the_servers_back() {
    let f = Ferry::start();
    for b in ["posa", "posb"] {
        ok(&f.aws(&["s3", "mb", &format!("s3://{b}")]));
        for k in ["same", "gone"] {
            let put = ["s3api", "put-object", "--bucket", b, "--key", k];
            ok(&f.aws(&put));
        }
    }
    let out = f.cli(&["verify", "local:posa", "local:posb"]);
    assert!(out.status.success(), "{out:?}");
    let root = f.local_root();
    std::fs::write(root.join("posb/same"), b"").expect("edit in place");
    std::fs::write(root.join("posb/edited"), b"new file").expect("add");
    std::fs::remove_file(root.join("posb/gone")).expect("remove");
    // Same size, so only the content tells: give it some.
    std::fs::write(root.join("posa/same"), b"a").expect("write");
    std::fs::write(root.join("posb/same"), b"b").expect("write");
    let out = f.cli(&["verify", "local:posa", "local:posb"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("only in local:posb: edited"), "{said}");
    assert!(said.contains("only in local:posa: gone"), "{said}");
    assert!(said.contains("content differs: same"), "{said}");
}

/// Bytes that change behind a file's recorded ETag (bit rot; here an edit in place with its
/// size and mtime put back) pass the metadata comparison and the rescan: `--download` read
/// only what ETags could not settle, so it passed too. It reads every pair, as rclone's
/// `check --download` does.
#[test]
fn verify_download_reads_what_metadata_calls_equal() {
    let f = Ferry::start();
    let body = f.data().join("body.txt");
    std::fs::write(&body, "some bytes that rot").expect("body");
    let body = body.to_str().expect("utf-8");
    for b in ["rota", "rotb"] {
        ok(&f.aws(&["s3", "mb", &format!("s3://{b}")]));
        for k in ["kept", "rotten"] {
            let put = [
                "s3api",
                "put-object",
                "--bucket",
                b,
                "--key",
                k,
                "--body",
                body,
            ];
            ok(&f.aws(&put));
        }
    }
    let file = f.local_root().join("rotb/rotten");
    let mtime = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .expect("mtime");
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[0] ^= 0x20;
    {
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .expect("open");
        std::io::Write::write_all(&mut w, &bytes).expect("rot");
        w.set_modified(mtime).expect("put the mtime back");
    }
    let out = f.cli(&["verify", "local:rota", "local:rotb"]);
    assert!(out.status.success(), "metadata cannot tell: {out:?}");
    let out = f.cli(&["verify", "local:rota", "local:rotb", "--download"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    // Not "ETag x vs x": the ETags agree, the bytes do not.
    assert!(
        said.contains("content differs: rotten (the same ETag "),
        "{said}"
    );
    assert!(
        said.contains("compared 2 objects: 1 differences (0 compared by size only)"),
        "{said}"
    );
}

/// `ferry job list` (or `show`) where no job ever ran made a state database there.
#[test]
fn looking_at_jobs_makes_no_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("typo-data");
    let out = Command::new(ferry_bin())
        .args(["job", "list", "--data"])
        .arg(&data)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no job state in"));
    assert!(!data.exists(), "a state directory was made");
}

/// A server that cannot write `serve.json` (a full disk; here its temp name is taken by a
/// folder) still serves, warning that `ferry` commands need `--server`: it used to stop
/// with "No space left on device" naming no file, so a full disk could not even be read.
#[test]
fn a_server_that_cannot_write_serve_json_still_serves() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join(".serve.json.tmp/in-the-way")).expect("dir");
    let port = |_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port()
    };
    let (s3, admin) = (port(0), port(1));
    let log = dir.path().join("serve.log");
    let mut child = Command::new(ferry_bin())
        .args(["serve", "--listen", &format!("127.0.0.1:{s3}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .arg("--data")
        .arg(&data)
        .env("FERRY_ACCESS_KEY", crate::support::ACCESS_KEY)
        .env("FERRY_SECRET_KEY", crate::support::SECRET_KEY)
        .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let health = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://127.0.0.1:{admin}/health"))
            .output()
            .expect("curl");
        if health.stdout == b"200" {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "serve exited with {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(std::time::Instant::now() < deadline, "serve never answered");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("serving without serve.json") && text.contains("serve.json"),
        "{text}"
    );
}

/// A data directory on a read-only filesystem (bound read-only in a mount namespace of the
/// server's): one line naming the state database and why, not SQLite's "unable to open
/// database file" naming neither.
#[test]
fn a_read_only_data_directory_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("dir");
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c"])
        .arg(r#"mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@""#)
        .arg(&data)
        .arg(ferry_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--data")
        .arg(&data)
        .env("FERRY_ACCESS_KEY", crate::support::ACCESS_KEY)
        .env("FERRY_SECRET_KEY", crate::support::SECRET_KEY)
        .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&data.join("state.db").display().to_string())
            && err.contains("Read-only file system"),
        "{err}"
    );
}

/// A relative `data` in a config file is the file's neighbour; one whose state is only where
/// the working directory put it before is refused, naming both, rather than started afresh
/// (new credentials, an empty store).
#[test]
fn a_relative_data_directory_that_moved_is_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let (etc, work) = (dir.path().join("etc"), dir.path().join("work"));
    std::fs::create_dir_all(work.join("data")).expect("work");
    std::fs::create_dir_all(&etc).expect("etc");
    std::fs::write(work.join("data/state.db"), b"").expect("state");
    std::fs::write(etc.join("ferry.toml"), "data = \"data\"\n").expect("config");
    let out = Command::new(ferry_bin())
        .args(["serve", "--config"])
        .arg(etc.join("ferry.toml"))
        .current_dir(&work)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("is now taken from the config file's folder")
            && err.contains(&work.join("data").display().to_string()),
        "{err}"
    );
}

/// A data directory moved elsewhere (a bigger disk) and served from there: the state database
/// recorded the built-in store's old path, and the server made an empty store there, so every
/// bucket was gone and new writes went to the old place. It serves the moved store.
#[test]
fn a_moved_data_directory_keeps_its_objects() {
    let mut f = Ferry::start();
    f.ok(&f.aws(&["s3", "mb", "s3://keep"]));
    let file = f.dir.path().join("obj");
    std::fs::write(&file, b"kept across the move").expect("write");
    f.ok(&f.aws(&["s3", "cp", file.to_str().expect("utf8"), "s3://keep/obj"]));
    f.stop();
    let old = f.data();
    let moved = tempfile::tempdir().expect("tmp");
    std::fs::rename(&old, moved.path().join("data")).expect("move");
    let g = Ferry::start_in(moved);
    let back = g.dir.path().join("back");
    g.ok(&g.aws(&["s3", "cp", "s3://keep/obj", back.to_str().expect("utf8")]));
    assert_eq!(std::fs::read(&back).expect("read"), b"kept across the move");
    assert!(
        !old.exists(),
        "a store was made at the old path {}",
        old.display()
    );
    let listed = g.ok(&g.cli(&["store", "list"]));
    assert!(
        listed.contains(&g.local_root().display().to_string()),
        "{listed}"
    );
}
