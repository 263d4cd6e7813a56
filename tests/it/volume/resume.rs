//! An interrupted iteration is resumed: files the destination made durable and journaled
//! before the source or the destination was killed, or a proxy cut the connection, are not
//! sent again, and the result still equals the source tree.

use std::os::unix::fs::{FileExt, PermissionsExt};
use std::time::{Duration, Instant};

use ferry::volume::resume::{Entry, Journal};

use super::harness::{
    Destination, Proc, anon, num, promote, run, snapshot_ids, snapshot_of, source_cmd, sync_ok,
    write_secret,
};
use super::tree::assert_same_tree;
use crate::support::write_file;

const FILES: u64 = 400;

#[derive(Clone, Copy, PartialEq)]
enum Cut {
    KillSource,
    KillDestination,
    /// A proxy between the two closes both sockets after this many bytes.
    Connection(u64),
}

/// A TCP proxy to `upstream` for one connection, cut after `limit` bytes from the client;
/// returns its address.
fn cutting_proxy(upstream: String, limit: u64) -> String {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").expect("proxy listen");
    let addr = listener.local_addr().expect("proxy address").to_string();
    std::thread::spawn(move || {
        let Ok((client, _)) = listener.accept() else {
            return;
        };
        let Ok(server) = TcpStream::connect(&upstream) else {
            return;
        };
        let (mut c_in, mut s_out) = (
            client.try_clone().expect("clone"),
            server.try_clone().expect("clone"),
        );
        let (mut s_in, mut c_out) = (server, client);
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = s_in.read(&mut buf) {
                if n == 0 || c_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let mut buf = [0u8; 65536];
        let mut passed = 0u64;
        while let Ok(n) = c_in.read(&mut buf) {
            if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                break;
            }
            passed += n as u64;
            if passed >= limit {
                break;
            }
        }
        let _ = c_in.shutdown(Shutdown::Both);
        let _ = s_out.shutdown(Shutdown::Both);
    });
    addr
}

fn interrupted_then_resumed(cut: Cut) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    // 400 files just under the chunking threshold: about 100 MiB, sent whole.
    for i in 0..FILES {
        write_file(&src.join(format!("d{}/f{i:04}", i % 10)), 250 * 1024, i + 7);
    }
    let mut dst = Destination::start(t, "dst");
    // Slow enough (about 5 s) that the destination journals part of it first.
    let secret = match cut {
        Cut::Connection(limit) => {
            let mut s = dst.secret_json();
            let upstream = s["address"].as_str().expect("address").to_owned();
            s["address"] = cutting_proxy(upstream, limit).into();
            let path = t.join("via-proxy.secret.json");
            write_secret(&path, &s);
            path
        }
        _ => dst.secret.clone(),
    };
    let mut cmd = source_cmd(&src, &secret);
    cmd.args(["--bandwidth-limit", "20M", "--no-compress"]);
    let mut source = Proc::spawn(cmd, anon(), anon());
    let journal = dst.dir.join(".ferry/staging.journal");
    let journaled = || std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0) >= 2000;
    let deadline = Instant::now() + Duration::from_secs(60);
    match cut {
        Cut::Connection(_) => {
            let out = source.wait(super::harness::LIMIT);
            assert_eq!(
                out.status.code(),
                Some(1),
                "the source fails when the connection is cut"
            );
            assert!(
                journaled(),
                "the destination journaled nothing before the cut"
            );
        }
        _ => {
            while !journaled() {
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
        }
    }
    match cut {
        Cut::KillDestination => {
            dst.kill9();
            let out = source.wait(super::harness::LIMIT);
            assert!(
                !out.status.success(),
                "the source noticed the destination died"
            );
            dst.restart();
        }
        Cut::KillSource => source.kill9(),
        Cut::Connection(_) => {}
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
    interrupted_then_resumed(Cut::KillSource);
}

#[test]
fn killed_destination_resumes_without_resending() {
    interrupted_then_resumed(Cut::KillDestination);
}

#[test]
fn cut_connection_resumes_without_resending() {
    // About 70 MiB of the 100 MiB pass (3.5 s at 20 MB/s: past the first journal flush).
    interrupted_then_resumed(Cut::Connection(70 << 20));
}

/// A large file cut off halfway resumes from the chunks that had arrived.
#[test]
fn a_large_file_resumes_where_it_was_cut() {
    const BIG: u64 = 120 << 20;
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("big.bin"), BIG as usize, 5);
    let dst = Destination::start(t, "dst");
    // Partial progress records carry the chunk list: a few KiB once ~40 MiB are durable.
    kill_source_when(&src, &dst, "20M", "no progress was journaled", |j| {
        journal_len(j) >= 8000
    });
    let r = sync_ok(&src, &dst);
    assert!(
        num(&r, "bytes_reused") >= 16 << 20,
        "what had arrived of big.bin was not reused: {r}"
    );
    assert!(
        num(&r, "bytes_sent") + num(&r, "bytes_reused") == BIG,
        "{r}"
    );
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
}

/// The journal said which chunks of a large file had arrived, and the resume offered them to
/// the source without looking: a file that no longer held them (a later interrupted
/// iteration wrote another version there before its first journal flush; here, damage) was
/// copied from and published as the source's content, its BLAKE3 check passing on the
/// journaled chunk list.
#[test]
fn a_partial_file_that_no_longer_holds_its_chunks_is_not_reused() {
    const BIG: usize = 32 << 20;
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("big.bin"), BIG, 9);
    let dst = Destination::start(t, "dst");
    // A partial progress record with a few dozen chunks (the first ones among them).
    kill_source_when(&src, &dst, "4M", "no progress was journaled", |j| {
        journal_len(j) >= 1000
    });
    // The staged file's first bytes are no longer what the journal says arrived.
    let staged = std::fs::OpenOptions::new()
        .write(true)
        .open(dst.dir.join(".ferry/staging/big.bin"))
        .expect("open the staged file");
    staged.write_all_at(&[0xa5; 4096], 0).expect("damage it");
    drop(staged);
    sync_ok(&src, &dst);
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
}

/// Changes `len` bytes of `path` at `at`.
fn change(path: &std::path::Path, at: u64, len: usize, byte: u8) {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open for a change");
    f.write_all_at(&vec![byte; len], at).expect("change");
}

/// Runs a slow iteration of `src` (a changed `big` first, then the files under `y`) and
/// kills the source once the destination has journaled `big` as delivered.
fn interrupt_after_big(src: &std::path::Path, dst: &Destination) {
    kill_source_when(src, dst, "4M", "big was not journaled", |j| {
        Journal::read(j).is_some_and(|(_, entries)| {
            entries
                .iter()
                .any(|e| matches!(e, Entry::Done(p, _) if p == b"big"))
        })
    });
}

fn journal_len(journal: &std::path::Path) -> u64 {
    std::fs::metadata(journal).map(|m| m.len()).unwrap_or(0)
}

/// Runs an iteration of `src` into `dst` at `rate` and kills the source (-9) once `ready`
/// holds of the destination's journal; fails with `what` if that takes over 60 s, or if the
/// source finishes first.
fn kill_source_when(
    src: &std::path::Path,
    dst: &Destination,
    rate: &str,
    what: &str,
    ready: impl Fn(&std::path::Path) -> bool,
) {
    let mut cmd = source_cmd(src, &dst.secret);
    cmd.args(["--bandwidth-limit", rate, "--no-compress"]);
    let mut source = Proc::spawn(cmd, anon(), anon());
    let journal = dst.dir.join(".ferry/staging.journal");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&journal) {
        assert!(
            source.running(),
            "the source finished before it could be interrupted"
        );
        assert!(Instant::now() < deadline, "{what} within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(source.running(), "the source finished before the kill");
    source.kill9();
    source.wait(super::harness::LIMIT);
}

/// A large file journaled as delivered by an interrupted iteration, then changed again: the
/// resumed source referred to chunks of the journaled version, the destination copied from
/// the last snapshot's, and every later iteration failed ("content of big does not match its
/// BLAKE3") until the staging tree was deleted by hand.
#[test]
fn a_delivered_file_that_changed_again_is_resumed_against_the_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("big"), 4_000_000, 1);
    let dst = Destination::start(t, "dst");
    sync_ok(&src, &dst);
    change(&src.join("big"), 1_000_000, 100, 0x5a);
    for i in 0..40 {
        write_file(&src.join(format!("y/f{i:02}")), 500_000, 100 + i);
    }
    interrupt_after_big(&src, &dst);
    change(&src.join("big"), 3_000_000, 100, 0xa5);
    let r = sync_ok(&src, &dst);
    assert!(num(&r, "files_resumed") > 0, "nothing was resumed: {r}");
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
}

/// An iteration that fails because a file's content does not match what the source sent
/// drops the interrupted iteration's state: resuming it again would meet the same
/// disagreement, for ever.
#[test]
fn a_content_mismatch_drops_the_resume_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("big"), 4_000_000, 1);
    write_file(&src.join("db"), 2_000_000, 2);
    let dst = Destination::start(t, "dst");
    let r = sync_ok(&src, &dst);
    change(&src.join("big"), 1_000_000, 100, 0x5a);
    for i in 0..40 {
        write_file(&src.join(format!("y/f{i:02}")), 500_000, 100 + i);
    }
    interrupt_after_big(&src, &dst);
    // Damage a range of the last snapshot's db that the next iteration copies from.
    let base = dst
        .dir
        .join(".ferry/snapshots")
        .join(snapshot_of(&r))
        .join("db");
    let good = std::fs::read(&base).expect("read the snapshot's db");
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    change(&base, 1_500_000, 100, 0x11);
    change(&src.join("db"), 200_000, 100, 0x22);
    let out = run(source_cmd(&src, &dst.secret));
    assert!(!out.status.success(), "a damaged base was copied");
    assert!(
        !dst.dir.join(".ferry/staging.journal").exists(),
        "the resume state was kept after a mismatch"
    );
    // Repaired: the next iteration starts afresh from the snapshot and succeeds.
    std::fs::write(&base, good).expect("repair the snapshot's db");
    let r = sync_ok(&src, &dst);
    assert_eq!(num(&r, "files_resumed"), 0, "{r}");
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
}

/// An interrupted iteration delivered files of a new folder; the source then deleted that
/// folder. The resume deleted the journaled files but published the folders themselves
/// (empty), which the source never had at that point: the destination did not tell the
/// source of folders it kept for journaled files.
#[test]
fn a_folder_deleted_after_an_interrupted_iteration_is_not_published() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    write_file(&src.join("base"), 10, 1);
    let dst = Destination::start(t, "dst");
    sync_ok(&src, &dst);
    for i in 0..100 {
        write_file(&src.join(format!("newdir/sub/f{i:03}")), 100_000, i + 2);
    }
    kill_source_when(&src, &dst, "2M", "no file was journaled", |j| {
        Journal::read(j).is_some_and(|(_, entries)| {
            entries
                .iter()
                .filter(|e| matches!(e, Entry::Done(..)))
                .count()
                >= 5
        })
    });
    std::fs::remove_dir_all(src.join("newdir")).expect("remove newdir");
    sync_ok(&src, &dst);
    let p = t.join("promoted");
    promote(&dst.dir, None, &p);
    assert_same_tree(&src, &p);
}
