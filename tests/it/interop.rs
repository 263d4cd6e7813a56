//! Interop: real clients (awscli, rclone, s3cmd, minio-py) drive a running `ferry serve` the way
//! users do, and every result is checked against the bytes, names and sizes that went in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use md5::{Digest, Md5};

use crate::support::{ACCESS_KEY, Ferry, SECRET_KEY, venv_bin, write_file};

/// Both byte streams of a command, for tools (rclone) that report on stderr.
fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[track_caller]
fn assert_same_file(a: &Path, b: &Path) {
    let x = std::fs::read(a).expect("read first file");
    let y = std::fs::read(b).expect("read second file");
    assert_eq!(
        x.len(),
        y.len(),
        "{} and {} differ in size",
        a.display(),
        b.display()
    );
    assert!(
        x == y,
        "{} and {} differ in content",
        a.display(),
        b.display()
    );
}

/// The ETag S3 gives a multipart upload of `path` cut into `part` byte parts: the MD5 of the
/// parts' MD5s, then `-` and the part count.
fn multipart_etag(path: &Path, part: usize) -> String {
    let data = std::fs::read(path).expect("read");
    let mut all = Md5::new();
    let mut n = 0;
    for chunk in data.chunks(part) {
        all.update(Md5::digest(chunk));
        n += 1;
    }
    format!("{}-{n}", hex::encode(all.finalize()))
}

/// `aws s3api head-object` as JSON.
fn head_object(f: &Ferry, bucket: &str, key: &str) -> serde_json::Value {
    let out = f.ok(&f.aws(&["s3api", "head-object", "--bucket", bucket, "--key", key]));
    serde_json::from_str(&out).expect("head-object prints JSON")
}

fn etag(head: &serde_json::Value) -> String {
    head["ETag"]
        .as_str()
        .expect("ETag in head-object")
        .trim_matches('"')
        .to_owned()
}

const MIB: usize = 1024 * 1024;

#[test]
fn awscli_tour() {
    let f = Ferry::start();
    let d = f.dir.path();
    let small = d.join("holiday.jpg");
    std::fs::write(&small, b"not really a jpeg\n").expect("write");
    let big = d.join("big.bin");
    write_file(&big, 100 * MIB, 7);
    let odd = d.join("odd name.txt");
    std::fs::write(&odd, "é ü 漢字\n").expect("write");

    f.ok(&f.aws(&["s3", "mb", "s3://photos"]));
    let buckets = f.ok(&f.aws(&["s3", "ls"]));
    assert!(
        buckets.lines().any(|l| l.ends_with(" photos")),
        "new bucket listed: {buckets}"
    );
    // A second `mb` of the same bucket is an error, not a silent success.
    let again = f.aws(&["s3", "mb", "s3://photos"]);
    assert!(
        !again.status.success(),
        "mb of an existing bucket succeeded"
    );
    assert!(
        all_output(&again).contains("BucketAlreadyOwnedByYou"),
        "{}",
        all_output(&again)
    );

    f.ok(&f.aws(&[
        "s3",
        "cp",
        "--only-show-errors",
        &s(&small),
        "s3://photos/2026/holiday.jpg",
    ]));
    f.ok(&f.aws(&[
        "s3",
        "cp",
        "--only-show-errors",
        &s(&odd),
        "s3://photos/2026/é ü 漢字.txt",
    ]));
    f.ok(&f.aws(&[
        "s3",
        "cp",
        "--only-show-errors",
        &s(&big),
        "s3://photos/big.bin",
    ]));

    // awscli cuts at 8 MiB: 100 MiB is 13 parts, and the ETag says so.
    let head = head_object(&f, "photos", "big.bin");
    assert_eq!(
        head["ContentLength"].as_u64(),
        Some(100 * MIB as u64),
        "{head}"
    );
    assert_eq!(etag(&head), multipart_etag(&big, 8 * MIB), "{head}");
    let head = head_object(&f, "photos", "2026/holiday.jpg");
    assert_eq!(
        etag(&head),
        hex::encode(Md5::digest(b"not really a jpeg\n")),
        "single-part ETag is the MD5: {head}"
    );

    let top = f.ok(&f.aws(&["s3", "ls", "s3://photos/"]));
    let top: Vec<&str> = top.lines().collect();
    assert_eq!(top.len(), 2, "one prefix and one object: {top:?}");
    assert!(top.iter().any(|l| l.trim() == "PRE 2026/"), "{top:?}");
    assert!(
        top.iter().any(|l| l.ends_with(" 104857600 big.bin")),
        "{top:?}"
    );
    let sub = f.ok(&f.aws(&["s3", "ls", "s3://photos/2026/"]));
    assert_eq!(sub.lines().count(), 2, "{sub}");

    let all = f.ok(&f.aws(&["s3", "ls", "--recursive", "s3://photos"]));
    let mut listed: Vec<(u64, String)> = all
        .lines()
        .map(|l| {
            // "2026-01-01 00:00:00       SIZE KEY" (the key may contain spaces)
            let rest = l.splitn(3, ' ').nth(2).expect("ls line").trim_start();
            let (size, key) = rest.split_once(' ').expect("size and key");
            (size.parse().expect("size"), key.to_owned())
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            (
                std::fs::metadata(&odd).expect("stat").len(),
                "2026/é ü 漢字.txt".to_owned(),
            ),
            (18, "2026/holiday.jpg".to_owned()),
            (100 * MIB as u64, "big.bin".to_owned()),
        ],
        "{all}"
    );

    // Download and compare the bytes.
    for (key, local) in [
        ("big.bin", &big),
        ("2026/holiday.jpg", &small),
        ("2026/é ü 漢字.txt", &odd),
    ] {
        let back = d.join("back.bin");
        f.ok(&f.aws(&[
            "s3",
            "cp",
            "--only-show-errors",
            &format!("s3://photos/{key}"),
            &s(&back),
        ]));
        assert_same_file(&back, local);
        std::fs::remove_file(&back).expect("rm");
    }
    // The objects are plain files in the store.
    assert_same_file(&f.local_root().join("photos/2026/holiday.jpg"), &small);

    // rb refuses a bucket that still has objects.
    let rb = f.aws(&["s3", "rb", "s3://photos"]);
    assert!(!rb.status.success(), "rb of a non-empty bucket succeeded");
    assert!(
        all_output(&rb).contains("BucketNotEmpty"),
        "{}",
        all_output(&rb)
    );

    f.ok(&f.aws(&["s3", "rm", "s3://photos/2026/holiday.jpg"]));
    let all = f.ok(&f.aws(&["s3", "ls", "--recursive", "s3://photos"]));
    assert_eq!(all.lines().count(), 2, "{all}");
    assert!(!all.contains("holiday.jpg"), "{all}");
    let gone = f.aws(&["s3", "cp", "s3://photos/2026/holiday.jpg", &s(&d.join("x"))]);
    assert!(!gone.status.success(), "a removed object was downloaded");
    assert!(all_output(&gone).contains("404"), "{}", all_output(&gone));

    f.ok(&f.aws(&["s3", "rm", "--recursive", "s3://photos/"]));
    let all = f.ok(&f.aws(&["s3", "ls", "--recursive", "s3://photos"]));
    assert_eq!(all, "", "bucket emptied");
    f.ok(&f.aws(&["s3", "rb", "s3://photos"]));
    let buckets = f.ok(&f.aws(&["s3", "ls"]));
    assert!(!buckets.contains("photos"), "{buckets}");
    let ls = f.aws(&["s3", "ls", "s3://photos"]);
    assert!(!ls.status.success(), "ls of a removed bucket succeeded");
    assert!(
        all_output(&ls).contains("NoSuchBucket"),
        "{}",
        all_output(&ls)
    );
}

/// Listings gave times to the millisecond, HEAD to the second (as HTTP dates do); awscli
/// dates a downloaded file from the listing in whole seconds, so `s3 sync --exact-timestamps`
/// found every copy different and downloaded the whole bucket again on every run. AWS lists
/// whole seconds.
#[test]
fn awscli_exact_timestamps_sync_downloads_once() {
    let f = Ferry::start();
    let d = f.dir.path();
    f.ok(&f.aws(&["s3", "mb", "s3://exact"]));
    for i in 0..5 {
        let file = d.join(format!("f{i}"));
        std::fs::write(&file, format!("file {i}\n")).expect("write");
        f.ok(&f.aws(&["s3", "cp", &s(&file), &format!("s3://exact/f{i}")]));
        std::thread::sleep(std::time::Duration::from_millis(37));
    }
    let listing = f.ok(&f.aws(&["s3api", "list-objects-v2", "--bucket", "exact"]));
    let listing: serde_json::Value = serde_json::from_str(&listing).expect("json");
    for o in listing["Contents"].as_array().expect("contents") {
        let t = o["LastModified"].as_str().unwrap_or_default();
        assert!(
            t.ends_with(".000Z") || !t.contains('.'),
            "a listed time with a fraction: {t}"
        );
    }
    let down = d.join("down");
    let sync = || {
        let out = f.ok(&f.aws(&[
            "s3",
            "sync",
            "--exact-timestamps",
            "--no-progress",
            "s3://exact",
            &s(&down),
        ]));
        out.lines().filter(|l| l.starts_with("download")).count()
    };
    assert_eq!(sync(), 5);
    assert_eq!(sync(), 0, "a second sync downloaded again");
}

pub(crate) fn rclone(f: &Ferry, args: &[&str]) -> Output {
    Command::new("rclone")
        .args(["--config", "/dev/null"])
        // A CA bundle inherited from the environment breaks rclone over plain http.
        .env_remove("AWS_CA_BUNDLE")
        .env("RCLONE_CONFIG_FERRY_TYPE", "s3")
        .env("RCLONE_CONFIG_FERRY_PROVIDER", "Other")
        .env("RCLONE_CONFIG_FERRY_ACCESS_KEY_ID", ACCESS_KEY)
        .env("RCLONE_CONFIG_FERRY_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RCLONE_CONFIG_FERRY_ENDPOINT", &f.s3)
        .env("RCLONE_CONFIG_FERRY_REGION", "us-east-1")
        .args(args)
        .output()
        .expect("run rclone")
}

/// Every file under `root` as its `/`-separated relative path and size.
fn local_tree(root: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("dir entry");
            let p = e.path();
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).expect("under root");
                out.insert(rel.to_str().expect("UTF-8 name").to_owned(), meta.len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// `rclone lsf -R` of a remote as relative path → size.
fn remote_tree(f: &Ferry, remote: &str) -> BTreeMap<String, u64> {
    let out = f.ok(&rclone(
        f,
        &[
            "lsf",
            "-R",
            "--files-only",
            "--format",
            "ps",
            "--separator",
            "\t",
            remote,
        ],
    ));
    let mut tree = BTreeMap::new();
    for line in out.lines() {
        let (path, size) = line.rsplit_once('\t').expect("path\\tsize");
        let prev = tree.insert(path.to_owned(), size.parse().expect("size"));
        assert!(prev.is_none(), "{path} listed twice");
    }
    tree
}

/// `rclone check` must succeed and say it found no differences and every file matching,
/// with every hash actually compared.
#[track_caller]
fn rclone_check(f: &Ferry, src: &str, remote: &str, files: usize) {
    let out = rclone(f, &["check", "--checkers", "8", src, remote]);
    let text = all_output(&out);
    f.ok(&out);
    assert!(text.contains(": 0 differences found"), "{text}");
    assert!(
        text.contains(&format!(": {files} matching files")),
        "{text}"
    );
    assert!(!text.contains("hashes could not be checked"), "{text}");
}

/// A same-size edit made on the store's disk kept the object's user metadata, rclone's
/// `mtime` among it: `rclone sync` from Ferry took the edited file for the copy it already
/// had and kept the old bytes, saying nothing. The metadata described the old bytes.
#[test]
fn rclone_sees_a_file_edited_on_the_stores_disk() {
    let f = Ferry::start();
    let src = f.dir.path().join("src");
    let copy = f.dir.path().join("copy");
    std::fs::create_dir_all(&src).expect("dir");
    std::fs::write(src.join("a.txt"), "version-1\n").expect("write");
    // Uploaded in parts (its ETag is no MD5; rclone keeps the MD5 in `md5chksum`).
    write_file(&src.join("big.bin"), 12 * MIB, 9);
    let parts = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"];
    f.ok(&rclone(&f, &["mkdir", "ferry:edited"]));
    let from = s(&src);
    let up = [&["copy", from.as_str(), "ferry:edited"][..], &parts[..]].concat();
    f.ok(&rclone(&f, &up));
    f.ok(&rclone(&f, &["copy", "ferry:edited", &s(&copy)]));
    // A second later (rclone's times are exact), same size, in place.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(f.local_root().join("edited/a.txt"), "version-2\n").expect("edit");
    {
        use std::os::unix::fs::FileExt;
        let big = std::fs::OpenOptions::new()
            .write(true)
            .open(f.local_root().join("edited/big.bin"))
            .expect("open big");
        big.write_all_at(b"EDIT", 6 * MIB as u64).expect("edit big");
    }
    f.ok(&rclone(&f, &["sync", "ferry:edited", &s(&copy)]));
    assert_eq!(
        std::fs::read_to_string(copy.join("a.txt")).expect("read"),
        "version-2\n",
        "rclone sync kept the old bytes"
    );
    assert_same_file(
        &f.local_root().join("edited/big.bin"),
        &copy.join("big.bin"),
    );
}

#[test]
fn rclone_tree() {
    let f = Ferry::start();
    let src = f.dir.path().join("tree");
    let dir_names = [
        "plain",
        "with space",
        "é ü 漢字",
        "Ünïcödé ñ",
        "ship 🚢",
        "a+b=c&d",
        "percent%41",
        "dots.and-dashes_",
    ];
    let file_names = [
        "file",
        "two  spaces",
        "é ü 漢字",
        "日本語 テスト",
        "plus+sign",
        "question?mark",
        "hash#tag",
        "(parens) [brackets]",
        "Ελληνικά",
        "tilde~",
    ];
    let mut n = 0;
    for d in 0..20 {
        // Twenty directories, every fourth one nested in the one before it.
        let dir = format!("{d:02} {}", dir_names[d % dir_names.len()]);
        let dir: PathBuf = if d % 4 == 3 {
            src.join(format!(
                "{:02} {}",
                d - 1,
                dir_names[(d - 1) % dir_names.len()]
            ))
            .join(dir)
        } else {
            src.join(dir)
        };
        for i in 0..50 {
            let seq = d * 50 + i;
            let name = format!("{} {i:03}.txt", file_names[seq % file_names.len()]);
            // Sizes from 0 to ~12 KiB.
            let len = if seq % 97 == 0 {
                0
            } else {
                (seq * 7919) % 12_000
            };
            write_file(&dir.join(name), len, seq as u64);
            n += 1;
        }
    }
    write_file(&src.join("big/200mib.bin"), 200 * MIB, 99);
    n += 1;
    let local = local_tree(&src);
    assert_eq!(local.len(), 1001, "test tree built");
    let sd = s(&src);

    f.ok(&rclone(&f, &["mkdir", "ferry:tree"]));
    f.ok(&rclone(
        &f,
        &[
            "copy",
            "--transfers",
            "8",
            "--checkers",
            "8",
            &sd,
            "ferry:tree",
        ],
    ));
    rclone_check(&f, &sd, "ferry:tree", n);
    assert_eq!(remote_tree(&f, "ferry:tree"), local, "remote listing");
    // rclone's default cutoff sends 200 MiB multipart.
    let head = head_object(&f, "tree", "big/200mib.bin");
    assert!(etag(&head).contains('-'), "multipart ETag expected: {head}");
    assert_eq!(head["ContentLength"].as_u64(), Some(200 * MIB as u64));

    // Change the source: modify (a new size; the same size with other bytes), delete (some
    // files, and a whole directory), add; then sync and check again.
    let whole_dir_name = format!("05 {}", dir_names[5]);
    let files: Vec<&String> = local
        .iter()
        .filter(|(p, len)| **len > 0 && !p.starts_with(&whole_dir_name) && !p.starts_with("big/"))
        .map(|(p, _)| p)
        .collect();
    let (modify_size, modify_same) = (files[10], files[500]);
    write_file(&src.join(modify_size), 4321, 1234);
    let same_len = usize::try_from(local[modify_same]).expect("size");
    write_file(&src.join(modify_same), same_len, 4242);
    for gone in [files[3], files[777]] {
        std::fs::remove_file(src.join(gone)).expect("rm");
    }
    let whole_dir = src.join(&whole_dir_name);
    assert!(whole_dir.is_dir(), "{}", whole_dir.display());
    std::fs::remove_dir_all(&whole_dir).expect("rm -r");
    write_file(&src.join("new dir/новый файл.txt"), 100, 5);
    write_file(&src.join("00 plain/added é.txt"), 2000, 6);
    let local = local_tree(&src);
    assert_eq!(local.len(), 1001 - 2 - 50 + 2, "changed tree");

    f.ok(&rclone(
        &f,
        &[
            "sync",
            "--transfers",
            "8",
            "--checkers",
            "8",
            &sd,
            "ferry:tree",
        ],
    ));
    rclone_check(&f, &sd, "ferry:tree", local.len());
    let remote = remote_tree(&f, "ferry:tree");
    assert_eq!(remote, local, "remote mirrors the changed tree");
    assert_eq!(remote[modify_size.as_str()], 4321);

    // The same-size modification really reached the server (not just its size).
    let back = f.dir.path().join("back.txt");
    f.ok(&rclone(
        &f,
        &["copyto", &format!("ferry:tree/{modify_same}"), &s(&back)],
    ));
    assert_same_file(&back, &src.join(modify_same));
}

#[test]
fn s3cmd_basic() {
    let f = Ferry::start();
    let d = f.dir.path();
    let host =
        f.s3.strip_prefix("http://")
            .expect("plain http endpoint")
            .trim_end_matches('/');
    let cfg = d.join("s3cfg");
    // No bucket_location: s3cmd's default, `US`, signs for a region no one has; Ferry names
    // its own in an AuthorizationHeaderMalformed, as S3 does, and s3cmd signs again.
    std::fs::write(
        &cfg,
        format!(
            "[default]\naccess_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\n\
             host_base = {host}\nhost_bucket = {host}\nuse_https = False\n\
             signature_v2 = False\n"
        ),
    )
    .expect("config");
    let s3cmd = |args: &[&str]| {
        Command::new(venv_bin("s3cmd"))
            .arg("-c")
            .arg(&cfg)
            .args(args)
            .output()
            .expect("run s3cmd")
    };
    let small = d.join("small.txt");
    write_file(&small, 1000, 3);
    let odd = d.join("odd.txt");
    write_file(&odd, 333, 8);
    // Over s3cmd's default 15 MiB chunk: a three-part multipart upload.
    let large = d.join("large.bin");
    write_file(&large, 40 * MIB, 4);

    f.ok(&s3cmd(&["mb", "s3://cmd"]));
    let buckets = f.ok(&s3cmd(&["ls"]));
    assert!(buckets.contains("s3://cmd"), "{buckets}");
    f.ok(&s3cmd(&["put", &s(&small), "s3://cmd/small.txt"]));
    f.ok(&s3cmd(&["put", &s(&odd), "s3://cmd/dir/é ü 漢字.txt"]));
    f.ok(&s3cmd(&["put", &s(&large), "s3://cmd/large.bin"]));
    // A public upload is refused at once as an S3 bucket with ACLs disabled refuses it (a
    // 501 had s3cmd retry five times, 45 s), and nothing is written.
    let public = s3cmd(&["put", "-P", &s(&small), "s3://cmd/public.txt"]);
    let said = all_output(&public);
    assert!(!public.status.success(), "{said}");
    assert!(said.contains("AccessControlListNotSupported"), "{said}");
    assert!(!said.contains("Retrying"), "{said}");
    // The ETag shows the three parts.
    assert_eq!(
        etag(&head_object(&f, "cmd", "large.bin")),
        multipart_etag(&large, 15 * MIB)
    );

    let ls = f.ok(&s3cmd(&["ls", "s3://cmd"]));
    let ls: Vec<&str> = ls.lines().collect();
    assert_eq!(ls.len(), 3, "{ls:?}");
    assert!(
        ls.iter().any(|l| l.trim().ends_with("DIR  s3://cmd/dir/")),
        "{ls:?}"
    );
    assert!(
        ls.iter().any(|l| l.ends_with(" s3://cmd/small.txt")),
        "{ls:?}"
    );
    assert!(
        ls.iter()
            .any(|l| l.contains(" 41943040 ") && l.ends_with(" s3://cmd/large.bin")),
        "{ls:?}"
    );
    let rec = f.ok(&s3cmd(&["ls", "--recursive", "s3://cmd"]));
    assert_eq!(rec.lines().count(), 3, "{rec}");
    assert!(rec.contains(" s3://cmd/dir/é ü 漢字.txt"), "{rec}");

    for (key, local) in [
        ("large.bin", &large),
        ("small.txt", &small),
        ("dir/é ü 漢字.txt", &odd),
    ] {
        let back = d.join("back");
        f.ok(&s3cmd(&[
            "get",
            "--force",
            &format!("s3://cmd/{key}"),
            &s(&back),
        ]));
        assert_same_file(&back, local);
    }

    f.ok(&s3cmd(&["del", "s3://cmd/small.txt"]));
    let rec = f.ok(&s3cmd(&["ls", "--recursive", "s3://cmd"]));
    assert_eq!(rec.lines().count(), 2, "{rec}");
    assert!(!rec.contains("small.txt"), "{rec}");
    let gone = s3cmd(&["get", "--force", "s3://cmd/small.txt", &s(&d.join("x"))]);
    assert!(!gone.status.success(), "a deleted object was downloaded");
    f.ok(&s3cmd(&["del", "--recursive", "--force", "s3://cmd/"]));
    let rec = f.ok(&s3cmd(&["ls", "--recursive", "s3://cmd"]));
    assert_eq!(rec, "", "bucket emptied");
    f.ok(&s3cmd(&["rb", "s3://cmd"]));
    let buckets = f.ok(&s3cmd(&["ls"]));
    assert!(!buckets.contains("s3://cmd"), "{buckets}");
}

#[test]
fn minio_py() {
    let f = Ferry::start();
    let out = f.python("minio_client.py", &[]);
    let stdout = f.ok(&out);
    assert!(stdout.trim_end().ends_with("OK"), "{stdout}");
}
