//! A file move the store cannot make (a folder or file made immutable or read-only by a
//! POSIX user): refused before anything is committed where it can be told up front, and
//! otherwise held, so no later change of the key is lost to it.

use std::time::Duration;

use ferry::store::fs::FsStore;
use ferry::store::{BucketName, Error, Store};

use super::{get, key, put};
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
        // Tried again before the next batch (at most once a second): the write goes in.
        tokio::time::sleep(Duration::from_millis(1100)).await;
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
