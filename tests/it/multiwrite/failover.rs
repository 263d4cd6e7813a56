//! Failover and failback of a namespace bucket end to end, with a target that does not
//! answer, multipart uploads across them, and writes in flight that must not hold them.

use super::*;

#[test]
fn failover_and_failback() {
    let (a, b) = pair("fover");
    let f = a.dir.path().join("x");
    write_file(&f, 1000, 1);
    let fp = f.to_str().expect("utf8");
    a.ok(&a.aws(&["s3", "cp", fp, "s3://fover/before"]));
    wait_drained(&a, "fover");

    // Read-only: reads come from the secondary, writes are refused with a clear error.
    b.ok(&b.aws(&["s3", "cp", fp, "s3://fover/only-on-dr"]));
    let out = a.ok(&a.cli(&[
        "bucket",
        "failover",
        "fover",
        "--to",
        "dr",
        "--mode",
        "read-only",
    ]));
    assert!(out.contains("read-only"), "{out}");
    a.ok(&a.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "fover",
        "--key",
        "only-on-dr",
    ]));
    let out = a.aws(&["s3", "cp", fp, "s3://fover/refused"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AccessDenied") && err.contains("read-only"),
        "{err}"
    );
    a.ok(&a.cli(&["bucket", "failback", "fover", "--wait"]));
    assert_eq!(status(&a, "fover")["mode"], "normal");
    let out = a.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "fover",
        "--key",
        "only-on-dr",
    ]);
    assert!(
        !out.status.success(),
        "reads should come from the primary again"
    );
    b.ok(&b.aws(&["s3", "rm", "s3://fover/only-on-dr"]));

    // Read-write: 500 writes and deletes land on the secondary, then fail back with --wait.
    a.ok(&a.cli(&[
        "bucket",
        "failover",
        "fover",
        "--to",
        "dr",
        "--mode",
        "read-write",
    ]));
    let tree = a.dir.path().join("rw");
    for i in 0..400 {
        write_file(&tree.join(format!("k{i:03}")), 50 + i, 1000 + i as u64);
    }
    a.ok(&a.aws(&[
        "s3",
        "cp",
        "--recursive",
        tree.to_str().expect("utf8"),
        "s3://fover/rw/",
    ]));
    // 100 deletes: every fourth key.
    a.ok(&a.aws(&[
        "s3",
        "rm",
        "--recursive",
        "s3://fover/rw/",
        "--exclude",
        "*",
        "--include",
        "*[02468]0",
        "--include",
        "*[02468]4",
        "--include",
        "*[02468]8",
        "--include",
        "*[13579]2",
        "--include",
        "*[13579]6",
    ]));
    let out = a.python("multiwrite_ops.py", &["fover"]);
    a.ok(&out);
    // Writes went to the secondary; the primary is only owed them (the catch-up worker may
    // already have delivered some).
    b.ok(&b.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "fover",
        "--key",
        "rw/k001",
    ]));
    let s = status(&a, "fover");
    assert!(
        s["mode"].as_str().unwrap_or("").contains("read-write"),
        "{s}"
    );
    assert_eq!(s["targets"][0]["target"], "dr:fover", "{s}");
    assert_eq!(s["targets"][1]["role"], "owed", "{s}");
    // Writes keep coming during the failback; every acknowledged one must survive it.
    let acks = a.dir.path().join("acks");
    let load = spawn_load(&a, "fover", 300, &acks, None);
    a.ok(&a.cli(&["bucket", "failback", "fover", "--wait"]));
    let out = load.wait_with_output().expect("load");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "300",
        "writes failed during failback"
    );
    assert_eq!(status(&a, "fover")["mode"], "normal");
    assert_eq!(assert_acks_on_primary(&a, "fover", &acks), 300);
    assert!(
        a.local_root().join("fover/rw/k001").exists(),
        "failback did not sync back"
    );
    assert!(
        !a.local_root().join("fover/rw/k000").exists(),
        "a delete was not synced back"
    );
    wait_drained(&a, "fover");
    assert_same(&a, "local:fover", "dr:fover");
}

/// After a failover to a target that does not answer, failback was refused (the bucket was
/// stuck failing every request); `failback --wait` with the failover target gone waited an
/// hour while it owed the primary writes. Failback from a target that is gone fails at once
/// when the primary is owed writes, and goes through when it is owed none. `--to
/// store:bucket` names one of two targets on a store.
#[test]
fn failover_and_failback_with_a_target_that_does_not_answer() {
    let a = Ferry::start();
    let mut b = Ferry::start_fixed_port();
    a.add_remote("dr", &b);
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "dead",
        "--write-to",
        "local:dead,dr:dead-a,dr:dead-b",
    ]));
    let fail = |args: &[&str], want: &str| {
        let out = a.cli(args);
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success() && e.contains(want), "{args:?}: {e}");
        // A target that does not answer is no bad usage (2): the API's 503, exit 1.
        assert_eq!(out.status.code(), Some(1), "{args:?}: {e}");
    };
    let over = |to: &str| {
        a.cli(&[
            "bucket",
            "failover",
            "dead",
            "--to",
            to,
            "--mode",
            "read-write",
        ])
    };
    // The second target on the store, by its full name.
    a.ok(&over("dr:dead-b"));
    assert!(status(&a, "dead").to_string().contains("dead-b"));
    a.ok(&a.cli(&["bucket", "failback", "dead", "--wait"]));
    wait_drained(&a, "dead");

    // Failed over to a target that does not answer (taken: the operator decides), then
    // failback: nothing was written meanwhile, so failback needs nothing from it.
    b.kill9();
    let out = over("dr");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{e}");
    // Said where the operator sees it, not only in the server's log.
    assert!(
        e.contains("warning") && e.contains("does not answer"),
        "{e}"
    );
    a.ok(&a.cli(&["bucket", "failback", "dead", "--wait"]));
    assert_eq!(status(&a, "dead")["mode"], "normal");
    // Failed over, written to, then gone: the primary is owed what only it holds (large, so
    // the catch-up worker is still copying it to the primary when the target dies).
    b.restart();
    a.ok(&over("dr"));
    let f = a.dir.path().join("x");
    write_file(&f, 100 << 20, 4);
    cp_to(&a, &f, "s3://dead/during");
    b.kill9();
    fail(&["bucket", "failback", "dead", "--wait"], "does not answer");
    // Without --wait it is refused at once too (it answered 202 and failed in the
    // background, found by a probe).
    fail(&["bucket", "failback", "dead"], "does not answer");
    // The failure is in the status, not only in the server's log.
    let mut shown = String::new();
    for _ in 0..100 {
        shown = String::from_utf8_lossy(&a.cli(&["bucket", "status", "dead"]).stdout).into_owned();
        if shown.contains("last failback failed") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        shown.contains("last failback failed") && shown.contains("does not answer"),
        "{shown}"
    );
    assert!(
        status(&a, "dead")["failback_error"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("does not answer")),
        "{}",
        status(&a, "dead")
    );
    b.restart();
    a.ok(&a.cli(&["bucket", "failback", "dead", "--wait"]));
    // A failback that succeeds clears it.
    assert!(status(&a, "dead").get("failback_error").is_none());
    a.ok(&a.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "dead",
        "--key",
        "during",
    ]));
}

/// A role change waited without limit for the writes in flight, and the writes after it
/// queued behind: one client stalled mid-body held a failover or a failback for as long as it
/// kept trickling bytes. Now a body still streaming after a short hold is cut, its client is
/// answered 503 (S3 clients retry that), and the change goes ahead.
#[test]
fn a_stalled_upload_holds_neither_failover_nor_failback() {
    let (a, b) = pair("stall");
    let (mut up, mut answer) = a.stalled_put("/stall/one");
    run_bounded(
        &a,
        &[
            "bucket",
            "failover",
            "stall",
            "--to",
            "dr",
            "--mode",
            "read-write",
        ],
    );
    let said = answer.next().and_then(|l| l.ok());
    assert_eq!(said.as_deref(), Some("503 ServiceUnavailable"));
    let _ = up.wait();
    // Writes after the change go to the new primary.
    let f = a.dir.path().join("after");
    write_file(&f, 1000, 7);
    cp_to(&a, &f, "s3://stall/after");
    b.ok(&b.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "stall",
        "--key",
        "after",
    ]));

    // The failover made `dr` (b) the primary: the upload lands on b.
    let (mut up, mut answer) = a.stalled_put_landing("/stall/two", &b);
    ok_bounded(&a, &["bucket", "failback", "stall", "--wait"]);
    let said = answer.next().and_then(|l| l.ok());
    assert_eq!(said.as_deref(), Some("503 ServiceUnavailable"));
    let _ = up.wait();
    assert_eq!(status(&a, "stall")["mode"], "normal");
    // Neither cut upload left an object anywhere.
    for f in [&a, &b] {
        let out = f.aws(&["s3api", "list-objects-v2", "--bucket", "stall"]);
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            !listing.contains("\"one\"") && !listing.contains("\"two\""),
            "{listing}"
        );
    }
}

/// Multipart uploads across role changes. An upload lives on the target that took the
/// bucket's writes when it began, but its calls went to whichever target took them at the
/// time of the call; uploads begun during a read-write failover stayed on the failover target
/// for ever after failback (unlisted, unremovable through Ferry); a read-only failover let an
/// abort through to the primary and listed the primary's uploads. Now an upload's calls go
/// to its holder or fail with NoSuchUpload saying why, failback aborts the uploads begun
/// during the failover, and a read-only failover refuses aborts and lists the uploads of the
/// target serving reads.
#[test]
fn multipart_uploads_across_failover_and_failback() {
    let (a, b) = pair("mpr");
    let mp = |f: &Ferry, args: &[&str]| -> String {
        let out = f.python("multipart_roles.py", args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let failover = |mode: &str| {
        a.ok(&a.cli(&["bucket", "failover", "mpr", "--to", "dr", "--mode", mode]));
    };
    let before = mp(&a, &["begin", "mpr", "before"]);
    let dropped = mp(&a, &["begin", "mpr", "dropped"]);
    let listed = mp(&a, &["uploads", "mpr"]);
    assert!(
        listed.contains(&before) && listed.contains(&dropped),
        "{listed}"
    );

    failover("read-write");
    let said = mp(&a, &["part", "mpr", "before", &before, "2"]);
    assert!(
        said.starts_with("NoSuchUpload: ") && said.contains("begun on local:mpr"),
        "{said}"
    );
    // An abort reaches the upload where it is: a client told "no such upload" would leave
    // its parts on the old primary for ever.
    assert_eq!(mp(&a, &["abort", "mpr", "dropped", &dropped]), "ok");
    let during = mp(&a, &["begin", "mpr", "during"]);
    assert_eq!(mp(&a, &["uploads", "mpr"]), during);
    assert_eq!(mp(&a, &["complete", "mpr", "during", &during]), "ok");
    let left = mp(&a, &["begin", "mpr", "left"]);
    a.ok(&a.cli(&["bucket", "failback", "mpr", "--wait"]));

    let said = mp(&a, &["part", "mpr", "left", &left, "2"]);
    assert!(
        said.starts_with("NoSuchUpload: ") && said.contains("begun on dr:mpr"),
        "{said}"
    );
    assert_eq!(mp(&b, &["uploads", "mpr"]), "", "an upload was left on dr");
    assert_eq!(
        mp(&a, &["uploads", "mpr"]),
        before,
        "the aborted upload is still listed"
    );
    // The upload begun before the failover is the primary's again, and completes.
    assert_eq!(mp(&a, &["part", "mpr", "before", &before, "2"]), "ok");
    assert_eq!(mp(&a, &["complete", "mpr", "before", &before]), "ok");
    for key in ["before", "during"] {
        a.ok(&a.aws(&["s3api", "head-object", "--bucket", "mpr", "--key", key]));
    }

    let ro = mp(&a, &["begin", "mpr", "ro"]);
    failover("read-only");
    let said = mp(&a, &["abort", "mpr", "ro", &ro]);
    assert!(said.starts_with("AccessDenied: "), "{said}");
    assert_eq!(mp(&a, &["uploads", "mpr"]), "");
    a.ok(&a.cli(&["bucket", "failback", "mpr", "--wait"]));
    assert_eq!(mp(&a, &["abort", "mpr", "ro", &ro]), "ok");
}

/// A write stuck inside a store that stopped answering (here a DELETE waiting on a primary
/// that is frozen, as a hung host would be) held a failover away from that primary: only
/// streaming bodies were cut, so the change gave up after its bound, and gave up again on
/// every retry while clients kept writing. The whole write is cut now (its client gets 503;
/// what it journaled stays owed), and the failover goes through.
#[test]
fn a_write_stuck_on_a_hung_primary_does_not_hold_the_failover() {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "hung",
        "--write-to",
        "dr:hung,local:hung",
    ]));
    let f = a.dir.path().join("k");
    write_file(&f, 1000, 9);
    cp_to(&a, &f, "s3://hung/k");
    wait_drained(&a, "hung");
    let pid = b.pid().expect("b runs").to_string();
    let signal = |sig: &str| {
        let st = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(st.success(), "kill {sig}");
    };
    signal("-STOP");
    let mut cmd = Command::new(venv_bin("aws"));
    cmd.args(["--endpoint-url", &a.s3, "s3api", "delete-object"])
        .args(["--bucket", "hung", "--key", "k"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    a.client_env(&mut cmd);
    let mut deleting = cmd.spawn().expect("spawn aws");
    std::thread::sleep(Duration::from_secs(2));
    let (ok, err) = run_bounded(
        &a,
        &[
            "bucket",
            "failover",
            "hung",
            "--to",
            "local",
            "--mode",
            "read-write",
        ],
    );
    signal("-CONT");
    let _ = deleting.kill();
    let _ = deleting.wait();
    assert!(
        ok,
        "the failover was held by a write stuck on the hung primary: {err}"
    );
    assert!(
        status(&a, "hung")["mode"]
            .as_str()
            .is_some_and(|m| m.contains("read-write")),
        "{}",
        status(&a, "hung")
    );
}

/// A primary that stops answering (a frozen host) held every request for the S3 client's
/// whole timeout budget, three minutes, even once `bucket status` showed it down; clients
/// timed out and retried, piling up. Now a call to it is given up once a probe finds it
/// silent (seconds), later ones fail at once with 503 while it stays silent, reads go to the
/// next read target, and writes are taken again as soon as it answers.
#[test]
fn a_frozen_primary_answers_503_at_once_and_reads_move_on() {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "froze",
        "--write-to",
        "dr:froze,local:froze",
        "--read-from",
        "dr:froze,local:froze",
    ]));
    let f = a.dir.path().join("k");
    std::fs::write(&f, b"before the freeze").expect("write");
    cp_to(&a, &f, "s3://froze/k");
    wait_drained(&a, "froze");
    let pid = rustix::process::Pid::from_raw(b.pid().expect("pid") as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    let out = a.python("frozen_primary.py", &["froze", "k", "before the freeze"]);
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).expect("SIGCONT");
    a.ok(&out);
    // Answering again: writes are taken (the first after the probe interval).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = a.aws(&[
            "s3",
            "cp",
            f.to_str().unwrap_or_default(),
            "s3://froze/after",
        ]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes never taken again: {}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_drained(&a, "froze");
    assert_same(&a, "dr:froze", "local:froze");
}

/// A PUT the primary refused (it was down: 503 to the client) had still landed on the
/// secondary, which served it to reads falling back there: a re-run of `rclone copy` saw the
/// file and reported success, and the primary's return reverted it. An acknowledged write
/// the secondary had missed was served stale the same way. A fallback read of a key the
/// target is owed is now 503; other keys are served.
#[test]
fn fallback_reads_never_serve_what_the_target_is_owed() {
    let (a, mut b) = remote_primary("fall", &["--read-from", "dr:fall,local:fall"]);
    for (key, body) in [("k", "v1"), ("steady", "steady")] {
        let f = a.dir.path().join(key);
        std::fs::write(&f, body).expect("write");
        cp_to(&a, &f, &format!("s3://fall/{key}"));
    }
    wait_drained(&a, "fall");
    b.stop();
    let out = a.python("fallback_reads.py", &["fall", "k", "steady"]);
    a.ok(&out);
}
