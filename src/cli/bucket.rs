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
    /// Delete the keys an added secondary's bucket holds that the primary lacks (a secondary
    /// mirrors its primary) instead of refusing.
    #[arg(long)]
    delete_extra: bool,
}

impl Targets {
    /// The request body; flags are sent only when set (a server without them refuses
    /// unknown fields).
    fn body(&self, name: Option<&str>, drop_owed: bool) -> Value {
        let mut v = json!({ "write_to": self.write_to, "read_from": self.read_from });
        if let Some(name) = name {
            v["name"] = json!(name);
        }
        if drop_owed {
            v["drop_owed"] = json!(true);
        }
        if self.delete_extra {
            v["delete_extra"] = json!(true);
        }
        v
    }
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
        /// Give up the writes still owed to the targets this change leaves out (writes they
        /// refuse for good) instead of refusing the change.
        #[arg(long)]
        drop_owed: bool,
    },
    /// Show a bucket's mode, each target's health and what it is owed.
    #[command(after_help = "Example:\n  ferry bucket status photos --json")]
    Status { name: String },
    /// List namespace buckets.
    List,
    /// Stop serving a namespace bucket (the targets' data is left alone).
    Remove {
        name: String,
        /// Give up the writes its targets are still owed instead of refusing.
        #[arg(long)]
        drop_owed: bool,
    },
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
        BucketCommand::Create { name, targets } => {
            let v = client
                .call_long(
                    Method::POST,
                    "/api/v1/buckets",
                    Some(targets.body(Some(&name), false)),
                )
                .await?;
            out(&v, format!("created bucket {name}: {}", describe(&v)));
            if let Some(w) = v["warning"].as_str() {
                eprintln!("ferry: warning: {w}");
            }
        }
        BucketCommand::Policy {
            name,
            targets,
            drop_owed,
        } => {
            let v = client
                .call_long(
                    Method::PUT,
                    &format!("{}/policy", path(&name)),
                    Some(targets.body(None, drop_owed)),
                )
                .await?;
            out(&v, format!("bucket {name}: {}", describe(&v)));
            if let Some(w) = v["warning"].as_str() {
                eprintln!("ferry: warning: {w}");
            }
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
            let s = |r: &Value, k: &str| r.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
            let width = |k: &str, head: &str| {
                rows.iter()
                    .map(|r| s(r, k).len())
                    .max()
                    .unwrap_or(0)
                    .max(head.len())
            };
            let (nw, mw) = (width("name", "NAME"), width("mode", "MODE"));
            let mut text = format!("{:<nw$}  {:<mw$}  POLICY", "NAME", "MODE");
            for r in rows {
                text.push_str(&format!(
                    "\n{:<nw$}  {:<mw$}  {}",
                    s(r, "name"),
                    s(r, "mode"),
                    describe(r)
                ));
            }
            out(&v, text);
        }
        BucketCommand::Remove { name, drop_owed } => {
            client
                .call(
                    Method::DELETE,
                    &if drop_owed {
                        format!("{}?drop_owed=true", path(&name))
                    } else {
                        path(&name)
                    },
                    None,
                )
                .await?;
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
            if let Some(w) = v["warning"].as_str() {
                eprintln!("ferry: warning: {w}");
            }
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
            if let Some(w) = v["warning"].as_str() {
                eprintln!("ferry: warning: {w}");
            }
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
    let targets: Vec<&Value> = v["targets"].as_array().into_iter().flatten().collect();
    // Wide enough for the longest `store:bucket`, so the columns stay columns.
    let w = targets
        .iter()
        .filter_map(|t| t["target"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(0)
        .max("TARGET".len());
    let mut s = format!(
        "bucket {}: {}; {} writes owed in all\n{:<w$}  {:<10} {:<8} {:>8} {:>12} {:>10} {:>10}  ERROR",
        v["name"].as_str().unwrap_or(""),
        v["mode"].as_str().unwrap_or(""),
        v["owed_total"].as_i64().unwrap_or(0),
        "TARGET",
        "ROLE",
        "HEALTH",
        "OWED",
        "OWED BYTES",
        "OLDEST",
        "CAUGHT UP",
    );
    for t in &targets {
        let healthy = t["healthy"].as_bool().unwrap_or(false);
        let owed = t["owed_count"].as_i64().unwrap_or(0);
        // A healthy target's error is its last catch-up error: news while it still owes
        // writes, history once it owes none.
        let error = match (t["error"].as_str(), healthy) {
            (Some(e), false) => e.to_owned(),
            (Some(e), true) if owed > 0 => format!("last: {e}"),
            _ => String::new(),
        };
        s.push_str(&format!(
            "\n{:<w$}  {:<10} {:<8} {:>8} {:>12} {:>10} {:>10}  {}",
            t["target"].as_str().unwrap_or(""),
            t["role"].as_str().unwrap_or(""),
            if healthy { "ok" } else { "DOWN" },
            owed,
            t["owed_bytes"].as_i64().unwrap_or(0),
            t["oldest_owed_age_s"]
                .as_f64()
                .map(|a| format!("{a:.1}s"))
                .unwrap_or_else(|| "-".into()),
            t["synced"].as_u64().unwrap_or(0),
            error
        ));
    }
    for t in &targets {
        if let Some(after) = t["backfill_after"].as_str() {
            let from = match after {
                "" => "not started".to_owned(),
                a => format!("journaled up to key {a:?}"),
            };
            s.push_str(&format!(
                "
{} is owed more than shown: its backfill from the primary is not done                  ({from}; resumed every 30 s)",
                t["target"].as_str().unwrap_or("")
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_columns_fit_long_targets_and_old_errors_stay_out() {
        let v = json!({
            "name": "b", "mode": "normal", "owed_total": 3,
            "targets": [
                { "target": "local:b", "role": "primary", "healthy": true, "owed_count": 0,
                  "owed_bytes": 0, "synced": 0, "error": "an outage long over" },
                { "target": "a-store-with-a-long-name:a-bucket-with-a-long-name", "role": "secondary",
                  "healthy": true, "owed_count": 3, "owed_bytes": 30, "oldest_owed_age_s": 1.5,
                  "synced": 1234, "error": "timed out" },
            ]
        });
        let text = status_text(&v);
        let lines: Vec<&str> = text.lines().collect();
        let col = |l: &str| l.find("primary").or(l.find("secondary")).or(l.find("ROLE"));
        assert_eq!(col(lines[1]), col(lines[2]), "{text}");
        assert_eq!(col(lines[1]), col(lines[3]), "{text}");
        assert!(!lines[2].contains("outage"), "{text}");
        assert!(lines[3].ends_with("1234  last: timed out"), "{text}");
        assert!(lines[1].contains("CAUGHT UP"), "{text}");
    }
}
