//! Path semantics (stores that keep keys as file paths): `a` beside `a/b` is a conflict, and
//! an S3 key that is no path is refused without touching anything; every other store keeps
//! such keys as they are.

use super::Gaps;
use super::helpers::*;
use crate::store::*;

/// S3 keys that are not paths: a store whose keys are paths refuses each (`Error::Name`)
/// and touches nothing, above all not another bucket's object that `..` would reach; any
/// other store keeps them byte for byte.
pub async fn keys_beyond_paths(s: &dyn Store, prefix: &str, gaps: Gaps) {
    let bk = bucket(prefix, "odd-keys");
    let other = bucket(prefix, "odd-other");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    ok(s, "create_bucket", s.create_bucket(&other).await);
    put(s, &other, "victim", b"keep me").await;
    let long = format!("long/{}", "x".repeat(300));
    let escape = format!("../{other}/victim");
    let keys = [
        "/leading",
        "a//b",
        "dot/./x",
        "up/../x",
        long.as_str(),
        escape.as_str(),
    ];
    if s.caps().path_semantics {
        for key in keys {
            let what = format!("a key that is no path ({key:?})");
            expect_err!(
                s,
                &what,
                s.put_object(&bk, &k(key), body(b"evil"), sized(4)).await,
                Error::Name(_)
            );
            // A key it cannot hold it does not hold: deleting it is done, as S3 answers the
            // delete of a key that is not there (a sync's delete, a namespace secondary's
            // share of a primary's delete, would otherwise fail for good), touching nothing.
            let done = ok(s, "delete", s.delete_object(&bk, &k(key), None).await);
            assert!(!done.delete_marker, "{}: {what}: {done:?}", s.name());
            expect_err!(
                s,
                &what,
                s.delete_object(&other, &k(key), Some("nosuchversion"))
                    .await,
                Error::Name(_)
            );
            expect_err!(
                s,
                &what,
                s.head_object(&bk, &k(key), None).await,
                Error::Name(_)
            );
            expect_err!(
                s,
                &what,
                s.copy_object(&other, &k("victim"), &bk, &k(key), CopyOptions::default())
                    .await,
                Error::Name(_)
            );
            expect_err!(
                s,
                &what,
                s.create_multipart(&bk, &k(key), PutOptions::default())
                    .await,
                Error::Name(_)
            );
            // Nothing is read through it either: `../other/victim` must not serve another
            // bucket's object.
            expect_err!(
                s,
                &what,
                s.get_object(&bk, &k(key), GetOptions::default()).await,
                Error::Name(_)
            );
            expect_err!(
                s,
                &what,
                s.copy_object(&bk, &k(key), &other, &k("copied"), CopyOptions::default())
                    .await,
                Error::Name(_)
            );
            expect_err!(
                s,
                &what,
                s.get_object_tags(&bk, &k(key), None).await,
                Error::Name(_)
            );
        }
        assert_content(s, &other, "victim", b"keep me", "another bucket's object").await;
        return;
    }
    if let Some(why) = gaps.keys_beyond_paths {
        skip(s, "S3 keys that are not paths", why);
        return;
    }
    for (i, key) in keys.iter().enumerate() {
        let data = format!("body {i}");
        put(s, &bk, key, data.as_bytes()).await;
        assert_content(s, &bk, key, data.as_bytes(), "an S3 key that is no path").await;
    }
    let page = ok(
        s,
        "list",
        s.list_objects(
            &bk,
            &ListQuery {
                prefix: String::new(),
                delimiter: None,
                start_after: None,
                max_keys: 1000,
            },
        )
        .await,
    );
    let mut listed: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    let mut want = keys.to_vec();
    listed.sort_unstable();
    want.sort_unstable();
    assert_eq!(listed, want, "{}: the odd keys as listed", s.name());
    for key in keys {
        ok(s, "delete", s.delete_object(&bk, &k(key), None).await);
    }
    assert_content(s, &other, "victim", b"keep me", "another bucket's object").await;
}

pub async fn path_conflicts(s: &dyn Store, prefix: &str) {
    let bk = bucket(prefix, "paths");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    put(s, &bk, "f", b"file").await;
    expect_err!(
        s,
        "a key below an object",
        s.put_object(&bk, &k("f/child"), body(b"2"), sized(1)).await,
        Error::PathConflict { .. }
    );
    expect_err!(
        s,
        "a key two levels below an object",
        s.put_object(&bk, &k("f/x/y"), body(b"2"), sized(1)).await,
        Error::PathConflict { .. }
    );
    assert_missing(s, &bk, "f/child", "a refused key below an object").await;
    assert_content(s, &bk, "f", b"file", "the object in the way").await;

    put(s, &bk, "d/child", b"child").await;
    expect_err!(
        s,
        "a key that is a prefix of others",
        s.put_object(&bk, &k("d"), body(b"4"), sized(1)).await,
        Error::PathConflict { .. }
    );
    assert_missing(s, &bk, "d", "a refused key above others").await;
    assert_content(s, &bk, "d/child", b"child", "the object below").await;
    // A directory marker is not a file, so it may coexist with keys below it.
    put(s, &bk, "d/", b"").await;
    assert_content(s, &bk, "d/", b"", "a directory marker").await;
    assert_content(
        s,
        &bk,
        "d/child",
        b"child",
        "a key below a directory marker",
    )
    .await;
    expect_err!(
        s,
        "copy onto a key below an object",
        s.copy_object(
            &bk,
            &k("d/child"),
            &bk,
            &k("f/copy"),
            CopyOptions::default()
        )
        .await,
        Error::PathConflict { .. }
    );
    let id = ok(
        s,
        "create_multipart",
        s.create_multipart(&bk, &k("f/mp"), PutOptions::default())
            .await,
    );
    let info = ok(
        s,
        "upload_part",
        s.upload_part(&bk, &k("f/mp"), &id, 1, body(b"p"), sized(1))
            .await,
    );
    expect_err!(
        s,
        "completing an upload below an object",
        s.complete_multipart(
            &bk,
            &k("f/mp"),
            &id,
            &[CompletedPart {
                part_number: 1,
                etag: info.etag,
                checksum: None,
                claimed: None,
            }],
            None
        )
        .await,
        Error::PathConflict { .. }
    );
    ok(s, "abort", s.abort_multipart(&bk, &k("f/mp"), &id).await);

    // Deleting the keys below makes room.
    ok(s, "delete", s.delete_object(&bk, &k("d/child"), None).await);
    ok(s, "delete", s.delete_object(&bk, &k("d/"), None).await);
    put(s, &bk, "d", b"now a file").await;
    assert_content(
        s,
        &bk,
        "d",
        b"now a file",
        "a key where a directory was emptied",
    )
    .await;
    ok(s, "delete", s.delete_object(&bk, &k("f"), None).await);
    put(s, &bk, "f/child", b"now below").await;
    assert_content(
        s,
        &bk,
        "f/child",
        b"now below",
        "a key where an object was deleted",
    )
    .await;
}
