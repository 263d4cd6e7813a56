//! Comparing two listings in lock step: both are paged in key order, so memory stays bounded
//! whatever the bucket sizes.

use std::collections::VecDeque;

use serde::Serialize;

use crate::store::{self, BucketName, ListQuery, ObjectKey, ObjectMeta, Store, UnnamedKey};

/// One side of a comparison: a store, a bucket and a key prefix.
pub struct Side<'a> {
    pub store: &'a dyn Store,
    pub bucket: BucketName,
    pub prefix: String,
}

/// A side's prefix as the folder it names, as `ferry migrate` (and rclone) read it: `photos`
/// and `photos/` both mean the keys under `photos/`. Refused if it is no path (`a//b`,
/// `x/../y`: S3 keys may hold those, but as a folder named on a command line they are far
/// likelier a slip than meant), or no key could start with it.
pub fn folder_prefix(p: &str) -> Result<String, String> {
    // What follows `bucket/`: a leading `/` is `bucket//x`, an empty segment, refused as
    // `a//b` is further on (it was read as `x/`, which is not where keys starting with `/`
    // are).
    if p.starts_with('/') {
        return Err(format!(
            "the key prefix {p:?} starts with an empty path segment (`//` after the bucket)"
        ));
    }
    if p.is_empty() {
        return Ok(String::new());
    }
    let p = if p.ends_with('/') {
        p.to_owned()
    } else {
        format!("{p}/")
    };
    crate::store::ObjectKey::parse(&format!("{p}x"))
        .and_then(|k| k.check_path())
        .map(|()| p.clone())
        .map_err(|e| format!("the key prefix {p:?} is not usable: {e}"))
}

/// The ETags of two objects found to differ, as said: a download (`--download`) can find
/// different bytes under equal ETags (a file rotted or edited behind its store's back).
pub fn etags_said(a: &str, b: &str) -> String {
    match a == b {
        true => format!("the same ETag {a}, different bytes"),
        false => format!("ETag {a} vs {b}"),
    }
}

/// One difference between the two sides (keys relative to each side's prefix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Difference {
    OnlyInA {
        key: String,
        size: u64,
    },
    OnlyInB {
        key: String,
        size: u64,
    },
    Size {
        key: String,
        a: u64,
        b: u64,
    },
    Content {
        key: String,
        a: String,
        b: String,
    },
    /// A key one side holds that Ferry cannot name, so cannot compare or copy.
    Unnamed {
        key: String,
        in_a: bool,
        why: String,
    },
}

/// Totals of a comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub compared: u64,
    pub differences: u64,
    /// Keys present on both sides with the same size whose content could not be compared
    /// (multipart ETags of different part sizes and no common checksum).
    pub size_only: u64,
}

/// A paged cursor over one side's listing, in key order.
pub struct Cursor<'a> {
    side: &'a Side<'a>,
    buf: VecDeque<ObjectMeta>,
    /// Listed keys Ferry cannot name (relative to the prefix), in key order, not yet taken.
    unnamed: VecDeque<UnnamedKey>,
    after: Option<String>,
    done: bool,
    page: usize,
}

impl<'a> Cursor<'a> {
    /// The side this cursor walks.
    pub fn side(&self) -> &'a Side<'a> {
        self.side
    }

    pub fn new(side: &'a Side<'a>) -> Self {
        Self::after(side, None, 1000)
    }

    /// A cursor over keys after `rel_after` (relative to the side's prefix), `page` keys per
    /// listing request.
    pub fn after(side: &'a Side<'a>, rel_after: Option<&str>, page: usize) -> Self {
        Self {
            side,
            buf: VecDeque::new(),
            unnamed: VecDeque::new(),
            after: rel_after.map(|k| format!("{}{k}", side.prefix)),
            done: false,
            page,
        }
    }

    pub async fn peek(&mut self) -> store::Result<Option<&ObjectMeta>> {
        // A page may hold only keys Ferry cannot name: list on until a named one or the end.
        while self.buf.is_empty() && !self.done {
            let page = self
                .side
                .store
                .list_objects(
                    &self.side.bucket,
                    &ListQuery {
                        prefix: self.side.prefix.clone(),
                        delimiter: None,
                        start_after: self.after.clone(),
                        max_keys: self.page,
                    },
                )
                .await?;
            self.done =
                page.next_marker.is_none() || (page.objects.is_empty() && page.unnamed.is_empty());
            self.after = page.next_marker;
            // The prefix's own folder marker (`photos/` under the prefix `photos/`) is the
            // side's root, not an object in it (rclone skips it too).
            let prefix = self.side.prefix.len();
            self.buf.extend(
                page.objects
                    .into_iter()
                    .filter(|m| m.key.as_str().len() > prefix),
            );
            self.unnamed
                .extend(page.unnamed.into_iter().map(|u| UnnamedKey {
                    key: u.key.get(prefix..).unwrap_or_default().to_owned(),
                    ..u
                }));
        }
        Ok(self.buf.front())
    }

    /// Takes the keys Ferry cannot name listed so far, up to `upto` (relative, inclusive;
    /// `None`: all of them).
    pub fn take_unnamed(&mut self, upto: Option<&str>) -> Vec<UnnamedKey> {
        let n = match upto {
            None => self.unnamed.len(),
            Some(k) => self
                .unnamed
                .iter()
                .take_while(|u| u.key.as_str() <= k)
                .count(),
        };
        self.unnamed.drain(..n).collect()
    }

    /// The key [`Self::peek`] returned, relative to the side's prefix.
    pub async fn peek_rel(&mut self) -> store::Result<Option<String>> {
        let side = self.side;
        Ok(self.peek().await?.map(|m| rel(side, m)))
    }

    pub fn pop(&mut self) -> Option<ObjectMeta> {
        self.buf.pop_front()
    }

    /// Whether the next [`Self::peek`] would ask the store for a page.
    pub fn needs_page(&self) -> bool {
        self.buf.is_empty() && !self.done
    }
}

/// A key relative to its side's prefix.
pub fn rel(side: &Side<'_>, m: &ObjectMeta) -> String {
    m.key
        .as_str()
        .get(side.prefix.len()..)
        .unwrap_or_default()
        .to_owned()
}

/// Whether two objects of the same size have the same content, if that can be told.
pub fn same_content(a: &ObjectMeta, b: &ObjectMeta) -> Option<bool> {
    if let (Some(ca), Some(cb)) = (&a.checksum, &b.checksum)
        && ca.algorithm == cb.algorithm
        && ca.composite == cb.composite
        && !ca.composite
    {
        return Some(ca.value == cb.value);
    }
    let plain = |m: &ObjectMeta| !m.etag.contains('-') && !m.opaque_etag;
    if plain(a) && plain(b) {
        return Some(a.etag == b.etag);
    }
    if a.etag == b.etag {
        return Some(true);
    }
    // A multipart object's MD5 in its `md5chksum` metadata (rclone's, and Ferry's copies in
    // parts), against the other's ETag or metadata: HEAD's answers carry it.
    let (ma, mb) = (
        crate::transfer::copy::vouched_md5(a),
        crate::transfer::copy::vouched_md5(b),
    );
    if let (Some(ma), Some(mb)) = (ma, mb) {
        return Some(ma == mb);
    }
    None
}

/// Asks both stores about two listed objects whose ETags differ or cannot be compared: a
/// listing does not say whether an ETag is the MD5 (S3 with SSE-KMS gives another value),
/// HEAD does, and it may also carry checksums that settle it. An object gone or changed
/// since the listing, or a HEAD that fails, is a difference.
pub async fn confirm(a: &Side<'_>, b: &Side<'_>, ma: &ObjectMeta, mb: &ObjectMeta) -> Option<bool> {
    confirm_or(a, b, ma, mb, Some(false)).await
}

/// [`confirm`], with `failed` the verdict when a HEAD fails (not when an object is gone or
/// changed: that is a difference either way).
pub async fn confirm_or(
    a: &Side<'_>,
    b: &Side<'_>,
    ma: &ObjectMeta,
    mb: &ObjectMeta,
    failed: Option<bool>,
) -> Option<bool> {
    let (ha, hb) = futures::join!(head(a, &ma.key), head(b, &mb.key));
    let unchanged = |h: &ObjectMeta, m: &ObjectMeta| h.size == m.size && h.etag == m.etag;
    match (ha, hb) {
        (Ok(Some(ha)), Ok(Some(hb))) if unchanged(&ha, ma) && unchanged(&hb, mb) => {
            same_content(&ha, &hb)
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(key = %ma.key, error = %e, "a HEAD to compare content failed");
            failed
        }
        _ => Some(false),
    }
}

/// Whether two objects, as HEAD now gives them, still are as listed and carry the same
/// headers and user metadata (a CopyObject in place that changed only those moves the
/// source's time, not its ETag). `mtime` and `md5chksum`, which a copy writes, are left out,
/// and so is the storage class (a provider's own). A HEAD that fails, or an object gone or
/// changed since the listing, is a difference.
pub async fn same_attrs(a: &Side<'_>, b: &Side<'_>, ma: &ObjectMeta, mb: &ObjectMeta) -> bool {
    let (ha, hb) = futures::join!(head(a, &ma.key), head(b, &mb.key));
    let (Ok(Some(ha)), Ok(Some(hb))) = (ha, hb) else {
        return false;
    };
    let as_listed = |h: &ObjectMeta, m: &ObjectMeta| h.size == m.size && h.etag == m.etag;
    let attrs = |h: &ObjectMeta| {
        let mut at = h.attrs.clone();
        at.storage_class = None;
        for k in [
            crate::transfer::copy::MTIME_KEY,
            crate::transfer::copy::MD5_KEY,
        ] {
            at.user_metadata.remove(k);
        }
        // S3 names a body without a type `binary/octet-stream`.
        if at.content_type.as_deref() == Some("binary/octet-stream") {
            at.content_type = None;
        }
        at
    };
    as_listed(&ha, ma) && as_listed(&hb, mb) && attrs(&ha) == attrs(&hb)
}

async fn head(side: &Side<'_>, key: &ObjectKey) -> store::Result<Option<ObjectMeta>> {
    match side.store.head_object(&side.bucket, key, None).await {
        Ok(h) => Ok(Some(h)),
        Err(store::Error::NoSuchKey { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads both objects whole and tells whether their bytes are the same (their MD5s, each
/// computed as its body streams, so memory stays flat). As for [`confirm`], an object gone
/// or changed since the listing, or one that cannot be read, is a difference (logged).
pub async fn same_bytes(a: &Side<'_>, b: &Side<'_>, ma: &ObjectMeta, mb: &ObjectMeta) -> bool {
    async fn md5_of(side: &Side<'_>, listed: &ObjectMeta) -> store::Result<Option<[u8; 16]>> {
        use futures::StreamExt;
        use md5::{Digest, Md5};
        let got = match side
            .store
            .get_object(&side.bucket, &listed.key, store::GetOptions::default())
            .await
        {
            Ok(g) => g,
            Err(store::Error::NoSuchKey { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if got.meta.etag != listed.etag || got.meta.size != listed.size {
            return Ok(None);
        }
        let mut body = got.body;
        let mut h = Md5::new();
        while let Some(chunk) = body.next().await {
            h.update(chunk.map_err(store::Error::Body)?);
        }
        Ok(Some(h.finalize().into()))
    }
    let (da, db) = futures::join!(md5_of(a, ma), md5_of(b, mb));
    match (da, db) {
        (Ok(Some(x)), Ok(Some(y))) => x == y,
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(key = %ma.key, error = %e, "verify could not read an object to compare it");
            false
        }
        _ => false,
    }
}

/// Walks both sides; calls `report` for every difference; returns the totals. With
/// `download`, every two objects of the same size that their listing and HEAD do not show
/// to differ are read whole and compared, as rclone's `check --download` does: none counts
/// as "compared by size only", and bytes that changed behind their recorded ETag count.
pub async fn diff(
    a: &Side<'_>,
    b: &Side<'_>,
    download: bool,
    mut report: impl FnMut(Difference),
) -> store::Result<Summary> {
    let mut ca = Cursor::new(a);
    let mut cb = Cursor::new(b);
    let mut sum = Summary::default();
    loop {
        let ka = ca.peek_rel().await?;
        let kb = cb.peek_rel().await?;
        let d = match (ka, kb) {
            (None, None) => break,
            (Some(x), None) => {
                let m = ca.pop();
                Some(Difference::OnlyInA {
                    key: x,
                    size: m.map_or(0, |m| m.size),
                })
            }
            (None, Some(y)) => {
                let m = cb.pop();
                Some(Difference::OnlyInB {
                    key: y,
                    size: m.map_or(0, |m| m.size),
                })
            }
            (Some(x), Some(y)) if x < y => {
                let m = ca.pop();
                Some(Difference::OnlyInA {
                    key: x,
                    size: m.map_or(0, |m| m.size),
                })
            }
            (Some(x), Some(y)) if x > y => {
                let m = cb.pop();
                Some(Difference::OnlyInB {
                    key: y,
                    size: m.map_or(0, |m| m.size),
                })
            }
            (Some(x), Some(_)) => {
                let (Some(ma), Some(mb)) = (ca.pop(), cb.pop()) else {
                    break;
                };
                sum.compared += 1;
                if ma.size != mb.size {
                    Some(Difference::Size {
                        key: x,
                        a: ma.size,
                        b: mb.size,
                    })
                } else {
                    let mut same = same_content(&ma, &mb);
                    // A listing carries no checksums: when its ETags differ or cannot be
                    // compared (a one-part source copied in parts), HEAD both, whose
                    // checksums may settle it (a whole-object CRC kept across the copy).
                    if same != Some(true) {
                        same = confirm(a, b, &ma, &mb).await;
                    }
                    // Asked to download, equal metadata is not taken for equal bytes: an
                    // fs store's file rotted (or edited with its mtime put back) keeps its
                    // recorded ETag, and only reading it tells.
                    if same != Some(false) && download {
                        same = Some(same_bytes(a, b, &ma, &mb).await);
                    }
                    match same {
                        Some(true) => None,
                        Some(false) => Some(Difference::Content {
                            key: x,
                            a: ma.etag,
                            b: mb.etag,
                        }),
                        None => {
                            sum.size_only += 1;
                            None
                        }
                    }
                }
            }
        };
        let unnamed = ca.take_unnamed(None).into_iter().map(|u| (u, true));
        let unnamed: Vec<_> = unnamed
            .chain(cb.take_unnamed(None).into_iter().map(|u| (u, false)))
            .collect();
        for (u, in_a) in unnamed {
            sum.differences += 1;
            report(Difference::Unnamed {
                key: u.key,
                in_a,
                why: u.why,
            });
        }
        if let Some(d) = d {
            sum.differences += 1;
            report(d);
        }
    }
    Ok(sum)
}
