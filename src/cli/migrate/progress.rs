//! How a foreground `ferry migrate` shows itself: a progress bar on a terminal (a log line
//! every 10 s otherwise) and the closing report with the dead letters.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::jobs::run::Runner;
use crate::state::{Db, JobRecord};

pub(super) async fn report(
    db: &Db,
    r: &JobRecord,
    took: Duration,
    vanished: u64,
    as_json: bool,
) -> anyhow::Result<()> {
    if r.dead > 0 {
        for t in db.open_tasks(r.id, 50).await? {
            if t.state == "dead" {
                // Never tried: the listing found it but nothing can copy it (a name that is
                // not UTF-8).
                let tries = match t.attempts {
                    0 => String::new(),
                    n => format!(" after {n} attempts"),
                };
                eprintln!(
                    "ferry: could not copy {}{tries}: {}",
                    crate::cli::shown(&t.key),
                    crate::cli::flat(t.error.as_deref().unwrap_or(""))
                );
            }
        }
    }
    if as_json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let secs = took.as_secs_f64().max(0.001);
    // Tasks of objects that vanished from the source are done, but nothing was copied.
    let gone = match vanished {
        0 => String::new(),
        n => format!(", {n} vanished"),
    };
    let moved = (r.done as u64).saturating_sub(vanished);
    println!(
        "job {} done: {moved} {} ({}) copied or deleted{gone}, {} unchanged, {} failed, in {:.1}s",
        r.id,
        crate::cli::objects(moved),
        human(r.done_bytes as u64),
        r.unchanged,
        r.dead,
        secs
    );
    Ok(())
}

/// Shows progress: a bar on a terminal, a log line every 10 s otherwise.
pub(super) async fn progress(db: Db, start: JobRecord, runner: Arc<Runner>) {
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b
    });
    let began = Instant::now();
    let every = if tty {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(10)
    };
    loop {
        tokio::time::sleep(every).await;
        let Ok(r) = db.job(start.id).await else {
            continue;
        };
        let moved = runner.live.moved.load(Ordering::Relaxed);
        let failures = runner.live.failures.load(Ordering::Relaxed);
        let pos = (start.done_bytes as u64 + moved).min(r.listed_bytes as u64);
        // Attempts, not objects: one object retried ten times fails ten attempts; the
        // objects given up on are the dead letters.
        // A side that stopped answering mid-run: the copies wait for it without spending
        // attempts, which the counts alone do not show (a probe read them as a hang).
        let waiting = runner
            .unanswered_for()
            .map(|d| {
                format!(
                    "; a side has not answered for {} s, copies wait for it (the run stops after {} s)",
                    d.as_secs(),
                    crate::jobs::run::OUTAGE_LIMIT.as_secs()
                )
            })
            .unwrap_or_default();
        let msg = format!(
            "{}/{}{} objects, {} dead, {} attempts failed{}{waiting}",
            r.done,
            r.listed,
            if r.listing_done { "" } else { "+" },
            r.dead,
            failures,
            if r.state == "paused" { " (paused)" } else { "" }
        );
        match &bar {
            Some(b) => {
                b.set_length(r.listed_bytes as u64);
                b.set_position(pos);
                b.set_message(msg);
            }
            None if r.state == "paused" => {
                eprintln!(
                    "ferry: job {}: {msg}, {}/{}",
                    r.id,
                    human(pos),
                    human(r.listed_bytes as u64)
                );
            }
            None => {
                let rate = moved as f64 / began.elapsed().as_secs_f64().max(0.001);
                let left = (r.listed_bytes as u64).saturating_sub(pos) as f64;
                eprintln!(
                    "ferry: job {}: {msg}, {}/{} at {}/s, ETA {}",
                    r.id,
                    human(pos),
                    human(r.listed_bytes as u64),
                    human(rate as u64),
                    if rate > 0.0 {
                        format!("{:.0}s", left / rate)
                    } else {
                        "-".into()
                    }
                );
            }
        }
    }
}

/// Bytes in binary units (`12.3 MiB`).
pub fn human(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}
