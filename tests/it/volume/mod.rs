//! `ferry volume`: point-in-time replication of a directory tree to a destination over mutual
//! TLS 1.3, with snapshots there. Real `ferry volume destination` processes (port 0, their own
//! directories; see [`harness`]) and one-shot `ferry volume source --once --json` runs; every
//! tree a test builds carries the metadata that must survive (modes with set-id bits, owners,
//! nanosecond mtimes, xattrs, hardlinks, holes, odd symlinks and names), and every promoted
//! snapshot is compared with [`tree`] against what it must equal. Also: wrong secrets, and
//! kill -9 of either side in the middle of a transfer.

mod errors;
mod escape;
mod harness;
mod image;
mod promote;
mod regress;
mod resume;
mod status;
mod tree;
mod unset;

use std::ffi::OsStr;
use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, PermissionsExt, lchown, symlink};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, XattrFlags};
use serde_json::Value;

use crate::support::write_file;
use harness::{
    Destination, LIMIT, Proc, anon, num, promote, regular_files, run, snapshot_ids, snapshot_of,
    source_cmd, stderr, stored_bytes, sync_ok, write_secret,
};
use tree::{assert_matches, assert_same_tree, manifest};

const MIB: u64 = 1 << 20;

/// `len` bytes of incompressible, never-repeating data, written 1 MiB at a time.
fn write_random(path: &Path, len: u64, seed: u64) {
    let mut f = File::create(path).expect("create");
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(MIB);
        f.write_all(&block[..n as usize]).expect("write");
        left -= n;
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn own(path: &Path, uid: u32, gid: u32) {
    lchown(path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::setxattr(path, name, value, XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {} {name}: {e}", path.display()));
}

/// Gives every entry (symlinks themselves included) its own mtime with odd nanoseconds.
fn stamp_all(root: &Path) {
    for (i, path) in tree::paths(root).iter().enumerate() {
        let i = i as i64;
        let t = Timespec {
            tv_sec: 1_600_000_000 + i * 1000,
            tv_nsec: (i * 123_456_789 + 987) % 1_000_000_000,
        };
        let times = Timestamps {
            last_access: t,
            last_modification: t,
        };
        rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
            .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
    }
}

/// Small file `i`, spread over the root and three levels of folders.
fn small(i: u64) -> String {
    let dir = ["", "a", "a/b", "a/b/c", "d"][(i % 5) as usize];
    if dir.is_empty() {
        format!("f{i:03}")
    } else {
        format!("{dir}/f{i:03}")
    }
}

/// A tree with everything that must survive; with `big`, also a 20 MiB random file.
fn build_tree(root: &Path, big: bool) {
    for dir in ["a/b/c", "a/.ferry", "d", "empty", "ro", "sticky", ".ferry"] {
        std::fs::create_dir_all(root.join(dir)).expect("mkdir");
    }
    for i in 0..50 {
        write_file(&root.join(small(i)), (i as usize * 187) % 9000, i);
    }
    // A nested .ferry is ordinary data; the top-level one is never replicated.
    write_file(&root.join("a/.ferry/kept"), 300, 900);
    write_file(&root.join(".ferry/decoy"), 300, 901);
    write_file(&root.join("ro/inside"), 300, 902);
    write_file(&root.join("sticky/s.txt"), 300, 903);
    write_file(
        &root.join(OsStr::from_bytes(b"caf\xe9-\xff.txt")),
        1234,
        904,
    );
    write_file(&root.join("a/hl1"), 5000, 905);
    std::fs::hard_link(root.join("a/hl1"), root.join("d/hl2")).expect("hard link");
    write_file(&root.join("x.txt"), 10, 906);
    write_file(&root.join("suid.bin"), 2000, 907);
    if big {
        write_file(&root.join("big.bin"), 20 << 20, 7);
    }
    {
        let sparse = File::create(root.join("sparse.img")).expect("sparse file");
        sparse.set_len(64 * MIB).expect("set_len");
        sparse
            .write_all_at(&[0xab_u8; 4096], 32 * MIB)
            .expect("write sparse");
    }
    symlink("a/b/f002", root.join("rel-link")).expect("symlink");
    symlink("../nowhere/at-all", root.join("a/dangling")).expect("symlink");
    symlink(
        OsStr::from_bytes(b"not-\xff\xfe-utf8"),
        root.join("d/raw-link"),
    )
    .expect("symlink");
    set_xattr(&root.join("x.txt"), "user.ferry.note", b"hello\0\xff");
    set_xattr(&root.join("x.txt"), "user.ferry.gone", b"");
    set_xattr(&root.join("a"), "user.ferry.dir", b"on a directory");
    // Owners before modes: chown clears the set-id bits.
    for p in ["a", "suid.bin", "rel-link", "a/hl1", "a/b/c/f003"] {
        own(&root.join(p), 1234, 5678);
    }
    for (p, mode) in [
        ("suid.bin", 0o4750),
        ("d", 0o2750),
        ("sticky", 0o1777),
        ("ro", 0o555),
        ("x.txt", 0o640),
        ("a/f001", 0o600),
        ("d/f004", 0o400),
    ] {
        chmod(&root.join(p), mode);
    }
    stamp_all(root);
}

/// Every kind of change [`build_tree`]'s tree can see between two iterations.
fn change_tree(root: &Path) {
    write_file(&root.join("a/b/new.txt"), 777, 1000);
    let big = OpenOptions::new()
        .write(true)
        .open(root.join("big.bin"))
        .expect("open big.bin");
    big.write_all_at(&[0x5a_u8; 4096], 10 * MIB + 123)
        .expect("edit big.bin");
    let sparse = OpenOptions::new()
        .write(true)
        .open(root.join("sparse.img"))
        .expect("open sparse.img");
    sparse
        .write_all_at(&[0xcd_u8; 16 << 10], 8 * MIB)
        .expect("grow sparse.img");
    std::fs::remove_file(root.join(small(10))).expect("delete");
    std::fs::rename(root.join(small(11)), root.join("d/renamed")).expect("rename");
    chmod(&root.join(small(12)), 0o751);
    own(&root.join(small(14)), 4321, 8765);
    std::fs::remove_file(root.join("rel-link")).expect("unlink");
    symlink("d/hl2", root.join("rel-link")).expect("symlink");
    std::fs::hard_link(root.join(small(13)), root.join("a/b/c/f013-link")).expect("hard link");
    std::fs::hard_link(root.join("a/hl1"), root.join("hl3")).expect("hard link");
    set_xattr(&root.join("x.txt"), "user.ferry.note", b"changed");
    rustix::fs::removexattr(root.join("x.txt"), "user.ferry.gone").expect("removexattr");
    std::fs::remove_dir_all(root.join("sticky")).expect("rm -r");
    // A file becomes a directory.
    std::fs::remove_file(root.join(small(15))).expect("delete");
    write_file(&root.join(small(15)).join("inner"), 100, 1001);
}

/// A few small files and a symlink.
fn build_small(root: &Path) {
    for i in 0..20u64 {
        let len = 100 + (i as usize * 311) % 4000;
        write_file(&root.join(format!("s{}/f{i:02}", i % 3)), len, 500 + i);
    }
    symlink("s0/f00", root.join("link")).expect("symlink");
}

#[test]
fn sync_changes_and_promote() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    build_tree(&src, true);
    let first = manifest(&src);

    let dst = Destination::start(t, "dst");
    let mode = std::fs::metadata(&dst.secret)
        .expect("secret")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the secret file is private");
    let secret = dst.secret_json();
    for key in ["address", "server_fingerprint", "client_cert", "client_key"] {
        assert!(secret[key].is_string(), "the secret lacks {key}");
    }
    let fp = secret["server_fingerprint"].as_str().unwrap_or_default();
    assert!(
        fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()),
        "the fingerprint is SHA-256 hex: {fp}"
    );
    let pem = |key: &str| secret[key].as_str().unwrap_or_default().to_owned();
    assert!(
        pem("client_cert").contains("BEGIN CERTIFICATE"),
        "client_cert is PEM"
    );
    assert!(
        pem("client_key").contains("PRIVATE KEY"),
        "client_key is PEM"
    );

    // First iteration: everything goes over.
    let r1 = sync_ok(&src, &dst);
    assert!(num(&r1, "files_sent") >= 50, "{r1}");
    assert!(num(&r1, "bytes_scanned") >= 20 * MIB, "{r1}");
    assert!(num(&r1, "bytes_sent") >= 20 * MIB, "{r1}");
    assert!(
        num(&r1, "wire_bytes") >= 20 * MIB,
        "random data does not compress: {r1}"
    );
    let id1 = snapshot_of(&r1);
    assert_eq!(snapshot_ids(&dst.dir), vec![id1.clone()]);
    let p1 = t.join("p1");
    promote(&dst.dir, None, &p1);
    assert_matches(&first, &p1);
    assert!(
        !p1.join(".ferry/decoy").exists(),
        "the source's top-level .ferry was replicated"
    );

    // Second iteration: only the changes go over, into a new snapshot.
    change_tree(&src);
    let r2 = sync_ok(&src, &dst);
    assert!(num(&r2, "files_sent") >= 1, "{r2}");
    assert!(
        num(&r2, "bytes_sent") < 2 * MIB,
        "a 4 KiB edit of a 20 MiB file and a few small changes send little: {r2}"
    );
    let id2 = snapshot_of(&r2);
    assert_eq!(snapshot_ids(&dst.dir), vec![id1.clone(), id2.clone()]);
    let p2 = t.join("p2");
    promote(&dst.dir, None, &p2);
    assert_same_tree(&src, &p2);
    // The first snapshot was not touched by the second iteration.
    let p1b = t.join("p1b");
    promote(&dst.dir, Some(id1.as_str()), &p1b);
    assert_matches(&first, &p1b);
    assert_matches(&first, &p1);

    // A promoted tree is a tree of its own: writing into it leaves the snapshot alone.
    let now = manifest(&src);
    let edit = OpenOptions::new()
        .write(true)
        .open(p2.join("a/hl1"))
        .expect("open promoted file");
    edit.write_all_at(b"written on the promoted side", 100)
        .expect("edit promoted file");
    write_file(&p2.join("d/after-failover.txt"), 3000, 77);
    let p3 = t.join("p3");
    promote(&dst.dir, Some(id2.as_str()), &p3);
    assert_matches(&now, &p3);

    // Failback: the promoted tree is the source for a destination of its own.
    let back = Destination::start(t, "back");
    let r3 = sync_ok(&p2, &back);
    assert_eq!(snapshot_ids(&back.dir), vec![snapshot_of(&r3)]);
    let q = t.join("q");
    promote(&back.dir, None, &q);
    assert_same_tree(&p2, &q);
}

#[test]
fn unchanged_iteration_sends_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    build_tree(&src, false);
    let dst = Destination::start(t, "dst");
    let r1 = sync_ok(&src, &dst);
    let r2 = sync_ok(&src, &dst);
    assert_eq!(
        (num(&r2, "files_sent"), num(&r2, "bytes_sent")),
        (0, 0),
        "nothing changed, nothing is sent: {r2}"
    );
    assert_eq!(
        num(&r2, "files_scanned"),
        num(&r1, "files_scanned"),
        "{r1}\n{r2}"
    );
    assert_eq!(
        num(&r2, "bytes_scanned"),
        num(&r1, "bytes_scanned"),
        "{r1}\n{r2}"
    );
    let (id1, id2) = (snapshot_of(&r1), snapshot_of(&r2));
    assert_ne!(id1, id2, "every iteration publishes a snapshot");
    assert_eq!(snapshot_ids(&dst.dir), vec![id1.clone(), id2]);
    let p2 = t.join("p2");
    promote(&dst.dir, None, &p2);
    assert_same_tree(&src, &p2);
    let p1 = t.join("p1");
    promote(&dst.dir, Some(id1.as_str()), &p1);
    assert_same_tree(&src, &p1);
}

#[test]
fn refuses_wrong_secrets() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    build_small(&src);
    let a = Destination::start(t, "a");
    let b = Destination::start(t, "b");
    let (sa, sb) = (a.secret_json(), b.secret_json());
    assert_ne!(
        sa["server_fingerprint"], sb["server_fingerprint"],
        "one key each"
    );
    assert_ne!(
        sa["client_cert"], sb["client_cert"],
        "one client identity each"
    );

    let mut aimed = sb.clone();
    aimed["address"] = sa["address"].clone();
    let fp = sa["server_fingerprint"].as_str().expect("fingerprint");
    let flipped = if fp.starts_with('0') { "1" } else { "0" };
    let mut wrong_fp = sa.clone();
    wrong_fp["server_fingerprint"] = Value::from(format!("{flipped}{}", &fp[1..]));
    let mut wrong_client = sa.clone();
    wrong_client["client_cert"] = sb["client_cert"].clone();
    wrong_client["client_key"] = sb["client_key"].clone();
    let cases = [
        ("B's secret aimed at A", aimed),
        (
            "A's secret with one digit of the fingerprint changed",
            wrong_fp,
        ),
        (
            "A's secret with B's client certificate and key",
            wrong_client,
        ),
    ];
    for (i, (what, secret)) in cases.iter().enumerate() {
        let path = t.join(format!("wrong-{i}.json"));
        write_secret(&path, secret);
        let out = run(source_cmd(&src, &path));
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: the source fails\n{err}"
        );
        assert!(
            err.lines().any(|l| l.starts_with("ferry: ")),
            "{what}: no error line:\n{err}"
        );
        for d in [&a, &b] {
            assert_eq!(snapshot_ids(&d.dir), Vec::<String>::new(), "{what}");
            let staged = regular_files(&d.dir.join(".ferry/staging")).len();
            assert_eq!(
                staged,
                0,
                "{what}: files were staged on {}",
                d.dir.display()
            );
        }
    }

    let missing = t.join("no-such-secret.json");
    let out = run(source_cmd(&src, &missing));
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing secret is bad usage:\n{err}"
    );
    let name = missing.display().to_string();
    assert!(err.contains(&name), "the error names {name}:\n{err}");

    // A damaged secret (a byte of a key or certificate changed, a fingerprint that is no
    // SHA-256) was said as a TLS failure, "unexpected error: failed to parse private key",
    // or a destination "that is not the one named": bad usage now, naming the file.
    let flip = |pem: &str| {
        let mut b = pem.as_bytes().to_vec();
        let at = b.len() / 2;
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        Value::from(String::from_utf8(b).expect("pem"))
    };
    let mut damaged = Vec::new();
    for (field, value) in [
        (
            "client_cert",
            flip(sa["client_cert"].as_str().expect("cert")),
        ),
        ("client_key", flip(sa["client_key"].as_str().expect("key"))),
        ("server_fingerprint", Value::from("zz")),
    ] {
        let mut s = sa.clone();
        s[field] = value;
        damaged.push((field, s));
    }
    for (i, (field, secret)) in damaged.iter().enumerate() {
        let path = t.join(format!("damaged-{i}.json"));
        write_secret(&path, secret);
        let out = run(source_cmd(&src, &path));
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{field}: bad usage\n{err}");
        let name = path.display().to_string();
        assert!(
            err.contains("--secret") && err.contains(&name) && err.contains("damaged"),
            "{field}: the error names the file:\n{err}"
        );
    }

    // A's own secret still works.
    let r = sync_ok(&src, &a);
    assert_eq!(snapshot_ids(&a.dir), vec![snapshot_of(&r)]);
    assert_eq!(snapshot_ids(&b.dir), Vec::<String>::new());
    let p = t.join("p");
    promote(&a.dir, None, &p);
    assert_same_tree(&src, &p);
}

/// Waits until the destination has stored 1 MiB more than `before` (the transfer is under
/// way), for at most 20 s (then the iteration is interrupted wherever it is). Panics if the
/// source exits first.
fn wait_for_transfer(dst: &Destination, before: u64, source: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while stored_bytes(&dst.dir.join(".ferry")) < before + MIB && Instant::now() < deadline {
        if !source.running() {
            let out = source.wait(LIMIT);
            panic!(
                "the source exited ({}) before it could be interrupted; make huge.bin bigger\n{}",
                out.status,
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An iteration that adds a 300 MiB file is interrupted by kill -9 of the source or the
/// destination: the last snapshot stays as it was, and the next iteration completes.
fn interrupted_iteration(kill_destination: bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    let src = t.join("src");
    build_small(&src);
    let first = manifest(&src);
    let mut dst = Destination::start(t, "dst");
    let id1 = snapshot_of(&sync_ok(&src, &dst));
    let keys = dst.secret_json();

    write_random(&src.join("huge.bin"), 300 * MIB, 42);
    let before = stored_bytes(&dst.dir.join(".ferry"));
    let mut source = Proc::spawn(source_cmd(&src, &dst.secret), anon(), anon());
    wait_for_transfer(&dst, before, &mut source);
    if kill_destination {
        dst.kill9();
        let out = source.wait(LIMIT);
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "the transfer finished before the destination was killed; make huge.bin bigger"
        );
        assert_eq!(out.status.code(), Some(1), "the source fails:\n{err}");
        assert!(
            err.lines().any(|l| l.starts_with("ferry: ")),
            "no error line:\n{err}"
        );
        dst.restart();
        let again = dst.secret_json();
        for key in ["server_fingerprint", "client_cert"] {
            assert_eq!(again[key], keys[key], "{key} changed across a restart");
        }
    } else {
        source.kill9();
        let out = source.wait(LIMIT);
        assert_eq!(
            out.status.signal(),
            Some(9),
            "the transfer finished before the source was killed ({}); make huge.bin bigger",
            out.status
        );
    }
    assert_eq!(
        snapshot_ids(&dst.dir),
        vec![id1.clone()],
        "the interrupted iteration published a snapshot"
    );
    let p1 = t.join("p1");
    promote(&dst.dir, Some(id1.as_str()), &p1);
    assert_matches(&first, &p1);

    let r = sync_ok(&src, &dst);
    assert_eq!(snapshot_ids(&dst.dir), vec![id1, snapshot_of(&r)]);
    let p2 = t.join("p2");
    promote(&dst.dir, None, &p2);
    assert_same_tree(&src, &p2);
}

#[test]
fn kill9_source_mid_transfer_keeps_last_snapshot() {
    interrupted_iteration(false);
}

#[test]
fn kill9_destination_mid_transfer() {
    interrupted_iteration(true);
}
