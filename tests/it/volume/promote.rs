//! What `ferry volume promote` says about the snapshot it promotes and where it goes: a
//! snapshot marked not consistent is promoted with a warning naming the newest consistent
//! one, and a `--to` whose parent is missing is bad usage, as for `destination --dir`.

use std::process::Command;

use serde_json::Value;

use super::harness::{Destination, run, snapshot_ids, stderr, sync_ok};
use crate::support::ferry_bin;

fn promote_cmd(dst: &Destination, id: Option<&str>, to: &std::path::Path) -> Command {
    let mut cmd = Command::new(ferry_bin());
    cmd.args(["--json", "volume", "promote", "--dir"])
        .arg(&dst.dir);
    if let Some(id) = id {
        cmd.args(["--snapshot", id]);
    }
    cmd.arg("--to").arg(to);
    cmd
}

/// A promote of a snapshot its source had warned about (a file changed while it was read)
/// said nothing and printed no consistency: in a failover the operator restored torn files
/// unawares. And `--to` with a mistyped parent made the whole path.
#[test]
fn promote_says_a_snapshot_is_not_consistent_and_makes_only_the_last_folder() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("src");
    std::fs::write(src.join("a.txt"), b"one").expect("write");
    let dst = Destination::start(tmp.path(), "dst");
    sync_ok(&src, &dst);
    std::fs::write(src.join("a.txt"), b"two!").expect("write");
    sync_ok(&src, &dst);
    let ids = snapshot_ids(&dst.dir);
    let (first, second) = (&ids[0], &ids[1]);
    // The newest as a source that saw a file change under it would have marked it.
    let info = dst.dir.join(format!(".ferry/index/{second}.json"));
    let mut summary: Value =
        serde_json::from_slice(&std::fs::read(&info).expect("summary")).expect("json");
    summary["consistent"] = Value::Bool(false);
    std::fs::write(&info, summary.to_string()).expect("write summary");

    let typo = tmp.path().join("typo/app");
    let out = run(promote_cmd(&dst, None, &typo));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("only the last folder is made"), "{err}");
    assert!(!tmp.path().join("typo").exists());

    let to = tmp.path().join("app");
    let out = run(promote_cmd(&dst, None, &to));
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("snapshot {second} is not consistent"))
            && err.contains(&format!("the newest consistent one is {first}")),
        "{err}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["consistent"], Value::Bool(false), "{report}");
    assert_eq!(std::fs::read(to.join("a.txt")).expect("promoted"), b"two!");

    let out = run(promote_cmd(&dst, Some(first), &tmp.path().join("older")));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["consistent"], Value::Bool(true), "{report}");
}
