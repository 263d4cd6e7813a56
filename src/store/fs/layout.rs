//! The part sizes of a multipart version, kept so `?partNumber=N` can serve one part: a
//! run-length text, `SIZE:COUNT` runs joined by commas (`5242880:9,1234:1`), so 10,000 parts
//! of one size are a few bytes. Recorded in the index (`part_sizes`) with the version and
//! removed with it.

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

/// The byte range (first, last inclusive) of part `part` (from 1), or `None` when the text
/// is malformed, does not have that part, or the part is empty.
pub fn part_range(text: &str, part: u32) -> Option<(u64, u64)> {
    let mut first = 0u64;
    let mut before = 0u32;
    for run in text.split(',') {
        let (size, count) = run.split_once(':')?;
        let (size, count): (u64, u32) = (size.parse().ok()?, count.parse().ok()?);
        if part <= before.checked_add(count)? {
            let start = first.checked_add(size.checked_mul(u64::from(part - before - 1))?)?;
            return (size > 0).then(|| (start, start + size - 1));
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
            assert_eq!(part_range(&text, i as u32 + 1), Some(*w), "part {}", i + 1);
        }
        assert_eq!(part_range(&text, 7), None);
        assert_eq!(part_range("garbage", 1), None);
        assert_eq!(part_range(&encode([0]), 1), None);
    }
}
