//! Namespace buckets (issue 4): writes reach the primary and every secondary (a second
//! `ferry serve` over HTTP, `moto_server`), a secondary outage is journaled and caught up,
//! kill -9 loses no acknowledged write, failover and failback, and bad policy input.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Ferry, Moto, venv_bin, write_file};

mod backfill;
mod failback;
mod failover;
mod late;
mod leftovers;
mod policy;
mod writes;

fn status(f: &Ferry, bucket: &str) -> Value {
    let out = f.ok(&f.cli(&["bucket", "status", bucket, "--json"]));
    serde_json::from_str(&out).expect("status json")
}

/// A Ferry `a` with a second Ferry `b` added as the store `dr`, and a bucket `bucket` on
/// `a` writing to `local:bucket` (primary) and `dr:bucket`; `b` on a fixed port when it is
/// to be restarted.
fn two_sites(bucket: &str, fixed_port_b: bool) -> (Ferry, Ferry) {
    let a = Ferry::start();
    let b = if fixed_port_b {
        Ferry::start_fixed_port()
    } else {
        Ferry::start()
    };
    a.add_remote("dr", &b);
    let write_to = format!("local:{bucket},dr:{bucket}");
    a.ok(&a.cli(&["bucket", "create", bucket, "--write-to", &write_to]));
    (a, b)
}

/// Waits until no target of `bucket` is owed anything.
#[track_caller]
fn wait_drained(f: &Ferry, bucket: &str) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let s = status(f, bucket);
        if s["owed_total"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the journal did not drain: {s}\nlog:\n{}",
            f.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A server with a second one registered as store `dr`, and a namespace bucket writing to
/// `local:BUCKET` and `dr:BUCKET`.
fn pair(bucket: &str) -> (Ferry, Ferry) {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    let targets = format!("local:{bucket},dr:{bucket}");
    a.ok(&a.cli(&["bucket", "create", bucket, "--write-to", &targets]));
    (a, b)
}

/// A server with a second one registered as store `dr`, and a namespace bucket whose primary
/// is `dr:BUCKET` and secondary `local:BUCKET` (`extra`: more `bucket create` arguments).
fn remote_primary(bucket: &str, extra: &[&str]) -> (Ferry, Ferry) {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    let targets = format!("dr:{bucket},local:{bucket}");
    let mut args = vec!["bucket", "create", bucket, "--write-to", &targets];
    args.extend_from_slice(extra);
    a.ok(&a.cli(&args));
    (a, b)
}

/// Registers an fs store `name` on `f`, in a folder of that name under `f`'s directory;
/// returns the folder.
fn add_fs_store(f: &Ferry, name: &str) -> std::path::PathBuf {
    let dir = f.dir.path().join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.to_str().unwrap_or_default();
    f.ok(&f.cli(&["store", "add", name, "--kind", "fs", "--path", path]));
    dir
}

/// `ferry verify` of two targets must report no difference.
#[track_caller]
fn assert_same(f: &Ferry, a: &str, b: &str) {
    let out = f.cli(&["verify", a, b]);
    assert!(
        out.status.success(),
        "verify {a} {b} found differences:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every PUT acknowledged in `acks` (a `load.py` log) is in the primary's fs bucket with its
/// bytes (the last acknowledgement of a key wins); returns how many keys were checked.
#[track_caller]
fn assert_acks_on_primary(f: &Ferry, bucket: &str, acks: &std::path::Path) -> usize {
    let log = std::fs::read_to_string(acks).unwrap_or_default();
    let mut want = std::collections::BTreeMap::new();
    for l in log.lines() {
        if let Some((k, md5)) = l.split_once(' ') {
            want.insert(k.to_owned(), md5.to_owned());
        }
    }
    for (k, md5) in &want {
        let p = f.local_root().join(bucket).join(k);
        let got = std::fs::read(&p).unwrap_or_else(|e| panic!("acknowledged {k} missing: {e}"));
        assert_eq!(&hex_md5(&got), md5, "{k} has other bytes");
    }
    want.len()
}

/// `aws s3 cp FILE URL` against `to`, which must succeed.
fn cp_to(to: &Ferry, file: &std::path::Path, url: &str) {
    to.ok(&to.aws(&["s3", "cp", file.to_str().expect("utf8"), url]));
}

fn hex_md5(data: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts `load.py put BUCKET COUNT ACKS [PREFIX]` against `f` (see tests/it/py/load.py).
fn spawn_load(
    f: &Ferry,
    bucket: &str,
    count: u32,
    acks: &std::path::Path,
    prefix: Option<&str>,
) -> std::process::Child {
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(crate::support::repo().join("tests/it/py/load.py"))
        .args([
            "put",
            bucket,
            &count.to_string(),
            acks.to_str().expect("utf8"),
        ])
        .args(prefix)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    f.client_env(&mut cmd);
    cmd.spawn().expect("load")
}

/// The server's `/metrics` text.
fn metrics(f: &Ferry) -> String {
    let out = Command::new("curl")
        .args(["-s", &format!("{}/metrics", f.admin)])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How many keys the catch-up worker has synced to `target` (`store:bucket`).
fn synced_keys(f: &Ferry, target: &str) -> u64 {
    metrics(f)
        .lines()
        .find(|l| l.starts_with("ferry_journal_synced_keys_total{") && l.contains(target))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// Runs the admin command `args` on `f`; returns whether it succeeded and its stderr. Fails
/// the test if it is still running after two minutes (it waits for something that never
/// comes).
#[track_caller]
fn run_bounded(f: &Ferry, args: &[&str]) -> (bool, String) {
    let mut child = Command::new(crate::support::ferry_bin())
        .args(["--server", &f.admin])
        .args(args)
        .env("FERRY_ADMIN_TOKEN", crate::support::ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(st) = child.try_wait().expect("wait") {
            let out = child.wait_with_output().expect("output");
            return (
                st.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} is still waiting\nlog:\n{}", f.log());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// [`run_bounded`], which must succeed.
#[track_caller]
fn ok_bounded(f: &Ferry, args: &[&str]) {
    let (ok, err) = run_bounded(f, args);
    assert!(ok, "{args:?}: {err}");
}
