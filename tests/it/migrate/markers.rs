//! Folder markers (keys ending in `/`) copied into a directory: an empty one is the folder;
//! one with content has no place there and is refused by name, in the dry run and the run,
//! instead of being kept out of sight in the directory's index.

use super::{MOTO_KEY, Migrator, dry_with_dead_letters, stderr};
use crate::support::{Ferry, Moto, ok};

/// A moto bucket filled by `fill` (Python with a boto3 client `c`), copied into the
/// directory `out/BUCKET` by `run` (`--dry-run` with `dry`).
struct IntoDir {
    tmp: tempfile::TempDir,
    moto: Moto,
    m: Migrator,
    bucket: &'static str,
}

impl IntoDir {
    fn new(bucket: &'static str, fill: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let moto = Moto::start();
        moto.boto(&format!("c.create_bucket(Bucket='{bucket}'); {fill}"));
        let m = Migrator::new(tmp.path()).creds("SRC", MOTO_KEY, MOTO_KEY);
        Self {
            tmp,
            moto,
            m,
            bucket,
        }
    }

    fn dir(&self) -> std::path::PathBuf {
        self.tmp.path().join("out").join(self.bucket)
    }

    fn run(&self, extra: &[&str]) -> std::process::Output {
        let (src, dir) = (format!("s3://{}", self.bucket), self.dir());
        let mut args = vec![
            "migrate",
            &src,
            dir.to_str().expect("utf-8"),
            "--src-endpoint",
            &self.moto.endpoint,
        ];
        args.extend_from_slice(extra);
        self.m.run(&args)
    }

    /// A dry run that finds keys it cannot copy (exit 1).
    fn dry(&self) -> String {
        dry_with_dead_letters(&self.run(&["--dry-run"]))
    }

    /// A dry run that finds none.
    fn clean_dry(&self) -> String {
        ok(&self.run(&["--dry-run"]))
    }
}

/// A folder marker with bytes (`reports/` holding 9 bytes) was reported copied and verified
/// into a directory, its bytes kept only in the index beside it (`.ferry/blobs/`): a copy
/// of the directory lost them, and a user who deleted the source after `--verify` lost them
/// for good. It is a dead letter now (rclone refuses it too). And an empty marker whose
/// folder the directory has was listed by every dry run as one to copy.
#[test]
fn a_folder_marker_with_content_is_not_copied_into_a_directory() {
    let t = IntoDir::new(
        "marks",
        "[c.put_object(Bucket='marks',Key=k,Body=b) for k, b in [('reports/',b'IMPORTANT'),('reports/a.txt',b'a'),('photos/',b''),('photos/x.jpg',b'x')]]",
    );
    let (m, dir) = (&t.m, t.dir());
    let out = t.dry();
    assert!(out.contains("cannot copy \"reports/\""), "{out}");
    assert!(out.contains("folder marker with content"), "{out}");

    let out = t.run(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("could not copy reports/"), "{err}");
    assert!(err.contains("1 object could not be copied"), "{err}");
    assert_eq!(
        std::fs::read(dir.join("reports/a.txt")).expect("a.txt"),
        b"a"
    );
    assert_eq!(
        std::fs::read(dir.join("photos/x.jpg")).expect("x.jpg"),
        b"x"
    );
    let dead = ok(&m.run(&["job", "dead", "1"]));
    assert!(dead.contains("reports/"), "{dead}");

    // The dry run after it: the refused marker still cannot be copied, and the empty one,
    // whose folder is there, is not one to copy.
    let out = t.dry();
    assert!(out.contains("cannot copy \"reports/\""), "{out}");
    assert!(!out.contains("photos/ "), "{out}");
    assert!(out.contains("dry run: 0 objects"), "{out}");
}

/// A source with a key `p` and keys under `p/` cannot be copied whole into a directory: the
/// run copies one and makes the other a dead letter (exit 1), and its dry run, which said
/// "would copy" of both and exited 0, now names the one in the way and exits 1 as well.
#[test]
fn a_dry_run_into_a_directory_names_a_file_in_the_way_of_a_folder() {
    let t = IntoDir::new(
        "clash",
        "[c.put_object(Bucket='clash',Key=k,Body=b'x') for k in ['p','p.txt','p/x','q']]",
    );
    let dir = t.dir();
    let out = t.dry();
    assert!(out.contains("cannot copy \"p/x\""), "{out}");
    assert!(
        out.contains("would copy p.txt") && out.contains("would copy q"),
        "{out}"
    );
    let out = t.run(&[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("1 object could not be copied"), "{err}");
    assert!(dir.join("p.txt").is_file() && dir.join("q").is_file());
    // The dry run after it still names the one the run left (the other is there now, so
    // not one to copy).
    let out = t.dry();
    assert!(out.contains("cannot copy \""), "{out}");
    assert!(out.contains("dry run: 0 objects"), "{out}");
}

/// A directory whose index already holds a folder marker with content (copied there by an
/// earlier version, or through the fs store the folder belongs to) passed the run as
/// unchanged and `--verify` vouched for bytes no file holds: the key is refused all the
/// same.
#[test]
fn a_marker_with_content_already_in_the_directory_index_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let moto = Moto::start();
    moto.boto(
        "c.create_bucket(Bucket='held'); [c.put_object(Bucket='held',Key=k,Body=b) for k, b in [('reports/',b'IMPORTANT'),('reports/a.txt',b'a')]]",
    );
    // Copied first into a server's fs store (whose buckets S3 clients read, so the marker's
    // bytes go to its index, dated as the source's), then into its folder as a directory.
    let mut f = Ferry::start();
    let dir = f.local_root().join("held");
    f.stop();
    let registered = Migrator {
        data: f.data(),
        env: Vec::new(),
    }
    .creds("SRC", MOTO_KEY, MOTO_KEY);
    ok(&registered.run(&[
        "migrate",
        "s3://held",
        "local:held",
        "--src-endpoint",
        &moto.endpoint,
    ]));
    let m = Migrator::new(tmp.path()).creds("SRC", MOTO_KEY, MOTO_KEY);
    let run = [
        "migrate",
        "s3://held",
        dir.to_str().expect("utf-8"),
        "--src-endpoint",
        &moto.endpoint,
        "--verify",
    ];
    let out = m.run(&run);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("could not copy reports/"), "{err}");
    assert!(!err.contains("no differences"), "{err}");
    let mut dry = run[..5].to_vec();
    dry.push("--dry-run");
    let out = dry_with_dead_letters(&m.run(&dry));
    assert!(out.contains("cannot copy \"reports/\""), "{out}");
}

/// An empty folder marker alone (`empty/`, `deep/er/`: a folder made in a console) copied
/// into a directory was kept in the index only: no folder appeared, and every dry run after
/// the copy listed it as one to copy. Its folder is made now (not where a file of its name
/// is: `p/` beside `p` stays in the index), made again by the next run if removed by hand,
/// and removed with the marker by `--delete` when nothing is in it.
#[test]
fn an_empty_folder_marker_alone_is_a_folder_in_the_directory() {
    let t = IntoDir::new(
        "lone",
        "[c.put_object(Bucket='lone',Key=k,Body=b) for k, b in [('empty/',b''),('deep/er/',b''),('p',b'x'),('p/',b'')]]",
    );
    let dir = t.dir();
    ok(&t.run(&[]));
    assert!(dir.join("empty").is_dir() && dir.join("deep/er").is_dir());
    assert_eq!(std::fs::read(dir.join("p")).expect("p"), b"x");
    let out = t.clean_dry();
    assert!(out.contains("dry run: 0 objects"), "{out}");
    assert!(out.contains("4 unchanged"), "{out}");

    std::fs::remove_dir(dir.join("empty")).expect("rmdir");
    let out = t.clean_dry();
    assert!(out.contains("would copy empty/"), "{out}");
    ok(&t.run(&[]));
    assert!(dir.join("empty").is_dir());

    t.moto
        .boto("c.delete_object(Bucket='lone',Key='empty/'); c.delete_object(Bucket='lone',Key='deep/er/')");
    ok(&t.run(&["--delete"]));
    assert!(!dir.join("empty").exists() && !dir.join("deep/er").exists());
    assert!(dir.join("p").is_file());
    let out = t.clean_dry();
    assert!(out.contains("dry run: 0 objects"), "{out}");
}
