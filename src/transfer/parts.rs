//! The multipart path of the copy engine (see [`super::copy`]): parts in parallel, each one
//! recorded in the [`Journal`] as it finishes; a recorded upload is continued when the source
//! is unchanged and the destination still has it.
//!
//! The parts of a local file going to a remote store are read twice, once to checksum each
//! up front: the part then goes with a CRC32C the destination checks (or with the algorithm
//! of the file's own CRC of the whole object, which the copy keeps), which costs far less
//! than the MD5 hashed otherwise to compare with the part's ETag (the store still hashes the
//! MD5 for a backend it found not to check checksums, and then the first read was for
//! nothing).

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;

use super::copy::{
    Item, Journal, MD5_KEY, Outcome, Plan, Resume, multipart_etag, pinned, plain_md5, tags_needed,
    vouched_md5,
};
use super::throttle::meter;
use crate::store::digest::ChecksumHasher;
use crate::store::{
    self, ByteRange, Checksum, ChecksumAlgorithm, CompletedPart, GetOptions, ObjectMeta, PutOptions,
};

/// Copies in parts: of the source's own size when it has one (`layout`, see
/// [`source_part_size`]), else of the plan's.
pub(super) async fn copy_parts(
    it: &Item<'_>,
    plan: &Plan,
    head: &ObjectMeta,
    layout: Option<u64>,
    resume: Option<Resume>,
    journal: &dyn Journal,
    stop: &watch::Receiver<bool>,
) -> store::Result<Outcome> {
    let crc = kept_checksum(it, head, layout);
    let part_size = layout.unwrap_or_else(|| part_size_for(plan.part_size, head.size));
    // Parts checksummed up front go with CRC32C, or with the algorithm of a checksum the
    // copy keeps: a composite's (its parts being the source's, the composite comes out
    // equal) or a CRC of the whole object's (the upload ends with the same CRC, which S3
    // takes only over parts checksummed with its algorithm).
    let algorithm = match &head.checksum {
        Some(c) if c.composite && layout.is_some() => c.algorithm,
        Some(c) if !c.composite && crc.is_some() => c.algorithm,
        _ => PART_CHECKSUM,
    };
    let cut = |algorithm| Cut {
        part_size,
        kept: layout.is_some(),
        algorithm,
    };
    let copy = |resume, crc, cut| copy_parts_as(it, plan, head, cut, resume, journal, stop, crc);
    match copy(resume, crc.clone(), cut(algorithm)).await {
        // A destination that takes the algorithm on the upload but refuses it on the parts:
        // the copy starts again, plainly (the refused upload was aborted).
        Err(e) if crc.is_some() && refused(&e) => {
            tracing::info!(key = %it.dk, error = %e,
                "the destination refuses parts checksummed for a whole-object checksum");
            journal.upload(None).await?;
            copy(None, None, cut(PART_CHECKSUM)).await
        }
        r => r,
    }
}

/// The source's own part size, when it is a multipart object whose parts all have one size
/// (but the last, which may be smaller) that S3 takes: copied in parts of that size, the
/// destination's object gets the source's multipart ETag, so the two compare equal, as a
/// replica's must for clients that cached or condition on it. `None` for other objects and
/// for sources that cannot say where their parts lie. A failure to ask is an error, not a
/// `None`: the answer must be the same every time a copy of this version runs, since a
/// resumed upload's parts were cut by it.
pub(super) async fn source_part_size(
    it: &Item<'_>,
    head: &ObjectMeta,
) -> store::Result<Option<u64>> {
    const MIN_PART: u64 = 5 * 1024 * 1024;
    // An upload of one part: copied as one part, so the copy keeps its `-1` ETag rather
    // than getting the plain MD5 (a probe found such replicas compared "by size only"). Up
    // to a size one stream copies well: beyond, parts in parallel that resume win, and
    // some stores take parts of less than S3's 5 GiB.
    const MAX_PART: u64 = 512 * 1024 * 1024;
    let one_part =
        head.parts_count == Some(1) || head.etag.rsplit_once('-').is_some_and(|(_, n)| n == "1");
    if one_part && !head.opaque_etag && (1..=MAX_PART).contains(&head.size) {
        return Ok(Some(head.size));
    }
    let Some(n) = head.parts_count.filter(|n| *n > 1) else {
        return Ok(None);
    };
    let version = pinned(head);
    let version = version.as_deref();
    let locate = |part| async move {
        match it.src.part_range(it.sb, it.sk, version, part).await {
            Ok(p) if p.etag == head.etag => Ok(Some(p)),
            Ok(_) => Err(changed(it)),
            Err(e) if cannot_say(&e) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let Some(first) = locate(1).await? else {
        return Ok(None);
    };
    let Some((0, end)) = first.range else {
        return Ok(None);
    };
    let size = end + 1;
    if first.parts != n || size < MIN_PART || head.size.div_ceil(size) != u64::from(n) {
        return Ok(None);
    }
    let Some(last) = locate(n).await? else {
        return Ok(None);
    };
    let last_start = last.range.map(|(a, _)| a);
    Ok((last_start == Some(u64::from(n - 1) * size)).then_some(size))
}

/// A source's answer that it cannot say where a part lies (as opposed to a failure to ask).
fn cannot_say(e: &store::Error) -> bool {
    match e {
        store::Error::NotImplemented(_)
        | store::Error::InvalidPartNumber { .. }
        | store::Error::InvalidArgument(_)
        | store::Error::InvalidRequest(_) => true,
        store::Error::Remote { status, .. } => (400..500).contains(status) || *status == 501,
        _ => false,
    }
}

/// The source's checksum, when the copy can keep it. A CRC of all its bytes (a FULL_OBJECT
/// upload's, or a one-piece object's): the new upload is created to end with the same one,
/// whatever its part sizes, and the destination checks it at completion, so the copy is
/// checked against the source's own record of its bytes. A COMPOSITE checksum (of the part
/// checksums) when the copy keeps the source's parts (`layout`): each part goes with the
/// algorithm and is named at completion, and the destination's composite comes out the
/// same. A local source's parts are checksummed up front: with the algorithm of its CRC of
/// the whole object, which is kept so; a composite one is kept by naming those parts.
fn kept_checksum(it: &Item<'_>, head: &ObjectMeta, layout: Option<u64>) -> Option<Checksum> {
    let c = head.checksum.clone()?;
    let keep = if c.composite {
        layout.is_some() && !checksummed_up_front(it)
    } else {
        c.algorithm.is_crc()
    };
    keep.then_some(c)
}

/// A local source can be read twice: once to checksum a part up front, so the part goes
/// with a CRC32C the destination checks instead of an MD5 hashed here for its ETag.
fn checksummed_up_front(it: &Item<'_>) -> bool {
    it.src.caps().local && !it.dst.caps().local
}

/// Where an object's parts are cut: every `part_size` bytes, `kept` from the source's own;
/// and the `algorithm` of parts checksummed up front.
#[derive(Clone, Copy)]
struct Cut {
    part_size: u64,
    kept: bool,
    algorithm: ChecksumAlgorithm,
}

#[allow(clippy::too_many_arguments)]
async fn copy_parts_as(
    it: &Item<'_>,
    plan: &Plan,
    head: &ObjectMeta,
    cut: Cut,
    resume: Option<Resume>,
    journal: &dyn Journal,
    stop: &watch::Receiver<bool>,
    whole: Option<Checksum>,
) -> store::Result<Outcome> {
    let (part_size, part_size_kept) = (cut.part_size, cut.kept);
    let count = head.size.div_ceil(part_size) as u32;
    // The length part `n` has with these part boundaries.
    let part_len =
        |n: u32| (u64::from(n) * part_size).min(head.size) - u64::from(n - 1) * part_size;
    let mut checksummed = checksummed_up_front(it);
    // Named at completion only once the destination has shown its upload ends with it.
    let mut claim = None;
    // The algorithm of the source's checksum, when the upload was created with it: every
    // part is checksummed with it.
    let mut part_algorithm = None;
    // Parts' checksums are named at completion (the upload keeps a composite checksum).
    let mut named = false;
    // Continue a recorded upload only if the source is unchanged and the destination still
    // has the upload; keep the recorded parts the destination also lists.
    let mut done: Vec<Option<Done>> = vec![None; count as usize];
    let mut upload = None;
    if let Some(r) = resume {
        // The part size the upload was cut with, recorded as part 0 when it was created;
        // one cut otherwise (or recorded before the size was) is not continued.
        let recorded_cut = r.parts.iter().find(|p| p.0 == 0).map(|p| p.2);
        let same_cut = match recorded_cut {
            Some(size) => size == part_size,
            None => !part_size_kept,
        };
        let open = if head.etag == it.listed_etag && same_cut {
            open_upload(it, &r.upload_id).await?
        } else {
            None
        };
        // A local source's parts are checksummed up front with this copy's algorithm; an
        // upload created with another (recorded before the source's CRC was kept, or a
        // plain one started after a refusal) would get parts without the checksums its
        // completion must name: it is not continued.
        let open = open.filter(|found| !checksummed || found.algorithm == Some(cut.algorithm));
        if let Some(found) = open {
            let (algorithm, listed) = (found.algorithm, found.parts);
            // Its parts carry the checksum the upload was created with, or none; completion
            // names each, so a recorded part counts only with the checksum the destination
            // lists for it.
            checksummed &= algorithm == Some(cut.algorithm);
            // An upload that ends with the source's checksum is one to name it for.
            part_algorithm =
                algorithm.filter(|a| whole.as_ref().is_some_and(|c| c.algorithm == *a));
            claim = whole
                .clone()
                .filter(|c| found.full_object && algorithm == Some(c.algorithm));
            // A composite's parts are named at completion with their checksums, as parts
            // checksummed up front are.
            named = part_algorithm.is_some() && whole.as_ref().is_some_and(|c| c.composite);
            let sums = (checksummed || named).then_some(listed);
            for (n, etag, size) in r.parts {
                let checksum = sums.as_ref().and_then(|s| s.get(&n).cloned());
                // A part recorded with other boundaries (the source's layout could not be
                // read this time, say) is not one of this upload's parts.
                let fits = n >= 1 && n <= count && size == part_len(n);
                if fits && (sums.is_none() || checksum.is_some()) {
                    done[n as usize - 1] = Some(Done {
                        etag,
                        size,
                        checksum,
                    });
                }
            }
            upload = Some(r.upload_id);
        } else {
            it.abort(&r.upload_id).await;
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
            let mut attrs = it.dest_attrs(plan, head);
            // The object's ETag will be of its parts: its MD5 goes in `md5chksum`, as rclone
            // writes it, so a later `--checksum` or `verify` compares content, not size.
            // (A source whose ETag is its MD5 is believed over any `md5chksum` it carries.)
            match vouched_md5(head) {
                Some(md5) if plain_md5(head) => {
                    use base64::Engine as _;
                    let value = base64::engine::general_purpose::STANDARD.encode(md5);
                    attrs.user_metadata.insert(MD5_KEY.to_owned(), value);
                }
                Some(_) => {}
                // One the source carries but cannot vouch for (a file changed since it was
                // hashed) is not passed on.
                None => {
                    attrs.user_metadata.remove(MD5_KEY);
                }
            }
            let opts = |whole: Option<&Checksum>| PutOptions {
                attrs: attrs.clone(),
                tags: tags.clone(),
                checksum_algorithm: checksummed
                    .then_some(cut.algorithm)
                    .or(whole.map(|c| c.algorithm)),
                checksum_suffices: checksummed,
                full_object_checksum: whole.is_some_and(|c| !c.composite),
                ..Default::default()
            };
            let (u, crc) = match it
                .dst
                .create_multipart(it.db, it.dk, opts(whole.as_ref()))
                .await
            {
                // A destination that does not know whole-object checksums gets a plain upload.
                Err(e) if whole.is_some() && refused(&e) => {
                    tracing::info!(key = %it.dk, error = %e,
                        "the destination refuses a whole-object checksum; the parts go without");
                    (
                        it.dst.create_multipart(it.db, it.dk, opts(None)).await?,
                        None,
                    )
                }
                r => (r?, whole.clone()),
            };
            // Named at completion only if the destination says the upload ends with it (a
            // backend may take the algorithm and ignore the type; one whose ListParts cannot
            // be read is not asked to check it).
            part_algorithm = crc.as_ref().map(|c| c.algorithm);
            named = crc.as_ref().is_some_and(|c| c.composite);
            if let Some(c) = crc.filter(|c| !c.composite) {
                let confirmed = store::upload_checksums(it.dst, it.db, it.dk, &u)
                    .await
                    .is_ok_and(|f| f.full_object && f.algorithm == Some(c.algorithm));
                claim = confirmed.then_some(c);
            }
            journal.upload(Some(&u)).await?;
            journal.part(0, CUT_RECORD, part_size).await?;
            u
        }
    };
    let sending = Sending {
        upload: &upload,
        part_size,
        checksummed,
        up_front: cut.algorithm,
        algorithm: part_algorithm,
        named,
    };
    let result = send_parts(it, plan, head, &sending, &mut done, journal, stop).await;
    // Deleted from the source mid-copy: finished as gone (as before the copy began), and
    // the upload with it, which nothing would ever complete or abort otherwise.
    if let Err(store::Error::NoSuchKey { .. }) = &result
        && let Err(store::Error::NoSuchKey { .. }) = it.src.head_object(it.sb, it.sk, None).await
    {
        it.abort(&upload).await;
        journal.upload(None).await?;
        return Ok(Outcome::SourceGone);
    }
    if let Err(e) = &result {
        // Parts refused for their algorithm: the caller starts a plain upload instead (for
        // a copy that keeps the source's checksum), so this one goes.
        let abandoned = (sending.algorithm.is_some() || whole.is_some()) && refused(e);
        if !plan.keep_uploads || abandoned {
            it.abort(&upload).await;
        }
    }
    let (sent, stopped) = result?;
    // Checked last before the object appears on the destination.
    if stopped || done.iter().any(Option::is_none) || plan.lapsed() {
        return Ok(Outcome::Stopped);
    }
    let parts: Vec<CompletedPart> = done
        .iter()
        .enumerate()
        .map(|(i, p)| CompletedPart {
            part_number: i as u32 + 1,
            etag: p.as_ref().map(|p| p.etag.clone()).unwrap_or_default(),
            checksum: p.as_ref().and_then(|p| p.checksum.clone()),
            claimed: None,
        })
        .collect();
    let m = match it
        .dst
        .complete_multipart(it.db, it.dk, &upload, &parts, claim.as_ref())
        .await
    {
        // Refused: the caller starts a plain upload instead, so this one goes.
        Err(e) if whole.is_some() && refused(&e) => {
            it.abort(&upload).await;
            return Err(e);
        }
        r => r?,
    };
    let etags: Vec<&str> = parts.iter().map(|p| p.etag.as_str()).collect();
    // Copied in the source's own parts, the object's ETag is the source's: checked end to
    // end (a part cut elsewhere than the source's would show here).
    let kept_layout = part_size_kept && !head.opaque_etag && head.etag.contains('-');
    let expected = if kept_layout {
        Some(head.etag.clone())
    } else {
        multipart_etag(&etags)
    };
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
        modified: super::copy::source_time(head),
    })
}

/// A destination's refusal of a request it does not support (a whole-object checksum on an
/// older S3-compatible server), as opposed to a failure or a mismatch.
fn refused(e: &store::Error) -> bool {
    match e {
        store::Error::InvalidArgument(_) | store::Error::InvalidRequest(_) => true,
        store::Error::Remote { status, code, .. } => {
            *status == 400
                && matches!(
                    code.as_str(),
                    "InvalidRequest" | "InvalidArgument" | "NotImplemented"
                )
                || *status == 501
        }
        _ => false,
    }
}

/// The "ETag" of part 0 in a [`Journal`]: not a part, the size the upload's parts are cut
/// to, so a resumed copy never continues an upload cut another way.
pub const CUT_RECORD: &str = "part-size";

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
    /// Each part is read once to checksum it before it is sent...
    checksummed: bool,
    /// ...with this algorithm.
    up_front: ChecksumAlgorithm,
    /// The algorithm of the source's checksum the upload ends with: each part is
    /// checksummed with it by the destination.
    algorithm: Option<ChecksumAlgorithm>,
    /// Each part's checksum is named at completion (a composite the upload keeps).
    named: bool,
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
            if *stop.borrow() || plan.lapsed() {
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

/// A recorded upload's checksum algorithm and its parts' checksums, or `None` when the
/// destination no longer has the upload, or answers ListParts with a success this side
/// cannot read (moto's answer is not one the SDK can parse): a new upload is then started.
/// Any other error stands (a refusal, say for lack of permission, must not throw away the
/// parts already sent).
async fn open_upload(it: &Item<'_>, upload: &str) -> store::Result<Option<store::UploadChecksums>> {
    match store::upload_checksums(it.dst, it.db, it.dk, upload).await {
        Ok(found) => Ok(Some(found)),
        Err(store::Error::NoSuchUpload { .. }) => Ok(None),
        Err(e @ store::Error::Remote { status, .. }) if (200..300).contains(&status) => {
            tracing::warn!(key = %it.dk, upload, error = %e,
                "cannot read the destination's list of the recorded upload's parts; starting it again");
            Ok(None)
        }
        Err(e) => Err(e),
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
        .await
        // Shorter than when it was looked at: replaced since, not a range to give up on.
        .map_err(|e| match e {
            store::Error::InvalidRange { .. } => changed(it),
            e => e,
        })?;
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
    algorithm: ChecksumAlgorithm,
) -> store::Result<store::Checksum> {
    let mut body = read_range(it, head, range).await?;
    let mut hasher = ChecksumHasher::new(algorithm);
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
        Some(checksum_range(it, head, range, sending.up_front).await?)
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
            meter(
                body,
                plan.moved.clone(),
                plan.limiter.clone(),
                plan.alive.clone(),
            ),
            PutOptions {
                size_hint: Some(size),
                checksum_algorithm: checksum.as_ref().map(|c| c.algorithm).or(sending.algorithm),
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
            checksum: p.checksum.filter(|_| sending.checksummed || sending.named),
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
}
