//! Resuming an interrupted iteration. While the destination applies a stream, a flusher makes
//! what has been written durable (`syncfs`) and then appends the finished files' records to
//! `DIR/.ferry/staging.journal`, whose first record names the snapshot the staging tree was
//! built from. The next iteration from that same snapshot keeps the staging tree: it
//! reconciles it to exactly "last snapshot + journaled files" (anything else the interrupted
//! iteration wrote is undone) and tells the source which files it already holds.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Context;

use super::index::{Chunk, Content, Index, Record};
use super::snapshot::remove_tree;
use super::tree::join;

pub type Records = Vec<(Vec<u8>, Record)>;

/// A large file's path and the chunks of it that are durable.
pub type PartialFile = (Vec<u8>, Vec<Chunk>);

/// One journal record: a finished file, or how far a large file had got.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Entry {
    Done(Vec<u8>, Record),
    Partial(Vec<u8>, Vec<Chunk>),
}

/// What a journal says: the finished files, and the large file that was being written with
/// its durable chunks (unless it finished after).
pub fn summarise(entries: Vec<Entry>) -> (Records, Option<PartialFile>) {
    let mut done = Vec::new();
    let mut partial = None;
    for e in entries {
        match e {
            Entry::Done(p, r) => {
                if partial
                    .as_ref()
                    .is_some_and(|(pp, _): &(Vec<u8>, Vec<Chunk>)| *pp == p)
                {
                    partial = None;
                }
                done.push((p, r));
            }
            Entry::Partial(p, c) => partial = Some((p, c)),
        }
    }
    (done, partial)
}

/// How many leading `chunks` the file at `path` still holds, byte for byte. The journal says
/// which chunks of a large file were durable, not that the file kept them: an iteration
/// interrupted later may have written another version of the file in its place before its
/// first journal flush. Only the prefix that hashes as journaled may be offered for reuse.
pub fn intact_prefix(path: &Path, chunks: &[Chunk]) -> usize {
    let Ok(mut f) = File::open(path) else {
        return 0;
    };
    let mut buf = Vec::with_capacity(super::index::CHUNK_MAX as usize);
    for (i, c) in chunks.iter().enumerate() {
        buf.resize(c.len as usize, 0);
        if f.read_exact(&mut buf).is_err() || *blake3::hash(&buf).as_bytes() != c.hash {
            return i;
        }
    }
    chunks.len()
}

/// The journal of the iteration being applied.
pub struct Journal {
    file: File,
}

impl Journal {
    /// Starts a journal for a staging tree built from snapshot `base`.
    pub fn create(path: &Path, base: Option<&str>) -> anyhow::Result<Journal> {
        let mut file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let header = postcard::to_stdvec(&base)?;
        file.write_all(&(header.len() as u32).to_le_bytes())?;
        file.write_all(&header)?;
        file.sync_all()?;
        if let Some(dir) = path.parent() {
            super::durable::sync_dir(dir)?;
        }
        Ok(Journal { file })
    }

    /// Continues an existing journal.
    pub fn reopen(path: &Path) -> anyhow::Result<Journal> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Journal { file })
    }

    /// Appends records of what is already durable, then syncs the journal.
    pub fn append(&mut self, records: &[Entry]) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in records {
            let body = postcard::to_stdvec(r)?;
            buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
            buf.extend_from_slice(&body);
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        Ok(())
    }

    /// Reads a journal: the base snapshot and the records (a torn last record is ignored).
    pub fn read(path: &Path) -> Option<(Option<String>, Vec<Entry>)> {
        let mut data = Vec::new();
        File::open(path).ok()?.read_to_end(&mut data).ok()?;
        let mut frames = Vec::new();
        let mut at = 0usize;
        while let Some(len) = data.get(at..at + 4) {
            let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let Some(body) = data.get(at + 4..at + 4 + len) else {
                break;
            };
            frames.push(body);
            at += 4 + len;
        }
        let (header, rest) = frames.split_first()?;
        let base: Option<String> = postcard::from_bytes(header).ok()?;
        let mut records = Vec::new();
        for f in rest {
            match postcard::from_bytes::<Entry>(f) {
                Ok(r) => records.push(r),
                Err(_) => break,
            }
        }
        Some((base, records))
    }
}

/// Makes `staging` exactly the previous snapshot plus the journaled files: entries of the
/// snapshot that were replaced or removed without being journaled are linked again, and
/// anything else is removed. Returns the journaled records still present, and a record of
/// each folder kept for them that the snapshot does not have: the source learns of those
/// folders too, so it deletes one that is gone by now (else an empty folder the source no
/// longer has would be published) and sends its metadata when it differs.
pub fn reconcile(
    staging: &Path,
    prev_dir: Option<&Path>,
    prev: &Index,
    journaled: Vec<(Vec<u8>, Record)>,
) -> anyhow::Result<BTreeMap<Vec<u8>, Record>> {
    let mut kept: BTreeMap<Vec<u8>, Record> = BTreeMap::new();
    for (path, rec) in journaled {
        if std::fs::symlink_metadata(join(staging, &path)).is_ok_and(|m| m.is_file()) {
            kept.insert(path, rec);
        }
    }
    // Remove what is neither in the snapshot nor journaled (deepest first).
    let (found, _) = super::tree::walk(staging, 4, super::tree::XattrPolicy::default(), false);
    let mut new_dirs = Vec::new();
    for f in found.iter().rev() {
        let in_prev = prev.entries.get(&f.path);
        let keep = kept.contains_key(&f.path)
            || match (in_prev, &f.kind) {
                (Some(r), super::tree::FoundKind::Dir) => r.content == Content::Dir,
                (Some(r), _) if r.content != Content::Dir => prev_dir.is_some_and(|d| {
                    std::fs::symlink_metadata(join(d, &f.path)).is_ok_and(|m| m.ino() == f.ino)
                }),
                (None, super::tree::FoundKind::Dir) => {
                    let mut prefix = f.path.clone();
                    prefix.push(b'/');
                    let holds_kept = kept
                        .range(prefix.clone()..)
                        .next()
                        .is_some_and(|(k, _)| k.starts_with(&prefix));
                    if holds_kept {
                        new_dirs.push((
                            f.path.clone(),
                            Record {
                                content: Content::Dir,
                                meta: f.meta.clone(),
                                ino: f.ino,
                                ctime: f.ctime,
                            },
                        ));
                    }
                    holds_kept
                }
                _ => false,
            };
        if !keep {
            remove_tree(&join(staging, &f.path))?;
        }
    }
    kept.extend(new_dirs);
    // Put back what of the snapshot is missing.
    if let Some(d) = prev_dir {
        for (path, rec) in &prev.entries {
            if kept.contains_key(path) {
                continue;
            }
            let to = join(staging, path);
            if std::fs::symlink_metadata(&to).is_ok() {
                continue;
            }
            match rec.content {
                Content::Dir => std::fs::create_dir(&to),
                _ => std::fs::hard_link(join(d, path), &to),
            }
            .with_context(|| format!("cannot restore {}", to.display()))?;
        }
    }
    Ok(kept)
}
