//! Server-side copy: metadata directives, sources by version, conditions.

use super::Gaps;
use super::helpers::*;
use crate::store::*;

pub async fn copy(s: &dyn Store, prefix: &str, gaps: Gaps) {
    let caps = s.caps();
    let bk = bucket(prefix, "copy");
    let other = bucket(prefix, "copy-dst");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    ok(s, "create_bucket", s.create_bucket(&other).await);
    let data = pattern(200_000, 3);
    let mut attrs = ObjectAttrs {
        content_type: Some("text/x-source".into()),
        ..Default::default()
    };
    attrs.user_metadata.insert("origin".into(), "source".into());
    let src_tags = tags(&[("copied", "yes")]);
    let mut o = sized(data.len());
    o.attrs = attrs.clone();
    o.tags = src_tags.clone();
    let src = put_with(s, &bk, "src/obj", &data, o).await;

    // Metadata and tags copied.
    let c = ok(
        s,
        "copy (metadata copied)",
        s.copy_object(
            &bk,
            &k("src/obj"),
            &bk,
            &k("dst/copied"),
            CopyOptions::default(),
        )
        .await,
    );
    assert_eq!(
        (c.etag.as_str(), c.size),
        (src.etag.as_str(), src.size),
        "{}: copy of a single-part object keeps its ETag and size",
        s.name()
    );
    assert_content(s, &bk, "dst/copied", &data, "a copy").await;
    let h = ok(
        s,
        "head copy",
        s.head_object(&bk, &k("dst/copied"), None).await,
    );
    assert_eq!(
        (&h.attrs.content_type, &h.attrs.user_metadata),
        (&attrs.content_type, &attrs.user_metadata),
        "{}: a copy without new attributes copies them",
        s.name()
    );
    if caps.tagging {
        let (_, t) = ok(
            s,
            "get tags of copy",
            s.get_object_tags(&bk, &k("dst/copied"), None).await,
        );
        assert_eq!(
            t,
            src_tags,
            "{}: a copy without new tags copies them",
            s.name()
        );
    }

    // Metadata and tags replaced.
    let mut new_attrs = ObjectAttrs {
        content_type: Some("text/x-replaced".into()),
        ..Default::default()
    };
    new_attrs.user_metadata.insert("fresh".into(), "yes".into());
    let new_tags = tags(&[("replaced", "1")]);
    ok(
        s,
        "copy (metadata replaced)",
        s.copy_object(
            &bk,
            &k("src/obj"),
            &bk,
            &k("dst/replaced"),
            CopyOptions {
                attrs: Some(new_attrs.clone()),
                tags: caps.tagging.then(|| new_tags.clone()),
                ..Default::default()
            },
        )
        .await,
    );
    assert_content(s, &bk, "dst/replaced", &data, "a copy with new attributes").await;
    let h = ok(
        s,
        "head copy",
        s.head_object(&bk, &k("dst/replaced"), None).await,
    );
    assert_eq!(
        (&h.attrs.content_type, &h.attrs.user_metadata),
        (&new_attrs.content_type, &new_attrs.user_metadata),
        "{}: a copy with new attributes replaces them",
        s.name()
    );
    if caps.tagging {
        let (_, t) = ok(
            s,
            "get tags of copy",
            s.get_object_tags(&bk, &k("dst/replaced"), None).await,
        );
        assert_eq!(
            t,
            new_tags,
            "{}: a copy with new tags replaces them",
            s.name()
        );
        // New attributes, tags copied.
        ok(
            s,
            "copy (metadata replaced, tags copied)",
            s.copy_object(
                &bk,
                &k("src/obj"),
                &bk,
                &k("dst/tags-kept"),
                CopyOptions {
                    attrs: Some(new_attrs.clone()),
                    ..Default::default()
                },
            )
            .await,
        );
        let (_, t) = ok(
            s,
            "get tags of copy",
            s.get_object_tags(&bk, &k("dst/tags-kept"), None).await,
        );
        assert_eq!(t, src_tags, "{}: replacing attributes keeps tags", s.name());
    }

    // Into another bucket, and onto itself with new attributes (how clients edit metadata).
    ok(
        s,
        "copy to another bucket",
        s.copy_object(
            &bk,
            &k("src/obj"),
            &other,
            &k("elsewhere"),
            CopyOptions::default(),
        )
        .await,
    );
    assert_content(s, &other, "elsewhere", &data, "a copy to another bucket").await;
    ok(
        s,
        "copy onto itself",
        s.copy_object(
            &bk,
            &k("src/obj"),
            &bk,
            &k("src/obj"),
            CopyOptions {
                attrs: Some(new_attrs.clone()),
                ..Default::default()
            },
        )
        .await,
    );
    assert_content(
        s,
        &bk,
        "src/obj",
        &data,
        "a copy onto itself keeps the body",
    )
    .await;
    let h = ok(s, "head", s.head_object(&bk, &k("src/obj"), None).await);
    assert_eq!(
        h.attrs.user_metadata,
        new_attrs.user_metadata,
        "{}: a copy onto itself replaces the attributes",
        s.name()
    );

    // With a checksum asked for.
    let c = ok(
        s,
        "copy with a checksum",
        s.copy_object(
            &bk,
            &k("src/obj"),
            &bk,
            &k("dst/summed"),
            CopyOptions {
                checksum_algorithm: Some(ChecksumAlgorithm::Sha256),
                ..Default::default()
            },
        )
        .await,
    );
    match gaps.stored_checksums {
        Some(why) => skip(s, "the checksum of a copy", why),
        None => assert_eq!(
            c.checksum,
            Some(checksum_of(ChecksumAlgorithm::Sha256, &data)),
            "{}: a copy computes the checksum asked for",
            s.name()
        ),
    }

    // Missing sources and destinations.
    expect_err!(
        s,
        "copy of a missing key",
        s.copy_object(
            &bk,
            &k("src/none"),
            &bk,
            &k("dst/none"),
            CopyOptions::default()
        )
        .await,
        Error::NoSuchKey { .. }
    );
    assert_missing(s, &bk, "dst/none", "a failed copy").await;
    let missing = bucket(prefix, "copy-none");
    expect_err!(
        s,
        "copy from a missing bucket",
        s.copy_object(
            &missing,
            &k("src/obj"),
            &bk,
            &k("dst/none"),
            CopyOptions::default()
        )
        .await,
        Error::NoSuchBucket { .. }
    );
    expect_err!(
        s,
        "copy into a missing bucket",
        s.copy_object(
            &bk,
            &k("src/obj"),
            &missing,
            &k("dst/none"),
            CopyOptions::default()
        )
        .await,
        Error::NoSuchBucket { .. }
    );
}
