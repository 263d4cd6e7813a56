//! Buckets: create, head, list, delete, and the errors around them.

use super::Gaps;
use super::helpers::*;
use crate::store::*;

pub async fn buckets(s: &dyn Store, prefix: &str, gaps: Gaps) {
    let caps = s.caps();
    let bk = bucket(prefix, "buckets");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    expect_err!(
        s,
        "creating a bucket that exists",
        s.create_bucket(&bk).await,
        Error::BucketAlreadyExists { .. }
    );
    let info = ok(s, "head_bucket", s.head_bucket(&bk).await);
    assert_eq!(info.name, bk.as_str(), "{}: head_bucket name", s.name());
    assert_recent(s, "head_bucket creation time", info.created);
    let names: Vec<String> = ok(s, "list_buckets", s.list_buckets().await)
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert!(
        names.contains(&bk.to_string()),
        "{}: list_buckets lacks {bk}: {names:?}",
        s.name()
    );
    if caps.versioning {
        assert_versioning(s, &bk, Versioning::Unversioned, gaps, "a new bucket").await;
    }
    if caps.tagging {
        assert_eq!(
            ok(s, "get_bucket_tags", s.get_bucket_tags(&bk).await),
            None,
            "{}: a new bucket has no tag set",
            s.name()
        );
        let t = tags(&[("env", "test"), ("owner", "ferry")]);
        ok(
            s,
            "put_bucket_tags",
            s.put_bucket_tags(&bk, Some(t.clone())).await,
        );
        let mut got = ok(s, "get_bucket_tags", s.get_bucket_tags(&bk).await)
            .unwrap_or_else(|| panic!("{}: bucket tags were not kept", s.name()));
        got.sort();
        assert_eq!(got, t, "{}: bucket tags", s.name());
        ok(s, "delete bucket tags", s.put_bucket_tags(&bk, None).await);
        assert_eq!(
            ok(s, "get_bucket_tags", s.get_bucket_tags(&bk).await),
            None,
            "{}: deleted bucket tags",
            s.name()
        );
    }

    // Not empty while an object remains.
    put(s, &bk, "x", b"x").await;
    expect_err!(
        s,
        "deleting a bucket with an object",
        s.delete_bucket(&bk).await,
        Error::BucketNotEmpty { .. }
    );
    assert_content(s, &bk, "x", b"x", "a refused bucket delete keeps objects").await;
    ok(s, "delete x", s.delete_object(&bk, &k("x"), None).await);
    // An unfinished multipart upload does not keep a bucket (S3 deletes it with the bucket).
    ok(
        s,
        "create_multipart",
        s.create_multipart(&bk, &k("pending"), PutOptions::default())
            .await,
    );

    ok(
        s,
        "delete_bucket of an empty bucket",
        s.delete_bucket(&bk).await,
    );
    expect_err!(
        s,
        "head of a deleted bucket",
        s.head_bucket(&bk).await,
        Error::NoSuchBucket { .. }
    );
    let names: Vec<String> = ok(s, "list_buckets", s.list_buckets().await)
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert!(
        !names.contains(&bk.to_string()),
        "{}: list_buckets still has the deleted {bk}",
        s.name()
    );
    expect_err!(
        s,
        "deleting a deleted bucket",
        s.delete_bucket(&bk).await,
        Error::NoSuchBucket { .. }
    );
    // The bucket can be made again, empty.
    ok(s, "re-create_bucket", s.create_bucket(&bk).await);
    assert_missing(s, &bk, "x", "a re-created bucket is empty").await;
    let q = UploadsQuery {
        max_uploads: 10,
        ..Default::default()
    };
    let left = ok(s, "list_uploads", s.list_uploads(&bk, &q).await).uploads;
    assert!(
        left.is_empty(),
        "{}: an upload outlived its bucket: {left:?}",
        s.name()
    );

    let missing = bucket(prefix, "never-made");
    expect_err!(
        s,
        "head_bucket of a missing bucket",
        s.head_bucket(&missing).await,
        Error::NoSuchBucket { .. }
    );
    expect_err!(
        s,
        "delete_bucket of a missing bucket",
        s.delete_bucket(&missing).await,
        Error::NoSuchBucket { .. }
    );
    expect_err!(
        s,
        "list_objects of a missing bucket",
        s.list_objects(
            &missing,
            &ListQuery {
                max_keys: 10,
                ..Default::default()
            }
        )
        .await,
        Error::NoSuchBucket { .. }
    );
    expect_err!(
        s,
        "put_object into a missing bucket",
        s.put_object(&missing, &k("a"), body(b"a"), sized(1)).await,
        Error::NoSuchBucket { .. }
    );
    expect_err!(
        s,
        "create_multipart in a missing bucket",
        s.create_multipart(&missing, &k("a"), PutOptions::default())
            .await,
        Error::NoSuchBucket { .. }
    );
    if caps.versioning && gaps.get_versioning.is_none() {
        expect_err!(
            s,
            "get_versioning of a missing bucket",
            s.get_versioning(&missing).await,
            Error::NoSuchBucket { .. }
        );
    }
}
