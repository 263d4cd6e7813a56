//! Moving one object between stores, and comparing two listings.
//!
//! Owns: the copy engine ([`copy`]: resumable, multipart, verified), bandwidth limits
//! ([`throttle`]), [`copy_current`] (make a destination key equal to a source key's current state:
//! stream the body with its metadata and tags, multipart for large objects, or delete it
//! when the source has none) and [`diff`] (walk two listings in lock step). Does not own:
//! when to copy (journal, jobs) or retries (callers ask [`store::Error::is_retryable`]).

pub mod copy;
pub mod diff;
mod parts;
pub mod throttle;

use crate::store::{self, BucketName, ObjectKey, Store};

/// Objects above this size are copied as a multipart upload, part by part.
pub const MULTIPART_THRESHOLD: u64 = 64 * 1024 * 1024;
/// Part size of those uploads.
pub const PART_SIZE: u64 = 16 * 1024 * 1024;

/// What [`copy_current`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copied {
    /// The object was copied; this many bytes moved.
    Object(u64),
    /// The source has no current version: the destination's was deleted (or was absent).
    Deleted,
}

/// Makes `dst/dk` equal to the current state of `src/sk`. A multipart upload it opens on
/// `dst` is reported to `journal` (see [`copy::Journal::upload`]) so a caller can record it.
pub async fn copy_current(
    src: &dyn Store,
    sb: &BucketName,
    sk: &ObjectKey,
    dst: &dyn Store,
    db: &BucketName,
    dk: &ObjectKey,
    journal: &dyn copy::Journal,
) -> store::Result<Copied> {
    let item = copy::Item {
        src,
        sb,
        sk,
        dst,
        db,
        dk,
        listed_etag: "",
    };
    let (_never, stop) = tokio::sync::watch::channel(false);
    // A replica keeps its source's ETag: a source of one part goes in one PUT (streamed)
    // whatever its size, up to S3's limit; a multipart one in its own parts. A client that
    // compares ETags after a failover (rclone does) sees the same object.
    let plan = copy::Plan {
        threshold: store::MAX_PUT_BYTES,
        ..copy::Plan::default()
    };
    match copy::copy_object(&item, &plan, None, false, journal, &stop).await? {
        copy::Outcome::SourceGone => {
            dst.delete_object(db, dk, None).await?;
            Ok(Copied::Deleted)
        }
        copy::Outcome::Copied { size, .. } | copy::Outcome::AlreadyThere { size, .. } => {
            Ok(Copied::Object(size))
        }
        copy::Outcome::Stopped => Err(store::Error::Unavailable {
            store: dst.name().to_owned(),
            message: format!("the copy of {sk} stopped before it finished"),
        }),
    }
}
