//! Bodies as files. Receiving (here): a body streams into a unique temp file while it is
//! hashed, then the file is fsynced. Serving ([`read`]): a stored file is opened once, read
//! whole when small, else streamed in bounded chunks, and checked unchanged at the end.

mod read;

pub use self::read::{Opened, changed_while_read, hash_file, open};

use std::path::Path;

use futures::StreamExt;
use std::io::Write;

use bytes::Bytes;

use crate::store::digest::BodyHasher;
use crate::store::{ByteStream, ChecksumAlgorithm, Digests, Error, Result, SharedDigests};

/// Chunks are handed to the writer thread in batches of about this many bytes.
const BATCH: usize = 1 << 20;

/// Bodies up to this size (declared) are gathered in memory, then written, hashed and synced
/// in one blocking call; larger ones stream through a writer thread.
pub(super) const SMALL_BODY: u64 = 256 * 1024;

/// Small bodies up to this size are written on the request's own thread (see
/// `receive_small`): a create, a write into the page cache and the MD5, at most ~150 µs.
const INLINE_BODY: u64 = 64 * 1024;

/// Work to run in the writer thread before the file is created (making room for the key's
/// path): it rides along with the write instead of costing a hop of its own.
pub type Prepare = Box<dyn FnOnce() -> Result<()> + Send>;

/// A received body: its digests and the facts of the file it was written to.
pub struct Received {
    pub digests: Digests,
    pub ino: i64,
    pub mtime_ns: i64,
    /// The file was fdatasynced. A small body written for the commit thread is not: the
    /// commit makes a whole batch durable with one `syncfs` (see [`super::commit`]).
    pub synced: bool,
}

/// Streams `body` into a new file at `path`, hashing it; fsyncs the file, except a small one
/// when `batch_sync` says the caller's commit will make it durable. On any error the file is
/// removed. `expected` is the length the client declared.
///
/// A small body is gathered here, then one blocking call runs `prepare`, writes and hashes
/// (on this thread for one of up to 64 KiB that the commit syncs with its batch). A
/// larger one runs stages in parallel: this task receives (and s3s verifies the payload
/// signature as the bytes pass), while blocking threads hash and write; the channels are
/// bounded, so memory stays at a few batches. With `shared` digests (the body's producer
/// hashes it for several stores), nothing is hashed here.
pub async fn receive(
    path: &Path,
    body: ByteStream,
    hash: Hash,
    expected: Option<u64>,
    prepare: Option<Prepare>,
    batch_sync: bool,
) -> Result<Received> {
    let result = match expected {
        Some(n) if n <= SMALL_BODY => {
            receive_small(path, body, hash, n, prepare, !batch_sync).await
        }
        _ => receive_streaming(path, Dest::New, body, hash, expected, prepare, None).await,
    };
    if result.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    result
}

/// Something the writing thread holds until it is done with the file.
pub type Keep = Box<dyn std::any::Any + Send + Sync>;

/// Receives a body of `expected` bytes into the file at `path` (created if missing) at
/// `offset`, synced like a large body; the writing thread holds `keep` until it is done
/// (also when this future is dropped half-way). On failure the bytes written stay (the
/// caller's region of the file is simply not recorded as holding anything).
pub async fn receive_at(
    path: &Path,
    offset: u64,
    body: ByteStream,
    hash: Hash,
    expected: u64,
    keep: Keep,
) -> Result<Received> {
    let dest = Dest::At(offset);
    receive_streaming(path, dest, body, hash, Some(expected), None, Some(keep)).await
}

/// How a received body gets its digests.
pub enum Hash {
    /// Hashed here: MD5 and, if the client asked for one, a checksum.
    Here(Box<BodyHasher>),
    /// Hashed by the body's producer, set by the time the body ends.
    Shared(SharedDigests),
}

impl Hash {
    pub fn new(algorithm: Option<ChecksumAlgorithm>, shared: Option<SharedDigests>) -> Self {
        match shared {
            Some(s) => Hash::Shared(s),
            None => Hash::Here(Box::new(BodyHasher::new(algorithm))),
        }
    }

    fn update(&mut self, data: &[u8]) {
        if let Hash::Here(h) = self {
            h.update(data);
        }
    }

    fn finish(self) -> Result<Digests> {
        match self {
            Hash::Here(h) => Ok(h.finalize()),
            Hash::Shared(s) => s.get(),
        }
    }
}

/// Once a synced body has this many bytes written, a helper thread starts flushing it behind
/// the writer, so the disk works while the body still arrives and the final fdatasync only
/// waits for the tail (else a 1 GiB body would first fill the page cache, then wait for all
/// of it to reach the disk).
const FLUSH_BEHIND: usize = 32 << 20;

/// What [`write_file`] leaves: the facts of the file it wrote.
struct Written {
    ino: i64,
    mtime_ns: i64,
}

/// Where [`write_file`] writes: a new file, or at an offset of a file that may exist (a
/// multipart upload's assembly file, see [`super::assembly`]).
#[derive(Debug, Clone, Copy)]
enum Dest {
    New,
    At(u64),
}

/// Creates the file (or opens it, for [`Dest::At`]), writes `batches` of chunks, fdatasyncs
/// it when `sync`. Blocking. The caller hashes.
///
/// Each batch goes to the kernel in one `writev` straight from the received buffers: no copy
/// through a userspace buffer (a `BufWriter` also cost a 1 MiB allocation per small PUT).
fn write_file(
    path: &Path,
    dest: Dest,
    batches: impl Iterator<Item = Vec<Bytes>>,
    sync: bool,
) -> std::io::Result<Written> {
    use std::io::Seek;
    use std::os::unix::fs::MetadataExt;
    let file = match dest {
        Dest::New => std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?,
        Dest::At(offset) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            f.seek(std::io::SeekFrom::Start(offset))?;
            f
        }
    };
    std::thread::scope(|scope| {
        let mut behind: Option<FlushBehind<'_>> = None;
        let mut unflushed = 0usize;
        for batch in batches {
            unflushed += write_batch(&file, &batch)?;
            if sync && unflushed >= FLUSH_BEHIND {
                unflushed = 0;
                if behind.is_none() {
                    behind = Some(FlushBehind::start(scope, &file)?);
                }
                if let Some(b) = &behind {
                    b.poke();
                }
            }
        }
        if let Some(b) = behind {
            b.finish()?;
        }
        Ok::<_, std::io::Error>(())
    })?;
    if sync {
        file.sync_data()?;
    }
    let m = file.metadata()?;
    Ok(Written {
        ino: m.ino() as i64,
        mtime_ns: crate::store::fs::nanos(m.mtime(), m.mtime_nsec()),
    })
}

/// Writes every chunk of `batch` with as few `writev` calls as the kernel allows; returns the
/// bytes written.
fn write_batch(mut file: &std::fs::File, batch: &[Bytes]) -> std::io::Result<usize> {
    use std::io::IoSlice;
    let total = batch.iter().map(Bytes::len).sum();
    // Empty chunks (an empty object's only one) would make `writev` write nothing and look
    // like a full disk.
    let mut slices: Vec<IoSlice<'_>> = batch
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| IoSlice::new(c))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// A thread that fdatasyncs a file being written whenever poked; pokes made while a flush
/// runs collapse into one more flush.
struct FlushBehind<'scope> {
    poke: std::sync::mpsc::SyncSender<()>,
    thread: std::thread::ScopedJoinHandle<'scope, std::io::Result<()>>,
}

impl<'scope> FlushBehind<'scope> {
    fn start<'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        file: &std::fs::File,
    ) -> std::io::Result<Self> {
        let file = file.try_clone()?;
        let (poke, pokes) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("ferry-flush-behind".into())
            .spawn_scoped(scope, move || {
                while pokes.recv().is_ok() {
                    file.sync_data()?;
                }
                Ok(())
            })?;
        Ok(Self { poke, thread })
    }

    fn poke(&self) {
        // Full means a flush is already queued; it will cover these bytes too.
        let _ = self.poke.try_send(());
    }

    /// Stops the thread and reports a flush that failed.
    fn finish(self) -> std::io::Result<()> {
        drop(self.poke);
        self.thread
            .join()
            .map_err(|_| std::io::Error::other("the flush-behind thread panicked"))?
    }
}

fn too_long(n: u64) -> Error {
    Error::InvalidArgument(format!("the body is longer than the declared {n} bytes"))
}

async fn receive_small(
    path: &Path,
    mut body: ByteStream,
    hash: Hash,
    expected: u64,
    prepare: Option<Prepare>,
    sync: bool,
) -> Result<Received> {
    let mut chunks = Vec::new();
    let mut total = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(Error::Body)?;
        total += chunk.len() as u64;
        if total > expected {
            return Err(too_long(expected));
        }
        chunks.push(chunk);
    }
    if total < expected {
        return Err(Error::IncompleteBody {
            received: total,
            expected,
        });
    }
    let target = path.to_path_buf();
    let work = move || {
        if let Some(p) = prepare {
            p()?;
        }
        let mut hash = hash;
        chunks.iter().for_each(|c| hash.update(c));
        let w = write_file(&target, Dest::New, std::iter::once(chunks), sync)
            .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
        Ok(Received {
            digests: hash.finish()?,
            ino: w.ino,
            mtime_ns: w.mtime_ns,
            synced: sync,
        })
    };
    // A body the commit thread will sync with its batch, and small: written on this thread.
    // Handing it to a blocking thread and back costs two thread wake-ups, more than the
    // write itself (page cache, no flush); measured with `bench/ab`: +9% 4 KiB PUTs/s, +5-8%
    // 64 KiB PUTs/s, and lower p99 for both.
    if !sync && expected <= INLINE_BODY {
        return work();
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Index(format!("file task failed: {e}")))?
}

/// Batches queued for each of the hashing and the writing thread: bounds memory per upload at
/// about `2 * QUEUE * BATCH` while letting either stage run ahead of the other.
const QUEUE: usize = 8;

/// Receives a large body. This task fans each batch out to two blocking threads, one that
/// hashes and one that writes, so MD5 (which cannot be split, and bounds a single upload)
/// never waits for the write or the disk, and the write never waits for MD5.
async fn receive_streaming(
    path: &Path,
    dest: Dest,
    mut body: ByteStream,
    hash: Hash,
    expected: Option<u64>,
    prepare: Option<Prepare>,
    keep: Option<Keep>,
) -> Result<Received> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(QUEUE);
    let (htx, mut hrx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(QUEUE);
    let target = path.to_path_buf();
    let sink = tokio::task::spawn_blocking(move || -> Result<Written> {
        if let Some(p) = prepare {
            p()?;
        }
        let batches = std::iter::from_fn(|| rx.blocking_recv());
        let written = write_file(&target, dest, batches, true)
            .map_err(|e| Error::io(format!("writing {}", target.display()), e));
        drop(keep);
        written
    });
    let hashing = tokio::task::spawn_blocking(move || {
        let mut hash = hash;
        while let Some(batch) = hrx.blocking_recv() {
            batch.iter().for_each(|c| hash.update(c));
        }
        hash
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
                return Err(too_long(n));
            }
            batch_len += chunk.len();
            batch.push(chunk);
            if batch_len >= BATCH {
                batch_len = 0;
                let full = std::mem::take(&mut batch);
                if htx.send(full.clone()).await.is_err() || tx.send(full).await.is_err() {
                    return Ok(()); // a stage failed; its error is reported below
                }
            }
        }
        if !batch.is_empty() {
            let _ = htx.send(batch.clone()).await;
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
    drop((tx, htx));
    let failed = |e| Error::Index(format!("file task failed: {e}"));
    let written = sink.await.map_err(failed)?;
    let hash = hashing.await.map_err(failed)?;
    let w = received.and(written)?;
    let digests = hash.finish()?;
    Ok(Received {
        digests,
        ino: w.ino,
        mtime_ns: w.mtime_ns,
        synced: true,
    })
}
