//! The gate every write of a namespace bucket passes, and the bound on how long a role change
//! (failover, failback, a new policy, removal) waits at it.
//!
//! Writes hold the gate shared while they run, so they see one set of roles from start to end.
//! A role change closes it: new writes queue, and the change waits for the writes in flight.
//! That wait is bounded, or one slow upload (a 5 GiB body over a thin link, a client that
//! stalled mid-body) or one write stuck on a store that stopped answering would hold the
//! change, and every write queued behind it, for as long as it takes. After [`HOLD`], the
//! writes still running are cut: each is dropped where it stands (as when its client
//! disconnects: nothing half-written is visible, and journal rows not yet settled go to the
//! catch-up worker as owed, which is always safe) and its client is answered 503, which S3
//! clients retry. A write that has not let go [`STOP`] later leaves the change refused with
//! nothing changed, and the writes queued behind it go on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio_util::sync::CancellationToken;

use crate::store::Error;

/// How long a role change waits for writes in flight before it cuts them.
pub const HOLD: Duration = Duration::from_secs(3);
/// How long it then waits for them to let go before it gives up.
pub const STOP: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Gate {
    lock: RwLock<()>,
    /// Cancelled to cut the writes holding the gate; replaced before each cut.
    cut: Mutex<CancellationToken>,
    /// Writes holding the gate.
    running: AtomicUsize,
}

/// A write's share of the gate.
pub struct Pass<'a> {
    _shared: RwLockReadGuard<'a, ()>,
    cut: CancellationToken,
    running: &'a AtomicUsize,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        self.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A role change still had writes in flight after [`HOLD`] + [`STOP`].
#[derive(Debug)]
pub struct Stuck;

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "writes in flight did not end within {} s of the change (they were cut after {} s); \
             nothing changed: try again",
            (HOLD + STOP).as_secs(),
            HOLD.as_secs()
        )
    }
}

impl Gate {
    /// Enters the gate for one write; waits while a role change holds it.
    pub async fn enter(&self) -> Pass<'_> {
        let shared = self.lock.read().await;
        self.running.fetch_add(1, Ordering::Relaxed);
        Pass {
            _shared: shared,
            cut: self.cut.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            running: &self.running,
        }
    }

    /// How many writes hold the gate now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }

    /// Closes the gate for a role change, once the writes in flight have ended or been cut.
    pub async fn close(&self) -> std::result::Result<RwLockWriteGuard<'_, ()>, Stuck> {
        let mut closing = std::pin::pin!(self.lock.write());
        if let Ok(g) = tokio::time::timeout(HOLD, &mut closing).await {
            return Ok(g);
        }
        tracing::info!(
            running = self.running(),
            "a role change cuts the writes still in flight after {} s",
            HOLD.as_secs()
        );
        // Replaced before it is cancelled: writes entering later (this change refused, or
        // its caller gone) are never cut by it.
        let cut = std::mem::take(&mut *self.cut.lock().unwrap_or_else(|p| p.into_inner()));
        cut.cancel();
        tokio::time::timeout(STOP, &mut closing)
            .await
            .map_err(|_| Stuck)
    }
}

impl Pass<'_> {
    /// Runs `write` unless a role change cuts it first (then `write` is dropped where it
    /// stands).
    pub async fn run<T>(&self, write: impl Future<Output = T>) -> std::result::Result<T, Cut> {
        tokio::select! {
            r = write => Ok(r),
            _ = self.cut.cancelled() => Err(Cut),
        }
    }
}

/// A write was cut by a role change. Whether it reached the primary is unknown, so what it
/// journaled stays owed.
#[derive(Debug)]
pub struct Cut;

impl Cut {
    /// The client's answer: 503, to be retried once roles have changed.
    pub fn answer(self, bucket: &str) -> Error {
        Error::Unavailable {
            store: bucket.to_owned(),
            message: format!(
                "bucket {bucket} is changing roles (failover, failback or a new policy): this \
                 write was stopped; retry it"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stuck_write_is_cut_and_the_gate_closes() {
        let gate = Gate::default();
        let pass = gate.enter().await;
        assert_eq!(gate.running(), 1);
        let writing = async {
            let r = pass.run(futures::future::pending::<()>()).await;
            drop(pass);
            r
        };
        let (closed, written) = tokio::join!(gate.close(), writing);
        assert!(closed.is_ok(), "the gate did not close");
        assert!(written.is_err(), "the write was not cut");
        assert!(matches!(Cut.answer("b"), Error::Unavailable { .. }));
        assert_eq!(gate.running(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_never_lets_go_leaves_the_change_refused_and_the_gate_open() {
        let gate = Gate::default();
        let pass = gate.enter().await;
        assert!(gate.close().await.is_err(), "closed over a write in flight");
        drop(pass);
        // Writes after the refused change are not cut.
        let pass = gate.enter().await;
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            pass.run(async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                7
            }),
        )
        .await;
        assert!(matches!(r, Ok(Ok(7))), "{r:?}");
    }

    /// A change whose caller went away mid-cut (the admin client disconnected) must not
    /// leave the cut armed for the writes after it.
    #[tokio::test(start_paused = true)]
    async fn a_change_dropped_mid_cut_leaves_later_writes_alone() {
        let gate = Gate::default();
        let pass = gate.enter().await;
        let _ = tokio::time::timeout(HOLD + Duration::from_secs(1), gate.close()).await;
        drop(pass);
        let pass = gate.enter().await;
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            pass.run(async {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }),
        )
        .await;
        assert!(matches!(r, Ok(Ok(()))), "{r:?}");
    }
}
