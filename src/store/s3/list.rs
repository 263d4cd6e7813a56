//! Listings: objects, versions, multipart uploads and their parts, one backend page at a time.
//!
//! Keys the backend holds but Ferry cannot name ([`ObjectKey::parse`] refuses them) are
//! returned apart by object listings ([`ListPage::unnamed`]), and skipped with a warning by the
//! others. ListObjectsV2 entries carry no version id, so they say `"null"`.

use aws_sdk_s3::types::EncodingType;
use time::OffsetDateTime;

use super::S3Store;
use super::convert::{
    checksum_of, from_sdk_algorithm, list_start_after, parts_from_etag, to_i32, to_time, to_u64,
    trim_etag, version_or_null,
};
use super::error::Ctx;
use crate::store::{
    BucketName, ListPage, ListQuery, NULL_VERSION, ObjectAttrs, ObjectKey, ObjectMeta, PartInfo,
    PartsPage, Result, UnnamedKey, UploadInfo, UploadsPage, UploadsQuery, VersionsPage,
    VersionsQuery,
};

/// The most keys, versions, parts or uploads S3 returns per page.
const MAX_PAGE: usize = 1000;

pub(super) async fn objects(
    store: &S3Store,
    bucket: &BucketName,
    query: &ListQuery,
) -> Result<ListPage> {
    if query.max_keys == 0 {
        return Ok(ListPage::default());
    }
    let delimiter = query.delimiter.as_deref().filter(|d| !d.is_empty());
    let start_after = query.start_after.as_deref();
    let out = store
        .client
        .list_objects_v2()
        .bucket(bucket.as_str())
        .set_prefix(non_empty(&query.prefix))
        .set_delimiter(delimiter.map(str::to_owned))
        .set_start_after(start_after.map(|s| list_start_after(&query.prefix, delimiter, s)))
        .max_keys(page_size(query.max_keys))
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .map_err(|e| store.err(Ctx::bucket(bucket.as_str()), e))?;
    let names = Names::of(out.encoding_type());
    let after = |s: &str| start_after.is_none_or(|m| s > m);
    let mut page = ListPage::default();
    let mut last: Option<String> = None;
    for o in out.contents() {
        let Some(raw) = names.get(o.key()).filter(|k| after(k)) else {
            continue;
        };
        match ObjectKey::parse(&raw) {
            Ok(key) => page.objects.push(listed_meta(
                key,
                NULL_VERSION.to_owned(),
                true,
                to_u64(o.size()),
                trim_etag(o.e_tag()),
                to_time(o.last_modified()),
            )),
            Err(e) => page.unnamed.push(UnnamedKey {
                key: raw.clone(),
                size: to_u64(o.size()),
                why: e.to_string(),
            }),
        }
        last = last.max(Some(raw));
    }
    for p in out.common_prefixes() {
        // A StartAfter inside a prefix still lists the prefix (its later keys roll up in it).
        let inside = |p: &str| start_after.is_some_and(|m| m.len() > p.len() && m.starts_with(p));
        let Some(prefix) = names.get(p.prefix()).filter(|p| after(p) || inside(p)) else {
            continue;
        };
        page.common_prefixes.push(prefix.clone());
        last = last.max(Some(prefix));
    }
    if out.is_truncated().unwrap_or(false) {
        page.next_marker = last;
    }
    Ok(page)
}

pub(super) async fn versions(
    store: &S3Store,
    bucket: &BucketName,
    query: &VersionsQuery,
) -> Result<VersionsPage> {
    if query.max_keys == 0 {
        return Ok(VersionsPage::default());
    }
    let out = store
        .client
        .list_object_versions()
        .bucket(bucket.as_str())
        .set_prefix(non_empty(&query.prefix))
        .set_delimiter(query.delimiter.clone().filter(|d| !d.is_empty()))
        .set_key_marker(query.key_marker.clone())
        .set_version_id_marker(query.version_id_marker.clone())
        .max_keys(page_size(query.max_keys))
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .map_err(|e| store.err(Ctx::bucket(bucket.as_str()), e))?;
    let names = Names::of(out.encoding_type());
    let mut versions = Vec::with_capacity(out.versions().len() + out.delete_markers().len());
    for v in out.versions() {
        let Some(key) = names.get(v.key()).and_then(|k| listed_key(&store.name, &k)) else {
            continue;
        };
        versions.push(listed_meta(
            key,
            version_or_null(v.version_id()),
            v.is_latest().unwrap_or(false),
            to_u64(v.size()),
            trim_etag(v.e_tag()),
            to_time(v.last_modified()),
        ));
    }
    for d in out.delete_markers() {
        let Some(key) = names.get(d.key()).and_then(|k| listed_key(&store.name, &k)) else {
            continue;
        };
        let mut meta = listed_meta(
            key,
            version_or_null(d.version_id()),
            d.is_latest().unwrap_or(false),
            0,
            String::new(),
            to_time(d.last_modified()),
        );
        meta.delete_marker = true;
        versions.push(meta);
    }
    // The SDK splits versions from delete markers; put them back in S3's order: by key,
    // newest first within a key.
    versions.sort_by(|a, b| {
        a.key
            .cmp(&b.key)
            .then(b.is_latest.cmp(&a.is_latest))
            .then(b.last_modified.cmp(&a.last_modified))
    });
    let truncated = out.is_truncated().unwrap_or(false);
    Ok(VersionsPage {
        versions,
        common_prefixes: out
            .common_prefixes()
            .iter()
            .filter_map(|p| names.get(p.prefix()))
            .collect(),
        next_key_marker: names.get(out.next_key_marker()).filter(|_| truncated),
        next_version_id_marker: out
            .next_version_id_marker()
            .filter(|_| truncated)
            .map(str::to_owned),
    })
}

pub(super) async fn parts(
    store: &S3Store,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
    part_number_marker: Option<u32>,
    max_parts: usize,
) -> Result<PartsPage> {
    if max_parts == 0 {
        return Ok(PartsPage::default());
    }
    let ctx = Ctx::key(bucket.as_str(), key.as_str()).upload(upload_id);
    let out = store
        .client
        .list_parts()
        .bucket(bucket.as_str())
        .key(key.as_str())
        .upload_id(upload_id)
        .set_part_number_marker(part_number_marker.map(|m| m.to_string()))
        .max_parts(page_size(max_parts))
        .send()
        .await
        .map_err(|e| store.err(ctx, e))?;
    let parts = out
        .parts()
        .iter()
        .filter_map(|p| {
            Some(PartInfo {
                part_number: u32::try_from(p.part_number()?).ok()?,
                etag: trim_etag(p.e_tag()),
                size: to_u64(p.size()),
                last_modified: to_time(p.last_modified()),
                checksum: checksum_of!(p, false),
            })
        })
        .collect();
    let next = out
        .next_part_number_marker()
        .and_then(|m| m.trim().parse().ok());
    Ok(PartsPage {
        parts,
        next_part_number_marker: next.filter(|_| out.is_truncated().unwrap_or(false)),
        checksum_algorithm: out.checksum_algorithm().and_then(from_sdk_algorithm),
        full_object_checksum: out.checksum_type()
            == Some(&aws_sdk_s3::types::ChecksumType::FullObject),
        storage_class: out
            .storage_class()
            .map(|c| c.as_str().to_owned())
            .filter(|c| c != "STANDARD"),
    })
}

pub(super) async fn uploads(
    store: &S3Store,
    bucket: &BucketName,
    query: &UploadsQuery,
) -> Result<UploadsPage> {
    if query.max_uploads == 0 {
        return Ok(UploadsPage::default());
    }
    let out = store
        .client
        .list_multipart_uploads()
        .bucket(bucket.as_str())
        .set_prefix(non_empty(&query.prefix))
        .set_delimiter(query.delimiter.clone().filter(|d| !d.is_empty()))
        .set_key_marker(query.key_marker.clone())
        .set_upload_id_marker(query.upload_id_marker.clone())
        .max_uploads(page_size(query.max_uploads))
        .encoding_type(EncodingType::Url)
        .send()
        .await
        .map_err(|e| store.err(Ctx::bucket(bucket.as_str()), e))?;
    let names = Names::of(out.encoding_type());
    let uploads = out
        .uploads()
        .iter()
        .filter_map(|u| {
            Some(UploadInfo {
                key: listed_key(&store.name, &names.get(u.key())?)?,
                upload_id: u.upload_id()?.to_owned(),
                initiated: to_time(u.initiated()),
                storage_class: u
                    .storage_class()
                    .map(|c| c.as_str().to_owned())
                    .filter(|c| c != "STANDARD"),
            })
        })
        .collect();
    let truncated = out.is_truncated().unwrap_or(false);
    Ok(UploadsPage {
        uploads,
        common_prefixes: out
            .common_prefixes()
            .iter()
            .filter_map(|p| names.get(p.prefix()))
            .collect(),
        next_key_marker: names.get(out.next_key_marker()).filter(|_| truncated),
        next_upload_id_marker: out
            .next_upload_id_marker()
            .filter(|_| truncated)
            .map(str::to_owned),
    })
}

/// How a listing's names came back. Listings ask for `encoding-type=url`, since a key may
/// hold characters XML 1.0 cannot carry (control characters: the backend's answer would not
/// parse); a backend that applied it says so, and its names are decoded. One that ignored it
/// sent them as they are, and they are taken as they are (decoding them would turn a `+` or
/// `%` in a key into something else).
struct Names(bool);

impl Names {
    fn of(encoding: Option<&EncodingType>) -> Self {
        Self(encoding == Some(&EncodingType::Url))
    }

    fn get(&self, v: Option<&str>) -> Option<String> {
        let v = v?;
        if !self.0 {
            return Some(v.to_owned());
        }
        // Form decoding, as S3 encodes: `+` is a space, `%2B` a plus.
        urlencoding::decode(&v.replace('+', " "))
            .ok()
            .map(|d| d.into_owned())
    }
}

/// Parses a key the backend returned; keys Ferry cannot name are skipped with a warning.
fn listed_key(store: &str, raw: &str) -> Option<ObjectKey> {
    match ObjectKey::parse(raw) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(store, key = raw, error = %e, "skipping a listed key Ferry cannot name");
            None
        }
    }
}

fn listed_meta(
    key: ObjectKey,
    version_id: String,
    is_latest: bool,
    size: u64,
    etag: String,
    last_modified: OffsetDateTime,
) -> ObjectMeta {
    ObjectMeta {
        key,
        version_id,
        is_latest,
        delete_marker: false,
        size,
        parts_count: parts_from_etag(&etag),
        etag,
        last_modified,
        attrs: ObjectAttrs::default(),
        checksum: None,
        tag_count: 0,
        opaque_etag: false,
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn page_size(n: usize) -> i32 {
    to_i32(n.min(MAX_PAGE))
}
