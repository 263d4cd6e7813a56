//! Receiving and serving bodies as files: a body streams into a unique temp file while it is
//! hashed, then the file is fsynced; a stored file streams out in bounded chunks.

use std::path::Path;

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::store::digest::BodyHasher;
use crate::store::{ByteStream, ChecksumAlgorithm, Digests, Error, Result};

const WRITE_BUF: usize = 1 << 20;
const READ_CHUNK: usize = 256 * 1024;

/// Streams `body` into a new file at `path`, hashing it; fsyncs the file. On any error the
/// file is removed. `expected` is the length the client declared.
pub async fn receive(
    path: &Path,
    mut body: ByteStream,
    algorithm: Option<ChecksumAlgorithm>,
    expected: Option<u64>,
) -> Result<Digests> {
    let result = async {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let mut w = tokio::io::BufWriter::with_capacity(WRITE_BUF, file);
        let mut hasher = BodyHasher::new(algorithm);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(Error::Body)?;
            hasher.update(&chunk);
            if let Some(n) = expected
                && hasher.size() > n
            {
                return Err(Error::InvalidArgument(format!(
                    "the body is longer than the declared {n} bytes"
                )));
            }
            w.write_all(&chunk)
                .await
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        if let Some(n) = expected
            && hasher.size() < n
        {
            return Err(Error::IncompleteBody {
                received: hasher.size(),
                expected: n,
            });
        }
        w.flush()
            .await
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        let file = w.into_inner();
        file.sync_data()
            .await
            .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
        Ok(hasher.finalize())
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    result
}

/// Streams `len` bytes of an open file from `offset`.
pub async fn serve(mut file: tokio::fs::File, offset: u64, len: u64) -> Result<ByteStream> {
    if offset > 0 {
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::io("seeking", e))?;
    }
    let reader = file.take(len);
    let stream = tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK);
    Ok(Box::pin(stream))
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
