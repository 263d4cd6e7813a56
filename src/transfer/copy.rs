//! The copy engine: one object from a source store to a destination store, resumable.
//!
//! Small objects stream in one PUT whose digest is checked against the source's ETag before
//! the destination commits it. Large ones go multipart with parts in parallel; every finished
//! part is reported to a [`Journal`] so an interrupted copy (pause, crash) resumes from the
//! last finished part of the same upload instead of starting again. A stop signal ends a copy
//! at a part boundary. Same-store copies are server-side. The multipart path is in
//! [`super::parts`].

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use md5::{Digest, Md5};
use time::OffsetDateTime;
use tokio::sync::watch;

use super::parts::{copy_parts, source_part_size};
use super::throttle::{Alive, Limiter, meter};
use crate::store::{
    self, BucketName, CopyOptions, GetOptions, NULL_VERSION, ObjectKey, ObjectMeta, PutOptions,
    Store,
};

/// Where the engine records an upload's progress so it can resume. Calls must be durable
/// when they return.
#[async_trait]
pub trait Journal: Send + Sync {
    /// A new multipart upload was created (`Some`), or the recorded one is abandoned (`None`).
    async fn upload(&self, upload_id: Option<&str>) -> store::Result<()>;
    /// A part finished (part 0: the size the upload's parts are cut to, see
    /// [`super::parts::CUT_RECORD`]).
    async fn part(&self, part_number: u32, etag: &str, size: u64) -> store::Result<()>;
}

/// A journal that records nothing (copies that are simply retried from scratch).
pub struct NoJournal;

#[async_trait]
impl Journal for NoJournal {
    async fn upload(&self, _: Option<&str>) -> store::Result<()> {
        Ok(())
    }
    async fn part(&self, _: u32, _: &str, _: u64) -> store::Result<()> {
        Ok(())
    }
}

/// How to copy.
#[derive(Clone)]
pub struct Plan {
    /// Objects above this size go multipart.
    pub threshold: u64,
    pub part_size: u64,
    /// Parts of one object in flight at once.
    pub parallel_parts: usize,
    pub limiter: Option<Arc<Limiter>>,
    /// Counts body bytes as they flow (for live rates).
    pub moved: Arc<AtomicU64>,
    /// Both sides are the same store: copy server-side.
    pub same_store: bool,
    /// Keep a failed multipart upload for a later resume (a job records it) instead of
    /// aborting it.
    pub keep_uploads: bool,
    /// Write the source's time in rclone's `mtime` metadata where the destination dates
    /// objects by their upload (see [`Item::dest_attrs`]): a migration's copies, not a
    /// namespace bucket's replicas (which stay as their primary is).
    pub record_mtime: bool,
    /// Whether the copy may still write (a job's lease on it holds): checked before every
    /// chunk of a body, before each part and before an upload is completed, so a process
    /// that lost its lease (frozen, cut off from the database) does not overwrite what
    /// another process copied since. A copy that finds it false ends without writing more.
    pub alive: Option<Alive>,
}

impl Plan {
    /// Whether the copy may no longer write (see [`Plan::alive`]).
    pub(super) fn lapsed(&self) -> bool {
        self.alive.as_ref().is_some_and(|a| !a())
    }
}

impl Default for Plan {
    fn default() -> Self {
        Self {
            threshold: super::MULTIPART_THRESHOLD,
            part_size: super::PART_SIZE,
            parallel_parts: 4,
            limiter: None,
            moved: Arc::default(),
            same_store: false,
            keep_uploads: false,
            record_mtime: false,
            alive: None,
        }
    }
}

/// An upload to continue, as recorded by a [`Journal`].
#[derive(Debug, Clone, Default)]
pub struct Resume {
    pub upload_id: String,
    /// (part number, ETag, size) of the parts recorded as finished.
    pub parts: Vec<(u32, String, u64)>,
}

/// What a copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The destination has the object; `sent` bytes crossed in this call. `modified` is the
    /// source's modification time.
    Copied {
        size: u64,
        sent: u64,
        modified: OffsetDateTime,
    },
    /// The destination already had it (a copy finished before an interruption).
    AlreadyThere { size: u64, modified: OffsetDateTime },
    /// Stopped at a part boundary; the journal has what finished.
    Stopped,
    /// The source has no such key (any more).
    SourceGone,
}

/// One object to copy: the source and destination keys and what the source looked like
/// when listed (its ETag, to tell whether a recorded upload is still of the same content).
pub struct Item<'a> {
    pub src: &'a dyn Store,
    pub sb: &'a BucketName,
    pub sk: &'a ObjectKey,
    pub dst: &'a dyn Store,
    pub db: &'a BucketName,
    pub dk: &'a ObjectKey,
    pub listed_etag: &'a str,
}

impl Item<'_> {
    /// Aborts an upload on the destination. A failed abort does not fail the copy, but it
    /// leaves the upload's parts stored there, so it is logged with the upload's id for an
    /// operator (or a lifecycle rule) to clean up.
    pub(super) async fn abort(&self, upload_id: &str) {
        match self.dst.abort_multipart(self.db, self.dk, upload_id).await {
            // Gone already: completed (a copy that finished before a crash) or aborted.
            Ok(()) | Err(store::Error::NoSuchUpload { .. }) => {}
            Err(e) => tracing::warn!(key = %self.dk, upload_id, error = %e,
                "could not abort a multipart upload on the destination; its parts stay there"),
        }
    }
}

/// The user metadata key rclone keeps a file's modification time in (`X-Amz-Meta-Mtime`, in
/// seconds with a fraction).
pub const MTIME_KEY: &str = "mtime";

/// The user metadata key rclone keeps an object's MD5 in (`X-Amz-Meta-Md5chksum`, base64)
/// where its ETag is not the MD5: a multipart upload's. Ferry writes it on a copy in parts
/// whose source's MD5 it knows, and reads it (with rclone's) to compare content.
pub const MD5_KEY: &str = "md5chksum";

/// The MD5 an object vouches for: its ETag when that is the body's MD5, else its
/// [`MD5_KEY`] metadata (a listing carries no metadata: HEAD's does).
pub fn vouched_md5(m: &ObjectMeta) -> Option<[u8; 16]> {
    use base64::Engine as _;
    if plain_md5(m) {
        return <[u8; 16]>::try_from(hex::decode(&m.etag).ok()?).ok();
    }
    // A directory's file not hashed since it last changed: metadata it carries may describe
    // bytes it held before (an edit that kept its size keeps its metadata).
    if crate::store::fs::is_unhashed_etag(&m.etag) {
        return None;
    }
    let v = m.attrs.user_metadata.get(MD5_KEY)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.trim())
        .ok()?;
    <[u8; 16]>::try_from(raw).ok()
}

/// Whether an object's ETag is its body's MD5 (not a multipart upload's, an SSE-KMS or
/// SSE-C one, or an fs store's unhashed file's).
pub fn plain_md5(m: &ObjectMeta) -> bool {
    m.etag.len() == 32 && m.etag.bytes().all(|b| b.is_ascii_hexdigit()) && !m.opaque_etag
}

/// `t` as rclone writes it in [`MTIME_KEY`]: seconds, and a fraction without trailing zeros.
pub fn mtime_value(t: OffsetDateTime) -> String {
    let nanos = t.nanosecond();
    if nanos == 0 {
        return t.unix_timestamp().to_string();
    }
    let frac = format!("{nanos:09}");
    format!("{}.{}", t.unix_timestamp(), frac.trim_end_matches('0'))
}

/// When an object says it was last modified: its [`MTIME_KEY`] metadata (rclone's, and
/// Ferry's copies of files) where it has one, else its Last-Modified. What a copy into a
/// directory dates its file with, as `rclone copy` does.
pub fn source_time(m: &ObjectMeta) -> OffsetDateTime {
    m.attrs
        .user_metadata
        .get(MTIME_KEY)
        .and_then(|v| parse_mtime(v))
        // A file's time is nanoseconds in an i64 (1677 to 2262): a value beyond (a probe's
        // year 1) became 2262 on the file, and that date went back to the object.
        .filter(|t| i64::try_from(t.unix_timestamp_nanos()).is_ok())
        .unwrap_or(m.last_modified)
}

/// The time an [`MTIME_KEY`] value names, if it is one.
pub fn parse_mtime(v: &str) -> Option<OffsetDateTime> {
    let (secs, frac) = v.trim().split_once('.').unwrap_or((v.trim(), ""));
    let secs: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
        .ok()
}

impl Item<'_> {
    /// What the destination's copy is written with: the source's attributes and, from a
    /// source that keeps files' own times (a directory) to one that dates objects by their
    /// upload (S3), the source's time in rclone's `mtime` metadata, so a later run can tell a
    /// file put back with an older time (`cp -p`, a restore) from the copy it already made,
    /// and rclone reads the file's time from it (a value already there, as from rclone, stays).
    pub(super) fn dest_attrs(&self, plan: &Plan, meta: &ObjectMeta) -> store::ObjectAttrs {
        let mut attrs = meta.attrs.clone();
        if plan.record_mtime && self.src.caps().keeps_modified && !self.dst.caps().keeps_modified {
            attrs
                .user_metadata
                .entry(MTIME_KEY.to_owned())
                .or_insert_with(|| mtime_value(meta.last_modified));
        }
        attrs
    }
}

/// The ETag S3 gives a multipart object: MD5 of the parts' binary MD5s, `-N`.
pub fn multipart_etag(part_etags: &[&str]) -> Option<String> {
    let mut h = Md5::new();
    for e in part_etags {
        h.update(hex::decode(e).ok()?);
    }
    Some(format!(
        "{}-{}",
        hex::encode(h.finalize()),
        part_etags.len()
    ))
}

/// Copies one object. `resume` continues a recorded multipart upload; `check_first` asks the
/// destination first whether an earlier, interrupted attempt already finished the copy.
pub async fn copy_object(
    it: &Item<'_>,
    plan: &Plan,
    resume: Option<Resume>,
    check_first: bool,
    journal: &dyn Journal,
    stop: &watch::Receiver<bool>,
) -> store::Result<Outcome> {
    // Whether the source's part layout was looked up already (and is of no use).
    let mut looked_up = false;
    if check_first || resume.is_some() || plan.same_store {
        let head = match it.src.head_object(it.sb, it.sk, None).await {
            Ok(m) => m,
            Err(store::Error::NoSuchKey { .. }) => {
                // Its recorded upload is of no use: aborted, not left on the destination.
                if let Some(r) = &resume {
                    it.abort(&r.upload_id).await;
                    journal.upload(None).await?;
                }
                return Ok(Outcome::SourceGone);
            }
            Err(e) => return Err(e),
        };
        if check_first && already_there(it, &head, resume.as_ref()).await? {
            if let Some(r) = &resume {
                it.abort(&r.upload_id).await;
            }
            return Ok(Outcome::AlreadyThere {
                size: head.size,
                modified: source_time(&head),
            });
        }
        if plan.same_store {
            if plan.lapsed() {
                return Ok(Outcome::Stopped);
            }
            let m = it
                .dst
                .copy_object(it.sb, it.sk, it.db, it.dk, CopyOptions::default())
                .await?;
            return Ok(Outcome::Copied {
                size: m.size,
                sent: 0,
                modified: source_time(&head),
            });
        }
        let layout = source_part_size(it, &head).await?;
        if head.size > plan.threshold || layout.is_some() {
            return copy_parts(it, plan, &head, layout, resume, journal, stop).await;
        }
        // Copied whole: an upload recorded for it is of no use.
        if let Some(r) = &resume {
            it.abort(&r.upload_id).await;
            journal.upload(None).await?;
        }
        looked_up = true;
    }
    // One GET: its answer says whether the object is small enough for one PUT.
    let got = match it.src.get_object(it.sb, it.sk, GetOptions::default()).await {
        Ok(g) => g,
        Err(store::Error::NoSuchKey { .. }) => return Ok(Outcome::SourceGone),
        Err(e) => return Err(e),
    };
    // A multipart source is copied with its own part boundaries, whatever its size.
    let layout = if looked_up {
        None
    } else {
        source_part_size(it, &got.meta).await?
    };
    if got.meta.size > plan.threshold || layout.is_some() {
        let head = got.meta;
        drop(got.body);
        return copy_parts(it, plan, &head, layout, resume, journal, stop).await;
    }
    copy_whole(it, plan, got, stop).await
}

/// Whether the destination already holds what the source has: same size, and the same ETag
/// (or, for a multipart copy whose parts were all recorded, the ETag those parts make).
async fn already_there(
    it: &Item<'_>,
    src: &ObjectMeta,
    resume: Option<&Resume>,
) -> store::Result<bool> {
    let d = match it.dst.head_object(it.db, it.dk, None).await {
        Ok(d) => d,
        Err(store::Error::NoSuchKey { .. }) => return Ok(false),
        Err(e) => return Err(e),
    };
    if d.size != src.size || d.last_modified < src.last_modified {
        return Ok(false);
    }
    if d.etag == src.etag {
        return Ok(true);
    }
    if let Some(r) = resume {
        // Part 0 is no part: it records the size the parts were cut to (`CUT_RECORD`). Taken
        // for one, it made this check fail for every resumed multipart copy, and a copy that
        // had completed just before a crash was sent again whole (a probe).
        let parts = r.parts.iter().filter(|p| p.0 > 0);
        let etags: Vec<&str> = parts.clone().map(|p| p.1.as_str()).collect();
        let covered: u64 = parts.map(|p| p.2).sum();
        return Ok(covered == src.size && multipart_etag(&etags).as_deref() == Some(&d.etag));
    }
    // A directory's file indexed without its MD5 has no ETag to compare: an object of its
    // size written after the file last changed is taken as this copy's (the listing's own
    // rule for whether a copy was needed).
    Ok(crate::store::fs::is_unhashed_etag(&src.etag))
}

pub(super) fn tags_needed(it: &Item<'_>, m: &ObjectMeta) -> bool {
    m.tag_count > 0 && it.src.caps().tagging && it.dst.caps().tagging
}

async fn copy_whole(
    it: &Item<'_>,
    plan: &Plan,
    got: store::GetResult,
    stop: &watch::Receiver<bool>,
) -> store::Result<Outcome> {
    let meta = got.meta;
    let tags = if tags_needed(it, &meta) {
        it.src
            .get_object_tags(it.sb, it.sk, Some(&meta.version_id))
            .await?
            .1
    } else {
        Vec::new()
    };
    let checksum = meta.checksum.clone().filter(|c| !c.composite);
    // An ETag that is not the MD5 (SSE-KMS, SSE-C) cannot check the copy.
    let want_md5 = plain_md5(&meta).then(|| meta.etag.clone());
    let source_md5 = want_md5
        .as_deref()
        .and_then(|m| <[u8; 16]>::try_from(hex::decode(m).ok()?).ok());
    // No source MD5 to check the copy against: a checksum protects the transfer as well as
    // an MD5 would, and costs far less to compute.
    let checksum_suffices = want_md5.is_none();
    let verify: store::Verifier = Box::new(move |d: &store::Digests| {
        if let Some(m) = &want_md5
            && hex::encode(d.md5) != *m
        {
            return Err(store::Error::BadDigest {
                what: "source's ETag (its MD5)".into(),
            });
        }
        if let (Some(want), Some(got)) = (&checksum, &d.checksum)
            && want.algorithm == got.algorithm
            && want.value != got.value
        {
            return Err(store::Error::BadDigest {
                what: format!("source's {} checksum", want.algorithm.as_str()),
            });
        }
        Ok(())
    });
    // An empty body has no chunk to check.
    if plan.lapsed() {
        return Ok(Outcome::Stopped);
    }
    let body = meter(
        got.body,
        plan.moved.clone(),
        plan.limiter.clone(),
        plan.alive.clone(),
    );
    let put = it.dst.put_object(
        it.db,
        it.dk,
        body,
        PutOptions {
            attrs: it.dest_attrs(plan, &meta),
            tags,
            checksum_algorithm: meta
                .checksum
                .as_ref()
                .filter(|c| !c.composite)
                .map(|c| c.algorithm),
            size_hint: Some(meta.size),
            source_md5,
            shared_digests: None,
            checksum_suffices,
            checksum: None,
            full_object_checksum: false,
            verify: Some(verify),
        },
    );
    let mut stop = stop.clone();
    tokio::select! {
        r = put => { r?; }
        _ = stop.wait_for(|s| *s) => return Ok(Outcome::Stopped),
    }
    Ok(Outcome::Copied {
        size: meta.size,
        sent: meta.size,
        modified: source_time(&meta),
    })
}

/// The version to read when several reads must see one version (never the `null` one,
/// which some servers refuse to be asked for by id).
pub(super) fn pinned(m: &ObjectMeta) -> Option<String> {
    (m.version_id != NULL_VERSION && !m.version_id.is_empty()).then(|| m.version_id.clone())
}

#[cfg(test)]
mod tests {
    use super::{MTIME_KEY, ObjectMeta, OffsetDateTime, source_time};

    /// An object's `mtime` dates a directory's copy only where a file can hold it.
    #[test]
    fn a_source_time_out_of_a_files_range_is_not_taken() {
        let mut m = ObjectMeta {
            key: crate::store::ObjectKey::parse("k").expect("key"),
            version_id: "null".into(),
            is_latest: true,
            delete_marker: false,
            size: 1,
            etag: String::new(),
            last_modified: OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time"),
            attrs: Default::default(),
            checksum: None,
            tag_count: 0,
            parts_count: None,
            opaque_etag: false,
        };
        for (value, secs) in [
            ("1577934245.123456789", 1_577_934_245),
            ("-62135596800", 1_700_000_000),
            ("abc", 1_700_000_000),
        ] {
            m.attrs
                .user_metadata
                .insert(MTIME_KEY.to_owned(), value.to_owned());
            assert_eq!(source_time(&m).unix_timestamp(), secs, "{value}");
        }
    }

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        // Two parts whose MD5s are those of "a" and "b".
        let a = "0cc175b9c0f1b6a831c399e269772661";
        let b = "92eb5ffee6ae2fec3ad71c777531578f";
        let e = super::multipart_etag(&[a, b]).unwrap_or_default();
        assert!(e.ends_with("-2"), "{e}");
        assert_eq!(e.len(), 34);
        assert!(super::multipart_etag(&["zz"]).is_none());
    }

    /// rclone's `mtime` metadata: seconds and a fraction without trailing zeros, read back
    /// to the nanosecond; anything else is no time.
    #[test]
    fn mtime_metadata_reads_back() {
        use super::{mtime_value, parse_mtime};
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_120_000_000)
            .expect("time");
        assert_eq!(mtime_value(t), "1700000000.12");
        assert_eq!(parse_mtime(&mtime_value(t)), Some(t));
        let whole = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("time");
        assert_eq!(mtime_value(whole), "1700000000");
        assert_eq!(parse_mtime("1700000000"), Some(whole));
        assert_eq!(
            parse_mtime("1574946513.0396225").map(|t| t.nanosecond()),
            Some(39_622_500)
        );
        for bad in ["", "x", "12.3a", "1.2.3"] {
            assert_eq!(parse_mtime(bad), None, "{bad}");
        }
    }
}
