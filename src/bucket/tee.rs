//! Splitting one request body into one stream per write target, with a bounded buffer.
//!
//! The primary's stream leads: the client's body is read only as fast as the primary takes
//! it, and each chunk is handed to every follower without waiting. A follower whose buffer
//! is full (too slow to keep up) or that went away is cut: its stream ends with an error, so
//! its write fails and becomes a journal entry, and the primary and the client never wait
//! for it. Memory per follower is bounded by `cap` bytes, whatever the chunk sizes.
//!
//! With a [`Hashing`], the leader also hashes the bytes as they pass, once for every target,
//! and publishes the digests before any stream ends cleanly: every target stores the same
//! bytes, so one MD5 serves them all.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Future, Stream};
use tokio::sync::{mpsc, oneshot};

use crate::store::digest::BodyHasher;
use crate::store::{ByteStream, ChecksumAlgorithm, SharedDigests};

/// What the leader hashes the body for: the checksum algorithm, and where the digests go.
pub struct Hashing {
    pub algorithm: Option<ChecksumAlgorithm>,
    pub into: SharedDigests,
}

struct Follower {
    tx: Option<mpsc::UnboundedSender<Bytes>>,
    cut: Arc<AtomicBool>,
    /// Bytes sent and not yet taken by the follower.
    buffered: Arc<AtomicUsize>,
}

impl Follower {
    fn cut(&mut self) {
        self.cut.store(true, Ordering::SeqCst);
        self.tx = None;
    }
}

struct Leader {
    src: ByteStream,
    followers: Vec<Follower>,
    cap: usize,
    /// The body may only end (and so any target commit) once this says `true`.
    gate: Option<oneshot::Receiver<bool>>,
    src_done: bool,
    finished: bool,
    hashing: Option<(BodyHasher, SharedDigests)>,
}

impl Stream for Leader {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        let item = if self.src_done {
            None
        } else {
            std::task::ready!(self.src.as_mut().poll_next(cx))
        };
        if item.is_none() {
            self.src_done = true;
            if let Some(gate) = self.gate.as_mut() {
                let open = matches!(std::task::ready!(Pin::new(gate).poll(cx)), Ok(true));
                self.gate = None;
                if !open {
                    self.finished = true;
                    self.followers.iter_mut().for_each(Follower::cut);
                    return Poll::Ready(Some(Err(std::io::Error::other(
                        "the write could not be recorded in the journal",
                    ))));
                }
            }
        }
        match &item {
            Some(Ok(b)) => {
                if let Some((h, _)) = self.hashing.as_mut() {
                    h.update(b);
                }
                let cap = self.cap;
                // An empty chunk still costs a slot: count it as one byte.
                let cost = b.len().max(1);
                for f in &mut self.followers {
                    let Some(tx) = &f.tx else { continue };
                    if f.buffered.load(Ordering::SeqCst) + cost > cap {
                        f.cut();
                        continue;
                    }
                    f.buffered.fetch_add(cost, Ordering::SeqCst);
                    if tx.send(b.clone()).is_err() {
                        f.cut();
                    }
                }
            }
            Some(Err(_)) => self.followers.iter_mut().for_each(Follower::cut),
            None => {
                self.finished = true;
                if let Some((h, into)) = self.hashing.take() {
                    into.set(h.finalize());
                }
                // A clean end: followers see their channel close without the cut flag.
                for f in &mut self.followers {
                    f.tx = None;
                }
            }
        }
        Poll::Ready(item)
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.finished {
            self.followers.iter_mut().for_each(Follower::cut);
        }
    }
}

struct FollowerStream {
    rx: mpsc::UnboundedReceiver<Bytes>,
    cut: Arc<AtomicBool>,
    buffered: Arc<AtomicUsize>,
    ended: bool,
}

impl Stream for FollowerStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match std::task::ready!(self.rx.poll_recv(cx)) {
            Some(b) => {
                self.buffered.fetch_sub(b.len().max(1), Ordering::SeqCst);
                Poll::Ready(Some(Ok(b)))
            }
            None => {
                self.ended = true;
                if self.cut.load(Ordering::SeqCst) {
                    Poll::Ready(Some(Err(std::io::Error::other(
                        "this target fell behind the primary or the primary stopped",
                    ))))
                } else {
                    Poll::Ready(None)
                }
            }
        }
    }
}

/// Splits `src` into the leading stream and `n` followers of at most `cap` buffered bytes.
/// With a `gate`, no stream ends before the gate opens (`true`); a closed gate (`false` or
/// dropped) ends them all with an error instead, so no target commits the body. With
/// `hashing`, the digests are published before any stream ends cleanly.
pub fn tee(
    src: ByteStream,
    n: usize,
    cap: usize,
    gate: Option<oneshot::Receiver<bool>>,
    hashing: Option<Hashing>,
) -> (ByteStream, Vec<ByteStream>) {
    let mut followers = Vec::with_capacity(n);
    let mut streams: Vec<ByteStream> = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::unbounded_channel();
        let cut = Arc::new(AtomicBool::new(false));
        let buffered = Arc::new(AtomicUsize::new(0));
        followers.push(Follower {
            tx: Some(tx),
            cut: cut.clone(),
            buffered: buffered.clone(),
        });
        streams.push(Box::pin(FollowerStream {
            rx,
            cut,
            buffered,
            ended: false,
        }));
    }
    let leader = Leader {
        src,
        followers,
        cap,
        gate,
        src_done: false,
        finished: false,
        hashing: hashing.map(|h| (BodyHasher::new(h.algorithm), h.into)),
    };
    (Box::pin(leader), streams)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn source(chunks: usize) -> ByteStream {
        Box::pin(futures::stream::iter(
            (0..chunks).map(|i| Ok(Bytes::from(vec![i as u8; 10]))),
        ))
    }

    #[tokio::test]
    async fn followers_get_every_chunk() {
        let (lead, mut f) = tee(source(5), 1, 80, None, None);
        let a: Vec<_> = lead.collect().await;
        let b: Vec<_> = f.remove(0).collect().await;
        assert_eq!(a.len(), 5);
        assert_eq!(b.len(), 5);
        assert!(b.iter().all(|r| r.is_ok()));
    }

    #[tokio::test]
    async fn a_slow_follower_is_cut_not_waited_for() {
        let (lead, mut f) = tee(source(10), 1, 20, None, None);
        let a: Vec<_> = lead.collect().await;
        assert_eq!(a.len(), 10, "the leader never waits");
        let b: Vec<_> = f.remove(0).collect().await;
        assert_eq!(
            b.len(),
            3,
            "two buffered 10-byte chunks (cap 20 bytes), then the error"
        );
        assert!(b[2].is_err());
    }

    #[tokio::test]
    async fn nothing_ends_before_the_gate_opens() {
        let (tx, rx) = oneshot::channel();
        let (lead, mut f) = tee(source(3), 1, 80, Some(rx), None);
        let lead = tokio::spawn(lead.collect::<Vec<_>>());
        let follow = tokio::spawn(f.remove(0).collect::<Vec<_>>());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!lead.is_finished() && !follow.is_finished());
        tx.send(true).expect("gate");
        assert_eq!(lead.await.expect("lead").len(), 3);
        assert!(follow.await.expect("follow").iter().all(|r| r.is_ok()));
    }

    #[tokio::test]
    async fn a_closed_gate_fails_every_stream() {
        let (tx, rx) = oneshot::channel();
        let (lead, mut f) = tee(source(3), 1, 80, Some(rx), None);
        tx.send(false).expect("gate");
        let a: Vec<_> = lead.collect().await;
        assert!(a.last().is_some_and(|r| r.is_err()));
        let b: Vec<_> = f.remove(0).collect().await;
        assert!(b.last().is_some_and(|r| r.is_err()));
    }

    #[tokio::test]
    async fn the_digests_are_set_before_any_stream_ends() {
        let into = SharedDigests::default();
        let hashing = Hashing {
            algorithm: Some(ChecksumAlgorithm::Crc32c),
            into: into.clone(),
        };
        let (mut lead, mut f) = tee(source(3), 1, 80, None, Some(hashing));
        let mut follow = f.remove(0);
        let mut want = BodyHasher::new(Some(ChecksumAlgorithm::Crc32c));
        for i in 0..3u8 {
            assert!(into.get().is_err(), "not before the body ends");
            let a = lead.next().await.expect("chunk").expect("ok");
            want.update(&a);
            assert_eq!(follow.next().await.expect("chunk").expect("ok"), a);
            assert_eq!(a[0], i);
        }
        assert!(lead.next().await.is_none());
        assert_eq!(into.get().expect("set at the end"), want.finalize());
        assert!(follow.next().await.is_none());
    }

    #[tokio::test]
    async fn a_failed_body_sets_no_digests() {
        let (tx, rx) = oneshot::channel();
        let into = SharedDigests::default();
        let hashing = Hashing {
            algorithm: None,
            into: into.clone(),
        };
        let (lead, _f) = tee(source(3), 1, 80, Some(rx), Some(hashing));
        tx.send(false).expect("gate");
        let a: Vec<_> = lead.collect().await;
        assert!(a.last().is_some_and(|r| r.is_err()));
        assert!(into.get().is_err());
    }

    #[tokio::test]
    async fn dropping_the_leader_early_cuts_followers() {
        let (mut lead, mut f) = tee(source(10), 1, 160, None, None);
        let _ = lead.next().await;
        drop(lead);
        let b: Vec<_> = f.remove(0).collect().await;
        assert!(b.last().is_some_and(|r| r.is_err()));
    }
}
