//! Listings of the fs store, paged from the index in key order. Common prefixes are found by
//! seeking past them (one index seek per prefix), so a delimiter listing of a bucket with a
//! million keys under a few prefixes touches a few rows, not a million.

use super::FsStore;
use super::index::VersionRow;
use crate::store::*;

/// Sorts after every key that starts with the given prefix (keys are UTF-8; no key byte can
/// exceed the largest code point's encoding).
const PAST: char = char::MAX;

const BATCH: usize = 1000;

/// The common prefix `key` rolls up into, if any.
fn common_prefix<'a>(key: &'a str, prefix: &str, delimiter: Option<&str>) -> Option<&'a str> {
    let d = delimiter.filter(|d| !d.is_empty())?;
    let rest = key.get(prefix.len()..)?;
    rest.find(d).map(|i| &key[..prefix.len() + i + d.len()])
}

/// Where to resume after a marker: past everything under it when it is a common prefix.
fn seek_after(marker: &str, prefix: &str, delimiter: Option<&str>) -> String {
    match common_prefix(marker, prefix, delimiter) {
        Some(cp) if cp.len() == marker.len() => format!("{marker}{PAST}"),
        _ => marker.to_owned(),
    }
}

impl FsStore {
    /// Uploads in progress, by key then upload id, with keys rolled up into common prefixes
    /// at the delimiter (each one seeked past, as in [`Self::list_impl`]).
    pub(super) async fn list_uploads_impl(
        &self,
        bucket: &BucketName,
        q: &UploadsQuery,
    ) -> Result<UploadsPage> {
        self.bucket_row(bucket).await?;
        let delim = q.delimiter.as_deref();
        let mut page = UploadsPage::default();
        // Without an upload-id marker, every upload of the marker key is passed too (upload
        // ids are hex, all before PAST).
        let mut cursor: (String, String) = match (&q.key_marker, &q.upload_id_marker) {
            (Some(k), Some(u)) => (k.clone(), u.clone()),
            (Some(k), None) => (seek_after(k, &q.prefix, delim), PAST.to_string()),
            (None, _) => (String::new(), String::new()),
        };
        let mut count = 0usize;
        let mut last: Option<(String, Option<String>)> = None;
        if q.max_uploads == 0 {
            return Ok(page);
        }
        loop {
            let want = (q.max_uploads - count + 1).min(BATCH);
            let after = (cursor.0.as_str(), cursor.1.as_str());
            let rows = self
                .index
                .list_uploads(bucket.as_str(), &q.prefix, Some(after), want)
                .await?;
            let fetched = rows.len();
            let mut reseek = false;
            for u in rows {
                if count == q.max_uploads {
                    if let Some((k, id)) = last {
                        page.next_key_marker = Some(k);
                        page.next_upload_id_marker = id;
                    }
                    return Ok(page);
                }
                count += 1;
                if let Some(cp) = common_prefix(&u.key, &q.prefix, delim) {
                    page.common_prefixes.push(cp.to_owned());
                    last = Some((cp.to_owned(), None));
                    cursor = (format!("{cp}{PAST}"), String::new());
                    reseek = true;
                    break;
                }
                last = Some((u.key.clone(), Some(u.upload_id.clone())));
                cursor = (u.key.clone(), u.upload_id.clone());
                page.uploads.push(UploadInfo {
                    key: ObjectKey::parse(&u.key)?,
                    upload_id: u.upload_id,
                    initiated: super::index::ms_to_time(u.initiated_ms),
                    storage_class: serde_json::from_str::<ObjectAttrs>(&u.attrs)
                        .ok()
                        .and_then(|a| a.storage_class),
                });
            }
            if !reseek && fetched < want {
                return Ok(page);
            }
        }
    }

    pub(super) async fn list_impl(&self, bucket: &BucketName, q: &ListQuery) -> Result<ListPage> {
        self.bucket_row(bucket).await?;
        let delim = q.delimiter.as_deref();
        let mut page = ListPage::default();
        let mut cursor = q
            .start_after
            .as_deref()
            .map(|m| seek_after(m, &q.prefix, delim))
            .unwrap_or_default();
        let mut count = 0usize;
        let mut last: Option<String> = None;
        if q.max_keys == 0 {
            return Ok(page);
        }
        loop {
            let want = (q.max_keys - count + 1).min(BATCH);
            let rows = self
                .index
                .list_current(bucket.as_str(), &cursor, &q.prefix, want)
                .await?;
            if rows.is_empty() {
                return Ok(page);
            }
            let mut reseek = false;
            for row in &rows {
                if count == q.max_keys {
                    page.next_marker = last;
                    return Ok(page);
                }
                if let Some(cp) = common_prefix(&row.key, &q.prefix, delim) {
                    page.common_prefixes.push(cp.to_owned());
                    count += 1;
                    last = Some(cp.to_owned());
                    cursor = format!("{cp}{PAST}");
                    reseek = true;
                    break;
                }
                page.objects.push(super::row_to_meta(row)?);
                count += 1;
                last = Some(row.key.clone());
                cursor = row.key.clone();
            }
            if !reseek && rows.len() < want {
                return Ok(page);
            }
        }
    }

    pub(super) async fn list_versions_impl(
        &self,
        bucket: &BucketName,
        q: &VersionsQuery,
    ) -> Result<VersionsPage> {
        self.bucket_row(bucket).await?;
        let delim = q.delimiter.as_deref();
        let mut page = VersionsPage::default();
        if q.max_keys == 0 {
            return Ok(page);
        }
        // The cursor: (key, seq of the last version returned, or None = past the whole key).
        let mut cursor: Option<(String, Option<i64>)> = match (&q.key_marker, &q.version_id_marker)
        {
            (Some(k), Some(v)) if !v.is_empty() => {
                let seq = self
                    .index
                    .version(bucket.as_str(), k, v)
                    .await?
                    .map(|r| r.seq);
                Some((k.clone(), seq))
            }
            (Some(k), _) => Some((seek_after(k, &q.prefix, delim), None)),
            _ => None,
        };
        let mut count = 0usize;
        let mut last: Option<(String, Option<String>)> = None;
        loop {
            let want = (q.max_keys - count + 1).min(BATCH);
            let c = cursor.as_ref().map(|(k, s)| (k.as_str(), *s));
            let rows: Vec<VersionRow> = self
                .index
                .list_versions(bucket.as_str(), &q.prefix, c, want)
                .await?;
            if rows.is_empty() {
                return Ok(page);
            }
            let mut reseek = false;
            for row in &rows {
                if count == q.max_keys {
                    if let Some((k, v)) = last {
                        page.next_key_marker = Some(k);
                        page.next_version_id_marker = v;
                    }
                    return Ok(page);
                }
                if let Some(cp) = common_prefix(&row.key, &q.prefix, delim) {
                    page.common_prefixes.push(cp.to_owned());
                    count += 1;
                    last = Some((cp.to_owned(), None));
                    cursor = Some((format!("{cp}{PAST}"), None));
                    reseek = true;
                    break;
                }
                page.versions.push(super::row_to_meta(row)?);
                count += 1;
                last = Some((row.key.clone(), Some(row.version_id.clone())));
                cursor = Some((row.key.clone(), Some(row.seq)));
            }
            if !reseek && rows.len() < want {
                return Ok(page);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(common_prefix("a/b/c", "", Some("/")), Some("a/"));
        assert_eq!(common_prefix("a/b/c", "a/", Some("/")), Some("a/b/"));
        assert_eq!(common_prefix("a/b", "a/", Some("/")), None);
        assert_eq!(common_prefix("a/b", "", None), None);
        assert_eq!(seek_after("a/", "", Some("/")), format!("a/{PAST}"));
        assert_eq!(seek_after("a/b", "", None), "a/b");
    }
}
