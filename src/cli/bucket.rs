//! `ferry bucket …`: namespace buckets (policy, status, failover, failback) through the
//! admin API.

use anyhow::anyhow;
use clap::{Subcommand, ValueEnum};
use http::Method;
use serde_json::{Value, json};

use super::client::AdminClient;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    ReadOnly,
    ReadWrite,
}

/// A bucket's targets, as `create` and `policy` take them.
#[derive(clap::Args, Debug)]
pub struct Targets {
    /// Ordered store:bucket targets, comma-separated; the first is the primary.
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        value_name = "STORE:BUCKET,..."
    )]
    write_to: Vec<String>,
    /// Ordered store:bucket targets for reads (default: the primary).
    #[arg(long, value_delimiter = ',', value_name = "STORE:BUCKET,...")]
    read_from: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum BucketCommand {
    /// Create a namespace bucket: writes go to every --write-to target (the first is the
    /// primary), reads come from the first --read-from target that answers.
    #[command(
        after_help = "Example:\n  ferry bucket create photos --write-to local:photos,remote:photos --read-from local:photos"
    )]
    Create {
        name: String,
        #[command(flatten)]
        targets: Targets,
    },
    /// Replace a bucket's targets.
    #[command(
        after_help = "Example:\n  ferry bucket policy photos --write-to local:photos,dr:photos"
    )]
    Policy {
        name: String,
        #[command(flatten)]
        targets: Targets,
    },
    /// Show a bucket's mode, each target's health and what it is owed.
    #[command(after_help = "Example:\n  ferry bucket status photos --json")]
    Status { name: String },
    /// List namespace buckets.
    List,
    /// Stop serving a namespace bucket (the targets' data is left alone).
    Remove { name: String },
    /// Serve the bucket from one of its secondaries.
    #[command(after_help = "Example:\n  ferry bucket failover photos --to dr --mode read-write")]
    Failover {
        name: String,
        /// The store of the secondary write target to serve from.
        #[arg(long, value_name = "STORE")]
        to: String,
        #[arg(long, value_enum)]
        mode: Mode,
    },
    /// Return to the primary (after read-write failover, first syncing back what was written).
    #[command(after_help = "Example:\n  ferry bucket failback photos --wait")]
    Failback {
        name: String,
        /// Return only when the bucket is back on its primary.
        #[arg(long)]
        wait: bool,
    },
}

fn path(name: &str) -> String {
    format!("/api/v1/buckets/{}", urlencoding::encode(name))
}

pub async fn run(cmd: BucketCommand, client: &AdminClient, as_json: bool) -> anyhow::Result<()> {
    let out = |v: &Value, text: String| {
        if as_json {
            println!("{v}");
        } else {
            println!("{text}");
        }
    };
    match cmd {
        BucketCommand::Create {
            name,
            targets: Targets {
                write_to,
                read_from,
            },
        } => {
            let v = client
                .call(
                    Method::POST,
                    "/api/v1/buckets",
                    Some(json!({ "name": name, "write_to": write_to, "read_from": read_from })),
                )
                .await?;
            out(&v, format!("created bucket {name}: {}", describe(&v)));
        }
        BucketCommand::Policy {
            name,
            targets: Targets {
                write_to,
                read_from,
            },
        } => {
            let v = client
                .call_long(
                    Method::PUT,
                    &format!("{}/policy", path(&name)),
                    Some(json!({ "write_to": write_to, "read_from": read_from })),
                )
                .await?;
            out(&v, format!("bucket {name}: {}", describe(&v)));
        }
        BucketCommand::Status { name } => {
            let v = client.call(Method::GET, &path(&name), None).await?;
            out(&v, status_text(&v));
        }
        BucketCommand::List => {
            let v = client.call(Method::GET, "/api/v1/buckets", None).await?;
            let rows = v
                .as_array()
                .ok_or_else(|| anyhow!("unexpected answer from the server"))?;
            let mut text = format!("{:<24} {:<28} POLICY", "NAME", "MODE");
            for r in rows {
                let s = |k: &str| r.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
                text.push_str(&format!(
                    "\n{:<24} {:<28} {}",
                    s("name"),
                    s("mode"),
                    describe(r)
                ));
            }
            out(&v, text);
        }
        BucketCommand::Remove { name } => {
            client.call(Method::DELETE, &path(&name), None).await?;
            out(
                &json!({ "removed": name }),
                format!("removed bucket {name}"),
            );
        }
        BucketCommand::Failover { name, to, mode } => {
            let mode = match mode {
                Mode::ReadOnly => "read-only",
                Mode::ReadWrite => "read-write",
            };
            let v = client
                .call(
                    Method::POST,
                    &format!("{}/failover", path(&name)),
                    Some(json!({ "to": to, "mode": mode })),
                )
                .await?;
            out(
                &v,
                format!("bucket {name}: {}", v["mode"].as_str().unwrap_or("")),
            );
            // A target that was behind serves older data for the keys it owes.
            if let Ok(s) = client.call(Method::GET, &path(&name), None).await {
                let behind = s["targets"].as_array().into_iter().flatten().find(|t| {
                    t["target"]
                        .as_str()
                        .is_some_and(|l| l.split(':').next() == Some(&to))
                        && t["owed_count"].as_i64().unwrap_or(0) > 0
                });
                if let Some(t) = behind {
                    eprintln!(
                        "ferry: warning: {} took over {} writes behind: reads of those keys return their older state until failback, which keeps the newer state for them",
                        t["target"].as_str().unwrap_or(""),
                        t["owed_count"]
                    );
                }
            }
        }
        BucketCommand::Failback { name, wait } => {
            let v = client
                .call_long(
                    Method::POST,
                    &format!("{}/failback?wait={wait}", path(&name)),
                    None,
                )
                .await?;
            let text = if wait {
                format!("bucket {name}: back on its primary ({})", describe(&v))
            } else {
                format!(
                    "bucket {name}: failback started; `ferry bucket status {name}` shows progress"
                )
            };
            out(&v, text);
        }
    }
    Ok(())
}

fn targets(v: &Value, k: &str) -> String {
    v["policy"][k]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    format!(
                        "{}:{}",
                        t["store"].as_str().unwrap_or(""),
                        t["bucket"].as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn describe(v: &Value) -> String {
    format!(
        "write to {}; read from {}",
        targets(v, "write_to"),
        targets(v, "read_from")
    )
}

fn status_text(v: &Value) -> String {
    let mut s = format!(
        "bucket {}: {}; {} writes owed in all\n{:<28} {:<10} {:<8} {:>8} {:>12} {:>10}  ERROR",
        v["name"].as_str().unwrap_or(""),
        v["mode"].as_str().unwrap_or(""),
        v["owed_total"].as_i64().unwrap_or(0),
        "TARGET",
        "ROLE",
        "HEALTH",
        "OWED",
        "OWED BYTES",
        "OLDEST"
    );
    for t in v["targets"].as_array().into_iter().flatten() {
        s.push_str(&format!(
            "\n{:<28} {:<10} {:<8} {:>8} {:>12} {:>10}  {}",
            t["target"].as_str().unwrap_or(""),
            t["role"].as_str().unwrap_or(""),
            if t["healthy"].as_bool().unwrap_or(false) {
                "ok"
            } else {
                "DOWN"
            },
            t["owed_count"].as_i64().unwrap_or(0),
            t["owed_bytes"].as_i64().unwrap_or(0),
            t["oldest_owed_age_s"]
                .as_f64()
                .map(|a| format!("{a:.1}s"))
                .unwrap_or_else(|| "-".into()),
            t["error"].as_str().unwrap_or("")
        ));
    }
    if let Some(e) = v["failback_error"]["error"].as_str() {
        let ago = v["failback_error"]["at_ms"]
            .as_i64()
            .map(|t| (crate::state::now_ms() - t).max(0) / 1000)
            .unwrap_or(0);
        s.push_str(&format!("\nlast failback failed {ago}s ago: {e}"));
    }
    s
}
