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
//! second time goes to a file of its own, and a region is claimed by one writer at a time.
//! Completing stops new placements and waits for the writers in flight, since the finished
//! object shares the assembly file's inode. A crash leaves at worst unreferenced bytes in
//! the assembly file (a part written but not recorded), which the upload's removal frees.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
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

/// This process's placements, by upload.
#[derive(Debug, Default)]
pub(super) struct Placements(Mutex<HashMap<String, Upload>>);

#[derive(Debug, Default)]
struct Upload {
    stride: Option<u64>,
    /// Part numbers whose region a writer holds.
    busy: HashSet<u32>,
    /// A completion runs: nothing more is placed.
    completing: bool,
}

impl Placements {
    /// Whether the upload's stride is known in this process (else the caller derives it from
    /// the index and passes it to [`Self::claim`]).
    pub fn knows(&self, upload: &str) -> bool {
        self.0
            .lock()
            .map(|m| m.contains_key(upload))
            .unwrap_or(false)
    }

    /// Claims the region of part `part` of `len` bytes, if it can be placed: the stride is
    /// the one recorded (`derived` from the index when not yet known here) or, failing one,
    /// `len` itself when the part is at least `min` bytes.
    pub fn claim(
        &self,
        upload: &str,
        part: u32,
        len: u64,
        min: u64,
        derived: Option<u64>,
    ) -> Option<Slot<'_>> {
        let mut map = self.0.lock().ok()?;
        let u = map.entry(upload.to_owned()).or_insert_with(|| Upload {
            stride: derived,
            ..Upload::default()
        });
        if u.completing || u.busy.contains(&part) || part == 0 {
            return None;
        }
        let stride = match u.stride {
            Some(s) => s,
            None if len >= min => *u.stride.insert(len),
            None => return None,
        };
        let offset = u64::from(part - 1).checked_mul(stride)?;
        if len > stride || offset.checked_add(len)? > MAX_OBJECT {
            return None;
        }
        u.busy.insert(part);
        Some(Slot {
            placements: self,
            upload: upload.to_owned(),
            part,
            offset,
        })
    }

    /// Stops new placements in `upload` and waits until none is being written; the returned
    /// guard lets placements resume (after a completion that failed) when dropped.
    pub async fn complete(&self, upload: &str) -> Completing<'_> {
        let guard = Completing {
            placements: self,
            upload: upload.to_owned(),
        };
        loop {
            let idle = match self.0.lock() {
                Ok(mut map) => {
                    let u = map.entry(upload.to_owned()).or_default();
                    u.completing = true;
                    u.busy.is_empty()
                }
                Err(_) => true,
            };
            if idle {
                return guard;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Forgets an upload that was completed or aborted.
    pub fn forget(&self, upload: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.remove(upload);
        }
    }
}

/// A claimed region of an assembly file; released when dropped.
#[derive(Debug)]
pub(super) struct Slot<'a> {
    placements: &'a Placements,
    upload: String,
    part: u32,
    pub offset: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.placements.0.lock()
            && let Some(u) = map.get_mut(&self.upload)
        {
            u.busy.remove(&self.part);
        }
    }
}

/// A completion in progress (see [`Placements::complete`]).
#[derive(Debug)]
pub(super) struct Completing<'a> {
    placements: &'a Placements,
    upload: String,
}

impl Drop for Completing<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.placements.0.lock()
            && let Some(u) = map.get_mut(&self.upload)
        {
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

/// Copies `len` bytes from `src` at `from` to `dst` at `to`, in the kernel where it can.
/// Blocking.
pub(super) fn copy_range(
    src: &std::fs::File,
    from: u64,
    dst: &std::fs::File,
    to: u64,
    len: u64,
) -> std::io::Result<()> {
    let (mut from, mut to, mut left) = (from, to, len);
    while left > 0 {
        let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
        let n = rustix::fs::copy_file_range(src, Some(&mut from), dst, Some(&mut to), chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "a part file ended before its recorded size",
            ));
        }
        left -= n as u64;
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
    async fn completing_waits_for_writers_and_stops_placements() {
        let p = Placements::default();
        let s = p.claim("u", 1, 8 * MIB, 5 * MIB, None);
        assert!(s.is_some());
        let waiting = tokio::time::timeout(Duration::from_millis(50), p.complete("u")).await;
        assert!(waiting.is_err(), "a writer still holds its region");
        assert!(
            p.claim("u", 2, 8 * MIB, 5 * MIB, None).is_some(),
            "a completion given up on lets placements go on"
        );
        drop(s);
        let c = p.complete("u").await;
        assert!(p.claim("u", 2, 8 * MIB, 5 * MIB, None).is_none());
        drop(c);
        assert!(p.claim("u", 2, 8 * MIB, 5 * MIB, None).is_some());
    }
}
