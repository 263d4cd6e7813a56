//! `ferry job list|show|pause|resume|cancel|dead|retry-dead` and `ferry worker`: jobs as recorded
//! in the state database (`--data` or `--db`), whichever process runs them.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use serde_json::json;

use super::migrate::{human, job_err, open_state};
use crate::jobs::control::{self, DEAD_PAGE};
use crate::jobs::run::Settings;
use crate::registry::Registry;
use crate::state::{DeadTask, JobRecord};

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// List jobs.
    List(DbArg),
    /// A job's progress, in-flight uploads with their finished parts, and dead letters.
    Show(JobArg),
    /// Stop a job's transfers at a part boundary; waits until none runs.
    Pause(JobArg),
    Resume(JobArg),
    /// Stop a job for good and abort its unfinished multipart uploads.
    Cancel(JobArg),
    /// Every dead letter of a job (objects that could not be copied) with its last error;
    /// one JSON document per line with --json.
    Dead(JobArg),
    /// Put a job's dead-letter tasks back in its queue.
    RetryDead(JobArg),
}

#[derive(Args, Debug)]
pub struct DbArg {
    /// PostgreSQL state database (default: SQLite under --data).
    #[arg(long, env = "FERRY_DB", value_name = "URL", hide_env_values = true)]
    pub db: Option<String>,
}

#[derive(Args, Debug)]
pub struct JobArg {
    pub id: i64,
    #[command(flatten)]
    pub db: DbArg,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Objects copied at once, per job.
    #[arg(long, default_value_t = 32)]
    pub workers: usize,
    /// Bytes per second this worker's jobs may move together, like 50M (0: no limit).
    #[arg(long, value_name = "RATE")]
    pub bandwidth_limit: Option<String>,
}

pub async fn run(
    cmd: JobCommand,
    data: Option<PathBuf>,
    server: Option<String>,
    as_json: bool,
) -> anyhow::Result<()> {
    let url = match &cmd {
        JobCommand::List(d) => d.db.clone(),
        JobCommand::Show(j)
        | JobCommand::Pause(j)
        | JobCommand::Resume(j)
        | JobCommand::Cancel(j)
        | JobCommand::Dead(j)
        | JobCommand::RetryDead(j) => j.db.db.clone(),
    };
    // Named a server (`--server`, FERRY_SERVER) and no --db: that server's jobs, through its
    // admin API, from any machine; otherwise the state database under --data (or --db),
    // whether a server runs or not.
    if server.is_some() && url.is_none() {
        let client = super::client::AdminClient::new(server, data.as_deref())?;
        return remote(cmd, &client, as_json).await;
    }
    // Looking at jobs must not make a state database where there was none (a mistyped
    // --data, or a command run from the wrong directory).
    let dir = data.clone().unwrap_or_else(|| PathBuf::from("ferry-data"));
    if url.is_none() && !dir.join("state.db").exists() {
        anyhow::bail!(
            "no job state in {} (no `ferry migrate` ran with that --data; --db names a shared database)",
            dir.display()
        );
    }
    let (db, data) = open_state(url.as_deref(), data).await?;
    match cmd {
        JobCommand::List(_) => print_jobs(&db.jobs().await?, as_json)?,
        JobCommand::Show(j) => {
            print_detail(control::detail(&db, j.id, SHOWN_TASKS).await?, as_json)?
        }
        JobCommand::Pause(j) => report(
            Done::Paused {
                job: j.id,
                parts: control::pause(&db, j.id).await? as u64,
            },
            as_json,
        )?,
        JobCommand::Resume(j) => {
            control::resume(&db, j.id).await?;
            report(Done::Resumed { job: j.id }, as_json)?;
        }
        JobCommand::Cancel(j) => {
            let c = control::cancel(&Registry::new(db.clone(), &data), j.id).await?;
            report(
                Done::Cancelled {
                    job: j.id,
                    aborted: c.aborted as u64,
                    not_aborted: c.not_aborted,
                },
                as_json,
            )?;
        }
        JobCommand::Dead(j) => {
            db.job(j.id).await?;
            let mut lister = DeadLister::new(j.id, as_json);
            loop {
                let page = db.dead_tasks(j.id, lister.after, DEAD_PAGE).await?;
                if !lister.print(page) {
                    break;
                }
            }
        }
        JobCommand::RetryDead(j) => report(
            Done::Requeued {
                job: j.id,
                n: control::retry_dead(&db, j.id).await?,
            },
            as_json,
        )?,
    }
    Ok(())
}

/// What a job command did, said the same whether the database or a server's API did it.
enum Done {
    Paused {
        job: i64,
        parts: u64,
    },
    Resumed {
        job: i64,
    },
    Cancelled {
        job: i64,
        aborted: u64,
        not_aborted: Option<String>,
    },
    Requeued {
        job: i64,
        n: u64,
    },
}

/// Says what a control did; a cancel that left uploads on the destination is an error
/// (exit 1: a script must not read the job as cleaned up).
fn report(done: Done, as_json: bool) -> anyhow::Result<()> {
    let (v, text) = match &done {
        Done::Paused { job, parts } => (
            json!({ "job": job, "state": "paused", "recorded_parts": parts }),
            format!(
                "job {job} paused; no transfer runs; {parts} finished parts of unfinished uploads are recorded"
            ),
        ),
        Done::Resumed { job } => (
            json!({ "job": job, "state": "running" }),
            format!("job {job} resumed"),
        ),
        Done::Cancelled {
            job,
            aborted,
            not_aborted,
        } => (
            json!({ "job": job, "state": "cancelled", "aborted_uploads": aborted, "uploads_not_aborted": not_aborted }),
            format!(
                "job {job} cancelled{}",
                match aborted {
                    0 => String::new(),
                    n => format!("; {n} unfinished multipart uploads aborted"),
                }
            ),
        ),
        Done::Requeued { job, n } => (
            json!({ "job": job, "requeued": n }),
            format!(
                "job {job}: {n} tasks back in the queue{}",
                if *n > 0 {
                    " (a running `ferry migrate` of the job, `ferry worker` or `ferry serve` copies them)"
                } else {
                    ""
                }
            ),
        ),
    };
    say(as_json, v, text);
    if let Done::Cancelled {
        job,
        not_aborted: Some(e),
        ..
    } = done
    {
        return Err(anyhow::anyhow!(
            "some unfinished multipart uploads of job {job} could not be aborted and stay on the destination: {e} (`ferry job cancel {job}` again, with the destination's credentials, aborts them)"
        ));
    }
    Ok(())
}

/// Prints `v` with `--json`, else `text`.
fn say(as_json: bool, v: serde_json::Value, text: String) {
    if as_json {
        println!("{v}");
    } else {
        println!("{text}");
    }
}

fn sides(j: &JobRecord) -> String {
    let side = |k: &str| {
        serde_json::from_value::<crate::jobs::spec::Endpoint>(j.spec[k].clone())
            .map(|e| e.display())
            .unwrap_or_default()
    };
    format!("{} -> {}", side("src"), side("dst"))
}

fn print_jobs(jobs: &[JobRecord], as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string(jobs)?);
        return Ok(());
    }
    println!(
        "{:>4}  {:<9}  {:>15}  {:>12}  {:>5}  SRC -> DST",
        "ID", "STATE", "OBJECTS", "BYTES", "DEAD"
    );
    for j in jobs {
        println!(
            "{:>4}  {:<9}  {:>15}  {:>12}  {:>5}  {}",
            j.id,
            if j.unattended { "stalled" } else { &j.state },
            format!("{}/{}", j.done, j.listed),
            human(j.done_bytes as u64),
            j.dead,
            sides(j)
        );
    }
    if jobs.iter().any(|j| j.unattended) {
        println!(
            "stalled: running, but no process has recorded running it lately (killed? or \
             its writes to this state database fail: a full disk?); {RESTART}"
        );
    }
    Ok(())
}

/// Prints the dead-letter list page by page (`ferry job dead`).
struct DeadLister {
    job: i64,
    as_json: bool,
    after: i64,
    printed: u64,
}

impl DeadLister {
    fn new(job: i64, as_json: bool) -> Self {
        Self {
            job,
            as_json,
            after: 0,
            printed: 0,
        }
    }

    /// Prints a page; false at the end of the list.
    fn print(&mut self, page: Vec<DeadTask>) -> bool {
        let Some(last) = page.last() else {
            if self.printed == 0 && !self.as_json {
                println!("job {}: no dead letters", self.job);
            }
            return false;
        };
        self.after = last.id;
        for t in &page {
            if self.as_json {
                println!("{}", json!(t));
            } else {
                println!(
                    "{}: after {} attempts: {}",
                    super::shown(&t.key),
                    t.attempts,
                    super::flat(t.error.as_deref().unwrap_or(""))
                );
            }
        }
        self.printed += page.len() as u64;
        true
    }
}

/// Unfinished tasks `ferry job show` lists (the admin API's detail lists as many).
const SHOWN_TASKS: i64 = 200;

/// What makes a stalled job run again.
const RESTART: &str = "run its `ferry migrate` command again, or start `ferry worker` or `ferry serve` on this state (a server's log says why it does not run a job)";

/// "12 s ago", "3 min ago", "2 h ago".
fn ago(then_ms: i64) -> String {
    let s = (crate::state::now_ms() - then_ms).max(0) / 1000;
    match s {
        0..120 => format!("{s} s ago"),
        120..7200 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

/// `ferry job …` against a server's admin API: the same answers as from the database.
async fn remote(
    cmd: JobCommand,
    client: &super::client::AdminClient,
    as_json: bool,
) -> anyhow::Result<()> {
    use http::Method;
    let post = |id: i64, what: &str| format!("/api/v1/jobs/{id}/{what}");
    match cmd {
        JobCommand::List(_) => {
            let v = client.call(Method::GET, "/api/v1/jobs", None).await?;
            print_jobs(&serde_json::from_value::<Vec<JobRecord>>(v)?, as_json)?;
        }
        JobCommand::Show(j) => {
            let v = client
                .call(Method::GET, &format!("/api/v1/jobs/{}", j.id), None)
                .await?;
            print_detail(serde_json::from_value(v)?, as_json)?;
        }
        // Pause and cancel answer once no transfer of the job runs.
        JobCommand::Pause(j) => {
            let v = client
                .call_long(Method::POST, &post(j.id, "pause"), None)
                .await?;
            let parts = v["recorded_parts"].as_u64().unwrap_or(0);
            report(Done::Paused { job: j.id, parts }, as_json)?;
        }
        JobCommand::Resume(j) => {
            client
                .call(Method::POST, &post(j.id, "resume"), None)
                .await?;
            report(Done::Resumed { job: j.id }, as_json)?;
        }
        JobCommand::Cancel(j) => {
            let v = client
                .call_long(Method::POST, &post(j.id, "cancel"), None)
                .await?;
            let done = Done::Cancelled {
                job: j.id,
                aborted: v["aborted_uploads"].as_u64().unwrap_or(0),
                not_aborted: v["uploads_not_aborted"].as_str().map(str::to_owned),
            };
            report(done, as_json)?;
        }
        JobCommand::Dead(j) => {
            let mut lister = DeadLister::new(j.id, as_json);
            loop {
                let path = format!(
                    "/api/v1/jobs/{}/dead?after={}&limit={DEAD_PAGE}",
                    j.id, lister.after
                );
                let v = client.call(Method::GET, &path, None).await?;
                if !lister.print(serde_json::from_value(v)?) {
                    break;
                }
            }
        }
        JobCommand::RetryDead(j) => {
            let v = client
                .call(Method::POST, &post(j.id, "retry-dead"), None)
                .await?;
            let n = v["requeued"].as_u64().unwrap_or(0);
            report(Done::Requeued { job: j.id, n }, as_json)?;
        }
    }
    Ok(())
}

fn print_detail(d: control::Detail, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        println!("{}", serde_json::to_string(&d)?);
        return Ok(());
    }
    let (rec, counts, open) = (d.job, d.tasks, d.open);
    println!("job {}: {} ({})", rec.id, rec.state, sides(&rec));
    if rec.unattended {
        let since = rec.runner_seen_ms.unwrap_or(0).max(rec.updated_ms);
        // A process that stopped cleanly takes its heartbeat with it: what the job has
        // done says whether one ran it.
        let ran = rec.runner_seen_ms.is_some() || rec.listing_done || rec.listed > 0;
        match ran {
            true => println!(
                "  stalled: no process has run it since {}; {RESTART}",
                ago(since)
            ),
            false => println!("  stalled: no process has run it yet; {RESTART}"),
        }
    } else if rec.state == crate::state::job_state::RUNNING {
        let live: Vec<_> = d
            .runners
            .iter()
            .filter(|r| r.seen_ms >= crate::state::now_ms() - crate::state::UNATTENDED_MS)
            .map(|r| r.owner.as_str())
            .collect();
        if !live.is_empty() {
            println!("  run by: {}", live.join(", "));
        }
    }
    if let Some(e) = &rec.error {
        println!("  error: {e}");
    }
    println!(
        "  listing: {}; {} objects ({}) to copy or delete, {} unchanged",
        if rec.listing_done {
            "complete"
        } else {
            "in progress"
        },
        rec.listed,
        human(rec.listed_bytes as u64),
        rec.unchanged
    );
    println!(
        "  done: {} objects ({}){}; pending {}, running {}, dead {}",
        rec.done,
        human(rec.done_bytes as u64),
        match counts.vanished {
            0 => String::new(),
            n => format!(", of them {n} vanished from the source (not copied)"),
        },
        counts.pending,
        counts.running,
        counts.dead
    );
    if open.len() as i64 >= SHOWN_TASKS {
        println!(
            "  showing the first {SHOWN_TASKS} dead and unfinished tasks, dead letters first (`ferry job dead {}` lists every dead letter):",
            rec.id
        );
    }
    for t in &open {
        match t.state.as_str() {
            "dead" => println!(
                "  dead: {} after {} attempts: {}",
                super::shown(&t.key),
                t.attempts,
                super::flat(t.error.as_deref().unwrap_or(""))
            ),
            _ if t.upload_id.is_some() => println!(
                "  {}: {} ({} of {}), {} parts finished{}",
                t.state,
                super::shown(&t.key),
                human(t.bytes_done as u64),
                human(t.size as u64),
                t.parts_done,
                t.error
                    .as_deref()
                    .map(|e| format!("; last error: {}", super::flat(e)))
                    .unwrap_or_default()
            ),
            _ => println!(
                "  {}: {} ({} attempts){}",
                t.state,
                super::shown(&t.key),
                t.attempts,
                t.error
                    .as_deref()
                    .map(|e| format!("; last error: {}", super::flat(e)))
                    .unwrap_or_default()
            ),
        }
    }
    Ok(())
}

/// `ferry worker`: runs the share of every running job this process can claim.
pub async fn worker(args: WorkerArgs, data: Option<PathBuf>) -> anyhow::Result<()> {
    if args.workers == 0 {
        return Err(super::UsageError("--workers must be at least 1".into()).into());
    }
    let bandwidth = args
        .bandwidth_limit
        .as_deref()
        .map(|s| crate::jobs::spec::size(s, "--bandwidth-limit"))
        .transpose()
        .map_err(job_err)?
        .filter(|n| *n > 0);
    // As `ferry job`: a mistyped --data must not become an empty state that runs nothing.
    let dir = data.clone().unwrap_or_else(|| PathBuf::from("ferry-data"));
    if args.db.db.is_none() && !dir.join("state.db").exists() {
        return Err(super::UsageError(format!(
            "no job state in {} (no `ferry migrate` ran with that --data; --db names a shared database)",
            dir.display()
        ))
        .into());
    }
    let (db, data) = open_state(args.db.db.as_deref(), data).await?;
    let registry = Arc::new(Registry::new(db, &data));
    let (tx, rx) = tokio::sync::watch::channel(false);
    // Ctrl-C or SIGTERM: the tasks in flight stop at a part boundary and are handed back.
    tokio::spawn(async move {
        super::serve::shutdown_signal().await;
        let _ = tx.send(true);
    });
    eprintln!("ferry: worker running jobs from the state database");
    crate::jobs::supervise::supervise(registry, Settings::new(args.workers, bandwidth), rx)
        .await
        .map_err(job_err)
}
