//! `ferry volume status`: both sides record every iteration in their state database, good or
//! failed, and the summary says whether the volume is in sync.

use std::process::Command;

use serde_json::Value;

use super::harness::{Destination, run, snapshot_of, source_cmd, stderr, sync_ok};
use crate::support::{ferry_bin, write_file};

fn status(dir: &std::path::Path) -> Value {
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
