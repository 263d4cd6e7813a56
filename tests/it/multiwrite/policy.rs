//! Policy changes of a namespace bucket: bad input changes nothing, and a change that would
//! strand owed writes is refused.

use super::*;

#[test]
fn bad_policy_input_changes_nothing() {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    let err = |out: std::process::Output| {
        assert!(!out.status.success(), "expected a failure");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = err(a.cli(&[
        "bucket",
        "create",
        "bad",
        "--write-to",
        "local:bad,nosuch:bad",
    ]));
    assert!(e.contains("nosuch") && e.contains("no store"), "{e}");
    let e = err(a.cli(&["bucket", "create", "bad", "--write-to", "local"]));
    assert!(e.contains("store:bucket"), "{e}");
    // A target that refuses its bucket (a file where its folder would be) after another
    // target made one: the one made is taken away again.
    std::fs::write(a.local_root().join("half"), b"a file in the way").expect("file");
    let e = err(a.cli(&[
        "bucket",
        "create",
        "half",
        "--write-to",
        "dr:half,local:half",
    ]));
    assert!(e.contains("cannot create its bucket"), "{e}");
    assert!(
        !b.aws(&["s3api", "head-bucket", "--bucket", "half"])
            .status
            .success(),
        "the refused policy left a bucket on dr"
    );
    // An empty write_to through the API.
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-H",
        ])
        .arg(format!(
            "authorization: Bearer {}",
            crate::support::ADMIN_TOKEN
        ))
        .args(["-d", r#"{"name":"bad","write_to":[]}"#])
        .arg(format!("{}/api/v1/buckets", a.admin))
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("write_to is empty"), "{body}");
    // A read target that gets no writes and has no bucket would serve only NoSuchBucket.
    let e = err(a.cli(&[
        "bucket",
        "create",
        "bad",
        "--write-to",
        "local:bad",
        "--read-from",
        "dr:bad",
    ]));
    assert!(e.contains("read target dr:bad has no bucket"), "{e}");
    let list = a.ok(&a.cli(&["bucket", "list", "--json"]));
    assert_eq!(list.trim(), "[]", "a refused create left a bucket behind");

    a.ok(&a.cli(&[
        "bucket",
        "create",
        "good",
        "--write-to",
        "local:good,dr:good",
    ]));
    let before = status(&a, "good");
    let e = err(a.cli(&[
        "bucket",
        "failover",
        "good",
        "--to",
        "local",
        "--mode",
        "read-only",
    ]));
    assert!(e.contains("not a secondary write target"), "{e}");
    let e = err(a.cli(&[
        "bucket",
        "failover",
        "good",
        "--to",
        "elsewhere",
        "--mode",
        "read-write",
    ]));
    assert!(e.contains("elsewhere"), "{e}");
    let out = a.cli(&["bucket", "failback", "good"]);
    // A change the bucket's state does not allow is the API's 409, not bad usage (exit 2).
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failback of a bucket not failed over"
    );
    let e = err(out);
    assert!(e.contains("not failed over"), "{e}");
    let e = err(a.cli(&[
        "bucket",
        "policy",
        "good",
        "--write-to",
        "dr:good,ghost:x1y",
    ]));
    assert!(e.contains("ghost"), "{e}");
    let after = status(&a, "good");
    assert_eq!(before["mode"], after["mode"]);
    let list = a.ok(&a.cli(&["bucket", "list", "--json"]));
    assert!(
        list.contains("\"local\"") && list.contains("\"dr\""),
        "{list}"
    );
    let e = err(a.cli(&["bucket", "status", "nope"]));
    assert!(e.contains("nope"), "{e}");
    // A target store that refuses Ferry's credentials is no bad usage (it was exit 2).
    a.add_s3_store(
        "refuses",
        &a.s3,
        crate::support::ACCESS_KEY,
        "not-the-secret",
    );
    let out = a.cli(&[
        "bucket",
        "create",
        "refused",
        "--write-to",
        "local:refused,refuses:refused",
    ]);
    let e = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a target refusing the credentials: {e}"
    );
    assert!(e.contains("refuses"), "{e}");
    // "Could not compare" is not "they differ" (1): a script must be able to tell.
    let out = a.cli(&["verify", "local:good", "nostore:good"]);
    assert_eq!(out.status.code(), Some(3), "verify of an unknown store");
    let e = err(out);
    assert!(
        e.contains("could not compare") && e.contains("nostore"),
        "{e}"
    );

    // A valid policy change takes effect for the next write.
    let out = a.ok(&a.cli(&[
        "bucket",
        "policy",
        "good",
        "--write-to",
        "local:good,dr:good-two",
    ]));
    assert!(out.contains("dr:good-two"), "{out}");
    let f = a.dir.path().join("x");
    write_file(&f, 321, 5);
    cp_to(&a, &f, "s3://good/after");
    wait_drained(&a, "good");
    assert_same(&a, "local:good", "dr:good-two");
    b.ok(&b.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        "good-two",
        "--key",
        "after",
    ]));
}

/// A policy change or a removal that would strand acknowledged writes the journal still owes
/// was accepted without a word: a secondary that owed writes could be dropped (its rows then
/// owed for ever), made the primary (acknowledged keys answered 404), or the bucket removed
/// (the journal dropped). Each is refused while anything is owed, and state stays as it was.
#[test]
fn changes_that_would_strand_owed_writes_are_refused() {
    let (a, mut b) = two_sites("owe", true);
    b.kill9();
    let f = a.dir.path().join("x");
    write_file(&f, 100, 1);
    cp_to(&a, &f, "s3://owe/k");
    let owed = |s: &Value| s["owed_total"].as_i64().expect("owed_total");
    assert_eq!(owed(&status(&a, "owe")), 1);
    for args in [
        &["bucket", "policy", "owe", "--write-to", "local:owe"][..],
        &["bucket", "remove", "owe"][..],
    ] {
        let out = a.cli(args);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(e.contains("dr:owe") && e.contains("owed"), "{args:?}: {e}");
    }
    // Making it the primary (refused already since it cannot be reached: tried anyway).
    let out = a.cli(&["bucket", "policy", "owe", "--write-to", "dr:owe,local:owe"]);
    assert!(!out.status.success(), "the swap was accepted");
    let s = status(&a, "owe");
    assert_eq!(owed(&s), 1, "{s}");
    let list = a.ok(&a.cli(&["bucket", "list", "--json"]));
    assert!(list.contains(r#"{"bucket":"owe","store":"dr"}"#), "{list}");
    // Nor can the store a bucket writes to be removed (the bucket would stop being served
    // at the next start, its name falling back to a plain bucket).
    let out = a.cli(&["store", "remove", "dr"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() == Some(1) && e.contains("bucket owe uses it"),
        "a conflict, not bad usage: {:?} {e}",
        out.status.code()
    );
    // Once the secondary is back and paid, the same removals go through.
    b.restart();
    wait_drained(&a, "owe");
    a.ok(&a.cli(&["bucket", "remove", "owe"]));
    a.ok(&a.cli(&["store", "remove", "dr"]));
}

/// A plain bucket may become a namespace bucket with itself as the primary (as the docs
/// say; `bucket create` refused it), its objects then owed to the new secondary; with any
/// other primary it stays refused, before a target's bucket is made.
#[test]
fn a_plain_bucket_is_taken_over_only_as_the_primary() {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    a.ok(&a.aws(&["s3", "mb", "s3://plainone"]));
    let f = a.dir.path().join("x");
    write_file(&f, 1000, 3);
    cp_to(&a, &f, "s3://plainone/before");
    let out = a.cli(&[
        "bucket",
        "create",
        "plainone",
        "--write-to",
        "dr:plainone,local:plainone",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("already exists in the default store"), "{err}");
    assert!(
        !b.aws(&["s3api", "head-bucket", "--bucket", "plainone"])
            .status
            .success(),
        "the refused create made the secondary's bucket"
    );
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "plainone",
        "--write-to",
        "local:plainone,dr:plainone",
    ]));
    cp_to(&a, &f, "s3://plainone/after");
    wait_drained(&a, "plainone");
    assert_same(&a, "local:plainone", "dr:plainone");
    let ls = b.ok(&b.aws(&["s3", "ls", "s3://plainone/"]));
    assert!(ls.contains("before") && ls.contains("after"), "{ls}");
}

/// A secondary added to a bucket gets the bucket's versioning and tags with its objects (a
/// probe found it unversioned: a read-write failover to it would overwrite without history).
#[test]
fn an_added_secondary_gets_the_buckets_settings() {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    a.ok(&a.cli(&["bucket", "create", "verb", "--write-to", "local:verb"]));
    a.ok(&a.aws(&[
        "s3api",
        "put-bucket-versioning",
        "--bucket",
        "verb",
        "--versioning-configuration",
        "Status=Enabled",
    ]));
    a.ok(&a.aws(&[
        "s3api",
        "put-bucket-tagging",
        "--bucket",
        "verb",
        "--tagging",
        "TagSet=[{Key=team,Value=photos}]",
    ]));
    a.ok(&a.cli(&[
        "bucket",
        "policy",
        "verb",
        "--write-to",
        "local:verb,dr:verb",
    ]));
    wait_drained(&a, "verb");
    let v = b.ok(&b.aws(&["s3api", "get-bucket-versioning", "--bucket", "verb"]));
    assert!(v.contains("Enabled"), "{v}");
    let t = b.ok(&b.aws(&["s3api", "get-bucket-tagging", "--bucket", "verb"]));
    assert!(t.contains("photos"), "{t}");
}

/// A target is one namespace bucket's alone: a second one writing there overwrote and deleted
/// the first one's objects on its primary, with neither journal knowing (a probe).
#[test]
fn a_target_of_one_namespace_bucket_is_refused_to_another() {
    let (a, _b) = pair("nsk");
    let refused = |args: &[&str]| {
        let out = a.cli(args);
        let e = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "accepted: {args:?}");
        assert!(
            e.contains("local:nsk is already a target of namespace bucket nsk"),
            "{e}"
        );
    };
    refused(&["bucket", "create", "nsx", "--write-to", "dr:nsx,local:nsk"]);
    refused(&["bucket", "create", "nsx", "--write-to", "local:nsk,dr:nsx"]);
    refused(&[
        "bucket",
        "create",
        "nsx",
        "--write-to",
        "dr:nsx",
        "--read-from",
        "local:nsk",
    ]);
    a.ok(&a.cli(&["bucket", "create", "nsx", "--write-to", "local:nsx"]));
    refused(&[
        "bucket",
        "policy",
        "nsx",
        "--write-to",
        "local:nsx,local:nsk",
    ]);
    // Its own targets again are no conflict.
    a.ok(&a.cli(&["bucket", "policy", "nsk", "--write-to", "local:nsk,dr:nsk"]));
    // A second store name for the same endpoint is the same place (a re-probe).
    a.add_remote("dr2", &_b);
    let out = a.cli(&["bucket", "create", "nsy", "--write-to", "local:nsy,dr2:nsk"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("as dr:nsk: the same place"),
        "{e}"
    );
    // A new primary that is none of the bucket's targets holds none of its objects.
    let out = a.cli(&[
        "bucket",
        "policy",
        "nsk",
        "--write-to",
        "dr:fresh,local:nsk",
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("is not one of its write targets"),
        "{e}"
    );
}

/// A namespace bucket whose primary is a default-store bucket of another name: that bucket
/// was still served as a plain one, so writes to it skipped the journal and DeleteBucket
/// removed the namespace's primary (a probe). It is neither listed nor served now.
#[test]
fn the_bucket_behind_a_namespace_is_not_served_as_a_plain_one() {
    let a = Ferry::start();
    let b = Ferry::start();
    a.add_remote("dr", &b);
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "nsq",
        "--write-to",
        "local:nsqdata,dr:nsq",
    ]));
    let f = a.dir.path().join("x");
    write_file(&f, 100, 3);
    cp_to(&a, &f, "s3://nsq/k");
    let listed = a.ok(&a.aws(&["s3api", "list-buckets", "--query", "Buckets[].Name"]));
    assert!(
        listed.contains("nsq") && !listed.contains("nsqdata"),
        "{listed}"
    );
    for args in [
        vec!["s3", "cp", f.to_str().expect("utf8"), "s3://nsqdata/sneaky"],
        vec!["s3api", "delete-bucket", "--bucket", "nsqdata"],
        vec![
            "s3api",
            "delete-object",
            "--bucket",
            "nsqdata",
            "--key",
            "k",
        ],
    ] {
        let out = a.aws(&args);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was served");
        assert!(
            e.contains("AccessDenied") || e.contains("403"),
            "{args:?}: {e}"
        );
    }
    let out = a.aws(&["s3api", "head-object", "--bucket", "nsq", "--key", "k"]);
    assert!(out.status.success(), "the namespace lost its object");
    assert!(a.local_root().join("nsqdata/k").exists());
    wait_drained(&a, "nsq");
    assert_same(&a, "local:nsqdata", "dr:nsq");
}

/// A policy change while one of the bucket's targets is down: the change tried to create the
/// bucket on every target again, so it failed on the one that does not answer, and a
/// replacement site could not be added during the outage (a probe).
#[test]
fn a_target_that_is_down_does_not_stop_adding_another() {
    let (a, mut b) = two_sites("out", true);
    add_fs_store(&a, "fs3");
    let f = a.dir.path().join("x");
    write_file(&f, 100, 4);
    cp_to(&a, &f, "s3://out/k");
    wait_drained(&a, "out");
    b.kill9();
    a.ok(&a.cli(&[
        "bucket",
        "policy",
        "out",
        "--write-to",
        "local:out,dr:out,fs3:out",
    ]));
    b.restart();
    wait_drained(&a, "out");
    assert_same(&a, "local:out", "fs3:out");
    assert_same(&a, "local:out", "dr:out");
}

/// An fs store a namespace bucket used, removed and then added again: its folder stayed
/// locked by this very server ("open in another Ferry process") until a restart (a probe).
#[test]
fn an_fs_store_removed_after_a_bucket_used_it_can_be_added_again() {
    let a = Ferry::start();
    let dir = a.dir.path().join("fs7");
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.to_str().unwrap_or_default();
    let add = ["store", "add", "fs7", "--kind", "fs", "--path", path];
    a.ok(&a.cli(&add));
    a.ok(&a.cli(&["bucket", "create", "ns7", "--write-to", "local:ns7,fs7:ns7"]));
    a.ok(&a.cli(&["bucket", "remove", "ns7"]));
    a.ok(&a.cli(&["store", "remove", "fs7"]));
    a.ok(&a.cli(&add));
    // A policy naming it that is refused (no such store for the other target) holds it too.
    let out = a.cli(&[
        "bucket",
        "create",
        "ns8",
        "--write-to",
        "fs7:ns8,nosuch:ns8",
    ]);
    assert!(!out.status.success());
    a.ok(&a.cli(&["store", "remove", "fs7"]));
    a.ok(&a.cli(&add));
    a.ok(&a.cli(&["bucket", "create", "ns9", "--write-to", "local:ns9,fs7:ns9"]));
}

/// Writes a secondary refuses for good (an fs target cannot hold both `c` and `c/d`) stayed
/// owed for ever and blocked every policy change and the bucket's removal (a probe). The
/// admin may give them up with `--drop-owed`; without it the refusal says so.
#[test]
fn writes_a_target_refuses_for_good_can_be_given_up() {
    // A primary whose keys are no paths: it takes `c` beside `c/d`.
    let a = Ferry::start();
    let moto = crate::support::Moto::start();
    a.add_s3_store("dr", &moto.endpoint, "testing", "testing");
    a.ok(&a.cli(&["bucket", "create", "nsm", "--write-to", "dr:nsm,local:nsm"]));
    let f = a.dir.path().join("x");
    write_file(&f, 10, 1);
    cp_to(&a, &f, "s3://nsm/c/d");
    cp_to(&a, &f, "s3://nsm/c");
    let owed_local = || {
        status(&a, "nsm")["targets"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["target"] == "local:nsm").cloned())
            .map_or(0, |t| t["owed_count"].as_i64().unwrap_or(0))
    };
    assert!(owed_local() > 0, "{}", status(&a, "nsm"));
    let out = a.cli(&["bucket", "policy", "nsm", "--write-to", "dr:nsm"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("--drop-owed"), "{e}");
    a.ok(&a.cli(&[
        "bucket",
        "policy",
        "nsm",
        "--write-to",
        "dr:nsm",
        "--drop-owed",
    ]));
    assert_eq!(status(&a, "nsm")["owed_total"], 0);
    // Added again, the target is owed everything the primary holds, `c` among it.
    a.ok(&a.cli(&["bucket", "policy", "nsm", "--write-to", "dr:nsm,local:nsm"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while owed_local() != 1 {
        assert!(Instant::now() < deadline, "{}", status(&a, "nsm"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = a.cli(&["bucket", "remove", "nsm"]);
    assert!(!out.status.success());
    a.ok(&a.cli(&["bucket", "remove", "nsm", "--drop-owed"]));
    let out = a.cli(&["bucket", "status", "nsm"]);
    assert!(!out.status.success(), "the bucket is still there");
    // Its primary keeps everything.
    let out = a.cli(&["verify", "dr:nsm", "dr:nsm"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("compared 2 objects"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A secondary left out of the policy and added again kept what was deleted meanwhile, with
/// nothing owed: a failover served those objects again and a failback copied them back to the
/// primary (a probe). Such keys are refused unless `--delete-extra`, which has them deleted.
#[test]
fn a_secondary_added_again_loses_what_was_deleted_meanwhile() {
    let a = Ferry::start();
    add_fs_store(&a, "fs3");
    a.ok(&a.cli(&["bucket", "create", "nsr", "--write-to", "local:nsr,fs3:nsr"]));
    let f = a.dir.path().join("x");
    write_file(&f, 10, 1);
    for k in ["k1", "k2", "k3"] {
        cp_to(&a, &f, &format!("s3://nsr/{k}"));
    }
    wait_drained(&a, "nsr");
    a.ok(&a.cli(&["bucket", "policy", "nsr", "--write-to", "local:nsr"]));
    a.ok(&a.aws(&["s3", "rm", "s3://nsr/k2"]));
    cp_to(&a, &f, "s3://nsr/k4");
    let again = ["bucket", "policy", "nsr", "--write-to", "local:nsr,fs3:nsr"];
    let out = a.cli(&again);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a target holding deleted keys was added"
    );
    assert!(
        e.contains("fs3:nsr holds keys the primary local:nsr lacks (first: \"k2\")")
            && e.contains("--delete-extra"),
        "{e}"
    );
    let s = status(&a, "nsr");
    assert_eq!(s["targets"].as_array().map(Vec::len), Some(1), "{s}");
    let mut with = again.to_vec();
    with.push("--delete-extra");
    a.ok(&a.cli(&with));
    wait_drained(&a, "nsr");
    assert_same(&a, "local:nsr", "fs3:nsr");
    // A bucket named in the wrong order: the secondary holds the data, the primary nothing.
    a.ok(&a.cli(&["bucket", "remove", "nsr"]));
    let out = a.cli(&["bucket", "create", "nsq", "--write-to", "local:nsq,fs3:nsr"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "an empty primary over a full secondary"
    );
    assert!(
        e.contains("(first: \"k1\")") && e.contains("name it first (the primary)"),
        "{e}"
    );
    let listed = a.ok(&a.cli(&["bucket", "list"]));
    assert!(!listed.contains("nsq"), "{listed}");
}

/// An fs secondary whose folder held files its store had not indexed (a folder not yet a
/// bucket, files put in behind its back) passed the check for keys the primary lacks, and
/// the backfill then deleted them without `--delete-extra` (a probe). The check reads the
/// folder as it is, and only `--delete-extra` has anything deleted.
#[test]
fn files_an_fs_secondary_holds_unindexed_are_seen_and_kept() {
    let a = Ferry::start();
    let dir = add_fs_store(&a, "fs4");
    std::fs::create_dir_all(dir.join("wrong/sub")).expect("mkdir");
    for i in 1..=3 {
        std::fs::write(dir.join(format!("wrong/sub/p{i}.jpg")), format!("d{i}")).expect("write");
    }
    let out = a.cli(&[
        "bucket",
        "create",
        "wrong",
        "--write-to",
        "local:wrong,fs4:wrong",
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "created over a folder of files");
    assert!(e.contains("(first: \"sub/p1.jpg\")"), "{e}");
    // Files put into a secondary's bucket folder behind its store's back, then re-added.
    a.ok(&a.cli(&[
        "bucket",
        "create",
        "keep",
        "--write-to",
        "local:keep,fs4:keep",
    ]));
    a.ok(&a.cli(&["bucket", "policy", "keep", "--write-to", "local:keep"]));
    std::fs::write(dir.join("keep/behind"), "x").expect("write");
    let out = a.cli(&[
        "bucket",
        "policy",
        "keep",
        "--write-to",
        "local:keep,fs4:keep",
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("(first: \"behind\")"),
        "{e}"
    );
    std::thread::sleep(Duration::from_secs(2));
    for i in 1..=3 {
        assert!(
            dir.join(format!("wrong/sub/p{i}.jpg")).is_file(),
            "p{i}.jpg was deleted"
        );
    }
    assert!(dir.join("keep/behind").is_file());
    // Asked for, they go.
    a.ok(&a.cli(&[
        "bucket",
        "policy",
        "keep",
        "--write-to",
        "local:keep,fs4:keep",
        "--delete-extra",
    ]));
    wait_drained(&a, "keep");
    assert!(!dir.join("keep/behind").exists());
}

/// A key a namespace bucket's fs target cannot hold (`x//y`, written to its S3 primary
/// directly) was listed and served but could not be deleted through Ferry (400, a probe): a
/// target that cannot hold it does not, and the delete is done there.
#[test]
fn a_key_an_fs_target_cannot_hold_can_be_deleted() {
    let a = Ferry::start();
    let moto = crate::support::Moto::start();
    a.add_s3_store("dr", &moto.endpoint, "testing", "testing");
    a.ok(&a.cli(&["bucket", "create", "nsx", "--write-to", "dr:nsx,local:nsx"]));
    moto.boto("c.put_object(Bucket='nsx',Key='x//y',Body=b'x')");
    a.ok(&a.aws(&["s3api", "delete-object", "--bucket", "nsx", "--key", "x//y"]));
    let listed = a.ok(&a.aws(&["s3api", "list-objects-v2", "--bucket", "nsx"]));
    assert!(!listed.contains("x//y"), "{listed}");
    wait_drained(&a, "nsx");
    // And on an fs primary, as on a plain bucket.
    a.ok(&a.cli(&["bucket", "create", "nsy", "--write-to", "local:nsy,dr:nsy"]));
    a.ok(&a.aws(&["s3api", "delete-object", "--bucket", "nsy", "--key", "a//b"]));
}
