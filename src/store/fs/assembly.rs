//! Where the parts of a multipart upload are written so that completing it copies nothing.
//!
//! Clients upload the parts of an object in one size but the last (aws-cli, boto3, rclone,
//! s5cmd, Ferry all do). The fs store takes the size of the first large part to arrive as the
//! upload's *stride* and writes part `n` straight into the upload's assembly file (`object` in
//! its folder) at `(n - 1) * stride`, where it will sit in the finished object: a part *placed*
//! there is recorded with the file name `@OFFSET`. Completing an upload whose chosen parts are
//! 1..N, all of the stride but the last, then copies only the parts that were not placed (a
//! small last part, a part uploaded again) into their places, cuts the file to its size,
//! syncs it and hard-links it as the new version's temp file: no copy of the placed bytes
//! (a 1 GiB object used to be read and written once more, and synced, before the client got
//! its answer). Any other choice of parts is concatenated as before.
//!
//! A placed region is never written again while a part row refers to it: a part uploaded a
//! second time goes to a file of its own, a region is claimed by one writer at a time (until
//! the thread writing it is done, even if the request was dropped), and nothing is placed in
//! an upload whose row is gone. Completions run one at a time; each stops new placements and
//! waits (up to two seconds) for the parts being written, and concatenates instead
//! if some still are, since the finished object shares the assembly file's inode. Once the
//! file is linked as a version nothing is placed in it again. A crash leaves at worst
//! unreferenced bytes in the assembly file (a part written but not recorded), which a
//! completion overwrites or cuts off, or the upload's removal frees.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The assembly file's name in an upload's folder.
pub(super) const ASSEMBLY: &str = "object";

/// S3's largest object: no part is placed beyond it.
const MAX_OBJECT: u64 = 5 << 40;

/// The part-row file name of a part placed at `offset` of the assembly file.
pub(super) fn placed_name(offset: u64) -> String {
    format!("@{offset}")
}

/// The offset of a part row's bytes in the assembly file, if it was placed there.
pub(super) fn placed_offset(file: &str) -> Option<u64> {
    file.strip_prefix('@')?.parse().ok()
}

/// The stride a placed part row implies, if it does.
pub(super) fn stride_of(part_number: i64, size: i64, file: &str) -> Option<u64> {
    let offset = placed_offset(file)?;
    match u64::try_from(part_number).ok()? {
        1 => u64::try_from(size).ok(),
        n => Some(offset / (n - 1)),
    }
}

/// This process's placements, by upload. Shared (`Arc`) so a claim can be held by the
/// blocking thread that writes the part, and a completion by the thread that finishes the
/// file: a request cancelled half-way (its client gone) does not let go of either while
/// that work still runs.
#[derive(Debug, Default, Clone)]
pub(super) struct Placements(Arc<Mutex<HashMap<String, Upload>>>);

#[derive(Debug, Default)]
struct Upload {
    stride: Option<u64>,
    /// Part numbers whose region a writer holds.
    busy: HashSet<u32>,
    /// A completion runs (one at a time): nothing more is placed.
    completing: bool,
    /// A completion linked the assembly file as a version: nothing is ever placed again.
    sealed: bool,
}

/// How long a completion waits for parts being placed before it concatenates instead.
const WAIT_FOR_WRITERS: Duration = Duration::from_secs(2);

impl Placements {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Upload>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the upload's stride is known in this process (else the caller derives it from
    /// the index and passes it to [`Self::claim`]).
    pub fn knows(&self, upload: &str) -> bool {
        self.lock().get(upload).is_some_and(|u| u.stride.is_some())
    }

    /// Claims the region of part `part` of `len` bytes, if it can be placed: the stride is
    /// the one known here, else the one `derived` from the index, else `len` itself when the
    /// part is at least `min` bytes.
    pub fn claim(
        &self,
        upload: &str,
        part: u32,
        len: u64,
        min: u64,
        derived: Option<u64>,
    ) -> Option<Slot> {
        let mut map = self.lock();
        let u = map.entry(upload.to_owned()).or_default();
        u.stride = u.stride.or(derived);
        if u.completing || u.sealed || u.busy.contains(&part) || part == 0 {
            return None;
        }
        let stride = match u.stride {
            Some(s) => s,
            None if len >= min => *u.stride.insert(len),
            None => {
                // Nothing learned: keep no entry for an upload of small parts.
                if u.busy.is_empty() {
                    map.remove(upload);
                }
                return None;
            }
        };
        let offset = u64::from(part - 1).checked_mul(stride)?;
        if len > stride || offset.checked_add(len)? > MAX_OBJECT {
            return None;
        }
        u.busy.insert(part);
        Some(Slot {
            held: Arc::new(Held {
                placements: self.clone(),
                upload: upload.to_owned(),
                part,
            }),
            offset,
        })
    }

    /// Starts a completion of `upload`: waits for any other completion of it to end, stops
    /// new placements, and waits (a while) for parts being placed. The answer says whether
    /// none is being written any more (the assembly file may then be finished in place);
    /// the guard lets placements resume when dropped, unless [`Completing::seal`] was called.
    pub async fn complete(&self, upload: &str) -> (Completing, bool) {
        loop {
            let mine = {
                let mut map = self.lock();
                let u = map.entry(upload.to_owned()).or_default();
                !std::mem::replace(&mut u.completing, true)
            };
            if mine {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let guard = Completing(Arc::new(CompletingInner {
            placements: self.clone(),
            upload: upload.to_owned(),
        }));
        let deadline = tokio::time::Instant::now() + WAIT_FOR_WRITERS;
        loop {
            let idle = self.lock().get(upload).is_none_or(|u| u.busy.is_empty());
            if idle || tokio::time::Instant::now() >= deadline {
                return (guard, idle);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Forgets an upload that was aborted.
    pub fn forget(&self, upload: &str) {
        self.lock().remove(upload);
    }
}

/// A claimed region of an assembly file, released when the last clone is dropped (one goes
/// to the thread that writes it).
#[derive(Debug, Clone)]
pub(super) struct Slot {
    held: Arc<Held>,
    pub offset: u64,
}

impl Slot {
    /// A token that keeps the region claimed while the writing thread holds it.
    pub fn token(&self) -> Box<dyn std::any::Any + Send + Sync> {
        Box::new(Arc::clone(&self.held))
    }
}

#[derive(Debug)]
struct Held {
    placements: Placements,
    upload: String,
    part: u32,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut map = self.placements.lock();
        let idle = match map.get_mut(&self.upload) {
            Some(u) => {
                u.busy.remove(&self.part);
                u.busy.is_empty() && !u.completing && u.stride.is_none()
            }
            None => false,
        };
        if idle {
            map.remove(&self.upload);
        }
    }
}

/// A completion in progress (see [`Placements::complete`]), ended when the last clone is
/// dropped (one goes to the thread that finishes the file).
#[derive(Debug, Clone)]
pub(super) struct Completing(Arc<CompletingInner>);

impl Completing {
    /// Nothing may ever be placed in this upload's assembly file again: it is (about to be)
    /// a version's file.
    pub fn seal(&self) {
        if let Some(u) = self.0.placements.lock().get_mut(&self.0.upload) {
            u.sealed = true;
        }
    }

    /// The upload is gone (completed): forget it.
    pub fn done(&self) {
        let mut map = self.0.placements.lock();
        if let Some(u) = map.get_mut(&self.0.upload) {
            // Sealed for good; what is left of it is a flag, dropped when the process ends
            // unless a straggling part still holds a region.
            u.stride = None;
            if u.busy.is_empty() {
                map.remove(&self.0.upload);
            }
        }
    }
}

#[derive(Debug)]
struct CompletingInner {
    placements: Placements,
    upload: String,
}

impl Drop for CompletingInner {
    fn drop(&mut self) {
        if let Some(u) = self.placements.lock().get_mut(&self.upload) {
            u.completing = false;
        }
    }
}

/// Finishes an assembly file in place: copies each part of `patches` (its file, where it
/// goes, its size) into it, cuts it to `size`, syncs it, and links it as `tmp` (whose folder
/// is synced too). Blocking.
pub(super) fn finish(
    assembly: &std::path::Path,
    patches: &[(std::path::PathBuf, u64, u64)],
    size: u64,
    tmp: &std::path::Path,
) -> std::io::Result<()> {
    let out = std::fs::OpenOptions::new().write(true).open(assembly)?;
    for (file, offset, len) in patches {
        let src = std::fs::File::open(file)?;
        copy_range(&src, 0, &out, *offset, *len)?;
    }
    out.set_len(size)?;
    out.sync_all()?;
    drop(out);
    std::fs::hard_link(assembly, tmp)?;
    if let Some(dir) = tmp.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Copies `len` bytes from `src` at `from` to `dst` at `to`: `copy_file_range`, or read and
/// write where the kernel cannot (old kernels, some FUSE and network filesystems). Blocking.
pub fn copy_range(
    src: &std::fs::File,
    mut from: u64,
    dst: &std::fs::File,
    mut to: u64,
    mut len: u64,
) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    while len > 0 {
        let want = usize::try_from(len.min(1 << 30)).unwrap_or(1 << 30);
        match rustix::fs::copy_file_range(src, Some(&mut from), dst, Some(&mut to), want) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "a file ended before its recorded size",
                ));
            }
            Ok(n) => len -= n as u64,
            Err(_) => {
                let mut buf = vec![0u8; want.min(1 << 20)];
                src.read_exact_at(&mut buf, from)?;
                dst.write_all_at(&buf, to)?;
                from += buf.len() as u64;
                to += buf.len() as u64;
                len -= buf.len() as u64;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn names_round_trip() {
        assert_eq!(placed_offset(&placed_name(42)), Some(42));
        assert_eq!(placed_offset("3-abcdef"), None);
        assert_eq!(stride_of(3, 7, "@20"), Some(10));
        assert_eq!(stride_of(1, 7, "@0"), Some(7));
        assert_eq!(stride_of(2, 7, "2-abc"), None);
    }

    #[test]
    fn the_first_large_part_sets_the_stride() {
        let p = Placements::default();
        assert!(
            p.claim("u", 3, MIB, 5 * MIB, None).is_none(),
            "too small to set it"
        );
        assert!(!p.lock().contains_key("u"), "and nothing is kept for it");
        let s = p.claim("u", 2, 8 * MIB, 5 * MIB, None);
        assert_eq!(s.as_ref().map(|s| s.offset), Some(8 * MIB));
        // The same part again while it is written: not placed.
        assert!(p.claim("u", 2, 8 * MIB, 5 * MIB, None).is_none());
        drop(s);
        // A smaller (last) part goes at its place; a larger one does not fit.
        assert_eq!(
            p.claim("u", 5, MIB, 5 * MIB, None).map(|s| s.offset),
            Some(32 * MIB)
        );
        assert!(p.claim("u", 4, 9 * MIB, 5 * MIB, None).is_none());
        // A stride derived from the index wins over the part's own size.
        assert_eq!(
            p.claim("v", 2, 6 * MIB, 5 * MIB, Some(6 * MIB))
                .map(|s| s.offset),
            Some(6 * MIB)
        );
        assert!(
            p.claim("w", 10_000, 5 << 30, MIB, None).is_none(),
            "past 5 TiB"
        );
    }

    #[tokio::test]
    async fn a_stride_learned_after_a_completion_comes_from_the_index() {
        let p = Placements::default();
        let (c, idle) = p.complete("x").await;
        assert!(idle);
        drop(c);
        assert!(!p.knows("x"), "a completion knows no stride");
        assert_eq!(
            p.claim("x", 4, 6 * MIB, 5 * MIB, Some(8 * MIB))
                .map(|s| s.offset),
            Some(24 * MIB),
            "the recorded parts' stride, not this part's size"
        );
    }

    #[tokio::test]
    async fn completions_are_one_at_a_time_and_wait_for_writers() {
        let p = Placements::default();
        let s = p.claim("u", 1, 8 * MIB, 5 * MIB, None).expect("claimed");
        // The writing thread's token keeps the region claimed after the request let go.
        let token = s.token();
        drop(s);
        let (c, idle) = p.complete("u").await;
        assert!(!idle, "a writer still holds its region");
        assert!(p.claim("u", 2, 8 * MIB, 5 * MIB, None).is_none());
        let second = tokio::time::timeout(Duration::from_millis(50), p.complete("u")).await;
        assert!(second.is_err(), "a second completion waits for the first");
        drop(c);
        drop(token);
        let (c, idle) = p.complete("u").await;
        assert!(idle);
        drop(c);
        assert!(p.claim("u", 2, 8 * MIB, 5 * MIB, None).is_some());
        let (c, _) = p.complete("u").await;
        c.seal();
        drop(c);
        assert!(
            p.claim("u", 3, 8 * MIB, 5 * MIB, None).is_none(),
            "nothing is placed in a file linked as a version"
        );
    }
}
