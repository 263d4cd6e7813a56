//! Directory destinations and the fs stores around them: a destination inside a bucket of
//! another store (an earlier job's destination, a server's bucket) put the job's index among
//! that bucket's objects (served, listed, deleted by a `--delete` into it), and a key
//! `.ferry/index.db` copied into a directory made it look like a store's root, refused ever
//! after.

use super::*;

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

#[test]
fn a_destination_inside_another_stores_bucket_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("in/src");
    make_tree(&src, 3, &[]);
    let m = Migrator::new(tmp.path());
    let out = tmp.path().join("out");
    ok(&m.run(&["migrate", path(&src), path(&out.join("first"))]));
    // `out` is now a store whose bucket `first` is that folder.
    let nested = out.join("first/inner");
    let r = m.run(&["migrate", path(&src), path(&nested)]);
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(
        err.contains("inside a bucket of the Ferry fs store") && err.contains(path(&out)),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        !out.join("first/.ferry").exists(),
        "an index was made in a bucket"
    );
    // A folder beside the buckets is no bucket: a destination below it is taken.
    ok(&m.run(&["migrate", path(&src), path(&out.join("plain/inner"))]));
    assert_same_tree(&src, &out.join("plain/inner"));
    // And the first job can still be run again.
    ok(&m.run(&["migrate", path(&src), path(&out.join("first"))]));
}

#[test]
fn keys_under_dot_ferry_are_not_made_in_a_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let moto = Moto::start();
    moto.boto(
        "c.create_bucket(Bucket='odd'); [c.put_object(Bucket='odd',Key=k,Body=b'x') for k in ['.ferry/index.db','.ferry/lock','a','b/c','b/.ferry/index.db']]",
    );
    let m = Migrator::new(tmp.path()).creds("SRC", MOTO_KEY, MOTO_KEY);
    let dst = tmp.path().join("out/odd");
    let args = [
        "migrate",
        "s3://odd",
        path(&dst),
        "--src-endpoint",
        &moto.endpoint,
        "--attempts",
        "2",
    ];
    let dry = dry_with_dead_letters(&m.run(&[&args[..], &["--dry-run"]].concat()));
    assert!(dry.contains("cannot copy \".ferry/index.db\""), "{dry}");
    let r = m.run(&args);
    let err = stderr(&r);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.contains(".ferry/index.db") && err.contains("must not hold"),
        "{err}"
    );
    assert!(dst.join("b/c").is_file(), "the other keys are copied");
    // Only an index's name is refused: other files under `.ferry/` are anyone's.
    assert!(
        dst.join(".ferry/lock").is_file(),
        "the other keys are copied"
    );
    assert!(
        !dst.join(".ferry/index.db").exists(),
        "an index's name was made"
    );
    assert!(
        !dst.join("b/.ferry/index.db").exists(),
        "an index's name was made"
    );
    // The destination is no store's root: the job runs again (its dead letters still said).
    let again = m.run(&args);
    let err = stderr(&again);
    assert_eq!(again.status.code(), Some(1), "{err}");
    assert!(!err.contains("root of a Ferry fs store"), "{err}");
}

/// A job writing `DIR/x` holds `DIR`'s store: another job writing a sibling is told who
/// holds it and what to do (it was told to use "that process's S3 endpoint", which a
/// `ferry migrate` has not).
#[test]
fn a_sibling_of_a_running_jobs_destination_names_the_job() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("in/src");
    make_tree(&src, 4, &[mib(2)]);
    let m = Migrator::new(tmp.path());
    let log = tmp.path().join("log");
    let running = tmp.path().join("out/running");
    let mut child = m.spawn(
        &[
            "migrate",
            path(&src),
            path(&running),
            "--bandwidth-limit",
            "100K",
        ],
        &log,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tmp.path().join("out/.ferry/lock").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let other = m.run(&["migrate", path(&src), path(&tmp.path().join("out/other"))]);
    kill9(&mut child);
    let err = stderr(&other);
    assert_eq!(other.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is held by a running `ferry migrate` (pid ") && err.contains("wait for it"),
        "{err}"
    );
}

/// What a `ferry volume` replica keeps under `.ferry/` is no store's index: a tree holding
/// it copies, in a dry run too (which must not foresee dead letters the run has not).
#[test]
fn other_files_under_dot_ferry_copy() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("in/replica");
    make_tree(&src, 2, &[]);
    write_file(&src.join(".ferry/state.db"), 100, 1);
    let dst = tmp.path().join("out/replica");
    let m = Migrator::new(tmp.path());
    let dry = ok(&m.run(&["migrate", path(&src), path(&dst), "--dry-run"]));
    assert!(dry.contains("would copy .ferry/state.db"), "{dry}");
    ok(&m.run(&["migrate", path(&src), path(&dst), "--delete"]));
    assert_same_tree(&src, &dst);
    assert!(dst.join(".ferry/state.db").is_file());
}
