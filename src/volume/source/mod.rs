//! `ferry volume source`: one iteration, from connection to the saved manifest. The source
//! connects with its pinned identity, learns which snapshot the destination holds, walks the
//! tree in parallel, plans against its manifest (or the destination's index when the two
//! disagree), streams the changes without waiting for answers, and records what the
//! destination acknowledged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::index::Index;
use super::plan::Already;
use super::tls::{self, Secret};
use super::tree::{STATE_DIR, XattrPolicy, shown, walk};
use super::wire::{self, Counted, Msg, VERSION};

mod produce;
use produce::produce;

pub struct SourceOptions {
    pub dir: PathBuf,
    pub secret: Secret,
    pub xattrs: XattrPolicy,
    pub threads: usize,
    pub compress: bool,
    /// Bytes per second of file data on the wire, at most.
    pub bandwidth: Option<u64>,
    /// Read reflink clones of the files where the filesystem can.
    pub image: bool,
    /// Give the iteration up when nothing crosses the connection for this long (`None`:
    /// wait): a frozen or cut-off destination must not hold the source for ever.
    pub timeout: Option<Duration>,
    /// Replicate an empty tree over a snapshot that is not (refused otherwise).
    pub allow_empty: bool,
}

/// What one iteration did, as `ferry volume source --json` prints it.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub snapshot: String,
    pub files_scanned: u64,
    pub bytes_scanned: u64,
    pub files_sent: u64,
    pub bytes_sent: u64,
    /// Bytes of changed files that were not sent because the destination had them.
    pub bytes_reused: u64,
    pub files_deleted: u64,
    /// Files an interrupted iteration had already delivered.
    pub files_resumed: u64,
    pub wire_bytes: u64,
    pub consistent: bool,
    /// Files were read from reflink clones taken at the start (a point-in-time image).
    pub image: bool,
    pub changed_while_read: Vec<String>,
    /// Paths the source could not read (a directory it could not list, a file it could not
    /// open): the destination keeps them as the last snapshot had them, and the source exits
    /// 23.
    pub unreadable: Vec<String>,
    /// Paths the destination could not give every extended attribute (an ACL among them;
    /// `problems` says which and why): the snapshot lacks them, the source exits 23, and the
    /// next iteration sends them again, until they hold.
    pub not_applied: Vec<String>,
    pub problems: Vec<String>,
    pub duration_ms: u64,
}

fn manifest_path(dir: &Path, secret: &Secret) -> PathBuf {
    let id: String = secret.server_fingerprint.chars().take(16).collect();
    dir.join(STATE_DIR)
        .join("source")
        .join(format!("{id}.manifest"))
}

/// One iteration, given up once nothing has crossed the connection either way for the
/// options' `timeout` (the destination sends keepalives while the source waits for it).
pub async fn sync_once(opts: SourceOptions) -> anyhow::Result<Report> {
    let wire_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let Some(idle) = opts.timeout else {
        return iterate(opts, wire_bytes).await;
    };
    let addr = opts.secret.address.clone();
    tokio::select! {
        r = iterate(opts, wire_bytes.clone()) => r,
        quiet = wire::silence(&wire_bytes, idle) => Err(anyhow::Error::new(quiet))
            .with_context(|| format!("the destination at {addr} stopped answering; the iteration is given up (it resumes next time)")),
    }
}

async fn iterate(
    opts: SourceOptions,
    wire_bytes: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let root = opts.dir.clone();
    std::fs::read_dir(&root).with_context(|| format!("cannot read {}", root.display()))?;
    let manifest_file = manifest_path(&root, &opts.secret);
    // The walk and the manifest load run while the connection is made.
    let (threads, xattrs, compress) = (opts.threads, opts.xattrs, opts.compress);
    let walk_root = root.clone();
    // With a manifest, attributes are read later and only for entries whose ctime moved.
    let eager_xattrs = !manifest_file.exists();
    let walking = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let w = walk(&walk_root, threads, xattrs, eager_xattrs);
        tracing::debug!("walked {} entries in {:?}", w.0.len(), t.elapsed());
        w
    });
    // The attributes a manifest records were read under its policy: under another (a
    // `--xattrs-security` added), an unchanged file's are read again, not taken from it
    // (a probe's security.* and trusted.* never went). A manifest without the record
    // was read under the default.
    let policy_file = manifest_file.with_extension("xattrs");
    let reuse_xattrs = std::fs::read_to_string(&policy_file)
        .unwrap_or_else(|_| XattrPolicy::default().label().to_owned())
        .trim()
        == xattrs.label();
    let mf = manifest_file.clone();
    let loading = tokio::task::spawn_blocking(move || Index::load_or_empty(&mf));
    // Loaded before the connection, whose watchdog would count a long load as silence.
    let manifest = match loading.await.context("the manifest loader panicked")? {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("{e:#}; asking the destination for its index instead");
            Index::default()
        }
    };
    let addr = opts.secret.address.clone();
    let config = Arc::new(tls::client_config(&opts.secret)?);
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&addr))
        .await
        .with_context(|| format!("timed out connecting to the destination at {addr}"))?
        .with_context(|| format!("cannot connect to the destination at {addr}"))?;
    tcp.set_nodelay(true)?;
    let counted = Counted::sharing(tcp, wire_bytes.clone());
    let name = rustls::pki_types::ServerName::try_from("ferry-volume")?;
    let mut stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(config).connect(name, counted),
    )
    .await
    .with_context(|| format!("timed out in the TLS handshake with {addr}"))?
    .map_err(|e| {
        // A TLS error is about identities (a certificate that is not the pinned one, or this
        // source refused); anything else is the connection itself (the destination stopped
        // or restarted mid-handshake, something between resets connections), which must not
        // send an operator to check certificates.
        let tls = e
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
        let said = match tls {
            true => format!(
                "the TLS handshake with {addr} failed: it is not the destination this secret \
                 names"
            ),
            false => format!(
                "the connection to {addr} broke during the TLS handshake (the destination \
                 stopped or restarted, or something between resets connections)"
            ),
        };
        anyhow::Error::new(e).context(said)
    })?;
    let refused = || {
        format!(
            "the destination at {addr} refused this source (a secret from another destination, or a changed certificate?)"
        )
    };
    wire::send(
        &mut stream,
        &Msg::Hello {
            version: VERSION,
            base: manifest.snapshot.clone(),
        },
    )
    .await
    .with_context(refused)?;
    let ready = {
        let answer = wire::expect(&mut stream);
        tokio::pin!(answer);
        tokio::select! {
            r = &mut answer => r,
            _ = tokio::time::sleep(Duration::from_secs(3)) => {
                eprintln!(
                    "ferry volume source: waiting for the destination at {addr} (busy with another iteration, or resuming one)"
                );
                answer.await
            }
        }
    };
    let (latest, resuming, keepalive) = match ready.with_context(refused)? {
        Msg::Ready {
            latest,
            resumed,
            timeout_ms,
        } => (latest, resumed, wire::keepalive(timeout_ms)),
        Msg::Failed { error } => bail!("the destination at {addr} refused: {error}"),
        other => bail!("the destination sent {other:?} instead of Ready"),
    };
    let (resumed, partial) = if resuming {
        wire::read_records(&mut stream).await?
    } else {
        (Vec::new(), None)
    };
    let (mut base, trusted) = match &latest {
        None => (Index::default(), true),
        Some(id) if manifest.snapshot.as_deref() == Some(id) => (manifest, true),
        Some(_) => {
            wire::send(&mut stream, &Msg::WantIndex).await?;
            let (entries, _) = wire::read_records(&mut stream).await?;
            let idx = Index {
                snapshot: latest.clone(),
                entries: entries.into_iter().collect(),
            };
            (idx, false)
        }
    };
    // What an interrupted iteration already delivered counts as there; the last snapshot's
    // record of each such path stays at hand, since a file that changed again is sent against
    // the version the destination copies from (the snapshot's), not the journaled one.
    let mut already = Already::new();
    for (path, rec) in resumed {
        let prev = base.entries.insert(path.clone(), rec);
        already.insert(path, prev);
    }

    let (mut rd, wr) = tokio::io::split(stream);
    // The answer is read while the stream goes out: the destination's keepalives (sent while
    // its applier is busy and it reads nothing) must be heard, or the watchdog would take
    // its silence for a freeze.
    let mut reader = AbortOnDrop(tokio::spawn(async move { wire::recv(&mut rd).await }));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let limiter = opts.bandwidth.map(crate::transfer::throttle::Limiter::new);
    // Aborted if the iteration is given up: it may be blocked writing to a frozen peer.
    let mut writer = AbortOnDrop(tokio::spawn(async move {
        pump(&mut rx, wr, limiter, keepalive).await
    }));
    let producer_root = root.clone();
    let use_image = opts.image;
    tracing::debug!("connected and planned base at {:?}", started.elapsed());
    let walked = walking.await.context("the walk panicked")?;
    // An empty tree over a snapshot that holds one is more often an unmounted filesystem or
    // a wrong --dir than a deliberate emptying; published, it would also push every good
    // snapshot out of --keep in as many iterations.
    // Folders alone count as empty: a freshly made filesystem holds `lost+found` (a probe
    // replaced every file of a snapshot with it). So do devices, FIFOs and sockets, which
    // are not copied (a lone FIFO let an empty snapshot through, a probe).
    let held = base
        .entries
        .iter()
        .filter(|(k, r)| !k.is_empty() && !matches!(r.content, crate::volume::index::Content::Dir))
        .count();
    let walked_files = walked
        .0
        .iter()
        .filter(|f| {
            use crate::volume::tree::FoundKind;
            !f.path.is_empty() && !matches!(f.kind, FoundKind::Dir | FoundKind::Special)
        })
        .count();
    if !opts.allow_empty && held > 0 && walked_files == 0 {
        anyhow::bail!(
            "{} holds no files, but the last snapshot holds {held}: not replicating an empty \
             tree over it (an unmounted or freshly made filesystem?); pass --allow-empty if it \
             was emptied on purpose",
            root.display()
        );
    }
    let produced = tokio::task::spawn_blocking(move || {
        produce(
            &producer_root,
            walked,
            &base,
            (trusted, reuse_xattrs),
            &already,
            partial,
            use_image,
            tx,
            threads,
            xattrs,
            compress,
        )
    })
    .await
    .context("the source's reader panicked")?;
    // This side failed: said at once. The connection closes as the tasks are dropped, so
    // the destination gives the iteration up too, rather than waiting for its timeout and
    // answering with that, which hid this error (a probe).
    // The connection ended under the stream: a destination that failed (its disk full) said
    // why before it closed, and that is the error, not the closing (a probe saw only "the
    // connection to the destination closed").
    let produced = match produced {
        Err(e) if e.is::<produce::Closed>() => {
            let reply = tokio::time::timeout(Duration::from_secs(5), &mut reader.0).await;
            if let Ok(Ok(Ok(Some(Msg::Failed { error })))) = reply {
                bail!("the destination at {addr} failed the iteration: {error}");
            }
            return Err(e);
        }
        other => other?,
    };
    let write_result = (&mut writer.0)
        .await
        .context("the connection writer panicked")?;
    let reply = (&mut reader.0)
        .await
        .context("the connection reader panicked")?;
    let unset_paths: (Vec<Vec<u8>>, bool);
    let produced = match (write_result, reply) {
        (
            Ok(_),
            Ok(Some(Msg::Published {
                id,
                problems,
                unset,
                unset_more,
            })),
        ) => {
            let mut p = produced;
            p.report.snapshot = id;
            p.report.problems.extend(problems);
            p.report.not_applied = unset.iter().map(|u| shown(u)).collect();
            if unset_more {
                p.report.not_applied.push("… and more".into());
            }
            unset_paths = (unset, unset_more);
            p
        }
        (_, Ok(Some(Msg::Failed { error }))) => {
            bail!("the destination at {addr} failed the iteration: {error}")
        }
        (Err(e), _) => {
            return Err(e).with_context(|| format!("the connection to {addr} broke"));
        }
        (_, Err(e)) => return Err(e).with_context(|| format!("no answer from {addr}")),
        (_, Ok(None)) => bail!(
            "the destination at {addr} closed the connection before it published the snapshot \
             (it stopped, or was stopped); it keeps its last snapshot"
        ),
        (_, Ok(Some(other))) => bail!(
            "the destination at {addr} answered {} where the snapshot's id was expected",
            format!("{other:?}")
                .split([' ', '{', '('])
                .next()
                .unwrap_or("something else")
        ),
    };
    // What the destination now holds, for the next iteration. The snapshot is published
    // whatever happens here: a manifest that cannot be saved (a full disk on this side) is a
    // problem to report, not a failed iteration; the next one compares by hash instead.
    // An attribute the destination could not set makes the manifest wrong about its path (a
    // probe found a lost ACL reported once, then never again, "in sync"): such a record is
    // kept without attributes or change time, so the next iteration reads the file's again,
    // finds them missing and sends them. More paths than one answer holds: the manifest is
    // saved untagged, and the next iteration compares with the destination's index.
    let (unset, unset_more) = unset_paths;
    let tag = (!unset_more).then_some(produced.report.snapshot.as_str());
    let saved = std::fs::create_dir_all(manifest_file.parent().unwrap_or(&root))
        .map_err(anyhow::Error::from)
        .and_then(|()| Index::write_packed(&manifest_file, tag, &produced.manifest))
        .and_then(|()| {
            crate::volume::durable::write_file(&policy_file, xattrs.label().as_bytes(), 0o600)
        })
        .and_then(|()| match unset.is_empty() {
            true => Ok(()),
            false => {
                let mut m = Index::load(&manifest_file)?;
                for path in &unset {
                    if let Some(rec) = m.entries.get_mut(path) {
                        rec.meta.xattrs.clear();
                        rec.ctime = (0, 0);
                    }
                }
                Index::write_packed(&manifest_file, tag, &m.pack()?)
            }
        });
    let mut report = produced.report;
    match saved {
        Ok(()) => tracing::debug!("manifest saved at {:?}", started.elapsed()),
        Err(e) => {
            let _ = std::fs::remove_file(&manifest_file);
            report.problems.push(format!(
                "the snapshot is published, but the source's manifest could not be saved ({e:#}); the next iteration compares by hash"
            ));
        }
    }
    report.wire_bytes = wire_bytes.load(Ordering::Relaxed);
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// A task aborted when the handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Writes the producer's frames to the destination, at most at `limiter`'s rate. When none
/// comes for `keepalive` (the source is walking a large tree, or reading slowly), a flushed
/// `Keepalive` tells the destination this source is alive. Returns the writer, flushed, once
/// the producer is done.
async fn pump<W: tokio::io::AsyncWrite + Unpin>(
    rx: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
    wr: W,
    limiter: Option<crate::transfer::throttle::Limiter>,
    keepalive: Duration,
) -> std::io::Result<W> {
    let mut wr = tokio::io::BufWriter::with_capacity(256 * 1024, wr);
    loop {
        let frame = match tokio::time::timeout(keepalive, rx.recv()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                let ping = wire::encode(&Msg::Keepalive).map_err(std::io::Error::other)?;
                wr.write_all(&ping).await?;
                wr.flush().await?;
                continue;
            }
        };
        if let Some(l) = &limiter {
            l.take(frame.len()).await;
        }
        wr.write_all(&frame).await?;
    }
    wr.flush().await?;
    Ok(wr.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A producer silent for longer than the keepalive interval (a long walk) must not look
    /// frozen to the destination: keepalives go out, flushed, and the frames after them
    /// arrive whole and in order.
    #[tokio::test]
    async fn a_silent_producer_sends_keepalives() {
        let (near, mut far) = tokio::io::duplex(1 << 16);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let pumping =
            tokio::spawn(async move { pump(&mut rx, near, None, Duration::from_millis(20)).await });
        // Nothing to send yet: the destination still hears from the source.
        let first = tokio::time::timeout(Duration::from_secs(5), wire::recv_frame(&mut far))
            .await
            .expect("a keepalive within 5 s")
            .expect("a frame");
        assert!(matches!(first, Some(Msg::Keepalive)), "{first:?}");
        tx.send(wire::encode(&Msg::Abort).expect("encode"))
            .await
            .expect("send");
        drop(tx);
        pumping.await.expect("join").expect("pump");
        let mut rest = Vec::new();
        while let Some(m) = wire::recv_frame(&mut far).await.expect("recv") {
            rest.push(m);
        }
        assert!(
            matches!(rest.last(), Some(Msg::Abort)),
            "the frame after the keepalives: {rest:?}"
        );
        assert!(
            rest[..rest.len() - 1]
                .iter()
                .all(|m| matches!(m, Msg::Keepalive)),
            "{rest:?}"
        );
    }

    #[test]
    fn keepalives_come_well_within_the_destination_timeout() {
        assert_eq!(wire::keepalive(None), Duration::from_secs(10));
        assert_eq!(wire::keepalive(Some(2_000)), Duration::from_millis(500));
        assert_eq!(wire::keepalive(Some(300_000)), Duration::from_secs(10));
    }
}
