//! Bandwidth limits and byte metering for bodies in flight.
//!
//! Owns [`Limiter`] (a token bucket shared by every transfer of a job) and [`meter`], which
//! wraps a body so each chunk is counted, and paced when a limiter is given, as it flows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;

use crate::store::ByteStream;

/// A token bucket: at most `rate` bytes per second on average, bursts of one second.
pub struct Limiter {
    rate: f64,
    state: tokio::sync::Mutex<(f64, Instant)>,
}

impl Limiter {
    pub fn new(bytes_per_sec: u64) -> Self {
        let rate = bytes_per_sec.max(1) as f64;
        Self {
            rate,
            state: tokio::sync::Mutex::new((rate, Instant::now())),
        }
    }

    /// Waits until `n` bytes may pass.
    pub async fn take(&self, n: usize) {
        let mut s = self.state.lock().await;
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.rate).min(self.rate);
        s.1 = now;
        s.0 -= n as f64;
        if s.0 < 0.0 {
            // Holding the lock while sleeping queues the other transfers behind this one,
            // which is what keeps the total under the rate.
            tokio::time::sleep(Duration::from_secs_f64(-s.0 / self.rate)).await;
        }
    }
}

/// Wraps `body` so every chunk adds to `counter` and, with a limiter, waits its turn.
pub fn meter(
    body: ByteStream,
    counter: Arc<AtomicU64>,
    limiter: Option<Arc<Limiter>>,
) -> ByteStream {
    Box::pin(body.then(move |chunk| {
        let counter = counter.clone();
        let limiter = limiter.clone();
        async move {
            if let Ok(b) = &chunk {
                if let Some(l) = &limiter {
                    l.take(b.len()).await;
                }
                counter.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
            chunk
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_paces_to_its_rate() {
        let l = Limiter::new(1000);
        let start = tokio::time::Instant::now();
        // The first second's burst passes at once; the next 2,000 bytes take two seconds.
        for _ in 0..30 {
            l.take(100).await;
        }
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1900), "{took:?}");
        assert!(took <= Duration::from_millis(2100), "{took:?}");
    }
}
