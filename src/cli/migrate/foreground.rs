//! One job of `ferry migrate` run in the foreground: recorded (or resumed), run to its end
//! or a signal with the progress shown, then reported (and verified with `--verify`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::anyhow;

use super::check::verify;
use super::progress::{progress, report};
use super::{MigrateArgs, job_err as usage};
use crate::jobs;
use crate::jobs::run::{Ended, Runner, Settings};
use crate::jobs::spec::MigrateSpec;
use crate::registry::Registry;
use crate::state::Db;

pub(super) struct Job<'a> {
    pub registry: &'a Registry,
    pub db: &'a Db,
    pub spec: &'a MigrateSpec,
    pub fingerprint: &'a str,
    pub args: &'a MigrateArgs,
    pub bandwidth: Option<u64>,
    pub as_json: bool,
    /// A resumed job is followed by another listing: `--verify` waits for that one.
    pub relist_if_resumed: bool,
}

/// Records the job (or finds the unfinished one of the same command) and runs it; returns
/// whether it was resumed.
pub(super) async fn run_job(job: Job<'_>) -> anyhow::Result<bool> {
    let Job {
        registry,
        db,
        spec,
        fingerprint,
        args,
        bandwidth,
        as_json,
        relist_if_resumed,
    } = job;
    let jobs::Submitted {
        job: rec,
        resumed,
        src,
        dst,
    } = jobs::submit(registry, spec, fingerprint, args.verify)
        .await
        .map_err(usage)?;
    if resumed {
        eprintln!(
            "ferry: resuming job {} ({} of {} objects done, listing {})",
            rec.id,
            rec.done,
            rec.listed,
            if rec.listing_done {
                "complete"
            } else {
                "in progress"
            }
        );
        // Settings that are not part of "the same command" stay as the job was made.
        if let Ok(stored) = serde_json::from_value::<MigrateSpec>(rec.spec.clone()) {
            let (was, now) = (&stored.options, &spec.options);
            for (what, a, b) in [
                ("--part-size", was.part_size, now.part_size),
                (
                    "--multipart-threshold",
                    was.multipart_threshold,
                    now.multipart_threshold,
                ),
                (
                    "--attempts",
                    u64::from(was.max_attempts),
                    u64::from(now.max_attempts),
                ),
            ] {
                if a != b {
                    eprintln!(
                        "ferry: job {} keeps its {what} {a}, not {b} (cancel it to start over with new settings)",
                        rec.id
                    );
                }
            }
        }
        if rec.state == crate::state::job_state::PAUSED {
            eprintln!(
                "ferry: job {} is paused: this process waits until `ferry job resume {}`",
                rec.id, rec.id
            );
        }
    }
    // A resumed job keeps the options it was created with (part size above all, so recorded
    // parts still fit).
    let stored: MigrateSpec = serde_json::from_value(rec.spec.clone())
        .map_err(|e| anyhow!("job {}: stored spec is unreadable: {e}", rec.id))?;
    let settings = Settings::new(args.workers.unwrap_or(32), bandwidth);
    let check = (src.clone(), dst.clone(), stored.clone());
    let runner =
        Arc::new(Runner::new(db.clone(), rec.id, stored, src, dst, &settings).map_err(usage)?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Ctrl-C or SIGTERM (a service manager, `timeout`): the job stops at a part boundary
    // and the process exits with the status the signal names.
    let signalled = Arc::new(std::sync::atomic::AtomicU8::new(0));
    {
        let signalled = signalled.clone();
        tokio::spawn(async move {
            let status = crate::cli::serve::shutdown_signal().await;
            signalled.store(u8::try_from(status).unwrap_or(1), Ordering::Relaxed);
            let _ = stop_tx.send(true);
        });
    }
    let started = Instant::now();
    let progress = tokio::spawn(progress(db.clone(), rec.clone(), runner.clone()));
    let live = runner.live.clone();
    let ended = runner.run(stop_rx).await;
    progress.abort();
    let _ = progress.await;
    let ended = ended.map_err(usage)?;
    match ended {
        Ended::Stopped => {
            let message = format!(
                "stopped; run the same command again to resume job {}",
                rec.id
            );
            match signalled.load(Ordering::Relaxed) {
                0 => Err(anyhow!(message)),
                status => Err(crate::cli::Interrupted { status, message }.into()),
            }
        }
        Ended::Cancelled(r) => Err(anyhow!("job {} was cancelled", r.id)),
        Ended::Done(r) => {
            if r.listed == 0 && r.unchanged == 0 && !as_json {
                let o = &spec.options;
                let filtered = !o.include.is_empty()
                    || !o.exclude.is_empty()
                    || o.newer_than_ms.is_some()
                    || o.older_than_ms.is_some();
                if filtered {
                    eprintln!(
                        "ferry: warning: nothing under {} passes the filters (--include, --exclude, --newer-than, --older-than)",
                        check.0.display
                    );
                } else {
                    // rclone says "directory not found"; an empty source is as likely a typo.
                    eprintln!(
                        "ferry: warning: nothing found under {} (a prefix names a folder: s3://b/p copies the keys under p/)",
                        check.0.display
                    );
                }
            }
            let vanished = live.vanished.load(Ordering::Relaxed);
            // `--json` prints one document: the last job's, when a listing follows this one
            // (it does not after dead letters: the run ends with them).
            if !(as_json && resumed && relist_if_resumed && r.dead == 0) {
                report(db, &r, started.elapsed(), vanished, as_json).await?;
            }
            if vanished > 0 {
                let keys = live
                    .vanished_keys
                    .lock()
                    .map(|k| {
                        k.iter()
                            .map(|k| crate::cli::shown(k).into_owned())
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                let more = vanished.saturating_sub(keys.len() as u64);
                eprintln!(
                    "ferry: warning: {vanished} {} vanished from the source while the job ran, not copied: {}{}",
                    crate::cli::objects(vanished),
                    keys.join(", "),
                    if more > 0 {
                        format!(" (and {more} more)")
                    } else {
                        String::new()
                    }
                );
            }
            if r.dead > 0 {
                // Entries the listing could not index (names that are not UTF-8, unreadable
                // folders) are not put back by `retry-dead`: the fix is at the source.
                let retriable = db.retriable_dead(r.id).await.unwrap_or(r.dead);
                let hint = match retriable {
                    0 => "fix them at the source (rename them, make them readable): the next \
                          run lists them again"
                        .to_owned(),
                    n if n == r.dead => format!("`ferry job retry-dead {}` tries them again", r.id),
                    n => format!(
                        "`ferry job retry-dead {}` tries {n} of them again; the other {} need a \
                         fix at the source, and the next run lists them again",
                        r.id,
                        r.dead - n
                    ),
                };
                return Err(anyhow!(
                    "job {} finished, but {} {} could not be copied (see above; {hint})",
                    r.id,
                    r.dead,
                    crate::cli::objects(r.dead as u64),
                ));
            }
            if args.verify && !(resumed && relist_if_resumed) {
                verify(&check, &r).await?;
            }
            Ok(resumed)
        }
    }
}
