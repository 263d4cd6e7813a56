//! The gate every write of a namespace bucket passes, and the bound on how long a role change
//! (failover, failback, a new policy, removal) waits at it.
//!
//! Writes hold the gate shared while they run, so they see one set of roles from start to end.
//! A role change closes it: new writes queue, and the change waits for the writes in flight.
//! That wait is bounded, or one slow upload (a 5 GiB body over a thin link, a client that
//! stalled mid-body) would hold the change, and every write queued behind it, for as long as
//! it takes. After [`HOLD`], the bodies still streaming are cut: each ends with a [`Cut`]
//! error, so its write fails as a client disconnect would (nothing committed, what was
//! journaled settled) and the client is answered 503, which S3 clients retry. A write that
//! still has not finished [`STOP`] later (a store that does not answer) leaves the change
//! refused with nothing changed, and the writes queued behind it go on.

use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Future, Stream};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::store::{ByteStream, Error};

/// How long a role change waits for writes in flight before it cuts their bodies.
pub const HOLD: Duration = Duration::from_secs(3);
/// How long it then waits for the writes to end before it gives up.
pub const STOP: Duration = Duration::from_secs(10);

#[derive(Default)]
pub struct Gate {
    lock: RwLock<()>,
    /// Cancelled to cut the bodies of the writes holding the gate; replaced by each close.
    cut: Mutex<CancellationToken>,
}

/// A write's share of the gate.
pub struct Pass<'a> {
    _shared: RwLockReadGuard<'a, ()>,
    cut: CancellationToken,
}

/// A role change still had writes in flight after [`HOLD`] + [`STOP`].
#[derive(Debug)]
pub struct Stuck;

impl std::fmt::Display for Stuck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "writes in flight did not end within {} s of the change (their bodies were cut \
             after {} s; a store that does not answer?); nothing changed: try again",
            (HOLD + STOP).as_secs(),
            HOLD.as_secs()
        )
    }
}

impl Gate {
    /// Enters the gate for one write; waits while a role change holds it.
    pub async fn enter(&self) -> Pass<'_> {
        let shared = self.lock.read().await;
        Pass {
            _shared: shared,
            cut: self.token(),
        }
    }

    /// Closes the gate for a role change, once the writes in flight have ended or been cut.
    pub async fn close(&self) -> Result<RwLockWriteGuard<'_, ()>, Stuck> {
        let mut closing = std::pin::pin!(self.lock.write());
        if let Ok(g) = tokio::time::timeout(HOLD, &mut closing).await {
            return Ok(g);
        }
        tracing::info!(
            "a role change cuts the bodies of writes still in flight after {} s",
            HOLD.as_secs()
        );
        self.token().cancel();
        let r = tokio::time::timeout(STOP, &mut closing).await;
        // Writes from now on get a fresh token, whether or not the change goes ahead.
        *self.cut.lock().unwrap_or_else(|p| p.into_inner()) = CancellationToken::new();
        r.map_err(|_| Stuck)
    }

    fn token(&self) -> CancellationToken {
        self.cut.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Pass<'_> {
    /// `body`, ending with a [`Cut`] error if a role change cuts it.
    pub fn guard(&self, body: ByteStream) -> ByteStream {
        Box::pin(Guarded {
            body,
            cut: Box::pin(self.cut.clone().cancelled_owned()),
            ended: false,
        })
    }
}

/// The error a cut body ends with.
#[derive(Debug)]
pub struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the body was cut by a role change of the bucket")
    }
}

impl std::error::Error for Cut {}

impl Cut {
    /// Whether a write failed because a role change cut its body.
    pub fn is_in(e: &Error) -> bool {
        matches!(e, Error::Body(io) if io.get_ref().is_some_and(|inner| inner.is::<Cut>()))
    }

    /// The error the client of a cut write gets: 503, to be retried once roles have changed.
    pub fn answer(bucket: &str, e: Error) -> Error {
        if Self::is_in(&e) {
            Error::Unavailable {
                store: bucket.to_owned(),
                message: format!(
                    "bucket {bucket} is changing roles (failover, failback or a new policy): \
                     this upload was stopped; retry it"
                ),
            }
        } else {
            e
        }
    }
}

struct Guarded {
    body: ByteStream,
    cut: Pin<Box<WaitForCancellationFutureOwned>>,
    ended: bool,
}

impl Stream for Guarded {
    type Item = std::io::Result<bytes::Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.cut.as_mut().poll(cx).is_ready() {
            self.ended = true;
            return Poll::Ready(Some(Err(std::io::Error::other(Cut))));
        }
        let r = self.body.as_mut().poll_next(cx);
        if matches!(r, Poll::Ready(None)) {
            self.ended = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn endless() -> ByteStream {
        Box::pin(futures::stream::pending())
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_is_cut_and_the_gate_closes() {
        let gate = Gate::default();
        let pass = gate.enter().await;
        let mut body = pass.guard(endless());
        let closing = gate.close();
        let reading = async {
            let first = body.next().await;
            drop(pass);
            first
        };
        let (closed, first) = tokio::join!(closing, reading);
        assert!(closed.is_ok(), "the gate did not close");
        let err = match first {
            Some(Err(e)) => e,
            other => panic!("the body was not cut: {other:?}"),
        };
        assert!(Cut::is_in(&Error::Body(err)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_never_ends_leaves_the_change_refused_and_the_gate_open() {
        let gate = Gate::default();
        let pass = gate.enter().await;
        assert!(gate.close().await.is_err(), "closed over a write in flight");
        drop(pass);
        // Writes after the refused change are not cut.
        let pass = gate.enter().await;
        let mut body = pass.guard(Box::pin(futures::stream::iter([Ok(bytes::Bytes::from(
            "x",
        ))])));
        assert!(matches!(body.next().await, Some(Ok(_))));
        assert!(body.next().await.is_none());
    }
}
