//! `ferry volume destination`: listens for its one source, refuses anything that is not
//! TLS 1.3 with the pinned client certificate before reading a byte of data, and runs one
//! iteration at a time: hardlink farm of the last snapshot into staging, the stream applied,
//! one `syncfs`, then the atomic publish and retention.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use super::apply;
use super::index::{Index, SnapshotInfo};
use super::metrics::{self, VolumeMetrics};
use super::resume::{self, Journal};
use super::snapshot::{self, Layout, link_farm};
use super::status;
use super::tls::Keys;
use super::wire::{self, Counted, Msg, VERSION};
use crate::state::VolumeIteration;

pub struct DestOptions {
    pub dir: PathBuf,
    /// State database URL (default: `DIR/.ferry/state.db`).
    pub db: Option<String>,
    /// Where to serve Prometheus metrics.
    pub metrics_listen: Option<String>,
    pub listen: String,
    pub secret_out: Option<PathBuf>,
    pub keep: usize,
    pub threads: usize,
    /// Give an iteration up when its source sends nothing for this long (`None`: wait).
    pub timeout: Option<Duration>,
}

pub async fn serve(opts: DestOptions) -> anyhow::Result<()> {
    let layout = Arc::new(Layout::new(&opts.dir));
    layout.create()?;
    let _lock = layout.lock()?;
    layout.clean_partial()?;
    snapshot::remove_tree(&layout.next())?;
    let keys = Keys::load_or_create(&layout.keys())?;
    let db = Arc::new(status::open_db(&opts.dir, opts.db.as_deref()).await?);
    let volume = Arc::new(status::volume_name(&opts.dir));
    let metrics = match &opts.metrics_listen {
        Some(addr) => {
            let m = VolumeMetrics::new("destination", &volume);
            m.set_snapshots(layout.list()?.len());
            let bound = metrics::serve(addr, m.clone()).await?;
            eprintln!("ferry volume destination: metrics on http://{bound}/metrics");
            Some(m)
        }
        None => None,
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(keys.server_config()?));
    let listener = TcpListener::bind(&opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    if let Some(path) = &opts.secret_out {
        keys.secret(addr.to_string())?.save(path)?;
    }
    eprintln!(
        "ferry volume destination: listening on {addr}, snapshots in {}",
        layout.snapshots().display()
    );
    // One iteration at a time; the lock also holds the snapshot id `next/` was prepared from.
    let busy = Arc::new(tokio::sync::Mutex::new(None::<String>));
    loop {
        let (tcp, peer) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        let (acceptor, layout, busy) = (acceptor.clone(), layout.clone(), busy.clone());
        let (db, volume, metrics) = (db.clone(), volume.clone(), metrics.clone());
        let (keep, threads, timeout) = (opts.keep, opts.threads, opts.timeout);
        tokio::spawn(async move {
            let counted = Counted::new(tcp);
            let wire_bytes = counted.bytes.clone();
            let heard = counted.read.clone();
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(counted))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::warn!("refused a connection from {peer}: {e}");
                    return;
                }
                Err(_) => {
                    tracing::warn!("refused a connection from {peer}: handshake timed out");
                    return;
                }
            };
            let mut tls = tls;
            let listen = Listen {
                heard: &heard,
                timeout,
            };
            let mut started_ms = status::now_ms();
            let mut held = None;
            let result = async {
                // The greeting is read (and its version checked) before the wait for the
                // lock, so that the waiting source hears keepalives, not silence.
                let Some(hello) = listen.recv(&mut tls).await? else {
                    return Ok(None);
                };
                greeted(&hello)?;
                let guard = match busy.try_lock() {
                    Ok(guard) => guard,
                    Err(_) => {
                        tracing::info!("{peer} waits for the iteration in progress to end");
                        wire::alive(&mut tls, busy.lock()).await
                    }
                };
                started_ms = status::now_ms();
                let prefarmed = held.insert(guard);
                iteration(&mut tls, &layout, keep, threads, listen, prefarmed).await
            }
            .await;
            let mut rec = VolumeIteration {
                volume: volume.to_string(),
                role: "destination".into(),
                started_ms,
                ended_ms: status::now_ms(),
                wire_bytes: wire_bytes.load(std::sync::atomic::Ordering::Relaxed) as i64,
                ..Default::default()
            };
            match &result {
                Ok(Some(o)) => {
                    rec.snapshot = Some(o.id.clone());
                    rec.files_scanned = o.files as i64;
                    rec.bytes_scanned = o.bytes as i64;
                    rec.files_sent = o.files_written as i64;
                    rec.bytes_sent = o.bytes_written as i64;
                    rec.files_deleted = o.deleted as i64;
                    rec.consistent = o.consistent;
                    rec.incomplete = (o.unset > 0).then(|| {
                        format!(
                            "{} path(s) lack extended attributes this side could not set",
                            o.unset
                        )
                    });
                }
                Ok(None) => {}
                Err(e) => rec.error = Some(format!("{e:#}")),
            }
            if !matches!(result, Ok(None))
                && let Err(e) = db.record_volume_iteration(&rec).await
            {
                tracing::warn!("cannot record the iteration: {e}");
            }
            if let Some(m) = &metrics
                && !matches!(result, Ok(None))
            {
                let took = Duration::from_millis((rec.ended_ms - rec.started_ms).max(0) as u64);
                let ok = result.is_ok();
                m.iteration(
                    ok,
                    rec.consistent && rec.incomplete.is_none(),
                    took,
                    rec.files_sent as u64,
                    rec.bytes_sent as u64,
                    rec.wire_bytes as u64,
                );
                if let Ok(list) = layout.list() {
                    m.set_snapshots(list.len());
                }
            }
            match result {
                Ok(Some(o)) => tracing::info!("published snapshot {} from {peer}", o.id),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("iteration from {peer} failed: {e:#}");
                    let _ = wire::send(
                        &mut tls,
                        &Msg::Failed {
                            error: format!("{e:#}"),
                        },
                    )
                    .await;
                    // Closed with the source's stream unread, the connection is reset, and
                    // a reset may discard the answer before the source reads it (a probe's
                    // source said only that the connection closed): end this side, then read
                    // what is still coming, for a few seconds at most.
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                    let drain = async {
                        let mut buf = vec![0u8; 64 << 10];
                        while tokio::io::AsyncReadExt::read(&mut tls, &mut buf)
                            .await
                            .is_ok_and(|n| n > 0)
                        {}
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(3), drain).await;
                    // Only a connection that held the lock ran an iteration to clean up after:
                    // one refused before it (a bad greeting) must not touch the staging tree
                    // or the snapshots while another connection's iteration publishes.
                    if held.is_none() {
                        return;
                    }
                    let _ = layout.clean_partial();
                    if e.chain().any(|c| c.is::<apply::Mismatch>()) {
                        // The sides disagree about a file's content: resuming would meet the
                        // same disagreement again, so the next iteration starts from the
                        // last snapshot.
                        tracing::warn!("dropping the interrupted iteration's state");
                        let _ = layout.drop_resume();
                    }
                }
            }
        });
    }
}

type Tls = tokio_rustls::server::TlsStream<Counted<tokio::net::TcpStream>>;

/// Problems named in an answer, and their bytes at most (a frame holds 4 MiB, with as many
/// bytes of paths that lack an attribute; this side logs how many there were).
const MAX_PROBLEMS_SAID: usize = 1000;
const MAX_PROBLEMS_BYTES: usize = 1 << 20;

/// How many of `items`, from the first, fit in `most` items and `room` bytes.
fn fitting<T: AsRef<[u8]>>(items: &[T], most: usize, mut room: usize) -> usize {
    items
        .iter()
        .take(most)
        .take_while(|i| match room.checked_sub(i.as_ref().len() + 8) {
            Some(r) => {
                room = r;
                true
            }
            None => false,
        })
        .count()
}

/// What a published iteration did.
struct Outcome {
    id: String,
    files: u64,
    bytes: u64,
    files_written: u64,
    bytes_written: u64,
    deleted: u64,
    consistent: bool,
    /// Paths that lack an extended attribute this side could not set.
    unset: usize,
}

fn new_id(latest: Option<&str>) -> anyhow::Result<(String, String)> {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!(
        "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
    );
    let mut t = now;
    // After a latest id ahead of the clock (a clock that ran ahead once), at once: stepping
    // from now a millisecond at a time spun a CPU for minutes (a probe).
    if let Some(after) = latest
        .and_then(|l| time::PrimitiveDateTime::parse(l, &fmt).ok())
        .map(|p| p.assume_utc() + Duration::from_millis(1))
        && after > t
    {
        t = after;
    }
    loop {
        let id = t.format(&fmt)?;
        if latest.is_none_or(|l| id.as_str() > l) {
            return Ok((
                id,
                now.format(&time::format_description::well_known::Rfc3339)?,
            ));
        }
        t += Duration::from_millis(1);
    }
}

/// How the destination listens to its source: the count of bytes heard, and how long it
/// waits for the next one.
#[derive(Clone, Copy)]
struct Listen<'a> {
    heard: &'a std::sync::atomic::AtomicU64,
    timeout: Option<Duration>,
}

impl Listen<'_> {
    async fn recv<R: tokio::io::AsyncRead + Unpin>(self, r: &mut R) -> anyhow::Result<Option<Msg>> {
        wire::recv_within(r, self.heard, self.timeout).await
    }
}

/// Checks a source's greeting.
fn greeted(hello: &Msg) -> anyhow::Result<()> {
    let Msg::Hello { version, .. } = hello else {
        bail!("expected Hello, got {hello:?}");
    };
    if *version != VERSION {
        bail!("protocol version {version} is not supported (this destination speaks {VERSION})");
    }
    Ok(())
}

/// One iteration, once the source's greeting is read and the lock held.
async fn iteration(
    tls: &mut Tls,
    layout: &Arc<Layout>,
    keep: usize,
    threads: usize,
    listen: Listen<'_>,
    prefarmed: &mut Option<String>,
) -> anyhow::Result<Option<Outcome>> {
    let started = Instant::now();
    let tls = &mut tokio::io::BufReader::with_capacity(256 * 1024, tls);
    let l = layout.clone();
    tokio::task::spawn_blocking(move || l.clean_partial()).await??;
    let latest = layout.latest()?;
    let latest_id = latest.as_ref().map(|i| i.id.clone());
    // An interrupted iteration from the same snapshot is resumed: its staging tree is put back
    // to "snapshot + journaled files" and the source learns which files need not come again.
    let resumable = layout.staging().is_dir();
    let l = layout.clone();
    let id = latest_id.clone();
    let resumed = if resumable {
        let r = wire::alive(
            tls,
            tokio::task::spawn_blocking(move || {
                let prev = match &id {
                    Some(id) => Index::load(&l.index(id))?,
                    None => Index::default(),
                };
                let (_, entries) = Journal::read(&l.journal()).unwrap_or_default();
                let (records, partial) = resume::summarise(entries);
                // The large file that was being written goes aside before the tree is put back.
                let _ = std::fs::remove_file(l.partial());
                // Only the chunks it still holds as journaled are offered: a later interrupted
                // iteration may have written something else there before journaling anything.
                let partial = partial.and_then(|(path, mut chunks)| {
                    let f = super::tree::join(&l.staging(), &path);
                    if !std::fs::symlink_metadata(&f).is_ok_and(|m| m.is_file())
                        || std::fs::rename(&f, l.partial()).is_err()
                    {
                        return None;
                    }
                    chunks.truncate(resume::intact_prefix(&l.partial(), &chunks));
                    (!chunks.is_empty()).then_some((path, chunks))
                });
                let prev_dir = id.as_ref().map(|id| l.snapshot(id));
                let kept = resume::reconcile(&l.staging(), prev_dir.as_deref(), &prev, records)?;
                Ok::<_, anyhow::Error>((kept, partial))
            }),
        )
        .await?;
        match r {
            Ok(kept) => Some(kept),
            Err(e) => {
                tracing::warn!("cannot resume the interrupted iteration: {e:#}");
                snapshot::remove_tree(&layout.staging())?;
                let _ = std::fs::remove_file(layout.journal());
                None
            }
        }
    } else {
        None
    };
    wire::send(
        tls,
        &Msg::Ready {
            latest: latest_id.clone(),
            resumed: resumed.is_some(),
            timeout_ms: listen.timeout.map(|t| t.as_millis() as u64),
        },
    )
    .await?;
    if let Some((kept, partial)) = &resumed {
        tracing::info!(
            "resuming an interrupted iteration: {} files already here{}",
            kept.len(),
            if partial.is_some() {
                ", one in part"
            } else {
                ""
            }
        );
        wire::send_records(
            tls,
            kept.iter().map(|(p, r)| (p.clone(), r.clone())),
            partial.clone(),
        )
        .await?;
    }
    let resumable = resumed.is_some();
    let (resumed, partial) = resumed.unwrap_or_default();
    let partial = partial.map(|(p, c)| (p, layout.partial(), c));
    // The previous snapshot's index and the hardlink farm, built while the source walks.
    let l = layout.clone();
    let id_for_farm = latest_id.clone();
    let ready = prefarmed
        .take()
        .is_some_and(|p| Some(&p) == latest_id.as_ref());
    let farm = tokio::task::spawn_blocking(move || -> anyhow::Result<(Index, Journal, bool)> {
        let t = Instant::now();
        let prev = match &id_for_farm {
            Some(id) => Index::load(&l.index(id))?,
            None => Index::default(),
        };
        let prev_dir = id_for_farm.as_ref().map(|id| l.snapshot(id));
        if resumable {
            return Ok((prev, Journal::reopen(&l.journal())?, false));
        }
        let prepared = ready && l.next().is_dir();
        if prepared {
            std::fs::rename(l.next(), l.staging())
                .with_context(|| format!("cannot use {}", l.next().display()))?;
        } else {
            snapshot::remove_tree(&l.next())?;
            match prev_dir {
                Some(d) => link_farm(&d, &l.staging(), &prev)?,
                None => std::fs::create_dir(l.staging())
                    .with_context(|| format!("cannot create {}", l.staging().display()))?,
            }
        }
        let journal = Journal::create(&l.journal(), id_for_farm.as_deref())?;
        tracing::debug!("staging tree ready in {:?}", t.elapsed());
        Ok((prev, journal, prepared))
    });
    // Messages go to the applier in batches of what has already arrived (at most 64, or
    // about 1 MiB of file data).
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Msg>>(8);
    let mut batch: Vec<Msg> = Vec::new();
    let mut weight = 0usize;
    let staging = layout.staging();
    let prev_dir = latest_id.as_ref().map(|id| layout.snapshot(id));
    let applier = tokio::task::spawn_blocking(move || {
        let (prev, journal, dirs_ready) = tokio::runtime::Handle::current()
            .block_on(farm)
            .context("the link farm panicked")??;
        let start = apply::Staged {
            staging,
            prev_dir,
            prev,
            resumed,
            journal,
            dirs_ready,
            partial,
        };
        apply::run(&mut rx, start, threads)
    });
    let mut applier = Some(applier);
    loop {
        let msg = match listen.recv(tls).await {
            Ok(Some(m)) => m,
            Ok(None) => bail!("the source closed the connection mid-iteration"),
            Err(e) => {
                drop(tx);
                if let Some(a) = applier.take() {
                    let _ = a.await;
                }
                return Err(e.context("the connection to the source broke"));
            }
        };
        match msg {
            Msg::WantIndex => {
                let id = latest_id.clone().context("there is no snapshot to index")?;
                let file = layout.index(&id);
                let idx = wire::alive(tls, tokio::task::spawn_blocking(move || Index::load(&file)))
                    .await??;
                wire::send_records(tls, idx.entries.into_iter(), None).await?;
            }
            Msg::Commit { .. } => {
                batch.push(msg);
                let _ = wire::alive(tls, tx.send(std::mem::take(&mut batch))).await;
                break;
            }
            other => {
                weight += match &other {
                    Msg::Small { data, .. } | Msg::Data { data, .. } => data.bytes.len(),
                    _ => 64,
                };
                batch.push(other);
                let more_waiting = tls.buffer().len() >= 4;
                if !more_waiting || batch.len() >= 64 || weight >= 1 << 20 {
                    weight = 0;
                    // The applier may be busy for minutes (the link farm of a large tree, a
                    // huge file): the source, whose writes then stall, hears keepalives.
                    let handed = wire::alive(tls, tx.send(std::mem::take(&mut batch))).await;
                    if handed.is_err() {
                        break;
                    }
                }
            }
        }
    }
    drop(tx);
    // From here the source waits for `Published`: the rest of the stream applied, the
    // `syncfs`, the publish.
    let applied = wire::alive(tls, applier.take().context("the applier is gone")?)
        .await
        .context("the applier panicked")??;
    tracing::debug!("stream applied at {:?}", started.elapsed());
    let (id, time) = new_id(latest_id.as_deref())?;
    let mut index = applied.index;
    index.snapshot = Some(id.clone());
    let (files, bytes) = index.totals();
    let info = SnapshotInfo {
        id: id.clone(),
        time,
        files,
        bytes,
        duration_ms: started.elapsed().as_millis() as u64,
        consistent: applied.consistent,
    };
    let l = layout.clone();
    let publish = tokio::task::spawn_blocking(move || -> anyhow::Result<Index> {
        l.publish(&index, &info)?;
        Ok(index)
    });
    let index = wire::alive(tls, publish).await??;
    tracing::debug!("published at {:?}", started.elapsed());
    // Problems repeat each iteration until mended: a tree of files whose owner this side
    // cannot set says so of every one, so the answer names the first ones (a frame is
    // bounded) and counts the rest.
    let mut problems = applied.problems;
    if let Some(first) = problems.first() {
        tracing::warn!(
            snapshot = %id,
            count = problems.len(),
            first = %first,
            "metadata this side could not set (extended attributes are sent again next time)"
        );
    }
    let fit = fitting(&problems, MAX_PROBLEMS_SAID, MAX_PROBLEMS_BYTES);
    if fit < problems.len() {
        let more = problems.len() - fit;
        problems.truncate(fit);
        problems.push(format!("… and {more} more"));
    }
    // The paths that lack an attribute, up to a megabyte of them; past that the source
    // compares with this side's index instead.
    let mut unset = applied.unset;
    let unset_count = unset.len();
    let fit = fitting(&unset, usize::MAX, MAX_PROBLEMS_BYTES);
    let unset_more = fit < unset.len();
    unset.truncate(fit);
    wire::send(
        tls,
        &Msg::Published {
            id: id.clone(),
            problems,
            unset,
            unset_more,
        },
    )
    .await?;
    // Retention and the next iteration's staging tree, now that nothing waits for them.
    let l = layout.clone();
    let from = id.clone();
    let prepared = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        if let Err(e) = l.retain(keep) {
            tracing::warn!("cannot remove old snapshots: {e:#}");
        }
        snapshot::remove_tree(&l.next())?;
        let t = Instant::now();
        link_farm(&l.snapshot(&from), &l.next(), &index)?;
        snapshot::finish_farm(&l.next(), &index)?;
        tracing::debug!("next staging tree prepared in {:?}", t.elapsed());
        Ok(())
    })
    .await?;
    match prepared {
        Ok(()) => *prefarmed = Some(id.clone()),
        Err(e) => tracing::warn!("cannot prepare the next staging tree: {e:#}"),
    }
    Ok(Some(Outcome {
        id,
        files,
        bytes,
        files_written: applied.files_written,
        bytes_written: applied.bytes_written,
        deleted: applied.deleted,
        consistent: applied.consistent,
        unset: unset_count,
    }))
}

#[cfg(test)]
mod tests {
    /// A latest id years ahead of the clock (a clock that ran ahead once): the next id comes
    /// right after it, without stepping a millisecond at a time from now.
    #[test]
    fn an_id_after_one_from_the_future_comes_at_once() {
        let latest = "21260101T000000.000Z";
        let (id, _) = super::new_id(Some(latest)).expect("id");
        assert_eq!(id, "21260101T000000.001Z");
        let (now, _) = super::new_id(Some("20000101T000000.000Z")).expect("id");
        assert!(now.as_str() > "2026", "{now}");
    }
}
