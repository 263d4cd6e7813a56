//! The reading half of an iteration: plans the walked tree against the base, reads what
//! changed (in parallel, large files chunk by chunk) and turns it into frames for the
//! connection writer, while keeping the new manifest's records.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::Report;
use crate::volume::index::{Index, Record};
use crate::volume::plan::{Already, plan};
use crate::volume::read::{self, Read1, Sink};
use crate::volume::tree::{XattrPolicy, shown};
use crate::volume::wire::{self, Msg, Squeeze};

/// The stream could not go on: the connection ended under it. The destination's answer, if
/// it gave one, says why (see `iterate`).
#[derive(Debug)]
pub(super) struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the connection to the destination closed")
    }
}

impl std::error::Error for Closed {}

/// Frames go to the connection writer through a bounded channel, gathered into buffers of
/// about 128 KiB (one hand-over per buffer, not per small file).
struct ChannelSink {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

const SINK_BATCH: usize = 128 * 1024;

impl ChannelSink {
    fn new(tx: &tokio::sync::mpsc::Sender<Vec<u8>>) -> Self {
        ChannelSink {
            tx: tx.clone(),
            buf: Vec::new(),
        }
    }

    fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        self.tx.blocking_send(std::mem::take(&mut self.buf)).is_ok()
    }
}

impl Sink for ChannelSink {
    fn send(&mut self, msg: &Msg) -> bool {
        let Ok(frame) = wire::encode(msg) else {
            return false;
        };
        if self.buf.is_empty() && frame.len() >= SINK_BATCH {
            return self.tx.blocking_send(frame).is_ok();
        }
        self.buf.extend_from_slice(&frame);
        self.buf.len() < SINK_BATCH || self.flush()
    }
}

pub(super) struct Produced {
    /// The new manifest's entries, packed while the destination commits.
    pub(super) manifest: Vec<u8>,
    pub(super) report: Report,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn produce(
    root: &Path,
    walked: (Vec<crate::volume::tree::Found>, Vec<(Vec<u8>, String)>),
    base: &Index,
    (trusted, reuse_xattrs): (bool, bool),
    already: &Already,
    partial: wire::PartialFile,
    use_image: bool,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    threads: usize,
    xattrs: XattrPolicy,
    compress: bool,
) -> anyhow::Result<Produced> {
    let t = Instant::now();
    let (mut found, walk_errors) = walked;
    let known = |f: &crate::volume::tree::Found| {
        let r = base.entries.get(&f.path)?;
        (trusted && reuse_xattrs && r.ctime == f.ctime && r.ctime != (0, 0))
            .then(|| r.meta.xattrs.clone())
    };
    crate::volume::tree::fill_xattrs(root, &mut found, known, xattrs, threads);
    let unreadable: Vec<Vec<u8>> = walk_errors.iter().map(|(p, _)| p.clone()).collect();
    let mut p = plan(&found, base, trusted, already, &unreadable);
    drop(found);
    if let Some((path, chunks)) = partial
        && let Some(job) = p.large.iter_mut().find(|j| j.path == path)
    {
        job.partial = Some(chunks);
    }
    // Clone what will be read where the filesystem can, then read the clones.
    let image = if use_image {
        let mut jobs: Vec<&mut crate::volume::plan::Job> =
            p.small.iter_mut().chain(p.large.iter_mut()).collect();
        let image = crate::volume::image::take(root, &mut jobs, xattrs, threads)?;
        // A file whose clone reached the chunked size (it grew between the walk and the
        // clone) is read as a large file: a small read would send it cut.
        let (grown, small): (Vec<_>, Vec<_>) = std::mem::take(&mut p.small)
            .into_iter()
            .partition(|j| j.found.size >= crate::volume::index::CHUNKED_FROM);
        p.small = small;
        p.large.extend(grown);
        image
    } else {
        None
    };
    tracing::debug!(
        "planned at {:?}: {} small, {} large, {} late",
        t.elapsed(),
        p.small.len(),
        p.large.len(),
        p.late.len()
    );
    let mut report = Report {
        image: image.is_some(),
        files_scanned: p.files,
        files_resumed: p.resumed,
        bytes_scanned: p.bytes,
        consistent: walk_errors.is_empty(),
        ..Default::default()
    };
    for (path, e) in &walk_errors {
        report
            .problems
            .push(format!("{}: cannot read: {e}", shown(path)));
        report.unreadable.push(shown(path));
    }
    for s in &p.specials {
        report.problems.push(format!(
            "{}: a device, FIFO or socket: not copied",
            shown(s)
        ));
    }
    let mut sink = ChannelSink::new(&tx);
    let closed = || anyhow::Error::new(Closed);
    report.files_deleted = p.deletes.len() as u64;
    for path in &p.deletes {
        if !sink.send(&Msg::Delete { path: path.clone() }) {
            return Err(closed());
        }
    }
    for (path, meta) in &p.dirs {
        if !sink.send(&Msg::Dir {
            path: path.clone(),
            meta: meta.clone(),
        }) {
            return Err(closed());
        }
    }
    if !sink.flush() {
        return Err(closed());
    }
    let outcome = std::sync::Mutex::new((Vec::new(), Report::default(), Vec::new()));
    let next = AtomicUsize::new(0);
    let read_one = |job: &crate::volume::plan::Job,
                    large: bool,
                    squeeze: &mut Squeeze,
                    sink: &mut ChannelSink| {
        let r = if large {
            read::large(root, job, xattrs, squeeze, sink)
        } else {
            read::small(root, job, xattrs, squeeze, sink)
        };
        let mut o = outcome.lock().unwrap_or_else(|e| e.into_inner());
        match r {
            Ok(Read1::Done {
                rec,
                sent,
                reused,
                stable,
            }) => {
                if sent > 0
                    || matches!(
                        rec.content,
                        crate::volume::index::Content::File { size: 0, .. }
                    )
                {
                    o.1.files_sent += 1;
                }
                o.1.bytes_sent += sent;
                o.1.bytes_reused += reused;
                if !stable {
                    o.1.changed_while_read.push(shown(&job.path));
                }
                o.0.push((job.path.clone(), rec));
                true
            }
            // The deletion was sent; the file has no record in the new manifest.
            Ok(Read1::Vanished) => true,
            Ok(Read1::Closed) => false,
            Err(e) => {
                o.1.problems
                    .push(format!("{}: cannot read: {e}", shown(&job.path)));
                o.1.unreadable.push(shown(&job.path));
                // The destination keeps what it has at this path (nothing was sent in its
                // place): so does the manifest, else a later deletion of the file is never
                // sent (its path would be in neither the manifest nor the tree). The base
                // says what that is: the last snapshot's record, an interrupted iteration's
                // journaled one, or the destination's own index.
                if let Some(rec) = base.entries.get(&job.path) {
                    o.2.push((job.path.clone(), rec.clone()));
                }
                true
            }
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut squeeze = Squeeze::new(compress);
            let mut sink = ChannelSink::new(&tx);
            for job in &p.large {
                if !read_one(job, true, &mut squeeze, &mut sink) {
                    break;
                }
            }
            sink.flush();
        });
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let mut squeeze = Squeeze::new(compress);
                let mut sink = ChannelSink::new(&tx);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = p.small.get(i) else { break };
                    if !read_one(job, false, &mut squeeze, &mut sink) {
                        break;
                    }
                }
                sink.flush();
            });
        }
    });
    let (mut records, o, unread) = outcome.into_inner().unwrap_or_else(|e| e.into_inner());
    report.files_sent = o.files_sent;
    report.bytes_sent = o.bytes_sent;
    report.bytes_reused = o.bytes_reused;
    report.changed_while_read = o.changed_while_read;
    report.unreadable.extend(o.unreadable);
    if !o.problems.is_empty() {
        report.consistent = false;
    }
    report.problems.extend(o.problems);
    report.consistent &= report.changed_while_read.is_empty();
    // A hardlink to a file that could not be read (or vanished) has nothing to link to: it
    // keeps its last version as that file does, and is reported with it, instead of failing
    // the whole iteration at the destination.
    let linkable: std::collections::HashSet<&[u8]> = records
        .iter()
        .map(|(k, _)| &k[..])
        .chain(p.keep.iter().map(|(k, _)| &k[..]))
        .collect();
    let mut unlinked = Vec::new();
    let mut unlinked_paths = std::collections::HashSet::new();
    for msg in &p.late {
        if let Msg::Link { path, to } = msg
            && !linkable.contains(&to[..])
        {
            unlinked.push(shown(path));
            unlinked_paths.insert(path.clone());
            continue;
        }
        if !sink.send(msg) {
            return Err(closed());
        }
    }
    drop(linkable);
    if !unlinked.is_empty() {
        report.consistent = false;
        for path in &unlinked {
            report.problems.push(format!(
                "{path}: a hardlink to a file that could not be read"
            ));
        }
        report.unreadable.extend(unlinked);
    }
    if !sink.send(&Msg::Commit {
        consistent: report.consistent,
    }) || !sink.flush()
    {
        return Err(closed());
    }
    drop(sink);
    drop(tx);
    tracing::debug!("streamed at {:?}", t.elapsed());
    records.extend(p.keep);
    records.extend(unread);
    let mut next = Index {
        snapshot: None,
        entries: records.into_iter().collect(),
    };
    // A follower whose link was not sent keeps what the destination has at its path, as an
    // unreadable file does.
    let followers: Vec<(Vec<u8>, Record)> = p
        .followers
        .iter()
        .filter_map(|(f, leader)| {
            let rec = match unlinked_paths.contains(f) {
                true => base.entries.get(f),
                false => next.entries.get(leader),
            };
            rec.map(|r| (f.clone(), r.clone()))
        })
        .collect();
    next.entries.extend(followers);
    let manifest = next.pack()?;
    Ok(Produced { manifest, report })
}
