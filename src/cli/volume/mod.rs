//! `ferry volume ...`: run a destination or a source, list snapshots, promote one.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

mod iterate;

use super::UsageError;
use crate::volume::dest::{self, DestOptions};
use crate::volume::snapshot::{self, Layout};
use crate::volume::status;

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

/// Refuses a `--dir` that is not a volume destination's folder (bad usage, exit 2): a
/// mistyped path, or a source's tree, is said as such rather than as "no snapshots".
fn destination_dir(dir: &std::path::Path) -> Result<(), UsageError> {
    if !dir.is_dir() {
        return Err(UsageError(format!(
            "--dir {}: not a directory",
            dir.display()
        )));
    }
    if !Layout::new(dir).snapshots().is_dir() {
        return Err(UsageError(format!(
            "--dir {}: not a volume destination (no {})",
            dir.display(),
            Layout::new(dir).snapshots().display()
        )));
    }
    Ok(())
}

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
            // Made if missing; something else there (or where a folder of it should be: a
            // file's path under it) is bad usage, as for the source.
            let nearest = a.dir.ancestors().find(|p| p.exists());
            if nearest.is_some_and(|p| !p.is_dir()) {
                return Err(
                    UsageError(format!("--dir {}: not a directory", a.dir.display())).into(),
                );
            }
            // Only the folder itself is made, as rsync makes its destination: a mistyped
            // path is said, not built.
            if !a.dir.exists()
                && let Some(parent) = a.dir.parent().filter(|p| !p.as_os_str().is_empty())
                && !parent.is_dir()
            {
                return Err(UsageError(format!(
                    "--dir {}: {} does not exist (only the last folder is made)",
                    a.dir.display(),
                    parent.display()
                ))
                .into());
            }
            // Said before anything is made: the secret is written only once listening.
            if let Some(out) = &a.secret_out {
                let folder = out
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                // The destination's folder (and its `.ferry`) are made before the secret is
                // written: a secret kept there is fine on a first start.
                let made = folder == a.dir || folder == a.dir.join(".ferry");
                if out.is_dir() || !(folder.is_dir() || made) {
                    return Err(UsageError(format!(
                        "--secret-out {}: {}",
                        out.display(),
                        if out.is_dir() {
                            "a directory, not a file".to_owned()
                        } else {
                            format!("folder {} does not exist", folder.display())
                        }
                    ))
                    .into());
                }
            }
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
        VolumeCommand::Source(a) => iterate::run(a, as_json).await,
        VolumeCommand::Status { dir, db, limit } => {
            if !dir.is_dir() {
                return Err(UsageError(format!("--dir {}: not a directory", dir.display())).into());
            }
            // Neither side has run there: said, not answered with a state database made in
            // the folder (a probe's typo left one behind).
            if db.is_none() && !dir.join(".ferry").is_dir() {
                return Err(UsageError(format!(
                    "--dir {}: no volume source or destination has run there (no {})",
                    dir.display(),
                    dir.join(".ferry").display()
                ))
                .into());
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
                    "  last finished iteration: {} ({}, snapshot {}, {:.1} s{})",
                    rfc3339(i.ended_ms),
                    i.role,
                    i.snapshot.as_deref().unwrap_or("-"),
                    (i.ended_ms - i.started_ms) as f64 / 1000.0,
                    match (i.consistent, &i.incomplete) {
                        (true, None) => "",
                        (false, _) => ", not consistent",
                        (true, Some(_)) => ", incomplete",
                    }
                ),
                None => println!("  no finished iteration yet"),
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
                    match (&i.error, i.consistent, &i.incomplete) {
                        (Some(e), _, _) => format!("FAILED: {e}"),
                        (None, true, None) => i.snapshot.clone().unwrap_or_default(),
                        (None, consistent, incomplete) => format!(
                            "{} ({})",
                            i.snapshot.clone().unwrap_or_default(),
                            [
                                (!consistent).then(|| "not consistent".to_string()),
                                incomplete.as_ref().map(|w| format!("incomplete: {w}")),
                            ]
                            .into_iter()
                            .flatten()
                            .collect::<Vec<_>>()
                            .join("; ")
                        ),
                    }
                );
            }
            Ok(())
        }
        VolumeCommand::Snapshots { dir } => {
            destination_dir(&dir)?;
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
            // A tree made in the destination's own state (a probe's `--to DIR/.ferry/
            // snapshots/x`) would sit among the snapshots, or be swept away with them.
            let state = resolved(&dir).join(".ferry");
            if resolved(&to).starts_with(&state) {
                return Err(UsageError(format!(
                    "--to {}: inside {}, where the destination keeps its snapshots and state; \
                     promote to a folder outside it",
                    to.display(),
                    state.display()
                ))
                .into());
            }
            // Promoting never writes over a tree (said here as bad usage, before any work).
            if to.read_dir().is_ok_and(|mut d| d.next().is_some()) {
                return Err(UsageError(format!(
                    "--to {}: exists and is not empty; promote into a new or empty folder",
                    to.display()
                ))
                .into());
            }
            // Only the folder itself is made, as for `destination --dir`.
            if !to.exists()
                && let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty())
                && !parent.is_dir()
            {
                return Err(UsageError(format!(
                    "--to {}: {} does not exist (only the last folder is made)",
                    to.display(),
                    parent.display()
                ))
                .into());
            }
            destination_dir(&dir)?;
            let layout = Layout::new(&dir);
            let list = layout.list()?;
            let chosen = match snapshot {
                Some(id) => list.iter().find(|s| s.id == id).ok_or_else(|| {
                    UsageError(format!(
                        "--snapshot {id}: no such snapshot in {}",
                        dir.display()
                    ))
                })?,
                None => list
                    .last()
                    .with_context(|| format!("{} holds no snapshot", dir.display()))?,
            };
            let (id, consistent) = (chosen.id.clone(), chosen.consistent);
            // Promoted all the same (after a failover it may be the newest data there is),
            // but said, with the newest one that is consistent.
            if !consistent {
                let newest = list.iter().rev().find(|s| s.consistent);
                eprintln!(
                    "ferry: warning: snapshot {id} is not consistent (a file changed while it \
                     was read, or one could not be read: see `ferry volume status`){}",
                    match newest {
                        Some(s) => format!("; the newest consistent one is {}", s.id),
                        None => "; no snapshot here is consistent".into(),
                    }
                );
            }
            let held = layout.hold(&id)?;
            let from = layout.snapshot(&id);
            let index = crate::volume::index::Index::load(&layout.index(&id))?;
            let to2 = to.clone();
            let (files, bytes) = tokio::task::spawn_blocking(move || {
                let done = snapshot::promote(&from, &index, &to2);
                drop(held);
                done
            })
            .await??;
            if as_json {
                println!(
                    "{}",
                    serde_json::json!({"snapshot": id, "consistent": consistent, "to": to, "files": files, "bytes": bytes})
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

/// A time in RFC 3339, always with milliseconds (`…:18.280Z`), so a column of them lines up
/// (the well-known format drops trailing zeros: `18.28Z`, `18Z`).
fn rfc3339(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// `path` made absolute, each existing part's symlinks resolved and `..` taken as the
/// kernel takes it (the part not made yet read as written): where it is, whichever way it
/// was written.
fn resolved(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut at = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                at.pop();
            }
            Component::CurDir => {}
            other => {
                at.push(other);
                if let Ok(real) = at.canonicalize() {
                    at = real;
                }
            }
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `volume status` lists iterations one per line: their times line up.
    #[test]
    fn times_are_shown_with_milliseconds_always() {
        assert_eq!(rfc3339(1_796_181_138_280), "2026-12-02T03:12:18.280Z");
        assert_eq!(rfc3339(1_796_181_138_000), "2026-12-02T03:12:18.000Z");
    }

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
