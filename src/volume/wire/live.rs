//! Whether the peer is alive: a byte counter on the connection ([`Counted`]), keepalives sent
//! while this side works ([`alive`]), and a read or a wait that gives up once nothing has
//! crossed for the `--timeout` ([`recv_within`], [`silence`]).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{DEST_KEEPALIVE, Msg, recv, send};

/// Nothing arrived from the peer for this long while a frame was awaited.
#[derive(Debug, thiserror::Error)]
#[error("nothing arrived from the peer for {} s (frozen, or cut off without a reset)", .0.as_secs())]
pub struct Idle(pub Duration);

/// Reads one frame like [`recv`], but gives up with [`Idle`] once `idle` passes without a
/// byte read (`read` counts the bytes under `r`, as [`Counted::read`] does): a peer that
/// stopped must not hold the other side for ever. A slow peer that keeps sending, even a
/// byte at a time, is waited for.
pub async fn recv_within<R: AsyncRead + Unpin>(
    r: &mut R,
    read: &AtomicU64,
    idle: Option<Duration>,
) -> anyhow::Result<Option<Msg>> {
    let Some(idle) = idle else {
        return recv(r).await;
    };
    let frame = recv(r);
    tokio::pin!(frame);
    let tick = (idle / 4).max(Duration::from_millis(50));
    let (mut seen, mut quiet_since) = (read.load(Ordering::Relaxed), Instant::now());
    loop {
        tokio::select! {
            m = &mut frame => return m,
            _ = tokio::time::sleep(tick) => {
                let now = read.load(Ordering::Relaxed);
                if now != seen {
                    (seen, quiet_since) = (now, Instant::now());
                } else if quiet_since.elapsed() >= idle {
                    return Err(Idle(idle).into());
                }
            }
        }
    }
}

/// A stream that counts the bytes it reads and writes (`bytes`), and those it reads alone.
pub struct Counted<S> {
    inner: S,
    pub bytes: Arc<AtomicU64>,
    pub read: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    pub fn new(inner: S) -> Self {
        Self::sharing(inner, Arc::new(AtomicU64::new(0)))
    }

    /// Counts both ways into `bytes`, a counter the caller already holds.
    pub fn sharing(inner: S, bytes: Arc<AtomicU64>) -> Self {
        Counted {
            inner,
            bytes,
            read: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Sends `Keepalive` on `w` every [`DEST_KEEPALIVE`] until `work` ends, and returns its
/// output: the peer waits for an answer and must hear that this side is alive. A keepalive
/// that cannot be sent (the peer went away, or stopped reading) ends the keepalives, never
/// the work: what follows it will meet the broken connection.
pub async fn alive<W: AsyncWrite + Unpin, T>(w: &mut W, work: impl Future<Output = T>) -> T {
    tokio::pin!(work);
    let mut open = true;
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = tokio::time::sleep(DEST_KEEPALIVE), if open => {
                let sent = tokio::time::timeout(DEST_KEEPALIVE, send(w, &Msg::Keepalive)).await;
                open = matches!(sent, Ok(Ok(())));
            }
        }
    }
}

/// Resolves once `bytes` (a connection's count of bytes either way) has not moved for
/// `idle`: nothing has crossed the connection, not even a keepalive. Never before the first
/// byte.
pub async fn silence(bytes: &AtomicU64, idle: Duration) -> Idle {
    let tick = (idle / 4).max(Duration::from_millis(50));
    let (mut seen, mut since) = (bytes.load(Ordering::Relaxed), tokio::time::Instant::now());
    loop {
        tokio::time::sleep(tick).await;
        let now = bytes.load(Ordering::Relaxed);
        if now != seen || now == 0 {
            (seen, since) = (now, tokio::time::Instant::now());
        } else if since.elapsed() >= idle {
            return Idle(idle);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
