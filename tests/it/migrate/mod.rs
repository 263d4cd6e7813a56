//! `ferry migrate` (issue 5) with real servers: Ferry's own endpoint, `moto_server` and local
//! directories in every direction; kill -9 at random points; pause and resume; a destination
//! that fails a fifth of its requests; dead letters; bad input; three workers sharing a job
//! on PostgreSQL.

mod control;
mod dir;
mod fence;
mod integrity;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{ACCESS_KEY, Ferry, Moto, SECRET_KEY, ferry_bin, ok, venv_bin, write_file};

/// Moto accepts any credentials; these are what the tests give it.
const MOTO_KEY: &str = "testing";

/// A `ferry migrate`-side command line with its own data directory.
struct Migrator {
    data: PathBuf,
    env: Vec<(String, String)>,
}

impl Migrator {
    fn new(dir: &Path) -> Self {
        Self {
            data: dir.join("mdata"),
            env: Vec::new(),
        }
    }

    /// Credentials for an inline s3:// side (`SRC` or `DST`).
    fn creds(mut self, side: &str, ak: &str, sk: &str) -> Self {
        self.env
            .push((format!("FERRY_{side}_ACCESS_KEY"), ak.into()));
        self.env
            .push((format!("FERRY_{side}_SECRET_KEY"), sk.into()));
        self
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(ferry_bin());
        c.arg("--data")
            .arg(&self.data)
            .args(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run ferry")
    }

    fn spawn(&self, args: &[&str], log: &Path) -> Child {
        let log = std::fs::File::create(log).expect("log");
        self.cmd(args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn ferry")
    }

    fn job(&self, id: i64) -> Value {
        let out = ok(&self.run(&["job", "show", &id.to_string(), "--json"]));
        serde_json::from_str(&out).expect("job json")
    }
}

/// A migration from one directory to another (`src` and `dst` are the buckets' folders),
/// with default options but for the part size and the multipart threshold.
fn dir_spec(
    src: &Path,
    dst: &Path,
    part_size: u64,
    threshold: u64,
) -> ferry::jobs::spec::MigrateSpec {
    use ferry::jobs::spec::{Endpoint, MigrateSpec, Options};
    MigrateSpec {
        src: Endpoint::Dir {
            path: src.to_path_buf(),
        },
        dst: Endpoint::Dir {
            path: dst.to_path_buf(),
        },
        options: Options {
            include: Vec::new(),
            exclude: Vec::new(),
            newer_than_ms: None,
            older_than_ms: None,
            checksum: false,
            delete: false,
            part_size,
            multipart_threshold: threshold,
            max_attempts: 3,
        },
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A source tree: `n` small files of varied sizes, a few in folders, and `big` files of the
/// given sizes.
fn make_tree(root: &Path, n: usize, big: &[usize]) {
    for i in 0..n {
        let key = if i % 5 == 0 {
            format!("dir{}/f{i:05}", i % 3)
        } else {
            format!("f{i:05}")
        };
        write_file(&root.join(key), 100 + (i * 37) % 5000, i as u64);
    }
    for (i, size) in big.iter().enumerate() {
        write_file(&root.join(format!("big/b{i}")), *size, 1000 + i as u64);
    }
}

/// Every file under `a` is under `b` with the same bytes, and the other way round.
#[track_caller]
fn assert_same_tree(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .args(["-r", "--exclude=.ferry"])
        .arg(a)
        .arg(b)
        .output()
        .expect("diff");
    assert!(
        out.status.success(),
        "trees differ:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A Prometheus counter's value summed over the series whose labels contain `labels`.
fn counter(f: &Ferry, name: &str, labels: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-s", &format!("{}/metrics", f.admin)])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn mib(n: usize) -> usize {
    n << 20
}

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
    let py = |code: &str| {
        let out = Command::new(venv_bin("python"))
            .args(["-c", code])
            .output()
            .expect("python");
        ok(&out)
    };
    let head = py(&format!(
        "import boto3; c=boto3.client('s3',endpoint_url='{}',aws_access_key_id='testing',aws_secret_access_key='testing',region_name='us-east-1');\
         h=c.head_object(Bucket='mirror',Key='meta.txt'); t=c.get_object_tagging(Bucket='mirror',Key='meta.txt');\
         print(h['ContentType'], h['Metadata'].get('owner'), t['TagSet'])",
        moto.endpoint
    ));
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
    assert!(out.contains("dry run: 1 objects"), "{out}");
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
    let plan: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(plan["copy"], 41, "{out}");
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
    assert!(err.contains("open in another Ferry process"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
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
        (
            Migrator::new(tmp.path()),
            vec!["migrate", s, "s3://there", "--part-size", "1M"],
            2,
            "--part-size",
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

/// A small xorshift generator (the tests print their seed, so a failure can be replayed).
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::env::var("FERRY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("seed {seed} (FERRY_TEST_SEED to replay)");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn kill9(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Waits for a child with a deadline; returns its exit status.
fn wait_for(child: &mut Child, limit: Duration, log: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            kill9(child);
            panic!(
                "ferry did not finish in {limit:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill9_ten_times_finishes_without_copying_anything_twice() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/data");
    let big = [mib(50), mib(120), mib(200)];
    make_tree(&src, 1997, &big);
    let total: u64 = std::fs::read_dir(&src).expect("ls").count() as u64;
    assert!(total > 0);
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let args = [
        "migrate",
        src.to_str().unwrap_or_default(),
        "s3://target",
        "--dst-endpoint",
        &f.s3,
        "--workers",
        "8",
        "--part-size",
        "8M",
        "--multipart-threshold",
        "16M",
        "--bandwidth-limit",
        "20M",
    ];
    let log = tmp.path().join("migrate.log");
    let mut rng = Rng::seeded();
    for round in 0..10 {
        let mut child = m.spawn(&args, &log);
        // A random point: early (listing, first parts) to late.
        std::thread::sleep(Duration::from_millis(300 + rng.below(1200)));
        if child.try_wait().expect("wait").is_some() {
            panic!(
                "the job finished before kill {round}; make it bigger:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        kill9(&mut child);
    }
    let mut child = m.spawn(&args, &log);
    let status = wait_for(&mut child, Duration::from_secs(900), &log);
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{out}");
    assert!(out.contains("resuming job 1"), "{out}");
    // Clean: every object there with its bytes.
    let back = tmp.path().join("back/data");
    let m2 = Migrator::new(tmp.path()).creds("SRC", ACCESS_KEY, SECRET_KEY);
    ok(&m2.run(&[
        "migrate",
        "s3://target",
        back.to_str().unwrap_or_default(),
        "--src-endpoint",
        &f.s3,
    ]));
    assert_same_tree(&src, &back);

    // What the destination received: every byte once, plus at most what was in flight at
    // each kill (8 workers of small objects, 3 large objects x 4 parts of 8 MiB).
    let small_bytes: u64 = (0..1997u64).map(|i| 100 + (i * 37) % 5000).sum();
    let big_bytes: u64 = big.iter().map(|b| *b as u64).sum();
    let in_flight_per_kill = 8 * 5100 + 3 * 4 * (8 << 20);
    let received = counter(&f, "ferry_s3_received_bytes_total", "") as u64;
    let back_out = counter(&f, "ferry_s3_sent_bytes_total", "") as u64;
    assert!(
        back_out >= small_bytes + big_bytes,
        "the check copy read everything back"
    );
    // (A body received just as its client was killed may go uncounted: no lower bound
    // beyond the large objects; the tree comparison above is the completeness check.)
    assert!(received >= big_bytes, "{received}");
    assert!(
        received <= small_bytes + big_bytes + 10 * in_flight_per_kill,
        "received {received} bytes for {} (a finished object was copied again, or uploads restarted)",
        small_bytes + big_bytes
    );
    // Each large object had one multipart upload, resumed across the kills; small PUTs
    // repeat only for what was in flight at a kill.
    let creates = counter(
        &f,
        "ferry_s3_requests_total",
        "op=\"CreateMultipartUpload\"",
    );
    assert!(
        creates <= 3.0 + 2.0,
        "{creates} multipart uploads for 3 objects: restarted, not resumed"
    );
    let puts = counter(&f, "ferry_s3_requests_total", "op=\"PutObject\"");
    eprintln!(
        "received {received} bytes for {}; {creates} multipart uploads; {puts} PUTs",
        small_bytes + big_bytes
    );
    assert!(
        puts <= 1997.0 + 10.0 * 8.0,
        "{puts} PUTs for 1997 small objects"
    );
}

/// Ctrl-C stops the copies in flight, and each object is still stored once: a probe counted
/// 3,031 PUTs for 3,000 keys at the server (PUTs cut short by the stop, sent again, as this
/// test shows when it counts only the stored ones). A task handed back after its copy began
/// is now marked interrupted, so its next run looks before it copies, should that copy have
/// landed after all.
#[test]
fn ctrl_c_then_resume_stores_each_object_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/sigint");
    make_tree(&src, 1500, &[]);
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let args = [
        "migrate",
        src.to_str().unwrap_or_default(),
        "s3://sigint",
        "--dst-endpoint",
        &f.s3,
        "--workers",
        "32",
        "--bandwidth-limit",
        "300K",
    ];
    let log = tmp.path().join("migrate.log");
    for round in 0..3 {
        let mut child = m.spawn(&args, &log);
        std::thread::sleep(Duration::from_millis(1000));
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the job finished before Ctrl-C {round}:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        wait_for(&mut child, Duration::from_secs(60), &log);
    }
    let args: Vec<&str> = args[..args.len() - 2].to_vec();
    let mut child = m.spawn(&args, &log);
    let status = wait_for(&mut child, Duration::from_secs(300), &log);
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let stored = counter(
        &f,
        "ferry_s3_requests_total",
        "op=\"PutObject\",outcome=\"ok\"",
    );
    // At most once each: a PUT whose client was gone may land uncounted (the request's
    // future is dropped with its connection after the commit), never twice.
    assert!(stored <= 1500.0, "{stored} objects stored for 1500");
    let ls = f.ok(&f.aws(&["s3", "ls", "--recursive", "s3://sigint"]));
    assert_eq!(ls.lines().count(), 1500);
}

#[test]
fn pause_stops_transfers_at_a_part_boundary_and_resume_finishes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/paused");
    make_tree(&src, 50, &[mib(60)]);
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let log = tmp.path().join("migrate.log");
    // Slowed down so the pause lands in the middle of the large object.
    let mut child = m.spawn(
        &[
            "migrate",
            src.to_str().unwrap_or_default(),
            "s3://paused",
            "--dst-endpoint",
            &f.s3,
            "--part-size",
            "5M",
            "--multipart-threshold",
            "8M",
            "--bandwidth-limit",
            "12M",
            "--verify",
        ],
        &log,
    );
    // Wait until some parts of the large object are recorded.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if Path::new(&m.data).join("state.db").exists() {
            let out = m.run(&["job", "show", "1", "--json"]);
            if out.status.success() {
                let v: Value = serde_json::from_slice(&out.stdout).expect("json");
                if v["open"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|t| t["parts_done"].as_i64() >= Some(2))
                {
                    break;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = ok(&m.run(&["job", "pause", "1"]));
    assert!(out.contains("paused; no transfer runs"), "{out}");
    let v = m.job(1);
    assert_eq!(v["job"]["state"], "paused");
    assert_eq!(v["tasks"]["running"], 0, "{v}");
    let big = v["open"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["key"] == "big/b0")
        .cloned()
        .unwrap_or_default();
    let parts = big["parts_done"].as_i64().unwrap_or(0);
    assert!(
        (2..12).contains(&parts),
        "the state says which parts are done: {v}"
    );
    assert!(big["upload_id"].is_string(), "{v}");
    // No transfer runs: the destination receives nothing while paused.
    let before = counter(&f, "ferry_s3_received_bytes_total", "");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(counter(&f, "ferry_s3_received_bytes_total", ""), before);
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the foreground job waits while paused"
    );
    ok(&m.run(&["job", "resume", "1"]));
    let status = wait_for(&mut child, Duration::from_secs(300), &log);
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{out}");
    assert!(out.contains("no differences"), "{out}");
    // One upload for the large object: resumed, not restarted.
    let creates = counter(
        &f,
        "ferry_s3_requests_total",
        "op=\"CreateMultipartUpload\"",
    );
    assert_eq!(creates, 1.0);
    let received = counter(&f, "ferry_s3_received_bytes_total", "") as u64;
    let expect: u64 = (mib(60) as u64) + (0..50u64).map(|i| 100 + (i * 37) % 5000).sum::<u64>();
    assert!(
        received <= expect + ((4 * 5) << 20),
        "{received} vs {expect}"
    );
}

/// A running `tests/it/py/fault_proxy.py`, killed when dropped (also when a test fails).
struct Proxy {
    child: Child,
    endpoint: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tests/it/py/fault_proxy.py` in front of `upstream`: it fails a share `rate` of
/// the requests, counting into `stats`; `flags` are the proxy's own (`--corrupt-first N`,
/// `--kms`).
fn fault_proxy(upstream: &str, rate: &str, stats: &Path, flags: &[&str]) -> Proxy {
    let mut child = Command::new(venv_bin("python"))
        .arg(crate::support::repo().join("tests/it/py/fault_proxy.py"))
        .args([upstream, rate, "7"])
        .arg(stats)
        .args(flags)
        .stdout(Stdio::piped())
        .spawn()
        .expect("proxy");
    let port = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("port");
        line.trim().to_owned()
    };
    Proxy {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

/// A destination out of space failed every copy ten times over minutes, then dead-lettered
/// them all. The run stops at the first such answer, dead-letters nothing, says why, and the
/// same command finishes the job once there is room.
#[test]
fn a_full_destination_stops_the_run_and_the_job_resumes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/fills");
    make_tree(&src, 200, &[]);
    let full = tmp.path().join("full");
    std::fs::write(&full, b"").expect("flag");
    let full_flag = full.to_str().expect("utf-8").to_owned();
    let proxy = fault_proxy(
        &f.s3,
        "0",
        &tmp.path().join("proxy.json"),
        &["--full-while", &full_flag],
    );
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let args = [
        "migrate",
        src.to_str().unwrap_or_default(),
        "s3://fills",
        "--dst-endpoint",
        &proxy.endpoint,
    ];
    let out = m.run(&args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("is out of space"), "{err}");
    assert!(err.contains("the job is kept"), "{err}");
    assert!(
        !err.contains("could not be copied"),
        "nothing is a dead letter: {err}"
    );
    let stats: Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("proxy.json")).expect("proxy stats"),
    )
    .expect("json");
    let full_answers = stats["full"].as_f64().unwrap_or(0.0);
    assert!(
        (1.0..200.0).contains(&full_answers),
        "the run stopped early, not after trying every object: {stats}"
    );

    std::fs::remove_file(&full).expect("room again");
    let out = m.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("resuming"), "{}", stderr(&out));
    drop(proxy);
    let ls = f.ok(&f.aws(&["s3", "ls", "--recursive", "s3://fills"]));
    assert_eq!(ls.lines().count(), 200, "{ls}");
}

/// A detached job whose run fails (here: its destination out of space) was restarted by the
/// server at every scan (2 s), each time opening and checking both sides again. It waits
/// before the next try.
#[test]
fn a_failing_detached_job_is_not_restarted_in_a_loop() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    ok(&f.aws(&["s3", "mb", "s3://loopsrc"]));
    let file = tmp.path().join("one");
    write_file(&file, 1000, 1);
    ok(&f.aws(&[
        "s3",
        "cp",
        file.to_str().unwrap_or_default(),
        "s3://loopsrc/one",
    ]));
    let full = tmp.path().join("full");
    std::fs::write(&full, b"").expect("flag");
    let proxy = fault_proxy(
        &f.s3,
        "0",
        &tmp.path().join("proxy.json"),
        &["--full-while", full.to_str().expect("utf-8")],
    );
    f.add_s3_store("full", &proxy.endpoint, ACCESS_KEY, SECRET_KEY);
    ok(&f.cli(&["migrate", "local:loopsrc", "full:loopdst", "--detach"]));
    std::thread::sleep(Duration::from_secs(9));
    let log = f.log();
    let runs = log.matches("job runner failed").count();
    assert!((1..=2).contains(&runs), "{runs} failed runs in 9 s:\n{log}");
    drop(proxy);
}

#[test]
fn faulty_destination_ends_clean_and_unwritable_keys_are_dead_letters() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/faulty");
    make_tree(&src, 300, &[mib(20)]);
    let proxy = fault_proxy(&f.s3, "0.2", &tmp.path().join("proxy.json"), &[]);
    let endpoint = proxy.endpoint.clone();
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let out = m.run(&[
        "migrate",
        src.to_str().unwrap_or_default(),
        "s3://faulty",
        "--dst-endpoint",
        &endpoint,
        "--part-size",
        "5M",
        "--multipart-threshold",
        "8M",
        "--attempts",
        "20",
    ]);
    drop(proxy);
    assert!(out.status.success(), "{}", stderr(&out));
    let stats: Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("proxy.json")).expect("proxy stats"),
    )
    .expect("json");
    let failed = stats["failed_before"].as_f64().unwrap_or(0.0)
        + stats["failed_after"].as_f64().unwrap_or(0.0);
    let all = failed + stats["forwarded"].as_f64().unwrap_or(0.0);
    assert!(
        failed >= 0.1 * all && all > 300.0,
        "faults were injected: {stats}"
    );
    // Checked straight against the server, not through the proxy.
    let m2 = Migrator::new(tmp.path()).creds("SRC", ACCESS_KEY, SECRET_KEY);
    let back = tmp.path().join("back/faulty");
    ok(&m2.run(&[
        "migrate",
        "s3://faulty",
        back.to_str().unwrap_or_default(),
        "--src-endpoint",
        &f.s3,
    ]));
    assert_same_tree(&src, &back);

    // Keys a directory cannot hold both of ("x" and "x/y"): the second is a dead letter
    // with a readable error; the job reports it and exits 1.
    let moto = Moto::start();
    let mm = Migrator::new(tmp.path()).creds("SRC", MOTO_KEY, MOTO_KEY);
    let py = format!(
        "import boto3; c=boto3.client('s3',endpoint_url='{}',aws_access_key_id='testing',aws_secret_access_key='testing',region_name='us-east-1');\
         c.create_bucket(Bucket='clash'); [c.put_object(Bucket='clash',Key=k,Body=b'x') for k in ['a','x','x/y','z']]",
        moto.endpoint
    );
    ok(&Command::new(venv_bin("python"))
        .args(["-c", &py])
        .output()
        .expect("python"));
    let dst = tmp.path().join("out/clash");
    let out = mm.run(&[
        "migrate",
        "s3://clash",
        dst.to_str().unwrap_or_default(),
        "--src-endpoint",
        &moto.endpoint,
        "--attempts",
        "3",
        "--workers",
        "1",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("could not copy x/y"), "{err}");
    assert!(err.contains("1 objects could not be copied"), "{err}");
    let jobs: Value = serde_json::from_str(&ok(&mm.run(&["job", "list", "--json"]))).expect("json");
    let id = jobs
        .as_array()
        .into_iter()
        .flatten()
        .find(|j| j["spec"]["src"]["bucket"] == "clash")
        .and_then(|j| j["id"].as_i64())
        .expect("the clash job");
    let shown = ok(&mm.run(&["job", "show", &id.to_string()]));
    assert!(shown.contains("dead: x/y"), "{shown}");
    assert!(shown.contains("its parent \"x\" is an object"), "{shown}");
    assert_eq!(std::fs::read(dst.join("z")).expect("z"), b"x");
    // retry-dead puts it back; it fails again, still readable.
    let out = ok(&mm.run(&["job", "retry-dead", &id.to_string()]));
    assert!(out.contains("1 tasks back in the queue"), "{out}");
    // --json was ignored here: the text came out.
    let out = ok(&mm.run(&["job", "retry-dead", &id.to_string(), "--json"]));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["job"], id);
}

/// PostgreSQL's own psql (Debian's `psql` wrapper picks a cluster from its environment and
/// can ignore the URL under a test harness).
fn psql() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| PathBuf::from("psql"))
}

/// A fresh PostgreSQL database for one test (so no other test's jobs are in it).
fn fresh_pg_database() -> String {
    let url = std::env::var("FERRY_TEST_PG_URL")
        .expect("FERRY_TEST_PG_URL is not set: run ./scripts/test, which starts PostgreSQL");
    let name = format!(
        "ferry_mig_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    ok(&Command::new(psql())
        .args(["-d", &url, "-q", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql"));
    match url.rfind('/') {
        Some(i) => format!("{}/{name}", &url[..i]),
        None => panic!("unexpected URL {url}"),
    }
}

#[test]
fn three_workers_share_a_job_on_postgres_and_one_is_killed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = fresh_pg_database();
    let a = Ferry::start();
    let b = Ferry::start();
    let src = tmp.path().join("tree/shared");
    make_tree(&src, 1200, &[mib(30), mib(40)]);
    ok(&a.aws(&["s3", "mb", "s3://shared"]));
    ok(&a.aws(&[
        "s3",
        "cp",
        "--recursive",
        "--quiet",
        src.to_str().unwrap_or_default(),
        "s3://shared/",
    ]));
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let out = ok(&m.run(&[
        "migrate",
        "s3://shared",
        "s3://copied",
        "--src-endpoint",
        &a.s3,
        "--dst-endpoint",
        &b.s3,
        "--db",
        &db,
        "--detach",
        "--part-size",
        "5M",
        "--multipart-threshold",
        "8M",
        "--json",
    ]));
    let id = serde_json::from_str::<Value>(&out).expect("json")["job"]["id"]
        .as_i64()
        .expect("job id");
    let mut workers: Vec<Child> = (0..3)
        .map(|i| {
            m.spawn(
                &["worker", "--db", &db, "--workers", "4"],
                &tmp.path().join(format!("w{i}.log")),
            )
        })
        .collect();
    let show = |m: &Migrator| -> Value {
        serde_json::from_str(&ok(&m.run(&[
            "job",
            "show",
            &id.to_string(),
            "--db",
            &db,
            "--json",
        ])))
        .expect("json")
    };
    // Kill one worker once the job is under way.
    let deadline = Instant::now() + Duration::from_secs(120);
    let killed_at = loop {
        let v = show(&m);
        let done = v["job"]["done"].as_i64().unwrap_or(0);
        if done >= 100 {
            break done;
        }
        assert!(Instant::now() < deadline, "no progress: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    kill9(&mut workers[0]);
    let deadline = Instant::now() + Duration::from_secs(300);
    let v = loop {
        let v = show(&m);
        if v["job"]["state"] == "done" {
            break v;
        }
        assert!(Instant::now() < deadline, "the job did not finish: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for w in workers.iter_mut() {
        kill9(w);
    }
    assert!(killed_at < 1202, "the kill came before the end");
    assert_eq!(v["job"]["done"], 1202, "{v}");
    assert_eq!(v["job"]["dead"], 0, "{v}");
    // Every worker did part of it.
    for i in 1..3 {
        let log = std::fs::read_to_string(tmp.path().join(format!("w{i}.log"))).unwrap_or_default();
        assert!(!log.contains("panicked"), "{log}");
    }
    let back = tmp.path().join("back/shared");
    let m2 = Migrator::new(tmp.path()).creds("SRC", ACCESS_KEY, SECRET_KEY);
    ok(&m2.run(&[
        "migrate",
        "s3://copied",
        back.to_str().unwrap_or_default(),
        "--src-endpoint",
        &b.s3,
    ]));
    assert_same_tree(&src, &back);
}

/// A call to the admin API: (status, body).
fn admin(f: &Ferry, method: &str, path: &str, token: &str) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", method, "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("{}{path}", f.admin))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

#[test]
fn detached_job_runs_in_the_server_and_the_admin_api_controls_it() {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    ok(&a.aws(&["s3", "mb", "s3://det"]));
    let tmp = tempfile::tempdir().expect("tmp");
    make_tree(&tmp.path().join("det"), 30, &[]);
    ok(&a.aws(&[
        "s3",
        "cp",
        "--recursive",
        "--quiet",
        tmp.path().join("det").to_str().unwrap_or_default(),
        "s3://det/",
    ]));
    // The CLI hands the job to the server, which holds `local`.
    let out = ok(&a.cli(&["migrate", "local:det", "dr:copy", "--detach", "--json"]));
    let v: Value = serde_json::from_str(&out).expect("json");
    let id = v["job"]["id"].as_i64().expect("id");
    let token = crate::support::ADMIN_TOKEN;
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (code, v) = admin(&a, "GET", &format!("/api/v1/jobs/{id}"), token);
        assert_eq!(code, 200, "{v}");
        if v["job"]["state"] == "done" {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}\n{}", a.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(done["job"]["done"], 30, "{done}");
    assert_eq!(done["tasks"]["pending"], 0, "{done}");
    let ls = ok(&b.aws(&["s3", "ls", "--recursive", "s3://copy/"]));
    assert_eq!(ls.lines().count(), 30, "{ls}");
    // `ferry job` with --server follows it from anywhere (no state database here): it
    // printed "no job state in ferry-data" before.
    let elsewhere = tempfile::tempdir().expect("tmp");
    let job_cli = |args: &[&str]| {
        Command::new(ferry_bin())
            .arg("--server")
            .arg(&a.admin)
            .args(args)
            .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
            .current_dir(elsewhere.path())
            .output()
            .expect("run ferry")
    };
    let listed = ok(&job_cli(&["job", "list"]));
    assert!(
        listed.contains("local:det -> dr:copy") && listed.contains("30/30"),
        "{listed}"
    );
    let shown = ok(&job_cli(&["job", "show", &id.to_string()]));
    assert!(shown.contains(&format!("job {id}: done")), "{shown}");
    let out = job_cli(&["job", "resume", "9999"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!elsewhere.path().join("ferry-data").exists());
    // The same command again finds nothing to do: a new job, everything unchanged.
    let out = ok(&a.cli(&["migrate", "local:det", "dr:copy", "--detach", "--json"]));
    let again: Value = serde_json::from_str(&out).expect("json");
    assert_ne!(again["job"]["id"], id);

    let (code, list) = admin(&a, "GET", "/api/v1/jobs", token);
    assert_eq!(code, 200);
    assert!(list.as_array().is_some_and(|l| l.len() >= 2), "{list}");
    let (code, v) = admin(&a, "POST", &format!("/api/v1/jobs/{id}/pause"), token);
    assert_eq!(code, 409, "a finished job cannot be paused: {v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("only a running job"),
        "{v}"
    );
    let (code, _) = admin(&a, "POST", "/api/v1/jobs/9999/resume", token);
    assert_eq!(code, 404);
    let (code, dead) = admin(&a, "GET", &format!("/api/v1/jobs/{id}/dead"), token);
    assert_eq!((code, dead), (200, serde_json::json!([])));
    let (code, _) = admin(&a, "GET", "/api/v1/jobs", "wrong-token");
    assert_eq!(code, 401);
    let (_, doc) = admin(&a, "GET", "/api/v1/openapi.json", token);
    for p in [
        "/api/v1/jobs",
        "/api/v1/jobs/{id}/pause",
        "/api/v1/jobs/{id}/retry-dead",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} is documented");
    }
    // What only the process running the job could honour is refused with --detach, not
    // dropped: a detached --dry-run copied (and with --delete deleted) for real, and
    // --bandwidth-limit, --workers and --verify were ignored.
    for extra in [
        &["--dry-run", "--delete"][..],
        &["--verify"][..],
        &["--workers", "2"][..],
        &["--bandwidth-limit", "10K"][..],
    ] {
        let mut args = vec!["migrate", "local:det", "dr:dry", "--detach"];
        args.extend_from_slice(extra);
        let out = a.cli(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(extra[0]), "{}", stderr(&out));
    }
    let listed = ok(&a.aws(&["s3", "ls", "s3://"]));
    assert!(
        !listed.contains(" dry"),
        "a refused detach made a bucket: {listed}"
    );
    // An inline s3:// side takes its credentials from the server's environment, never the
    // client's: the refusal says so, rather than "set FERRY_SRC_ACCESS_KEY" to a client that
    // has (the server here was started without any).
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        let out = a.cli_env(
            &[
                "migrate",
                "s3://det",
                "dr:inline",
                "--src-endpoint",
                &a.s3,
                "--detach",
            ],
            &[
                ("FERRY_SRC_ACCESS_KEY", ACCESS_KEY),
                ("FERRY_SRC_SECRET_KEY", SECRET_KEY),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("the server has no credentials for the source"),
            "{}",
            stderr(&out)
        );
    }
    // A bad side is refused by the server before a job exists.
    let out = a.cli(&["migrate", "nosuch:det", "dr:copy", "--detach"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no store named \"nosuch\""),
        "{}",
        stderr(&out)
    );
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
    let boto = format!(
        "import boto3; c=boto3.client('s3',endpoint_url='{}',aws_access_key_id='testing',aws_secret_access_key='testing',region_name='us-east-1');",
        moto.endpoint
    );
    let py = format!(
        "{boto} c.create_bucket(Bucket='odd'); [c.put_object(Bucket='odd',Key=k,Body=b'x') for k in ['pre/','pre/a.txt','pre/b//c','pre/d/../e','pre//lead','pre/z.txt']]"
    );
    ok(&Command::new(venv_bin("python"))
        .args(["-c", &py])
        .output()
        .expect("python"));
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
    let py = format!(
        "{boto} print(sorted(o['Key'] for o in c.list_objects_v2(Bucket='copy')['Contents']))"
    );
    let listed = ok(&Command::new(venv_bin("python"))
        .args(["-c", &py])
        .output()
        .expect("python"));
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
    let out = ok(&m.run(&dry));
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

/// A source whose listing is refused after its first page (credentials revoked mid-run):
/// `--delete` had already removed destination keys of that page, and the run retried for
/// ever, its log without the cause. Deletions wait for the whole listing, and a listing
/// error that retrying does not cure ends the run (exit 1) naming it; the job is kept.
#[test]
fn a_listing_refused_halfway_deletes_nothing_and_ends_the_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    // 1,200 source keys (two listing pages) and keys only the destination has.
    let tree = tmp.path().join("t/many");
    for i in 0..1200 {
        write_file(&tree.join(format!("k{i:04}")), 10, i);
    }
    ok(&m.run(&[
        "migrate",
        tree.to_str().unwrap_or_default(),
        "s3://many",
        "--dst-endpoint",
        &f.s3,
    ]));
    let extra = tmp.path().join("t/dest");
    for k in ["a-extra", "k0500x", "z-extra"] {
        write_file(&extra.join(k), 5, 1);
    }
    ok(&m.run(&[
        "migrate",
        extra.to_str().unwrap_or_default(),
        "s3://dest",
        "--dst-endpoint",
        &f.s3,
    ]));
    let stats = tmp.path().join("proxy.json");
    let proxy = fault_proxy(&f.s3, "0", &stats, &["--deny-lists-after", "1"]);
    let out = m.run(&[
        "migrate",
        "s3://many",
        "s3://dest",
        "--src-endpoint",
        &proxy.endpoint,
        "--dst-endpoint",
        &f.s3,
        "--delete",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("AccessDenied"),
        "the cause is not named: {err}"
    );
    let listed = |prefix: &str| {
        f.ok(&f.aws(&[
            "s3api",
            "list-objects-v2",
            "--bucket",
            "dest",
            "--prefix",
            prefix,
        ]))
    };
    let first = listed("k0500x");
    assert!(
        first.contains("k0500x"),
        "a key of the first page was deleted: {first}"
    );
    let extra = listed("a-extra");
    assert!(extra.contains("a-extra"), "a-extra was deleted: {extra}");
}
