//! Bodies crossing the SDK boundary: uploads (hashed and verified while they stream, with
//! bounded memory) and downloads (the SDK stream as the trait's [`ByteStream`]).
//!
//! An upload body takes one of three shapes, chosen by [`prepare_upload`]:
//! - **small** (declared size up to [`MEMORY_LIMIT`]): read into memory, hashed and verified
//!   before the request is sent, sent with `Content-MD5` (or with a checksum instead when
//!   nobody needs the MD5; see [`super::put`]);
//! - **unknown size**: spooled to a temporary file while hashed, verified, then sent from the
//!   file with `Content-MD5` (the SDK needs a length up front);
//! - **large, declared size**: streamed through [`HashingBody`], which holds back the final
//!   chunk until the source has ended and the verifier has accepted the digests. A body that
//!   fails verification (or ends early, or runs long) therefore never reaches the backend
//!   whole, and the backend commits nothing.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncWriteExt;

use crate::store::digest::BodyHasher;
use crate::store::types::{ByteStream, ChecksumAlgorithm, Digests, SharedDigests, Verifier};
use crate::store::{Error, Result};

/// Bodies declared at most this long are buffered in memory.
pub(super) const MEMORY_LIMIT: u64 = 1 << 20;

/// An upload body ready for the SDK, and what to check once the backend has answered.
pub(super) struct Prepared {
    pub body: SdkByteStream,
    /// The whole body, when it was buffered (the same bytes as `body`).
    pub buffered: Option<Bytes>,
    /// The MD5 in the digests is the source's, not computed here: the backend's ETag must
    /// be compared with it.
    pub md5_from_source: bool,
    pub len: u64,
    pub pending: Pending,
}

/// The part of an upload that outlives the request: digests known up front, or the slot the
/// streaming body reports into; and the spool file, removed when this is dropped.
pub(super) struct Pending {
    known: Option<Digests>,
    outcome: Option<Arc<Mutex<Outcome>>>,
    _spool: Option<Spool>,
}

#[derive(Default)]
struct Outcome {
    digests: Option<Digests>,
    error: Option<Error>,
}

impl Pending {
    /// Digests computed (and verified) before the request was sent, if the body was buffered.
    pub fn known(&self) -> Option<&Digests> {
        self.known.as_ref()
    }

    /// Combines the SDK's answer with what happened to the body: a body error (read failure,
    /// wrong length, failed verification) wins over the SDK error it caused.
    pub fn settle<T, E>(
        self,
        store: &str,
        result: std::result::Result<T, SdkError<E>>,
        map: impl FnOnce(SdkError<E>) -> Error,
    ) -> Result<(T, Digests)>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (digests, body_error) = match &self.outcome {
            None => (self.known, None),
            Some(slot) => {
                let mut o = slot.lock().unwrap_or_else(PoisonError::into_inner);
                (o.digests.take(), o.error.take())
            }
        };
        if let Some(e) = body_error {
            return Err(e);
        }
        let out = result.map_err(map)?;
        let digests = digests.ok_or_else(|| Error::Unavailable {
            store: store.to_owned(),
            message: "the backend answered before the whole body was sent".to_owned(),
        })?;
        Ok((out, digests))
    }
}

/// Digests of a body known without hashing it here (see
/// [`PutOptions`](crate::store::types::PutOptions)).
#[derive(Default)]
pub(super) struct Known {
    /// The source's MD5: spares hashing a buffered body that needs no other checksum; the
    /// request carries it as `Content-MD5` for the backend to check, and
    /// [`Prepared::md5_from_source`] asks the caller to compare the returned ETag.
    pub source_md5: Option<[u8; 16]>,
    /// The producer's digests of the same bytes, set once the body has ended: a buffered
    /// body is not hashed again.
    pub shared: Option<SharedDigests>,
    /// Hash a body of declared size (buffered or streamed) for its size and checksum only,
    /// not its MD5: the request carries the checksum instead of `Content-MD5`, and no ETag is
    /// compared (the caller needs no MD5; see
    /// [`PutOptions::checksum_suffices`](crate::store::types::PutOptions::checksum_suffices)).
    pub checksum_only: bool,
}

/// Readies `body` for upload. `size_hint` is the declared length, enforced.
pub(super) async fn prepare_upload(
    mut body: ByteStream,
    size_hint: Option<u64>,
    algorithm: Option<ChecksumAlgorithm>,
    known: Known,
    verify: Option<Verifier>,
) -> Result<Prepared> {
    let mut hasher = BodyHasher::new(algorithm);
    // Only a body of declared size: one of unknown size is sent with its Content-MD5.
    if let Some(a) = algorithm.filter(|_| known.checksum_only && size_hint.is_some()) {
        hasher = BodyHasher::checksum_only(a);
    }
    match size_hint {
        Some(n) if n <= MEMORY_LIMIT => {
            let trusted = known.source_md5.filter(|_| algorithm.is_none());
            let shared = known.shared.filter(|_| trusted.is_none());
            let mut size = 0u64;
            // A body that arrives as one chunk (a small file, a small GET) is kept as it is.
            let mut single: Option<Bytes> = None;
            let mut buf = BytesMut::new();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(Error::Body)?;
                size += chunk.len() as u64;
                if size > n {
                    return Err(too_long(n));
                }
                if trusted.is_none() && shared.is_none() {
                    hasher.update(&chunk);
                }
                match single.take() {
                    None if buf.is_empty() => single = Some(chunk),
                    prev => {
                        buf.reserve(usize::try_from(n).unwrap_or(0));
                        if let Some(p) = prev {
                            buf.extend_from_slice(&p);
                        }
                        buf.extend_from_slice(&chunk);
                    }
                }
            }
            let digests = match (trusted, shared) {
                (None, None) => finish(hasher, n, verify)?,
                (None, Some(_)) | (Some(_), _) if size < n => {
                    return Err(Error::IncompleteBody {
                        received: size,
                        expected: n,
                    });
                }
                (None, Some(shared)) => {
                    let d = shared.get()?;
                    if let Some(verify) = verify {
                        verify(&d)?;
                    }
                    d
                }
                (Some(md5), _) => {
                    let d = Digests {
                        size,
                        md5,
                        checksum: None,
                    };
                    if let Some(verify) = verify {
                        verify(&d)?;
                    }
                    d
                }
            };
            let pending = Pending {
                known: Some(digests),
                outcome: None,
                _spool: None,
            };
            let bytes = single.unwrap_or_else(|| buf.freeze());
            Ok(Prepared {
                body: SdkByteStream::from(bytes.clone()),
                buffered: Some(bytes),
                md5_from_source: trusted.is_some(),
                len: n,
                pending,
            })
        }
        Some(n) => {
            let outcome = Arc::new(Mutex::new(Outcome::default()));
            let state = StreamState {
                inner: body,
                hasher: Some(hasher),
                verify,
                held: None,
                done: false,
                expected: n,
                outcome: Arc::clone(&outcome),
            };
            let body = HashingBody {
                state: Mutex::new(state),
                expected: n,
            };
            let pending = Pending {
                known: None,
                outcome: Some(outcome),
                _spool: None,
            };
            Ok(Prepared {
                body: SdkByteStream::from_body_1_x(body),
                buffered: None,
                md5_from_source: false,
                len: n,
                pending,
            })
        }
        None => {
            let spool = Spool::new();
            let mut file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&spool.path)
                .await
                .map_err(|e| Error::io(format!("creating {}", spool.path.display()), e))?;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(Error::Body)?;
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| Error::io(format!("writing {}", spool.path.display()), e))?;
            }
            file.flush()
                .await
                .map_err(|e| Error::io(format!("writing {}", spool.path.display()), e))?;
            drop(file);
            let len = hasher.size();
            let digests = finish(hasher, len, verify)?;
            let body = SdkByteStream::from_path(&spool.path).await.map_err(|e| {
                Error::io(
                    format!("reading {}", spool.path.display()),
                    io::Error::other(e),
                )
            })?;
            let pending = Pending {
                known: Some(digests),
                outcome: None,
                _spool: Some(spool),
            };
            Ok(Prepared {
                body,
                buffered: None,
                md5_from_source: false,
                len,
                pending,
            })
        }
    }
}

fn too_long(expected: u64) -> Error {
    Error::InvalidArgument(format!(
        "the body is longer than the declared {expected} bytes"
    ))
}

/// Checks the length, computes the digests and runs the verifier.
fn finish(hasher: BodyHasher, expected: u64, verify: Option<Verifier>) -> Result<Digests> {
    if hasher.size() < expected {
        return Err(Error::IncompleteBody {
            received: hasher.size(),
            expected,
        });
    }
    let digests = hasher.finalize();
    if let Some(verify) = verify {
        verify(&digests)?;
    }
    Ok(digests)
}

/// A temporary file in `std::env::temp_dir()`, removed on drop.
struct Spool {
    path: PathBuf,
}

impl Spool {
    fn new() -> Self {
        let name = format!("ferry-s3-{}.upload", uuid::Uuid::new_v4());
        Self {
            path: std::env::temp_dir().join(name),
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            let path = self.path.display();
            tracing::warn!(%path, error = %e, "could not remove an upload spool file");
        }
    }
}

/// A streaming upload body of a declared length that hashes what passes through and holds
/// back the last chunk until the source has ended and the verifier has passed.
///
/// The state sits in a `Mutex` only because the SDK wants a `Sync` body; it is reached through
/// `get_mut`, never locked.
struct HashingBody {
    state: Mutex<StreamState>,
    expected: u64,
}

struct StreamState {
    inner: ByteStream,
    hasher: Option<BodyHasher>,
    verify: Option<Verifier>,
    held: Option<Bytes>,
    done: bool,
    expected: u64,
    outcome: Arc<Mutex<Outcome>>,
}

type FramePoll = Poll<Option<std::result::Result<Frame<Bytes>, io::Error>>>;

impl StreamState {
    fn fail(&mut self, error: Error) -> FramePoll {
        self.done = true;
        self.held = None;
        let message = error.to_string();
        self.outcome
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .error = Some(error);
        Poll::Ready(Some(Err(io::Error::other(message))))
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> FramePoll {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            match self.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return self.fail(Error::Body(e)),
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    let Some(hasher) = self.hasher.as_mut() else {
                        return self.fail(too_long(self.expected));
                    };
                    let total = hasher.size() + chunk.len() as u64;
                    if total > self.expected {
                        return self.fail(too_long(self.expected));
                    }
                    hasher.update(&chunk);
                    if total < self.expected {
                        return Poll::Ready(Some(Ok(Frame::data(chunk))));
                    }
                    // The body is complete if the source agrees: keep this chunk back until
                    // the source has ended and the digests are verified.
                    self.held = Some(chunk);
                }
                Poll::Ready(None) => {
                    let Some(hasher) = self.hasher.take() else {
                        return self.fail(too_long(self.expected));
                    };
                    match finish(hasher, self.expected, self.verify.take()) {
                        Err(e) => return self.fail(e),
                        Ok(digests) => {
                            self.outcome
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .digests = Some(digests);
                        }
                    }
                    self.done = true;
                    return Poll::Ready(self.held.take().map(|c| Ok(Frame::data(c))));
                }
            }
        }
    }
}

impl Body for HashingBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> FramePoll {
        self.get_mut()
            .state
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .poll(cx)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.expected)
    }
}

/// The SDK's response body as the trait's [`ByteStream`], chunk by chunk.
pub(super) fn download_stream(body: SdkByteStream) -> ByteStream {
    Box::pin(futures::stream::unfold(Some(body), |state| async move {
        let mut body = state?;
        match body.next().await? {
            Ok(bytes) => Some((Ok(bytes), Some(body))),
            Err(e) => Some((Err(io::Error::other(e)), None)),
        }
    }))
}

#[cfg(test)]
mod tests;
