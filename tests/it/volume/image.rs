//! On a filesystem that clones files (xfs on a loop device here), the source reads reflink
//! clones taken at the start of the iteration: a file rewritten over and over while the
//! iteration runs still arrives whole and the snapshot is consistent. Where nothing can be
//! cloned, the report says no image was used.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::harness::{Destination, promote, sync_ok};
use super::tree::assert_same_tree;
use crate::support::write_file;

/// An xfs filesystem in a file, loop-mounted; unmounted on drop.
struct Xfs {
    dir: PathBuf,
}

impl Xfs {
    /// `None` (the test is skipped, with a message) without root, mkfs.xfs or loop mounts.
    fn mount(tmp: &Path) -> Option<Xfs> {
        if !rustix::process::geteuid().is_root() {
            return None;
        }
        let img = tmp.join("xfs.img");
        let dir = tmp.join("xfs");
        std::fs::create_dir_all(&dir).ok()?;
        std::fs::File::create(&img).ok()?.set_len(600 << 20).ok()?;
        let ok = |c: &mut Command| c.output().map(|o| o.status.success()).unwrap_or(false);
        if !ok(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(&img)) {
            return None;
        }
        if !ok(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&dir))
        {
            return None;
        }
        Some(Xfs { dir })
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
    }
}

#[test]
fn reads_a_reflink_image_where_the_filesystem_clones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(xfs) = Xfs::mount(tmp.path()) else {
        eprintln!("SKIPPED: needs root, mkfs.xfs (xfsprogs) and loop mounts");
        return;
    };
    let src = xfs.dir.join("src");
    for i in 0..30u64 {
        write_file(
            &src.join(format!("d{}/f{i}", i % 3)),
            5000 + i as usize * 100,
            i,
        );
    }
    write_file(&src.join("big.bin"), 20 << 20, 99);
    let hot = src.join("hot.bin");
    std::fs::write(&hot, vec![0u8; 1 << 20]).expect("hot file");
    let dst = Destination::start(tmp.path(), "dst");
    let r = sync_ok(&src, &dst);
    assert_eq!(r["image"], true, "the source read clones: {r}");
    let p1 = tmp.path().join("p1");
    promote(&dst.dir, None, &p1);
    assert_same_tree(&src, &p1);
    assert!(
        !xfs.dir.join("src/.ferry/image").exists(),
        "the clones are removed after the iteration"
    );

    // Rewrite the hot file over and over (each version one repeated byte) during iterations.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, hot) = (stop.clone(), hot.clone());
        std::thread::spawn(move || {
            let mut k = 1u8;
            while !stop.load(Ordering::Relaxed) {
                std::fs::write(&hot, vec![k; 1 << 20]).expect("rewrite");
                k = k.wrapping_add(1).max(1);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    for round in 0..3 {
        write_file(&src.join("big.bin"), 20 << 20, 100 + round);
        let r = sync_ok(&src, &dst);
        assert_eq!(r["image"], true, "{r}");
        let p = tmp.path().join(format!("round{round}"));
        promote(&dst.dir, None, &p);
        let got = std::fs::read(p.join("hot.bin")).expect("hot.bin arrived");
        assert!(
            got.iter().all(|b| *b == got.first().copied().unwrap_or(0)),
            "round {round}: hot.bin arrived torn ({} bytes)",
            got.len()
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    sync_ok(&src, &dst);
    let last = tmp.path().join("last");
    promote(&dst.dir, None, &last);
    assert_same_tree(&src, &last);
}

/// Whether files in `dir` can be cloned (FICLONE).
fn clones_in(dir: &Path) -> bool {
    let a = dir.join("clone-probe-a");
    let b = dir.join("clone-probe-b");
    std::fs::write(&a, b"x").expect("probe file");
    let src = std::fs::File::open(&a).expect("open probe");
    let dst = std::fs::File::create(&b).expect("create probe");
    let can = rustix::fs::ioctl_ficlone(&dst, &src).is_ok();
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    can
}

/// The first file tried told whether the filesystem clones; one read live (unreadable, gone,
/// changing) counted as a yes, and the report said `"image": true` on ext4, where every
/// clone then failed and every file was read live.
#[test]
fn no_image_is_claimed_where_nothing_was_cloned() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let t = tmp.path();
    if clones_in(t) {
        eprintln!("skipped: this filesystem clones files");
        return;
    }
    let src = t.join("src");
    // First in the order files are read, and unreadable to the source's user.
    write_file(&src.join("0-locked"), 10, 1);
    write_file(&src.join("a"), 10, 2);
    write_file(&src.join("b"), 10, 3);
    let dst = Destination::start(t, "dst");
    use std::os::unix::fs::PermissionsExt;
    // Chowned to the source's user by `source_as_user`; mode 000 still keeps it out.
    std::fs::set_permissions(src.join("0-locked"), std::fs::Permissions::from_mode(0o000))
        .expect("chmod 000");
    let (code, report) = super::regress::source_as_user(t, &src, &dst);
    if !rustix::process::geteuid().is_root() && code != Some(23) {
        eprintln!("skipped: the file stayed readable");
        return;
    }
    assert_eq!(code, Some(23), "{report}");
    assert_eq!(report["image"], serde_json::Value::Bool(false), "{report}");
}
