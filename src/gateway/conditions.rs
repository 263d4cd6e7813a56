//! Conditional writes (`If-None-Match: *`, `If-Match: "etag"` on PutObject, CopyObject and
//! CompleteMultipartUpload), as S3 defines them: the condition holds at the moment the write
//! commits, or the write fails with 412 and nothing changes.
//!
//! Conditional writes of one key are serialized by a striped lock held from the check to the
//! commit, so of two writers racing with `If-None-Match: *` exactly one wins (what lock files
//! on S3, such as Terraform's, rely on). A write without conditions does not take the lock.

use s3s::dto::ETagCondition;
use s3s::{S3Result, s3_error};
use tokio::sync::MutexGuard;

use super::Gateway;
use crate::store::{self, BucketName, ObjectKey, Store};

/// Conditions of one write, as the client sent them.
pub(super) struct WriteConditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
}

impl Gateway {
    /// Checks a write's conditions against the key's current version. Returns the lock to
    /// hold until the write commits (`None` for a write without conditions).
    pub(super) async fn check_write_conditions(
        &self,
        store: &dyn Store,
        bucket: &BucketName,
        key: &ObjectKey,
        c: WriteConditions<'_>,
    ) -> S3Result<Option<MutexGuard<'_, ()>>> {
        if c.if_match.is_none() && c.if_none_match.is_none() {
            return Ok(None);
        }
        if let Some(ETagCondition::ETag(_)) = c.if_none_match {
            return Err(s3_error!(
                NotImplemented,
                "A header you provided implies functionality that is not implemented: \
                 If-None-Match on a write takes only *"
            ));
        }
        let guard = self.write_locks.lock(bucket.as_str(), key.as_str()).await;
        let current = match store.head_object(bucket, key, None).await {
            Ok(m) => Some(m),
            Err(store::Error::NoSuchKey { .. }) => None,
            Err(e) => return Err(super::error::s3_error(e)),
        };
        if c.if_none_match.is_some() && current.is_some() {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold: the key {key} \
                 exists"
            ));
        }
        match (c.if_match, &current) {
            (Some(_), None) => Err(s3_error!(NoSuchKey, "the key {key} does not exist")),
            (Some(ETagCondition::ETag(e)), Some(m)) if e.value() != m.etag => Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold: the ETag of \
                 {key} is not {}",
                e.value()
            )),
            _ => Ok(Some(guard)),
        }
    }
}
