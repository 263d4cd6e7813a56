//! Large files on the destination: a file sent in chunks is written into a new file from
//! ranges of the last snapshot's version (or of what an interrupted iteration had written),
//! data and holes, each range checked against its BLAKE3 before the file is published;
//! holes stay holes.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;

use anyhow::{Context, bail};
use rustix::fs::AtFlags;

use super::{Mismatch, Shared, create, verify, verify_written};
use crate::volume::confine::Confined;
use crate::volume::index::{CHUNK_MAX, Chunk, Content, Record, chunks_hash};
use crate::volume::meta;
use crate::volume::tree::{Meta, join, shown};
use crate::volume::wire::Msg;

/// Writes `data` at `offset`, leaving 4 KiB blocks of zeros as holes (`rsync -S`).
pub(super) fn write_sparse(file: &File, offset: u64, data: &[u8]) -> std::io::Result<()> {
    const BLOCK: usize = 4096;
    let mut start = 0;
    while start < data.len() {
        let end = (start + BLOCK).min(data.len());
        if data[start..end].iter().all(|b| *b == 0) {
            start = end;
            continue;
        }
        let mut run_end = end;
        while run_end < data.len() {
            let next = (run_end + BLOCK).min(data.len());
            if data[run_end..next].iter().all(|b| *b == 0) {
                break;
            }
            run_end = next;
        }
        file.write_all_at(&data[start..run_end], offset + start as u64)?;
        start = run_end;
    }
    Ok(())
}

/// Copies `len` bytes of `src` at `from` to `dst` at `to` (a file being written from
/// scratch, where nothing written reads as zeros), only the source's data: its holes stay
/// holes, as a chunk sent as data keeps them (`write_sparse`) and `rsync -S` does.
fn copy_keeping_holes(src: &File, from: u64, dst: &File, to: u64, len: u64) -> std::io::Result<()> {
    use rustix::fs::SeekFrom;
    let end = from + len;
    let mut at = from;
    while at < end {
        let data = match rustix::fs::seek(src, SeekFrom::Data(at)) {
            Ok(d) => d.min(end),
            // No data from here to the end of the file.
            Err(rustix::io::Errno::NXIO) => end,
            // A filesystem that cannot tell: copy the rest as it reads.
            Err(_) => {
                return crate::store::fs::copy_range(src, at, dst, to + (at - from), end - at);
            }
        };
        if data >= end {
            break;
        }
        let hole = rustix::fs::seek(src, SeekFrom::Hole(data)).map_or(end, |h| h.min(end));
        crate::store::fs::copy_range(src, data, dst, to + (data - from), hole - data)?;
        at = hole;
    }
    // A range that ends in a hole ends the file for now: it must read as that many zeros.
    if dst.metadata()?.len() < to + len {
        dst.set_len(to + len)?;
    }
    Ok(())
}

/// A chunked file being written.
pub(super) struct Large {
    path: Vec<u8>,
    meta: Meta,
    file: File,
    pos: u64,
    chunks: Vec<Chunk>,
    /// The last snapshot's version and its chunks by offset.
    base: Option<Base>,
    /// What an interrupted iteration had written of this file.
    partial: Option<Base>,
}

type Base = (File, BTreeMap<u64, usize>, Vec<Chunk>);

fn base_of(file: File, chunks: &[Chunk]) -> Base {
    let mut by_offset = BTreeMap::new();
    let mut off = 0u64;
    for (i, c) in chunks.iter().enumerate() {
        by_offset.insert(off, i);
        off += c.len as u64;
    }
    (file, by_offset, chunks.to_vec())
}

/// Applies one message of a chunked file and publishes how far the file has got.
pub(super) fn write_large(
    shared: &Shared,
    conf: &mut Confined,
    cur: &mut Option<Large>,
    msg: Msg,
) -> anyhow::Result<()> {
    let before = cur.as_ref().map_or(0, |l| l.chunks.len());
    let ending = matches!(msg, Msg::End { .. } | Msg::Abort);
    // A failure names its file (a full disk said only "No space left on device").
    let path = match &msg {
        Msg::Begin { path, .. } => Some(path.clone()),
        _ => cur.as_ref().map(|l| l.path.clone()),
    };
    write_large_part(shared, conf, cur, msg).with_context(|| match &path {
        Some(p) => format!("cannot write {}", shown(p)),
        None => "cannot write a large file".to_owned(),
    })?;
    let mut progress = shared.progress.lock().unwrap_or_else(|e| e.into_inner());
    if ending {
        *progress = None;
    } else if let (Some(l), Some((_, c))) = (cur.as_ref(), progress.as_mut())
        && l.chunks.len() > before
    {
        c.extend_from_slice(&l.chunks[before..]);
    }
    Ok(())
}

fn write_large_part(
    shared: &Shared,
    conf: &mut Confined,
    cur: &mut Option<Large>,
    msg: Msg,
) -> anyhow::Result<()> {
    match msg {
        Msg::Begin { path, meta } => {
            shared.touch(&[&path]);
            let full = join(&shared.staging, &path);
            let (dir, name) = conf.parent(&path)?;
            let file = create(dir, name, &full)?;
            let base = match (&shared.prev_dir, shared.prev.entries.get(&path)) {
                (
                    Some(prev_dir),
                    Some(Record {
                        content: Content::File { chunks, .. },
                        ..
                    }),
                ) if !chunks.is_empty() => {
                    Some(base_of(File::open(join(prev_dir, &path))?, chunks))
                }
                _ => None,
            };
            let partial = match &shared.partial {
                Some((p, aside, chunks)) if *p == path => Some(base_of(File::open(aside)?, chunks)),
                _ => None,
            };
            *shared.progress.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((path.clone(), Vec::new()));
            *cur = Some(Large {
                path,
                meta,
                file,
                pos: 0,
                chunks: Vec::new(),
                base,
                partial,
            });
        }
        Msg::Copy {
            offset,
            len,
            partial,
        } => {
            let l = cur.as_mut().context("a copy outside a file")?;
            let from = if partial { &l.partial } else { &l.base };
            let Some((base, by_offset, chunks)) = from else {
                bail!(Mismatch(format!(
                    "{}: a copy from a version the destination does not have",
                    shown(&l.path)
                )));
            };
            let mut i = *by_offset
                .get(&offset)
                .ok_or_else(|| Mismatch(format!("{}: a copy off chunk bounds", shown(&l.path))))?;
            let first = l.chunks.len();
            let mut covered = 0u64;
            while covered < len {
                let c = chunks
                    .get(i)
                    .ok_or_else(|| Mismatch(format!("{}: a copy past the base", shown(&l.path))))?;
                l.chunks.push(c.clone());
                covered += c.len as u64;
                i += 1;
            }
            if covered != len {
                bail!(Mismatch(format!(
                    "{}: a copy off chunk bounds",
                    shown(&l.path)
                )));
            }
            copy_keeping_holes(base, offset, &l.file, l.pos, len)?;
            // The chunk list is what `End` checks: it must be what was written, not what
            // the base's record claims it holds.
            verify_written(&l.file, l.pos, &l.chunks[first..], &l.path)?;
            l.pos += len;
        }
        Msg::Data { data, hash } => {
            let l = cur.as_mut().context("data outside a file")?;
            let raw = data.unpack()?;
            verify(&raw, &hash, &l.path)?;
            write_sparse(&l.file, l.pos, &raw)?;
            l.chunks.push(Chunk {
                len: raw.len() as u32,
                hash,
            });
            l.pos += raw.len() as u64;
        }
        Msg::Zero { len } => {
            let l = cur.as_mut().context("a hole outside a file")?;
            if len > CHUNK_MAX {
                bail!("a hole longer than a chunk");
            }
            let hash = *blake3::hash(&vec![0u8; len as usize]).as_bytes();
            l.chunks.push(Chunk { len, hash });
            l.pos += len as u64;
        }
        Msg::End { size, hash } => {
            let l = cur.take().context("an end outside a file")?;
            if l.pos != size || chunks_hash(&l.chunks) != hash {
                bail!(Mismatch(format!(
                    "content of {} does not match its BLAKE3",
                    shown(&l.path)
                )));
            }
            l.file.set_len(size)?;
            let mut problems = meta::Problems::default();
            meta::apply_fd(&l.file, &l.path, &l.meta, true, &mut problems)?;
            // Recorded (and journaled) as applied.
            let applied = problems.applied_to(&l.path, l.meta);
            shared.problems().append(&mut problems);
            shared.finished(
                l.path,
                Record {
                    content: Content::File {
                        size,
                        hash,
                        chunks: l.chunks,
                    },
                    meta: applied,
                    ino: 0,
                    ctime: (0, 0),
                },
            );
        }
        Msg::Abort => {
            if let Some(l) = cur.take() {
                let (dir, name) = conf.parent(&l.path)?;
                let _ = rustix::fs::unlinkat(dir, OsStr::from_bytes(name), AtFlags::empty());
                // A file the source failed to read keeps its last version, not none.
                let kept = match (&shared.prev_dir, shared.prev.entries.get(&l.path)) {
                    (
                        Some(prev_dir),
                        Some(
                            rec @ Record {
                                content: Content::File { .. },
                                ..
                            },
                        ),
                    ) => rustix::fs::linkat(
                        rustix::fs::CWD,
                        join(prev_dir, &l.path).as_path(),
                        dir,
                        OsStr::from_bytes(name),
                        AtFlags::empty(),
                    )
                    .ok()
                    .map(|()| rec.clone()),
                    _ => None,
                };
                let mut index = shared.index.lock().unwrap_or_else(|e| e.into_inner());
                match kept {
                    Some(rec) => index.entries.insert(l.path, rec),
                    None => index.entries.remove(&l.path),
                };
            }
        }
        _ => bail!("not part of a file"),
    }
    Ok(())
}
