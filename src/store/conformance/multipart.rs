//! Multipart uploads: parts, completion, the AWS multipart ETag, listing uploads and parts.

use std::sync::{Arc, Mutex};

use super::Gaps;
use super::helpers::*;
use crate::store::digest::{composite_checksum, multipart_etag};
use crate::store::*;

pub async fn multipart(s: &dyn Store, prefix: &str, gaps: Gaps) {
    let caps = s.caps();
    let bk = bucket(prefix, "multipart");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    let key = k("mp/object");
    const MIB5: usize = 5 << 20;
    let p1 = pattern(MIB5, 31);
    let p2 = pattern(MIB5 + 1234, 32);
    let p3 = pattern(1000, 33);
    let mut attrs = ObjectAttrs {
        content_type: Some("application/x-multipart".into()),
        ..Default::default()
    };
    attrs.user_metadata.insert("parts".into(), "three".into());
    let upload_tags = tags(&[("kind", "multipart")]);
    let id = ok(
        s,
        "create_multipart",
        s.create_multipart(
            &bk,
            &key,
            PutOptions {
                attrs: attrs.clone(),
                tags: upload_tags.clone(),
                checksum_algorithm: Some(ChecksumAlgorithm::Crc32c),
                ..Default::default()
            },
        )
        .await,
    );
    assert!(!id.is_empty(), "{}: an upload id", s.name());
    let listed = ok(
        s,
        "list_uploads",
        s.list_uploads(
            &bk,
            &UploadsQuery {
                max_uploads: 100,
                ..Default::default()
            },
        )
        .await,
    );
    assert!(
        listed
            .uploads
            .iter()
            .any(|u| u.upload_id == id && u.key == key),
        "{}: list_uploads lacks the new upload: {:?}",
        s.name(),
        listed.uploads
    );
    expect_err!(
        s,
        "GET of a key whose upload is unfinished",
        s.get_object(&bk, &key, GetOptions::default()).await,
        Error::NoSuchKey { .. }
    );

    let mut done = Vec::new();
    let mut part_sums = Vec::new();
    for (n, data) in [(1u32, &p1), (2, &p2), (3, &p3)] {
        let mut o = sized(data.len());
        o.checksum_algorithm = Some(ChecksumAlgorithm::Crc32c);
        let info = ok(
            s,
            &format!("upload_part {n}"),
            s.upload_part(&bk, &key, &id, n, body(data), o).await,
        );
        assert_eq!(
            (info.part_number, info.size, info.etag.as_str()),
            (n, data.len() as u64, md5_hex(data).as_str()),
            "{}: part {n}: number, size and ETag (the hex MD5)",
            s.name()
        );
        let want = checksum_of(ChecksumAlgorithm::Crc32c, data);
        assert_eq!(
            info.checksum
                .as_ref()
                .map(|c| (c.algorithm, c.value.as_str())),
            Some((want.algorithm, want.value.as_str())),
            "{}: part {n}: the checksum asked for",
            s.name()
        );
        part_sums.push(want.value);
        done.push(CompletedPart {
            part_number: n,
            etag: info.etag,
            checksum: None,
            claimed: None,
        });
    }
    // A part refused by its verifier is not recorded.
    let seen = Arc::new(Mutex::new(None));
    let mut o = sized(100);
    o.verify = Some(recording_verifier(&seen, true));
    expect_err!(
        s,
        "upload_part refused by its verifier",
        s.upload_part(&bk, &key, &id, 4, body(&pattern(100, 34)), o)
            .await,
        Error::BadDigest { .. }
    );

    // Parts, paged.
    match gaps.list_parts {
        Some(why) => skip(s, "the list_parts checks", why),
        None => {
            let page = ok(s, "list_parts", s.list_parts(&bk, &key, &id, None, 2).await);
            let numbers: Vec<u32> = page.parts.iter().map(|p| p.part_number).collect();
            assert_eq!(numbers, vec![1, 2], "{}: list_parts, first page", s.name());
            assert_eq!(
                page.next_part_number_marker,
                Some(2),
                "{}: list_parts, next marker",
                s.name()
            );
            let rest = ok(
                s,
                "list_parts",
                s.list_parts(&bk, &key, &id, Some(2), 2).await,
            );
            let numbers: Vec<u32> = rest.parts.iter().map(|p| p.part_number).collect();
            assert_eq!(
                numbers,
                vec![3],
                "{}: list_parts, second page (a refused part is not listed)",
                s.name()
            );
            assert_eq!(
                rest.next_part_number_marker,
                None,
                "{}: list_parts, last page",
                s.name()
            );
            for (p, d) in page.parts.iter().chain(&rest.parts).zip(&done) {
                let size = [p1.len(), p2.len(), p3.len()][p.part_number as usize - 1] as u64;
                assert_eq!(
                    (p.etag.as_str(), p.size),
                    (d.etag.as_str(), size),
                    "{}: listed part {}",
                    s.name(),
                    p.part_number
                );
            }
        }
    }

    // Wrong ETags and a wrong order are refused, and the upload stays usable.
    let mut bad = done.clone();
    bad[1].etag = "0".repeat(32);
    expect_err!(
        s,
        "complete with a wrong part ETag",
        s.complete_multipart(&bk, &key, &id, &bad, None).await,
        Error::InvalidPart { .. }
    );
    let mut missing_part = done.clone();
    missing_part[2].part_number = 7;
    expect_err!(
        s,
        "complete naming a part never uploaded",
        s.complete_multipart(&bk, &key, &id, &missing_part, None)
            .await,
        Error::InvalidPart { .. }
    );
    match gaps.invalid_part_order {
        Some(why) => skip(s, "InvalidPartOrder", why),
        None => {
            let backwards: Vec<CompletedPart> = done.iter().rev().cloned().collect();
            expect_err!(
                s,
                "complete with parts out of order",
                s.complete_multipart(&bk, &key, &id, &backwards, None).await,
                Error::InvalidPartOrder
            );
        }
    }
    assert_missing(s, &bk, key.as_str(), "refused completes").await;

    let meta = ok(
        s,
        "complete_multipart",
        s.complete_multipart(&bk, &key, &id, &done, None).await,
    );
    let want_etag = multipart_etag(done.iter().map(|p| p.etag.as_str())).unwrap();
    assert_eq!(
        meta.etag,
        want_etag,
        "{}: the multipart ETag is the MD5 of the part MD5s, -3",
        s.name()
    );
    assert!(meta.etag.ends_with("-3"), "{}: multipart ETag", s.name());
    let whole: Vec<u8> = [&p1[..], &p2[..], &p3[..]].concat();
    assert_eq!(
        meta.size,
        whole.len() as u64,
        "{}: completed size",
        s.name()
    );
    let (got, data) = get(s, &bk, key.as_str()).await;
    assert!(
        data == whole,
        "{}: the completed object is the concatenation of its parts",
        s.name()
    );
    assert_eq!(got.etag, want_etag, "{}: GET multipart ETag", s.name());
    let head = ok(s, "head", s.head_object(&bk, &key, None).await);
    assert_eq!(
        (head.etag.as_str(), head.size, head.parts_count),
        (want_etag.as_str(), whole.len() as u64, Some(3)),
        "{}: HEAD of a multipart object",
        s.name()
    );
    // Each part's bytes, as uploaded (S3's ?partNumber=N).
    match gaps.part_ranges {
        Some(why) => skip(s, "the byte ranges of parts", why),
        None => {
            let (n1, n2) = (p1.len() as u64, p2.len() as u64);
            let want = [
                (0, n1 - 1),
                (n1, n1 + n2 - 1),
                (n1 + n2, whole.len() as u64 - 1),
            ];
            for (i, w) in want.iter().enumerate() {
                let n = i as u32 + 1;
                let r = ok(s, "part_range", s.part_range(&bk, &key, None, n).await);
                assert_eq!(
                    (r.range, r.etag.as_str(), r.parts),
                    (Some(*w), want_etag.as_str(), 3),
                    "{}: part {n}: its bytes, the version's ETag and part count",
                    s.name()
                );
            }
            expect_err!(
                s,
                "part_range past the last part",
                s.part_range(&bk, &key, None, 4).await,
                Error::InvalidPartNumber { .. }
            );
        }
    }
    assert_eq!(
        (&head.attrs.content_type, &head.attrs.user_metadata),
        (&attrs.content_type, &attrs.user_metadata),
        "{}: the upload's attributes",
        s.name()
    );
    if caps.tagging {
        let (_, t) = ok(
            s,
            "get_object_tags",
            s.get_object_tags(&bk, &key, None).await,
        );
        assert_eq!(t, upload_tags, "{}: the upload's tags", s.name());
    }
    match gaps.stored_checksums {
        Some(why) => skip(s, "the composite checksum of a multipart object", why),
        None => {
            let want = composite_checksum(
                ChecksumAlgorithm::Crc32c,
                part_sums.iter().map(String::as_str),
            );
            assert_eq!(
                head.checksum
                    .as_ref()
                    .map(|c| (c.algorithm, c.value.as_str(), c.composite)),
                want.as_ref().map(|c| (c.algorithm, c.value.as_str(), true)),
                "{}: the composite CRC32C of a multipart object",
                s.name()
            );
        }
    }
    let r = ok(
        s,
        "ranged GET across parts",
        s.get_object(
            &bk,
            &key,
            ranged(ByteRange::FromTo(MIB5 as u64 - 10, MIB5 as u64 + 9)),
        )
        .await,
    );
    let got = read_all(s, "ranged GET across parts", r.body).await;
    assert!(
        got == whole[MIB5 - 10..MIB5 + 10],
        "{}: a range across a part boundary",
        s.name()
    );
    expect_err!(
        s,
        "list_parts of a completed upload",
        s.list_parts(&bk, &key, &id, None, 10).await,
        Error::NoSuchUpload { .. }
    );
    let listed = ok(
        s,
        "list_uploads",
        s.list_uploads(
            &bk,
            &UploadsQuery {
                max_uploads: 100,
                ..Default::default()
            },
        )
        .await,
    );
    assert!(
        !listed.uploads.iter().any(|u| u.upload_id == id),
        "{}: a completed upload is not listed",
        s.name()
    );

    // A non-last part under 5 MiB is refused.
    let small = ok(
        s,
        "create_multipart",
        s.create_multipart(&bk, &k("mp/small"), PutOptions::default())
            .await,
    );
    let mut small_parts = Vec::new();
    for n in 1..=2u32 {
        let data = pattern(1000, 40 + u64::from(n));
        let info = ok(
            s,
            "upload_part",
            s.upload_part(&bk, &k("mp/small"), &small, n, body(&data), sized(1000))
                .await,
        );
        small_parts.push(CompletedPart {
            part_number: n,
            etag: info.etag,
            checksum: None,
            claimed: None,
        });
    }
    expect_err!(
        s,
        "complete with a non-last part under 5 MiB",
        s.complete_multipart(&bk, &k("mp/small"), &small, &small_parts, None)
            .await,
        Error::EntityTooSmall { .. }
    );
    assert_missing(s, &bk, "mp/small", "a complete refused as too small").await;
    // ...but a single small part is a whole upload; a re-uploaded part replaces the old.
    let again = pattern(777, 43);
    let info = ok(
        s,
        "re-upload part 1",
        s.upload_part(&bk, &k("mp/small"), &small, 1, body(&again), sized(777))
            .await,
    );
    let one_etag = multipart_etag([info.etag.as_str()].into_iter()).unwrap();
    let meta = ok(
        s,
        "complete one re-uploaded part",
        s.complete_multipart(
            &bk,
            &k("mp/small"),
            &small,
            &[CompletedPart {
                part_number: 1,
                etag: info.etag,
                checksum: None,
                claimed: None,
            }],
            None,
        )
        .await,
    );
    assert_eq!(
        (meta.size, meta.etag.as_str()),
        (again.len() as u64, one_etag.as_str()),
        "{}: a one-part upload (size, ETag)",
        s.name()
    );
    let (_, data) = get(s, &bk, "mp/small").await;
    assert!(
        data == again,
        "{}: a re-uploaded part replaces the old",
        s.name()
    );

    // Aborted uploads are gone.
    let gone = ok(
        s,
        "create_multipart",
        s.create_multipart(&bk, &k("mp/aborted"), PutOptions::default())
            .await,
    );
    let info = ok(
        s,
        "upload_part",
        s.upload_part(&bk, &k("mp/aborted"), &gone, 1, body(b"part"), sized(4))
            .await,
    );
    ok(
        s,
        "abort_multipart",
        s.abort_multipart(&bk, &k("mp/aborted"), &gone).await,
    );
    expect_err!(
        s,
        "list_parts of an aborted upload",
        s.list_parts(&bk, &k("mp/aborted"), &gone, None, 10).await,
        Error::NoSuchUpload { .. }
    );
    match gaps.writes_to_unknown_upload {
        Some(why) => skip(
            s,
            "UploadPart and CompleteMultipartUpload of an aborted upload",
            why,
        ),
        None => {
            expect_err!(
                s,
                "upload_part to an aborted upload",
                s.upload_part(&bk, &k("mp/aborted"), &gone, 2, body(b"part"), sized(4))
                    .await,
                Error::NoSuchUpload { .. }
            );
            expect_err!(
                s,
                "complete of an aborted upload",
                s.complete_multipart(
                    &bk,
                    &k("mp/aborted"),
                    &gone,
                    &[CompletedPart {
                        part_number: 1,
                        etag: info.etag,
                        checksum: None,
                        claimed: None,
                    }],
                    None
                )
                .await,
                Error::NoSuchUpload { .. }
            );
        }
    }
    assert_missing(s, &bk, "mp/aborted", "an aborted upload").await;

    // Listing uploads: by key, then the uploads of one key oldest first (as S3 orders them by
    // initiation time), paged, each once.
    let mut want = Vec::new();
    for key in ["up/b", "up/a", "up/b", "up/c", "up/b", "up/b", "up/b"] {
        let id = ok(
            s,
            "create_multipart",
            s.create_multipart(&bk, &k(key), PutOptions::default())
                .await,
        );
        want.push((key.to_owned(), id));
    }
    let page_size = match gaps.upload_listing_order {
        Some(why) => {
            skip(s, "the order and paging of list_uploads", why);
            1000
        }
        None => 1,
    };
    let mut got = Vec::new();
    let mut q = UploadsQuery {
        prefix: "up/".into(),
        max_uploads: page_size,
        ..Default::default()
    };
    for _ in 0..20 {
        let page = ok(s, "list_uploads", s.list_uploads(&bk, &q).await);
        assert!(
            page.uploads.len() <= page_size,
            "{}: list_uploads returned {} uploads, more than max_uploads {page_size}",
            s.name(),
            page.uploads.len()
        );
        got.extend(
            page.uploads
                .iter()
                .map(|u| (u.key.to_string(), u.upload_id.clone())),
        );
        match page.next_key_marker {
            Some(km) => {
                q.key_marker = Some(km);
                q.upload_id_marker = page.next_upload_id_marker;
            }
            None => break,
        }
    }
    if gaps.upload_listing_order.is_none() {
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            vec!["up/a", "up/b", "up/b", "up/b", "up/b", "up/b", "up/c"],
            "{}: uploads listed in pages of one, by key: {got:?}",
            s.name()
        );
        let created = |all: &[(String, String)]| -> Vec<String> {
            all.iter()
                .filter(|(key, _)| key == "up/b")
                .map(|(_, id)| id.clone())
                .collect()
        };
        assert_eq!(
            created(&got),
            created(&want),
            "{}: the uploads of one key listed oldest first",
            s.name()
        );
    }
    let mut got_sorted = got.clone();
    got_sorted.sort();
    want.sort();
    assert_eq!(got_sorted, want, "{}: every upload listed once", s.name());
    for (key, id) in &want {
        ok(
            s,
            "abort_multipart",
            s.abort_multipart(&bk, &k(key), id).await,
        );
    }
}

/// A part sent without a checksum to an upload created with an algorithm is taken (the
/// store computes the part's checksum itself), as S3 takes it: nothing on the way may add a
/// checksum of another algorithm (an SDK's default CRC32 would be refused as a mismatch).
pub async fn part_without_checksum(s: &dyn Store, prefix: &str) {
    let bk = bucket(prefix, "mp-nosum");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    let key = k("sha");
    let id = ok(
        s,
        "create_multipart SHA256",
        s.create_multipart(
            &bk,
            &key,
            PutOptions {
                checksum_algorithm: Some(ChecksumAlgorithm::Sha256),
                ..Default::default()
            },
        )
        .await,
    );
    let part = ok(
        s,
        "upload_part without a checksum",
        s.upload_part(
            &bk,
            &key,
            &id,
            1,
            body(b"no checksum named"),
            PutOptions::default(),
        )
        .await,
    );
    assert!(!part.etag.is_empty(), "{}: the part has an ETag", s.name());
    ok(s, "abort", s.abort_multipart(&bk, &key, &id).await);
}
