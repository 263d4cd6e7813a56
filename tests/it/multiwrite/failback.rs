//! What a failback keeps, refuses and repairs: writes the failover target never got, changes
//! made while it runs, objects only the primary holds, and a primary that is gone.

use super::*;

/// A read-write failover to a secondary that was behind (down while writes were acknowledged,
/// so it owed them): failback must not make the primary "equal" to it by undoing those
/// writes. The keys it still owes keep the primary's newer state, and reach the secondary
/// once roles are back; writes made during the failover reach the primary.
#[test]
fn failback_keeps_writes_the_failover_target_never_got() {
    let (a, mut b) = two_sites("lag", true);
    let file = |name: &str, body: &str| {
        let p = a.dir.path().join(name);
        std::fs::write(&p, body).expect("write");
        p.to_str().expect("utf8").to_owned()
    };
    let (old, new) = (file("old.txt", "old\n"), file("new.txt", "new\n"));
    a.ok(&a.aws(&["s3", "cp", &old, "s3://lag/doc.txt"]));
    a.ok(&a.aws(&["s3", "cp", &old, "s3://lag/gone.txt"]));
    a.ok(&a.aws(&["s3", "cp", &old, "s3://lag/both.txt"]));
    wait_drained(&a, "lag");

    // The secondary goes down; these are acknowledged and owed to it.
    b.kill9();
    a.ok(&a.aws(&["s3", "cp", &new, "s3://lag/doc.txt"]));
    a.ok(&a.aws(&["s3", "cp", &new, "s3://lag/fresh.txt"]));
    a.ok(&a.aws(&["s3", "rm", "s3://lag/gone.txt"]));
    a.ok(&a.aws(&["s3", "cp", &new, "s3://lag/both.txt"]));
    // Fail over to it anyway (the primary site is "lost"), then it comes back.
    let out = a.cli(&[
        "bucket",
        "failover",
        "lag",
        "--to",
        "dr",
        "--mode",
        "read-write",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("dr:lag took over 4 writes behind"), "{err}");
    b.restart();
    a.ok(&a.aws(&["s3", "cp", &new, "s3://lag/during.txt"]));
    // A key it owed, written again during the failover: that write is the newest.
    let later = file("later.txt", "later\n");
    a.ok(&a.aws(&["s3", "cp", &later, "s3://lag/both.txt"]));
    a.ok(&a.cli(&["bucket", "failback", "lag", "--wait"]));
    assert_eq!(status(&a, "lag")["mode"], "normal");

    let body = |key: &str| {
        let out = a.aws(&["s3", "cp", &format!("s3://lag/{key}"), "-"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(
        body("doc.txt").as_deref(),
        Some("new\n"),
        "a newer write was undone"
    );
    assert_eq!(
        body("fresh.txt").as_deref(),
        Some("new\n"),
        "a write was deleted"
    );
    assert_eq!(body("gone.txt"), None, "a delete was undone");
    assert_eq!(
        body("during.txt").as_deref(),
        Some("new\n"),
        "a failover write was lost"
    );
    assert_eq!(
        body("both.txt").as_deref(),
        Some("later\n"),
        "the newest write was lost"
    );
    wait_drained(&a, "lag");
    assert_same(&a, "local:lag", "dr:lag");
}

/// While a failback waits for its primary, other changes to the bucket are refused at once
/// (they used to queue behind it and apply minutes later), and status says it is running.
#[test]
fn changes_during_a_failback_are_refused_not_queued() {
    let a = Ferry::start();
    let mut b = Ferry::start_fixed_port();
    a.add_remote("dr", &b);
    a.ok(&a.cli(&["bucket", "create", "fbk", "--write-to", "dr:fbk,local:fbk"]));
    a.ok(&a.cli(&[
        "bucket",
        "failover",
        "fbk",
        "--to",
        "local",
        "--mode",
        "read-write",
    ]));
    b.kill9();
    let f = a.dir.path().join("x");
    write_file(&f, 100, 3);
    cp_to(&a, &f, "s3://fbk/x");
    // `failback --wait`, given up by its client (Ctrl-C): the failback goes on.
    let mut waiting = Command::new(crate::support::ferry_bin())
        .args(["--server", &a.admin, "bucket", "failback", "fbk", "--wait"])
        .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn failback");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !status(&a, "fbk")["mode"]
        .as_str()
        .unwrap_or("")
        .contains("failing back")
    {
        assert!(
            Instant::now() < deadline,
            "status never showed the failback"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    waiting.kill().expect("kill the waiting client");
    let _ = waiting.wait();
    std::thread::sleep(Duration::from_millis(300));
    for args in [
        &[
            "bucket",
            "failover",
            "fbk",
            "--to",
            "local",
            "--mode",
            "read-only",
        ][..],
        &["bucket", "policy", "fbk", "--write-to", "local:fbk"][..],
        &["bucket", "failback", "fbk"][..],
    ] {
        let started = Instant::now();
        let out = a.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was taken");
        assert!(err.contains("is failing back"), "{args:?}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{args:?} waited"
        );
    }
    b.restart();
    let deadline = Instant::now() + Duration::from_secs(120);
    while status(&a, "fbk")["mode"] != "normal" {
        assert!(Instant::now() < deadline, "the failback never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_drained(&a, "fbk");
    assert_same(&a, "dr:fbk", "local:fbk");
}

/// Failback made the primary equal to the failover target by deleting what only the primary
/// held: objects the secondary was never given (here: files picked up by a rescan of the
/// primary's store) were deleted by a failover and failback with no write at all in between.
#[test]
fn failback_never_deletes_what_only_the_primary_holds() {
    let (a, _b) = two_sites("keep", false);
    for k in ["one", "two"] {
        write_file(&a.local_root().join("keep").join(k), 200, 7);
    }
    a.ok(&a.cli(&["store", "rescan", "local"]));
    a.ok(&a.cli(&[
        "bucket",
        "failover",
        "keep",
        "--to",
        "dr",
        "--mode",
        "read-write",
    ]));
    a.ok(&a.cli(&["bucket", "failback", "keep", "--wait"]));
    assert_eq!(status(&a, "keep")["mode"], "normal");
    for k in ["one", "two"] {
        a.ok(&a.aws(&["s3api", "head-object", "--bucket", "keep", "--key", k]));
    }
}

/// A failback to a primary that had died waited out the hour-long drain limit before it said
/// so. Once nothing has drained for a while and the primary does not answer, it gives up,
/// naming the primary, and the bucket stays failed over.
#[test]
fn failback_to_a_dead_primary_gives_up() {
    let (a, mut b) = remote_primary("gone", &[]);
    a.ok(&a.cli(&[
        "bucket",
        "failover",
        "gone",
        "--to",
        "local",
        "--mode",
        "read-write",
    ]));
    let f = a.dir.path().join("x");
    write_file(&f, 1000, 5);
    b.kill9();
    cp_to(&a, &f, "s3://gone/x");
    let (ok, err) = run_bounded(&a, &["bucket", "failback", "gone", "--wait"]);
    assert!(
        !ok && err.contains("dr:gone does not answer") && err.contains("owed 1 write"),
        "{err}"
    );
    assert!(
        status(&a, "gone")["mode"]
            .as_str()
            .is_some_and(|m| m.contains("read-write")),
        "{}",
        status(&a, "gone")
    );
}

/// The failover target dying while failback drained it onto the primary held `failback
/// --wait` (and every other change of the bucket) for the drain's hour-long limit: only the
/// primary's health was checked. Once nothing has drained for a while and the failover
/// target does not answer, failback gives up naming it, and the bucket stays failed over.
#[test]
fn failback_gives_up_when_the_failover_target_dies_mid_drain() {
    let a = Ferry::start();
    let mut b = Ferry::start();
    let hold = a.dir.path().join("hold-gets");
    let stats = a.dir.path().join("proxy-stats.json");
    let hold_flag = hold.to_string_lossy().into_owned();
    let proxy = crate::support::fault_proxy(&b.s3, "0", &stats, &["--hold-gets-while", &hold_flag]);
    a.add_s3_store(
        "dr",
        &proxy.endpoint,
        crate::support::ACCESS_KEY,
        crate::support::SECRET_KEY,
    );
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "dies",
        "--write-to",
        "local:dies,dr:dies",
    ]));
    a.ok(&a.cli(&[
        "bucket",
        "failover",
        "dies",
        "--to",
        "dr",
        "--mode",
        "read-write",
    ]));
    let f = a.dir.path().join("x");
    write_file(&f, 1000, 5);
    cp_to(&a, &f, "s3://dies/x");
    // The drain's copy of `x` from the failover target waits at the proxy; the target dies.
    std::fs::write(&hold, b"").expect("hold");
    let (ok, err) = std::thread::scope(|s| {
        let failback = s.spawn(|| run_bounded(&a, &["bucket", "failback", "dies", "--wait"]));
        std::thread::sleep(Duration::from_secs(2));
        b.kill9();
        std::fs::remove_file(&hold).expect("release");
        failback.join().expect("failback thread")
    });
    assert!(!ok && err.contains("dr:dies does not answer"), "{err}");
    assert!(
        status(&a, "dies")["mode"]
            .as_str()
            .is_some_and(|m| m.contains("read-write") && !m.contains("failing back")),
        "{}",
        status(&a, "dies")
    );
    drop(proxy);
}

/// An object that reached the failover target some other way (written to it directly) is
/// repaired onto the primary at failback: the other secondaries are owed it too (a probe
/// found `verify` of the primary and a third target differing, with nothing owed).
#[test]
fn what_failback_repairs_onto_the_primary_reaches_the_other_targets() {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    add_fs_store(&a, "fs2");
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "rep",
        "--write-to",
        "local:rep,dr:rep,fs2:rep",
    ]));
    let f = a.dir.path().join("x");
    write_file(&f, 500, 1);
    cp_to(&a, &f, "s3://rep/first");
    wait_drained(&a, "rep");
    // Behind Ferry's back, on the secondary.
    b.ok(&b.aws(&["s3", "cp", f.to_str().unwrap_or_default(), "s3://rep/onlyb"]));
    let over = [
        "bucket",
        "failover",
        "rep",
        "--to",
        "dr",
        "--mode",
        "read-write",
    ];
    a.ok(&a.cli(&over));
    ok_bounded(&a, &["bucket", "failback", "rep", "--wait"]);
    wait_drained(&a, "rep");
    assert_same(&a, "local:rep", "dr:rep");
    assert_same(&a, "local:rep", "fs2:rep");
}

/// Both secondaries were down while writes were acknowledged, then the bucket failed over
/// read-write to one of them. During the failover the other was synced from the failover
/// target, which lacked those writes; at failback the primary kept them, but nothing owed
/// them to that other secondary again: it was left with an older object and without a newer
/// one, with nothing owed (found by a probe). Failback now owes every secondary the keys
/// whose primary state it keeps.
#[test]
fn failback_owes_the_other_secondaries_what_the_primary_kept() {
    other_secondaries_after_failback(false);
}

/// The same, with the failover target gone again at failback (no comparison is possible):
/// the other secondary's rows waited for the failback and are synced from the primary.
#[test]
fn failback_without_the_failover_target_leaves_the_other_secondaries_owed() {
    other_secondaries_after_failback(true);
}

fn other_secondaries_after_failback(down_at_failback: bool) {
    let a = Ferry::start();
    let mut b = Ferry::start_fixed_port();
    a.add_remote("dr", &b);
    let third = add_fs_store(&a, "fs3");
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "tri",
        "--write-to",
        "local:tri,dr:tri,fs3:tri",
    ]));
    let (old, new) = (a.dir.path().join("old"), a.dir.path().join("new"));
    write_file(&old, 300, 1);
    write_file(&new, 700, 2);
    cp_to(&a, &old, "s3://tri/k");
    wait_drained(&a, "tri");
    // Both secondaries go away; these are acknowledged by the primary alone.
    b.kill9();
    let (folder, aside) = (third.join("tri"), third.join("tri.aside"));
    std::fs::rename(&folder, &aside).expect("move aside");
    cp_to(&a, &new, "s3://tri/k");
    cp_to(&a, &new, "s3://tri/n");
    let over = [
        "bucket",
        "failover",
        "tri",
        "--to",
        "dr",
        "--mode",
        "read-write",
    ];
    a.ok(&a.cli(&over));
    b.restart();
    std::fs::rename(&aside, &folder).expect("move back");
    // fs3 is not synced from the failover target meanwhile for the keys that target
    // still owes: they wait for the failback.
    std::thread::sleep(Duration::from_secs(2));
    let owed_fs3 = |a: &Ferry| {
        status(a, "tri")["targets"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["target"] == "fs3:tri").cloned())
            .map_or(0, |t| t["owed_count"].as_i64().unwrap_or(0))
    };
    assert_eq!(owed_fs3(&a), 2, "{}", status(&a, "tri"));
    if down_at_failback {
        // The failover target is gone again: the failback cannot compare with it, and the
        // primary is owed nothing, so it switches at once.
        b.kill9();
    }
    ok_bounded(&a, &["bucket", "failback", "tri", "--wait"]);
    if !down_at_failback {
        wait_drained(&a, "tri");
    }
    let out = a.aws(&["s3", "cp", "s3://tri/k", "-"]);
    assert_eq!(
        out.stdout,
        std::fs::read(&new).expect("read"),
        "the primary lost a write"
    );
    if down_at_failback {
        let deadline = Instant::now() + Duration::from_secs(60);
        while owed_fs3(&a) > 0 {
            assert!(Instant::now() < deadline, "{}", status(&a, "tri"));
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_same(&a, "local:tri", "fs3:tri");
        b.restart();
        wait_drained(&a, "tri");
    }
    assert_same(&a, "local:tri", "fs3:tri");
    assert_same(&a, "local:tri", "dr:tri");
}
