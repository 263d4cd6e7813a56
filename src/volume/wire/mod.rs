//! The volume protocol: length-prefixed postcard frames over the TLS stream, adaptive zstd for
//! file data, and a byte counter for what crossed the network.
//!
//! One iteration: the source says `Hello` with the snapshot its manifest describes; the
//! destination answers `Ready` with its latest snapshot; when they differ the source asks for
//! the destination's index (`WantIndex`, then `Index` batches and `IndexEnd`). The source
//! then streams, without waiting for answers: deletions and directories; file contents
//! (`Small` files whole, larger ones as `Begin`, `Copy`/`Data`/`Zero` ranges, `End`);
//! symlinks, hardlinks, clones and metadata-only changes; `Commit`. The destination answers
//! `Published` or `Failed`. A source with nothing to send for a while ([`keepalive`]) sends
//! `Keepalive`; a destination that hears nothing for its `--timeout` gives the iteration up.
//! The other way too (version 3): while the source waits for an answer (the destination
//! waits for another iteration to end, resumes one, loads its index, publishes), the
//! destination sends `Keepalive` every [`DEST_KEEPALIVE`], and a source whose connection
//! carries nothing either way for its `--timeout` gives up. [`recv`] passes over
//! `Keepalive` frames: they only show the peer is alive; telling a live peer from a silent
//! one, and counting what crossed, is [`live`].

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::index::{Hash, Record};
use super::tree::Meta;

mod live;

pub use self::live::{Counted, Idle, alive, recv_within, silence};

pub const VERSION: u32 = 4;
/// How often a destination busy with a waiting source's answer says it is alive; a source's
/// `--timeout` is at least three times this.
pub const DEST_KEEPALIVE: Duration = Duration::from_secs(5);
/// No frame is larger than this (bounds what one message can make the peer hold).
pub const MAX_FRAME: usize = 4 << 20;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Payload {
    pub zstd: bool,
    pub raw_len: u32,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Msg {
    Hello {
        version: u32,
        base: Option<String>,
    },
    /// `resumed`: an interrupted iteration from `latest` is resumed; the files it already
    /// holds follow as `Index` batches and `IndexEnd`.
    Ready {
        latest: Option<String>,
        resumed: bool,
        /// The destination's `--timeout` in milliseconds (`None`: it waits for ever): the
        /// source sends `Keepalive` well within it.
        timeout_ms: Option<u64>,
    },
    WantIndex,
    Index(Vec<(Vec<u8>, Record)>),
    IndexEnd,
    Delete {
        path: Vec<u8>,
    },
    Dir {
        path: Vec<u8>,
        meta: Meta,
    },
    Symlink {
        path: Vec<u8>,
        target: Vec<u8>,
        meta: Meta,
    },
    /// A hardlink to `to`, written earlier in this iteration or kept from the last one.
    Link {
        path: Vec<u8>,
        to: Vec<u8>,
    },
    /// Content of `from` in the last snapshot (a rename), with new metadata.
    Clone {
        path: Vec<u8>,
        from: Vec<u8>,
        meta: Meta,
    },
    /// Content unchanged, metadata changed.
    Meta {
        path: Vec<u8>,
        meta: Meta,
    },
    Small {
        path: Vec<u8>,
        meta: Meta,
        data: Payload,
        hash: Hash,
    },
    Begin {
        path: Vec<u8>,
        meta: Meta,
    },
    /// A range of the last snapshot's version of the file being written (or, with
    /// `partial`, of what an interrupted iteration had written of it), on chunk bounds.
    Copy {
        offset: u64,
        len: u64,
        partial: bool,
    },
    /// Inside a resumed iteration's index: a large file that had partly arrived (its chunks
    /// follow as `Chunks { partial: true }`).
    Partial {
        path: Vec<u8>,
        chunks: Vec<super::index::Chunk>,
    },
    /// More chunks of the record just sent (or of the partial file): a chunk list too long
    /// for one frame travels in pieces.
    Chunks {
        path: Vec<u8>,
        chunks: Vec<super::index::Chunk>,
        partial: bool,
    },
    Data {
        data: Payload,
        hash: Hash,
    },
    Zero {
        len: u32,
    },
    End {
        size: u64,
        hash: Hash,
    },
    /// Forget the file being written (it changed while it was read and comes again, or the
    /// source could not read it): the staging tree keeps the last snapshot's version.
    Abort,
    Commit {
        consistent: bool,
    },
    Published {
        id: String,
        problems: Vec<String>,
        /// Paths that lack an extended attribute (an ACL) the destination could not set
        /// (version 4); `unset_more`: more than fit in one answer.
        unset: Vec<Vec<u8>>,
        unset_more: bool,
    },
    Failed {
        error: String,
    },
    /// The source is still at work (walking, hashing) with nothing to send yet: it keeps the
    /// destination's idle timeout from firing.
    Keepalive,
}

/// How long a source goes without sending a frame before it sends a [`Msg::Keepalive`]: a
/// quarter of the destination's timeout, at most 10 s.
pub fn keepalive(timeout_ms: Option<u64>) -> Duration {
    let most = Duration::from_secs(10);
    timeout_ms.map_or(most, |ms| (Duration::from_millis(ms) / 4).min(most))
}

/// Encodes a frame: little-endian u32 length, then postcard.
pub fn encode(msg: &Msg) -> anyhow::Result<Vec<u8>> {
    let out = vec![0u8; 4];
    let body = postcard::to_extend(msg, out).context("encode a volume message")?;
    let len = body.len() - 4;
    if len > MAX_FRAME {
        bail!("a volume message of {len} bytes is over the frame limit");
    }
    let mut body = body;
    body[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(body)
}

pub async fn send<W: AsyncWrite + Unpin>(w: &mut W, msg: &Msg) -> anyhow::Result<()> {
    w.write_all(&encode(msg)?).await?;
    w.flush().await?;
    Ok(())
}

/// Reads one frame, passing over `Keepalive`s; `None` at a clean end of stream.
pub async fn recv<R: AsyncRead + Unpin>(r: &mut R) -> anyhow::Result<Option<Msg>> {
    loop {
        match recv_frame(r).await? {
            Some(Msg::Keepalive) => continue,
            m => return Ok(m),
        }
    }
}

/// Reads one frame, whatever it is (a `Keepalive` too); `None` at a clean end of stream.
pub async fn recv_frame<R: AsyncRead + Unpin>(r: &mut R) -> anyhow::Result<Option<Msg>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        bail!("the peer sent a frame of {len} bytes, over the limit of {MAX_FRAME}");
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let msg = postcard::from_bytes(&body).context("the peer sent a malformed message")?;
    Ok(Some(msg))
}

/// Reads one frame, failing at end of stream.
pub async fn expect<R: AsyncRead + Unpin>(r: &mut R) -> anyhow::Result<Msg> {
    recv(r)
        .await?
        .context("the peer closed the connection mid-iteration")
}

/// Chunks per frame when a chunk list travels in pieces (about 1.8 MB).
const CHUNKS_PER_FRAME: usize = 50_000;

fn record_bytes(path: &[u8], rec: &Record) -> usize {
    let chunks = match &rec.content {
        super::index::Content::File { chunks, .. } => chunks.len() * 40,
        _ => 0,
    };
    96 + path.len()
        + chunks
        + rec
            .meta
            .xattrs
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// Sends records as `Index` batches of about 1 MiB (long chunk lists in `Chunks` pieces),
/// an optional partial file first, then `IndexEnd`.
pub async fn send_records<W: AsyncWrite + Unpin>(
    w: &mut W,
    records: impl Iterator<Item = (Vec<u8>, Record)>,
    partial: Option<(Vec<u8>, Vec<super::index::Chunk>)>,
) -> anyhow::Result<()> {
    if let Some((path, chunks)) = partial {
        let head = Msg::Partial {
            path: path.clone(),
            chunks: Vec::new(),
        };
        send(w, &head).await?;
        for piece in chunks.chunks(CHUNKS_PER_FRAME) {
            let more = Msg::Chunks {
                path: path.clone(),
                chunks: piece.to_vec(),
                partial: true,
            };
            send(w, &more).await?;
        }
    }
    let mut batch = Vec::new();
    let mut size = 0usize;
    for (path, mut rec) in records {
        rec.ino = 0;
        let long = match &mut rec.content {
            super::index::Content::File { chunks, .. } if chunks.len() > CHUNKS_PER_FRAME => {
                std::mem::take(chunks)
            }
            _ => Vec::new(),
        };
        if !long.is_empty() {
            send(w, &Msg::Index(std::mem::take(&mut batch))).await?;
            size = 0;
            send(w, &Msg::Index(vec![(path.clone(), rec)])).await?;
            for piece in long.chunks(CHUNKS_PER_FRAME) {
                let more = Msg::Chunks {
                    path: path.clone(),
                    chunks: piece.to_vec(),
                    partial: false,
                };
                send(w, &more).await?;
            }
            continue;
        }
        size += record_bytes(&path, &rec);
        batch.push((path, rec));
        if size >= 1 << 20 {
            size = 0;
            send(w, &Msg::Index(std::mem::take(&mut batch))).await?;
        }
    }
    send(w, &Msg::Index(batch)).await?;
    send(w, &Msg::IndexEnd).await
}

/// A large file an interrupted iteration had partly delivered, and its chunks.
pub type PartialFile = Option<(Vec<u8>, Vec<super::index::Chunk>)>;

/// Reads what [`send_records`] sends.
pub async fn read_records<R: AsyncRead + Unpin>(
    r: &mut R,
) -> anyhow::Result<(Vec<(Vec<u8>, Record)>, PartialFile)> {
    let mut out: Vec<(Vec<u8>, Record)> = Vec::new();
    let mut partial: PartialFile = None;
    loop {
        match expect(r).await? {
            Msg::Index(batch) => out.extend(batch),
            Msg::Partial { path, chunks } => partial = Some((path, chunks)),
            Msg::Chunks {
                path,
                chunks,
                partial: true,
            } => match &mut partial {
                Some((p, c)) if *p == path => c.extend(chunks),
                _ => bail!("the peer sent chunks of a partial file it did not name"),
            },
            Msg::Chunks {
                path,
                chunks,
                partial: false,
            } => match out.last_mut() {
                Some((p, rec)) if *p == path => match &mut rec.content {
                    super::index::Content::File { chunks: c, .. } => c.extend(chunks),
                    _ => bail!("the peer sent chunks of a record that is not a file"),
                },
                _ => bail!("the peer sent chunks of a record it did not send last"),
            },
            Msg::IndexEnd => return Ok((out, partial)),
            Msg::Failed { error } => bail!("the destination failed: {error}"),
            other => bail!("the peer sent {other:?} inside an index"),
        }
    }
}

/// zstd level 1 while data compresses; after a run of incompressible blocks, skips
/// compression for a while and then tries again.
pub struct Squeeze {
    compressor: Option<zstd::bulk::Compressor<'static>>,
    misses: u32,
    skip: u32,
}

impl Squeeze {
    pub fn new(enabled: bool) -> Squeeze {
        Squeeze {
            compressor: if enabled {
                zstd::bulk::Compressor::new(1).ok()
            } else {
                None
            },
            misses: 0,
            skip: 0,
        }
    }

    pub fn pack(&mut self, raw: Vec<u8>) -> Payload {
        let raw_len = raw.len() as u32;
        let plain = |raw| Payload {
            zstd: false,
            raw_len,
            bytes: raw,
        };
        let Some(c) = self.compressor.as_mut() else {
            return plain(raw);
        };
        if raw.len() < 64 {
            return plain(raw);
        }
        if self.skip > 0 {
            self.skip -= 1;
            return plain(raw);
        }
        match c.compress(&raw) {
            Ok(z) if z.len() < raw.len() - raw.len() / 10 => {
                self.misses = 0;
                Payload {
                    zstd: true,
                    raw_len,
                    bytes: z,
                }
            }
            _ => {
                self.misses += 1;
                if self.misses >= 8 {
                    self.misses = 0;
                    self.skip = 64;
                }
                plain(raw)
            }
        }
    }
}

impl Payload {
    pub fn unpack(self) -> anyhow::Result<Vec<u8>> {
        if !self.zstd {
            if self.bytes.len() != self.raw_len as usize {
                bail!("a data block's length does not match its header");
            }
            return Ok(self.bytes);
        }
        if self.raw_len as usize > MAX_FRAME {
            bail!("a compressed block claims {} bytes", self.raw_len);
        }
        thread_local! {
            static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                const { std::cell::RefCell::new(None) };
        }
        let raw = DCTX.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_none() {
                *d = Some(zstd::bulk::Decompressor::new()?);
            }
            match d.as_mut() {
                Some(d) => d.decompress(&self.bytes, self.raw_len as usize),
                None => Err(std::io::Error::other("no zstd context")),
            }
        });
        let raw = raw.context("a compressed block does not decompress")?;
        if raw.len() != self.raw_len as usize {
            bail!("a compressed block's length does not match its header");
        }
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::volume::index::{Chunk, Content};
    use crate::volume::tree::Meta;

    /// While a slow piece of work runs, the peer hears keepalives, and reads past them to
    /// the answer; a connection on which nothing moves is found silent.
    #[tokio::test(start_paused = true)]
    async fn a_busy_side_keeps_the_waiting_one_hearing() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let work = tokio::time::sleep(DEST_KEEPALIVE * 3 + Duration::from_millis(10));
        alive(&mut a, work).await;
        send(&mut a, &Msg::IndexEnd).await.expect("send");
        let mut raw = vec![0u8; 64];
        let n = tokio::io::AsyncReadExt::read(&mut b, &mut raw)
            .await
            .expect("read");
        let keepalive = encode(&Msg::Keepalive).expect("encode");
        assert!(
            raw[..n].starts_with(&[keepalive.clone(), keepalive.clone(), keepalive].concat()),
            "three keepalives first: {:?}",
            &raw[..n]
        );
        let mut rest = &raw[n - encode(&Msg::IndexEnd).expect("encode").len()..n];
        assert!(matches!(recv(&mut rest).await, Ok(Some(Msg::IndexEnd))));
        // `recv` itself passes over them.
        let both = [
            encode(&Msg::Keepalive).expect("e"),
            encode(&Msg::IndexEnd).expect("e"),
        ]
        .concat();
        assert!(matches!(
            recv(&mut &both[..]).await,
            Ok(Some(Msg::IndexEnd))
        ));

        let moved = AtomicU64::new(1);
        let idle = Duration::from_secs(20);
        let quiet = silence(&moved, idle).await;
        assert_eq!(quiet.0, idle);
    }

    #[tokio::test]
    async fn chunk_lists_longer_than_a_frame_travel_in_pieces() {
        let chunk = |i: u32| Chunk {
            len: 65536,
            hash: [(i % 251) as u8; 32],
        };
        let big: Vec<Chunk> = (0..130_000).map(chunk).collect();
        let rec = |chunks: Vec<Chunk>| Record {
            content: Content::File {
                size: chunks.len() as u64 * 65536,
                hash: [1; 32],
                chunks,
            },
            meta: Meta {
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                mtime_ns: 0,
                xattrs: Vec::new(),
            },
            ino: 0,
            ctime: (0, 0),
        };
        let records = vec![
            (b"a".to_vec(), rec(vec![chunk(1)])),
            (b"huge.img".to_vec(), rec(big.clone())),
            (b"z".to_vec(), rec(Vec::new())),
        ];
        let partial = Some((b"half.img".to_vec(), big[..120_000].to_vec()));
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let sent = records.clone();
        let p2 = partial.clone();
        let writer = tokio::spawn(async move { send_records(&mut a, sent.into_iter(), p2).await });
        let (got, got_partial) = read_records(&mut b).await.expect("read");
        writer.await.expect("join").expect("send");
        assert_eq!(got, records);
        assert_eq!(got_partial, partial);
    }

    #[test]
    fn frames_and_payloads_round_trip() {
        let mut s = Squeeze::new(true);
        let text = b"hello hello hello hello hello hello hello hello hello hello hello".repeat(50);
        let p = s.pack(text.clone());
        assert!(p.zstd);
        let frame = encode(&Msg::Data {
            data: p,
            hash: [3; 32],
        })
        .expect("encode");
        let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(len, frame.len() - 4);
        let Msg::Data { data, hash } = postcard::from_bytes(&frame[4..]).expect("decode") else {
            panic!("not data")
        };
        assert_eq!(hash, [3; 32]);
        assert_eq!(data.unpack().expect("unpack"), text);
        let lie = Payload {
            zstd: false,
            raw_len: 10,
            bytes: vec![1; 3],
        };
        assert!(lie.unpack().is_err());
    }
}
