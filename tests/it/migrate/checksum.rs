//! `--checksum` across copies made in parts: the destination's ETag is of its parts, so the
//! copy carries the source's MD5 in `md5chksum` metadata (as rclone writes it), and a later
//! `--checksum`, `--verify` or `rclone check` compares content by it. Where no side has an
//! MD5 to compare, `--checksum` says it compared by size.

use base64::Engine as _;
use md5::{Digest, Md5};
use serde_json::Value;

use super::{Migrator, edit_keeping_time, mib, stderr};
use crate::interop::rclone;
use crate::support::{ACCESS_KEY, Ferry, SECRET_KEY, ok, write_file};

/// A directory's large file hashed for `--checksum` goes in parts with its MD5: an edit
/// that keeps its size and time is found by the next `--checksum` run (it compared by size
/// only, and said nothing), `--verify` compares it by content, and so does `rclone check`.
#[test]
fn a_copy_in_parts_carries_the_md5_checksum_compares() {
    let tmp = tempfile::tempdir().expect("tmp");
    let f = Ferry::start();
    let src = tmp.path().join("tree/parts");
    write_file(&src.join("big.bin"), mib(12), 41);
    write_file(&src.join("small.txt"), 300, 42);
    let m = Migrator::new(tmp.path()).creds("DST", ACCESS_KEY, SECRET_KEY);
    let run_from = |src: &std::path::Path, bucket: &str, extra: &[&str]| {
        let url = format!("s3://{bucket}");
        let mut args = vec![
            "migrate",
            src.to_str().unwrap_or_default(),
            &url,
            "--dst-endpoint",
            &f.s3,
            "--multipart-threshold",
            "8M",
            "--part-size",
            "5M",
            "--json",
        ];
        args.extend_from_slice(extra);
        m.run(&args)
    };
    let run = |bucket: &str, extra: &[&str]| run_from(&src, bucket, extra);
    let json = |out: &std::process::Output| -> Value {
        serde_json::from_str(ok(out).lines().next().unwrap_or("{}")).expect("json")
    };
    let md5_of = |path: &std::path::Path| {
        let bytes = std::fs::read(path).expect("read");
        base64::engine::general_purpose::STANDARD.encode(Md5::digest(&bytes))
    };
    let head = |key: &str| -> Value {
        let out = f.aws(&["s3api", "head-object", "--bucket", "parts", "--key", key]);
        serde_json::from_str(&f.ok(&out)).expect("head json")
    };

    let first = json(&run("parts", &["--checksum"]));
    assert_eq!(first["done"], 2, "{first}");
    let h = head("big.bin");
    assert!(
        h["ETag"].as_str().unwrap_or_default().ends_with("-3\""),
        "{h}"
    );
    assert_eq!(
        h["Metadata"]["md5chksum"],
        md5_of(&src.join("big.bin")),
        "{h}"
    );
    // A one-piece copy's ETag is its MD5: nothing more to carry.
    assert!(head("small.txt")["Metadata"].get("md5chksum").is_none());

    // Other bytes of the same size, with the old time: only content tells.
    let mut body = std::fs::read(src.join("big.bin")).expect("read");
    body[mib(6)] ^= 0xff;
    edit_keeping_time(&src.join("big.bin"), &body);
    let second = json(&run("parts", &["--checksum"]));
    assert_eq!(second["done"], 1, "{second}");
    assert_eq!(second["unchanged"], 1, "{second}");
    let h = head("big.bin");
    assert_eq!(
        h["Metadata"]["md5chksum"],
        md5_of(&src.join("big.bin")),
        "{h}"
    );

    // `--verify` compares every object by content now, the multipart one included.
    let out = run("parts", &["--verify"]);
    assert_eq!(json(&out)["done"], 0);
    let err = stderr(&out);
    assert!(
        err.contains("2 objects compared, no differences (0 by size only)"),
        "{err}"
    );
    // rclone reads the MD5 from the same metadata: every hash is checked.
    let check = rclone(
        &f,
        &["check", src.to_str().unwrap_or_default(), "ferry:parts"],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.status.success(), "{text}");
    assert!(text.contains("2 matching files"), "{text}");
    assert!(!text.contains("hashes could not be checked"), "{text}");

    // A copy made without hashing the file (no `--checksum`, and never hashed before) has
    // no MD5 to carry: a later `--checksum` can compare it by size only, and says so.
    let other = tmp.path().join("tree/unhashed");
    write_file(&other.join("big.bin"), mib(12), 43);
    let plain = json(&run_from(&other, "unhashed", &[]));
    assert_eq!(plain["done"], 1, "{plain}");
    let out = run_from(&other, "unhashed", &["--checksum"]);
    assert_eq!(json(&out)["done"], 0);
    let err = stderr(&out);
    assert!(
        err.contains("by size only") && err.contains("big.bin"),
        "{err}"
    );
}
