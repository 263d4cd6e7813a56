//! An interrupted iteration is resumed: files the destination made durable and journaled
//! before the source was killed (or the connection cut) are not sent again, and the result
//! still equals the source tree.

use std::time::{Duration, Instant};

use super::harness::{
    Destination, Proc, anon, num, promote, snapshot_ids, snapshot_of, source_cmd, sync_ok,
};
use super::tree::assert_same_tree;
use crate::support::write_file;

const FILES: u64 = 400;

fn interrupted_then_resumed(kill_destination: bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    // 400 files just under the chunking threshold: about 100 MiB, sent whole.
    for i in 0..FILES {
        write_file(&src.join(format!("d{}/f{i:04}", i % 10)), 250 * 1024, i + 7);
    }
    let mut dst = Destination::start(t, "dst");
    // Slow enough (about 5 s) that the destination journals part of it first.
    let mut cmd = source_cmd(&src, &dst.secret);
    cmd.args(["--bandwidth-limit", "20M", "--no-compress"]);
    let mut source = Proc::spawn(cmd, anon(), anon());
    let journal = dst.dir.join(".ferry/staging.journal");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0) < 2000 {
        assert!(
            source.running(),
            "the source finished before it could be interrupted"
        );
        assert!(
            Instant::now() < deadline,
            "nothing was journaled within 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    if kill_destination {
        dst.kill9();
        let out = source.wait(super::harness::LIMIT);
        assert!(
            !out.status.success(),
            "the source noticed the destination died"
        );
        dst.restart();
    } else {
        source.kill9();
    }
    assert!(snapshot_ids(&dst.dir).is_empty(), "nothing was published");
    let r = sync_ok(&src, &dst);
    let resumed = num(&r, "files_resumed");
    assert!(resumed > 0, "the second iteration resumed nothing: {r}");
    assert!(
        resumed < FILES,
        "everything had arrived before the kill: {r}"
    );
    assert_eq!(num(&r, "files_sent") + resumed, FILES, "{r}");
    assert!(
        num(&r, "bytes_sent") <= (FILES - resumed) * 250 * 1024,
        "resumed files were sent again: {r}"
    );
    assert_eq!(snapshot_ids(&dst.dir), vec![snapshot_of(&r)]);
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
}

#[test]
fn killed_source_resumes_without_resending() {
    interrupted_then_resumed(false);
}

#[test]
fn killed_destination_resumes_without_resending() {
    interrupted_then_resumed(true);
}
