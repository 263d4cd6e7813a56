//! The state database going away mid-job (a PostgreSQL restart, a failover). A probe's 30 s
//! restart ended the foreground `ferry migrate` (exit 1, "pool timed out") and left the
//! job idle: the run now waits for the database, as it waits out an S3 side's outage. The
//! copies in flight when the process's leases lapse are given back, and the database being
//! away, the give-back fails: those tasks are run again once it answers (the heartbeat
//! renewed their leases with the rest, and the job never ended).

use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;

/// A TCP proxy (`py/tcp_gate.py`) in front of the test PostgreSQL that drops every
/// connection, and refuses new ones, while `cut` exists.
struct Gate(std::process::Child);

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `url` through a gate: the gate and the URL that goes through it.
fn gated(url: &str, cut: &Path) -> (Gate, String) {
    let at = url.find("@127.0.0.1:").expect("a local PostgreSQL URL") + "@127.0.0.1:".len();
    let end = at + url[at..].find('/').expect("a database name");
    let mut child = Command::new(crate::support::venv_bin("python"))
        .arg(crate::support::repo().join("tests/it/py/tcp_gate.py"))
        .arg(&url[at..end])
        .arg(cut)
        .stdout(Stdio::piped())
        .spawn()
        .expect("gate");
    let port = crate::support::printed_port(&mut child);
    let through = format!("{}{port}{}", &url[..at], &url[end..]);
    (Gate(child), through)
}

#[test]
fn a_state_database_outage_is_waited_out() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cut = tmp.path().join("cut");
    let (_gate, db) = gated(&fresh_pg_database(), &cut);
    let f = Ferry::start();
    let src = tmp.path().join("tree/outage");
    for i in 0..60 {
        write_file(&src.join(format!("f{i:02}")), 20 * 1024, i);
    }
    // Claimed first, and still in flight when the leases lapse (15 s into the cut).
    for i in 0..2 {
        write_file(&src.join(format!("big{i}")), 3 << 20, 100 + i);
    }
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let log = tmp.path().join("migrate.log");
    let mut child = m.spawn(
        &[
            "migrate",
            src.to_str().unwrap_or_default(),
            "s3://outage",
            "--dst-endpoint",
            &f.s3,
            "--db",
            &db,
            "--workers",
            "4",
            "--bandwidth-limit",
            "200K",
        ],
        &log,
    );
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(&cut, "").expect("cut the database off");
    std::thread::sleep(Duration::from_secs(35));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the run ended while the database was away:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    std::fs::remove_file(&cut).expect("bring it back");
    let status = wait_for(&mut child, Duration::from_secs(180), &log);
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{said}");
    let ls = f.ok(&f.aws(&["s3", "ls", "s3://outage/"]));
    assert_eq!(ls.lines().count(), 62, "{ls}\n{said}");
    assert!(said.contains("giving it back"), "{said}");
}

/// The embedded state database's disk filling mid-job: a write refused for want of space
/// left sqlx counting a transaction SQLite had already rolled back, and every later claim
/// and record failed ("non-zero transaction depth") once space came back, for good (a
/// probe's job stalled until a restart). The run waits the full disk out and finishes.
#[test]
fn a_full_state_disk_is_waited_out() {
    use std::io::Write;
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("in/src");
    make_tree(&src, 60, &[]);
    let dst = tmp.path().join("out/dst");
    let data = tmp.path().join("mdata");
    std::fs::create_dir_all(&data).expect("data dir");
    let log = tmp.path().join("log");
    let out = std::fs::File::create(&log).expect("log");
    // The data directory on a tmpfs of its own, in a mount namespace of the run's.
    let mut child = Command::new("unshare")
        .args([
            "-rm",
            "sh",
            "-c",
            "mount -t tmpfs -o size=8m tmpfs \"$0\" && exec \"$@\"",
        ])
        .arg(&data)
        .arg(crate::support::ferry_bin())
        .arg("--data")
        .arg(&data)
        .arg("migrate")
        .arg(&src)
        .arg(&dst)
        .args(["--bandwidth-limit", "10K", "--workers", "2"])
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("spawn");
    // Reached through the run's own root, where its tmpfs is mounted (checked: the filler
    // must never land on the real disk).
    let inside = PathBuf::from(format!("/proc/{}/root", child.id()))
        .join(data.strip_prefix("/").expect("absolute"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !inside.join("state.db").exists() {
        assert!(
            Instant::now() < deadline && child.try_wait().ok().flatten().is_none(),
            "the run never opened its state database:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mounts =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", child.id())).unwrap_or_default();
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(&format!(" {} ", data.display())) && l.contains(" tmpfs ")),
        "the data directory is not on the run's tmpfs:\n{mounts}"
    );
    // Under way (tasks claimed and recorded), then full for a few seconds.
    std::thread::sleep(Duration::from_millis(1500));
    let filler = inside.join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    let mut written = 0usize;
    while written < 16 << 20 && f.write_all(&[0u8; 16 << 10]).is_ok() {
        written += 16 << 10;
    }
    drop(f);
    std::thread::sleep(Duration::from_secs(4));
    std::fs::remove_file(&filler).expect("free the space");
    let status = wait_for(&mut child, Duration::from_secs(120), &log);
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{said}");
    assert!(said.contains("full"), "the disk never filled:\n{said}");
    assert_same_tree(&src, &dst);
}
