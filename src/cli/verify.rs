//! `ferry verify A B`: compare two `store:bucket[/prefix]` listings on a running server;
//! prints every difference and exits 1 if there is any, 3 if it could not compare them.

use anyhow::anyhow;
use http::Method;
use serde_json::json;

use super::client::AdminClient;
use super::{NotCompared, UsageError};

pub async fn run(
    a: &str,
    b: &str,
    download: bool,
    client: &AdminClient,
    as_json: bool,
) -> anyhow::Result<()> {
    for s in [a, b] {
        if s.contains("://") || s.starts_with('/') || s.starts_with('.') {
            return Err(UsageError(format!(
                "{s:?}: ferry verify compares store:bucket[/prefix] sides of stores the server \
                 has (`ferry store list`); register an endpoint with `ferry store add` first"
            ))
            .into());
        }
        let Some((_, rest)) = s.split_once(':') else {
            return Err(
                UsageError(format!("{s:?} is not of the form store:bucket[/prefix]")).into(),
            );
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        crate::store::BucketName::parse(bucket).map_err(|e| UsageError(format!("{s:?}: {e}")))?;
        crate::transfer::diff::folder_prefix(prefix)
            .map_err(|e| UsageError(format!("{s:?}: {e}")))?;
    }
    let v = client
        .call_long(
            Method::POST,
            "/api/v1/verify",
            Some(json!({ "a": a, "b": b, "download": download })),
        )
        .await
        .map_err(|e| e.context(NotCompared(format!("could not compare {a} and {b}"))))?;
    let n = v["summary"]["differences"].as_u64().unwrap_or(0);
    if as_json {
        println!("{v}");
    } else {
        for d in v["differences"].as_array().into_iter().flatten() {
            let key = d["key"].as_str().unwrap_or("");
            match d["kind"].as_str().unwrap_or("") {
                "only-in-a" => println!("only in {a}: {key} ({} bytes)", d["size"]),
                "only-in-b" => println!("only in {b}: {key} ({} bytes)", d["size"]),
                "size" => println!("size differs: {key} ({} vs {} bytes)", d["a"], d["b"]),
                "content" => println!(
                    "content differs: {key} ({})",
                    crate::transfer::diff::etags_said(
                        d["a"].as_str().unwrap_or(""),
                        d["b"].as_str().unwrap_or("")
                    )
                ),
                "unnamed" => println!(
                    "not compared: {key} in {}: Ferry cannot name it ({})",
                    if d["in_a"].as_bool().unwrap_or(false) {
                        &a
                    } else {
                        &b
                    },
                    d["why"].as_str().unwrap_or("")
                ),
                other => println!("{other}: {key}"),
            }
        }
        if v["truncated"].as_bool().unwrap_or(false) {
            println!("(only the first differences are listed)");
        }
        let compared = v["summary"]["compared"].as_u64().unwrap_or(0);
        println!(
            "compared {compared} {}: {n} differences ({} compared by size only)",
            super::objects(compared),
            v["summary"]["size_only"]
        );
    }
    if n > 0 {
        return Err(anyhow!("{a} and {b} differ in {n} {}", super::objects(n)));
    }
    let size_only = v["summary"]["size_only"].as_u64().unwrap_or(0);
    if size_only > 0 && !download {
        eprintln!(
            "ferry: {size_only} objects were compared by size only (their ETags cannot be \
             compared); --download reads and compares their bytes"
        );
    }
    // Equal, but a mistyped prefix is equal too: say when there was nothing to compare.
    if v["summary"]["compared"].as_u64() == Some(0) {
        eprintln!("ferry: {a} and {b} are both empty (is the bucket or prefix right?)");
    }
    Ok(())
}
