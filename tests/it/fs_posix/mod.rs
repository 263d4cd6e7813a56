//! The fs store under POSIX users who change its tree beside Ferry: a symlink, a FIFO or a
//! folder where an object's file was, a file edited in place or replaced by a rename. Ferry
//! must never read, write or delete outside the store through them, never hang on them,
//! never lose a user's files, and never serve one file's bytes with another's ETag.

use std::path::Path;
use std::time::Duration;

use ferry::store::fs::FsStore;
use ferry::store::{BucketName, Error, GetOptions, ObjectKey, PutOptions, Store, Versioning};
use futures::StreamExt;

use crate::store::one_chunk;

mod buckets;
mod held;

fn key(k: &str) -> ObjectKey {
    ObjectKey::parse(k).expect("key")
}

/// A PUT of `data` at `k`, its outcome as the store gives it.
async fn try_put(
    s: &FsStore,
    b: &BucketName,
    k: &str,
    data: &'static [u8],
) -> Result<ferry::store::ObjectMeta, Error> {
    s.put_object(b, &key(k), one_chunk(data), PutOptions::default())
        .await
}

/// Every version in the bucket (a test's few).
async fn all_versions(s: &FsStore, b: &BucketName) -> ferry::store::VersionsPage {
    s.list_versions(
        b,
        &ferry::store::VersionsQuery {
            max_keys: 1000,
            ..Default::default()
        },
    )
    .await
    .expect("versions")
}

async fn put(s: &FsStore, b: &BucketName, k: &str, data: &'static [u8]) -> String {
    s.put_object(
        b,
        &key(k),
        one_chunk(data),
        PutOptions {
            size_hint: Some(data.len() as u64),
            ..Default::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("put {k}: {e}"))
    .etag
}

/// The body and ETag of a GET, or its error; a GET that does not answer within a minute
/// (a FIFO blocking the open) fails the test.
async fn get(
    s: &FsStore,
    b: &BucketName,
    k: &str,
    version: Option<&str>,
) -> Result<(Vec<u8>, String), Error> {
    let opts = GetOptions {
        version_id: version.map(str::to_owned),
        ..Default::default()
    };
    let r = tokio::time::timeout(Duration::from_secs(60), s.get_object(b, &key(k), opts))
        .await
        .unwrap_or_else(|_| panic!("GET {k} hung"))?;
    let mut out = Vec::new();
    let mut body = r.body;
    while let Some(c) = body.next().await {
        out.extend_from_slice(&c.map_err(Error::Body)?);
    }
    Ok((out, r.meta.etag))
}

fn md5(data: &[u8]) -> String {
    let mut h = ferry::store::digest::BodyHasher::new(None);
    h.update(data);
    hex::encode(h.finalize().md5)
}

fn swap_for_symlink(path: &Path, to: &Path) {
    if path.is_dir() {
        std::fs::remove_dir_all(path).expect("rm dir");
    } else {
        std::fs::remove_file(path).expect("rm");
    }
    std::os::unix::fs::symlink(to, path).expect("symlink");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_swapped_into_a_bucket_lead_nowhere_outside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = outside.path().join("secret");
    std::fs::write(&secret, b"outside the store").expect("write");
    std::fs::write(outside.path().join("victim.conf"), b"keep me").expect("write");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    let b = BucketName::parse("bkt").expect("name");
    let b2 = BucketName::parse("other").expect("name");
    for bk in [&b, &b2] {
        s.create_bucket(bk).await.expect("bucket");
    }
    put(&s, &b, "report.txt", b"report").await;
    put(&s, &b, "d/victim.conf", b"inside").await;
    put(&s, &b2, "victim.conf", b"inside").await;
    let at = |rel: &str| dir.path().join(rel);

    // An object's file, a folder of a key, a whole bucket folder: each now a symlink.
    swap_for_symlink(&at("bkt/report.txt"), &secret);
    swap_for_symlink(&at("bkt/d"), outside.path());
    swap_for_symlink(&at("other"), outside.path());
    for (bk, k) in [(&b, "report.txt"), (&b, "d/victim.conf")] {
        match get(&s, bk, k, None).await {
            Err(Error::NoSuchKey { .. }) => {}
            other => panic!(
                "GET {bk}/{k} through a symlink: {:?}",
                other.map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
            ),
        }
    }
    // A bucket folder that is a symlink is not the bucket's folder: the bucket is unavailable
    // (its objects are not taken for deleted) and nothing is read, written or deleted there.
    match get(&s, &b2, "victim.conf", None).await {
        Err(Error::Unavailable { .. }) => {}
        other => panic!(
            "GET other/victim.conf through a symlinked bucket folder: {:?}",
            other.map(|(b, _)| String::from_utf8_lossy(&b).into_owned())
        ),
    }
    // A key it never had is not there, whatever the folder is.
    assert!(matches!(
        get(&s, &b2, "secret", None).await,
        Err(Error::NoSuchKey { .. })
    ));
    let e = s
        .put_object(&b2, &key("planted"), one_chunk(b"x"), PutOptions::default())
        .await
        .expect_err("a write through a symlinked bucket folder");
    assert!(
        matches!(e, Error::Unavailable { .. } | Error::PathConflict { .. }),
        "PUT other/planted: {e}"
    );
    let e = s
        .delete_object(&b2, &key("victim.conf"), None)
        .await
        .expect_err("a delete through a symlinked bucket folder");
    assert!(
        matches!(e, Error::Unavailable { .. }),
        "DELETE other/victim.conf: {e}"
    );
    // Writes through the others are refused before anything is committed.
    let e = s
        .put_object(
            &b,
            &key("d/planted"),
            one_chunk(b"x"),
            PutOptions::default(),
        )
        .await
        .expect_err("a write through a symlink");
    assert!(
        matches!(e, Error::PathConflict { .. }),
        "PUT bkt/d/planted: {e}"
    );
    // Deletes forget the object and touch nothing outside.
    for (bk, k) in [(&b, "d/victim.conf"), (&b, "report.txt")] {
        s.delete_object(bk, &key(k), None)
            .await
            .unwrap_or_else(|e| panic!("DELETE {bk}/{k}: {e}"));
    }
    let mut names: Vec<String> = std::fs::read_dir(outside.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["secret", "victim.conf"],
        "the outside folder is untouched"
    );
    assert_eq!(
        std::fs::read(outside.path().join("victim.conf")).expect("read"),
        b"keep me"
    );
    assert_eq!(std::fs::read(&secret).expect("read"), b"outside the store");
    // A rescan does not walk into them either.
    let report = s.rescan().await.expect("rescan");
    assert_eq!(report.added, 0, "rescan followed a symlink: {report:?}");
}

/// A bucket folder moved aside, or replaced by an empty one (a filesystem unmounted from
/// under it): read as "no such key" before, a read then forgot the object's row (its
/// metadata lost for good), a rescan forgot them all, and a namespace bucket's catch-up
/// deleted the secondary's copies. The bucket is unavailable now, nothing is forgotten, and
/// it serves again once its folder is back; a copy of the folder is taken only when adopted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_replaced_bucket_folder_is_unavailable_not_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    let b = BucketName::parse("mounted").expect("name");
    s.create_bucket(&b).await.expect("bucket");
    let attrs = ferry::store::ObjectAttrs {
        content_type: Some("text/x-kept".into()),
        ..Default::default()
    };
    s.put_object(
        &b,
        &key("a"),
        one_chunk(b"alpha"),
        PutOptions {
            attrs: attrs.clone(),
            ..Default::default()
        },
    )
    .await
    .expect("put a");
    put(&s, &b, "d/b", b"beta").await;
    let (folder, aside) = (dir.path().join("mounted"), dir.path().join("mounted.aside"));
    let unavailable = |what: &str, r: Result<(), Error>| match r {
        Err(Error::Unavailable { message, .. }) => {
            assert!(message.contains("mounted"), "{what}: {message}");
        }
        other => panic!("{what}: {other:?}"),
    };
    for replaced in [false, true] {
        std::fs::rename(&folder, &aside).expect("move aside");
        if replaced {
            std::fs::create_dir(&folder).expect("an empty folder in its place");
        }
        let how = if replaced { "replaced" } else { "missing" };
        for k in ["a", "d/b"] {
            unavailable(
                &format!("{how}: GET {k}"),
                get(&s, &b, k, None).await.map(drop),
            );
            unavailable(
                &format!("{how}: HEAD {k}"),
                s.head_object(&b, &key(k), None).await.map(drop),
            );
        }
        unavailable(
            &format!("{how}: HEAD bucket"),
            s.head_bucket(&b).await.map(drop),
        );
        unavailable(
            &format!("{how}: LIST"),
            s.list_objects(&b, &Default::default()).await.map(drop),
        );
        unavailable(
            &format!("{how}: LIST versions"),
            s.list_versions(&b, &Default::default()).await.map(drop),
        );
        unavailable(
            &format!("{how}: PUT"),
            s.put_object(&b, &key("c"), one_chunk(b"c"), PutOptions::default())
                .await
                .map(drop),
        );
        unavailable(
            &format!("{how}: DELETE"),
            s.delete_object(&b, &key("a"), None).await.map(drop),
        );
        let report = s.rescan().await.expect("rescan");
        assert_eq!(
            report.removed, 0,
            "{how}: a rescan forgot objects: {report:?}"
        );
        assert_eq!(report.problems.len(), 1, "{how}: {report:?}");
        // Nor is an empty folder adopted, and a CreateBucket (`aws s3 mb`) makes none.
        if replaced {
            let report = s.rescan_with(true).await.expect("rescan --adopt");
            assert_eq!(report.removed, 0, "adopting forgot objects: {report:?}");
        }
        assert!(matches!(
            s.create_bucket(&b).await,
            Err(Error::BucketAlreadyExists { .. })
        ));
        assert_eq!(
            folder.exists(),
            replaced,
            "{how}: CreateBucket made a folder"
        );
        if replaced {
            std::fs::remove_dir(&folder).expect("rm the empty folder");
        }
        std::fs::rename(&aside, &folder).expect("put back");
        let (body, _) = get(&s, &b, "a", None).await.expect("GET a, back");
        assert_eq!(body, b"alpha");
        let meta = s.head_object(&b, &key("a"), None).await.expect("HEAD a");
        assert_eq!(
            meta.attrs.content_type.as_deref(),
            Some("text/x-kept"),
            "{how}"
        );
        assert_eq!(get(&s, &b, "d/b", None).await.expect("GET d/b").0, b"beta");
    }
    // A copy of the folder (restored from a backup) is another folder: taken when adopted.
    std::fs::rename(&folder, &aside).expect("move aside");
    std::fs::create_dir_all(folder.join("d")).expect("mkdir");
    std::fs::copy(aside.join("a"), folder.join("a")).expect("cp a");
    std::fs::copy(aside.join("d/b"), folder.join("d/b")).expect("cp b");
    unavailable("copied: GET", get(&s, &b, "a", None).await.map(drop));
    let report = s.rescan_with(true).await.expect("rescan --adopt");
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(
        get(&s, &b, "a", None).await.expect("GET a, adopted").0,
        b"alpha"
    );
    s.put_object(&b, &key("c"), one_chunk(b"c"), PutOptions::default())
        .await
        .expect("PUT after adopting");
    // A folder removed on purpose is adopted as an empty one, its objects forgotten.
    std::fs::remove_dir_all(&folder).expect("rm -rf");
    let report = s.rescan_with(true).await.expect("rescan --adopt");
    assert_eq!(report.removed, 3, "{report:?}");
    assert!(matches!(
        get(&s, &b, "a", None).await,
        Err(Error::NoSuchKey { .. })
    ));
    s.delete_bucket(&b).await.expect("then the bucket can go");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_files_at_a_key_path_do_not_hang_a_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    let b = BucketName::parse("bkt").expect("name");
    s.create_bucket(&b).await.expect("bucket");
    put(&s, &b, "pipe", b"was a file").await;
    put(&s, &b, "folder", b"was a file").await;
    let at = |rel: &str| dir.path().join(rel);
    std::fs::remove_file(at("bkt/pipe")).expect("rm");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        at("bkt/pipe"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    std::fs::remove_file(at("bkt/folder")).expect("rm");
    std::fs::create_dir(at("bkt/folder")).expect("mkdir");
    for k in ["pipe", "folder"] {
        match get(&s, &b, k, None).await {
            Err(Error::NoSuchKey { .. }) => {}
            other => panic!("GET of a {k}: {:?}", other.map(|(b, _)| b.len())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_key_whose_file_became_a_folder_keeps_the_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BucketName::parse("bkt").expect("name");
    {
        let s = FsStore::open("fs", dir.path()).await.expect("open");
        s.create_bucket(&b).await.expect("bucket");
        put(&s, &b, "k", b"object").await;
        std::fs::remove_file(dir.path().join("bkt/k")).expect("rm");
        std::fs::create_dir(dir.path().join("bkt/k")).expect("mkdir");
        std::fs::write(dir.path().join("bkt/k/notes.txt"), b"a user's file").expect("write");
        s.delete_object(&b, &key("k"), None)
            .await
            .expect("DELETE k");
    }
    assert_eq!(
        std::fs::read(dir.path().join("bkt/k/notes.txt")).expect("the user's file is kept"),
        b"a user's file"
    );
    // And the store opens again (no intent left that cannot be replayed).
    let s = FsStore::open("fs", dir.path()).await.expect("reopen");
    let report = s.rescan().await.expect("rescan");
    assert_eq!(report.added, 1, "{report:?}");
    assert_eq!(
        get(&s, &b, "k/notes.txt", None).await.expect("GET").0,
        b"a user's file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_kept_after_an_edit_outside_ferry_is_the_edited_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    let b = BucketName::parse("bkt").expect("name");
    s.create_bucket(&b).await.expect("bucket");
    s.set_versioning(&b, Versioning::Enabled)
        .await
        .expect("versioning");
    for (k, edited) in [
        ("grew", &b"0123456789 and more"[..]),
        ("shrank", b"01"),
        ("same", b"abcdefghij"),
    ] {
        put(&s, &b, k, b"0123456789").await;
        std::fs::write(dir.path().join("bkt").join(k), edited).expect("edit in place");
        put(&s, &b, k, b"new").await;
        let versions = s
            .list_versions(
                &b,
                &ferry::store::VersionsQuery {
                    prefix: k.into(),
                    max_keys: 10,
                    ..Default::default()
                },
            )
            .await
            .expect("versions");
        let old = versions
            .versions
            .iter()
            .find(|v| !v.is_latest && v.key.as_str() == k)
            .unwrap_or_else(|| panic!("{k}: no older version: {versions:?}"));
        assert_eq!(
            old.size,
            edited.len() as u64,
            "{k}: the kept version's size"
        );
        let (body, etag) = get(&s, &b, k, Some(&old.version_id))
            .await
            .unwrap_or_else(|e| panic!("{k}: GET of the kept version: {e}"));
        assert_eq!(body, edited, "{k}: the kept version's bytes");
        assert_eq!(etag, md5(edited), "{k}: the kept version's ETag");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_racing_a_replace_by_rename_serves_one_file_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    let b = BucketName::parse("bkt").expect("name");
    s.create_bucket(&b).await.expect("bucket");
    put(&s, &b, "f", b"start").await;
    let (a, bb) = (vec![b'a'; 1000], vec![b'b'; 3000]);
    let path = dir.path().join("bkt/f");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, path, a, bb) = (stop.clone(), path.clone(), a.clone(), bb.clone());
        std::thread::spawn(move || {
            let tmp = path.with_file_name(".f.tmp");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for data in [&a, &bb] {
                    std::fs::write(&tmp, data).expect("write temp");
                    std::fs::rename(&tmp, &path).expect("rename");
                }
            }
        })
    };
    let mut served = 0;
    for _ in 0..3000 {
        match get(&s, &b, "f", None).await {
            Ok((body, etag)) => {
                assert!(
                    body == a || body == bb || body == b"start",
                    "a body of {} bytes mixes two files",
                    body.len()
                );
                assert_eq!(etag, md5(&body), "the ETag served is another file's");
                served += 1;
            }
            // Caught mid-change: the client is told to try again.
            Err(Error::Unavailable { .. } | Error::NoSuchKey { .. }) => {}
            Err(e) => panic!("GET during replaces: {e}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
    assert!(served > 0, "no GET was served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_too_long_to_open_does_not_stop_the_first_scan() {
    use rustix::fs::{Mode, OFlags};
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("bkt")).expect("mkdir");
    std::fs::write(dir.path().join("bkt/plain.txt"), b"found").expect("write");
    // Folders nested past PATH_MAX (made one at a time, relative to the last).
    let mut at = rustix::fs::open(
        dir.path().join("bkt"),
        OFlags::PATH | OFlags::DIRECTORY,
        Mode::empty(),
    )
    .expect("open");
    let name = "d".repeat(200);
    for _ in 0..25 {
        rustix::fs::mkdirat(&at, name.as_str(), Mode::from_raw_mode(0o755)).expect("mkdirat");
        at = rustix::fs::openat(
            &at,
            name.as_str(),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .expect("openat");
    }
    let s = FsStore::open("fs", dir.path())
        .await
        .expect("first start with an over-long path");
    let b = BucketName::parse("bkt").expect("name");
    assert_eq!(
        get(&s, &b, "plain.txt", None).await.expect("GET").0,
        b"found"
    );
    let report = s.rescan().await.expect("rescan");
    assert!(report.skipped >= 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_sees_a_file_changed_outside_ferry_as_get_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    let b = BucketName::parse("bkt").expect("name");
    s.create_bucket(&b).await.expect("bucket");
    put(&s, &b, "k", b"0123456789").await;
    let grown = b"0123456789 and ten more";
    std::fs::write(dir.path().join("bkt/k"), grown).expect("edit");
    let m = s.head_object(&b, &key("k"), None).await.expect("HEAD");
    assert_eq!(
        (m.size, m.etag),
        (grown.len() as u64, md5(grown)),
        "HEAD after an edit"
    );
    std::fs::remove_file(dir.path().join("bkt/k")).expect("rm");
    match s.head_object(&b, &key("k"), None).await {
        Err(Error::NoSuchKey { .. }) => {}
        other => panic!("HEAD of a removed file: {other:?}"),
    }
}

/// User metadata describes an object's bytes: a same-size edit on disk drops it (rclone's
/// `mtime` kept made `rclone sync` take the edited file for its old copy), but a file that
/// was only touched, or moved aside and back, keeps it (a first version dropped it then, so
/// a folder restored from a backup lost every object's metadata).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_metadata_goes_with_the_bytes_not_with_the_inode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    let b = BucketName::parse("bkt").expect("name");
    s.create_bucket(&b).await.expect("bucket");
    let mut opts = PutOptions::default();
    opts.attrs
        .user_metadata
        .insert("mtime".into(), "1700000000.5".into());
    s.put_object(&b, &key("k"), one_chunk(b"0123456789"), opts)
        .await
        .expect("put");
    let file = dir.path().join("bkt/k");
    let meta_of = |m: ferry::store::ObjectMeta| m.attrs.user_metadata.get("mtime").cloned();
    // Touched, then copied aside and moved back (a new inode): the same bytes.
    std::thread::sleep(Duration::from_millis(20));
    let now = std::time::SystemTime::now();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(now))
        .expect("touch");
    let m = s.head_object(&b, &key("k"), None).await.expect("HEAD");
    assert_eq!(meta_of(m).as_deref(), Some("1700000000.5"), "after a touch");
    let aside = dir.path().join("aside");
    std::fs::copy(&file, &aside).expect("copy aside");
    std::fs::rename(&aside, &file).expect("move back");
    let m = s.head_object(&b, &key("k"), None).await.expect("HEAD");
    assert_eq!(meta_of(m).as_deref(), Some("1700000000.5"), "after a move");
    // Other bytes of the same size.
    std::fs::write(&file, b"9876543210").expect("edit");
    let m = s.head_object(&b, &key("k"), None).await.expect("HEAD");
    assert_eq!(m.etag, md5(b"9876543210"));
    assert_eq!(meta_of(m), None, "after an edit");
}

/// A rescan while a versioned bucket is being overwritten: the rescan looked at files and
/// rows without the key's lock, so it could find a key's file "gone" in the instant an
/// overwrite had moved the old one aside, then delete the row that had become the
/// non-current version (a version lost), or re-index a file the overwrite had replaced with
/// the old file's facts. Every version must survive, readable, with its own bytes. (The
/// window is microseconds: this test guards the fix but rarely catches the race without it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rescans_during_overwrites_lose_no_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    let b = BucketName::parse("raced").expect("bucket");
    s.create_bucket(&b).await.expect("bucket");
    s.set_versioning(&b, Versioning::Enabled)
        .await
        .expect("versioning");
    const BODIES: [&[u8]; 4] = [b"one", b"two two", b"three three three", b"four"];
    let writer = {
        let (s, b) = (s.clone(), b.clone());
        tokio::spawn(async move {
            for round in 0..60 {
                for k in 0..8 {
                    put(&s, &b, &format!("k{k}"), BODIES[round % 4]).await;
                }
            }
        })
    };
    while !writer.is_finished() {
        s.rescan().await.expect("rescan");
    }
    writer.await.expect("writer");
    let page = s
        .list_versions(
            &b,
            &ferry::store::VersionsQuery {
                prefix: String::new(),
                delimiter: None,
                key_marker: None,
                version_id_marker: None,
                max_keys: 1000,
            },
        )
        .await
        .expect("versions");
    assert_eq!(page.versions.len(), 480, "every overwrite kept a version");
    for v in &page.versions {
        let (data, etag) = get(&s, &b, v.key.as_str(), Some(&v.version_id))
            .await
            .unwrap_or_else(|e| panic!("{} {}: {e}", v.key, v.version_id));
        assert_eq!(md5(&data), etag, "{} {}", v.key, v.version_id);
        assert!(BODIES.contains(&data.as_slice()));
    }
}

async fn listed(s: &FsStore, b: &BucketName) -> Vec<String> {
    s.list_objects(
        b,
        &ferry::store::ListQuery {
            max_keys: 100,
            ..Default::default()
        },
    )
    .await
    .expect("list")
    .objects
    .into_iter()
    .map(|o| o.key.to_string())
    .collect()
}

/// A file removed behind the store's back read as missing but stayed listed until a rescan
/// (rclone then saw an object it could not read); a GET or HEAD that finds it gone forgets
/// it as a rescan would. A folder a user put in its place is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_finds_the_file_gone_forgets_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    let b = BucketName::parse("bkt").expect("name");
    s.create_bucket(&b).await.expect("bucket");
    for k in ["by-get", "by-head", "kept", "foldered"] {
        put(&s, &b, k, b"data").await;
    }
    let at = |rel: &str| dir.path().join(rel);
    std::fs::remove_file(at("bkt/by-get")).expect("rm");
    std::fs::remove_file(at("bkt/by-head")).expect("rm");
    std::fs::remove_file(at("bkt/foldered")).expect("rm");
    std::fs::create_dir(at("bkt/foldered")).expect("mkdir");
    std::fs::write(at("bkt/foldered/mine"), b"a user's file").expect("write");
    assert!(matches!(
        get(&s, &b, "by-get", None).await,
        Err(Error::NoSuchKey { .. })
    ));
    assert!(matches!(
        s.head_object(&b, &key("by-head"), None).await,
        Err(Error::NoSuchKey { .. })
    ));
    assert!(matches!(
        get(&s, &b, "foldered", None).await,
        Err(Error::NoSuchKey { .. })
    ));
    assert_eq!(listed(&s, &b).await, ["kept"]);
    assert_eq!(
        std::fs::read(at("bkt/foldered/mine")).expect("the user's file is kept"),
        b"a user's file"
    );
    // In a versioned bucket it is left to a rescan (an older version may have to become
    // the current one).
    let v = BucketName::parse("vers").expect("name");
    s.create_bucket(&v).await.expect("bucket");
    s.set_versioning(&v, Versioning::Enabled)
        .await
        .expect("versioning");
    put(&s, &v, "k", b"one").await;
    put(&s, &v, "k", b"two").await;
    std::fs::remove_file(at("vers/k")).expect("rm");
    assert!(matches!(
        get(&s, &v, "k", None).await,
        Err(Error::NoSuchKey { .. })
    ));
    assert_eq!(listed(&s, &v).await, ["k"]);
    // Nothing left for a rescan to forget in the plain bucket, and the store opens again.
    drop(s);
    let s = FsStore::open("fs", dir.path()).await.expect("reopen");
    let report = s.rescan_one(&b).await.expect("rescan");
    assert_eq!((report.removed, report.added), (0, 1), "{report:?}");
}
