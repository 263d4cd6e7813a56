//! The source's readers: each file is opened, stat'ed, read and stat'ed again; a file whose
//! size, mtime or ctime moved while it was read is read again (up to three times) and, if it
//! never holds still, sent as last read with the iteration marked inconsistent. Small files go
//! whole; large ones through FastCDC, as ranges of the base version plus new chunks.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::index::{CHUNK_AVG, CHUNK_MAX, CHUNK_MIN, Chunk, Content, Hash, Record, chunks_hash};
use super::plan::Job;
use super::tree::{Meta, XattrPolicy, join, read_xattrs, shown};
use super::wire::{Msg, Squeeze};

const ATTEMPTS: usize = 3;

/// Where frames go (the connection's writer); false when the connection is gone.
pub trait Sink {
    fn send(&mut self, msg: &Msg) -> bool;
}

/// What reading one file produced.
pub enum Read1 {
    /// Sent (or verified unchanged); the record for the new manifest.
    Done {
        rec: Record,
        sent: u64,
        reused: u64,
        stable: bool,
    },
    /// The file is gone; a deletion was sent.
    Vanished,
    /// The connection is gone.
    Closed,
}

struct Stat {
    size: u64,
    mtime: (i64, u32),
    ctime: (i64, u32),
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    regular: bool,
}

fn stat_of(md: &std::fs::Metadata) -> Stat {
    Stat {
        size: md.size(),
        mtime: (md.mtime(), md.mtime_nsec() as u32),
        ctime: (md.ctime(), md.ctime_nsec() as u32),
        ino: md.ino(),
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        regular: md.file_type().is_file(),
    }
}

/// The content read is one instant of the file: a clone never changes; a live file must not
/// have moved while it was read.
fn held(job: &Job, a: &Stat, b: &Stat) -> bool {
    job.image.is_some() || same(a, b)
}

fn same(a: &Stat, b: &Stat) -> bool {
    a.size == b.size && a.mtime == b.mtime && a.ctime == b.ctime && a.ino == b.ino
}

fn open_only(root: &Path, path: &[u8]) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(join(root, path))
}

fn open(root: &Path, path: &[u8]) -> std::io::Result<(File, Stat)> {
    let f = open_only(root, path)?;
    let st = stat_of(&f.metadata()?);
    Ok((f, st))
}

/// The walk's stat of a file, standing in for a first fstat: if the file changed since, the
/// stat after reading differs and the file is read again.
fn walked(job: &Job) -> Stat {
    let f = &job.found;
    Stat {
        size: f.size,
        mtime: (f.meta.mtime, f.meta.mtime_ns),
        ctime: f.ctime,
        ino: f.ino,
        mode: f.meta.mode,
        uid: f.meta.uid,
        gid: f.meta.gid,
        regular: true,
    }
}

fn meta_of(root: &Path, job: &Job, st: &Stat, policy: XattrPolicy) -> std::io::Result<Meta> {
    let xattrs = if st.ctime == job.found.ctime {
        job.found.meta.xattrs.clone()
    } else {
        read_xattrs(&join(root, &job.path), policy)?
    };
    Ok(Meta {
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        mtime: st.mtime.0,
        mtime_ns: st.mtime.1,
        xattrs,
    })
}

/// Opens a job's file with its stat before reading (the walk's on a first attempt); `None`
/// when it is gone or no longer a regular file.
fn open_job(root: &Path, job: &Job, first: bool) -> std::io::Result<Option<(File, Stat)>> {
    if let Some(clone) = &job.image {
        return Ok(Some((File::open(clone)?, walked(job))));
    }
    let opened = if first {
        open_only(root, &job.path).map(|f| (f, walked(job)))
    } else {
        open(root, &job.path)
    };
    match opened {
        Ok((_, a)) if !a.regular => Ok(None),
        Ok(x) => Ok(Some(x)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn vanished(sink: &mut dyn Sink, path: &[u8]) -> std::io::Result<Read1> {
    Ok(
        if sink.send(&Msg::Delete {
            path: path.to_vec(),
        }) {
            Read1::Vanished
        } else {
            Read1::Closed
        },
    )
}

/// A verified file holds what the destination's base record says: a rename candidate is
/// cloned from where it was, anything else gets its metadata if `meta_moved`. False when
/// the connection is gone.
fn same_content(job: &Job, meta_moved: bool, meta: Meta, sink: &mut dyn Sink) -> bool {
    match &job.renamed_from {
        Some(from) => sink.send(&Msg::Clone {
            path: job.path.clone(),
            from: from.clone(),
            meta,
        }),
        None if meta_moved => sink.send(&Msg::Meta {
            path: job.path.clone(),
            meta,
        }),
        None => true,
    }
}

/// Reads and sends one file smaller than [`super::index::CHUNKED_FROM`].
pub fn small(
    root: &Path,
    job: &Job,
    policy: XattrPolicy,
    squeeze: &mut Squeeze,
    sink: &mut dyn Sink,
) -> std::io::Result<Read1> {
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        let Some((mut f, a)) = open_job(root, job, attempt == 0)? else {
            return vanished(sink, &job.path);
        };
        let mut data = Vec::with_capacity(a.size as usize + 1);
        (&mut f)
            .take(super::index::CHUNKED_FROM)
            .read_to_end(&mut data)?;
        let b = stat_of(&f.metadata()?);
        if !b.regular {
            return vanished(sink, &job.path);
        }
        // Grown past the small-file size since the walk (or since the image's clone was
        // listed): what was read is only its start, never a consistent copy, even from an
        // image. (It cannot go as a large file from here: large files stream one at a time,
        // from one thread.) The next iteration sends it whole.
        let cut = data.len() as u64 >= super::index::CHUNKED_FROM;
        let stable = !cut && (job.image.is_some() || (same(&a, &b) && data.len() as u64 == a.size));
        let meta = meta_of(root, job, &a, policy)?;
        last = Some((data, meta, a, stable));
        if stable {
            break;
        }
    }
    let Some((data, meta, a, stable)) = last else {
        unreachable!("at least one attempt")
    };
    let hash = *blake3::hash(&data).as_bytes();
    let size = data.len() as u64;
    let rec = Record {
        content: Content::File {
            size,
            hash,
            chunks: Vec::new(),
        },
        meta: meta.clone(),
        ino: a.ino,
        ctime: a.ctime,
    };
    if job.verify
        && let Some(Record {
            content: Content::File { hash: h, .. },
            meta: m,
            ..
        }) = job.compared()
        && *h == hash
    {
        if !same_content(job, *m != meta, meta, sink) {
            return Ok(Read1::Closed);
        }
        return Ok(Read1::Done {
            rec,
            sent: 0,
            reused: size,
            stable,
        });
    }
    let msg = Msg::Small {
        path: job.path.clone(),
        meta,
        data: squeeze.pack(data),
        hash,
    };
    if !sink.send(&msg) {
        return Ok(Read1::Closed);
    }
    Ok(Read1::Done {
        rec,
        sent: size,
        reused: 0,
        stable,
    })
}

/// Reads a file from offset 0 with `pread`, whatever the descriptor's own offset: the
/// verify pass and the send pass each read the whole file through the same descriptor.
struct FromStart<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for FromStart<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn chunker(f: &File) -> fastcdc::v2020::StreamCDC<std::io::BufReader<FromStart<'_>>> {
    fastcdc::v2020::StreamCDC::new(
        std::io::BufReader::with_capacity(1 << 20, FromStart { file: f, pos: 0 }),
        CHUNK_MIN as usize,
        CHUNK_AVG as usize,
        CHUNK_MAX as usize,
    )
}

fn chunk_list(f: &File) -> std::io::Result<Vec<Chunk>> {
    let mut out = Vec::new();
    for c in chunker(f) {
        let c = c.map_err(std::io::Error::other)?;
        out.push(Chunk {
            len: c.length as u32,
            hash: *blake3::hash(&c.data).as_bytes(),
        });
    }
    Ok(out)
}

/// Gives up on a chunked file already begun: the destination drops what it got of it (and
/// keeps the last snapshot's version), and the error is the file's problem.
fn aborted(sink: &mut dyn Sink, e: std::io::Error) -> std::io::Result<Read1> {
    if !sink.send(&Msg::Abort) {
        return Ok(Read1::Closed);
    }
    Err(e)
}

/// Reads and sends one large file as chunks, reusing ranges of the base version.
pub fn large(
    root: &Path,
    job: &Job,
    policy: XattrPolicy,
    squeeze: &mut Squeeze,
    sink: &mut dyn Sink,
) -> std::io::Result<Read1> {
    let base_chunks: &[Chunk] = match &job.base {
        Some(Record {
            content: Content::File { chunks, .. },
            ..
        }) => chunks,
        _ => &[],
    };
    // A rename candidate's base lives at another path: ranges of it cannot be copied.
    let copyable = if job.renamed_from.is_some() {
        &[]
    } else {
        base_chunks
    };
    // Where each chunk the destination already has can be copied from: what an interrupted
    // iteration delivered of this file first, then the last snapshot's version.
    let mut at: HashMap<Hash, (u64, bool)> = HashMap::with_capacity(base_chunks.len());
    for (chunks, partial) in [
        (job.partial.as_deref().unwrap_or(&[]), true),
        (copyable, false),
    ] {
        let mut off = 0u64;
        for c in chunks {
            at.entry(c.hash).or_insert((off, partial));
            off += c.len as u64;
        }
    }
    let mut stable = false;
    for attempt in 0..ATTEMPTS {
        let Some((f, a)) = open_job(root, job, false)? else {
            return vanished(sink, &job.path);
        };
        let meta = meta_of(root, job, &a, policy)?;
        let compared: &[Chunk] = match job.compared() {
            Some(Record {
                content: Content::File { chunks, .. },
                ..
            }) => chunks,
            _ => &[],
        };
        if job.verify && !compared.is_empty() {
            let chunks = chunk_list(&f)?;
            let b = stat_of(&f.metadata()?);
            if held(job, &a, &b) && chunks == compared {
                let size = a.size;
                let moved = job.compared().is_some_and(|r| r.meta != meta);
                if !same_content(job, moved, meta.clone(), sink) {
                    return Ok(Read1::Closed);
                }
                return Ok(Read1::Done {
                    rec: Record {
                        content: Content::File {
                            size,
                            hash: chunks_hash(&chunks),
                            chunks,
                        },
                        meta,
                        ino: a.ino,
                        ctime: a.ctime,
                    },
                    sent: 0,
                    reused: size,
                    stable: true,
                });
            }
        }
        if !sink.send(&Msg::Begin {
            path: job.path.clone(),
            meta: meta.clone(),
        }) {
            return Ok(Read1::Closed);
        }
        let mut chunks = Vec::new();
        let (mut sent, mut reused, mut size) = (0u64, 0u64, 0u64);
        let mut pending: Option<(u64, u64, bool)> = None;
        let flush = |pending: &mut Option<(u64, u64, bool)>, sink: &mut dyn Sink| -> bool {
            match pending.take() {
                Some((offset, len, partial)) => sink.send(&Msg::Copy {
                    offset,
                    len,
                    partial,
                }),
                None => true,
            }
        };
        for c in chunker(&f) {
            let c = match c {
                Ok(c) => c,
                Err(e) => return aborted(sink, std::io::Error::other(e)),
            };
            let len = c.length as u64;
            let hash = *blake3::hash(&c.data).as_bytes();
            chunks.push(Chunk {
                len: c.length as u32,
                hash,
            });
            size += len;
            // A run of zeros (a hole) is neither sent nor reused: it is said in a few bytes.
            let ok = if c.data.iter().all(|b| *b == 0) {
                flush(&mut pending, sink)
                    && sink.send(&Msg::Zero {
                        len: c.length as u32,
                    })
            } else if let Some(&(offset, partial)) = at.get(&hash) {
                reused += len;
                match &mut pending {
                    Some((o, l, p)) if *p == partial && *o + *l == offset => {
                        *l += len;
                        true
                    }
                    _ => {
                        let ok = flush(&mut pending, sink);
                        pending = Some((offset, len, partial));
                        ok
                    }
                }
            } else {
                sent += len;
                flush(&mut pending, sink)
                    && sink.send(&Msg::Data {
                        data: squeeze.pack(c.data),
                        hash,
                    })
            };
            if !ok {
                return Ok(Read1::Closed);
            }
        }
        if !flush(&mut pending, sink) {
            return Ok(Read1::Closed);
        }
        let b = stat_of(&f.metadata()?);
        if job.image.is_none() && same(&a, &b) && size != a.size {
            // The file held still, yet reading it gave another length: a reader bug or a
            // failing disk, never a reason to publish a short (or empty) file.
            return aborted(
                sink,
                std::io::Error::other(format!(
                    "read {size} bytes of {}, which holds {} and did not change",
                    shown(&job.path),
                    a.size
                )),
            );
        }
        stable = job.image.is_some() || (same(&a, &b) && size == a.size);
        if !stable && attempt + 1 < ATTEMPTS {
            if !sink.send(&Msg::Abort) {
                return Ok(Read1::Closed);
            }
            continue;
        }
        let hash = chunks_hash(&chunks);
        if !sink.send(&Msg::End { size, hash }) {
            return Ok(Read1::Closed);
        }
        return Ok(Read1::Done {
            rec: Record {
                content: Content::File { size, hash, chunks },
                meta,
                ino: a.ino,
                ctime: a.ctime,
            },
            sent,
            reused,
            stable,
        });
    }
    Err(std::io::Error::other(format!(
        "{} kept changing while it was read (stable: {stable})",
        shown(&job.path)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::tree::{Found, FoundKind, Meta};

    struct Kept(Vec<Msg>);

    impl Sink for Kept {
        fn send(&mut self, msg: &Msg) -> bool {
            self.0.push(msg.clone());
            true
        }
    }

    /// A file the walk saw small that has grown past the small-file size by the time it is
    /// read (probes 06 and 19): from an image it was sent cut to that size and marked
    /// consistent. It must never count as a consistent copy.
    #[test]
    fn a_small_file_grown_large_before_its_read_is_not_consistent() {
        let dir = tempfile::tempdir().expect("tmp");
        let size = super::super::index::CHUNKED_FROM as usize + 40_000;
        std::fs::write(dir.path().join("f"), vec![9u8; size]).expect("write");
        let job = Job {
            path: b"f".to_vec(),
            found: Found {
                path: b"f".to_vec(),
                kind: FoundKind::File,
                size: 10,
                meta: Meta {
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                    mtime: 1,
                    mtime_ns: 0,
                    xattrs: Vec::new(),
                },
                dev: 1,
                ino: 1,
                nlink: 1,
                ctime: (1, 0),
                xattrs_pending: false,
            },
            base: None,
            verify: false,
            image: None,
            partial: None,
            renamed_from: None,
            check: None,
        };
        for image in [None, Some(dir.path().join("f"))] {
            let job = Job {
                image,
                ..job.clone()
            };
            let mut sink = Kept(Vec::new());
            let policy = XattrPolicy {
                security: false,
                trusted: false,
            };
            let read = small(
                dir.path(),
                &job,
                policy,
                &mut Squeeze::new(false),
                &mut sink,
            )
            .expect("read");
            let Read1::Done { stable, .. } = read else {
                panic!("not read: {:?}", sink.0.len())
            };
            assert!(
                !stable,
                "image {:?}: a cut read counted as consistent",
                job.image
            );
        }
    }
}
