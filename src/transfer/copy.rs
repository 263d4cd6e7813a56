//! The copy engine: one object from a source store to a destination store, resumable.
//!
//! Small objects stream in one PUT whose digest is checked against the source's ETag before
//! the destination commits it. Large ones go multipart with parts in parallel; every finished
//! part is reported to a [`Journal`] so an interrupted copy (pause, crash) resumes from the
//! last finished part of the same upload instead of starting again. A stop signal ends a copy
//! at a part boundary. Same-store copies are server-side. The parts of a local file going to
//! a remote store are read twice, once to checksum each up front: the part then goes with a
//! CRC32C the destination checks, which costs far less than the MD5 hashed otherwise to
//! compare with the part's ETag (the store still hashes the MD5 for a backend it found not to
//! check checksums, and then the first read was for nothing).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use futures::stream::{FuturesUnordered, StreamExt};
use md5::{Digest, Md5};
use tokio::sync::watch;

use super::throttle::{Limiter, meter};
use crate::store::digest::ChecksumHasher;
use crate::store::{
    self, BucketName, ByteRange, CompletedPart, CopyOptions, GetOptions, NULL_VERSION, ObjectKey,
    ObjectMeta, PutOptions, Store,
};

/// Where the engine records an upload's progress so it can resume. Calls must be durable
/// when they return.
#[async_trait]
pub trait Journal: Send + Sync {
    /// A new multipart upload was created (`Some`), or the recorded one is abandoned (`None`).
    async fn upload(&self, upload_id: Option<&str>) -> store::Result<()>;
    /// A part finished.
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
    /// The destination has the object; `sent` bytes crossed in this call.
    Copied { size: u64, sent: u64 },
    /// The destination already had it (a copy finished before an interruption).
    AlreadyThere { size: u64 },
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
    if check_first || resume.is_some() || plan.same_store {
        let head = match it.src.head_object(it.sb, it.sk, None).await {
            Ok(m) => m,
            Err(store::Error::NoSuchKey { .. }) => return Ok(Outcome::SourceGone),
            Err(e) => return Err(e),
        };
        if check_first && already_there(it, &head, resume.as_ref()).await? {
            if let Some(r) = &resume {
                let _ = it.dst.abort_multipart(it.db, it.dk, &r.upload_id).await;
            }
            return Ok(Outcome::AlreadyThere { size: head.size });
        }
        if plan.same_store {
            let m = it
                .dst
                .copy_object(it.sb, it.sk, it.db, it.dk, CopyOptions::default())
                .await?;
            return Ok(Outcome::Copied {
                size: m.size,
                sent: 0,
            });
        }
        if head.size > plan.threshold {
            return copy_parts(it, plan, &head, resume, journal, stop).await;
        }
    }
    // One GET: its answer says whether the object is small enough for one PUT.
    let got = match it.src.get_object(it.sb, it.sk, GetOptions::default()).await {
        Ok(g) => g,
        Err(store::Error::NoSuchKey { .. }) => return Ok(Outcome::SourceGone),
        Err(e) => return Err(e),
    };
    if got.meta.size > plan.threshold {
        let head = got.meta;
        drop(got.body);
        return copy_parts(it, plan, &head, resume, journal, stop).await;
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
        let etags: Vec<&str> = r.parts.iter().map(|p| p.1.as_str()).collect();
        let covered: u64 = r.parts.iter().map(|p| p.2).sum();
        return Ok(covered == src.size && multipart_etag(&etags).as_deref() == Some(&d.etag));
    }
    // A directory's file indexed without its MD5 has no ETag to compare: an object of its
    // size written after the file last changed is taken as this copy's (the listing's own
    // rule for whether a copy was needed).
    Ok(crate::store::fs::is_unhashed_etag(&src.etag))
}

fn tags_needed(it: &Item<'_>, m: &ObjectMeta) -> bool {
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
    let plain = meta.etag.len() == 32 && meta.etag.bytes().all(|b| b.is_ascii_hexdigit());
    let want_md5 = (plain && !meta.opaque_etag).then(|| meta.etag.clone());
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
    let body = meter(got.body, plan.moved.clone(), plan.limiter.clone());
    let put = it.dst.put_object(
        it.db,
        it.dk,
        body,
        PutOptions {
            attrs: meta.attrs.clone(),
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
    })
}

/// The version to read when several reads must see one version (never the `null` one,
/// which some servers refuse to be asked for by id).
fn pinned(m: &ObjectMeta) -> Option<String> {
    (m.version_id != NULL_VERSION && !m.version_id.is_empty()).then(|| m.version_id.clone())
}

async fn copy_parts(
    it: &Item<'_>,
    plan: &Plan,
    head: &ObjectMeta,
    resume: Option<Resume>,
    journal: &dyn Journal,
    stop: &watch::Receiver<bool>,
) -> store::Result<Outcome> {
    let part_size = part_size_for(plan.part_size, head.size);
    let count = head.size.div_ceil(part_size) as u32;
    // A local source can be read twice: once to checksum a part up front, so the part goes
    // with a CRC32C the destination checks instead of an MD5 hashed here for its ETag.
    let mut checksummed = it.src.caps().local && !it.dst.caps().local;
    // Continue a recorded upload only if the source is unchanged and the destination still
    // has the upload; keep the recorded parts the destination also lists.
    let mut done: Vec<Option<Done>> = vec![None; count as usize];
    let mut upload = None;
    if let Some(r) = resume {
        let open = if head.etag == it.listed_etag {
            open_upload(it, &r.upload_id).await?
        } else {
            None
        };
        if let Some(page) = open {
            // Its parts carry the checksum the upload was created with, or none; completion
            // names each, so a recorded part counts only with the checksum the destination
            // lists for it.
            checksummed &= page.checksum_algorithm == Some(PART_CHECKSUM);
            let sums = if checksummed {
                Some(listed_checksums(it, &r.upload_id).await?)
            } else {
                None
            };
            for (n, etag, size) in r.parts {
                let checksum = sums.as_ref().and_then(|s| s.get(&n).cloned());
                if n >= 1 && n <= count && (sums.is_none() || checksum.is_some()) {
                    done[n as usize - 1] = Some(Done {
                        etag,
                        size,
                        checksum,
                    });
                }
            }
            upload = Some(r.upload_id);
        } else {
            let _ = it.dst.abort_multipart(it.db, it.dk, &r.upload_id).await;
            journal.upload(None).await?;
        }
    }
    let upload = match upload {
        Some(u) => u,
        None => {
            let tags = if tags_needed(it, head) {
                it.src
                    .get_object_tags(it.sb, it.sk, Some(&head.version_id))
                    .await?
                    .1
            } else {
                Vec::new()
            };
            let u = it
                .dst
                .create_multipart(
                    it.db,
                    it.dk,
                    PutOptions {
                        attrs: head.attrs.clone(),
                        tags,
                        checksum_algorithm: checksummed.then_some(PART_CHECKSUM),
                        checksum_suffices: checksummed,
                        ..Default::default()
                    },
                )
                .await?;
            journal.upload(Some(&u)).await?;
            u
        }
    };
    let sending = Sending {
        upload: &upload,
        part_size,
        checksummed,
    };
    let result = send_parts(it, plan, head, &sending, &mut done, journal, stop).await;
    if result.is_err() && !plan.keep_uploads {
        let _ = it.dst.abort_multipart(it.db, it.dk, &upload).await;
    }
    let (sent, stopped) = result?;
    if stopped || done.iter().any(Option::is_none) {
        return Ok(Outcome::Stopped);
    }
    let parts: Vec<CompletedPart> = done
        .iter()
        .enumerate()
        .map(|(i, p)| CompletedPart {
            part_number: i as u32 + 1,
            etag: p.as_ref().map(|p| p.etag.clone()).unwrap_or_default(),
            checksum: p.as_ref().and_then(|p| p.checksum.clone()),
        })
        .collect();
    let m = it
        .dst
        .complete_multipart(it.db, it.dk, &upload, &parts)
        .await?;
    let etags: Vec<&str> = parts.iter().map(|p| p.etag.as_str()).collect();
    let expected = multipart_etag(&etags);
    if m.size != head.size
        || expected
            .as_deref()
            .is_some_and(|e| m.etag.contains('-') && m.etag != e)
    {
        return Err(store::Error::BadDigest {
            what: format!(
                "parts: the completed object has {} bytes and ETag {}, not {} bytes and ETag {}",
                m.size,
                m.etag,
                head.size,
                expected.unwrap_or_default()
            ),
        });
    }
    Ok(Outcome::Copied {
        size: head.size,
        sent,
    })
}

/// The checksum of parts checksummed up front (see [`copy_parts`]): CRC32C, which this
/// machine computes in hardware.
const PART_CHECKSUM: store::ChecksumAlgorithm = store::ChecksumAlgorithm::Crc32c;

/// A finished part: its ETag and size, and its checksum when it carries one.
#[derive(Debug, Clone)]
struct Done {
    etag: String,
    size: u64,
    checksum: Option<store::Checksum>,
}

/// How the parts of one upload go.
struct Sending<'a> {
    upload: &'a str,
    part_size: u64,
    /// Each part is read once to checksum it before it is sent.
    checksummed: bool,
}

/// Sends the parts not yet `done`, a few at a time, recording each as it finishes; returns
/// the bytes sent and whether a stop was asked for.
async fn send_parts(
    it: &Item<'_>,
    plan: &Plan,
    head: &ObjectMeta,
    sending: &Sending<'_>,
    done: &mut [Option<Done>],
    journal: &dyn Journal,
    stop: &watch::Receiver<bool>,
) -> store::Result<(u64, bool)> {
    let count = done.len() as u32;
    let mut todo: Vec<u32> = (1..=count)
        .filter(|n| done[*n as usize - 1].is_none())
        .collect();
    todo.reverse();
    let mut running = FuturesUnordered::new();
    let mut sent = 0u64;
    let mut stopped = false;
    loop {
        while running.len() < plan.parallel_parts.max(1) && !stopped {
            if *stop.borrow() {
                stopped = true;
                break;
            }
            let Some(n) = todo.pop() else { break };
            let first = (n as u64 - 1) * sending.part_size;
            let last = (first + sending.part_size).min(head.size) - 1;
            running.push(copy_part(it, plan, head, sending, n, (first, last)));
        }
        let Some(r) = running.next().await else { break };
        let (n, part) = r?;
        journal.part(n, &part.etag, part.size).await?;
        sent += part.size;
        done[n as usize - 1] = Some(part);
    }
    Ok((sent, stopped))
}

/// The first page of a recorded upload's parts, or `None` when the destination no longer
/// has the upload, or answers ListParts with a success this side cannot read (moto's answer
/// is not one the SDK can parse): a new upload is then started. Any other error stands (a
/// refusal, say for lack of permission, must not throw away the parts already sent).
async fn open_upload(it: &Item<'_>, upload: &str) -> store::Result<Option<store::PartsPage>> {
    match it.dst.list_parts(it.db, it.dk, upload, None, 1).await {
        Ok(page) => Ok(Some(page)),
        Err(store::Error::NoSuchUpload { .. }) => Ok(None),
        Err(e @ store::Error::Remote { status, .. }) if (200..300).contains(&status) => {
            tracing::warn!(key = %it.dk, upload, error = %e,
                "cannot read the destination's list of the recorded upload's parts; starting it again");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The checksums the destination lists for an upload's parts.
async fn listed_checksums(
    it: &Item<'_>,
    upload: &str,
) -> store::Result<std::collections::HashMap<u32, store::Checksum>> {
    let mut found = std::collections::HashMap::new();
    let mut marker = None;
    loop {
        let page = it
            .dst
            .list_parts(it.db, it.dk, upload, marker, 1000)
            .await?;
        for p in page.parts {
            if let Some(c) = p.checksum.filter(|c| c.algorithm == PART_CHECKSUM) {
                found.insert(p.part_number, c);
            }
        }
        match page.next_part_number_marker {
            Some(m) if Some(m) != marker => marker = Some(m),
            _ => return Ok(found),
        }
    }
}

/// Reads bytes `first..=last` of the source (the version listed).
async fn read_range(
    it: &Item<'_>,
    head: &ObjectMeta,
    (first, last): (u64, u64),
) -> store::Result<store::ByteStream> {
    let g = it
        .src
        .get_object(
            it.sb,
            it.sk,
            GetOptions {
                version_id: pinned(head),
                range: Some(ByteRange::FromTo(first, last)),
            },
        )
        .await?;
    if g.meta.etag != head.etag {
        return Err(changed(it));
    }
    Ok(g.body)
}

fn changed(it: &Item<'_>) -> store::Error {
    store::Error::Unavailable {
        store: it.src.name().to_owned(),
        message: format!("{} changed while it was being copied", it.sk),
    }
}

/// The checksum of bytes `first..=last` of a local source, read once for it.
async fn checksum_range(
    it: &Item<'_>,
    head: &ObjectMeta,
    range: (u64, u64),
) -> store::Result<store::Checksum> {
    let mut body = read_range(it, head, range).await?;
    let mut hasher = ChecksumHasher::new(PART_CHECKSUM);
    let mut read = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(store::Error::Body)?;
        read += chunk.len() as u64;
        hasher.update(&chunk);
    }
    if read != range.1 - range.0 + 1 {
        return Err(changed(it));
    }
    Ok(hasher.finalize())
}

async fn copy_part(
    it: &Item<'_>,
    plan: &Plan,
    head: &ObjectMeta,
    sending: &Sending<'_>,
    n: u32,
    range: (u64, u64),
) -> store::Result<(u32, Done)> {
    let checksum = if sending.checksummed {
        Some(checksum_range(it, head, range).await?)
    } else {
        None
    };
    let body = read_range(it, head, range).await?;
    let size = range.1 - range.0 + 1;
    let p = it
        .dst
        .upload_part(
            it.db,
            it.dk,
            sending.upload,
            n,
            meter(body, plan.moved.clone(), plan.limiter.clone()),
            PutOptions {
                size_hint: Some(size),
                checksum_algorithm: checksum.as_ref().map(|c| c.algorithm),
                checksum_suffices: checksum.is_some(),
                checksum,
                ..Default::default()
            },
        )
        .await?;
    Ok((
        n,
        Done {
            etag: p.etag,
            size,
            // The checksum the part went with (the store names none when the backend
            // refused it), named at completion; none for parts not checksummed up front.
            checksum: p.checksum.filter(|_| sending.checksummed),
        },
    ))
}

/// The part size for an object of `size` bytes: at least 5 MiB, and large enough that S3's
/// 10,000-part limit holds. A function of the plan and size alone, so a resumed copy computes
/// the same part boundaries.
fn part_size_for(wanted: u64, size: u64) -> u64 {
    const MIB: u64 = 1024 * 1024;
    wanted
        .max(5 * MIB)
        .max(size.div_ceil(10_000).next_multiple_of(MIB))
}

#[cfg(test)]
mod tests {
    #[test]
    fn parts_stay_within_s3_limits() {
        const MIB: u64 = 1024 * 1024;
        assert_eq!(super::part_size_for(16 * MIB, 100 * MIB), 16 * MIB);
        assert_eq!(super::part_size_for(MIB, 100 * MIB), 5 * MIB);
        for size in [
            160_000 * MIB,
            5 * 1024 * 1024 * MIB,
            5 * 1024 * 1024 * MIB + 1,
        ] {
            let p = super::part_size_for(16 * MIB, size);
            assert!(size.div_ceil(p) <= 10_000, "{size}: {p}");
            assert_eq!(p % MIB, 0);
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
}
