//! Test support: a real `ferry serve` process per test (port 0, its own data directory), and
//! the real clients installed by `scripts/test` into `.venv/`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "FERRYTESTACCESSKEY01";
pub const SECRET_KEY: &str = "ferry-test-secret-key-0123456789abcdefghij";
pub const ADMIN_TOKEN: &str = "ferry-test-admin-token";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A tool from the repo's `.venv` (installed by `scripts/test`).
pub fn venv_bin(name: &str) -> PathBuf {
    let p = repo().join(".venv/bin").join(name);
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/test, which installs the test clients",
        p.display()
    );
    p
}

pub fn ferry_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ferry"))
}

/// A copy of the binary at `to`, mode 0755 (for a user who cannot reach the build's). Copied
/// by `install`, not by this process: a file this process held open for writing could be
/// inherited by a child another test forks meanwhile, and running the copy then failed with
/// "Text file busy" (ETXTBSY; seen in a CI run).
pub fn ferry_copy(to: &Path) {
    let st = Command::new("install")
        .args(["-m", "0755"])
        .arg(ferry_bin())
        .arg(to)
        .status()
        .expect("run install");
    assert!(st.success(), "install {} failed", to.display());
}

/// A running `ferry serve`.
pub struct Ferry {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub s3: String,
    pub admin: String,
    extra_args: Vec<String>,
    /// A command `ferry serve` runs under (its arguments follow), if any.
    wrapper: Vec<String>,
    /// The S3 listen address (`127.0.0.1:0` unless a test needs a fixed port).
    listen: String,
}

impl Ferry {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra `ferry serve` arguments.
    pub fn start_with(args: &[&str]) -> Self {
        let extra = args.iter().map(|a| (*a).to_owned()).collect();
        Self::launch(
            tempfile::tempdir().expect("tempdir"),
            extra,
            Vec::new(),
            None,
        )
    }

    /// Starts on the data directory `dir/data` of an earlier server (moved there).
    pub fn start_in(dir: tempfile::TempDir) -> Self {
        Self::launch(dir, Vec::new(), Vec::new(), None)
    }

    /// Starts with the built-in local store on a filesystem of `mib` MiB of its own: a
    /// tmpfs mounted over `data/stores/local` in a mount namespace of the server's (`unshare`,
    /// which needs no privileges), so the rest of the data directory stays visible here.
    pub fn start_on_small_disk(mib: u32) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("data/stores/local");
        std::fs::create_dir_all(&local).expect("store dir");
        let wrapper = vec![
            "unshare".into(),
            "-rm".into(),
            "sh".into(),
            "-c".into(),
            format!("mount -t tmpfs -o size={mib}m tmpfs \"$0\" && exec \"$@\""),
            local.display().to_string(),
        ];
        Self::launch(dir, Vec::new(), wrapper, None)
    }

    /// Starts with the built-in local store also reachable at `dir/bound`, a bind mount of
    /// it in a mount namespace of the server's (`unshare`, no privileges needed).
    pub fn start_with_bound_local() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = dir.path().join("data/stores/local");
        let bound = dir.path().join("bound");
        std::fs::create_dir_all(&local).expect("store dir");
        std::fs::create_dir_all(&bound).expect("mount point");
        let wrapper = vec![
            "unshare".into(),
            "-rm".into(),
            "sh".into(),
            "-c".into(),
            "mount --bind \"$0\" \"$1\" && shift && exec \"$@\"".into(),
            local.display().to_string(),
            bound.display().to_string(),
        ];
        Self::launch(dir, Vec::new(), wrapper, None)
    }

    /// Starts on a fixed S3 port that stays the same across restarts (for a server other
    /// servers have registered as a store).
    pub fn start_fixed_port() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("tempdir");
        Self::launch(dir, Vec::new(), Vec::new(), Some(port))
    }

    fn launch(
        dir: tempfile::TempDir,
        extra_args: Vec<String>,
        wrapper: Vec<String>,
        port: Option<u16>,
    ) -> Self {
        let mut f = Ferry {
            child: None,
            dir,
            s3: String::new(),
            admin: String::new(),
            extra_args,
            wrapper,
            listen: format!("127.0.0.1:{}", port.unwrap_or(0)),
        };
        f.restart();
        f
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The built-in local store's root.
    pub fn local_root(&self) -> PathBuf {
        self.data().join("stores/local")
    }

    /// Starts (again) on the same data directory and waits until it serves.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let data = self.data();
        let _ = std::fs::remove_file(data.join("serve.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("serve.log"))
            .expect("log");
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(ferry_bin());
                c
            }
            None => Command::new(ferry_bin()),
        };
        let child = cmd
            .args([
                "serve",
                "--listen",
                &self.listen,
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .arg("--data")
            .arg(&data)
            .args(&self.extra_args)
            .env("FERRY_ACCESS_KEY", ACCESS_KEY)
            .env("FERRY_SECRET_KEY", SECRET_KEY)
            .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ferry serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(data.join("serve.json"))
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
            {
                self.s3 = v["s3"].as_str().unwrap_or_default().to_owned();
                self.admin = v["admin"].as_str().unwrap_or_default().to_owned();
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("ferry serve exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "ferry serve did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Like [`ok`], but a failure also shows the end of the server log, which is where a
    /// gateway error explains itself.
    #[track_caller]
    pub fn ok(&self, out: &Output) -> String {
        if !out.status.success() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "server log (last 40 lines):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        ok(out)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a PUT of `path` whose client trickles its body and never finishes (it stays
    /// in flight until the server answers); returns once its first bytes are out, with the
    /// lines the client prints after that (the server's answer).
    pub fn stalled_put(
        &self,
        path: &str,
    ) -> (
        Child,
        std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    ) {
        self.stalled_put_landing(path, self)
    }

    /// [`Ferry::stalled_put`] for a bucket whose writes land on `lands`'s local store (a
    /// remote one).
    pub fn stalled_put_landing(
        &self,
        path: &str,
        lands: &Ferry,
    ) -> (
        Child,
        std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    ) {
        use std::io::BufRead;
        let before = lands.temp_files();
        let mut cmd = Command::new(venv_bin("python"));
        cmd.arg(repo().join("tests/it/py/stalled_put.py"))
            .arg(path)
            .stdout(Stdio::piped());
        self.client_env(&mut cmd);
        let mut child = cmd.spawn().expect("spawn stalled_put.py");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = lines.next().and_then(|l| l.ok());
        assert_eq!(
            first.as_deref(),
            Some("sending"),
            "the stalled upload did not start"
        );
        // "sending" says the bytes left the client, not that the server took the request:
        // a signal or a role change sent before then finds nothing in flight. The upload is
        // in flight once the local store holds a new temporary file for it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while lands.temp_files().difference(&before).next().is_none() {
            assert!(
                Instant::now() < deadline,
                "the stalled upload never reached the store:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (child, lines)
    }

    /// The local store's temporary files (uploads in flight).
    fn temp_files(&self) -> std::collections::BTreeSet<PathBuf> {
        let tmp = self.local_root().join(".ferry/tmp");
        let shards = std::fs::read_dir(tmp).into_iter().flatten().flatten();
        shards
            .flat_map(|s| std::fs::read_dir(s.path()).into_iter().flatten().flatten())
            .map(|e| e.path())
            .collect()
    }

    /// Sends the server a signal (`TERM`, `INT`).
    pub fn signal(&self, sig: &str) {
        let pid = self.pid().expect("running");
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status();
    }

    /// Waits up to `within` for the server to exit; its status if it did.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().expect("wait")
    }

    /// Environment for S3 clients talking to this server.
    pub fn client_env(&self, cmd: &mut Command) {
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_REGION", "us-east-1")
            .env("FERRY_ENDPOINT", &self.s3)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true");
    }

    /// Runs a Python script from `tests/it/py/` with the venv's interpreter.
    pub fn python(&self, script: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(venv_bin("python"));
        cmd.arg(repo().join("tests/it/py").join(script)).args(args);
        self.client_env(&mut cmd);
        cmd.output().expect("run python")
    }

    /// Runs awscli against this server.
    pub fn aws(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(venv_bin("aws"));
        cmd.arg("--endpoint-url").arg(&self.s3).args(args);
        self.client_env(&mut cmd);
        cmd.output().expect("run aws")
    }

    /// Runs `ferry` (an admin command) against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    /// Like [`Self::cli`], with extra environment variables.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(ferry_bin())
            .arg("--server")
            .arg(&self.admin)
            .args(args)
            .env("FERRY_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(env.iter().copied())
            .output()
            .expect("run ferry")
    }

    /// Registers `other` (another Ferry) as an s3 store named `name` on this server.
    pub fn add_remote(&self, name: &str, other: &Ferry) {
        self.add_s3_store(name, &other.s3, ACCESS_KEY, SECRET_KEY);
    }

    /// Registers an S3 endpoint as an s3 store named `name` on this server.
    pub fn add_s3_store(&self, name: &str, endpoint: &str, ak: &str, sk: &str) {
        self.add_s3_store_with(name, endpoint, (ak, sk), "when-required");
    }

    /// [`Self::add_s3_store`] with a checksum mode (`when-required` or `when-supported`).
    pub fn add_s3_store_with(
        &self,
        name: &str,
        endpoint: &str,
        (ak, sk): (&str, &str),
        mode: &str,
    ) {
        self.ok(&self.cli_env(
            &[
                "store",
                "add",
                name,
                "--kind",
                "s3",
                "--endpoint",
                endpoint,
                "--path-style",
                "--access-key-env",
                "T_AK",
                "--secret-key-env",
                "T_SK",
                "--checksum-mode",
                mode,
            ],
            &[("T_AK", ak), ("T_SK", sk)],
        ));
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Asserts a command succeeded, showing its output otherwise.
#[track_caller]
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn write_file(path: &Path, len: usize, seed: u64) {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.truncate(len);
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(path, buf).expect("write");
}

/// A `moto_server` on a free port, killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto_server exited with {status}");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("moto_server did not accept connections on port {port} within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Moto {
    /// Runs `code` in Python with `c` a boto3 client of this server (its seeding, or a look
    /// at what a job left there) and returns what it printed; panics if it failed.
    pub fn boto(&self, code: &str) -> String {
        let py = format!(
            "import boto3; c=boto3.client('s3',endpoint_url='{}',aws_access_key_id='testing',\
             aws_secret_access_key='testing',region_name='us-east-1'); {code}",
            self.endpoint
        );
        ok(&Command::new(venv_bin("python"))
            .args(["-c", &py])
            .output()
            .expect("python"))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Proxy {
    child: Child,
    pub endpoint: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tests/it/py/fault_proxy.py` in front of `upstream`: it fails a share `rate` of
/// the requests, counting into `stats`; `flags` are the proxy's own (`--corrupt-first N`,
/// `--kms`).
pub fn fault_proxy(upstream: &str, rate: &str, stats: &Path, flags: &[&str]) -> Proxy {
    let mut child = Command::new(venv_bin("python"))
        .arg(repo().join("tests/it/py/fault_proxy.py"))
        .args([upstream, rate, "7"])
        .arg(stats)
        .args(flags)
        .stdout(Stdio::piped())
        .spawn()
        .expect("proxy");
    let port = printed_port(&mut child);
    Proxy {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

/// The port a helper script prints on its first line of stdout once it listens.
pub fn printed_port(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("port");
    line.trim().to_owned()
}

/// `chattr +i` / `-i` on `path`: root is refused moves in an immutable folder and of an
/// immutable file, as another user is by permissions, so tests running as root can stand
/// for a tree Ferry may not change.
pub fn immutable(path: &Path, on: bool) {
    let out = Command::new("chattr")
        .arg(if on { "+i" } else { "-i" })
        .arg(path)
        .output()
        .expect("chattr");
    assert!(out.status.success(), "chattr: {out:?}");
}

/// PostgreSQL's own psql (Debian's `psql` wrapper picks a cluster from its environment and
/// can ignore the URL under a test harness).
pub fn psql() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| PathBuf::from("psql"))
}

/// A fresh PostgreSQL database for one test (so no other test's jobs are in it).
pub fn fresh_pg_database() -> String {
    let url = std::env::var("FERRY_TEST_PG_URL")
        .expect("FERRY_TEST_PG_URL is not set: run ./scripts/test, which starts PostgreSQL");
    let name = format!(
        "ferry_mig_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    ok(&Command::new(psql())
        .args(["-d", &url, "-q", "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql"));
    match url.rfind('/') {
        Some(i) => format!("{}/{name}", &url[..i]),
        None => panic!("unexpected URL {url}"),
    }
}
