//! Versioning: version ids, delete markers, the null version, suspension.

use super::Gaps;
use super::helpers::*;
use crate::store::*;

pub async fn versioning(s: &dyn Store, prefix: &str, gaps: Gaps) {
    let caps = s.caps();
    let bk = bucket(prefix, "versions");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    let v = k("v");
    let null = put(s, &bk, "v", b"null version").await;
    assert_eq!(
        null.version_id,
        NULL_VERSION,
        "{}: before versioning",
        s.name()
    );
    ok(
        s,
        "enable versioning",
        s.set_versioning(&bk, Versioning::Enabled).await,
    );
    assert_versioning(s, &bk, Versioning::Enabled, gaps, "after enabling").await;

    // Every write makes a new version; old ones stay readable.
    let m1 = put(s, &bk, "v", b"one").await;
    let m2 = put(s, &bk, "v", b"two").await;
    assert!(
        m1.version_id != NULL_VERSION && m2.version_id != NULL_VERSION,
        "{}: writes with versioning enabled get version ids: {} {}",
        s.name(),
        m1.version_id,
        m2.version_id
    );
    assert_ne!(
        m1.version_id,
        m2.version_id,
        "{}: version ids differ",
        s.name()
    );
    assert_content(s, &bk, "v", b"two", "the latest version").await;
    let head = ok(s, "head", s.head_object(&bk, &v, None).await);
    assert_eq!(
        head.version_id,
        m2.version_id,
        "{}: HEAD version id",
        s.name()
    );
    for (vid, want) in [
        (m1.version_id.as_str(), &b"one"[..]),
        (m2.version_id.as_str(), b"two"),
        (NULL_VERSION, b"null version"),
    ] {
        let (meta, data) = get_with(s, &bk, "v", by_version(vid)).await;
        assert_eq!(data, want, "{}: GET version {vid}", s.name());
        assert_eq!(meta.version_id, vid, "{}: GET version {vid}: id", s.name());
        let head = ok(s, "head version", s.head_object(&bk, &v, Some(vid)).await);
        assert_eq!(
            (head.version_id.as_str(), head.etag.as_str()),
            (vid, md5_hex(want).as_str()),
            "{}: HEAD version {vid}",
            s.name()
        );
    }
    let listed = all_versions(s, &bk, "v", 1000).await;
    assert_eq!(
        listed,
        vec![
            ("v".to_owned(), m2.version_id.clone(), false, true),
            ("v".to_owned(), m1.version_id.clone(), false, false),
            ("v".to_owned(), NULL_VERSION.to_owned(), false, false),
        ],
        "{}: versions newest first, only the newest latest",
        s.name()
    );
    if caps.tagging {
        ok(
            s,
            "tag an old version",
            s.put_object_tags(&bk, &v, Some(&m1.version_id), tags(&[("old", "1")]))
                .await,
        );
        let (vid, t) = ok(
            s,
            "get tags of an old version",
            s.get_object_tags(&bk, &v, Some(&m1.version_id)).await,
        );
        assert_eq!(
            (vid.as_str(), t),
            (m1.version_id.as_str(), tags(&[("old", "1")])),
            "{}: tags of an old version",
            s.name()
        );
        let (_, t) = ok(s, "get tags", s.get_object_tags(&bk, &v, None).await);
        assert!(
            t.is_empty(),
            "{}: tagging an old version leaves the latest",
            s.name()
        );
    }
    let c = ok(
        s,
        "copy an old version",
        s.copy_object(
            &bk,
            &v,
            &bk,
            &k("from-old"),
            CopyOptions {
                source_version_id: Some(m1.version_id.clone()),
                ..Default::default()
            },
        )
        .await,
    );
    assert_ne!(
        c.version_id,
        NULL_VERSION,
        "{}: a copy gets a version id",
        s.name()
    );
    assert_content(s, &bk, "from-old", b"one", "a copy of an old version").await;

    // A plain DELETE makes a delete marker.
    let d = ok(s, "delete", s.delete_object(&bk, &v, None).await);
    assert!(
        d.delete_marker,
        "{}: a DELETE with versioning enabled makes a delete marker: {d:?}",
        s.name()
    );
    let marker = d
        .version_id
        .unwrap_or_else(|| panic!("{}: a delete marker has a version id", s.name()));
    assert_ne!(
        marker,
        NULL_VERSION,
        "{}: the marker's version id",
        s.name()
    );
    for what in ["GET", "HEAD"] {
        let r = match what {
            "GET" => s
                .get_object(&bk, &v, GetOptions::default())
                .await
                .map(|_| ()),
            _ => s.head_object(&bk, &v, None).await.map(|_| ()),
        };
        match r {
            Err(Error::NoSuchKey {
                delete_marker: Some(m),
                ..
            }) if m == marker => {}
            Err(Error::NoSuchKey {
                delete_marker: None,
                ..
            }) if what == "GET" && gaps.delete_marker_reporting.is_some() => {
                skip(
                    s,
                    "the delete marker named by GET",
                    gaps.delete_marker_reporting.unwrap_or_default(),
                );
            }
            other => panic!(
                "{}: {what} behind a delete marker: expected NoSuchKey naming marker {marker}, got {:?}",
                s.name(),
                other.err()
            ),
        }
    }
    expect_err!(
        s,
        "HEAD of the delete marker's version",
        s.head_object(&bk, &v, Some(&marker)).await,
        Error::IsDeleteMarker { .. }
    );
    match gaps.delete_marker_reporting {
        Some(why) => skip(s, "GET of the delete marker's version", why),
        None => expect_err!(
            s,
            "GET of the delete marker's version",
            s.get_object(&bk, &v, by_version(&marker)).await,
            Error::IsDeleteMarker { .. }
        ),
    }
    assert_content_version(s, &bk, "v", &m2.version_id, b"two").await;
    let listed = ok(
        s,
        "list",
        s.list_objects(
            &bk,
            &ListQuery {
                max_keys: 100,
                ..Default::default()
            },
        )
        .await,
    );
    assert!(
        !listed.objects.iter().any(|o| o.key == v),
        "{}: a key behind a delete marker is not listed",
        s.name()
    );
    let listed = all_versions(s, &bk, "v", 1000).await;
    assert_eq!(
        listed.first(),
        Some(&("v".to_owned(), marker.clone(), true, true)),
        "{}: the delete marker is the latest version: {listed:?}",
        s.name()
    );
    assert_eq!(
        listed.len(),
        4,
        "{}: versions after a delete: {listed:?}",
        s.name()
    );
    expect_err!(
        s,
        "deleting a bucket that holds versions",
        s.delete_bucket(&bk).await,
        Error::BucketNotEmpty { .. }
    );

    // DELETE by version id removes exactly that version.
    let d = ok(
        s,
        "delete the marker",
        s.delete_object(&bk, &v, Some(&marker)).await,
    );
    assert_eq!(
        d.version_id.as_deref(),
        Some(marker.as_str()),
        "{}: deleting a delete marker by id names it",
        s.name()
    );
    match gaps.delete_marker_reporting {
        Some(why) => skip(s, "whether DELETE of a delete marker says it was one", why),
        None => assert!(
            d.delete_marker,
            "{}: deleting a delete marker by id says it was a delete marker",
            s.name()
        ),
    }
    assert_content(
        s,
        &bk,
        "v",
        b"two",
        "removing the marker restores the latest",
    )
    .await;
    let d = ok(
        s,
        "delete a version",
        s.delete_object(&bk, &v, Some(&m2.version_id)).await,
    );
    assert_eq!(
        (d.version_id.as_deref(), d.delete_marker),
        (Some(m2.version_id.as_str()), false),
        "{}: deleting a version by id",
        s.name()
    );
    assert_content(
        s,
        &bk,
        "v",
        b"one",
        "deleting the latest version restores the one before",
    )
    .await;
    expect_err!(
        s,
        "GET of a deleted version",
        s.get_object(&bk, &v, by_version(&m2.version_id)).await,
        Error::NoSuchVersion { .. }
    );
    expect_err!(
        s,
        "HEAD of a deleted version",
        s.head_object(&bk, &v, Some(&m2.version_id)).await,
        Error::NoSuchVersion { .. }
    );
    let listed = all_versions(s, &bk, "v", 1000).await;
    assert_eq!(
        listed,
        vec![
            ("v".to_owned(), m1.version_id.clone(), false, true),
            ("v".to_owned(), NULL_VERSION.to_owned(), false, false),
        ],
        "{}: versions after deleting by id",
        s.name()
    );

    // Paging through versions with key and version markers, splitting keys across pages.
    for i in 0..3 {
        for body_ in [&b"a"[..], b"bb", b"ccc"] {
            put(s, &bk, &format!("w/{i}"), body_).await;
        }
    }
    ok(s, "delete", s.delete_object(&bk, &k("w/1"), None).await);
    let full = all_versions(s, &bk, "w/", 1000).await;
    assert_eq!(full.len(), 10, "{}: versions under w/: {full:?}", s.name());
    let keys: Vec<&str> = full.iter().map(|v| v.0.as_str()).collect();
    assert_eq!(
        keys,
        [
            "w/0", "w/0", "w/0", "w/1", "w/1", "w/1", "w/1", "w/2", "w/2", "w/2"
        ],
        "{}: versions by key",
        s.name()
    );
    assert!(
        full[3].2 && full[3].3,
        "{}: w/1's delete marker comes first and is latest: {full:?}",
        s.name()
    );
    for max_keys in [1, 2, 3, 4] {
        let paged = all_versions(s, &bk, "w/", max_keys).await;
        assert_eq!(paged, full, "{}: versions in pages of {max_keys}", s.name());
    }
    // Deleting a version that is not the latest leaves the latest alone.
    let middle = full[1].1.clone();
    ok(
        s,
        "delete a non-current version",
        s.delete_object(&bk, &k("w/0"), Some(&middle)).await,
    );
    assert_content(s, &bk, "w/0", b"ccc", "deleting a non-current version").await;
    let left = all_versions(s, &bk, "w/0", 1000).await;
    assert_eq!(
        left,
        vec![full[0].clone(), full[2].clone()],
        "{}: versions after deleting a non-current one",
        s.name()
    );
    assert_content_version(s, &bk, "w/0", &full[2].1, b"a").await;

    // Suspended: writes replace the one null version; old versions stay.
    ok(
        s,
        "suspend versioning",
        s.set_versioning(&bk, Versioning::Suspended).await,
    );
    assert_versioning(s, &bk, Versioning::Suspended, gaps, "after suspending").await;
    let s1 = put(s, &bk, "v", b"s1").await;
    assert_eq!(s1.version_id, NULL_VERSION, "{}: suspended PUT", s.name());
    let s2 = put(s, &bk, "v", b"s2").await;
    assert_eq!(s2.version_id, NULL_VERSION, "{}: suspended PUT", s.name());
    assert_content(s, &bk, "v", b"s2", "a suspended overwrite").await;
    assert_content_version(s, &bk, "v", NULL_VERSION, b"s2").await;
    // The versions made while versioning was enabled stay.
    let mut older = vec![("v".to_owned(), m1.version_id.clone(), false, false)];
    match gaps.suspended_versioning {
        Some(why) => {
            skip(s, "the versions kept by a PUT while suspended", why);
            older.clear();
        }
        None => assert_content_version(s, &bk, "v", &m1.version_id, b"one").await,
    }
    let listed = all_versions(s, &bk, "v", 1000).await;
    let mut want = vec![("v".to_owned(), NULL_VERSION.to_owned(), false, true)];
    want.extend(older.iter().cloned());
    assert_eq!(
        listed,
        want,
        "{}: suspended PUTs replace the one null version",
        s.name()
    );
    // A suspended DELETE makes a null delete marker in place of the null version.
    match gaps.suspended_versioning {
        Some(why) => {
            skip(s, "the null delete marker of a DELETE while suspended", why);
            ok(s, "suspended delete", s.delete_object(&bk, &v, None).await);
            assert_missing(s, &bk, "v", "deleted while suspended").await;
        }
        None => {
            let d = ok(s, "suspended delete", s.delete_object(&bk, &v, None).await);
            assert_eq!(
                (d.version_id.as_deref(), d.delete_marker),
                (Some(NULL_VERSION), true),
                "{}: a suspended DELETE makes a null delete marker",
                s.name()
            );
            match s.head_object(&bk, &v, None).await {
                Err(Error::NoSuchKey {
                    delete_marker: Some(m),
                    ..
                }) if m == NULL_VERSION => {}
                other => panic!(
                    "{}: HEAD behind a null delete marker: expected NoSuchKey naming the null marker, got {other:?}",
                    s.name(),
                ),
            }
            assert_missing(s, &bk, "v", "behind a null delete marker").await;
            let listed = all_versions(s, &bk, "v", 1000).await;
            let mut want = vec![("v".to_owned(), NULL_VERSION.to_owned(), true, true)];
            want.extend(older);
            assert_eq!(
                listed,
                want,
                "{}: a null delete marker replaces the null version",
                s.name()
            );
        }
    }
    // Versioning cannot be switched off again (the s3 store decides this by asking for the
    // versioning state).
    match gaps.get_versioning {
        Some(why) => skip(s, "turning versioning off", why),
        None => expect_err!(
            s,
            "turning versioning off once enabled",
            s.set_versioning(&bk, Versioning::Unversioned).await,
            Error::InvalidArgument(_)
        ),
    }
}
