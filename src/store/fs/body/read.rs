//! Serving stored files: [`open`] reads a small file whole and keeps a large one open to
//! stream from in bounded chunks; a stream fails at its end when the file changed while it
//! was read ([`changed_while_read`]), so a GET never passes off a torn file as whole.

use bytes::Bytes;

use crate::store::digest::BodyHasher;
use crate::store::{ByteStream, Digests, Result};

const READ_CHUNK: usize = 256 * 1024;

/// Files up to this size are read whole when opened: one hop instead of several.
const SMALL_FILE: u64 = 256 * 1024;

/// What [`open`] learned about a file, to compare with the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub ino: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
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
        mtime_ns: crate::store::fs::nanos(m.mtime(), m.mtime_nsec()),
        ctime_ns: crate::store::fs::nanos(m.ctime(), m.ctime_nsec()),
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
    let now = facts_of(&file.metadata()?);
    if (now.ino, now.mtime_ns, now.size) != (at_open.ino, at_open.mtime_ns, at_open.size) {
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
    use std::io::Write;

    use futures::StreamExt;

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
