//! A job runner's fence: until when this process's task leases surely hold. A process that
//! cannot renew its leases in time (frozen by SIGSTOP, swapped out, cut off from the
//! database) may have lost its tasks to another process; every write of a copy checks the
//! fence first, so such a process stops writing instead of finishing stale copies (see
//! [`super::run`]).

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use super::run::LEASE_MS;

/// How much sooner than its leases this process's [`Fence`] lapses: room for the clocks of
/// the processes sharing a job to differ, and for a renewal to land late.
pub const FENCE_MARGIN_MS: i64 = 5_000;

/// Until when this process's task leases surely hold, and a generation bumped each time that
/// was seen to have passed. A task remembers the generation it was claimed under; once the
/// generation moved on, its lease may have expired and another process may own the task,
/// even if the leases are renewed later.
pub struct Fence {
    base: Instant,
    /// Milliseconds after `base` until which the leases surely hold.
    until_ms: AtomicU64,
    generation: AtomicU64,
}

impl Fence {
    /// A fence for leases taken from now on (each lasts [`LEASE_MS`] from its claim).
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            until_ms: AtomicU64::new((LEASE_MS - FENCE_MARGIN_MS) as u64),
            generation: AtomicU64::new(0),
        }
    }

    fn elapsed_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// The current generation, `None` when the fence has lapsed (the generation is bumped
    /// then, so tasks claimed before never hold again).
    pub fn current(&self) -> Option<u64> {
        if self.elapsed_ms() >= self.until_ms.load(Ordering::SeqCst) {
            self.generation.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        Some(self.generation.load(Ordering::SeqCst))
    }

    /// Whether a task claimed under `generation` is surely still this process's.
    pub fn holds(&self, generation: u64) -> bool {
        self.current() == Some(generation)
    }

    /// Records a renewal of every lease that succeeded and was sent at `sent`. A renewal
    /// that came back after the fence lapsed renewed only the leases no other process took
    /// meanwhile: the lapse is recorded first, so the tasks claimed before it stay fenced.
    pub fn renewed(&self, sent: Instant) {
        let _ = self.current();
        let until = sent.duration_since(self.base).as_millis() as i64 + LEASE_MS - FENCE_MARGIN_MS;
        self.until_ms.store(until.max(0) as u64, Ordering::SeqCst);
    }
}

impl Default for Fence {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The fence lapses once its time passed, and tasks claimed before a lapse stay fenced
    /// even after a renewal moves the fence on.
    #[tokio::test(start_paused = true)]
    async fn a_fence_lapses_and_stays_lapsed_for_older_claims() {
        let fence = Fence::new();
        let before = fence.current().expect("fresh");
        assert!(fence.holds(before));
        tokio::time::advance(Duration::from_millis((LEASE_MS - FENCE_MARGIN_MS) as u64)).await;
        assert!(!fence.holds(before), "lapsed at lease less margin");
        assert_eq!(fence.current(), None);
        fence.renewed(Instant::now());
        let after = fence.current().expect("renewed");
        assert!(fence.holds(after));
        assert!(
            !fence.holds(before),
            "a renewal does not bring a lapsed claim back"
        );
        // A renewal that comes back after the fence it started under lapsed: the lapse is
        // recorded before the fence moves on.
        let sent = Instant::now();
        tokio::time::advance(Duration::from_millis(LEASE_MS as u64)).await;
        fence.renewed(sent);
        assert!(!fence.holds(after));
    }
}
