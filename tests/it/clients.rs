//! Real clients against a running `ferry serve`: the README tour with awscli, rclone over a
//! tree of 1,000 files with spaces and non-ASCII names plus a 200 MiB file, s3cmd, and
//! minio-py with presigned URLs.

use std::path::Path;
use std::process::Command;

use crate::support::{ACCESS_KEY, Ferry, SECRET_KEY, ok, write_file};

fn md5sum(p: &Path) -> String {
    let out = Command::new("md5sum").arg(p).output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn awscli_tour() {
    let f = Ferry::start();
    let d = f.dir.path();
    std::fs::write(d.join("holiday.jpg"), b"not really a jpeg\n").expect("write");
    write_file(&d.join("big.bin"), 100 * 1024 * 1024, 7);
    let s = |p: &str| d.join(p).to_string_lossy().into_owned();
    ok(&f.aws(&["s3", "mb", "s3://photos"]));
    ok(&f.aws(&[
        "s3",
        "cp",
        "--only-show-errors",
        &s("holiday.jpg"),
        "s3://photos/2026/holiday.jpg",
    ]));
    ok(&f.aws(&[
        "s3",
        "cp",
        "--only-show-errors",
        &s("big.bin"),
        "s3://photos/big.bin",
    ]));
    let head = ok(&f.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "photos",
        "--key",
        "big.bin",
    ]));
    assert!(
        head.contains("\"PartsCount\""),
        "a 100 MiB upload goes multipart: {head}"
    );
    let ls = ok(&f.aws(&["s3", "ls", "--recursive", "s3://photos"]));
    assert!(
        ls.contains("2026/holiday.jpg") && ls.contains("104857600 big.bin"),
        "{ls}"
    );
    let top = ok(&f.aws(&["s3", "ls", "s3://photos/"]));
    assert!(top.contains("PRE 2026/"), "{top}");
    ok(&f.aws(&[
        "s3",
        "cp",
        "--only-show-errors",
        "s3://photos/big.bin",
        &s("back.bin"),
    ]));
    assert_eq!(md5sum(&d.join("back.bin")), md5sum(&d.join("big.bin")));
    // The same objects, as plain files.
    let on_disk = f.local_root().join("photos/2026/holiday.jpg");
    assert_eq!(
        std::fs::read(on_disk).expect("plain file"),
        b"not really a jpeg\n"
    );
    ok(&f.aws(&["s3", "rm", "s3://photos/2026/holiday.jpg"]));
    ok(&f.aws(&["s3", "rm", "s3://photos/big.bin"]));
    ok(&f.aws(&["s3", "rb", "s3://photos"]));
    let ls = ok(&f.aws(&["s3", "ls"]));
    assert!(!ls.contains("photos"), "{ls}");
}

fn rclone(f: &Ferry, args: &[&str]) -> std::process::Output {
    Command::new("rclone")
        .args(["--config", "/dev/null"])
        // A CA bundle inherited from the environment breaks rclone over plain http.
        .env_remove("AWS_CA_BUNDLE")
        .args(args)
        .env("RCLONE_CONFIG_FERRY_TYPE", "s3")
        .env("RCLONE_CONFIG_FERRY_PROVIDER", "Other")
        .env("RCLONE_CONFIG_FERRY_ACCESS_KEY_ID", ACCESS_KEY)
        .env("RCLONE_CONFIG_FERRY_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RCLONE_CONFIG_FERRY_ENDPOINT", &f.s3)
        .env("RCLONE_CONFIG_FERRY_REGION", "us-east-1")
        .output()
        .expect("run rclone (installed by scripts/test)")
}

#[test]
fn rclone_tree() {
    let f = Ferry::start();
    let src = f.dir.path().join("tree");
    let names = [
        "plain",
        "with space",
        "été ü",
        "漢字 テスト",
        "a+b=c",
        "percent%20",
    ];
    let mut n = 0;
    for d in 0..20 {
        for i in 0..50 {
            let name = names[(d + i) % names.len()];
            let p = src
                .join(format!("dir {d:02} {}", names[d % names.len()]))
                .join(format!("{name} {i:03}.txt"));
            write_file(&p, 1 + (d * 50 + i) * 37 % 5000, (d * 50 + i) as u64);
            n += 1;
        }
    }
    write_file(&src.join("big/200mib.bin"), 200 * 1024 * 1024, 99);
    n += 1;
    let s = src.to_string_lossy().into_owned();
    ok(&rclone(&f, &["mkdir", "ferry:tree"]));
    ok(&rclone(
        &f,
        &[
            "copy",
            "--transfers",
            "8",
            "--checkers",
            "8",
            &s,
            "ferry:tree",
        ],
    ));
    ok(&rclone(&f, &["check", &s, "ferry:tree"]));
    let lsf = ok(&rclone(&f, &["lsf", "-R", "--files-only", "ferry:tree"]));
    assert_eq!(lsf.lines().count(), n, "every file listed once");
    assert!(
        lsf.contains("dir 02 été ü/"),
        "{}",
        &lsf[..lsf.len().min(500)]
    );
    // Change the source: modify, delete, add; sync and check again.
    write_file(&src.join("dir 00 plain/plain 000.txt"), 4321, 1234);
    std::fs::remove_file(src.join("dir 01 with space/with space 000.txt")).expect("rm");
    write_file(&src.join("new dir/новый файл.txt"), 100, 5);
    ok(&rclone(&f, &["sync", "--transfers", "8", &s, "ferry:tree"]));
    ok(&rclone(&f, &["check", &s, "ferry:tree"]));
    let lsf = ok(&rclone(&f, &["lsf", "-R", "--files-only", "ferry:tree"]));
    assert_eq!(lsf.lines().count(), n, "one deleted, one added");
    assert!(
        !lsf.lines()
            .any(|l| l == "dir 01 with space/with space 000.txt"),
        "deletion mirrored"
    );
    assert!(
        lsf.lines().any(|l| l == "new dir/новый файл.txt"),
        "addition copied"
    );
}

#[test]
fn s3cmd_basic() {
    let f = Ferry::start();
    let d = f.dir.path();
    let host = f.s3.trim_start_matches("http://");
    let cfg = d.join("s3cfg");
    std::fs::write(
        &cfg,
        format!(
            "[default]\naccess_key = {ACCESS_KEY}\nsecret_key = {SECRET_KEY}\nhost_base = {host}\n\
             host_bucket = {host}\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n"
        ),
    )
    .expect("config");
    let s3cmd = |args: &[&str]| {
        Command::new(crate::support::venv_bin("s3cmd"))
            .arg("-c")
            .arg(&cfg)
            .args(args)
            .output()
            .expect("s3cmd")
    };
    write_file(&d.join("small.txt"), 1000, 3);
    write_file(&d.join("large.bin"), 20 * 1024 * 1024, 4);
    let p = |n: &str| d.join(n).to_string_lossy().into_owned();
    ok(&s3cmd(&["mb", "s3://cmd"]));
    ok(&s3cmd(&["put", &p("small.txt"), "s3://cmd/small.txt"]));
    ok(&s3cmd(&[
        "put",
        "--multipart-chunk-size-mb=5",
        &p("large.bin"),
        "s3://cmd/large.bin",
    ]));
    let ls = ok(&s3cmd(&["ls", "s3://cmd"]));
    assert!(
        ls.contains("s3://cmd/small.txt") && ls.contains("s3://cmd/large.bin"),
        "{ls}"
    );
    ok(&s3cmd(&["get", "s3://cmd/large.bin", &p("large.back")]));
    assert_eq!(md5sum(&d.join("large.back")), md5sum(&d.join("large.bin")));
    ok(&s3cmd(&["del", "s3://cmd/small.txt"]));
    let ls = ok(&s3cmd(&["ls", "s3://cmd"]));
    assert!(!ls.contains("small.txt"), "{ls}");
}

#[test]
fn minio_py_with_presigned_urls() {
    let f = Ferry::start();
    ok(&f.python("minio_client.py", &[]));
}
