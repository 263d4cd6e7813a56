//! Turning the source listing into tasks: both sides are listed in lock step (paged, in key
//! order, so memory stays bounded whatever the bucket size) and each key is decided: copy
//! (missing or changed on the destination), delete (`--delete`, only on the destination),
//! or unchanged. Decisions are recorded a page at a time together with the cursor, so a
//! listing interrupted by a crash continues after the last recorded page.

use tokio::sync::watch;

use super::open::Side;
use super::spec::{Filter, Options};
use super::{Error, Result};
use crate::state::{Db, NewTask};
use crate::store::ObjectMeta;
use crate::transfer::diff::{self, Cursor};

/// Keys decided per recorded page.
pub const PAGE: usize = 1000;

/// One page of decisions.
#[derive(Debug, Default)]
pub struct Page {
    pub tasks: Vec<NewTask>,
    pub unchanged: i64,
    /// The last key decided (relative); everything up to it is in this or an earlier page.
    pub cursor: Option<String>,
    pub done: bool,
}

/// Walks both sides from a cursor, a page of decisions at a time.
pub struct Comparer<'a> {
    src: Cursor<'a>,
    /// `None`: the destination bucket does not exist (a dry run): nothing is there.
    dst: Option<Cursor<'a>>,
    filter: &'a Filter,
    opts: &'a Options,
    src_what: &'a str,
    dst_what: &'a str,
    /// A HEAD showed that a side's ETags are not MD5s (SSE-KMS): differing ETags tell
    /// nothing there, so the default mode stops asking (two HEADs per object otherwise).
    opaque: std::sync::atomic::AtomicBool,
    /// `--checksum` met a pair whose content cannot be compared (said once per listing).
    size_only: std::sync::atomic::AtomicBool,
    /// The destination is a directory (its path), which cannot hold a folder marker with
    /// content: such a key is a task (that fails) even where the destination's index holds
    /// it (a copy made by an earlier version kept its bytes out of sight there). An empty
    /// marker is its folder there: one whose folder is missing (never made by an earlier
    /// version, or pruned with the last file in it) is a task too.
    into_dir: Option<&'a std::path::Path>,
}

/// Whether the folder of an empty folder marker `key` is in the directory `dir`, or a file
/// that keeps it from being made (the marker then stays in the index only).
pub fn marker_folder_there(dir: &std::path::Path, key: &str) -> bool {
    std::fs::symlink_metadata(dir.join(key.trim_end_matches('/'))).is_ok()
}

impl<'a> Comparer<'a> {
    pub fn new(
        src: &'a diff::Side<'a>,
        dst: Option<&'a diff::Side<'a>>,
        after: Option<&str>,
        filter: &'a Filter,
        opts: &'a Options,
        names: (&'a str, &'a str),
    ) -> Self {
        Self {
            src: Cursor::after(src, after, PAGE),
            dst: dst.map(|d| Cursor::after(d, after, PAGE)),
            filter,
            opts,
            src_what: names.0,
            dst_what: names.1,
            opaque: std::sync::atomic::AtomicBool::new(false),
            size_only: std::sync::atomic::AtomicBool::new(false),
            into_dir: None,
        }
    }

    /// See [`Comparer::into_dir`]: for a destination that is a directory.
    pub fn into_dir(mut self, dir: Option<&'a std::path::Path>) -> Self {
        self.into_dir = dir;
        self
    }

    pub async fn next_page(&mut self) -> Result<Page> {
        let mut page = Page::default();
        let mut decided = 0;
        // Keys whose listings say "unchanged" but whose source could have been put back with
        // an older time: their copy's `mtime` tells (see `unchanged_by_mtime`).
        let mut ask: Vec<(String, ObjectMeta, ObjectMeta)> = Vec::new();
        // Keys whose directory copy is dated otherwise than the source's Last-Modified, which
        // the source's `mtime` metadata may explain (see `unchanged_by_source_mtime`).
        let mut ask_source: Vec<(String, ObjectMeta, ObjectMeta)> = Vec::new();
        while decided < PAGE {
            let ks = self.src.peek_rel().await.map_err(|source| Error::Listing {
                side: "source",
                what: self.src_what.to_owned(),
                source,
            })?;
            let kd = match &mut self.dst {
                Some(d) => d.peek_rel().await.map_err(|source| Error::Listing {
                    side: "destination",
                    what: self.dst_what.to_owned(),
                    source,
                })?,
                None => None,
            };
            let (key, s, d) = match (ks, kd) {
                (None, None) => {
                    page.done = true;
                    break;
                }
                (Some(a), Some(b)) if a == b => {
                    (a, self.src.pop(), self.dst.as_mut().and_then(Cursor::pop))
                }
                (Some(a), Some(b)) if a < b => (a, self.src.pop(), None),
                (Some(a), None) => (a, self.src.pop(), None),
                (_, Some(b)) => (b, None, self.dst.as_mut().and_then(Cursor::pop)),
            };
            decided += 1;
            page.cursor = Some(key.clone());
            if !self.filter.key(&key) {
                continue;
            }
            match (s, d) {
                (Some(s), d) => {
                    if !self
                        .filter
                        .age((s.last_modified.unix_timestamp_nanos() / 1_000_000) as i64)
                    {
                        continue;
                    }
                    if let Some(dir) = self.into_dir
                        && key.ends_with('/')
                        && d.is_some()
                        && (s.size > 0 || !marker_folder_there(dir, &key))
                    {
                        page.tasks.push(NewTask {
                            key,
                            action: "copy",
                            size: s.size as i64,
                            etag: s.etag,
                        });
                        continue;
                    }
                    if let Some(d) = d.as_ref().filter(|d| self.asks_source_mtime(&s, d)) {
                        ask_source.push((key, s, d.clone()));
                        continue;
                    }
                    let unchanged = match &d {
                        Some(d) => !self.changed(&s, d).await,
                        None => false,
                    };
                    if let Some(d) = d.filter(|d| unchanged && self.asks_mtime(&s, d)) {
                        ask.push((key, s, d));
                        continue;
                    }
                    if unchanged {
                        page.unchanged += 1;
                    } else {
                        page.tasks.push(NewTask {
                            key,
                            action: "copy",
                            size: s.size as i64,
                            etag: s.etag,
                        });
                    }
                }
                // The age filters hold for the destination's objects too, as rclone's do:
                // `--older-than 1h --delete` leaves a copy younger than that alone.
                (None, Some(d))
                    if self.opts.delete
                        && self
                            .filter
                            .age((d.last_modified.unix_timestamp_nanos() / 1_000_000) as i64) =>
                {
                    page.tasks.push(NewTask {
                        key,
                        action: "delete",
                        size: 0,
                        etag: String::new(),
                    })
                }
                _ => {}
            }
        }
        self.unchanged_by_mtime(ask, &mut page).await;
        self.unchanged_by_source_mtime(ask_source, &mut page).await;
        self.unnamed_tasks(&mut page);
        Ok(page)
    }

    /// Whether a pair the listings call unchanged needs its copy's `mtime` looked at: from a
    /// source that keeps files' own times (a directory, where `cp -p` or a restore can put
    /// back a file with an *older* time and the same size) to one that dates objects by their
    /// upload (S3), where "not newer than its copy" cannot see that.
    fn asks_mtime(&self, s: &ObjectMeta, d: &ObjectMeta) -> bool {
        !self.opts.checksum
            && s.size == d.size
            && self.src.side().store.caps().keeps_modified
            && self
                .dst
                .as_ref()
                .is_some_and(|c| !c.side().store.caps().keeps_modified)
    }

    /// Decides the pairs of [`Self::asks_mtime`] by their copies' `mtime` metadata (written by
    /// Ferry's copies, and rclone's): one HEAD each, many at once. A copy with another time
    /// is copied again; one without the metadata (made by an older Ferry, or another tool)
    /// keeps the listing's verdict.
    async fn unchanged_by_mtime(
        &self,
        ask: Vec<(String, ObjectMeta, ObjectMeta)>,
        page: &mut Page,
    ) {
        let Some(dst) = self.dst.as_ref().map(|c| c.side()) else {
            page.unchanged += ask.len() as i64;
            return;
        };
        settle(ask, page, |s, d| async move {
            match dst.store.head_object(&dst.bucket, &d.key, None).await {
                Ok(m) => mtime_of(&m)
                    // An exact time, not a listing's rounded one: compared to the
                    // millisecond a directory's listing gives (a restore's whole-second
                    // time against a copy's `.7` is a change).
                    .is_some_and(|t| {
                        t.unix_timestamp_nanos() / 1_000_000
                            != s.last_modified.unix_timestamp_nanos() / 1_000_000
                    }),
                // Not there any more, or not answering: the copy task finds out.
                Err(_) => true,
            }
        })
        .await;
    }

    /// Whether a pair needs the source's `mtime` metadata looked at: an object store's
    /// object (dated by its upload) against a directory's copy of the same size dated
    /// otherwise. The copy was dated with the source's `mtime` when it had one (a file
    /// uploaded by rclone or Ferry keeps its own time there), as `rclone copy` dates it.
    fn asks_source_mtime(&self, s: &ObjectMeta, d: &ObjectMeta) -> bool {
        !self.opts.checksum
            && s.size == d.size
            && !same_time(s.last_modified, d.last_modified)
            && !self.src.side().store.caps().keeps_modified
            && self
                .dst
                .as_ref()
                .is_some_and(|c| c.side().store.caps().keeps_modified)
    }

    /// Decides the pairs of [`Self::asks_source_mtime`]: one HEAD of the source each, many
    /// at once. A copy dated as the source's `mtime` says is unchanged; any other is copied
    /// again (the listings' verdict).
    async fn unchanged_by_source_mtime(
        &self,
        ask: Vec<(String, ObjectMeta, ObjectMeta)>,
        page: &mut Page,
    ) {
        let src = self.src.side();
        settle(ask, page, |s, d| async move {
            match src.store.head_object(&src.bucket, &s.key, None).await {
                Ok(m) => {
                    m.etag != s.etag || !mtime_of(&m).is_some_and(|t| same_time(t, d.last_modified))
                }
                // Gone or not answering: the copy task finds out.
                Err(_) => true,
            }
        })
        .await;
    }

    /// Keys Ferry cannot name (`a//b` on an S3 server): a task each, which fails at once into
    /// the dead-letter list saying why, so the job reports them rather than missing them.
    /// Taken up to the page's cursor (all at the end), so a listing resumed after the cursor
    /// neither loses nor repeats one.
    fn unnamed_tasks(&mut self, page: &mut Page) {
        let upto = if page.done { None } else { page.cursor.clone() };
        let src = self.src.take_unnamed(upto.as_deref());
        let dst = self
            .dst
            .as_mut()
            .map(|d| d.take_unnamed(upto.as_deref()))
            .unwrap_or_default();
        for u in src.iter().filter(|u| self.filter.key(&u.key)) {
            page.tasks.push(NewTask {
                key: u.key.clone(),
                action: "copy",
                size: u.size as i64,
                etag: String::new(),
            });
        }
        if self.opts.delete {
            for u in dst {
                if self.filter.key(&u.key) && !src.iter().any(|s| s.key == u.key) {
                    page.tasks.push(NewTask {
                        key: u.key,
                        action: "delete",
                        size: 0,
                        etag: String::new(),
                    });
                }
            }
        }
    }

    /// Whether the destination's copy differs from the source (rclone's rules: size and
    /// modification time, or with `--checksum` size and content: where content cannot be
    /// compared, as for an SSE-KMS source, size alone). An S3 destination's copy of the same
    /// size that the times call unchanged is a change still when both listings give its
    /// content and that differs.
    /// Differing plain ETags are confirmed with HEAD first ([`diff::confirm`]): a listing
    /// cannot tell an ETag that is not an MD5.
    async fn changed(&self, s: &ObjectMeta, d: &ObjectMeta) -> bool {
        if s.size != d.size {
            return true;
        }
        if self.opts.checksum {
            let mut same = diff::same_content(s, d);
            // Differing ETags, or ones that cannot be compared (a multipart upload's): HEAD
            // both, whose `md5chksum` or checksums may settle it.
            if same != Some(true)
                && let Some(dst) = &self.dst
            {
                // (A HEAD that fails leaves a pair the listings could not settle unsettled,
                // as before it was asked: a throttled HEAD must not copy a large object again.)
                let failed = same;
                same = diff::confirm_or(self.src.side(), dst.side(), s, d, failed).await;
            }
            if same.is_none()
                && !self
                    .size_only
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
            {
                tracing::warn!(key = %s.key,
                    "--checksum compares this object (and any other like it) by size only: \
                     one side's ETag is not its MD5 (a multipart upload's, or SSE-KMS) and it \
                     carries no md5chksum to compare");
            }
            return same == Some(false);
        }
        let dst_keeps = self
            .dst
            .as_ref()
            .is_some_and(|c| c.side().store.caps().keeps_modified);
        if dst_keeps {
            // A directory's copy carries the source's time (see `jobs::run`): any other time
            // means one side changed, the destination's file edited in place included.
            return !same_time(s.last_modified, d.last_modified);
        }
        if modified_after(s.last_modified, d.last_modified) {
            // Newer at the source, yet the same bytes by both listings (equal MD5 ETags: a
            // bucket seeded by another tool, an object put again unchanged): rclone compares
            // the hashes before it sends and copies nothing, and so does Ferry, once HEADs
            // show the same headers and metadata too (a CopyObject in place changes only
            // those). Not for a local source, whose listed MD5 may predate an edit (it is
            // hashed as it is sent), nor for ETags a listing left out.
            let same = !self.src.side().store.caps().local
                && !s.etag.is_empty()
                && diff::same_content(s, d) == Some(true);
            return match (same, &self.dst) {
                (true, Some(dst)) => !diff::same_attrs(self.src.side(), dst.side(), s, d).await,
                _ => true,
            };
        }
        // An S3 destination dates its copy by the upload, which cannot tell a same-size change
        // made in the second of the copy, while it was in flight, with the destination's clock
        // ahead, or to the copy itself (a probe found all four kept for ever). Where both
        // listings carry the content's MD5 (or a full-object checksum of one kind), differing
        // content is a change too: nothing more to ask in steady state, where they agree.
        use std::sync::atomic::Ordering::Relaxed;
        if diff::same_content(s, d) != Some(false) || self.opaque.load(Relaxed) {
            return false;
        }
        let Some(dst) = self.dst.as_ref() else {
            return true;
        };
        match diff::confirm(self.src.side(), dst.side(), s, d).await {
            Some(same) => !same,
            None => {
                self.opaque.store(true, Relaxed);
                false
            }
        }
    }
}

/// The time an object's `mtime` metadata names, if it has one.
fn mtime_of(m: &ObjectMeta) -> Option<time::OffsetDateTime> {
    m.attrs
        .user_metadata
        .get(crate::transfer::copy::MTIME_KEY)
        .and_then(|v| crate::transfer::copy::parse_mtime(v))
}

/// Asks `changed` of each pair (a HEAD, say), 32 at once, and records the verdicts in
/// `page`: a copy task for each changed key, the count of the others.
async fn settle<F, Fut>(ask: Vec<(String, ObjectMeta, ObjectMeta)>, page: &mut Page, changed: F)
where
    F: Fn(ObjectMeta, ObjectMeta) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    use futures::StreamExt;
    let looked: Vec<(String, ObjectMeta, bool)> = futures::stream::iter(ask)
        .map(|(key, s, d)| {
            let verdict = changed(s.clone(), d);
            async move { (key, s, verdict.await) }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for (key, s, changed) in looked {
        if changed {
            page.tasks.push(NewTask {
                key,
                action: "copy",
                size: s.size as i64,
                etag: s.etag,
            });
        } else {
            page.unchanged += 1;
        }
    }
}

/// Whether two modification times are the same at the coarser precision of the two: whole
/// seconds where either has no fraction (S3's listings), else milliseconds (what the fs
/// store's index keeps).
fn same_time(a: time::OffsetDateTime, b: time::OffsetDateTime) -> bool {
    if a.nanosecond() == 0 || b.nanosecond() == 0 {
        a.unix_timestamp() == b.unix_timestamp()
    } else {
        a.unix_timestamp_nanos() / 1_000_000 == b.unix_timestamp_nanos() / 1_000_000
    }
}

/// Whether a source modified at `s` changed after its copy was made at `d`. S3 listings (AWS,
/// moto, HTTP dates) give whole seconds, so two times within one second cannot be ordered:
/// when either side has no fraction, both compare in seconds (rclone's modify window is the
/// coarser side's precision). Otherwise a file written in the same second as its copy (a
/// tree made and migrated at once) would look newer than the copy and be copied on every run.
fn modified_after(s: time::OffsetDateTime, d: time::OffsetDateTime) -> bool {
    if s.nanosecond() == 0 || d.nanosecond() == 0 {
        s.unix_timestamp() > d.unix_timestamp()
    } else {
        s > d
    }
}

/// Lists a job from its cursor to the end, recording each page; returns early (false) when
/// `running` turns false or another process took over the listing.
pub async fn list_job(
    db: &Db,
    job: i64,
    after: Option<&str>,
    owner: &str,
    (src, dst): (&Side, &Side),
    (filter, opts): (&Filter, &Options),
    running: &watch::Receiver<bool>,
) -> Result<bool> {
    let (s, d) = sides(src, dst);
    let mut cmp = Comparer::new(
        &s,
        Some(&d),
        after,
        filter,
        opts,
        (&src.display, &dst.display),
    )
    .into_dir(dst.dir.as_ref().map(|d| d.path.as_path()));
    loop {
        if !*running.borrow() {
            return Ok(false);
        }
        let now = crate::state::now_ms();
        if !db
            .take_lister(job, owner, now, now + super::run::LEASE_MS)
            .await?
        {
            return Ok(false);
        }
        let page = cmp.next_page().await?;
        let done = page.done;
        if !db
            .add_listing_page(
                job,
                owner,
                &page.tasks,
                page.cursor.as_deref(),
                page.unchanged,
                done,
            )
            .await?
        {
            return Ok(false);
        }
        if done {
            let not_indexed: Vec<(String, String)> = src
                .not_indexed
                .iter()
                .filter(|(k, _)| filter.key(k))
                .cloned()
                .collect();
            db.add_not_indexed(job, &not_indexed).await?;
            return Ok(true);
        }
    }
}

/// The two sides as [`diff::Side`]s.
pub fn sides<'a>(src: &'a Side, dst: &'a Side) -> (diff::Side<'a>, diff::Side<'a>) {
    (
        diff::Side {
            store: src.store.as_ref(),
            bucket: src.bucket.clone(),
            prefix: src.prefix.clone(),
        },
        diff::Side {
            store: dst.store.as_ref(),
            bucket: dst.bucket.clone(),
            prefix: dst.prefix.clone(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::modified_after;
    use time::{Duration, macros::datetime};

    #[test]
    fn whole_second_times_compare_in_seconds() {
        let written = datetime!(2026-11-30 12:00:00.700 UTC);
        // Copied 200 ms later, listed by S3 in whole seconds: not newer than its copy.
        assert!(!modified_after(written, datetime!(2026-11-30 12:00:00 UTC)));
        // Changed a second after the copy: newer, whatever the precision.
        assert!(modified_after(
            written + Duration::seconds(1),
            datetime!(2026-11-30 12:00:00 UTC)
        ));
        // Both precise: ordered to the nanosecond, as before.
        assert!(modified_after(
            written,
            datetime!(2026-11-30 12:00:00.600 UTC)
        ));
        assert!(!modified_after(
            written,
            datetime!(2026-11-30 12:00:00.800 UTC)
        ));
        // A copy made after the source changed is up to date.
        assert!(!modified_after(
            datetime!(2026-11-30 11:59:59 UTC),
            datetime!(2026-11-30 12:00:00 UTC)
        ));
    }
}
