//! Striped per-key locks: writes to one key of a namespace bucket run one at a time, so every
//! target sees them in the same order.
//!
//! Each stripe also counts the writes that took it. The catch-up worker does not hold a key's
//! lock while it copies (a copy to a stalled secondary may take minutes, and a client write
//! of the key would wait that long): it notes the count under the lock, copies, and settles
//! what the key owed only if the count is unchanged when it takes the lock again. A write in
//! between may have reached the target before the copy's older bytes did, so the rows stay
//! owed and the next pass copies again. Keys sharing a stripe only cause such a spare copy.
//!
//! That is safe for a secondary, which may be behind as long as it is owed. It is not for a
//! target that became the primary (a failover) while a copy to it was still in flight: its
//! older bytes could land over a client's acknowledged write. So copies in flight are counted
//! per target, and a write waits for those to its primary (of its key's stripe) to end.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use tokio::sync::{Mutex, MutexGuard, Notify};

const STRIPES: usize = 4096;

pub struct KeyLocks {
    /// Per stripe, how many writes have taken it.
    stripes: Vec<Mutex<u64>>,
    /// Catch-up copies in flight, per (target, stripe).
    copies: std::sync::Mutex<HashMap<(String, usize), usize>>,
    /// Told whenever a copy ends.
    copy_ended: Notify,
}

impl Default for KeyLocks {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            copies: std::sync::Mutex::default(),
            copy_ended: Notify::new(),
        }
    }
}

/// A catch-up copy in flight, counted until dropped.
pub struct Copying<'a> {
    locks: &'a KeyLocks,
    at: (String, usize),
}

impl Drop for Copying<'_> {
    fn drop(&mut self) {
        let mut c = self.locks.copies.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = c.get_mut(&self.at) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.at);
            }
        }
        drop(c);
        self.locks.copy_ended.notify_waiters();
    }
}

impl KeyLocks {
    fn index(&self, bucket: &str, key: &str) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bucket.hash(&mut h);
        key.hash(&mut h);
        (h.finish() as usize) % self.stripes.len()
    }

    fn stripe(&self, bucket: &str, key: &str) -> &Mutex<u64> {
        &self.stripes[self.index(bucket, key)]
    }

    /// Counts a catch-up copy of `key` to `target` until the guard is dropped. Taken while
    /// the key is locked ([`Self::look`]), so a write that locks the key after sees it.
    pub fn copying(&self, target: &str, bucket: &str, key: &str) -> Copying<'_> {
        let at = (target.to_owned(), self.index(bucket, key));
        *self
            .copies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(at.clone())
            .or_default() += 1;
        Copying { locks: self, at }
    }

    /// Waits until no catch-up copy of `key`'s stripe to `target` is in flight. Called by a
    /// write holding the key's lock, for its primary: none is, unless a failover made a
    /// secondary with copies still running the primary.
    pub async fn wait_copies_to(&self, target: &str, bucket: &str, key: &str) {
        let at = (target.to_owned(), self.index(bucket, key));
        loop {
            let ended = self.copy_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let busy = self
                .copies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&at);
            if !busy {
                return;
            }
            ended.await;
        }
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

#[cfg(test)]
mod tests {
    use super::KeyLocks;
    use std::time::Duration;

    #[tokio::test]
    async fn a_write_to_a_target_waits_for_copies_to_it_in_flight() {
        let locks = KeyLocks::default();
        let copying = locks.copying("dr", "b", "k");
        // Another target, or a key of another stripe: no wait.
        locks.wait_copies_to("local", "b", "k").await;
        let other = (0..100)
            .map(|i| format!("other{i}"))
            .find(|k| locks.index("b", k) != locks.index("b", "k"))
            .expect("a key of another stripe");
        locks.wait_copies_to("dr", "b", &other).await;
        // The copy's own key and target: waits until the copy ends.
        let waiting = locks.wait_copies_to("dr", "b", "k");
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), waiting.as_mut())
                .await
                .is_err(),
            "did not wait for the copy"
        );
        drop(copying);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("still waiting after the copy ended");
    }

    #[tokio::test]
    async fn writes_are_counted_and_looks_are_not() {
        let locks = KeyLocks::default();
        let before = *locks.look("b", "k").await;
        drop(locks.lock("b", "k").await);
        assert_eq!(*locks.look("b", "k").await, before + 1);
        assert_eq!(*locks.look("b", "k").await, before + 1);
    }
}
