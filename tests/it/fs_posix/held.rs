//! A file move the store cannot make (a folder or file made immutable or read-only by a
//! POSIX user): refused before anything is committed where it can be told up front, and
//! otherwise held, so no later change of the key is lost to it.

use std::time::Duration;

use ferry::store::fs::FsStore;
use ferry::store::{BucketName, Error, Store, Versioning};

use super::{all_versions, get, key, put, try_put};
use crate::support::immutable;

/// A DELETE in a folder the server may not change answered 500 after committing the delete;
/// its move, replayed at the next start, deleted the object written since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_in_a_folder_it_may_not_change_is_refused_before_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BucketName::parse("bkt").expect("name");
    let s = FsStore::open("fs", dir.path()).await.expect("open");
    s.create_bucket(&b).await.expect("bucket");
    put(&s, &b, "dir/obj", b"v1").await;
    let folder = dir.path().join("bkt/dir");
    immutable(&folder, true);
    let r = s.delete_object(&b, &key("dir/obj"), None).await;
    immutable(&folder, false);
    assert!(matches!(r, Err(Error::Denied(_))), "{r:?}");
    // Nothing changed.
    assert_eq!(get(&s, &b, "dir/obj", None).await.expect("get").0, b"v1");
    s.delete_object(&b, &key("dir/obj"), None)
        .await
        .expect("delete once allowed");
    assert!(matches!(
        get(&s, &b, "dir/obj", None).await,
        Err(Error::NoSuchKey { .. })
    ));
}

/// A move that fails only when it is made (the file itself immutable) after the delete's
/// index change committed: later changes of the key wait until it is finished, so a write
/// acknowledged meanwhile is not moved away by it, now or at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_that_failed_after_commit_holds_its_key_until_finished() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BucketName::parse("bkt").expect("name");
    let file = dir.path().join("bkt/dir/obj");
    {
        let s = FsStore::open("fs", dir.path()).await.expect("open");
        s.create_bucket(&b).await.expect("bucket");
        put(&s, &b, "dir/obj", b"v1").await;
        put(&s, &b, "other", b"o1").await;
        immutable(&file, true);
        // With writes of other keys alongside (one batch, most likely): they are done, each
        // change's moves finished on its own.
        let (k_obj, k_a, k_cd) = (key("dir/obj"), key("a"), key("c/d"));
        let (r, a, c) = tokio::join!(
            s.delete_object(&b, &k_obj, None),
            s.put_object(
                &b,
                &k_a,
                crate::store::one_chunk(b"alongside a"),
                Default::default()
            ),
            s.put_object(
                &b,
                &k_cd,
                crate::store::one_chunk(b"alongside c"),
                Default::default()
            ),
        );
        assert!(r.is_err(), "the delete's move cannot be made: {r:?}");
        a.expect("a write alongside");
        c.expect("another write alongside");
        assert_eq!(get(&s, &b, "a", None).await.expect("a").0, b"alongside a");
        assert_eq!(
            get(&s, &b, "c/d", None).await.expect("c/d").0,
            b"alongside c"
        );
        // The key is held: a write is refused before anything of it is committed, and
        // other keys go on.
        let w = s
            .put_object(
                &b,
                &key("dir/obj"),
                crate::store::one_chunk(b"v2"),
                Default::default(),
            )
            .await;
        assert!(matches!(w, Err(Error::Unavailable { .. })), "{w:?}");
        put(&s, &b, "other", b"o2").await;
        immutable(&file, false);
        // Tried again with no write to wake it: the key comes back (deleted, as asked).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match get(&s, &b, "dir/obj", None).await {
                Err(Error::NoSuchKey { .. }) => break,
                Err(Error::Unavailable { .. }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("{other:?}"),
            }
        }
        put(&s, &b, "dir/obj", b"v2").await;
        assert_eq!(get(&s, &b, "dir/obj", None).await.expect("get").0, b"v2");
    }
    // The next start replays nothing that moves v2 away.
    let s = FsStore::open("fs", dir.path()).await.expect("reopen");
    assert_eq!(get(&s, &b, "dir/obj", None).await.expect("get").0, b"v2");
    assert_eq!(get(&s, &b, "other", None).await.expect("get").0, b"o2");
    assert_eq!(
        get(&s, &b, "c/d", None).await.expect("c/d").0,
        b"alongside c"
    );
}

/// A versioned overwrite of an immutable file: its change committed, its move failed, and
/// the body's temp file was removed on the error, so the retry took the move for done: the
/// new row served the old bytes and the acknowledged version before it was lost. The body
/// now stays for the held move; the key reads as unavailable (its index and file disagree)
/// and a rescan leaves it alone until the move is done, and then every version reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_overwrite_keeps_every_version_and_reads_as_unavailable_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = BucketName::parse("ver").expect("name");
    let file = dir.path().join("ver/k");
    let (v1, v3);
    {
        let s = FsStore::open("fs", dir.path()).await.expect("open");
        s.create_bucket(&b).await.expect("bucket");
        s.set_versioning(&b, Versioning::Enabled)
            .await
            .expect("versioning");
        v1 = try_put(&s, &b, "k", b"v1").await.expect("v1").version_id;
        immutable(&file, true);
        let w = try_put(&s, &b, "k", b"v2").await;
        assert!(w.is_err(), "the overwrite's move cannot be made: {w:?}");
        // Held: not read from a file that is not its row's, not rescanned, not written.
        assert!(matches!(
            get(&s, &b, "k", None).await,
            Err(Error::Unavailable { .. })
        ));
        let report = s.rescan().await.expect("rescan");
        assert_eq!((report.added, report.removed), (0, 0), "{report:?}");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let again = try_put(&s, &b, "k", b"v2").await;
        assert!(matches!(again, Err(Error::Unavailable { .. })), "{again:?}");
        immutable(&file, false);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        v3 = try_put(&s, &b, "k", b"v3")
            .await
            .expect("v3 once the move is done")
            .version_id;
        assert_eq!(get(&s, &b, "k", None).await.expect("get").0, b"v3");
    }
    let s = FsStore::open("fs", dir.path()).await.expect("reopen");
    assert_eq!(get(&s, &b, "k", None).await.expect("latest").0, b"v3");
    assert_eq!(
        get(&s, &b, "k", Some(&v1)).await.expect("v1").0,
        b"v1",
        "the version acknowledged before the failed overwrite"
    );
    let versions = all_versions(&s, &b).await;
    let ids: Vec<String> = versions
        .versions
        .iter()
        .map(|v| v.version_id.clone())
        .collect();
    assert_eq!(ids.len(), 3, "v1, the held v2, v3: {ids:?}");
    assert_eq!(ids[0], v3);
    for id in &ids {
        let body = get(&s, &b, "k", Some(id))
            .await
            .expect("every version reads")
            .0;
        assert!(
            [&b"v1"[..], b"v2", b"v3"].contains(&body.as_slice()),
            "{body:?}"
        );
    }
}
