//! Striped per-key locks: writes to one key of a namespace bucket run one at a time, so every
//! target sees them in the same order.
//!
//! Each stripe also counts the writes that took it. The catch-up worker does not hold a key's
//! lock while it copies (a copy to a stalled secondary may take minutes, and a client write
//! of the key would wait that long): it notes the count under the lock, copies, and settles
//! what the key owed only if the count is unchanged when it takes the lock again. A write in
//! between may have reached the target before the copy's older bytes did, so the rows stay
//! owed and the next pass copies again. Keys sharing a stripe only cause such a spare copy.

use std::hash::{Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 4096;

pub struct KeyLocks {
    /// Per stripe, how many writes have taken it.
    stripes: Vec<Mutex<u64>>,
}

impl Default for KeyLocks {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
        }
    }
}

impl KeyLocks {
    fn stripe(&self, bucket: &str, key: &str) -> &Mutex<u64> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bucket.hash(&mut h);
        key.hash(&mut h);
        &self.stripes[(h.finish() as usize) % self.stripes.len()]
    }

    /// Locks `key` for a write to its targets (counted, see the module's docs).
    pub async fn lock(&self, bucket: &str, key: &str) -> MutexGuard<'_, u64> {
        let mut g = self.stripe(bucket, key).lock().await;
        *g = g.wrapping_add(1);
        g
    }

    /// Locks `key` to look, not write: the guard holds the count of writes so far.
    pub async fn look(&self, bucket: &str, key: &str) -> MutexGuard<'_, u64> {
        self.stripe(bucket, key).lock().await
    }
}
