//! `ferry migrate SRC DST`: create (or resume) a migration job and run it in the foreground
//! with a progress bar, or hand it to a running server with `--detach`; `--dry-run` only
//! lists what would be done.

mod check;
mod foreground;
mod progress;

use std::path::PathBuf;

use clap::Args;

use self::check::dry_run;
pub use self::progress::human;
use super::UsageError;
use crate::jobs;
use crate::jobs::open::preflight;
use crate::jobs::spec::{self, Endpoint, Filter, MigrateSpec, Options};
use crate::registry::Registry;
use crate::state::Db;

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// store:bucket[/prefix], s3://bucket[/prefix] or a local directory
    pub src: String,
    /// store:bucket[/prefix], s3://bucket[/prefix] or a local directory
    pub dst: String,
    /// PostgreSQL state database shared by several processes (default: SQLite under --data).
    #[arg(long, env = "FERRY_DB", value_name = "URL", hide_env_values = true)]
    pub db: Option<String>,
    /// Endpoint of an s3:// source (default: AWS).
    #[arg(long, env = "FERRY_SRC_ENDPOINT", value_name = "URL")]
    pub src_endpoint: Option<String>,
    /// Endpoint of an s3:// destination (default: AWS).
    #[arg(long, env = "FERRY_DST_ENDPOINT", value_name = "URL")]
    pub dst_endpoint: Option<String>,
    #[arg(long, env = "FERRY_SRC_REGION", default_value = "us-east-1")]
    pub src_region: String,
    #[arg(long, env = "FERRY_DST_REGION", default_value = "us-east-1")]
    pub dst_region: String,
    /// Objects copied at once (default 32).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Part size of multipart copies (e.g. 16M).
    #[arg(long, default_value = "16M")]
    pub part_size: String,
    /// Objects above this size are copied multipart (e.g. 64M).
    #[arg(long, default_value = "64M")]
    pub multipart_threshold: String,
    /// Only keys matching this glob (repeatable; `*.jpg` matches in any folder).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip keys matching this glob (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Only objects modified within this age (7d, 12h) or since this date.
    #[arg(long, value_name = "AGE|DATE")]
    pub newer_than: Option<String>,
    /// Only objects modified before this age or date.
    #[arg(long, value_name = "AGE|DATE")]
    pub older_than: Option<String>,
    /// Decide what changed by content (ETag or checksum), not size and modification time.
    #[arg(long)]
    pub checksum: bool,
    /// Delete destination objects the source does not have (make DST a mirror).
    #[arg(long)]
    pub delete: bool,
    /// Print what would be copied or deleted; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Compare both sides when the job is done; exit 1 on any difference.
    #[arg(long)]
    pub verify: bool,
    /// Total transfer rate limit in bytes per second (e.g. 50M; 0 is no limit).
    #[arg(long, value_name = "RATE")]
    pub bandwidth_limit: Option<String>,
    /// Attempts per object before it goes to the job's dead-letter list (at least 1).
    #[arg(long, default_value_t = 10)]
    pub attempts: u32,
    /// Record the job and return: the running server runs it, or with `--db` the `ferry worker`
    /// processes on that database.
    #[arg(long)]
    pub detach: bool,
}

/// Opens the state database: `--db`, or SQLite in the data directory (created if needed).
pub async fn open_state(db: Option<&str>, data: Option<PathBuf>) -> anyhow::Result<(Db, PathBuf)> {
    let data = data.unwrap_or_else(|| PathBuf::from("ferry-data"));
    crate::cli::make_data_dir(&data)?;
    let db = match db {
        Some(url) => super::connect_db(url).await?,
        None => Db::open_embedded(&data).await?,
    };
    Ok((db, data))
}

/// Maps job errors: bad input is a usage error (exit 2).
pub fn job_err(e: jobs::Error) -> anyhow::Error {
    match e {
        jobs::Error::Usage(m) => UsageError(m).into(),
        e => anyhow::Error::new(e),
    }
}

pub async fn run(
    args: MigrateArgs,
    data: Option<PathBuf>,
    server: Option<String>,
    as_json: bool,
) -> anyhow::Result<()> {
    let now = crate::state::now_ms();
    let usage = |e: jobs::Error| job_err(e);
    let src_ep = Endpoint::parse(&args.src, args.src_endpoint.as_deref(), &args.src_region)
        .map_err(usage)?;
    let dst_ep = Endpoint::parse(&args.dst, args.dst_endpoint.as_deref(), &args.dst_region)
        .map_err(usage)?;
    let options = Options {
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        newer_than_ms: args
            .newer_than
            .as_deref()
            .map(|s| spec::cutoff(s, now, "--newer-than"))
            .transpose()
            .map_err(usage)?,
        older_than_ms: args
            .older_than
            .as_deref()
            .map(|s| spec::cutoff(s, now, "--older-than"))
            .transpose()
            .map_err(usage)?,
        checksum: args.checksum,
        delete: args.delete,
        part_size: spec::size(&args.part_size, "--part-size").map_err(usage)?,
        multipart_threshold: spec::size(&args.multipart_threshold, "--multipart-threshold")
            .map_err(usage)?,
        max_attempts: args.attempts,
    };
    if options.max_attempts == 0 {
        return Err(
            UsageError("--attempts 0: every object needs at least one attempt".into()).into(),
        );
    }
    if !(spec::MIN_PART..=spec::MAX_PART).contains(&options.part_size) {
        return Err(UsageError(format!(
            "--part-size {}: parts must be 5 MiB to 5 GiB",
            args.part_size
        ))
        .into());
    }
    if options.multipart_threshold > spec::MAX_PART {
        return Err(UsageError(format!(
            "--multipart-threshold {}: one PUT takes at most 5 GiB",
            args.multipart_threshold
        ))
        .into());
    }
    if let (Some(newer), Some(older)) = (options.newer_than_ms, options.older_than_ms)
        && newer >= older
    {
        return Err(UsageError(format!(
            "--newer-than {} and --older-than {} select nothing: no time is both",
            args.newer_than.as_deref().unwrap_or_default(),
            args.older_than.as_deref().unwrap_or_default()
        ))
        .into());
    }
    if args.workers == Some(0) {
        return Err(UsageError("--workers must be at least 1".into()).into());
    }
    if args.detach {
        // These belong to the process that runs the job, and with --detach that is the
        // server's job runner (or the `ferry worker`s), with settings of its own.
        let here = [
            (
                args.dry_run,
                "--dry-run (a dry run runs here and changes nothing)",
            ),
            (
                args.verify,
                "--verify (it runs when the job ends, in this process)",
            ),
            (
                args.workers.is_some(),
                "--workers (the runner's own --workers applies)",
            ),
            (
                args.bandwidth_limit.is_some(),
                "--bandwidth-limit (the runner's own applies: `ferry worker --bandwidth-limit`, \
                 `ferry serve --job-bandwidth-limit`)",
            ),
        ];
        if let Some((_, what)) = here.iter().find(|(given, _)| *given) {
            return Err(UsageError(format!(
                "--detach hands the job to the server's runner, which does not take {what}: \
                 drop --detach to run it here"
            ))
            .into());
        }
    }
    // 0 is no limit, as for rclone's --bwlimit and rsync's --bwlimit.
    let bandwidth = args
        .bandwidth_limit
        .as_deref()
        .map(|s| spec::size(s, "--bandwidth-limit"))
        .transpose()
        .map_err(usage)?
        .filter(|b| *b > 0);
    Filter::new(&options).map_err(usage)?;
    let spec = MigrateSpec {
        src: src_ep,
        dst: dst_ep,
        options,
    };
    let ages = format!(
        "{}|{}",
        args.newer_than.as_deref().unwrap_or(""),
        args.older_than.as_deref().unwrap_or("")
    );

    let fingerprint = spec.fingerprint(&ages);
    if args.detach && args.db.is_none() {
        return detach(&spec, &fingerprint, data.as_deref(), server, as_json).await;
    }
    // No state yet under --data: no store is registered there, and a dry run needs none
    // made (it records nothing); a real run makes it, for its job.
    let dir = data.clone().unwrap_or_else(|| PathBuf::from("ferry-data"));
    let fresh = args.db.is_none() && !dir.join("state.db").exists();
    if fresh
        && let Some((role, store)) = [("source", &spec.src), ("destination", &spec.dst)]
            .into_iter()
            .find_map(|(role, ep)| match ep {
                Endpoint::Store { store, .. } => Some((role, store)),
                _ => None,
            })
    {
        return Err(UsageError(format!(
            "{role} {}: no store named {store:?} is registered (there is no Ferry state in {}: \
             stores are registered with `ferry store add` on the server of that --data, or \
             name a shared database with --db)",
            if role == "source" {
                spec.src.display()
            } else {
                spec.dst.display()
            },
            dir.display()
        ))
        .into());
    }
    let (db, data) = match fresh && args.dry_run {
        true => (Db::connect("sqlite::memory:").await?, dir),
        false => open_state(args.db.as_deref(), data).await?,
    };
    let registry = Registry::new(db.clone(), &data);
    if args.detach {
        // `--db` names the state database the workers share: record the job there.
        let submitted = jobs::submit(&registry, &spec, &fingerprint, args.verify)
            .await
            .map_err(usage)?;
        let v = serde_json::json!({ "job": submitted.job, "resumed": submitted.resumed });
        print_detached(
            &v,
            as_json,
            "the `ferry worker` processes on that database run it",
            " --db URL",
        );
        return Ok(());
    }
    if args.dry_run {
        let (src, dst) = crate::jobs::open::open_sides_dry(
            &spec,
            spec.options.checksum || args.verify,
            &registry,
        )
        .await
        .map_err(usage)?;
        let dst_exists = preflight(&src, &dst, false).await.map_err(usage)?;
        if spec.options.delete {
            // What the real run would refuse, said before listing what it would delete.
            crate::jobs::open::refuse_emptying(&src, &dst)
                .await
                .map_err(usage)?;
        }
        return dry_run(&src, &dst, dst_exists, &spec, as_json).await;
    }
    // A resumed job's listing was made before this run: what changed since (a file added
    // or edited, one put back that `--delete` would remove) is caught by listing again, as
    // a new job that copies only the differences: running the same command again brings
    // the destination in line with the source as it is now, as rclone's does.
    let mut relisting = false;
    loop {
        let resumed = foreground::run_job(foreground::Job {
            registry: &registry,
            db: &db,
            spec: &spec,
            fingerprint: &fingerprint,
            args: &args,
            bandwidth,
            as_json,
            relist_if_resumed: !relisting,
        })
        .await?;
        if !resumed || relisting {
            return Ok(());
        }
        relisting = true;
        eprintln!(
            "ferry: the resumed job was listed before this run; listing both sides again for what changed since"
        );
    }
}

/// `--detach` without `--db`: the running server checks both sides and records (or finds) the
/// job; its job runner (and any `ferry worker` on its state database) runs it.
async fn detach(
    spec: &MigrateSpec,
    fingerprint: &str,
    data: Option<&std::path::Path>,
    server: Option<String>,
    as_json: bool,
) -> anyhow::Result<()> {
    // How a `ferry job` command reaches the same server.
    let via = server
        .as_deref()
        .map(|s| format!(" --server {s}"))
        .unwrap_or_default();
    let client = super::client::AdminClient::new(server, data)?;
    let v = client
        .call(
            http::Method::POST,
            "/api/v1/jobs",
            Some(serde_json::json!({ "spec": spec, "fingerprint": fingerprint })),
        )
        .await?;
    print_detached(&v, as_json, "the server runs it", &via);
    Ok(())
}

/// Says a detached job was handed on: who runs it, and the `ferry job` flags (`via`) that
/// reach the same job.
fn print_detached(v: &serde_json::Value, as_json: bool, who: &str, via: &str) {
    if as_json {
        println!("{v}");
    } else {
        let id = v["job"]["id"].as_i64().unwrap_or(0);
        println!(
            "job {id}: {}; {who} (`ferry job show {id}{via}` follows it)",
            if v["resumed"].as_bool().unwrap_or(false) {
                "resumed"
            } else {
                "recorded"
            }
        );
    }
}
