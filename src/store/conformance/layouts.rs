//! Multipart uploads whose parts arrive in the ways clients send them: out of order, one of
//! them uploaded twice with other bytes, a smaller last part, parts left out of the
//! completion, a part uploaded but not chosen. Whatever a store does with parts on the way
//! (the fs store writes most of them straight to their place in the finished object), the
//! object is the chosen parts, in order.

use super::helpers::*;
use crate::store::digest::multipart_etag;
use crate::store::*;

const PART: usize = 5 << 20;

async fn create(s: &dyn Store, bk: &BucketName, key: &str) -> String {
    ok(
        s,
        "create_multipart",
        s.create_multipart(bk, &k(key), PutOptions::default()).await,
    )
}

/// Uploads `parts` (number, bytes) in the order given; returns each one's ETag by number.
async fn upload(
    s: &dyn Store,
    bk: &BucketName,
    key: &str,
    id: &str,
    parts: &[(u32, &[u8])],
) -> Vec<(u32, String)> {
    let mut etags = Vec::new();
    for (n, data) in parts {
        let info = ok(
            s,
            &format!("upload_part {n} of {key}"),
            s.upload_part(bk, &k(key), id, *n, body(data), sized(data.len()))
                .await,
        );
        etags.retain(|(m, _)| m != n);
        etags.push((*n, info.etag));
    }
    etags
}

/// The completion list naming the `chosen` part numbers with their ETags.
fn completed(etags: &[(u32, String)], chosen: &[u32]) -> Vec<CompletedPart> {
    chosen
        .iter()
        .map(|n| CompletedPart {
            part_number: *n,
            etag: etags
                .iter()
                .find(|(m, _)| m == n)
                .map(|(_, e)| e.clone())
                .unwrap_or_default(),
            checksum: None,
            claimed: None,
        })
        .collect()
}

/// Completes `key` with the parts `chosen` and checks its bytes are `want`.
async fn complete_as(
    s: &dyn Store,
    bk: &BucketName,
    key: &str,
    id: &str,
    etags: &[(u32, String)],
    chosen: &[u32],
    want: &[u8],
) {
    let parts = completed(etags, chosen);
    let meta = ok(
        s,
        &format!("complete {key}"),
        s.complete_multipart(bk, &k(key), id, &parts, None).await,
    );
    let want_etag = multipart_etag(parts.iter().map(|p| p.etag.as_str())).unwrap_or_default();
    assert_eq!(
        (meta.size, meta.etag.as_str()),
        (want.len() as u64, want_etag.as_str()),
        "{}: {key}: size and ETag",
        s.name()
    );
    let (_, data) = get(s, bk, key).await;
    assert!(
        data == want,
        "{}: {key}: the object is the chosen parts in order",
        s.name()
    );
}

pub async fn part_layouts(s: &dyn Store, prefix: &str) {
    let bk = bucket(prefix, "layouts");
    ok(s, "create_bucket", s.create_bucket(&bk).await);
    let p: Vec<Vec<u8>> = (0..4).map(|i| pattern(PART, 60 + i)).collect();
    let last = pattern(300 << 10, 64);
    let again = pattern(PART, 65);

    // Out of order, the last part first, part 2 uploaded twice with other bytes.
    let id = create(s, &bk, "layout/shuffled").await;
    let etags = upload(
        s,
        &bk,
        "layout/shuffled",
        &id,
        &[(4, &last), (2, &p[1]), (1, &p[0]), (3, &p[2]), (2, &again)],
    )
    .await;
    let want = [&p[0][..], &again, &p[2], &last].concat();
    complete_as(s, &bk, "layout/shuffled", &id, &etags, &[1, 2, 3, 4], &want).await;

    // A part left out of the completion, and one uploaded but not chosen after the others.
    let id = create(s, &bk, "layout/skipped").await;
    let etags = upload(
        s,
        &bk,
        "layout/skipped",
        &id,
        &[(1, &p[0]), (2, &p[1]), (3, &p[2]), (5, &p[3])],
    )
    .await;
    let want = [&p[0][..], &p[2]].concat();
    complete_as(s, &bk, "layout/skipped", &id, &etags, &[1, 3], &want).await;

    // Only the first parts chosen, with a part uploaded after them left out.
    let id = create(s, &bk, "layout/prefix").await;
    let etags = upload(
        s,
        &bk,
        "layout/prefix",
        &id,
        &[(1, &p[0]), (2, &p[1]), (3, &p[2])],
    )
    .await;
    let want = [&p[0][..], &p[1]].concat();
    complete_as(s, &bk, "layout/prefix", &id, &etags, &[1, 2], &want).await;

    // A smaller part first: the parts after it are larger.
    let id = create(s, &bk, "layout/growing").await;
    let etags = upload(s, &bk, "layout/growing", &id, &[(2, &p[1]), (1, &last)]).await;
    let grown = [&p[2][..], &p[3]].concat();
    let mut etags2 = upload(s, &bk, "layout/growing", &id, &[(3, &grown)]).await;
    etags2.extend(etags);
    // S3 wants every part but the last at 5 MiB or more: part 1 (300 KiB) is refused.
    expect_err!(
        s,
        "complete with a small first part",
        s.complete_multipart(
            &bk,
            &k("layout/growing"),
            &id,
            &completed(&etags2, &[1, 2, 3]),
            None,
        )
        .await,
        Error::EntityTooSmall { .. }
    );
    let want = [&p[1][..], &grown].concat();
    complete_as(s, &bk, "layout/growing", &id, &etags2, &[2, 3], &want).await;
}
