//! What a POSIX user puts where a bucket's folder or an object's file would be: a symlink
//! or a file in a bucket's place, a file removed under a versioned key, a date past 2262.

use std::time::Duration;

use ferry::store::fs::FsStore;
use ferry::store::{BucketName, Error, Store, Versioning};

use super::{all_versions, get, key, put};

/// CreateBucket over a symlink answered 200 and left a bucket no write could use; over a
/// file, 500. Both are refused saying what is in the way, and nothing is followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_bucket_refuses_what_is_not_a_folder_in_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("outside");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("linked")).expect("symlink");
    std::os::unix::fs::symlink("/nowhere/at/all", dir.path().join("dangling")).expect("symlink");
    std::fs::write(dir.path().join("afile"), b"someone's data").expect("file");
    for (name, what) in [
        ("linked", "symlink"),
        ("dangling", "symlink"),
        ("afile", "a file"),
    ] {
        let b = BucketName::parse(name).expect("name");
        match s.create_bucket(&b).await {
            Err(Error::BucketNameTaken { why, .. }) => assert!(why.contains(what), "{why}"),
            other => panic!("{name}: {other:?}"),
        }
        assert!(matches!(
            s.head_bucket(&b).await,
            Err(Error::NoSuchBucket { .. })
        ));
    }
    assert_eq!(
        std::fs::read(dir.path().join("afile")).expect("read"),
        b"someone's data"
    );
    assert_eq!(std::fs::read_dir(outside.path()).expect("ls").count(), 0);
    // A plain folder a user made is taken as the bucket, with what it holds (at once, not
    // after a rescan: a probe found it listed empty).
    std::fs::create_dir_all(dir.path().join("folder/sub")).expect("mkdir");
    std::fs::write(dir.path().join("folder/sub/pre.txt"), b"there before").expect("write");
    let b = BucketName::parse("folder").expect("name");
    s.create_bucket(&b)
        .await
        .expect("a folder becomes the bucket");
    assert_eq!(
        get(&s, &b, "sub/pre.txt", None).await.expect("its file").0,
        b"there before"
    );
}

/// The current version's file removed behind Ferry's back, then the key written again: the
/// old version stayed listed (its size and ETag) yet every GET of it answered NoSuchKey.
/// Its bytes are gone, so it is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_whose_file_was_removed_is_forgotten_not_kept_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    let b = BucketName::parse("verb").expect("name");
    s.create_bucket(&b).await.expect("bucket");
    s.set_versioning(&b, Versioning::Enabled)
        .await
        .expect("versioning");
    for (k, replace_with_link) in [("r", false), ("l", true)] {
        put(&s, &b, k, b"v1!").await;
        let file = dir.path().join("verb").join(k);
        std::fs::remove_file(&file).expect("rm");
        if replace_with_link {
            std::os::unix::fs::symlink("/etc/hostname", &file).expect("symlink");
        }
        put(&s, &b, k, b"second").await;
        let versions = all_versions(&s, &b).await;
        let of_k: Vec<_> = versions
            .versions
            .iter()
            .filter(|v| v.key.as_str() == k)
            .collect();
        assert_eq!(of_k.len(), 1, "{k}: {of_k:?}");
        assert_eq!(get(&s, &b, k, None).await.expect("get").0, b"second");
    }
    // A delete (a marker) over a removed file forgets it the same way.
    put(&s, &b, "m", b"v1!").await;
    std::fs::remove_file(dir.path().join("verb/m")).expect("rm");
    s.delete_object(&b, &key("m"), None).await.expect("delete");
    let versions = all_versions(&s, &b).await;
    assert!(
        !versions
            .versions
            .iter()
            .any(|v| v.key.as_str() == "m" && !v.delete_marker),
        "{:?}",
        versions.versions
    );
}

/// A file dated after 2262 (ext4 keeps dates up to 2446) listed as modified in 1861: its
/// nanoseconds wrapped around an i64. It reads as the latest date that fits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_dated_far_ahead_is_not_dated_in_the_past() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    let b = BucketName::parse("far").expect("name");
    s.create_bucket(&b).await.expect("bucket");
    let file = dir.path().join("far/future");
    std::fs::write(&file, b"from 2446").expect("write");
    let when = std::time::UNIX_EPOCH + Duration::from_secs(1 << 34); // 2514, clamped by ext4
    std::fs::File::options()
        .write(true)
        .open(&file)
        .expect("open")
        .set_modified(when)
        .expect("set mtime");
    s.rescan().await.expect("rescan");
    let meta = s.head_object(&b, &key("future"), None).await.expect("head");
    assert!(meta.last_modified.year() >= 2262, "{}", meta.last_modified);
    let page = s
        .list_objects(
            &b,
            &ferry::store::ListQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(page.objects.len(), 1);
    assert!(
        page.objects.iter().all(|o| o.last_modified.year() >= 2262),
        "{:?}",
        page.objects
    );
}
