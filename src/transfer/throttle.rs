//! Bandwidth limits and byte metering for bodies in flight.
//!
//! Owns [`Limiter`] (a token bucket shared by every transfer of a job) and [`meter`], which
//! wraps a body so each chunk is counted, paced when a limiter is given, and checked against
//! an [`Alive`] test (a job's lease on the task still holds) as it flows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;

use crate::store::ByteStream;

/// A token bucket: at most `rate` bytes per second on average. It starts empty and holds a
/// tenth of a second at most: a bucket that started full with a second's worth let a
/// five-second transfer run 20% over its limit (one second extra in the first second).
pub struct Limiter {
    rate: f64,
    state: tokio::sync::Mutex<(f64, Instant)>,
}

/// The most a limiter lets through at once after an idle spell, in seconds of its rate.
const BURST_SECS: f64 = 0.1;

impl Limiter {
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        Self {
            rate,
            state: tokio::sync::Mutex::new((0.0, Instant::now())),
        }
    }

    /// Waits until `n` bytes may pass.
    pub async fn take(&self, n: usize) {
        let mut s = self.state.lock().await;
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(self.rate * BURST_SECS);
        s.1 = now;
        s.0 -= n as f64;
        if s.0 < 0.0 {
            // Holding the lock while sleeping queues the other transfers behind this one,
            // which is what keeps the total under the rate.
            tokio::time::sleep(Duration::from_secs_f64(-s.0 / self.rate)).await;
        }
    }
}

/// Whether the writer may still write: false once a job's process can no longer be sure it
/// holds the lease on the task (another process may be copying the same object since).
pub type Alive = Arc<dyn Fn() -> bool + Send + Sync>;

/// Wraps `body` so every chunk adds to `counter` and, with a limiter, waits its turn; with
/// `alive`, a chunk about to pass once it turned false fails the body instead, so the
/// destination never completes that write.
pub fn meter(
    body: ByteStream,
    counter: Arc<AtomicU64>,
    limiter: Option<Arc<Limiter>>,
    alive: Option<Alive>,
) -> ByteStream {
    // After the last chunk, once more: a store commits only when the body ended.
    let last = alive.clone();
    let tail = futures::stream::once(async move {
        match last {
            Some(a) if !a() => Some(Err(std::io::Error::other(LAPSED))),
            _ => None,
        }
    })
    .filter_map(std::future::ready);
    Box::pin(
        body.then(move |chunk| {
            let counter = counter.clone();
            let limiter = limiter.clone();
            let alive = alive.clone();
            async move {
                if let Ok(b) = &chunk {
                    if let Some(l) = &limiter {
                        l.take(b.len()).await;
                    }
                    // Checked last: the pacing above may have waited long.
                    if alive.is_some_and(|a| !a()) {
                        return Err(std::io::Error::other(LAPSED));
                    }
                    counter.fetch_add(b.len() as u64, Ordering::Relaxed);
                }
                chunk
            }
        })
        .chain(tail),
    )
}

/// The error of a body cut because its writer's lease lapsed.
pub const LAPSED: &str = "the lease on this copy lapsed: another process may own it now";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_paces_to_its_rate() {
        let l = Limiter::new(1000);
        let start = tokio::time::Instant::now();
        // No burst up front: 3,000 bytes take three seconds (the last 100 pass as they are
        // taken, once their time has come).
        for _ in 0..30 {
            l.take(100).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(2900), "{took:?}");
        assert!(took <= Duration::from_millis(3100), "{took:?}");
        // After an idle spell, a tenth of a second's worth passes at once, not a second's.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let start = tokio::time::Instant::now();
        for _ in 0..11 {
            l.take(100).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(950), "{took:?}");
    }
}
