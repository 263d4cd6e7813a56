//! `ferry volume source`: the loop of iterations (`--once` or `--every`), each with its
//! hooks, its record in the state database and its one-line report.

use std::time::{Duration, Instant};

use anyhow::Context;

use super::{SourceArgs, check_common, parse_interval};
use crate::cli::{Incomplete, UsageError};
use crate::state::VolumeIteration;
use crate::volume::metrics::{self, VolumeMetrics};
use crate::volume::source::{self, Report, SourceOptions};
use crate::volume::status;
use crate::volume::tls::Secret;
use crate::volume::tree::XattrPolicy;

pub(super) async fn run(a: SourceArgs, as_json: bool) -> anyhow::Result<()> {
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
                    r.consistent && unread(r).is_none(),
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
        let status = crate::cli::serve::shutdown_signal().await;
        let _ = sig_tx.send(Some(status));
        // A second one stops at once, whatever the first is waiting for.
        let status = crate::cli::serve::shutdown_signal().await;
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

/// What the source could not read, or the destination could not set, as the error that
/// makes `--once` exit 23 (rsync's "partial transfer").
fn unread(report: &Report) -> Option<Incomplete> {
    if let Some(first) = report.unreadable.first() {
        return Some(Incomplete(format!(
            "{} path(s) could not be read (first: {first}); snapshot {} keeps their last \
             versions",
            report.unreadable.len(),
            report.snapshot
        )));
    }
    let first = report.not_applied.first()?;
    Some(Incomplete(format!(
        "the destination could not set extended attributes of {} path(s) (first: {first}; the \
         problems say why); snapshot {} lacks them, and the next iteration sends them again",
        report.not_applied.len(),
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
            rec.incomplete = unread(r).map(|i| i.0);
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
