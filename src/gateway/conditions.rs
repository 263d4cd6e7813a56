//! Conditional writes (`If-None-Match: *`, `If-Match: "etag"` on PutObject, CopyObject and
//! CompleteMultipartUpload; `If-Match`, `x-amz-if-match-last-modified-time` and
//! `x-amz-if-match-size` on DeleteObject, an `ETag`, `LastModifiedTime` or `Size` per key of
//! DeleteObjects), as S3 defines them: the condition holds at the moment the write commits, or
//! the write fails and nothing changes.
//!
//! Every write of a key passes the key's gate ([`WriteGate`]) until it commits: writes
//! without conditions pass it shared, so they never wait for each other, and a conditional
//! write passes it alone, from its check to its commit. So no write to the key can land
//! between the check and the commit: of two writers racing with `If-None-Match: *` exactly
//! one wins (what lock files on S3, such as Terraform's, rely on), and an `If-Match` write
//! never overwrites a change it did not see. Gates are per key, made when a write arrives and
//! dropped when the last one leaves, so a slow upload holds up writes of its own key only.
//! The gate is this process's: writers in another process (a second `ferry serve` on the
//! same store) are not held by it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use s3s::dto::{ETagCondition, Timestamp};
use s3s::{S3Result, s3_error};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use super::Gateway;
use crate::store::{self, BucketName, ObjectKey, Store};

type Gate = Arc<RwLock<()>>;

/// The gates of keys being written (see the module docs): only keys with a write in flight
/// have one.
#[derive(Default)]
pub(super) struct WriteGate {
    gates: Mutex<HashMap<(String, String), Gate>>,
}

/// Held by a write until it commits; leaving drops the key's gate when no one else holds it.
pub(super) struct Passage<'a> {
    owner: &'a WriteGate,
    key: (String, String),
    gate: Gate,
    held: Option<Held>,
}

#[allow(dead_code)] // held for its drop
enum Held {
    Shared(OwnedRwLockReadGuard<()>),
    Alone(OwnedRwLockWriteGuard<()>),
}

impl Drop for Passage<'_> {
    fn drop(&mut self) {
        self.held = None;
        let mut gates = self
            .owner
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The map's reference and this one: nobody else waits for or holds the gate (new
        // holders clone it under this same mutex).
        if Arc::strong_count(&self.gate) == 2 {
            gates.remove(&self.key);
        }
    }
}

impl WriteGate {
    fn passage(&self, bucket: &BucketName, key: &ObjectKey) -> Passage<'_> {
        let k = (bucket.to_string(), key.to_string());
        let gate = self
            .gates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(k.clone())
            .or_default()
            .clone();
        Passage {
            owner: self,
            key: k,
            gate,
            held: None,
        }
    }

    /// Passage for a write without conditions (or a delete).
    pub async fn shared(&self, bucket: &BucketName, key: &ObjectKey) -> Passage<'_> {
        let mut p = self.passage(bucket, key);
        p.held = Some(Held::Shared(p.gate.clone().read_owned().await));
        p
    }

    /// Passage for a conditional write: no other write of the key is in flight meanwhile.
    async fn alone(&self, bucket: &BucketName, key: &ObjectKey) -> Passage<'_> {
        let mut p = self.passage(bucket, key);
        p.held = Some(Held::Alone(p.gate.clone().write_owned().await));
        p
    }

    #[cfg(test)]
    fn gates(&self) -> usize {
        self.gates.lock().map(|g| g.len()).unwrap_or(0)
    }
}

impl Gateway {
    /// Passes the key's gate for a write and checks its conditions against the key's current
    /// version. The passage is held until the write commits.
    pub(super) async fn check_write_conditions(
        &self,
        store: &dyn Store,
        bucket: &BucketName,
        key: &ObjectKey,
        (if_match, if_none_match): (Option<&ETagCondition>, Option<&ETagCondition>),
    ) -> S3Result<Passage<'_>> {
        if if_match.is_none() && if_none_match.is_none() {
            return Ok(self.write_gate.shared(bucket, key).await);
        }
        if let Some(ETagCondition::ETag(_)) = if_none_match {
            return Err(s3_error!(
                NotImplemented,
                "A header you provided implies functionality that is not implemented: \
                 If-None-Match on a write takes only *"
            ));
        }
        let alone = self.write_gate.alone(bucket, key).await;
        let current = match store.head_object(bucket, key, None).await {
            Ok(m) => Some(m),
            Err(store::Error::NoSuchKey { .. }) => None,
            Err(e) => return Err(super::error::s3_error(e)),
        };
        if if_none_match.is_some() && current.is_some() {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold: the key {key} \
                 exists"
            ));
        }
        match (if_match, &current) {
            (Some(_), None) => Err(s3_error!(NoSuchKey, "the key {key} does not exist")),
            (Some(ETagCondition::ETag(e)), Some(m)) if e.value() != m.etag => Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold: the ETag of \
                 {key} is not {}",
                e.value()
            )),
            _ => Ok(alone),
        }
    }
}

/// What a delete asks of the version it would remove. A key that does not exist (or whose
/// current version is a delete marker) fails `If-Match` with NoSuchKey, as S3's general
/// purpose buckets answer, and meets the size and time conditions (204).
#[derive(Default)]
pub(super) struct DeleteConditions<'a> {
    pub etag: Option<&'a ETagCondition>,
    pub last_modified: Option<&'a Timestamp>,
    pub size: Option<i64>,
}

impl DeleteConditions<'_> {
    fn any(&self) -> bool {
        self.etag.is_some() || self.last_modified.is_some() || self.size.is_some()
    }

    /// Why `m` does not meet them, if it does not.
    fn unmet(&self, m: &store::ObjectMeta) -> Option<String> {
        if let Some(c) = self.etag
            && !super::convert::etag_matches(c, &m.etag)
        {
            return Some(format!("its ETag is \"{}\"", m.etag));
        }
        if let Some(t) = self.last_modified {
            // HTTP dates name whole seconds.
            let modified = m
                .last_modified
                .replace_nanosecond(0)
                .unwrap_or(m.last_modified);
            if modified != time::OffsetDateTime::from(t.clone()) {
                return Some("it was last modified at another time".into());
            }
        }
        match self.size {
            Some(n) if n != m.size as i64 => Some(format!("its size is {}", m.size)),
            _ => None,
        }
    }
}

impl Gateway {
    /// Passes the key's gate for a delete and checks its conditions against the version it
    /// would remove (`version_id`, or the current one); alone at the gate when there are
    /// conditions, so no write lands between the check and the delete.
    pub(super) async fn check_delete_conditions(
        &self,
        store: &dyn Store,
        bucket: &BucketName,
        key: &ObjectKey,
        version_id: Option<&str>,
        conditions: &DeleteConditions<'_>,
    ) -> S3Result<Passage<'_>> {
        if !conditions.any() {
            return Ok(self.write_gate.shared(bucket, key).await);
        }
        let alone = self.write_gate.alone(bucket, key).await;
        let current = match store.head_object(bucket, key, version_id).await {
            Ok(m) => m,
            // `If-Match` (an ETag, or `*`: "if it exists") asks for an object: with none
            // there (or a delete marker on top) nothing is deleted and no marker is added;
            // S3 answers 404. The size and time conditions alone hold vacuously (204).
            Err(
                store::Error::NoSuchKey { .. }
                | store::Error::NoSuchVersion { .. }
                | store::Error::IsDeleteMarker { .. },
            ) if conditions.etag.is_some() => {
                return Err(s3_error!(
                    NoSuchKey,
                    "The specified key does not exist (If-Match names an object): {key}"
                ));
            }
            Err(
                store::Error::NoSuchKey { .. }
                | store::Error::NoSuchVersion { .. }
                | store::Error::IsDeleteMarker { .. },
            ) => {
                return Ok(alone);
            }
            Err(e) => return Err(super::error::s3_error(e)),
        };
        match conditions.unmet(&current) {
            Some(why) => Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold: {key}: {why}"
            )),
            None => Ok(alone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn gates_exist_only_while_a_write_holds_them_and_keys_do_not_share_them() {
        let g = WriteGate::default();
        let b = BucketName::parse("bkt").expect("bucket");
        let (k1, k2) = (
            ObjectKey::parse("a").expect("key"),
            ObjectKey::parse("b").expect("key"),
        );
        let alone = g.alone(&b, &k1).await;
        // Another key is not held up by a conditional write of this one.
        let other = tokio::time::timeout(std::time::Duration::from_secs(1), g.shared(&b, &k2))
            .await
            .expect("another key's write passes");
        // This key's writes wait for it.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), g.shared(&b, &k1));
        assert!(waiting.await.is_err(), "a write of the same key waits");
        assert_eq!(g.gates(), 2);
        drop((alone, other));
        assert_eq!(g.gates(), 0, "gates are dropped when the last write leaves");
        let (s1, s2) = (g.shared(&b, &k1).await, g.shared(&b, &k1).await);
        assert_eq!(g.gates(), 1);
        drop(s1);
        assert_eq!(g.gates(), 1);
        drop(s2);
        assert_eq!(g.gates(), 0);
    }
}
