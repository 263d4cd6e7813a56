//! Receiving and serving bodies as files: a body streams into a unique temp file while it is
//! hashed, then the file is fsynced; a stored file streams out in bounded chunks.

use std::path::Path;

use futures::StreamExt;
use std::io::Write;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::store::digest::BodyHasher;
use crate::store::{ByteStream, ChecksumAlgorithm, Digests, Error, Result};

const WRITE_BUF: usize = 1 << 20;
const READ_CHUNK: usize = 256 * 1024;

/// Chunks are handed to the writer thread in batches of about this many bytes.
const BATCH: usize = 1 << 20;

/// Streams `body` into a new file at `path`, hashing it; fsyncs the file. On any error the
/// file is removed. `expected` is the length the client declared.
///
/// Two stages run in parallel: this task receives (and s3s verifies the payload signature as
/// the bytes pass), while one blocking thread hashes and writes. A small body costs one hop
/// to the blocking pool. The channel is bounded, so memory stays at a few batches.
pub async fn receive(
    path: &Path,
    mut body: ByteStream,
    algorithm: Option<ChecksumAlgorithm>,
    expected: Option<u64>,
) -> Result<Digests> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(4);
    let target = path.to_path_buf();
    let sink = tokio::task::spawn_blocking(move || -> std::io::Result<Digests> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)?;
        let mut w = std::io::BufWriter::with_capacity(WRITE_BUF, file);
        let mut hasher = BodyHasher::new(algorithm);
        while let Some(batch) = rx.blocking_recv() {
            for chunk in &batch {
                hasher.update(chunk);
                w.write_all(chunk)?;
            }
        }
        let file = w
            .into_inner()
            .map_err(std::io::IntoInnerError::into_error)?;
        file.sync_data()?;
        Ok(hasher.finalize())
    });
    let received = async {
        let mut total = 0u64;
        let mut batch = Vec::new();
        let mut batch_len = 0usize;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(Error::Body)?;
            total += chunk.len() as u64;
            if let Some(n) = expected
                && total > n
            {
                return Err(Error::InvalidArgument(format!(
                    "the body is longer than the declared {n} bytes"
                )));
            }
            batch_len += chunk.len();
            batch.push(chunk);
            if batch_len >= BATCH {
                batch_len = 0;
                if tx.send(std::mem::take(&mut batch)).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        match expected {
            Some(n) if total < n => Err(Error::IncompleteBody {
                received: total,
                expected: n,
            }),
            _ => Ok(()),
        }
    }
    .await;
    drop(tx);
    let written = sink
        .await
        .map_err(|e| Error::Index(format!("file task failed: {e}")))?
        .map_err(|e| Error::io(format!("writing {}", path.display()), e));
    let result = match (received, written) {
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(d)) => Ok(d),
    };
    if result.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    result
}

/// Files up to this size are read whole when opened: one hop instead of several.
const SMALL_FILE: u64 = 256 * 1024;

/// What [`open`] learned about a file, to compare with the index.
pub struct Facts {
    pub ino: i64,
    pub mtime_ns: i64,
    pub size: i64,
}

/// An opened object body: read whole when small, else an open file to stream from.
pub enum Opened {
    Small(Bytes),
    File(tokio::fs::File),
}

/// Opens a file, stats it, and reads it whole when it is small. Blocking.
pub fn open(path: &Path) -> std::io::Result<(Opened, Facts)> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut f = std::fs::File::open(path)?;
    let m = f.metadata()?;
    let facts = Facts {
        ino: m.ino() as i64,
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        size: m.len() as i64,
    };
    if m.len() <= SMALL_FILE {
        let mut buf = Vec::with_capacity(m.len() as usize);
        f.read_to_end(&mut buf)?;
        Ok((Opened::Small(Bytes::from(buf)), facts))
    } else {
        Ok((Opened::File(tokio::fs::File::from_std(f)), facts))
    }
}

impl Opened {
    /// Streams `len` bytes from `offset`.
    pub async fn into_stream(self, offset: u64, len: u64) -> Result<ByteStream> {
        match self {
            Opened::Small(b) => {
                let start = (offset as usize).min(b.len());
                let end = (start + len as usize).min(b.len());
                let chunk = b.slice(start..end);
                Ok(Box::pin(futures::stream::once(async move { Ok(chunk) })))
            }
            Opened::File(mut file) => {
                if offset > 0 {
                    file.seek(std::io::SeekFrom::Start(offset))
                        .await
                        .map_err(|e| Error::io("seeking", e))?;
                }
                let reader = file.take(len);
                Ok(Box::pin(tokio_util::io::ReaderStream::with_capacity(
                    reader, READ_CHUNK,
                )))
            }
        }
    }
}

/// Hashes a whole file (used when a file changed behind the store's back).
pub fn hash_file(path: &Path) -> std::io::Result<Digests> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = BodyHasher::new(None);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize())
}
