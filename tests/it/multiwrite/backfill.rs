//! The backfill of an added secondary: every object the primary holds is journaled for it.
//! A probe cut one short (the primary stopped answering 0.5 s into `bucket create`, or the
//! server was killed): the change was made, 7,000 of 30,000 objects were owed, and status
//! said nothing was owed, for good. A backfill is now recorded before the change, resumed
//! from its last key until done, and shown meanwhile.

use std::time::{Duration, Instant};

use super::{status, wait_drained};
use crate::support::{ACCESS_KEY, Ferry, SECRET_KEY, fault_proxy};

/// The primary (a second Ferry, behind a proxy) stops answering listings after the first
/// pages of the backfill; the server is then killed and restarted; once the primary answers
/// again, the backfill resumes and the secondary is owed, then given, everything.
#[test]
fn a_backfill_cut_short_is_resumed_until_done() {
    let a = Ferry::start();
    let b = Ferry::start();
    // 3,500 objects: four pages of the primary's listing.
    let src = b.local_root().join("bigsrc");
    std::fs::create_dir_all(&src).expect("bucket dir");
    for i in 0..3500 {
        std::fs::write(src.join(format!("k{i:05}")), format!("object {i}")).expect("write");
    }
    b.ok(&b.cli(&["store", "rescan", "local", "--adopt"]));
    let outage = a.dir.path().join("outage");
    std::fs::write(&outage, b"").expect("outage file");
    let stats = a.dir.path().join("proxy-stats.json");
    let outage_flag = outage.to_string_lossy().into_owned();
    let proxy = fault_proxy(
        &b.s3,
        "0",
        &stats,
        &[
            "--deny-lists-after",
            "3",
            "--deny-lists-while",
            &outage_flag,
        ],
    );
    a.add_s3_store("dr", &proxy.endpoint, ACCESS_KEY, SECRET_KEY);
    let out = a.cli(&[
        "bucket",
        "create",
        "nsx",
        "--write-to",
        "dr:bigsrc,local:nsx",
    ]);
    // The change is made (exit 0, not 2 as for refused input), and the answer says the
    // backfill goes on in the background.
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("ferry: warning: ") && said.contains("the policy is in place"),
        "{said}"
    );
    let s = status(&a, "nsx");
    let secondary = s["targets"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["target"] == "local:nsx"))
        .cloned()
        .unwrap_or_default();
    assert!(secondary["backfill_after"].is_string(), "{s}");
    assert!(
        (secondary["owed_count"].as_i64().unwrap_or(0)) < 3500,
        "the whole listing was journaled before the outage: {s}"
    );
    let text = a.ok(&a.cli(&["bucket", "status", "nsx"]));
    assert!(
        text.contains("backfill from the primary is not done"),
        "{text}"
    );
    // The primary may not change while the secondary is behind its backfill.
    let swap = a.cli(&[
        "bucket",
        "policy",
        "nsx",
        "--write-to",
        "local:nsx,dr:bigsrc",
    ]);
    let said = String::from_utf8_lossy(&swap.stderr).into_owned();
    assert!(!swap.status.success(), "{said}");
    // Killed meanwhile; the outage ends; the restarted server resumes the backfill.
    let mut a = a;
    a.kill9();
    std::fs::remove_file(&outage).expect("end the outage");
    a.restart();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = status(&a, "nsx");
        let pending = s["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["backfill_after"].is_string());
        if !pending {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the backfill was not resumed: {s}\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_drained(&a, "nsx");
    let out = a.cli(&["verify", "dr:bigsrc", "local:nsx"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(proxy);
}

/// The catch-up settled a page of owed keys (up to 2,048) only once its last copy ended:
/// one slow object held every other key of the page owed, so status and metrics showed no
/// progress for as long, and a crash meanwhile copied them all again. Keys are settled as
/// they are copied now: with one object held on the way, the rest are settled.
#[test]
fn the_catch_up_settles_keys_as_they_are_copied() {
    let a = Ferry::start();
    let b = Ferry::start();
    let src = a.local_root().join("quick");
    std::fs::create_dir_all(&src).expect("bucket dir");
    for i in 0..40 {
        let name = if i == 7 {
            "slow".to_string()
        } else {
            format!("k{i:02}")
        };
        std::fs::write(src.join(name), format!("object {i}")).expect("write");
    }
    a.ok(&a.cli(&["store", "rescan", "local", "--adopt"]));
    b.ok(&b.aws(&["s3", "mb", "s3://quick"]));
    let hold = a.dir.path().join("hold");
    std::fs::write(&hold, b"").expect("hold file");
    let stats = a.dir.path().join("proxy-stats.json");
    let hold_flag = hold.to_string_lossy().into_owned();
    let proxy = fault_proxy(
        &b.s3,
        "0",
        &stats,
        &["--hold-puts-while", &hold_flag, "--hold-key", "/slow"],
    );
    a.add_s3_store("dr", &proxy.endpoint, ACCESS_KEY, SECRET_KEY);
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "quick",
        "--write-to",
        "local:quick,dr:quick",
    ]));
    let owed = || {
        status(&a, "quick")["targets"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["target"] == "dr:quick"))
            .and_then(|t| t["owed_count"].as_i64())
            .unwrap_or(-1)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while owed() != 1 {
        assert!(
            Instant::now() < deadline,
            "the copied keys were not settled while one was held: {}",
            status(&a, "quick")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::remove_file(&hold).expect("release");
    wait_drained(&a, "quick");
    let out = a.cli(&["verify", "local:quick", "dr:quick"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
