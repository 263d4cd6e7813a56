//! What one side knows of a tree: a record per path (content hash, content-defined chunks for
//! large files, metadata), saved compressed and durably. The destination keeps one index per
//! snapshot; the source keeps a manifest of what the destination last acknowledged, tagged
//! with that snapshot's id, so the next iteration finds changes without asking.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::durable;
use super::tree::Meta;

/// Files at least this large travel as content-defined chunks; smaller ones go whole.
pub const CHUNKED_FROM: u64 = 256 * 1024;
pub const CHUNK_MIN: u32 = 16 * 1024;
pub const CHUNK_AVG: u32 = 64 * 1024;
pub const CHUNK_MAX: u32 = 256 * 1024;

pub type Hash = [u8; 32];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    pub len: u32,
    pub hash: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// `hash` is BLAKE3 of the content for small files, and [`chunks_hash`] of `chunks` for
    /// chunked ones.
    File {
        size: u64,
        hash: Hash,
        chunks: Vec<Chunk>,
    },
    Dir,
    Symlink(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub content: Content,
    pub meta: Meta,
    /// Source side only: inode and ctime at the time the file was read (0 when unknown).
    pub ino: u64,
    pub ctime: (i64, u32),
}

/// BLAKE3 over a chunk list: the identity of a chunked file's content.
pub fn chunks_hash(chunks: &[Chunk]) -> Hash {
    let mut h = blake3::Hasher::new();
    for c in chunks {
        h.update(&c.len.to_le_bytes());
        h.update(&c.hash);
    }
    *h.finalize().as_bytes()
}

/// One snapshot's summary, as `ferry volume snapshots` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub id: String,
    /// RFC 3339.
    pub time: String,
    pub files: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    pub consistent: bool,
}

/// An index with the snapshot id it describes. On disk: the id (u16 length, bytes), then
/// the entries as zstd-compressed postcard.
#[derive(Clone, Debug, Default)]
pub struct Index {
    pub snapshot: Option<String>,
    pub entries: BTreeMap<Vec<u8>, Record>,
}

/// The entries with paths as byte strings (postcard writes a plain `Vec<u8>` byte by byte).
#[derive(Serialize)]
struct EntriesOut<'a>(#[serde(serialize_with = "entries_out")] &'a BTreeMap<Vec<u8>, Record>);

fn entries_out<S: serde::Serializer>(
    m: &&BTreeMap<Vec<u8>, Record>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(m.len()))?;
    for (k, v) in m.iter() {
        seq.serialize_element(&(serde_bytes::Bytes::new(k), v))?;
    }
    seq.end()
}

impl Index {
    pub fn load(path: &Path) -> anyhow::Result<Index> {
        let packed =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let damaged = || format!("{} is damaged", path.display());
        let (id, body) = match packed.get(..2) {
            Some(n) => {
                let n = u16::from_le_bytes([n[0], n[1]]) as usize;
                let id = packed.get(2..2 + n).with_context(damaged)?;
                (
                    std::str::from_utf8(id).ok().with_context(damaged)?,
                    &packed[2 + n..],
                )
            }
            None => anyhow::bail!(damaged()),
        };
        let raw = zstd::stream::decode_all(body).with_context(damaged)?;
        let list: Vec<(serde_bytes::ByteBuf, Record)> =
            postcard::from_bytes(&raw).with_context(damaged)?;
        Ok(Index {
            snapshot: (!id.is_empty()).then(|| id.to_owned()),
            entries: list.into_iter().map(|(k, r)| (k.into_vec(), r)).collect(),
        })
    }

    /// The entries, serialised and compressed, for [`Index::write_packed`].
    pub fn pack(&self) -> anyhow::Result<Vec<u8>> {
        let raw = postcard::to_stdvec(&EntriesOut(&self.entries))?;
        Ok(zstd::bulk::compress(&raw, 1)?)
    }

    /// Writes packed entries under a snapshot id, durably.
    pub fn write_packed(path: &Path, snapshot: Option<&str>, body: &[u8]) -> anyhow::Result<()> {
        let id = snapshot.unwrap_or("").as_bytes();
        let mut out = Vec::with_capacity(2 + id.len() + body.len());
        out.extend_from_slice(&(id.len() as u16).to_le_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(body);
        durable::write_file(path, &out, 0o600)
    }

    /// Loads `path`, or an empty index when it does not exist.
    pub fn load_or_empty(path: &Path) -> anyhow::Result<Index> {
        if path.exists() {
            Self::load(path)
        } else {
            Ok(Index::default())
        }
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        Self::write_packed(path, self.snapshot.as_deref(), &self.pack()?)
    }

    /// Files and their bytes.
    pub fn totals(&self) -> (u64, u64) {
        let mut files = 0;
        let mut bytes = 0;
        for r in self.entries.values() {
            if let Content::File { size, .. } = r.content {
                files += 1;
                bytes += size;
            }
        }
        (files, bytes)
    }

    /// Removes `path` and everything under it.
    pub fn remove_tree(&mut self, path: &[u8]) {
        self.entries.remove(path);
        let mut prefix = path.to_vec();
        prefix.push(b'/');
        let doomed: Vec<Vec<u8>> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            mode: 0o644,
            uid: 1,
            gid: 2,
            mtime: 3,
            mtime_ns: 4,
            xattrs: vec![(b"user.a".to_vec(), b"b".to_vec())],
        }
    }

    #[test]
    fn round_trips_and_removes_subtrees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut idx = Index {
            snapshot: Some("s1".into()),
            ..Default::default()
        };
        for p in ["a", "a/b", "a/b/c", "a-b", "ab"] {
            idx.entries.insert(
                p.as_bytes().to_vec(),
                Record {
                    content: Content::File {
                        size: 5,
                        hash: [7; 32],
                        chunks: vec![Chunk {
                            len: 5,
                            hash: [1; 32],
                        }],
                    },
                    meta: meta(),
                    ino: 9,
                    ctime: (1, 2),
                },
            );
        }
        let path = dir.path().join("idx");
        idx.save(&path).expect("save");
        let mut back = Index::load(&path).expect("load");
        assert_eq!(back.snapshot.as_deref(), Some("s1"));
        assert_eq!(back.entries, idx.entries);
        back.remove_tree(b"a");
        let left: Vec<&[u8]> = back.entries.keys().map(|k| &k[..]).collect();
        assert_eq!(left, [&b"a-b"[..], b"ab"]);
        assert_eq!(back.totals(), (2, 10));
    }
}
