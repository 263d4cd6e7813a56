//! `ferry migrate` (issue 5) with real servers: Ferry's own endpoint, `moto_server` and local
//! directories in every direction; kill -9 at random points; pause and resume; a destination
//! that fails a fifth of its requests; dead letters; bad input; three workers sharing a job
//! on PostgreSQL.

mod changing;
mod checksum;
mod control;
mod crc;
mod deletes;
mod detach;
mod dir;
mod faults;
mod fence;
mod filters;
mod integrity;
mod markers;
mod nesting;
mod outage;
mod resume;
mod sides;
mod times;
mod untouched;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    ACCESS_KEY, Ferry, Moto, SECRET_KEY, fault_proxy, ferry_bin, fresh_pg_database, ok, write_file,
};

/// Moto accepts any credentials; these are what the tests give it.
const MOTO_KEY: &str = "testing";

/// A `ferry migrate`-side command line with its own data directory.
struct Migrator {
    data: PathBuf,
    env: Vec<(String, String)>,
}

impl Migrator {
    fn new(dir: &Path) -> Self {
        Self {
            data: dir.join("mdata"),
            env: Vec::new(),
        }
    }

    /// Credentials for an inline s3:// side (`SRC` or `DST`).
    fn creds(mut self, side: &str, ak: &str, sk: &str) -> Self {
        self.env
            .push((format!("FERRY_{side}_ACCESS_KEY"), ak.into()));
        self.env
            .push((format!("FERRY_{side}_SECRET_KEY"), sk.into()));
        self
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(ferry_bin());
        c.arg("--data")
            .arg(&self.data)
            .args(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run ferry")
    }

    fn spawn(&self, args: &[&str], log: &Path) -> Child {
        let log = std::fs::File::create(log).expect("log");
        self.cmd(args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn ferry")
    }

    fn job(&self, id: i64) -> Value {
        let out = ok(&self.run(&["job", "show", &id.to_string(), "--json"]));
        serde_json::from_str(&out).expect("job json")
    }
}

/// A migration from one directory to another (`src` and `dst` are the buckets' folders),
/// with default options but for the part size and the multipart threshold.
fn dir_spec(
    src: &Path,
    dst: &Path,
    part_size: u64,
    threshold: u64,
) -> ferry::jobs::spec::MigrateSpec {
    use ferry::jobs::spec::{Endpoint, MigrateSpec, Options};
    MigrateSpec {
        src: Endpoint::Dir {
            path: src.to_path_buf(),
            machine: Some(ferry::jobs::spec::this_machine()),
        },
        dst: Endpoint::Dir {
            path: dst.to_path_buf(),
            machine: Some(ferry::jobs::spec::this_machine()),
        },
        options: Options {
            include: Vec::new(),
            exclude: Vec::new(),
            newer_than_ms: None,
            older_than_ms: None,
            checksum: false,
            delete: false,
            part_size,
            multipart_threshold: threshold,
            max_attempts: 3,
        },
    }
}

/// A dry run that names keys which would be dead letters: it exits 1 as the run would,
/// saying so; its listing (stdout).
#[track_caller]
fn dry_with_dead_letters(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("would go to the dead-letter list"), "{err}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Makes bucket `bucket` on `f` and uploads the tree at `src` into it with awscli.
fn upload_tree(f: &Ferry, bucket: &str, src: &Path) {
    ok(&f.aws(&["s3", "mb", &format!("s3://{bucket}")]));
    ok(&f.aws(&[
        "s3",
        "cp",
        "--recursive",
        "--quiet",
        src.to_str().unwrap_or_default(),
        &format!("s3://{bucket}/"),
    ]));
}

/// A source tree: `n` small files of varied sizes, a few in folders, and `big` files of the
/// given sizes.
fn make_tree(root: &Path, n: usize, big: &[usize]) {
    for i in 0..n {
        let key = if i % 5 == 0 {
            format!("dir{}/f{i:05}", i % 3)
        } else {
            format!("f{i:05}")
        };
        write_file(&root.join(key), 100 + (i * 37) % 5000, i as u64);
    }
    for (i, size) in big.iter().enumerate() {
        write_file(&root.join(format!("big/b{i}")), *size, 1000 + i as u64);
    }
}

/// Every file under `a` is under `b` with the same bytes, and the other way round.
#[track_caller]
fn assert_same_tree(a: &Path, b: &Path) {
    let out = Command::new("diff")
        .args(["-r", "--exclude=.ferry"])
        .arg(a)
        .arg(b)
        .output()
        .expect("diff");
    assert!(
        out.status.success(),
        "trees differ:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A Prometheus counter's value summed over the series whose labels contain `labels`.
fn counter(f: &Ferry, name: &str, labels: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-s", &format!("{}/metrics", f.admin)])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn mib(n: usize) -> usize {
    n << 20
}

/// Writes `body` over `path` and puts its modification time back: the same size (when
/// `body` has it), the same mtime, other bytes (an edit size and time cannot show).
fn edit_keeping_time(path: &Path, body: &[u8]) {
    let when = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime");
    std::fs::write(path, body).expect("edit");
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|h| h.set_modified(when))
        .expect("put the time back");
}

/// A small xorshift generator (the tests print their seed, so a failure can be replayed).
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = std::env::var("FERRY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("seed {seed} (FERRY_TEST_SEED to replay)");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn kill9(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Waits for a child with a deadline; returns its exit status.
fn wait_for(child: &mut Child, limit: Duration, log: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if Instant::now() > deadline {
            kill9(child);
            panic!(
                "ferry did not finish in {limit:?}:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A call to the admin API: (status, body).
fn admin(f: &Ferry, method: &str, path: &str, token: &str) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-X", method, "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("{}{path}", f.admin))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}
