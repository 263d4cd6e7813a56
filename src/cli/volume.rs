//! `ferry volume ...`: run a destination or a source, list snapshots, promote one.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::{Incomplete, UsageError};
use crate::state::VolumeIteration;
use crate::volume::dest::{self, DestOptions};
use crate::volume::metrics::{self, VolumeMetrics};
use crate::volume::snapshot::{self, Layout};
use crate::volume::source::{self, Report, SourceOptions};
use crate::volume::status;
use crate::volume::tls::Secret;
use crate::volume::tree::XattrPolicy;

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// Receive a tree: generate keys once, write the source's secret, serve iterations.
    #[command(
        after_help = "Example:\n  ferry volume destination --dir /srv/replica --listen 0.0.0.0:7070 --secret-out app.secret"
    )]
    Destination(DestinationArgs),
    /// Send a tree to the destination a secret names, once or on a schedule.
    #[command(
        after_help = "Example:\n  ferry volume source --dir /srv/app --secret app.secret --every 5m"
    )]
    Source(SourceArgs),
    /// Recent iterations of either side, from its state database.
    Status {
        /// The directory the source or destination runs on.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// State database (default: DIR/.ferry/state.db).
        #[arg(long, value_name = "URL")]
        db: Option<String>,
        /// Iterations to show.
        #[arg(
            long,
            allow_negative_numbers = true,
            default_value_t = 10,
            value_name = "N"
        )]
        limit: i64,
    },
    /// List a destination's snapshots (oldest first).
    Snapshots {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Materialise a snapshot (default: the latest) as a writable tree.
    #[command(after_help = "Example:\n  ferry volume promote --dir /srv/replica --to /srv/app")]
    Promote {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, value_name = "ID")]
        snapshot: Option<String>,
        #[arg(long, value_name = "PATH")]
        to: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct DestinationArgs {
    /// The destination directory (snapshots live under DIR/.ferry/).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    listen: String,
    /// Write the connection secret for the source here (mode 0600).
    #[arg(long, value_name = "FILE")]
    secret_out: Option<PathBuf>,
    /// Snapshots to keep.
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 7,
        value_name = "N"
    )]
    keep: usize,
    /// Writer threads.
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 4,
        value_name = "N"
    )]
    threads: usize,
    /// State database for the iteration history (default: DIR/.ferry/state.db).
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    /// Serve Prometheus metrics on this address (`GET /metrics`).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Give an iteration up when its source sends nothing for this many seconds (a frozen or
    /// cut-off source would otherwise hold the destination); its work is kept for the next
    /// iteration to resume. 0 waits for ever.
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 300,
        value_name = "SECS"
    )]
    timeout: u64,
}

#[derive(Args, Debug)]
pub struct SourceArgs {
    /// The tree to send (a top-level `.ferry` directory in it is never sent).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The secret the destination wrote with --secret-out.
    #[arg(long, value_name = "FILE")]
    secret: PathBuf,
    /// Run one iteration and exit.
    #[arg(long, conflicts_with = "every")]
    once: bool,
    /// Run an iteration every interval (e.g. 30s, 5m, 1h).
    #[arg(long, value_name = "INTERVAL")]
    every: Option<String>,
    /// A shell command run before each iteration (e.g. to freeze an application); the
    /// iteration is skipped if it fails.
    #[arg(long, value_name = "CMD")]
    pre_hook: Option<String>,
    /// A shell command run after each iteration, whatever its outcome.
    #[arg(long, value_name = "CMD")]
    post_hook: Option<String>,
    /// At most this many bytes per second on the wire (e.g. 50M; 0 is no limit).
    #[arg(long, value_name = "RATE")]
    bandwidth_limit: Option<String>,
    /// Read the live files even where the filesystem could clone them (by default files are
    /// cloned first by reflink on btrfs/xfs, a point-in-time image).
    #[arg(long)]
    no_image: bool,
    /// Never compress file data on the wire.
    #[arg(long)]
    no_compress: bool,
    /// Also send `security.*` extended attributes.
    #[arg(long)]
    xattrs_security: bool,
    /// Also send `trusted.*` extended attributes.
    #[arg(long)]
    xattrs_trusted: bool,
    /// Reader threads (also the depth of reads in flight on a cold cache).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 8,
        value_name = "N"
    )]
    threads: usize,
    /// State database for the iteration history (default: DIR/.ferry/state.db).
    #[arg(long, value_name = "URL")]
    db: Option<String>,
    /// Serve Prometheus metrics on this address (`GET /metrics`).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Give an iteration up when nothing crosses the connection for this many seconds (a
    /// frozen or cut-off destination would otherwise hold the source); the destination
    /// resumes it next time. 0 waits for ever; otherwise at least 15.
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 300,
        value_name = "SECS"
    )]
    timeout: u64,
    /// Replicate the tree even if it is empty while the last snapshot is not (refused
    /// otherwise: an unmounted filesystem would replace every snapshot, one per iteration).
    #[arg(long)]
    allow_empty: bool,
}

/// The most `--threads` (more only cost memory and scheduling: a probe's 100,000 made a
/// six-file iteration take seconds).
const MAX_THREADS: usize = 256;

/// `--threads`, `--metrics-listen` and `--db` checked before anything starts: bad usage
/// (exit 2) naming the flag, not a failure later.
fn check_common(threads: usize, metrics: Option<&str>, db: Option<&str>) -> Result<(), UsageError> {
    if !(1..=MAX_THREADS).contains(&threads) {
        return Err(UsageError(format!(
            "--threads {threads}: expected 1 to {MAX_THREADS}"
        )));
    }
    if let Some(addr) = metrics {
        use std::net::ToSocketAddrs;
        if addr.to_socket_addrs().is_err() {
            return Err(UsageError(format!(
                "--metrics-listen {addr:?}: not an address (host:port)"
            )));
        }
    }
    if let Some(url) = db {
        crate::state::check_url(url).map_err(UsageError)?;
    }
    Ok(())
}

/// The longest `--every` (a longer one would overflow a clock, and is a job for cron).
const MAX_INTERVAL_SECS: u64 = 366 * 86_400;

fn parse_interval(s: &str) -> Result<Duration, UsageError> {
    let bad = || {
        UsageError(format!(
            "--every {s:?}: expected seconds, or a number with s, m, h or d (e.g. 5m), from 1s to 366d"
        ))
    };
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(unit_secs) {
        Some(secs) if (1..=MAX_INTERVAL_SECS).contains(&secs) => Ok(Duration::from_secs(secs)),
        _ => Err(bad()),
    }
}

pub async fn run(cmd: VolumeCommand, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        VolumeCommand::Destination(a) => {
            if a.keep == 0 {
                return Err(UsageError("--keep must be at least 1".into()).into());
            }
            check_common(a.threads, a.metrics_listen.as_deref(), a.db.as_deref())?;
            {
                use std::net::ToSocketAddrs;
                if a.listen.to_socket_addrs().is_err() {
                    return Err(UsageError(format!(
                        "--listen {:?}: not an address (host:port)",
                        a.listen
                    ))
                    .into());
                }
            }
            dest::serve(DestOptions {
                dir: a.dir,
                db: a.db,
                metrics_listen: a.metrics_listen,
                listen: a.listen,
                secret_out: a.secret_out,
                keep: a.keep,
                threads: a.threads,
                timeout: (a.timeout > 0).then(|| std::time::Duration::from_secs(a.timeout)),
            })
            .await
        }
        VolumeCommand::Source(a) => source_loop(a, as_json).await,
        VolumeCommand::Status { dir, db, limit } => {
            if !dir.is_dir() {
                return Err(UsageError(format!("--dir {}: not a directory", dir.display())).into());
            }
            let db = status::open_db(&dir, db.as_deref()).await?;
            let st = status::status(&db, &dir, limit).await?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&st)?);
                return Ok(());
            }
            println!("{}", st.volume);
            match &st.last_success {
                Some(i) => println!(
                    "  last good iteration: {} ({}, snapshot {}, {:.1} s)",
                    rfc3339(i.ended_ms),
                    i.role,
                    i.snapshot.as_deref().unwrap_or("-"),
                    (i.ended_ms - i.started_ms) as f64 / 1000.0
                ),
                None => println!("  no good iteration yet"),
            }
            println!(
                "  in sync: {}; failures in a row: {}",
                if st.out_of_sync { "no" } else { "yes" },
                st.consecutive_failures
            );
            for i in &st.recent {
                println!(
                    "  {}  {:<11} {:>6.1} s  {:>8} files sent  {:>12} bytes sent  {:>12} on the wire  {}",
                    rfc3339(i.started_ms),
                    i.role,
                    (i.ended_ms - i.started_ms) as f64 / 1000.0,
                    i.files_sent,
                    i.bytes_sent,
                    i.wire_bytes,
                    match (&i.error, i.consistent) {
                        (Some(e), _) => format!("FAILED: {e}"),
                        (None, true) => i.snapshot.clone().unwrap_or_default(),
                        (None, false) => format!(
                            "{} (not consistent)",
                            i.snapshot.clone().unwrap_or_default()
                        ),
                    }
                );
            }
            Ok(())
        }
        VolumeCommand::Snapshots { dir } => {
            if !dir.is_dir() {
                return Err(UsageError(format!("--dir {}: not a directory", dir.display())).into());
            }
            let list = Layout::new(&dir).list()?;
            if as_json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no snapshots in {}", dir.display());
            } else {
                println!(
                    "{:<22} {:<26} {:>10} {:>14} {:>10}  consistent",
                    "ID", "TIME", "FILES", "BYTES", "SECONDS"
                );
                for s in list {
                    println!(
                        "{:<22} {:<26} {:>10} {:>14} {:>10.1}  {}",
                        s.id,
                        s.time,
                        s.files,
                        s.bytes,
                        s.duration_ms as f64 / 1000.0,
                        if s.consistent { "yes" } else { "no" }
                    );
                }
            }
            Ok(())
        }
        VolumeCommand::Promote { dir, snapshot, to } => {
            let layout = Layout::new(&dir);
            let id = match snapshot {
                Some(id) => {
                    if !layout.list()?.iter().any(|s| s.id == id) {
                        return Err(UsageError(format!(
                            "--snapshot {id}: no such snapshot in {}",
                            dir.display()
                        ))
                        .into());
                    }
                    id
                }
                None => {
                    layout
                        .latest()?
                        .with_context(|| format!("{} holds no snapshot", dir.display()))?
                        .id
                }
            };
            let from = layout.snapshot(&id);
            let to2 = to.clone();
            let (files, bytes) =
                tokio::task::spawn_blocking(move || snapshot::promote(&from, &to2)).await??;
            if as_json {
                println!(
                    "{}",
                    serde_json::json!({"snapshot": id, "to": to, "files": files, "bytes": bytes})
                );
            } else {
                println!(
                    "promoted snapshot {id} to {}: {files} files, {bytes} bytes",
                    to.display()
                );
            }
            Ok(())
        }
    }
}

async fn source_loop(a: SourceArgs, as_json: bool) -> anyhow::Result<()> {
    check_common(a.threads, a.metrics_listen.as_deref(), a.db.as_deref())?;
    let every = match (&a.every, a.once) {
        (Some(e), _) => Some(parse_interval(e)?),
        (None, true) => None,
        (None, false) => {
            return Err(
                UsageError("ferry volume source needs --once or --every INTERVAL".into()).into(),
            );
        }
    };
    if !a.secret.exists() {
        return Err(UsageError(format!("--secret {}: no such file", a.secret.display())).into());
    }
    let secret = Secret::load(&a.secret).map_err(|e| UsageError(format!("--secret: {e:#}")))?;
    // 0 is no limit, as for rsync's --bwlimit and rclone's --bwlimit.
    let bandwidth = match &a.bandwidth_limit {
        Some(s) => Some(
            crate::jobs::spec::size(s, "--bandwidth-limit")
                .map_err(|e| UsageError(e.to_string()))?,
        )
        .filter(|b| *b > 0),
        None => None,
    };
    if !a.dir.is_dir() {
        return Err(UsageError(format!("--dir {}: not a directory", a.dir.display())).into());
    }
    // The destination says it is alive every few seconds while the source waits for it.
    let least = 3 * crate::volume::wire::DEST_KEEPALIVE.as_secs();
    if a.timeout != 0 && a.timeout < least {
        return Err(UsageError(format!(
            "--timeout {}: 0 (wait for ever) or at least {least} seconds",
            a.timeout
        ))
        .into());
    }
    let timeout = (a.timeout > 0).then(|| Duration::from_secs(a.timeout));
    let opts = || SourceOptions {
        timeout,
        dir: a.dir.clone(),
        secret: secret.clone(),
        xattrs: XattrPolicy {
            security: a.xattrs_security,
            trusted: a.xattrs_trusted,
        },
        threads: a.threads.max(1),
        compress: !a.no_compress,
        bandwidth,
        image: !a.no_image,
        allow_empty: a.allow_empty,
    };
    let metrics = match &a.metrics_listen {
        Some(addr) => {
            let m = VolumeMetrics::new("source", &status::volume_name(&a.dir));
            let bound = metrics::serve(addr, m.clone()).await?;
            eprintln!("ferry volume source: metrics on http://{bound}/metrics");
            Some(m)
        }
        None => None,
    };
    let observe = |result: &anyhow::Result<Report>, took: Duration| {
        if let Some(m) = &metrics {
            match result {
                Ok(r) => m.iteration(
                    true,
                    r.consistent,
                    took,
                    r.files_sent,
                    r.bytes_sent,
                    r.wire_bytes,
                ),
                Err(_) => m.iteration(false, false, took, 0, 0, 0),
            }
        }
    };
    // Ctrl-C or SIGTERM ends an iteration where it is (the destination keeps its last
    // snapshot), but not before the iteration is recorded and the --post-hook has run: a
    // paused application (`--pre-hook` stopped it) must go on.
    let (sig_tx, mut sig) = tokio::sync::watch::channel(None::<i32>);
    tokio::spawn(async move {
        let status = super::serve::shutdown_signal().await;
        let _ = sig_tx.send(Some(status));
        // A second one stops at once, whatever the first is waiting for.
        let status = super::serve::shutdown_signal().await;
        std::process::exit(status);
    });
    let Some(every) = every else {
        let t = Instant::now();
        let result = one(&a, opts(), as_json, &mut sig).await;
        observe(&result, t.elapsed());
        let report = result?;
        if !report.changed_while_read.is_empty() {
            eprintln!(
                "ferry: warning: files changed while they were read; this snapshot is not a consistent image"
            );
        }
        if let Some(e) = unread(&report) {
            return Err(e.into());
        }
        return Ok(());
    };
    let mut next = Instant::now();
    loop {
        let t = Instant::now();
        let result = one(&a, opts(), as_json, &mut sig).await;
        observe(&result, t.elapsed());
        match result {
            Err(e) => eprintln!("ferry: iteration failed: {e:#}"),
            Ok(report) => {
                if let Some(e) = unread(&report) {
                    eprintln!("ferry: {e}");
                }
            }
        }
        next += every;
        let now = Instant::now();
        while next < now {
            tracing::warn!("missed an interval: the iteration took longer than --every");
            if let Some(m) = &metrics {
                m.missed_interval();
            }
            next += every;
        }
        tokio::select! {
            () = tokio::time::sleep_until(next.into()) => {}
            seen = sig.wait_for(Option::is_some) => {
                let status = seen.ok().and_then(|s| *s).unwrap_or(130);
                std::process::exit(status);
            }
        }
    }
}

/// `run`, unless a signal comes first: then the iteration is given up (the destination
/// keeps its last snapshot) and the error says so.
async fn interruptible<T>(
    run: impl std::future::Future<Output = anyhow::Result<T>>,
    sig: &mut tokio::sync::watch::Receiver<Option<i32>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = run => r,
        _ = sig.wait_for(Option::is_some) => Err(anyhow::anyhow!(
            "interrupted by a signal before the destination confirmed a new snapshot (it keeps \
             its last one unless it had already published; `ferry volume snapshots` there says)"
        )),
    }
}

/// What the source could not read, as the error that makes `--once` exit 23.
fn unread(report: &Report) -> Option<Incomplete> {
    let first = report.unreadable.first()?;
    Some(Incomplete(format!(
        "{} path(s) could not be read (first: {first}); snapshot {} keeps their last versions",
        report.unreadable.len(),
        report.snapshot
    )))
}

async fn hook(cmd: &str, what: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .await
        .with_context(|| format!("cannot run the {what} {cmd:?}"))?;
    if !status.success() {
        anyhow::bail!("the {what} {cmd:?} failed ({status})");
    }
    Ok(())
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

async fn one(
    a: &SourceArgs,
    opts: SourceOptions,
    as_json: bool,
    sig: &mut tokio::sync::watch::Receiver<Option<i32>>,
) -> anyhow::Result<Report> {
    let started_ms = status::now_ms();
    // The database opens while the iteration runs.
    let (dir, url) = (a.dir.clone(), a.db.clone());
    let opening = tokio::spawn(async move { status::open_db(&dir, url.as_deref()).await });
    let result = match &a.pre_hook {
        Some(cmd) => match hook(cmd, "--pre-hook").await {
            Ok(()) => interruptible(source::sync_once(opts), sig).await,
            Err(e) => Err(e),
        },
        None => interruptible(source::sync_once(opts), sig).await,
    };
    // Interrupted: the hook first (recording could wait on what the pre-hook froze).
    let interrupted = sig.borrow().is_some();
    if interrupted
        && let Some(cmd) = &a.post_hook
        && let Err(e) = hook(cmd, "--post-hook").await
    {
        eprintln!("ferry: {e:#}");
    }
    let mut rec = VolumeIteration {
        volume: status::volume_name(&a.dir),
        role: "source".into(),
        started_ms,
        ended_ms: status::now_ms(),
        ..Default::default()
    };
    match &result {
        Ok(r) => {
            rec.snapshot = Some(r.snapshot.clone());
            rec.files_scanned = r.files_scanned as i64;
            rec.bytes_scanned = r.bytes_scanned as i64;
            rec.files_sent = r.files_sent as i64;
            rec.bytes_sent = r.bytes_sent as i64;
            rec.bytes_reused = r.bytes_reused as i64;
            rec.files_deleted = r.files_deleted as i64;
            rec.wire_bytes = r.wire_bytes as i64;
            rec.consistent = r.consistent;
        }
        Err(e) => rec.error = Some(format!("{e:#}")),
    }
    match opening.await.context("the state database task panicked")? {
        Ok(db) => {
            if let Err(e) = db.record_volume_iteration(&rec).await {
                eprintln!("ferry: warning: cannot record the iteration: {e}");
            }
            db.close().await;
        }
        Err(e) => eprintln!("ferry: warning: cannot record the iteration: {e:#}"),
    }
    if !interrupted
        && let Some(cmd) = &a.post_hook
        && let Err(e) = hook(cmd, "--post-hook").await
    {
        eprintln!("ferry: {e:#}");
    }
    if let Some(status) = *sig.borrow() {
        if let Err(e) = &result {
            eprintln!("ferry: {e:#}");
        }
        std::process::exit(status);
    }
    let report = result?;
    if as_json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "snapshot {}: {} files scanned, {} sent ({} bytes, {} reused), {} deleted, {} bytes on the wire, {:.1} s{}",
            report.snapshot,
            report.files_scanned,
            report.files_sent,
            report.bytes_sent,
            report.bytes_reused,
            report.files_deleted,
            report.wire_bytes,
            report.duration_ms as f64 / 1000.0,
            if report.consistent {
                ""
            } else {
                ", NOT consistent"
            }
        );
        for p in report.problems.iter().take(20) {
            println!("  problem: {p}");
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A huge `--every` wrapped around (5124095576030432h became about an hour) or panicked
    /// after the first snapshot (overflow adding it to the clock).
    #[test]
    fn intervals_are_bounded_and_never_wrap() {
        assert_eq!(parse_interval("5m").ok(), Some(Duration::from_secs(300)));
        assert_eq!(
            parse_interval("2d").ok(),
            Some(Duration::from_secs(172_800))
        );
        for bad in [
            "0s",
            "18446744073709551615s",
            "5124095576030432h",
            "367d",
            "5x",
            "",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }
}
