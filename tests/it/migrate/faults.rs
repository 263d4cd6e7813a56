//! A faulty destination: injected errors, a destination out of space, a listing refused
//! halfway, and a detached job whose run fails.

use super::*;

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

/// A copy in parts that failed for good left its multipart upload on the destination: the
/// job ended with the task dead-lettered and the upload recorded, and a new job made a new
/// upload, so the parts (invisible to listings, still stored and billed) stayed for good.
/// The upload of a dead-lettered copy is aborted, as rclone aborts a failed one.
#[test]
fn a_dead_lettered_copy_in_parts_leaves_no_upload_behind() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/partial");
    write_file(&src.join("big.bin"), 13 * 1024 * 1024, 5);
    write_file(&src.join("small.txt"), 100, 6);
    let stats = tmp.path().join("proxy.json");
    let proxy = fault_proxy(&f.s3, "0", &stats, &["--fail-part", "3"]);
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let out = m.run(&[
        "migrate",
        src.to_str().unwrap_or_default(),
        "s3://partial",
        "--dst-endpoint",
        &proxy.endpoint,
        "--multipart-threshold",
        "8M",
        "--part-size",
        "5M",
        "--attempts",
        "1",
    ]);
    drop(proxy);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("could not be copied"), "{err}");
    let stats: Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).expect("proxy stats")).expect("json");
    assert!(stats["failed_parts"].as_u64().unwrap_or(0) >= 1, "{stats}");
    let ls = f.ok(&f.aws(&["s3", "ls", "--recursive", "s3://partial"]));
    assert!(ls.contains("small.txt") && !ls.contains("big.bin"), "{ls}");
    let uploads = f.ok(&f.aws(&["s3api", "list-multipart-uploads", "--bucket", "partial"]));
    assert!(
        !uploads.contains("UploadId"),
        "the dead letter's upload is aborted: {uploads}"
    );
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
    moto.boto(
        "c.create_bucket(Bucket='clash'); [c.put_object(Bucket='clash',Key=k,Body=b'x') for k in ['a','x','x/y','z']]",
    );
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
    assert!(err.contains("1 object could not be copied"), "{err}");
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

    // Mirroring, the same clash: a path conflict is retried only while a deletion may still
    // clear it. `x` is a source key, so none will: a dead letter after a try or two, not ten
    // tries over minutes (a probe's run took 4.5).
    let mirror = tmp.path().join("out/mirror");
    let out = mm.run(&[
        "migrate",
        "s3://clash",
        mirror.to_str().unwrap_or_default(),
        "--src-endpoint",
        &moto.endpoint,
        "--delete",
        "--attempts",
        "10",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // Whichever of the two its workers wrote first stands.
    assert!(err.contains("could not copy x"), "{err}");
    assert!(
        !err.contains("after 10 attempts") && !err.contains("after 9 attempts"),
        "{err}"
    );
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

/// A runner whose own credentials a side refuses stops its run and hands its tasks back: it
/// must not dead-letter the job's objects for the runners whose credentials work (a probe saw
/// 2,996 of 3,000 tasks dead after one misconfigured server took them).
#[test]
fn a_runner_with_refused_credentials_leaves_the_job_to_the_others() {
    let tmp = tempfile::tempdir().expect("tmp");
    let db = fresh_pg_database();
    let (a, b, good) = two_servers_with_tree(tmp.path(), "creds", 200);
    // The job is listed by a first run (slowed down), killed once the listing is complete:
    // what is left is copies.
    let first_log = tmp.path().join("first.log");
    let mut first = good.spawn(
        &[
            "migrate",
            "s3://creds",
            "s3://copied",
            "--src-endpoint",
            &a.s3,
            "--dst-endpoint",
            &b.s3,
            "--db",
            &db,
            "--bandwidth-limit",
            "20K",
        ],
        &first_log,
    );
    let id = 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = good.run(&["job", "show", "1", "--db", &db, "--json"]);
        if out.status.success()
            && serde_json::from_slice::<Value>(&out.stdout).expect("json")["job"]["listing_done"]
                == true
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never listed: {}",
            std::fs::read_to_string(&first_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    kill9(&mut first);
    let show = || -> Value {
        let out = good.run(&["job", "show", &id.to_string(), "--db", &db, "--json"]);
        serde_json::from_str(&ok(&out)).expect("json")
    };
    let bad = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, "not-the-secret");
    let bad_log = tmp.path().join("bad.log");
    let mut w1 = bad.spawn(&["worker", "--db", &db], &bad_log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&bad_log)
        .unwrap_or_default()
        .contains("refused this process's credentials")
    {
        assert!(
            Instant::now() < deadline,
            "the bad runner never stopped: {}\n{}",
            std::fs::read_to_string(&bad_log).unwrap_or_default(),
            show()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let v = show();
    assert_eq!(v["job"]["dead"], 0, "the bad runner dead-lettered: {v}");
    assert_eq!(v["job"]["state"], "running", "{v}");
    // Why is said on the job, not only in that worker's log (a probe saw "stalled" and
    // "error: null").
    let why = v["job"]["error"].as_str().unwrap_or_default();
    assert!(why.contains("refused this process's credentials"), "{v}");
    let text = ok(&good.run(&["job", "show", &id.to_string(), "--db", &db]));
    assert!(text.contains("  error: the last run on "), "{text}");
    let mut w2 = good.spawn(&["worker", "--db", &db], &tmp.path().join("good.log"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let v = loop {
        let v = show();
        if v["job"]["state"] == "done" {
            break v;
        }
        assert!(Instant::now() < deadline, "not done: {v}");
        std::thread::sleep(Duration::from_millis(200));
    };
    kill9(&mut w1);
    kill9(&mut w2);
    assert_eq!(v["job"]["dead"], 0, "{v}");
    assert_eq!(v["job"]["done"], 200, "{v}");
    let ls = b.ok(&b.aws(&["s3", "ls", "--recursive", "s3://copied"]));
    assert_eq!(ls.lines().count(), 200);
}

/// A source bucket removed while the job ran made every remaining task a dead letter, each
/// printed twice (a probe). The run stops at the first copy that finds the bucket gone, says
/// so once, dead-letters nothing, and keeps the job.
#[test]
fn a_bucket_removed_mid_run_stops_the_run_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b) = (Ferry::start(), Ferry::start());
    // Objects that take seconds each at the rate below: the copy in flight when the bucket
    // goes outlasts `rb --force` (its objects, then the bucket), so the next task finds the
    // bucket gone. With small objects the tasks left all found theirs gone (vanished) in
    // the moment between the two, and the job ended "done" (a CI run).
    let src = tmp.path().join("tree/gone");
    for i in 0..40 {
        write_file(&src.join(format!("f{i:02}")), 64 * 1024, i);
    }
    upload_tree(&a, "gone", &src);
    let m = Migrator::new(tmp.path())
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    let log = tmp.path().join("run.log");
    let mut child = m.spawn(
        &[
            "migrate",
            "s3://gone",
            "s3://kept",
            "--src-endpoint",
            &a.s3,
            "--dst-endpoint",
            &b.s3,
            "--workers",
            "1",
            "--bandwidth-limit",
            "16K",
        ],
        &log,
    );
    // Once a few objects are across, the source bucket goes (its objects, then itself).
    wait_until_listed(&b, "s3://kept/", 2, &log);
    a.ok(&a.aws(&["s3", "rb", "--force", "s3://gone"]));
    let status = wait_for(&mut child, Duration::from_secs(120), &log);
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err.matches("is gone").count(), 1, "{err}");
    assert!(err.contains("the source bucket s3://gone"), "{err}");
    assert!(!err.contains("could not be copied"), "{err}");
}

/// A destination that stops answering (SIGSTOP: a frozen host) kept `ferry migrate` silent
/// for three minutes (the SDK's attempts of a minute each) before "operation attempt
/// timeout" (a probe). Its S3 sides are watched: it is said in seconds, as such.
#[test]
fn a_frozen_destination_is_said_in_seconds() {
    let tmp = tempfile::tempdir().expect("tmp");
    let b = Ferry::start();
    let src = tmp.path().join("tree/frozen");
    make_tree(&src, 3, &[]);
    b.ok(&b.aws(&["s3", "mb", "s3://frozen"]));
    let pid = rustix::process::Pid::from_raw(b.pid().expect("pid") as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let log = tmp.path().join("run.log");
    let mut child = m.spawn(
        &[
            "migrate",
            src.to_str().unwrap_or_default(),
            "s3://frozen",
            "--dst-endpoint",
            &b.s3,
        ],
        &log,
    );
    // Well under the SDK's three minutes; the watch says it after about eight seconds.
    let status = wait_for(&mut child, Duration::from_secs(100), &log);
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT");
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{err}");
    assert!(err.contains("not answering"), "{err}");
    assert!(err.contains("destination"), "{err}");
}

/// A destination that stops answering while the job runs (SIGSTOP for 15 s): its watch
/// fails each call at once, which spent every task's attempts within minutes (all dead
/// letters, a review). While a side does not answer, copies are tried again without
/// spending attempts: with two attempts allowed, nothing is a dead letter and all arrive.
#[test]
fn a_destination_frozen_mid_run_spends_no_attempts() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (a, b, m) = two_servers_with_tree(tmp.path(), "thaw", 30);
    b.ok(&b.aws(&["s3", "mb", "s3://thawed"]));
    let log = tmp.path().join("run.log");
    let mut child = m.spawn(
        &[
            "migrate",
            "s3://thaw",
            "s3://thawed",
            "--src-endpoint",
            &a.s3,
            "--dst-endpoint",
            &b.s3,
            "--workers",
            "2",
            // About ten seconds for the 19 KB: the outage starts well before the end, even
            // on a loaded machine where listing the destination takes a second.
            "--bandwidth-limit",
            "2K",
            "--attempts",
            "2",
            "--json",
        ],
        &log,
    );
    wait_until_listed(&b, "s3://thawed/", 3, &log);
    let pid = rustix::process::Pid::from_raw(b.pid().expect("pid") as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    // Long enough for a progress line (every 10 s) after the outage is found (5-8 s).
    std::thread::sleep(Duration::from_secs(25));
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT");
    let status = wait_for(&mut child, Duration::from_secs(180), &log);
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{out}");
    assert!(!out.contains("could not be copied"), "{out}");
    // Meanwhile the progress said why nothing moved (a probe read the counts as a hang).
    assert!(
        out.contains("a side has not answered for") && out.contains("the run stops after 300 s"),
        "{out}"
    );
    let ls = b.ok(&b.aws(&["s3", "ls", "--recursive", "s3://thawed"]));
    assert_eq!(ls.lines().count(), 30, "{ls}");
}

/// Waits (a minute at most) until `url` lists `n` entries on `f`, while the run logging to
/// `log` copies.
#[track_caller]
fn wait_until_listed(f: &Ferry, url: &str, n: usize, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ls = f.aws(&["s3", "ls", url]);
        if String::from_utf8_lossy(&ls.stdout).lines().count() >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no copy landed: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two servers, the first holding a tree of `n` files in `bucket`, and a migrator with their
/// credentials.
fn two_servers_with_tree(tmp: &Path, bucket: &str, n: usize) -> (Ferry, Ferry, Migrator) {
    let (a, b) = (Ferry::start(), Ferry::start());
    let src = tmp.join("tree").join(bucket);
    make_tree(&src, n, &[]);
    upload_tree(&a, bucket, &src);
    let m = Migrator::new(tmp)
        .creds("SRC", ACCESS_KEY, SECRET_KEY)
        .creds("DST", ACCESS_KEY, SECRET_KEY);
    (a, b, m)
}
