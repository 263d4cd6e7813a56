//! `ferry volume status`: both sides record every iteration in their state database, good or
//! failed, and the summary says whether the volume is in sync.

use std::process::Command;

use serde_json::Value;

use super::harness::{Destination, run, snapshot_of, source_cmd, stderr, sync_ok};
use crate::support::{ferry_bin, write_file};

pub(super) fn status(dir: &std::path::Path) -> Value {
    let mut cmd = Command::new(ferry_bin());
    cmd.args(["--json", "volume", "status", "--dir"]).arg(dir);
    let out = run(cmd);
    assert!(out.status.success(), "status failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("status JSON")
}

#[test]
fn iterations_are_recorded_on_both_sides() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    for i in 0..20 {
        write_file(&src.join(format!("f{i}")), 1000 + i, i as u64);
    }
    let mut dst = Destination::start(tmp.path(), "dst");
    let report = sync_ok(&src, &dst);
    let id = snapshot_of(&report);

    let s = status(&src);
    assert_eq!(s["out_of_sync"], Value::Bool(false), "{s}");
    assert_eq!(s["consecutive_failures"], 0, "{s}");
    assert_eq!(
        s["last_success"]["snapshot"],
        Value::String(id.clone()),
        "{s}"
    );
    assert_eq!(s["recent"][0]["role"], "source", "{s}");
    assert_eq!(s["recent"][0]["files_sent"], 20, "{s}");
    assert_eq!(s["recent"][0]["wire_bytes"], report["wire_bytes"], "{s}");

    let d = status(&dst.dir);
    assert_eq!(d["recent"][0]["role"], "destination", "{d}");
    assert_eq!(d["recent"][0]["snapshot"], Value::String(id), "{d}");
    assert_eq!(d["recent"][0]["files_sent"], 20, "{d}");
    assert_eq!(d["recent"][0]["files_scanned"], 20, "{d}");

    // The destination is gone: the failure is recorded and the volume is out of sync.
    dst.kill9();
    let out = run(source_cmd(&src, &dst.secret));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let s = status(&src);
    assert_eq!(s["out_of_sync"], Value::Bool(true), "{s}");
    assert_eq!(s["consecutive_failures"], 1, "{s}");
    let err = s["recent"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(err.contains("connect"), "the error says what failed: {err}");
    assert!(s["last_success"]["snapshot"].is_string(), "{s}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET /metrics`, or an empty string while nothing listens yet.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of the first sample of `metric` whose labels contain `with`.
fn sample(text: &str, metric: &str, with: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")) && l.contains(with))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_on_both_sides() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    for i in 0..5 {
        write_file(&src.join(format!("f{i}")), 2000, i as u64);
    }
    let dport = free_port();
    let daddr = format!("127.0.0.1:{dport}");
    let dst = Destination::start_with(tmp.path(), "dst", &["--metrics-listen", &daddr]);
    let sport = free_port();
    let mut cmd = Command::new(ferry_bin());
    cmd.args(["volume", "source", "--dir"])
        .arg(&src)
        .arg("--secret")
        .arg(&dst.secret)
        .args(["--every", "1s", "--metrics-listen"])
        .arg(format!("127.0.0.1:{sport}"));
    let _source = super::harness::Proc::spawn(cmd, super::harness::anon(), super::harness::anon());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let s = loop {
        let s = scrape(sport);
        if sample(&s, "ferry_volume_iterations_total", "outcome=\"ok\"").unwrap_or(0.0) >= 2.0 {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the source did not report two good iterations:\n{s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        sample(&s, "ferry_volume_out_of_sync", "role=\"source\""),
        Some(0.0),
        "{s}"
    );
    assert!(
        sample(&s, "ferry_volume_last_sync_timestamp_seconds", "source").unwrap_or(0.0) > 1.6e9,
        "{s}"
    );
    assert!(s.contains("ferry_volume_missed_intervals_total"), "{s}");
    assert!(
        s.contains("ferry_volume_sync_duration_seconds_count"),
        "{s}"
    );
    // The destination counts an iteration once it has also prepared the next staging tree,
    // after the source was told it was published: wait for it as for the source.
    let d = loop {
        let d = scrape(dport);
        if sample(&d, "ferry_volume_iterations_total", "outcome=\"ok\"").unwrap_or(0.0) >= 2.0 {
            break d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the destination did not report two good iterations:\n{d}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        sample(&d, "ferry_volume_snapshots", "destination").unwrap_or(0.0) >= 2.0,
        "{d}"
    );
    assert_eq!(
        sample(&d, "ferry_volume_out_of_sync", "destination"),
        Some(0.0),
        "{d}"
    );
}
