//! Crash safety: `ferry serve` is killed with -9 in the middle of writes; after a restart no
//! partial object is visible, every acknowledged write reads back byte-identical, and the
//! index agrees with the files (a rescan finds nothing to fix).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Ferry, ok, venv_bin, write_file};

/// After a restart: a rescan must find the index and the files in agreement.
fn assert_index_agrees(f: &Ferry) {
    let out = ok(&f.cli(&["store", "rescan", "local", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    for k in ["added", "updated", "removed"] {
        assert_eq!(v[k], 0, "index and files disagree after the crash: {out}");
    }
    let left = tmp_files(f);
    assert!(left.is_empty(), "temp files survived the restart: {left:?}");
}

/// Files (with their sizes) below the store's temp directory, at any depth.
fn tmp_files(f: &Ferry) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let mut dirs = vec![f.local_root().join(".ferry/tmp")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => dirs.push(e.path()),
                Ok(m) => out.push((e.path(), m.len())),
                Err(_) => {}
            }
        }
    }
    out
}

/// Waits until a body is being received into the store's temp directory.
fn wait_for_tmp_file(f: &Ferry, min_len: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let big = tmp_files(f).iter().any(|(_, len)| *len >= min_len);
        if big {
            return;
        }
        assert!(Instant::now() < deadline, "no upload reached the server");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn md5_of(path: &std::path::Path) -> String {
    let out = Command::new("md5sum").arg(path).output().expect("md5sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn kill_during_1gib_put_leaves_the_previous_version() {
    let mut f = Ferry::start();
    ok(&f.aws(&["s3", "mb", "s3://crash"]));
    let old = f.dir.path().join("old.bin");
    crate::support::write_file(&old, 3 * 1024 * 1024 + 17, 1);
    ok(&f.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        "crash",
        "--key",
        "big",
        "--body",
        old.to_str().expect("utf8"),
    ]));
    let big = f.dir.path().join("big.bin");
    let file = std::fs::File::create(&big).expect("create");
    file.set_len(1 << 30).expect("1 GiB sparse file");
    let mut cmd = Command::new(venv_bin("aws"));
    cmd.arg("--endpoint-url").arg(&f.s3).args([
        "s3api",
        "put-object",
        "--bucket",
        "crash",
        "--key",
        "big",
        "--body",
    ]);
    cmd.arg(&big).stdout(Stdio::null()).stderr(Stdio::null());
    f.client_env(&mut cmd);
    let mut client = cmd.spawn().expect("aws");
    wait_for_tmp_file(&f, 64 * 1024 * 1024);
    f.kill9();
    let _ = client.wait();
    f.restart();
    let back = f.dir.path().join("back.bin");
    ok(&f.aws(&[
        "s3",
        "cp",
        "--only-show-errors",
        "s3://crash/big",
        back.to_str().expect("utf8"),
    ]));
    assert_eq!(
        md5_of(&back),
        md5_of(&old),
        "the acknowledged version must survive, whole"
    );
    assert_index_agrees(&f);
}

/// Kills the server `delay` after a complete of `key`'s upload (4 parts of `mib` MiB, the first
/// `chosen` of them completed) starts, or once its concatenation has `concat_mib` MiB in the
/// temp folder; then the object is either whole or absent with the upload intact.
fn kill_during_complete(f: &mut Ferry, key: &str, mib: u32, chosen: u32, when: Kill) {
    let bucket = "mpcrash";
    let prep = f.python(
        "multipart_prepare.py",
        &[bucket, key, "4", &mib.to_string()],
    );
    let upload_id = ok(&prep).trim().to_owned();
    let assembly = f
        .local_root()
        .join(".ferry/uploads")
        .join(&upload_id)
        .join("object");
    assert!(
        assembly.exists(),
        "{key}: the parts were written to their place in the object"
    );
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(crate::support::repo().join("tests/it/py/multipart_complete.py"))
        .args([bucket, key, &upload_id, &chosen.to_string()]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    f.client_env(&mut cmd);
    let mut client = cmd.spawn().expect("python");
    let mut said = std::io::BufReader::new(client.stdout.take().expect("stdout"));
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut said, &mut line).unwrap_or(0) > 0
        && !line.contains("SENDING")
    {
        line.clear();
    }
    match when {
        Kill::After(d) => std::thread::sleep(d),
        Kill::Concatenating(min) => wait_for_tmp_file(f, min << 20),
    }
    f.kill9();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut said, &mut rest);
    let _ = client.wait();
    let acknowledged = rest.contains("COMPLETED");
    f.restart();
    let check = f.python(
        "multipart_check.py",
        &[
            bucket,
            key,
            &upload_id,
            "4",
            &mib.to_string(),
            &chosen.to_string(),
        ],
    );
    let state = ok(&check);
    eprintln!("{key}: acknowledged {acknowledged}, found {}", state.trim());
    if acknowledged {
        assert!(
            state.contains("OBJECT"),
            "{key}: an acknowledged complete was lost: {state}"
        );
    } else {
        assert!(
            state.contains("OBJECT") || state.contains("UPLOAD"),
            "{key}: {state}"
        );
    }
    assert_index_agrees(f);
}

enum Kill {
    After(Duration),
    Concatenating(u64),
}

#[test]
fn kill_during_multipart_complete_is_all_or_nothing() {
    let mut f = Ferry::start();
    // Parts 1..3 of 4 chosen: the fourth, written at its place in the assembly file, would
    // be cut off, so the three are concatenated into a temp file: kill mid-way.
    kill_during_complete(&mut f, "concat", 48, 3, Kill::Concatenating(16));
    // All four: the parts were written where they sit in the object, which completing only
    // syncs and links; kill at moments spread over that.
    for (i, ms) in [0u64, 2, 5, 10, 20, 60].into_iter().enumerate() {
        let key = format!("inplace{i}");
        kill_during_complete(&mut f, &key, 16, 4, Kill::After(Duration::from_millis(ms)));
    }
}

/// Concurrent PUTs, then concurrent DELETEs, each killed at a random moment.
#[test]
fn kill_during_puts_and_deletes_loses_nothing_acknowledged() {
    let mut f = Ferry::start();
    ok(&f.aws(&["s3", "mb", "s3://load"]));
    let acks = f.dir.path().join("puts.log");
    for round in 0..3u64 {
        let mut cmd = Command::new(venv_bin("python"));
        cmd.arg(crate::support::repo().join("tests/it/py/load.py"))
            .args(["put", "load", "100000"])
            .arg(&acks);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        f.client_env(&mut cmd);
        let mut client = cmd.spawn().expect("load");
        std::thread::sleep(Duration::from_millis(700 + 400 * round));
        f.kill9();
        let _ = client.wait();
        f.restart();
    }
    let out = f.python(
        "verify_acks.py",
        &["put", "load", acks.to_str().expect("utf8")],
    );
    let n: usize = ok(&out).trim().parse().expect("count");
    assert!(n > 0, "the load acknowledged nothing");
    let dels = f.dir.path().join("dels.log");
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(crate::support::repo().join("tests/it/py/load.py"))
        .args(["delete", "load", "100000"])
        .arg(&dels);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    f.client_env(&mut cmd);
    let mut client = cmd.spawn().expect("load");
    std::thread::sleep(Duration::from_millis(800));
    f.kill9();
    let _ = client.wait();
    f.restart();
    ok(&f.python(
        "verify_acks.py",
        &["delete", "load", dels.to_str().expect("utf8")],
    ));
    // Every acknowledged PUT that was not deleted afterwards still reads back intact.
    ok(&f.python(
        "verify_acks.py",
        &[
            "put-unless-deleted",
            "load",
            acks.to_str().expect("utf8"),
            dels.to_str().expect("utf8"),
        ],
    ));
    assert_index_agrees(&f);
}

/// A clean shutdown left the last batch's intent in the index (intents are deleted by the
/// next batch's transaction), so every start after a clean stop replayed it and logged
/// "replayed an unfinished change", as after a crash. The commit thread finishes it as it
/// ends.
#[test]
fn a_clean_shutdown_leaves_nothing_to_replay() {
    let mut f = Ferry::start_fixed_port();
    f.ok(&f.aws(&["s3", "mb", "s3://calm"]));
    let file = f.dir.path().join("x");
    write_file(&file, 100, 1);
    f.ok(&f.aws(&["s3", "cp", file.to_str().expect("utf8"), "s3://calm/a"]));
    assert!(f.stop().success(), "clean shutdown");
    f.restart();
    let ls = f.ok(&f.aws(&["s3", "ls", "s3://calm/"]));
    assert!(ls.contains(" a"), "{ls}");
    let log = f.log();
    assert!(!log.contains("replayed an unfinished change"), "{log}");
}
