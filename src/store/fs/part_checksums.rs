//! The checksums of the fs store's multipart uploads: how an upload's algorithm and type are
//! kept in its index row, and the checks of the checksums a client names at completion
//! (the whole object's and each part's) against those computed and recorded.

use super::index::UploadRow;
use crate::store::*;

/// Marks, in the uploads table's `checksum_algorithm` column, an upload whose checksum
/// covers the whole object: `CRC64NVME FULL_OBJECT`. A bare name is a composite checksum.
const FULL_OBJECT: &str = " FULL_OBJECT";

pub(super) fn checksum_column(
    algorithm: Option<ChecksumAlgorithm>,
    full_object: bool,
) -> Option<String> {
    algorithm.map(|a| {
        let suffix = if full_object { FULL_OBJECT } else { "" };
        format!("{}{suffix}", a.as_str())
    })
}

/// The upload's checksum algorithm, and whether its checksum covers the whole object.
pub(super) fn upload_checksum(upload: &UploadRow) -> (Option<ChecksumAlgorithm>, bool) {
    match upload.checksum_algorithm.as_deref() {
        Some(c) => match c.strip_suffix(FULL_OBJECT) {
            Some(name) => (ChecksumAlgorithm::parse(name), true),
            None => (ChecksumAlgorithm::parse(c), false),
        },
        None => (None, false),
    }
}

fn kind(composite: bool) -> &'static str {
    if composite {
        "COMPOSITE"
    } else {
        "FULL_OBJECT"
    }
}

/// Refuses a completion whose client named the whole object's checksum and got it wrong
/// (S3: `BadDigest`), or named one of another algorithm or type than the upload's
/// (`InvalidRequest`). Nothing is committed then and the upload stays open.
pub(super) fn check_claim(
    claimed: Option<&Checksum>,
    computed: Option<&Checksum>,
    upload_algorithm: Option<ChecksumAlgorithm>,
) -> Result<()> {
    let Some(claimed) = claimed else {
        return Ok(());
    };
    match computed {
        Some(c) if c.algorithm == claimed.algorithm && c.composite != claimed.composite => {
            Err(Error::InvalidRequest(format!(
                "the upload's {} checksum is {}, the completion named a {} one",
                c.algorithm.as_str(),
                kind(c.composite),
                kind(claimed.composite)
            )))
        }
        Some(c) if c.algorithm == claimed.algorithm => {
            // A composite may be named with or without its `-N`.
            let value = |v: &str| v.split('-').next().unwrap_or(v).to_owned();
            if value(&c.value) == value(&claimed.value) {
                Ok(())
            } else {
                Err(Error::BadDigest {
                    what: format!("{} checksum named at completion", c.algorithm.as_str()),
                })
            }
        }
        // The upload has the algorithm, but not every part has a checksum of it.
        None if upload_algorithm == Some(claimed.algorithm) => Err(Error::InvalidRequest(format!(
            "the {} checksum of the whole object cannot be checked: not every part has one",
            claimed.algorithm.as_str()
        ))),
        _ => Err(Error::InvalidRequest(format!(
            "the upload was not created with the {} checksum algorithm named at completion",
            claimed.algorithm.as_str()
        ))),
    }
}

/// Whether a part's checksum named at completion agrees with the one recorded for the part
/// (a claim of an algorithm the part was not checksummed with has nothing to disagree with).
pub(super) fn claim_holds(claimed: Option<&Checksum>, recorded: Option<&str>) -> bool {
    let (Some(claimed), Some(recorded)) = (claimed, recorded) else {
        return true;
    };
    match serde_json::from_str::<Checksum>(recorded) {
        Ok(r) if r.algorithm == claimed.algorithm => r.value == claimed.value,
        _ => true,
    }
}
