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

/// Whether this runs as root; says why the test is skipped otherwise.
fn root_or_skip(why: &str) -> bool {
    let root = rustix::process::geteuid().is_root();
    if !root {
        eprintln!("skipped: {why}");
    }
    root
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
    if !root_or_skip("reading trusted.* attributes needs root") {
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
    if !root_or_skip("files owned by another user need root") {
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

/// `--xattrs-security` / `--xattrs-trusted` given from some iteration on: a file unchanged
/// since the last had its attributes taken from the manifest, read without them, and they
/// never went (a probe). Under another policy than the manifest's, they are read again.
#[test]
fn attributes_asked_for_later_are_sent_for_unchanged_files() {
    if !root_or_skip("reading trusted.* attributes needs root") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("f"), 10, 1);
    rustix::fs::setxattr(
        src.join("f"),
        OsStr::new("trusted.t"),
        b"tv",
        XattrFlags::empty(),
    )
    .expect("setxattr");
    let dst = Destination::start(t, "dst");
    super::harness::sync_ok(&src, &dst);
    let (code, report, said) = iterate(&src, &dst);
    assert_eq!(code, Some(0), "{report}\n{said}");
    let id = super::harness::snapshot_of(&report);
    let copy = dst.dir.join(".ferry/snapshots").join(id).join("f");
    let got = rustix::fs::getxattr(&copy, OsStr::new("trusted.t"), &mut [0u8; 16][..])
        .unwrap_or_else(|e| panic!("trusted.t on {}: {e}", copy.display()));
    assert_eq!(got, 2);
}

/// A destination run as an ordinary user gave a folder the source's mode 000 (or 0300) in
/// its snapshot, then could not read it to build the next staging tree: every later
/// iteration failed, for good (a probe; rsync as a user does not); so did a file of mode
/// 000 or 0200 once changed (a re-probe). It keeps `u+rx` on its own folders and `u+r` on
/// its files, and `promote` gives the mode the source has.
#[test]
fn a_destination_run_as_a_user_replicates_folders_it_could_not_read() {
    use std::os::unix::fs::PermissionsExt;
    if !root_or_skip("needs root to run the destination as another user") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("closed/f1"), 10, 1);
    write_file(&src.join("blind/f2"), 10, 2);
    write_file(&src.join("top"), 10, 3);
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod");
    };
    // And files it could not read back (a re-probe): one made readable later, one large
    // enough to go in chunks edited in place.
    write_file(&src.join("secret"), 10, 6);
    write_file(&src.join("big"), 3 << 20, 7);
    mode(&src.join("closed"), 0o000);
    mode(&src.join("blind"), 0o300);
    mode(&src.join("secret"), 0o000);
    mode(&src.join("big"), 0o200);
    let dst = Destination::start_unprivileged(t, "dst");
    super::harness::sync_ok(&src, &dst);
    // Changes beside and inside them.
    write_file(&src.join("top2"), 10, 4);
    mode(&src.join("blind"), 0o700);
    write_file(&src.join("blind/f3"), 10, 5);
    mode(&src.join("blind"), 0o300);
    mode(&src.join("secret"), 0o644);
    {
        use std::os::unix::fs::FileExt;
        let big = std::fs::OpenOptions::new()
            .write(true)
            .open(src.join("big"))
            .expect("open big");
        big.write_all_at(b"EDITED", 1 << 20).expect("edit big");
    }
    let report = super::harness::sync_ok(&src, &dst);
    let id = super::harness::snapshot_of(&report);
    let p = t.join("promoted");
    super::harness::promote(&dst.dir, Some(&id), &p);
    let mode_of = |p: &Path| {
        std::fs::symlink_metadata(p)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode_of(&p.join("closed")), 0o000);
    assert_eq!(mode_of(&p.join("blind")), 0o300);
    assert_eq!(mode_of(&p.join("secret")), 0o644);
    assert_eq!(mode_of(&p.join("big")), 0o200);
    for f in ["closed/f1", "blind/f2", "blind/f3", "top2", "secret", "big"] {
        let (a, b) = (std::fs::read(src.join(f)), std::fs::read(p.join(f)));
        assert!(
            a.is_ok() && a.ok() == b.ok(),
            "{f} differs in the promoted tree"
        );
    }
}
