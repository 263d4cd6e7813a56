//! Path semantics (stores that keep keys as file paths): `a` beside `a/b` is a conflict.

use super::helpers::*;
use crate::store::*;

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
