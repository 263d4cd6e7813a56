//! What the S3 server does about clients that stop: the time limits hyper and s3s leave to
//! the server. A connection that sends nothing, or trickles a request head, is closed after
//! [`HEAD`] (hyper's header read timeout, which also ends idle keep-alive connections); a
//! request body that stops arriving fails after [`BODY_IDLE`] with S3's `RequestTimeout`; a
//! response the client stops reading is abandoned after [`WRITE_STALL`]. Without them one
//! client (signed or not) could hold a connection, a concurrency slot, a key's lock or a
//! file for as long as it liked, and enough of them would exhaust the server's descriptors.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a client may take to send a request head, and how long a connection may sit
/// idle between requests.
pub const HEAD: Duration = Duration::from_secs(30);
/// The error a stalled body ends with; its text is what [`is_stall`] looks for once it has
/// crossed s3s (which passes body errors on as text).
#[derive(Debug)]
pub struct Stalled(Duration);

const STALLED_TEXT: &str = "the client sent no body bytes for";

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{STALLED_TEXT} {} s", self.0.as_secs())
    }
}

impl std::error::Error for Stalled {}

/// What S3 says of a body that stopped arriving (`RequestTimeout`).
pub const STALLED_MESSAGE: &str = "Your socket connection to the server was not read from or \
     written to within the timeout period. Idle connections will be closed.";

/// Whether a body error is [`Stalled`].
pub fn is_stall(e: &dyn std::error::Error) -> bool {
    e.to_string().contains(STALLED_TEXT)
}

/// A request body that fails with [`Stalled`] once nothing has arrived for `idle`.
pub struct IdleBody<B> {
    inner: B,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    /// Set when it stalls, for a reader that passes body errors on as something else (s3s
    /// reading an XML document calls any failure an internal error).
    stalled: Option<Arc<AtomicBool>>,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            armed: false,
            stalled: None,
        }
    }

    /// Sets `flag` if the body stalls.
    pub fn flagging(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stalled = Some(flag);
        self
    }
}

impl<B> http_body::Body for IdleBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.armed = false;
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.armed {
                    let deadline = tokio::time::Instant::now() + this.idle;
                    this.timer.as_mut().reset(deadline);
                    this.armed = true;
                }
                ready!(this.timer.as_mut().poll(cx));
                if let Some(flag) = &this.stalled {
                    flag.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Err(Box::new(Stalled(this.idle)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once one has waited `stall` for the client to read, and
/// which fails if its first bytes do not come within `first` (hyper's own head timeout
/// starts only once those bytes have told it the protocol).
pub struct StallIo<S> {
    inner: S,
    stall: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
    /// Until the first bytes arrive: when they must have.
    first: Option<Pin<Box<Sleep>>>,
}

impl<S> StallIo<S> {
    pub fn new(inner: S, first: Duration, stall: Duration) -> Self {
        Self {
            inner,
            stall,
            timer: Box::pin(tokio::time::sleep(stall)),
            armed: false,
            first: Some(Box::pin(tokio::time::sleep(first))),
        }
    }

    /// Passes `r` on, failing a write that has been pending for `stall`.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !self.armed {
                    let deadline = tokio::time::Instant::now() + self.stall;
                    self.timer.as_mut().reset(deadline);
                    self.armed = true;
                }
                ready!(self.timer.as_mut().poll(cx));
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the client read nothing for {} s", self.stall.as_secs()),
                )))
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        match (&r, self.first.as_mut()) {
            (Poll::Ready(_), Some(_)) => self.first = None,
            (Poll::Pending, Some(first)) => {
                ready!(first.as_mut().poll(cx));
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client sent nothing within the request timeout",
                )));
            }
            _ => {}
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_fails_as_stalled() {
        use futures::StreamExt;
        let frames = futures::stream::iter([Ok::<_, std::io::Error>(http_body::Frame::data(
            Bytes::from_static(b"abc"),
        ))])
        .chain(futures::stream::pending());
        let mut body = IdleBody::new(
            http_body_util::StreamBody::new(frames),
            Duration::from_secs(60),
        );
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.into_data().ok(), Some(Bytes::from_static(b"abc")));
        let stalled = body.frame().await.expect("an end");
        let err = stalled.expect_err("the stalled body fails");
        assert!(is_stall(err.as_ref()), "{err}");
    }
}
