//! The part sizes of a multipart version, kept so `?partNumber=N` can serve one part: a
//! run-length text, `SIZE:COUNT` runs joined by commas (`5242880:9,1234:1`), so 10,000 parts
//! of one size are a few bytes. Recorded in the index (`part_sizes`) with the version and
//! removed with it.

use super::FsStore;
use crate::store::{BucketName, Error, ObjectKey, PartRange, Result};

impl FsStore {
    /// Where part `part` of a version lies (see [`crate::store::Store::part_range`]).
    pub(super) async fn part_range_impl(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        part: u32,
    ) -> Result<PartRange> {
        let _g = self.lock_for(bucket, key.as_str()).read().await;
        let row = self.resolve(bucket, key, version_id).await?;
        let size = row.size.max(0) as u64;
        let count = row.parts_count.map_or(1, |n| n.max(1) as u32);
        let text = match count {
            1 => None,
            _ => {
                self.index
                    .part_sizes(bucket.as_str(), key.as_str(), row.seq)
                    .await?
            }
        };
        let invalid = || Error::InvalidPartNumber { part_number: part };
        let (range, parts) = match text {
            // One piece, or a multipart version completed before part sizes were recorded:
            // one part, the whole object.
            None if part == 1 => ((size > 0).then(|| (0, size - 1)), 1),
            None => return Err(invalid()),
            Some(_) if part > count => return Err(invalid()),
            Some(t) => match part_range(&t, part) {
                Some(r) => (r, count),
                None => {
                    return Err(Error::Index(format!(
                        "the part sizes of {bucket}/{key} ({t:?}) have no part {part}"
                    )));
                }
            },
        };
        Ok(PartRange {
            range,
            etag: row.etag,
            parts,
        })
    }
}

/// Encodes part sizes in order.
pub fn encode(sizes: impl IntoIterator<Item = u64>) -> String {
    let mut runs: Vec<(u64, u32)> = Vec::new();
    for s in sizes {
        match runs.last_mut() {
            Some((size, n)) if *size == s => *n += 1,
            _ => runs.push((s, 1)),
        }
    }
    runs.iter()
        .map(|(s, n)| format!("{s}:{n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The byte range (first, last inclusive) of part `part` (from 1): `Some(None)` for an empty
/// part, `None` when the text is malformed or does not have that part.
pub fn part_range(text: &str, part: u32) -> Option<Option<(u64, u64)>> {
    let mut first = 0u64;
    let mut before = 0u32;
    for run in text.split(',') {
        let (size, count) = run.split_once(':')?;
        let (size, count): (u64, u32) = (size.parse().ok()?, count.parse().ok()?);
        if part <= before.checked_add(count)? {
            let start = first.checked_add(size.checked_mul(u64::from(part - before - 1))?)?;
            return Some((size > 0).then(|| (start, start + size - 1)));
        }
        first = first.checked_add(size.checked_mul(u64::from(count))?)?;
        before += count;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip_to_ranges() {
        let text = encode([10, 10, 10, 7, 5, 5]);
        assert_eq!(text, "10:3,7:1,5:2");
        let want = [(0, 9), (10, 19), (20, 29), (30, 36), (37, 41), (42, 46)];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(
                part_range(&text, i as u32 + 1),
                Some(Some(*w)),
                "part {}",
                i + 1
            );
        }
        assert_eq!(part_range(&text, 7), None);
        assert_eq!(part_range("garbage", 1), None);
        assert_eq!(part_range(&encode([0]), 1), Some(None));
    }
}
