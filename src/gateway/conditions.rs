//! Conditional writes (`If-None-Match: *`, `If-Match: "etag"` on PutObject, CopyObject and
//! CompleteMultipartUpload), as S3 defines them: the condition holds at the moment the write
//! commits, or the write fails and nothing changes.
//!
//! Every write of a key passes a striped gate ([`WriteGate`]) until it commits: writes
//! without conditions pass it shared, so they never wait for each other, and a conditional
//! write passes it alone, from its check to its commit. So no write to the key can land
//! between the check and the commit: of two writers racing with `If-None-Match: *` exactly
//! one wins (what lock files on S3, such as Terraform's, rely on), and an `If-Match` write
//! never overwrites a change it did not see. The gate is this process's: writers in another
//! process (a second `ferry serve` on the same store) are not held by it.

use std::hash::{Hash, Hasher};

use s3s::dto::ETagCondition;
use s3s::{S3Result, s3_error};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::Gateway;
use crate::store::{self, BucketName, ObjectKey, Store};

const STRIPES: usize = 4096;

/// Striped gates every write of a key passes until it commits (see the module docs).
pub(super) struct WriteGate {
    stripes: Vec<RwLock<()>>,
}

impl Default for WriteGate {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
        }
    }
}

/// Held by a write until it commits.
#[allow(dead_code)] // held for its drop
pub(super) enum Passage<'a> {
    Shared(RwLockReadGuard<'a, ()>),
    Alone(RwLockWriteGuard<'a, ()>),
}

impl WriteGate {
    fn stripe(&self, bucket: &BucketName, key: &ObjectKey) -> &RwLock<()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bucket.as_str().hash(&mut h);
        key.as_str().hash(&mut h);
        &self.stripes[(h.finish() as usize) % STRIPES]
    }

    /// Passage for a write without conditions (or a delete).
    pub async fn shared(&self, bucket: &BucketName, key: &ObjectKey) -> Passage<'_> {
        Passage::Shared(self.stripe(bucket, key).read().await)
    }
}

/// Conditions of one write, as the client sent them.
pub(super) struct WriteConditions<'a> {
    pub if_match: Option<&'a ETagCondition>,
    pub if_none_match: Option<&'a ETagCondition>,
}

impl Gateway {
    /// Passes the key's gate for a write and checks its conditions against the key's current
    /// version. The passage is held until the write commits.
    pub(super) async fn check_write_conditions(
        &self,
        store: &dyn Store,
        bucket: &BucketName,
        key: &ObjectKey,
        c: WriteConditions<'_>,
    ) -> S3Result<Passage<'_>> {
        if c.if_match.is_none() && c.if_none_match.is_none() {
            return Ok(self.write_gate.shared(bucket, key).await);
        }
        if let Some(ETagCondition::ETag(_)) = c.if_none_match {
            return Err(s3_error!(
                NotImplemented,
                "A header you provided implies functionality that is not implemented: \
                 If-None-Match on a write takes only *"
            ));
        }
        let alone = self.write_gate.stripe(bucket, key).write().await;
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
            _ => Ok(Passage::Alone(alone)),
        }
    }
}
