//! Stopping and resuming: kill -9 ten times, Ctrl-C, pause at a part boundary, and three
//! workers sharing a job on PostgreSQL with one killed.

use super::*;

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
        // Ctrl-C twice, then SIGTERM (a service manager's stop): each ends the run with the
        // status a shell gives a process the signal stopped.
        let (signal, status) = if round < 2 {
            ("-INT", 130)
        } else {
            ("-TERM", 143)
        };
        let _ = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status();
        let ended = wait_for(&mut child, Duration::from_secs(60), &log);
        assert_eq!(
            ended.code(),
            Some(status),
            "{signal}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
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

#[test]
fn three_workers_share_a_job_on_postgres_and_one_is_killed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = fresh_pg_database();
    let a = Ferry::start();
    let b = Ferry::start();
    let src = tmp.path().join("tree/shared");
    make_tree(&src, 1200, &[mib(30), mib(40)]);
    upload_tree(&a, "shared", &src);
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

/// A job whose process was killed stays "running" in the database; `ferry job list` and
/// `show` say it is stalled (no heartbeat) and how to get it going, while a live run names
/// the process that runs it, and running the command again clears it.
#[test]
fn a_killed_job_reads_as_stalled_until_its_command_runs_again() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Apart (not one fs store, whose copies are server-side and not rate limited).
    let src = tmp.path().join("a/src");
    let dst = tmp.path().join("b/dst");
    make_tree(&src, 300, &[]);
    std::fs::create_dir_all(&dst).expect("dst");
    let m = Migrator::new(tmp.path());
    let (s, d) = (
        src.to_str().unwrap_or_default(),
        dst.to_str().unwrap_or_default(),
    );
    let log = tmp.path().join("migrate.log");
    let mut child = m.spawn(&["migrate", s, d, "--bandwidth-limit", "20K"], &log);
    let deadline = Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let out = m.run(&["job", "show", "1"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("run by:") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no runner shown:\n{text}{}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        shown.contains(&format!(":{}:", child.id())),
        "the runner is not the migrate process {}:\n{shown}",
        child.id()
    );
    assert!(!ok(&m.run(&["job", "list"])).contains("stalled"));
    kill9(&mut child);
    // The heartbeat stops; after UNATTENDED_MS (20 s) the job reads as stalled.
    let deadline = Instant::now() + Duration::from_secs(60);
    let list = loop {
        let list = ok(&m.run(&["job", "list"]));
        if list.contains("stalled") {
            break list;
        }
        assert!(Instant::now() < deadline, "never stalled:\n{list}");
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(
        list.lines()
            .any(|l| l.trim_start().starts_with("1  stalled")),
        "{list}"
    );
    assert!(
        list.contains("run its `ferry migrate` command again"),
        "{list}"
    );
    let show = ok(&m.run(&["job", "show", "1"]));
    assert!(
        show.contains("stalled: no process has run it since"),
        "{show}"
    );
    let j = m.job(1);
    assert_eq!(j["job"]["state"], "running");
    assert_eq!(j["job"]["unattended"], true, "{j}");
    assert!(j["job"]["runner_seen_ms"].is_i64(), "{j}");
    // Running the command again resumes the job, which ends done and unstalled.
    let mut again = m.spawn(&["migrate", s, d], &log);
    let status = wait_for(&mut again, Duration::from_secs(120), &log);
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let list = ok(&m.run(&["job", "list"]));
    assert!(!list.contains("stalled") && list.contains("done"), "{list}");
    assert_eq!(m.job(1)["job"]["unattended"], false);
    assert_eq!(
        m.job(1)["runners"],
        serde_json::json!([]),
        "the finished run still listed as a runner"
    );
}

/// A process holds what its workers run and 2 MiB per worker queued, not twice as many
/// tasks again whatever their size: a second `ferry worker` joining a job of large objects
/// would otherwise find every one already taken by the first.
#[test]
fn a_process_claims_little_more_than_its_workers_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, mut child, log) = spawn_dir_job(
        tmp.path(),
        16,
        mib(3),
        &["--workers", "4", "--bandwidth-limit", "16K"],
    );
    let (mut most, mut seen) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 10 {
        assert!(
            Instant::now() < deadline,
            "the job never ran:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let out = m.run(&["job", "show", "1", "--json"]);
        if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout)
            && let Some(running) = v["tasks"]["running"].as_i64()
            && running > 0
        {
            most = most.max(running);
            seen += 1;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    kill9(&mut child);
    assert!(most >= 4, "the four workers never ran at once: {most}");
    assert!(
        most <= 6,
        "{most} tasks claimed by a process of four workers"
    );
}

/// `ferry job cancel` of a job another process copies into a directory: that process aborts
/// the job's unfinished uploads as it stops (it holds the directory until then); the cancel
/// waits for it and reports them aborted, instead of "open in another Ferry process".
#[test]
fn cancel_reports_the_uploads_the_running_process_aborted() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (m, mut child, log) = spawn_dir_job(
        tmp.path(),
        2,
        mib(24),
        &[
            "--part-size",
            "5M",
            "--multipart-threshold",
            "8M",
            "--bandwidth-limit",
            "4M",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "no upload under way:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let out = m.run(&["job", "show", "1", "--json"]);
        if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout)
            && v["open"].as_array().is_some_and(|o| {
                o.iter()
                    .filter(|t| t["parts_done"].as_i64() > Some(0))
                    .count()
                    == 2
            })
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = m.run(&["job", "cancel", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "the cancel reported a failure");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "job 1 cancelled; 2 unfinished multipart uploads aborted"
    );
    wait_for(&mut child, Duration::from_secs(60), &log);
    let j = m.job(1);
    assert_eq!(j["job"]["state"], "cancelled");
    assert!(
        j["open"]
            .as_array()
            .is_some_and(|o| o.iter().all(|t| t["upload_id"].is_null())),
        "uploads still recorded: {j}"
    );
}

/// Starts `ferry migrate` of `n` files of `size` bytes from `a/src` to `b/dst` under `tmp`
/// with `extra` options, in the background: apart, not one fs store, whose copies are
/// server-side and not rate limited. Returns the migrator, the process and its log.
fn spawn_dir_job(tmp: &Path, n: u64, size: usize, extra: &[&str]) -> (Migrator, Child, PathBuf) {
    let src = tmp.join("a/src");
    let dst = tmp.join("b/dst");
    for i in 0..n {
        write_file(&src.join(format!("f{i:02}")), size, i);
    }
    std::fs::create_dir_all(&dst).expect("dst");
    let m = Migrator::new(tmp);
    let log = tmp.join("migrate.log");
    let mut args = vec![
        "migrate",
        src.to_str().unwrap_or_default(),
        dst.to_str().unwrap_or_default(),
    ];
    args.extend_from_slice(extra);
    let child = m.spawn(&args, &log);
    (m, child, log)
}
