//! Splitting one request body into one stream per write target, with a bounded buffer.
//!
//! The primary's stream leads: the client's body is read only as fast as the primary takes
//! it, and each chunk is handed to every follower. A follower a full buffer behind holds the
//! next chunk back for a bounded time only: [`SLACK_MIN`] plus [`SLACK_SHARE`] of the time
//! the body has taken so far, in all. A follower still behind then, or one that went away, is
//! cut: its stream ends with a [`FellBehind`] error, so its write fails and becomes a journal
//! entry, and the client goes on at the primary's pace. So a secondary a little slower than
//! the primary (a remote Ferry beside a local disk) takes a large body whole, and a stalled
//! or far slower one slows the client by a bounded amount, never stalls it. Memory per
//! follower is bounded by `cap` bytes plus the one chunk held back.
//!
//! With a [`Hashing`], the leader also hashes the bytes as they pass, once for every target,
//! and publishes the digests before any stream ends cleanly: every target stores the same
//! bytes, so one MD5 serves them all.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::task::AtomicWaker;
use futures::{Future, Stream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, Sleep};

use crate::store::digest::BodyHasher;
use crate::store::{ByteStream, ChecksumAlgorithm, SharedDigests};

/// What the leader hashes the body for: the checksum algorithm, and where the digests go.
pub struct Hashing {
    pub algorithm: Option<ChecksumAlgorithm>,
    pub into: SharedDigests,
}

/// How long, at least, the followers may hold a body back in all before a laggard is cut.
pub const SLACK_MIN: Duration = Duration::from_secs(1);
/// And what share of the time the body has taken so far they may add to that.
pub const SLACK_SHARE: f64 = 0.25;

/// The error a cut follower's stream ends with: it fell behind the primary (or the primary
/// stopped). Not a sign that its target is down.
#[derive(Debug)]
pub struct FellBehind;

impl std::fmt::Display for FellBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("this target fell behind the primary or the primary stopped")
    }
}

impl std::error::Error for FellBehind {}

impl FellBehind {
    /// Whether a target's write failed because its body was cut for falling behind.
    pub fn is_in(e: &crate::store::Error) -> bool {
        matches!(e, crate::store::Error::Body(io)
            if io.get_ref().is_some_and(|inner| inner.is::<FellBehind>()))
    }
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
    /// A chunk taken from the source and not yet handed on: a follower had no room for it.
    held: Option<Bytes>,
    /// Woken by followers as they take chunks.
    room: Arc<AtomicWaker>,
    slack: Slack,
}

/// The time followers held the body back, against what they may.
struct Slack {
    started: Instant,
    spent: Duration,
    /// Since when the current wait runs, and the timer that ends it.
    waiting: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl Slack {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            spent: Duration::ZERO,
            waiting: None,
        }
    }

    /// Waits for room (`Pending`) while the slack lasts; `Ready` once it is spent.
    fn wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        let (since, timer) = self
            .waiting
            .get_or_insert_with(|| (now, Box::pin(tokio::time::sleep_until(now))));
        let held = self.spent + (now - *since);
        let allowed = SLACK_MIN + (now - self.started).mul_f64(SLACK_SHARE);
        if held >= allowed {
            return Poll::Ready(());
        }
        // While this wait lasts, `held` grows with the clock and `allowed` by a share of it.
        let left = (allowed - held).div_f64(1.0 - SLACK_SHARE);
        timer.as_mut().reset(now + left);
        timer.as_mut().poll(cx)
    }

    /// The wait (if any) is over: its time counts against the slack.
    fn stop(&mut self) {
        if let Some((since, _)) = self.waiting.take() {
            self.spent += Instant::now() - since;
        }
    }
}

impl Leader {
    /// Hands `b` to every follower with room for it; with a follower that has none, waits
    /// (`Pending`) while the slack lasts, then cuts those still without room.
    fn hand_on(&mut self, b: &Bytes, cx: &mut Context<'_>) -> Poll<()> {
        let cap = self.cap;
        // An empty chunk still costs a slot: count it as one byte.
        let cost = b.len().max(1);
        let full = |f: &Follower| {
            let buffered = f.buffered.load(Ordering::SeqCst);
            f.tx.is_some() && buffered > 0 && buffered + cost > cap
        };
        if self.followers.iter().any(full) {
            self.room.register(cx.waker());
            // Checked again after registering: a follower may have made room in between.
            if self.followers.iter().any(full) {
                if self.slack.wait(cx).is_pending() {
                    return Poll::Pending;
                }
                for f in &mut self.followers {
                    if full(f) {
                        f.cut();
                    }
                }
            }
        }
        self.slack.stop();
        for f in &mut self.followers {
            let Some(tx) = &f.tx else { continue };
            f.buffered.fetch_add(cost, Ordering::SeqCst);
            if tx.send(b.clone()).is_err() {
                f.cut();
            }
        }
        Poll::Ready(())
    }
}

impl Stream for Leader {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if let Some(b) = self.held.take() {
            if self.hand_on(&b, cx).is_pending() {
                self.held = Some(b);
                return Poll::Pending;
            }
            return Poll::Ready(Some(Ok(b)));
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
                if self.hand_on(b, cx).is_pending() {
                    self.held = item.and_then(Result::ok);
                    return Poll::Pending;
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
    room: Arc<AtomicWaker>,
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
                self.room.wake();
                Poll::Ready(Some(Ok(b)))
            }
            None => {
                self.ended = true;
                if self.cut.load(Ordering::SeqCst) {
                    Poll::Ready(Some(Err(std::io::Error::other(FellBehind))))
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
    let room = Arc::new(AtomicWaker::new());
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
            room: room.clone(),
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
        held: None,
        room,
        slack: Slack::new(),
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

    /// A follower that takes a chunk every `every`.
    fn paced(
        mut f: ByteStream,
        every: Duration,
    ) -> tokio::task::JoinHandle<Vec<Result<Bytes, std::io::Error>>> {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                tokio::time::sleep(every).await;
                match f.next().await {
                    Some(r) => got.push(r),
                    None => return got,
                }
            }
        })
    }

    // Time is paused in these tests: tokio's clock moves only when every task waits, so the
    // durations below are exact, not measured.
    #[tokio::test(start_paused = true)]
    async fn a_follower_that_takes_nothing_is_cut_once_the_slack_is_spent() {
        let (lead, mut f) = tee(source(10), 1, 20, None, None);
        let start = Instant::now();
        let a: Vec<_> = lead.collect().await;
        assert_eq!(a.len(), 10, "the leader goes on");
        // Held back until the hold reaches 1 s plus a quarter of the time so far: 4/3 s.
        let held = start.elapsed();
        let want = SLACK_MIN.div_f64(1.0 - SLACK_SHARE);
        assert!(
            held >= want && held <= want + Duration::from_millis(2),
            "{held:?}"
        );
        let b: Vec<_> = f.remove(0).collect().await;
        assert_eq!(
            b.len(),
            3,
            "two buffered chunks (cap 20 bytes), then the error"
        );
        let err = b[2].as_ref().expect_err("cut");
        assert!(err.get_ref().is_some_and(|e| e.is::<FellBehind>()), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_follower_a_little_slower_is_waited_for() {
        let (lead, mut f) = tee(source(50), 1, 20, None, None);
        let follow = paced(f.remove(0), Duration::from_millis(10));
        let a: Vec<_> = lead.collect().await;
        assert_eq!(a.len(), 50);
        let b = follow.await.expect("follower");
        assert_eq!(b.len(), 50, "every chunk, no error");
        assert!(b.iter().all(|r| r.is_ok()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_far_slower_follower_holds_the_body_back_a_bounded_time() {
        // The source gives a chunk every 10 ms, 1,000 in all (10 s); the follower takes one
        // every 100 ms. It is cut once it has held the body back for 1 s plus a quarter of
        // the time so far, and the leader goes on at the source's pace.
        let src: ByteStream = Box::pin(futures::stream::unfold(0u32, |i| async move {
            if i == 1000 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            Some((Ok(Bytes::from(vec![0u8; 10])), i + 1))
        }));
        let (lead, mut f) = tee(src, 1, 20, None, None);
        let follow = paced(f.remove(0), Duration::from_millis(100));
        let start = Instant::now();
        let a: Vec<_> = lead.collect().await;
        assert_eq!(a.len(), 1000);
        let took = start.elapsed();
        let b = follow.await.expect("follower");
        assert!(b.last().is_some_and(|r| r.is_err()), "cut");
        assert!(b.len() < 1000);
        // The leader alone would take 10 s; the follower may hold it back by at most the
        // slack it had when cut (cut before 10 s + its hold, so under 1 s + 25% of 13.4 s).
        let bound = SLACK_MIN
            + (Duration::from_secs(10) + SLACK_MIN).mul_f64(SLACK_SHARE / (1.0 - SLACK_SHARE));
        assert!(
            took > Duration::from_secs(10) + SLACK_MIN / 2,
            "held back: {took:?}"
        );
        assert!(
            took <= Duration::from_secs(10) + bound,
            "held back too long: {took:?}"
        );
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
