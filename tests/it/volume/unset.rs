//! Metadata the destination cannot set. A probe put the source's ACLs and extended
//! attributes on a destination that could not hold them: the first iteration said so and
//! exited 0, and every later one said nothing, "in sync", the replica lacking them for good.
//! rsync says so and exits 23 on every run until it is mended. An owner the destination
//! cannot give is said when the file is written, and not tried again.

use std::ffi::OsStr;
use std::os::unix::fs::lchown;
use std::path::Path;

use rustix::fs::XattrFlags;
use serde_json::Value;

use super::harness::{Destination, NOBODY, run, snapshot_ids, source_cmd, stderr};
use crate::support::write_file;

/// One `--xattrs-trusted` iteration: its exit code and report.
fn iterate(src: &Path, dst: &Destination) -> (Option<i32>, Value, String) {
    let mut cmd = source_cmd(src, &dst.secret);
    cmd.arg("--xattrs-trusted");
    let out = run(cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("source --json printed {text:?}: {e}\n{}", stderr(&out)));
    (out.status.code(), report, stderr(&out))
}

fn not_applied(report: &Value) -> Vec<String> {
    report["not_applied"]
        .as_array()
        .unwrap_or_else(|| panic!("no not_applied in {report}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `trusted.*` attributes need privilege to set: a destination run as an ordinary user
/// cannot give them, while root on the source reads them.
#[test]
fn metadata_the_destination_cannot_set_is_said_and_tried_on_every_iteration() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: reading trusted.* attributes needs root");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("d/f"), 10, 1);
    let set = |p: &Path, name: &str, value: &[u8]| {
        rustix::fs::setxattr(p, OsStr::new(name), value, XattrFlags::empty()).expect("setxattr");
    };
    set(&src.join("d/f"), "trusted.label", b"secret");
    set(&src.join("d/f"), "user.kept", b"yes");
    set(&src.join("d"), "trusted.label", b"dir");
    let dst = Destination::start_unprivileged(t, "dst");
    // Owned by the destination's user, so the owner is not what it fails to set.
    for p in [src.clone(), src.join("d"), src.join("d/f")] {
        lchown(&p, Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
    }
    for round in 0..2 {
        let (code, report, said) = iterate(&src, &dst);
        assert_eq!(code, Some(23), "round {round}: {report}\n{said}");
        assert_eq!(
            not_applied(&report),
            ["d", "d/f"],
            "round {round}: {report}"
        );
        let problems = report["problems"].to_string();
        assert!(
            problems.contains("d/f: cannot set extended attribute trusted.label"),
            "round {round}: {problems}"
        );
        assert!(said.contains("could not set"), "round {round}: {said}");
        // Not "in sync" on either side while the replica lacks them.
        for (side, dir) in [("source", &src), ("destination", &dst.dir)] {
            let st = super::status::status(dir);
            assert_eq!(st["out_of_sync"], Value::Bool(true), "{side}: {st}");
            let why = st["recent"][0]["incomplete"].as_str().unwrap_or_default();
            assert!(why.contains("2 path(s)"), "{side}: {st}");
        }
    }
    // What it could set, it did.
    let ids = snapshot_ids(&dst.dir);
    let f = dst
        .dir
        .join(".ferry/snapshots")
        .join(ids.last().expect("a snapshot"))
        .join("d/f");
    let mut value = [0u8; 16];
    let n = rustix::fs::getxattr(&f, OsStr::new("user.kept"), &mut value).expect("user.kept");
    assert_eq!(&value[..n], b"yes");
    // Mended at the source (the attributes given up): the next iteration is clean.
    for p in [src.join("d/f"), src.join("d")] {
        rustix::fs::removexattr(&p, OsStr::new("trusted.label")).expect("removexattr");
    }
    let (code, report, said) = iterate(&src, &dst);
    assert_eq!(code, Some(0), "{report}\n{said}");
    assert!(not_applied(&report).is_empty(), "{report}");
    for dir in [&src, &dst.dir] {
        let st = super::status::status(dir);
        assert_eq!(st["out_of_sync"], Value::Bool(false), "{st}");
    }
}

/// An owner a destination run as an ordinary user cannot give is said when the file is
/// written, and not tried again: a first version of the retry above made every iteration
/// of such a destination compare every file by content, copy each one at the destination,
/// and exit 23, for ever.
#[test]
fn an_owner_the_destination_cannot_give_is_said_once_not_retried() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: files owned by another user need root");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("d/mine"), 10, 1);
    write_file(&src.join("d/roots"), 10, 2);
    let dst = Destination::start_unprivileged(t, "dst");
    for p in [src.clone(), src.join("d"), src.join("d/mine")] {
        lchown(&p, Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
    }
    let (code, report, said) = iterate(&src, &dst);
    assert_eq!(code, Some(0), "{report}\n{said}");
    assert!(not_applied(&report).is_empty(), "{report}");
    assert!(
        report["problems"]
            .to_string()
            .contains("d/roots: cannot set owner"),
        "{report}"
    );
    let (code, report, said) = iterate(&src, &dst);
    assert_eq!(code, Some(0), "{report}\n{said}");
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["files_sent"], 0, "{report}");
}
