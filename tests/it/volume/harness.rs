//! The processes and commands of the `volume` tests: a `ferry volume destination` per test
//! (port 0, its own directory, killed on drop) and one-shot `ferry volume source`,
//! `snapshots` and `promote` runs with a time limit.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{ferry_bin, ok};

/// How long any one `ferry` command may take before the test gives up on it.
pub const LIMIT: Duration = Duration::from_secs(600);

/// A child process whose stdout and stderr go to files; killed and reaped on drop.
pub struct Proc {
    child: Child,
    out: File,
    err: File,
}

impl Proc {
    pub fn spawn(mut cmd: Command, out: File, err: File) -> Self {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup stdout file"))
            .stderr(err.try_clone().expect("dup stderr file"))
            .spawn()
            .expect("spawn ferry");
        Self { child, out, err }
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Freezes the process (SIGSTOP), as a suspended VM or a hung disk read would.
    pub fn freeze(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    }

    /// SIGTERM, as systemd stops a service.
    pub fn terminate(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    }

    /// SIGKILL (the process is reaped by [`Self::wait`] or on drop).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits for the exit (at most `limit`, then kills it and panics) and collects the output.
    pub fn wait(&mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        while self.running() {
            if Instant::now() > deadline {
                self.kill9();
                let _ = self.child.wait();
                panic!(
                    "ferry did not finish within {limit:?}; stderr:\n{}",
                    String::from_utf8_lossy(&read_all(&self.err))
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.wait().expect("wait");
        Output {
            status,
            stdout: read_all(&self.out),
            stderr: read_all(&self.err),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole file, read without moving the offset the child writes at.
fn read_all(f: &File) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = f
            .read_at(&mut chunk, buf.len() as u64)
            .expect("read output");
        if n == 0 {
            return buf;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn anon() -> File {
    tempfile::tempfile().expect("temp file")
}

/// Runs a `ferry` command to completion (at most [`LIMIT`]).
pub fn run(cmd: Command) -> Output {
    Proc::spawn(cmd, anon(), anon()).wait(LIMIT)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A running `ferry volume destination` on `dir`, its secret at `secret`, its output
/// appended to `log`; killed on drop.
pub struct Destination {
    pub dir: PathBuf,
    pub secret: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
    extra: Vec<String>,
    /// Runs this binary as this user (an unprivileged destination) instead of the build's.
    user: Option<(PathBuf, u32)>,
    /// Runs on a tmpfs of this many MiB mounted on `dir` (a mount namespace of its own).
    disk_mib: Option<u32>,
}

/// The user an unprivileged destination or source runs as when the tests run as root.
pub const NOBODY: u32 = 65534;

impl Destination {
    /// Starts one on `tmp/name` (secret `tmp/name.secret.json`, log `tmp/name.log`).
    pub fn start(tmp: &Path, name: &str) -> Self {
        Self::start_with(tmp, name, &[])
    }

    /// Starts one with extra `ferry volume destination` arguments.
    pub fn start_with(tmp: &Path, name: &str, extra: &[&str]) -> Self {
        let mut d = Self::at(tmp, name);
        d.extra = extra.iter().map(|a| (*a).to_owned()).collect();
        d.restart();
        d
    }

    /// One on `tmp/name` (made), not started.
    fn at(tmp: &Path, name: &str) -> Self {
        let dir = tmp.join(name);
        std::fs::create_dir_all(&dir).expect("destination dir");
        Self {
            dir,
            secret: tmp.join(format!("{name}.secret.json")),
            log: tmp.join(format!("{name}.log")),
            proc: None,
            extra: Vec::new(),
            user: None,
            disk_mib: None,
        }
    }

    /// Starts one running as [`NOBODY`] when the tests run as root (root writes anywhere, so
    /// nothing would be refused to it): `tmp` is opened to that user, who owns `tmp/name`, and
    /// a copy of the binary in `tmp` runs (the build's may sit where it cannot reach).
    pub fn start_unprivileged(tmp: &Path, name: &str) -> Self {
        use std::os::unix::fs::PermissionsExt;
        if !rustix::process::geteuid().is_root() {
            return Self::start(tmp, name);
        }
        std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o777)).expect("chmod tmp");
        let exe = tmp.join("ferry-dest");
        crate::support::ferry_copy(&exe);
        let mut d = Self::at(tmp, name);
        std::os::unix::fs::chown(&d.dir, Some(NOBODY), Some(NOBODY)).expect("chown");
        d.user = Some((exe, NOBODY));
        d.restart();
        d
    }

    /// Starts one whose directory is a disk of `mib` MiB (a tmpfs in a mount namespace of
    /// its own, so it goes with the process), to fill.
    pub fn start_on_small_disk(tmp: &Path, name: &str, mib: u32) -> Self {
        let mut d = Self::at(tmp, name);
        d.disk_mib = Some(mib);
        d.restart();
        d
    }

    /// Starts (again) on the same directory and a fresh port; waits for the secret.
    pub fn restart(&mut self) {
        assert!(self.proc.is_none(), "already running");
        let _ = std::fs::remove_file(&self.secret);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("destination log");
        let mut cmd = match (&self.user, self.disk_mib) {
            (Some((exe, uid)), _) => {
                let mut cmd = Command::new(exe);
                std::os::unix::process::CommandExt::uid(&mut cmd, *uid);
                std::os::unix::process::CommandExt::gid(&mut cmd, *uid);
                cmd
            }
            (None, Some(mib)) => {
                let mut cmd = Command::new("unshare");
                cmd.args(["-rm", "sh", "-c"])
                    .arg(r#"mount -t tmpfs -o size="$1" tmpfs "$0" && shift && exec "$@""#)
                    .arg(&self.dir)
                    .arg(format!("{mib}m"))
                    .arg(ferry_bin());
                cmd
            }
            (None, None) => Command::new(ferry_bin()),
        };
        cmd.args(["volume", "destination", "--dir"])
            .arg(&self.dir)
            .args(["--listen", "127.0.0.1:0", "--secret-out"])
            .arg(&self.secret)
            .args(&self.extra);
        let mut p = Proc::spawn(cmd, log.try_clone().expect("dup log"), log);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.read_secret().is_none() {
            assert!(
                p.running(),
                "ferry volume destination exited; log:\n{}",
                self.log_tail()
            );
            assert!(
                Instant::now() < deadline,
                "ferry volume destination wrote no secret to {} within 30 s; log:\n{}",
                self.secret.display(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.proc = Some(p);
    }

    fn read_secret(&self) -> Option<Value> {
        let text = std::fs::read_to_string(&self.secret).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v["address"].is_string().then_some(v)
    }

    pub fn secret_json(&self) -> Value {
        self.read_secret().expect("the destination's secret")
    }

    /// Freezes the destination (SIGSTOP); [`Self::kill9`] or drop ends it.
    pub fn freeze(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            p.freeze();
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

pub fn source_cmd(src: &Path, secret: &Path) -> Command {
    source_cmd_of(&ferry_bin(), src, secret)
}

/// [`source_cmd`] running the binary `exe`.
pub fn source_cmd_of(exe: &Path, src: &Path, secret: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(["volume", "source", "--dir"])
        .arg(src)
        .arg("--secret")
        .arg(secret)
        .args(["--once", "--json"]);
    cmd
}

/// One successful, consistent source iteration into `dst`; its JSON report.
#[track_caller]
pub fn sync_ok(src: &Path, dst: &Destination) -> Value {
    let out = run(source_cmd(src, &dst.secret));
    if !out.status.success() {
        eprintln!("destination log (last 40 lines):\n{}", dst.log_tail());
    }
    let text = ok(&out);
    let report: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("source --json printed {text:?}: {e}"));
    for key in [
        "snapshot",
        "files_scanned",
        "files_sent",
        "bytes_scanned",
        "bytes_sent",
        "wire_bytes",
        "consistent",
        "duration_ms",
    ] {
        assert!(
            report.get(key).is_some(),
            "the report lacks {key}: {report}"
        );
    }
    assert_eq!(
        report["consistent"],
        Value::Bool(true),
        "nothing changed during the iteration: {report}"
    );
    report
}

pub fn num(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count: {report}"))
}

pub fn snapshot_of(report: &Value) -> String {
    report["snapshot"]
        .as_str()
        .unwrap_or_else(|| panic!("snapshot is not a string: {report}"))
        .to_owned()
}

/// `ferry volume snapshots --json`: the ids, oldest first (each a directory under
/// `.ferry/snapshots`).
#[track_caller]
pub fn snapshot_ids(dst: &Path) -> Vec<String> {
    let mut cmd = Command::new(ferry_bin());
    cmd.args(["volume", "snapshots", "--dir"])
        .arg(dst)
        .arg("--json");
    let text = ok(&run(cmd));
    let list: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("snapshots --json printed {text:?}: {e}"));
    let list = list
        .as_array()
        .unwrap_or_else(|| panic!("snapshots --json is not an array: {list}"));
    let ids: Vec<String> = list
        .iter()
        .map(|s| {
            for key in ["id", "time", "files", "bytes", "duration_ms"] {
                assert!(s.get(key).is_some(), "a snapshot lacks {key}: {s}");
            }
            let id = s["id"]
                .as_str()
                .unwrap_or_else(|| panic!("id is not a string: {s}"));
            let dir = dst.join(".ferry/snapshots").join(id);
            assert!(dir.is_dir(), "{} is not a directory", dir.display());
            id.to_owned()
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "snapshot ids are not oldest first: {ids:?}"
    );
    ids
}

/// `ferry volume promote`: the snapshot `id` (default the latest) as a new tree at `to`.
pub fn promote(dst: &Path, id: Option<&str>, to: &Path) {
    let mut cmd = Command::new(ferry_bin());
    cmd.args(["volume", "promote", "--dir"]).arg(dst);
    if let Some(id) = id {
        cmd.args(["--snapshot", id]);
    }
    cmd.arg("--to").arg(to);
    ok(&run(cmd));
}

/// Regular files under `dir` (tolerating a tree that changes meanwhile).
pub fn regular_files(dir: &Path) -> Vec<std::fs::Metadata> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => dirs.push(e.path()),
                Ok(m) if m.is_file() => out.push(m),
                _ => {}
            }
        }
    }
    out
}

/// Bytes allocated below `dir`, each inode counted once.
pub fn stored_bytes(dir: &Path) -> u64 {
    let mut seen = HashSet::new();
    regular_files(dir)
        .iter()
        .filter(|m| seen.insert((m.dev(), m.ino())))
        .map(|m| m.blocks() * 512)
        .sum()
}

pub fn write_secret(path: &Path, secret: &Value) {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create secret");
    let text = serde_json::to_string_pretty(secret).expect("secret json");
    f.write_all(text.as_bytes()).expect("write secret");
}
