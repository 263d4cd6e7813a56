//! `ferry serve`: the S3 endpoint and the admin API over the embedded default (SQLite state
//! and the `local` fs store under `--data`), or PostgreSQL state with `--db`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use rand::Rng;

use super::UsageError;
use crate::config::{self, FileConfig, Overrides, ServeConfig};
use crate::gateway::Gateway;
use crate::gateway::server::{self, ServerOptions};
use crate::registry::Registry;
use crate::state::Db;
use crate::telemetry::Metrics;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// TOML config file; flags and FERRY_* variables override its values.
    #[arg(long, env = "FERRY_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// S3 listen address [default: 127.0.0.1:9000]
    #[arg(long, env = "FERRY_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Admin API listen address [default: 127.0.0.1:9001]
    #[arg(long, env = "FERRY_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<String>,
    /// State database URL (postgres://…); default: SQLite in the data directory.
    #[arg(long, env = "FERRY_DB", value_name = "URL", hide_env_values = true)]
    db: Option<String>,
    /// Base domain for virtual-host style requests (BUCKET.DOMAIN).
    #[arg(long, env = "FERRY_DOMAIN")]
    domain: Option<String>,
    /// Region reported to clients [default: us-east-1]
    #[arg(long, env = "FERRY_REGION")]
    region: Option<String>,
    /// Requests handled at once [default: 256]
    #[arg(long, env = "FERRY_MAX_CONCURRENCY")]
    max_concurrency: Option<usize>,
    /// Seconds a client may send nothing of a request body, or read nothing of an answer,
    /// before its request is given up (S3's RequestTimeout); a request head has at most 30
    /// [default: 60]
    #[arg(long, env = "FERRY_CLIENT_TIMEOUT", value_name = "SECS")]
    client_timeout: Option<u64>,
    /// The largest file a browser-form upload (POST Object) may carry; up to four are held in
    /// memory at once [default: 16M]
    #[arg(long, env = "FERRY_MAX_POST_OBJECT_SIZE", value_name = "SIZE")]
    max_post_object_size: Option<String>,
    /// Bytes per second the migration jobs this server runs (`ferry migrate --detach`) may
    /// move together, like 50M; 0 for no limit [default: none]
    #[arg(long, env = "FERRY_JOB_BANDWIDTH_LIMIT", value_name = "RATE")]
    job_bandwidth_limit: Option<String>,
}

/// Writes a secret file: temp, mode 0600, fsync, rename, fsync the directory.
fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("secret")
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// Returns the S3 credentials and whether they were just generated.
fn credentials(cfg: &ServeConfig) -> anyhow::Result<(String, String, bool)> {
    if let (Some(a), Some(s)) = (&cfg.access_key, &cfg.secret_key) {
        return Ok((a.clone(), s.clone(), false));
    }
    let file = cfg.data.join("credentials.json");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", file.display()))?;
        let get = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        if let (Some(a), Some(s)) = (get("access_key"), get("secret_key")) {
            return Ok((a, s, false));
        }
        anyhow::bail!("{} lacks access_key or secret_key", file.display());
    }
    let a = random_string(20, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789");
    let s = random_string(
        40,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    );
    write_secret(
        &file,
        &serde_json::json!({ "access_key": a, "secret_key": s }).to_string(),
    )?;
    Ok((a, s, true))
}

fn admin_token(cfg: &ServeConfig) -> anyhow::Result<String> {
    if let Some(t) = &cfg.admin_token {
        return Ok(t.clone());
    }
    let file = cfg.data.join("admin-token");
    if let Ok(t) = std::fs::read_to_string(&file) {
        return Ok(t.trim().to_owned());
    }
    let t = random_string(48, b"abcdefghijklmnopqrstuvwxyz0123456789");
    write_secret(&file, &t)?;
    Ok(t)
}

/// Waits for Ctrl-C or SIGTERM; the exit status a shell gives a process the signal
/// stopped (130 or 143).
pub(super) async fn shutdown_signal() -> i32 {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => 130,
        () = term => 143,
    }
}

pub async fn run(args: ServeArgs, data: Option<PathBuf>) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(p) => config::load_file(p).map_err(|e| UsageError(e.to_string()))?,
        None => FileConfig::default(),
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let overrides = Overrides {
        data,
        listen: args.listen,
        admin_listen: args.admin_listen,
        db: args.db,
        domain: args.domain,
        region: args.region,
        access_key: env("FERRY_ACCESS_KEY"),
        secret_key: env("FERRY_SECRET_KEY"),
        admin_token: env("FERRY_ADMIN_TOKEN"),
        max_concurrency: args.max_concurrency,
        client_timeout: args.client_timeout,
        max_post_object_size: args.max_post_object_size,
        job_bandwidth_limit: args.job_bandwidth_limit,
    };
    let cfg = ServeConfig::resolve(overrides, file).map_err(|e| UsageError(e.to_string()))?;
    super::make_data_dir(&cfg.data)?;
    let db = match &cfg.db {
        Some(url) => super::connect_db(url).await?,
        None => Db::open_embedded(&cfg.data).await?,
    };
    // One server per state database: said before anything of it is opened.
    crate::bucket::claim(&db, &cfg.data).await?;
    let registry = Arc::new(Registry::new(db, &cfg.data));
    let local = registry.local().await?;
    // Bound before any secret is generated: a start that fails here must not leave behind
    // credentials it never showed.
    let s3_listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--listen, FERRY_LISTEN or listen)",
                cfg.listen
            )
        })?;
    let admin_listener = tokio::net::TcpListener::bind(cfg.admin_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--admin-listen, FERRY_ADMIN_LISTEN or admin_listen)",
                cfg.admin_listen
            )
        })?;
    let (access_key, secret_key, generated) = credentials(&cfg)?;
    let token = admin_token(&cfg)?;
    let metrics = Metrics::new();

    let s3_addr = s3_listener.local_addr()?;
    let admin_addr = admin_listener.local_addr()?;

    let opts = ServerOptions {
        access_key: access_key.clone(),
        secret_key: secret_key.clone(),
        domain: cfg.domain.clone(),
        max_concurrency: cfg.max_concurrency,
        client_timeout: cfg.client_timeout,
        max_header_bytes: 64 * 1024,
        max_xml_bytes: 8 * 1024 * 1024,
        max_post_object_bytes: cfg.max_post_object_bytes,
        region: cfg.region.clone(),
    };
    let journal = crate::journal::Journal::start(registry.db().clone());
    let buckets =
        crate::bucket::Buckets::start(registry.clone(), journal, local.clone(), metrics.clone())
            .await?;
    let gateway =
        Gateway::new(local, metrics.clone(), cfg.region.clone()).with_buckets(buckets.clone());
    let service = server::build_service(gateway, &opts)?;
    let admin_state = Arc::new(crate::admin::AdminState {
        registry: registry.clone(),
        buckets,
        metrics,
        token,
    });
    let admin_app = crate::admin::router(admin_state);

    let info = serde_json::json!({
        "s3": format!("http://{s3_addr}"),
        "admin": format!("http://{admin_addr}"),
        "pid": std::process::id(),
        "region": cfg.region,
    });
    // Only how `ferry` commands on this machine find the server: a server that cannot write
    // it (a full disk) still serves, so objects can be read and deleted.
    if let Err(e) = write_secret(&cfg.data.join("serve.json"), &info.to_string()) {
        tracing::warn!(error = %format!("{e:#}"), "serving without serve.json: `ferry` commands on this machine need --server");
    }
    println!(
        "ferry: S3 endpoint http://{s3_addr} (region {})",
        cfg.region
    );
    if cfg.admin_token.is_some() {
        println!(
            "ferry: admin API http://{admin_addr} (token from FERRY_ADMIN_TOKEN or the config)"
        );
    } else {
        println!(
            "ferry: admin API http://{admin_addr} (token in {})",
            cfg.data.join("admin-token").display()
        );
    }
    if generated {
        println!(
            "ferry: generated S3 credentials (shown once; stored in {} with mode 0600):",
            cfg.data.join("credentials.json").display()
        );
        println!("  AWS_ACCESS_KEY_ID={access_key}");
        println!("  AWS_SECRET_ACCESS_KEY={secret_key}");
    } else {
        println!("ferry: S3 access key {access_key}");
    }
    let _ = std::io::stdout().flush();
    tracing::info!(s3 = %s3_addr, admin = %admin_addr, "serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut rx1 = stop_rx.clone();
    let mut rx2 = stop_rx;
    let s3 = tokio::spawn(async move {
        server::serve(s3_listener, service, &opts, async move {
            let _ = rx1.wait_for(|v| *v).await;
        })
        .await
    });
    let admin = tokio::spawn(async move {
        axum::serve(admin_listener, admin_app)
            .with_graceful_shutdown(async move {
                let _ = rx2.wait_for(|v| *v).await;
            })
            .await
    });
    // Jobs recorded in this state database (`ferry migrate --detach`) run here too.
    let jobs = tokio::spawn(crate::jobs::supervise::supervise(
        registry.clone(),
        crate::jobs::run::Settings::new(32, cfg.job_bandwidth),
        stop_tx.subscribe(),
    ));
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests (a second signal stops at once)");
    // A second Ctrl-C or SIGTERM does not wait out the drain. Stopping mid-request is a
    // crash the stores are made for: nothing unanswered was acknowledged.
    let serve_json = cfg.data.join("serve.json");
    tokio::spawn(async move {
        let status = shutdown_signal().await;
        tracing::warn!("second signal: stopping now, cutting the requests still in flight");
        let _ = std::fs::remove_file(&serve_json);
        std::process::exit(status);
    });
    let _ = stop_tx.send(true);
    let _ = jobs.await;
    s3.await.context("S3 server task")??;
    admin.await.context("admin server task")??;
    // A stopped server lets another take the state database at once.
    crate::bucket::release(registry.db()).await;
    registry.db().close().await;
    let _ = std::fs::remove_file(cfg.data.join("serve.json"));
    Ok(())
}
