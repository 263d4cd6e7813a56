//! Regressions found by probing `ferry volume` against rsync: each test is named after what
//! went wrong and fails on the code before its fix.

use std::fs::Permissions;
use std::os::unix::fs::{FileExt, PermissionsExt, lchown};
use std::os::unix::process::CommandExt;
use std::path::Path;

use serde_json::Value;

use super::harness::{
    Destination, NOBODY, anon, promote, run, source_cmd, stderr, sync_ok, write_secret,
};
use super::tree::assert_same_tree;
use crate::support::write_file;

/// Hash-compare mode (the source's manifest does not name the destination's snapshot) read a
/// large file to the end to compare it, then chunked it from the same descriptor's offset
/// (the end): a changed file of unchanged size was published empty.
#[test]
fn hash_compare_sends_a_changed_large_file_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("db"), 1_000_000, 1);
    write_file(&src.join("small"), 10, 2);
    let dst = Destination::start(t, "dst");
    sync_ok(&src, &dst);
    // A lost manifest (or a failback): the next iteration compares content by hash.
    std::fs::remove_dir_all(src.join(".ferry/source")).expect("remove the manifest");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(src.join("db"))
        .expect("open db");
    f.write_all_at(&[0x5a; 100], 500_000).expect("change db");
    drop(f);
    sync_ok(&src, &dst);
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
}

/// Runs `ferry volume source --once --json` as an unprivileged user when the tests run as
/// root (root reads everything, so nothing would be unreadable), with `tmp` made traversable
/// and `src` and a copy of the secret given to that user; returns the exit code and report.
pub(super) fn source_as_user(tmp: &Path, src: &Path, dst: &Destination) -> (Option<i32>, Value) {
    let secret = tmp.join("user.secret.json");
    if !secret.exists() {
        write_secret(&secret, &dst.secret_json());
    }
    let mut cmd = source_cmd(src, &secret);
    if rustix::process::geteuid().is_root() {
        std::fs::set_permissions(tmp, Permissions::from_mode(0o755)).expect("chmod tmp");
        // The build's own binary may sit where that user cannot reach it (a target
        // directory under /root): it runs a copy of it in `tmp`.
        let exe = tmp.join("ferry");
        if !exe.exists() {
            crate::support::ferry_copy(&exe);
        }
        cmd = super::harness::source_cmd_of(&exe, src, &secret);
        for p in [src.to_path_buf(), secret.clone()]
            .into_iter()
            .chain(super::tree::paths(src))
        {
            lchown(&p, Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
        }
        cmd.uid(NOBODY).gid(NOBODY);
    }
    let out = run(cmd);
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "source --json printed {text:?} ({e}); stderr: {}",
            stderr(&out)
        )
    });
    (out.status.code(), report)
}

/// The destination's latest snapshot, promoted under `t/after`, holds `kept` as they were in
/// `before` (the snapshot before) and the source's `fine` as it is now.
#[track_caller]
fn assert_kept_and_replicated(
    t: &Path,
    dst: &Destination,
    before: &Path,
    src: &Path,
    kept: &[&str],
) {
    let after = t.join("after");
    promote(&dst.dir, None, &after);
    for k in kept {
        assert_eq!(
            std::fs::read(after.join(k)).expect("kept in the snapshot"),
            std::fs::read(before.join(k)).expect("in the last snapshot"),
            "{k}"
        );
    }
    assert_eq!(
        std::fs::read(after.join("fine")).expect("fine"),
        std::fs::read(src.join("fine")).expect("fine"),
        "the rest of the tree was replicated"
    );
}

/// A directory the source could not list (or whose entries it could not stat) made the
/// iteration delete everything under it at the destination, and exit 0.
#[test]
fn an_unreadable_directory_keeps_its_replica_and_exits_23() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("sub/a"), 100, 1);
    write_file(&src.join("sub/deep/b"), 100, 2);
    write_file(&src.join("nox/f"), 100, 3);
    write_file(&src.join("fine"), 100, 4);
    let dst = Destination::start(t, "dst");
    let (code, _) = source_as_user(t, &src, &dst);
    assert_eq!(code, Some(0));
    let before = t.join("before");
    promote(&dst.dir, None, &before);
    // Transient permission trouble: "sub" cannot be listed, "nox" listed but not searched.
    std::fs::set_permissions(src.join("sub"), Permissions::from_mode(0o000)).expect("chmod");
    std::fs::set_permissions(src.join("nox"), Permissions::from_mode(0o644)).expect("chmod");
    write_file(&src.join("fine"), 200, 5);
    let (code, report) = source_as_user(t, &src, &dst);
    std::fs::set_permissions(src.join("sub"), Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(src.join("nox"), Permissions::from_mode(0o755)).expect("chmod");
    assert_eq!(code, Some(23), "{report}");
    let unreadable = report["unreadable"].to_string();
    assert!(
        unreadable.contains("\"sub\"") && unreadable.contains("\"nox/f\""),
        "{report}"
    );
    assert_kept_and_replicated(t, &dst, &before, &src, &["sub/a", "sub/deep/b", "nox/f"]);
    // Readable again: the next iteration is complete.
    let (code, report) = source_as_user(t, &src, &dst);
    assert_eq!(code, Some(0), "{report}");
}

/// An unreadable file with a second hardlink failed the whole iteration at the destination
/// ("b: a hardlink to a, which is not a file"): both keep their last versions now, are
/// reported, and the rest of the tree goes (exit 23).
#[test]
fn an_unreadable_file_with_a_hardlink_keeps_both_and_exits_23() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("a"), 100, 1);
    std::fs::hard_link(src.join("a"), src.join("b")).expect("hardlink");
    write_file(&src.join("fine"), 100, 4);
    let dst = Destination::start(t, "dst");
    let (code, _) = source_as_user(t, &src, &dst);
    assert_eq!(code, Some(0));
    let before = t.join("before");
    promote(&dst.dir, None, &before);
    write_file(&src.join("a"), 150, 2);
    std::fs::set_permissions(src.join("a"), Permissions::from_mode(0o000)).expect("chmod");
    write_file(&src.join("fine"), 200, 5);
    let (code, report) = source_as_user(t, &src, &dst);
    std::fs::set_permissions(src.join("a"), Permissions::from_mode(0o644)).expect("chmod");
    assert_eq!(code, Some(23), "{report}");
    let unreadable = report["unreadable"].to_string();
    assert!(unreadable.contains("\"b\""), "{report}");
    assert_kept_and_replicated(t, &dst, &before, &src, &["a", "b"]);
}

/// A file the source could not read kept its replica, but fell out of the source's manifest:
/// deleted later, it stayed in every snapshot after, with status saying "in sync" (a probe).
#[test]
fn an_unreadable_file_deleted_later_is_deleted_at_the_destination() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("f"), 100, 1);
    write_file(&src.join("fine"), 100, 4);
    let dst = Destination::start(t, "dst");
    let (code, _) = source_as_user(t, &src, &dst);
    assert_eq!(code, Some(0));
    std::fs::set_permissions(src.join("f"), Permissions::from_mode(0o000)).expect("chmod");
    let (code, report) = source_as_user(t, &src, &dst);
    assert_eq!(code, Some(23), "{report}");
    std::fs::remove_file(src.join("f")).expect("rm");
    let (code, report) = source_as_user(t, &src, &dst);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["files_deleted"], 1, "{report}");
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
}

/// A metadata-only change of `a` went through a temporary `a.ferry-meta~` beside it, first
/// unlinked: the tree's own file of that name vanished from the destination.
#[test]
fn a_metadata_change_leaves_files_named_like_its_temporary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("a"), 100, 1);
    write_file(&src.join("a.ferry-meta~"), 100, 2);
    write_file(&src.join(".ferry-tmp.0~"), 100, 3);
    let dst = Destination::start(t, "dst");
    sync_ok(&src, &dst);
    std::fs::set_permissions(src.join("a"), Permissions::from_mode(0o600)).expect("chmod");
    sync_ok(&src, &dst);
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
}

/// A large file's unchanged ranges are copied from the last snapshot's version, and the
/// BLAKE3 check at its end covered only the chunk list the snapshot's index claims: a damaged
/// base was published as the source's content. What a copy wrote is now read back and checked.
#[test]
fn a_damaged_base_is_not_published_as_the_source_content() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("db"), 2_000_000, 1);
    let dst = Destination::start(t, "dst");
    let r = sync_ok(&src, &dst);
    let id = r["snapshot"].as_str().expect("snapshot id");
    let base = dst.dir.join(".ferry/snapshots").join(id).join("db");
    std::fs::set_permissions(&base, Permissions::from_mode(0o644)).expect("chmod");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&base)
        .expect("open the snapshot's db");
    f.write_all_at(&[0x5a; 100], 1_500_000).expect("damage it");
    drop(f);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(src.join("db"))
        .expect("open db");
    f.write_all_at(&[0xa5; 100], 200_000).expect("change db");
    drop(f);
    let out = run(source_cmd(&src, &dst.secret));
    if out.status.success() {
        let p = t.join("promoted");
        promote(&dst.dir, None, &p);
        assert_same_tree(&src, &p);
    } else {
        assert!(
            stderr(&out).contains("does not match its BLAKE3"),
            "{}",
            stderr(&out)
        );
    }
}

/// A destination that died mid-stream made `ferry volume source --once` exit 141 without a
/// word: every broken pipe was taken for a closed stdout (`| head`), the socket's too.
#[test]
fn a_destination_dying_mid_stream_is_reported() {
    use std::io::Write;
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    for i in 0..300 {
        write_file(&src.join(format!("a/f{i}")), (i * 331) % 90_000, i as u64);
    }
    write_file(&src.join("big"), 30_000_000, 1);
    let mut dst = Destination::start(t, "dst");
    sync_ok(&src, &dst);
    for (round, after_ms) in [600u64, 1000, 1500].into_iter().enumerate() {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(src.join("big"))
            .expect("open big");
        let mut noise = vec![0u8; 3_000_000];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut r| std::io::Read::read_exact(&mut r, &mut noise))
            .expect("random bytes");
        f.write_all(&noise).expect("grow big");
        drop(f);
        write_file(&src.join("a/f1"), 1000 + round, 100 + round as u64);
        let mut cmd = source_cmd(&src, &dst.secret);
        cmd.args(["--bandwidth-limit", "1M"]);
        let mut source =
            super::harness::Proc::spawn(cmd, super::harness::anon(), super::harness::anon());
        std::thread::sleep(std::time::Duration::from_millis(after_ms));
        assert!(source.running(), "the source finished before the kill");
        dst.kill9();
        let out = source.wait(super::harness::LIMIT);
        assert_eq!(
            out.status.code(),
            Some(1),
            "killed after {after_ms} ms: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("ferry: ") && stderr(&out).contains("connection"),
            "killed after {after_ms} ms, nothing said: {}",
            stderr(&out)
        );
        dst.restart();
        sync_ok(&src, &dst);
    }
}

/// A source frozen mid-iteration (SIGSTOP here; a suspended VM or a partition without a
/// reset in the field) held the destination's one-iteration lock for ever: every later
/// source waited in silence. The destination now gives up after `--timeout` seconds without
/// a byte, and a waiting source says what it waits for. The waiting source has a timeout of
/// its own, shorter than that wait: the destination's keepalives carry it through.
#[test]
fn a_frozen_source_does_not_hold_the_destination() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("big"), 20_000_000, 1);
    let dst = Destination::start_with(t, "dst", &["--timeout", "22"]);
    let mut cmd = source_cmd(&src, &dst.secret);
    cmd.args(["--bandwidth-limit", "2M"]);
    let mut frozen = super::harness::Proc::spawn(cmd, anon(), anon());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        frozen.running(),
        "the first source finished before it was frozen"
    );
    frozen.freeze();
    let mut waiting = source_cmd(&src, &dst.secret);
    waiting.args(["--timeout", "15"]);
    let out = run(waiting);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("waiting for the destination"),
        "the waiting source said nothing: {}",
        stderr(&out)
    );
    frozen.kill9();
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
}

/// A destination run by an ordinary user: a read-only folder of the source's (0555) came to
/// the snapshot read-only, and any later change to a file in it failed every iteration
/// ("cannot remove ...: Permission denied"), for good. rsync run as that user updates it.
#[test]
fn an_unprivileged_destination_updates_files_in_read_only_folders() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("ro/f"), 10, 1);
    write_file(&src.join("ro/sub/g"), 10, 2);
    let dst = Destination::start_unprivileged(t, "dst");
    // Owned by the destination's user, as that user could not give them another owner.
    for p in std::iter::once(src.clone()).chain(super::tree::paths(&src)) {
        lchown(&p, Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
    }
    for d in ["ro/sub", "ro"] {
        std::fs::set_permissions(src.join(d), Permissions::from_mode(0o555)).expect("chmod");
    }
    sync_ok(&src, &dst);
    // A change, a new file and a deletion inside the read-only folders.
    for d in ["ro", "ro/sub"] {
        std::fs::set_permissions(src.join(d), Permissions::from_mode(0o755)).expect("chmod");
    }
    write_file(&src.join("ro/f"), 20, 3);
    write_file(&src.join("ro/new"), 5, 4);
    lchown(src.join("ro/new"), Some(NOBODY), Some(NOBODY)).expect("chown to nobody");
    std::fs::remove_file(src.join("ro/sub/g")).expect("remove g");
    for d in ["ro/sub", "ro"] {
        std::fs::set_permissions(src.join(d), Permissions::from_mode(0o555)).expect("chmod");
    }
    sync_ok(&src, &dst);
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
    for d in ["ro", "ro/sub"] {
        std::fs::set_permissions(src.join(d), Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// Holes were kept where a large file's chunks came as data, but a chunk reused from the last
/// snapshot (a copied range) was copied dense: a sparse file grew to its full size on disk at
/// its first routine change (here an append).
#[test]
fn a_sparse_file_stays_sparse_when_its_chunks_are_reused() {
    use std::os::unix::fs::MetadataExt;
    const SIZE: u64 = 64 << 20;
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    std::fs::create_dir_all(&src).expect("src");
    let f = std::fs::File::create(src.join("sparse")).expect("create");
    f.set_len(SIZE).expect("size");
    for mib in 0..(SIZE >> 20) {
        f.write_all_at(b"x", (mib << 20) + 500_000).expect("a byte");
    }
    drop(f);
    let dst = Destination::start(t, "dst");
    let first = sync_ok(&src, &dst);
    // With no snapshot before, nothing is reused: holes are neither sent nor reused (they
    // were counted as reused, a probe).
    assert_eq!(first["bytes_reused"], 0, "{first}");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(src.join("sparse"))
        .expect("open");
    std::io::Write::write_all(&mut f, b"more").expect("append");
    drop(f);
    sync_ok(&src, &dst);
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
    let on_disk = std::fs::metadata(p.join("sparse")).expect("stat").blocks() * 512;
    assert!(
        on_disk < SIZE / 8,
        "{on_disk} bytes on disk for a {SIZE}-byte file with 64 bytes of data"
    );
}

/// A destination frozen mid-iteration (SIGSTOP; a suspended VM, a partition without a reset)
/// held its source for ever: the source had no timeout of its own (and a destination busy
/// publishing sent nothing it could tell from silence). The source gives up after its
/// `--timeout` with nothing crossing the connection either way, saying so, and exits 1.
#[test]
fn a_frozen_destination_does_not_hold_the_source() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("big"), 20_000_000, 1);
    let mut dst = Destination::start(t, "dst");
    let mut cmd = source_cmd(&src, &dst.secret);
    cmd.args(["--bandwidth-limit", "2M", "--timeout", "15"]);
    let mut source = super::harness::Proc::spawn(cmd, anon(), anon());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(source.running(), "the source finished before the freeze");
    dst.freeze();
    let out = source.wait(std::time::Duration::from_secs(120));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("stopped answering"), "{err}");
    dst.kill9();
}

/// Two destinations could serve one directory: the second started without a word, and
/// sources of each broke the other's iterations (it took over the first's staging tree).
/// The second now refuses to start, naming the directory.
#[test]
fn a_second_destination_on_one_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let dst = Destination::start(t, "dst");
    let mut cmd = std::process::Command::new(crate::support::ferry_bin());
    cmd.args(["volume", "destination", "--dir"])
        .arg(&dst.dir)
        .args(["--listen", "127.0.0.1:0"]);
    let out =
        super::harness::Proc::spawn(cmd, anon(), anon()).wait(std::time::Duration::from_secs(60));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another `ferry volume destination`"), "{err}");
}

/// A small file (sent whole) that ends in zeros had its zero blocks left as holes but was
/// never given its length: a tar archive (zero-padded to 10240 bytes), a preallocated log or
/// a 4 KiB page of zeros came out short, or empty, on the destination.
#[test]
fn a_small_file_ending_in_zeros_keeps_its_length() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    std::fs::create_dir_all(&src).expect("src");
    let with = |len: usize, head: &[u8]| {
        let mut v = vec![0u8; len];
        v[..head.len()].copy_from_slice(head);
        v
    };
    std::fs::write(src.join("padded"), with(5000, b"x")).expect("write");
    std::fs::write(src.join("zeros"), with(4096, b"")).expect("write");
    std::fs::write(src.join("a.tar"), with(10240, b"abc")).expect("write");
    let dst = Destination::start(t, "dst");
    sync_ok(&src, &dst);
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
    for (name, len) in [("padded", 5000), ("zeros", 4096), ("a.tar", 10240)] {
        assert_eq!(
            std::fs::metadata(p.join(name))
                .expect("promoted file")
                .len(),
            len,
            "{name}"
        );
    }
    // Grown on a later iteration, still ending in zeros.
    std::fs::write(src.join("padded"), with(250_000, b"y")).expect("write");
    sync_ok(&src, &dst);
    let p2 = t.join("promoted2");
    promote(&dst.dir, None, &p2);
    assert_same_tree(&src, &p2);
}

/// An empty source over a snapshot that is not (an unmounted filesystem, a wrong --dir) was
/// replicated as an empty snapshot, and with `--keep` every good one went in as many
/// iterations; it is refused unless `--allow-empty` says the emptying is meant. Folders
/// alone are empty too: a freshly made filesystem holds `lost+found` (a probe), and so are
/// FIFOs, which are not copied (a lone one let an empty snapshot through, a probe).
#[test]
fn an_empty_source_is_not_replicated_over_a_full_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("a/one"), 100, 1);
    write_file(&src.join("two"), 100, 2);
    let dst = Destination::start(t, "dst");
    let first = super::harness::snapshot_of(&sync_ok(&src, &dst));
    // Unmounted: the tree is gone, the source's manifest with it.
    for e in std::fs::read_dir(&src).expect("ls") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).expect("rm");
        } else {
            std::fs::remove_file(&p).expect("rm");
        }
    }
    std::fs::create_dir_all(src.join("lost+found/x")).expect("mkdir");
    // Nor do FIFOs (not copied) make it a tree of files.
    let fifo = src.join("lost+found/pipe");
    crate::support::ok(
        &std::process::Command::new("mkfifo")
            .arg(&fifo)
            .output()
            .expect("mkfifo"),
    );
    let out = run(source_cmd(&src, &dst.secret));
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("holds no files, but the last snapshot holds 2")
            && err.contains("--allow-empty"),
        "{err}"
    );
    assert_eq!(
        super::harness::snapshot_ids(&dst.dir).last(),
        Some(&first),
        "a snapshot was published"
    );
    let mut cmd = source_cmd(&src, &dst.secret);
    cmd.arg("--allow-empty");
    let out = run(cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    // Not into the destination's own state, whichever way it is written (exit 2, nothing made).
    for inside in [".ferry/snapshots/x", "sub/../.ferry/y"] {
        let mut cmd = std::process::Command::new(crate::support::ferry_bin());
        cmd.args(["volume", "promote", "--dir"]).arg(&dst.dir);
        cmd.arg("--to").arg(dst.dir.join(inside));
        let out = run(cmd);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{inside}: {err}");
        assert!(err.contains("--to") && err.contains(".ferry"), "{err}");
    }
    assert!(!dst.dir.join(".ferry/snapshots/x").exists());
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert!(p.join("lost+found/x").is_dir());
    assert!(!p.join("two").exists() && !p.join("a").exists());
}

/// SIGTERM or Ctrl-C during an iteration killed the source before its `--post-hook`: with
/// the documented `fsfreeze -f` / `fsfreeze -u` pair, a systemd stop left the application's
/// filesystem frozen. The iteration is now given up, recorded, the hook run, and the exit
/// status is the signal's.
#[test]
fn a_signal_mid_iteration_still_runs_the_post_hook() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("big"), 8 << 20, 1);
    let dst = Destination::start(t, "dst");
    let frozen = t.join("frozen");
    let mut cmd = source_cmd(&src, &dst.secret);
    cmd.args(["--bandwidth-limit", "1M"])
        .args(["--pre-hook", &format!("touch {}", frozen.display())])
        .args(["--post-hook", &format!("rm {}", frozen.display())]);
    let mut p = super::harness::Proc::spawn(cmd, anon(), anon());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !frozen.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pre-hook never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(p.running(), "the iteration ended before the signal");
    p.terminate();
    let out = p.wait(std::time::Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    assert!(!frozen.exists(), "the post-hook did not run");
    assert!(stderr(&out).contains("interrupted"), "{}", stderr(&out));
}

/// A file an interrupted iteration had delivered counted as delivered on resume when its
/// size and mtime still matched: one replaced meanwhile by another of the same size and
/// mtime (`cp -p` or `tar x` into a temp name, then `mv`) kept its old content in every
/// snapshot after. It is read and compared by hash now.
#[test]
fn a_file_replaced_after_an_interrupted_iteration_is_sent_again() {
    use std::time::{Duration, Instant, SystemTime};
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    let stamp = SystemTime::UNIX_EPOCH + Duration::from_secs(1_622_937_600);
    let set_mtime = |p: &Path| {
        std::fs::File::options()
            .write(true)
            .open(p)
            .and_then(|f| f.set_modified(stamp))
            .expect("mtime");
    };
    // A small file and a large one (sent as chunks), in a first snapshot, then changed and
    // delivered by an iteration that is cut.
    write_file(&src.join("x"), 100_000, 10);
    write_file(&src.join("y"), 2 << 20, 11);
    let dst = Destination::start(t, "dst");
    sync_ok(&src, &dst);
    write_file(&src.join("x"), 100_000, 1);
    set_mtime(&src.join("x"));
    write_file(&src.join("y"), 2 << 20, 4);
    set_mtime(&src.join("y"));
    write_file(&src.join("zbig"), 64 << 20, 2);
    let mut cmd = source_cmd(&src, &dst.secret);
    cmd.args(["--bandwidth-limit", "4M"]);
    let mut p = super::harness::Proc::spawn(cmd, anon(), anon());
    let deadline = Instant::now() + Duration::from_secs(30);
    while super::harness::stored_bytes(&dst.dir.join(".ferry")) < 16 << 20 {
        assert!(p.running(), "the iteration ended before it could be cut");
        assert!(Instant::now() < deadline, "nothing arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    p.kill9();
    let _ = p.wait(Duration::from_secs(30));
    // Replaced by files of the same size and mtime: `x` anew, `y` with a stretch in its
    // middle changed (most of its chunks are what the cut iteration delivered).
    write_file(&src.join("x.tmp"), 100_000, 3);
    let mut y = std::fs::read(src.join("y")).expect("y");
    y[1 << 20..(1 << 20) + 4096].fill(0x5a);
    std::fs::write(src.join("y.tmp"), &y).expect("y.tmp");
    for name in ["x", "y"] {
        let tmp_name = format!("{name}.tmp");
        set_mtime(&src.join(&tmp_name));
        std::fs::rename(src.join(&tmp_name), src.join(name)).expect("mv");
    }
    let r = sync_ok(&src, &dst);
    assert_eq!(r["files_resumed"], 2, "not both were resumed: {r}");
    let promoted = t.join("promoted");
    promote(&dst.dir, None, &promoted);
    for name in ["x", "y"] {
        assert_eq!(
            std::fs::read(promoted.join(name)).expect("promoted"),
            std::fs::read(src.join(name)).expect("source"),
            "{name}: the replaced file kept its old content"
        );
    }
}

/// A destination killed while pruning left a half-deleted snapshot folder in `snapshots/`
/// for ever: unlisted, never pruned, and looking like a snapshot to whoever restores from
/// the folder by hand. Snapshots now leave `snapshots/` in one rename before they are
/// deleted, and what a cut-short removal left (also by earlier versions) goes at start.
#[test]
fn a_cut_short_prune_leaves_no_half_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let state = t.join("dst/.ferry");
    // Left by a removal cut short: one in place (earlier versions), one in the trash.
    write_file(
        &state.join("snapshots/20200101T000000.000Z/half/left"),
        10,
        1,
    );
    write_file(&state.join("trash/20200102T000000.000Z/more"), 10, 2);
    let src = t.join("src");
    write_file(&src.join("f"), 100, 3);
    let dst = Destination::start_with(t, "dst", &["--keep", "1"]);
    sync_ok(&src, &dst);
    write_file(&src.join("g"), 100, 4);
    let last = super::harness::snapshot_of(&sync_ok(&src, &dst));
    let folders: Vec<String> = std::fs::read_dir(state.join("snapshots"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(folders, [last], "only the kept snapshot is in snapshots/");
    assert!(
        std::fs::read_dir(state.join("trash")).map_or(true, |mut d| d.next().is_none()),
        "the trash is not emptied"
    );
}

/// The source exited 1 ("nothing was published") when it could not save its manifest (a
/// full disk on its side) although the destination had published the snapshot; that is a
/// problem to report now, and the next iteration compares by hash.
#[test]
fn a_manifest_that_cannot_be_saved_does_not_fail_a_published_iteration() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("f"), 100, 1);
    // Where the manifest goes is a file: it cannot be saved.
    write_file(&src.join(".ferry/source"), 1, 2);
    let dst = Destination::start(t, "dst");
    let report = sync_ok(&src, &dst);
    assert!(
        report["problems"]
            .as_array()
            .is_some_and(|p| p.iter().any(|m| m
                .as_str()
                .is_some_and(|m| m.contains("manifest could not be saved")))),
        "{report}"
    );
    assert_eq!(super::harness::snapshot_ids(&dst.dir).len(), 1);
}

/// A source tree that cannot be written (a read-only mount, a mounted LVM snapshot; here an
/// immutable folder): the image folder could not be made, the iteration failed on it, and
/// only after the destination's timeout, which hid the error (a probe). Such a tree holds
/// still by itself: it is read live, and the manifest it cannot keep is reported.
#[test]
fn a_tree_that_cannot_be_written_is_read_live() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("a/one"), 100, 1);
    write_file(&src.join("two"), 5000, 2);
    let dst = Destination::start(t, "dst");
    crate::support::immutable(&src, true);
    let out = run(source_cmd(&src, &dst.secret));
    crate::support::immutable(&src, false);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let said = format!("{}{err}", String::from_utf8_lossy(&out.stdout));
    assert!(said.contains("manifest could not be saved"), "{said}");
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
}

/// A path that fits within PATH_MAX in the source tree but not beneath the destination's
/// `DIR/.ferry/snapshots/<id>/`: the first iteration published, then preparing the next
/// staging tree failed ("File name too long") and every later iteration with it, for good
/// (a probe). The hardlink farm resolves paths from folder handles now.
#[test]
fn a_path_too_long_beneath_the_destination_does_not_stop_replication() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    let mut deep = src.clone();
    for i in 0..19u8 {
        deep.push(String::from_utf8(vec![b'a' + i; 200]).expect("utf8"));
    }
    deep.push("w".repeat(40));
    let rel_len = deep.strip_prefix(&src).expect("rel").as_os_str().len() + 190;
    assert!(rel_len > 4000, "{rel_len}");
    write_file(&deep.join("v".repeat(189)), 100, 1);
    write_file(&src.join("other"), 100, 2);
    let dst = Destination::start(t, "dst");
    sync_ok(&src, &dst);
    write_file(&src.join("other"), 200, 3);
    let second = super::harness::snapshot_of(&sync_ok(&src, &dst));
    write_file(&src.join("third"), 10, 4);
    let third = super::harness::snapshot_of(&sync_ok(&src, &dst));
    let ids = super::harness::snapshot_ids(&dst.dir);
    assert!(ids.contains(&second) && ids.contains(&third), "{ids:?}");
}
