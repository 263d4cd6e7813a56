//! Receiving and serving bodies as files: a body streams into a unique temp file while it is
//! hashed, then the file is fsynced; a stored file streams out in bounded chunks.

use std::path::Path;

use futures::StreamExt;
use std::io::Write;

use bytes::Bytes;

use crate::store::digest::BodyHasher;
use crate::store::{ByteStream, ChecksumAlgorithm, Digests, Error, Result, SharedDigests};

const READ_CHUNK: usize = 256 * 1024;

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
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
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

/// Files up to this size are read whole when opened: one hop instead of several.
const SMALL_FILE: u64 = 256 * 1024;

/// What [`open`] learned about a file, to compare with the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub ino: i64,
    pub mtime_ns: i64,
    pub size: i64,
}

/// An opened object body: read whole when small, else an open file to stream from.
pub enum Opened {
    Small(Bytes),
    /// The file and what it was when opened: a stream from it fails at its end if the file
    /// moved meanwhile (see [`unchanged_since`]).
    File(std::fs::File, Facts),
}

/// Ranges up to this long are read in one blocking call into one buffer of their exact size
/// when the stream is first polled, so nothing is held until the consumer is ready and a
/// consumer that gathers the body (a 1 MiB copy does) gets it as one chunk: no chunks to
/// join, and none of the 256 KiB read buffers that made a 64-worker migration of 1 MiB
/// files peak ~20 MiB higher (bench/migrate).
const WHOLE_READ: u64 = 1 << 20;

/// Stats an opened file and reads it whole when it is small. Blocking.
pub fn open(mut f: std::fs::File) -> std::io::Result<(Opened, Facts)> {
    use std::io::Read;
    let m = f.metadata()?;
    let facts = facts_of(&m);
    if m.len() <= SMALL_FILE {
        let mut buf = Vec::with_capacity(m.len() as usize);
        f.read_to_end(&mut buf)?;
        unchanged_since(&f, &facts)?;
        Ok((Opened::Small(Bytes::from(buf)), facts))
    } else {
        Ok((Opened::File(f, facts), facts))
    }
}

fn facts_of(m: &std::fs::Metadata) -> Facts {
    use std::os::unix::fs::MetadataExt;
    Facts {
        ino: m.ino() as i64,
        mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        size: m.len() as i64,
    }
}

/// Fails if the open file's size or modification time moved since `at_open`: it was written
/// to in place, what was read may mix two versions of it, and must not be served or copied
/// as one. Not the change time: Ferry's own overwrites and version moves rename or unlink
/// the file a reader has open, which moves its ctime but not its bytes, and that reader must
/// finish. (A writer that keeps size and mtime, within the filesystem's timestamp
/// granularity, goes unseen, as it does for rsync and rclone.) Blocking.
fn unchanged_since(file: &std::fs::File, at_open: &Facts) -> std::io::Result<()> {
    if facts_of(&file.metadata()?) != *at_open {
        return Err(std::io::Error::other(ChangedWhileRead));
    }
    Ok(())
}

/// The error [`unchanged_since`] reports: a reader may simply try again.
#[derive(Debug)]
pub struct ChangedWhileRead;

impl std::fmt::Display for ChangedWhileRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the file changed while it was being read")
    }
}

impl std::error::Error for ChangedWhileRead {}

/// Whether `e` is a [`ChangedWhileRead`].
pub fn changed_while_read(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<ChangedWhileRead>())
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
            Opened::File(file, facts) if len <= WHOLE_READ => {
                Ok(Box::pin(futures::stream::once(async move {
                    tokio::task::spawn_blocking(move || {
                        let b = read_range(&file, offset, len)?;
                        unchanged_since(&file, &facts)?;
                        Ok(b)
                    })
                    .await
                    .map_err(std::io::Error::other)?
                })))
            }
            Opened::File(file, facts) => {
                // Chunks of up to 1 MiB, each one `pread` into a fresh buffer on a blocking
                // thread (through `tokio::fs` every 256 KiB was read into its buffer, then
                // copied into the stream's). The file is checked after the last chunk.
                let file = std::sync::Arc::new(file);
                let end = offset + len;
                Ok(Box::pin(futures::stream::try_unfold(offset, move |at| {
                    let file = std::sync::Arc::clone(&file);
                    async move {
                        if at >= end {
                            return Ok(None);
                        }
                        let n = (end - at).min(WHOLE_READ);
                        let chunk = tokio::task::spawn_blocking(move || {
                            let b = read_range(&file, at, n)?;
                            if at + n >= end || (b.len() as u64) < n {
                                unchanged_since(&file, &facts)?;
                            }
                            Ok::<_, std::io::Error>(b)
                        })
                        .await
                        .map_err(std::io::Error::other)??;
                        if chunk.is_empty() {
                            return Ok(None);
                        }
                        let next = at + chunk.len() as u64;
                        Ok(Some((chunk, next)))
                    }
                })))
            }
        }
    }
}

/// Reads `len` bytes at `offset` into one buffer of that size; fewer if the file ends first
/// (the consumer checks the length it was promised). The buffer is read into uninitialised
/// (no zeroing a megabyte only to overwrite it). Blocking.
fn read_range(file: &std::fs::File, offset: u64, len: u64) -> std::io::Result<Bytes> {
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    if len == 0 {
        return Ok(Bytes::new());
    }
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let at = offset + buf.len() as u64;
        match rustix::io::pread(file, rustix::buffer::spare_capacity(&mut buf), at) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(len);
    Ok(Bytes::from(buf))
}

impl Opened {
    /// Hashes the whole of what was opened, then checks the file did not change meanwhile
    /// (used when a file changed behind the store's back: what is hashed is what is then
    /// served, from the same open file). Blocking.
    pub fn digests(&self) -> std::io::Result<Digests> {
        match self {
            Opened::Small(b) => {
                let mut h = BodyHasher::new(None);
                h.update(b);
                Ok(h.finalize())
            }
            Opened::File(f, facts) => {
                let d = hash_file(f)?;
                unchanged_since(f, facts)?;
                Ok(d)
            }
        }
    }
}

/// Hashes a whole open file from its start. Blocking.
pub fn hash_file(f: &std::fs::File) -> std::io::Result<Digests> {
    use std::io::{Read, Seek};
    let mut f = f;
    f.seek(std::io::SeekFrom::Start(0))?;
    let mut h = BodyHasher::new(None);
    // Sized to the file (plus one byte to see its end in one read), not a whole chunk: a
    // rescan hashes many small files, and zeroing 256 KiB for each of them showed up.
    let len = f.metadata()?.len();
    let mut buf = vec![
        0u8;
        usize::try_from(len.saturating_add(1))
            .unwrap_or(READ_CHUNK)
            .min(READ_CHUNK)
    ];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn drain(mut s: ByteStream) -> std::io::Result<usize> {
        let mut n = 0;
        while let Some(chunk) = s.next().await {
            n += chunk?.len();
        }
        Ok(n)
    }

    #[tokio::test]
    async fn a_file_renamed_or_unlinked_while_it_is_read_still_reads_whole() {
        // What an overwrite or a version move does to the file a GET has open.
        for len in [100 * 1024, 512 * 1024, 3 << 20] {
            let dir = tempfile::tempdir().expect("tmp");
            let path = dir.path().join("f");
            std::fs::write(&path, vec![7u8; len]).expect("write");
            let (opened, _) = open(std::fs::File::open(&path).expect("open")).expect("open");
            let s = opened.into_stream(0, len as u64).await.expect("stream");
            // Past the filesystem's timestamp granularity, so a moved ctime would show.
            std::thread::sleep(std::time::Duration::from_millis(20));
            let moved = dir.path().join("g");
            std::fs::rename(&path, &moved).expect("rename");
            std::fs::remove_file(&moved).expect("unlink");
            assert_eq!(drain(s).await.expect("renamed, unlinked file"), len);
        }
    }

    #[tokio::test]
    async fn a_file_that_changes_while_it_is_read_fails_the_stream() {
        // Below and above WHOLE_READ: one read into one buffer, and the chunked stream.
        for len in [512 * 1024, 3 << 20] {
            let dir = tempfile::tempdir().expect("tmp");
            let path = dir.path().join("f");
            std::fs::write(&path, vec![7u8; len]).expect("write");
            let (opened, _) = open(std::fs::File::open(&path).expect("open")).expect("open");
            let s = opened.into_stream(0, len as u64).await.expect("stream");
            assert_eq!(drain(s).await.expect("unchanged file"), len);

            let (opened, _) = open(std::fs::File::open(&path).expect("open")).expect("open");
            let s = opened.into_stream(0, len as u64).await.expect("stream");
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("reopen");
            f.write_all(b"more").expect("append");
            let e = drain(s)
                .await
                .expect_err("a file that grew must not read as whole");
            assert!(changed_while_read(&e), "{e}");
        }
    }
}
