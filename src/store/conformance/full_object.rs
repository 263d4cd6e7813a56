//! Whole-object checksums of multipart uploads (S3's `FULL_OBJECT` checksum type): the
//! finished object carries the CRC of all its bytes, whatever its part sizes, and a
//! completion that names a wrong one commits nothing.

use super::Gaps;
use super::helpers::*;
use crate::store::digest::{ChecksumHasher, b64};
use crate::store::*;

pub async fn full_object_checksums(s: &dyn Store, prefix: &str, gaps: Gaps) {
    if let Some(why) = gaps.stored_checksums {
        skip(s, "whole-object checksums of multipart uploads", why);
        return;
    }
    let bk = bucket(prefix, "fullobject");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    for (algorithm, claim) in [
        (ChecksumAlgorithm::Crc64Nvme, true),
        (ChecksumAlgorithm::Crc32, false),
    ] {
        let what = format!("a {} FULL_OBJECT upload", algorithm.as_str());
        let key = k(&format!("whole/{}", algorithm.as_str()));
        let parts = [pattern(5 << 20, 41), pattern(4321, 42)];
        let whole = {
            let mut h = ChecksumHasher::new(algorithm);
            parts.iter().for_each(|p| h.update(p));
            h.finalize()
        };
        let id = ok(
            s,
            &format!("{what}: create_multipart"),
            s.create_multipart(
                &bk,
                &key,
                PutOptions {
                    checksum_algorithm: Some(algorithm),
                    full_object_checksum: true,
                    ..Default::default()
                },
            )
            .await,
        );
        let mut done = Vec::new();
        for (i, data) in parts.iter().enumerate() {
            let n = i as u32 + 1;
            let mut o = sized(data.len());
            o.checksum_algorithm = Some(algorithm);
            let info = ok(
                s,
                &format!("{what}: upload_part {n}"),
                s.upload_part(&bk, &key, &id, n, body(data), o).await,
            );
            done.push(CompletedPart {
                part_number: n,
                etag: info.etag,
                checksum: None,
                claimed: None,
            });
        }
        if gaps.list_parts.is_none() {
            let page = ok(
                s,
                "list_parts",
                s.list_parts(&bk, &key, &id, None, 10).await,
            );
            assert_eq!(
                (page.checksum_algorithm, page.full_object_checksum),
                (Some(algorithm), true),
                "{}: {what}: list_parts names its algorithm and type",
                s.name()
            );
        }
        if claim {
            let mut misnamed = done.clone();
            misnamed[0].claimed = Some(checksum_of(algorithm, b"another part"));
            expect_err!(
                s,
                format!("{what}: completion naming a wrong part checksum"),
                s.complete_multipart(&bk, &key, &id, &misnamed, None).await,
                Error::InvalidPart { .. }
            );
            let wrong = Checksum {
                algorithm,
                value: b64(&[7u8; 8]),
                composite: false,
            };
            expect_err!(
                s,
                format!("{what}: completion naming a wrong whole-object checksum"),
                s.complete_multipart(&bk, &key, &id, &done, Some(&wrong))
                    .await,
                Error::BadDigest { .. }
            );
            assert_missing(s, &bk, key.as_str(), &format!("{what}, refused")).await;
        }
        let meta = ok(
            s,
            &format!("{what}: complete_multipart"),
            s.complete_multipart(&bk, &key, &id, &done, claim.then_some(&whole))
                .await,
        );
        let head = ok(s, "head_object", s.head_object(&bk, &key, None).await);
        for (m, from) in [(&meta, "complete_multipart"), (&head, "head_object")] {
            assert_eq!(
                m.checksum.as_ref(),
                Some(&whole),
                "{}: {what}: {from} reports the CRC of the whole object",
                s.name()
            );
        }
    }
}
