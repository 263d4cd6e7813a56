//! `ferry store …`: register, list, remove and rescan stores through the admin API.

use anyhow::anyhow;
use clap::{Subcommand, ValueEnum};
use http::Method;
use serde_json::json;

use super::UsageError;
use super::client::AdminClient;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    Fs,
    S3,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ChecksumMode {
    WhenRequired,
    WhenSupported,
}

#[derive(Subcommand, Debug)]
pub enum StoreCommand {
    /// Register a store.
    #[command(
        after_help = "Examples:\n  ferry store add archive --kind fs --path /srv/archive\n  AK=... SK=... ferry store add remote --kind s3 --endpoint http://10.0.0.5:9000 --path-style --access-key-env AK --secret-key-env SK"
    )]
    Add {
        name: String,
        #[arg(long, value_enum)]
        kind: Kind,
        /// Directory of an fs store.
        #[arg(long)]
        path: Option<String>,
        /// Endpoint URL of an s3 store (omit for AWS).
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long)]
        region: Option<String>,
        /// Address buckets as ENDPOINT/BUCKET instead of BUCKET.ENDPOINT.
        #[arg(long)]
        path_style: bool,
        /// Environment variable holding the access key.
        #[arg(long, value_name = "VAR")]
        access_key_env: Option<String>,
        /// Environment variable holding the secret key.
        #[arg(long, value_name = "VAR")]
        secret_key_env: Option<String>,
        /// When the store's SDK sends checksums (many non-AWS servers need when-required).
        #[arg(long, value_enum)]
        checksum_mode: Option<ChecksumMode>,
    },
    /// List registered stores.
    #[command(after_help = "Example:\n  ferry store list --json")]
    List,
    /// Unregister a store (its data is left alone).
    #[command(after_help = "Example:\n  ferry store remove archive")]
    Remove { name: String },
    /// Re-index an fs store after files were changed outside Ferry.
    #[command(after_help = "Example:\n  ferry store rescan local")]
    Rescan {
        name: String,
        /// Take bucket folders that are not the ones recorded (restored from a backup, moved
        /// to another disk) as the buckets' folders; without it such buckets are left alone.
        #[arg(long)]
        adopt: bool,
    },
}

fn env_value(flag: &str, var: &Option<String>) -> anyhow::Result<Option<String>> {
    match var {
        None => Ok(None),
        Some(v) => std::env::var(v).map(Some).map_err(|_| {
            UsageError(format!("{flag} {v}: environment variable {v} is not set")).into()
        }),
    }
}

pub async fn run(cmd: StoreCommand, client: &AdminClient, as_json: bool) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Add {
            name,
            kind,
            path,
            endpoint,
            region,
            path_style,
            access_key_env,
            secret_key_env,
            checksum_mode,
        } => {
            // A flag of the other kind would be ignored without a word.
            let others: &[(bool, &str)] = match kind {
                Kind::Fs => &[
                    (endpoint.is_some(), "--endpoint"),
                    (region.is_some(), "--region"),
                    (path_style, "--path-style"),
                    (access_key_env.is_some(), "--access-key-env"),
                    (secret_key_env.is_some(), "--secret-key-env"),
                    (checksum_mode.is_some(), "--checksum-mode"),
                ],
                Kind::S3 => &[(path.is_some(), "--path")],
            };
            if let Some((_, flag)) = others.iter().find(|(given, _)| *given) {
                return Err(UsageError(format!(
                    "{flag} does not apply to --kind {}",
                    match kind {
                        Kind::Fs => "fs",
                        Kind::S3 => "s3",
                    }
                ))
                .into());
            }
            let body = match kind {
                Kind::Fs => {
                    let path =
                        path.ok_or_else(|| UsageError("--kind fs needs --path DIR".into()))?;
                    json!({ "name": name, "kind": "fs", "path": std::path::absolute(&path)? })
                }
                Kind::S3 => {
                    let ak = env_value("--access-key-env", &access_key_env)?
                        .ok_or_else(|| UsageError("--kind s3 needs --access-key-env VAR".into()))?;
                    let sk = env_value("--secret-key-env", &secret_key_env)?
                        .ok_or_else(|| UsageError("--kind s3 needs --secret-key-env VAR".into()))?;
                    json!({
                        "name": name, "kind": "s3", "endpoint": endpoint, "region": region,
                        "path_style": path_style, "access_key": ak, "secret_key": sk,
                        "checksum_mode": checksum_mode.map(|m| match m {
                            ChecksumMode::WhenRequired => "when_required",
                            ChecksumMode::WhenSupported => "when_supported",
                        }),
                    })
                }
            };
            let v = client
                .call(Method::POST, "/api/v1/stores", Some(body))
                .await?;
            if as_json {
                println!("{v}");
            } else {
                println!("added store {name}");
            }
            if let Some(w) = v["warning"].as_str() {
                eprintln!("ferry: warning: {w}");
            }
        }
        StoreCommand::List => {
            let v = client.call(Method::GET, "/api/v1/stores", None).await?;
            if as_json {
                println!("{v}");
            } else {
                let rows = v
                    .as_array()
                    .ok_or_else(|| anyhow!("unexpected answer from the server"))?;
                println!("{:<20} {:<5} LOCATION", "NAME", "KIND");
                for r in rows {
                    let s = |k: &str| r.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
                    println!("{:<20} {:<5} {}", s("name"), s("kind"), s("location"));
                }
            }
        }
        StoreCommand::Remove { name } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/api/v1/stores/{}", urlencoding::encode(&name)),
                    None,
                )
                .await?;
            if as_json {
                println!("{}", json!({ "removed": name }));
            } else {
                println!("removed store {name}");
            }
        }
        StoreCommand::Rescan { name, adopt } => {
            let v = client
                .call_long(
                    Method::POST,
                    &format!(
                        "/api/v1/stores/{}/rescan{}",
                        urlencoding::encode(&name),
                        if adopt { "?adopt=true" } else { "" }
                    ),
                    None,
                )
                .await?;
            if as_json {
                println!("{v}");
            } else {
                let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
                println!(
                    "rescanned {name}: {} files in {} buckets; {} added, {} updated, {} removed, {} skipped",
                    n("files"),
                    n("buckets"),
                    n("added"),
                    n("updated"),
                    n("removed"),
                    n("skipped")
                );
                for p in v["problems"].as_array().into_iter().flatten() {
                    eprintln!("ferry: {}", p.as_str().unwrap_or_default());
                }
            }
            // Buckets left as they were (a folder missing or replaced) fail the command, as
            // a partial transfer fails rsync: a script must not take the rescan as complete.
            let problems = v["problems"].as_array().map_or(0, Vec::len);
            if problems > 0 {
                anyhow::bail!(
                    "rescan of {name} left {problems} bucket(s) as they were (said above); fix their folders or rescan with --adopt"
                );
            }
        }
    }
    Ok(())
}
