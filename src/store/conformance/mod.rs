//! The conformance suite every store passes: plain async functions over `&dyn Store`, called by
//! each backend's test (`tests/it/store.rs`). Differences between stores are [`Caps`], never
//! forked tests. A contract violation panics with a message naming the store, the operation,
//! what was expected and what happened.
//!
//! Compiled into the library (not only tests) so every store kind, present or future, can run
//! the same suite. Each function takes a `prefix` (3–20 lowercase letters and digits) that
//! starts the names of the buckets it creates, so runs against one backend do not collide;
//! buckets are left behind for inspection.
//!
//! A third-party server behind an s3 store may lack something the contract needs; such a gap
//! is a [`Gaps`] entry that names why, the affected check is skipped with a printed notice,
//! and every other store still runs it.

#![allow(clippy::unwrap_used, clippy::panic)]

/// Asserts that a call failed with an error matching a pattern.
macro_rules! expect_err {
    ($s:expr, $what:expr, $call:expr, $pat:pat) => {
        match $call {
            Err($pat) => {}
            Err(e) => panic!(
                "{}: {}: expected {}, got the error {e} ({e:?})",
                $s.name(),
                $what,
                stringify!($pat)
            ),
            Ok(_) => panic!(
                "{}: {}: expected {}, but it succeeded",
                $s.name(),
                $what,
                stringify!($pat)
            ),
        }
    };
}

mod buckets;
mod copy;
mod full_object;
mod helpers;
mod layouts;
mod listing;
mod multipart;
mod objects;
mod paths;
mod versioning;

use super::*;
pub use buckets::*;
pub use copy::*;
pub use full_object::*;
pub use listing::*;
pub use multipart::*;
pub use objects::*;
pub use paths::*;
pub use versioning::*;

/// Checks the server behind a store cannot pass, each with the reason. Empty for Ferry's own
/// stores; [`run_all`] uses the empty set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gaps {
    /// The backend does not keep the checksums of bodies, so HEAD/GET cannot return them
    /// (what PUT, upload-part and the verifier report is still checked).
    pub stored_checksums: Option<&'static str>,
    /// The backend does not refuse CompleteMultipartUpload with parts out of order.
    pub invalid_part_order: Option<&'static str>,
    /// The backend does not answer UploadPart or CompleteMultipartUpload of an unknown upload
    /// with NoSuchUpload.
    pub writes_to_unknown_upload: Option<&'static str>,
    /// The backend lists uploads in another order than by key, or ignores `max_uploads`.
    pub upload_listing_order: Option<&'static str>,
    /// The backend does not report delete markers everywhere S3 does: a GET behind one does
    /// not name it, a GET of one by version id is not refused with 405, a DELETE of one by
    /// version id does not say it was one (HEAD still must report them).
    pub delete_marker_reporting: Option<&'static str>,
    /// The backend treats a suspended bucket as one never versioned: a PUT drops the versions
    /// made while versioning was enabled (S3 replaces only the null version) and a DELETE
    /// removes the key instead of making a null delete marker.
    pub suspended_versioning: Option<&'static str>,
    /// The backend's ListParts answer cannot be read (so uploads are checked without it).
    pub list_parts: Option<&'static str>,
    /// The backend does not serve one part of a multipart object (`?partNumber=N`).
    pub part_ranges: Option<&'static str>,
    /// The backend's GetBucketVersioning answer cannot be read (the state is still checked
    /// through what writes and deletes do).
    pub get_versioning: Option<&'static str>,
    /// With a delimiter, the backend drops a common prefix that a StartAfter lies inside,
    /// though later keys under it still roll up into it (S3 lists it).
    pub start_after_in_prefix: Option<&'static str>,
    /// The backend cannot hold S3 keys that are not paths (`a//b`, `x/../y`, `/a`): it
    /// keeps keys as paths itself (Ferry over an fs store), or rewrites them.
    pub keys_beyond_paths: Option<&'static str>,
}

impl Gaps {
    /// No gaps: every check runs.
    pub const NONE: Gaps = Gaps {
        stored_checksums: None,
        invalid_part_order: None,
        writes_to_unknown_upload: None,
        upload_listing_order: None,
        delete_marker_reporting: None,
        suspended_versioning: None,
        list_parts: None,
        part_ranges: None,
        get_versioning: None,
        start_after_in_prefix: None,
        keys_beyond_paths: None,
    };
}

/// Runs every check with no gaps.
pub async fn run_all(s: &dyn Store, prefix: &str) {
    run_all_with(s, prefix, Gaps::NONE).await;
}

/// [`run_all`] for a backend with known [`Gaps`].
pub async fn run_all_with(s: &dyn Store, prefix: &str, gaps: Gaps) {
    buckets(s, prefix, gaps).await;
    objects(s, prefix).await;
    ranges(s, prefix).await;
    verification(s, prefix).await;
    checksums(s, prefix, gaps).await;
    copy(s, prefix, gaps).await;
    listing(s, prefix, gaps).await;
    multipart(s, prefix, gaps).await;
    multipart::part_without_checksum(s, prefix).await;
    full_object_checksums(s, prefix, gaps).await;
    layouts::part_layouts(s, prefix).await;
    if s.caps().versioning {
        versioning(s, prefix, gaps).await;
    }
    if s.caps().path_semantics {
        path_conflicts(s, prefix).await;
    }
    keys_beyond_paths(s, prefix, gaps).await;
}
