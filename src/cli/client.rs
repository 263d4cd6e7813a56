//! A small client for the admin API, used by the admin subcommands.

use std::path::Path;

use anyhow::{Context, anyhow};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::UsageError;

/// How long the admin client waits to connect.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long it waits for an answer to an ordinary call.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

pub struct AdminClient {
    base: String,
    token: String,
    http: Client<HttpConnector, Full<bytes::Bytes>>,
}

impl AdminClient {
    /// Finds the server (`--server`, `FERRY_SERVER`, else the address a server running on the
    /// data directory wrote to `DATA/serve.json`, else `http://127.0.0.1:9001`) and the token
    /// (`FERRY_ADMIN_TOKEN`, else `DATA/admin-token`).
    pub fn new(server: Option<String>, data: Option<&Path>) -> anyhow::Result<Self> {
        let dir = data.unwrap_or(Path::new("ferry-data"));
        // Without --server, the server running on that data directory says where it listens.
        let running = || {
            let info = std::fs::read_to_string(dir.join("serve.json")).ok()?;
            let v: serde_json::Value = serde_json::from_str(&info).ok()?;
            v["admin"].as_str().map(str::to_owned)
        };
        let base = server
            .or_else(running)
            .unwrap_or_else(|| "http://127.0.0.1:9001".into())
            .trim_end_matches('/')
            .to_owned();
        let valid = base.starts_with("http://")
            && base
                .parse::<http::Uri>()
                .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
        if !valid {
            return Err(UsageError(format!(
                "--server {base:?} must be an http:// URL with a host (FERRY_SERVER sets it too)"
            ))
            .into());
        }
        let token = match std::env::var("FERRY_ADMIN_TOKEN") {
            Ok(t) if !t.is_empty() => t,
            _ => {
                let file = dir.join("admin-token");
                std::fs::read_to_string(&file)
                    .map(|t| t.trim().to_owned())
                    .map_err(|_| {
                        UsageError(format!(
                            "no admin token: set FERRY_ADMIN_TOKEN or pass --data pointing at the server's data directory ({} not readable)",
                            file.display()
                        ))
                    })?
            }
        };
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let http = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { base, token, http })
    }

    /// Sends a request; returns the JSON body of a 2xx answer, or the server's error message
    /// (a 400 as bad usage, exit 2). Gives up on a server that has not answered within
    /// [`ANSWER_TIMEOUT`].
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        match tokio::time::timeout(ANSWER_TIMEOUT, self.call_long(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!(
                "the server at {} did not answer within {} s (is it a Ferry admin API?)",
                self.base,
                ANSWER_TIMEOUT.as_secs()
            )),
        }
    }

    /// [`Self::call`] without a time limit, for calls that answer once long work is done
    /// (a failback with `--wait`, a verify, a rescan, a policy change's backfill).
    pub async fn call_long(
        &self,
        method: http::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}{path}", self.base);
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let req = http::Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(payload)))
            .context("building the request")?;
        let resp = self.http.request(req).await.map_err(|e| {
            anyhow!(
                "cannot reach the ferry server at {} ({e}); is `ferry serve` running?",
                self.base
            )
        })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .context("reading the server's answer")?
            .to_bytes();
        let value: Option<serde_json::Value> = if bytes.is_empty() {
            Some(serde_json::Value::Null)
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        let ours =
            |v: &serde_json::Value| v.get("error").and_then(|e| e.as_str()).map(str::to_owned);
        match value {
            Some(v) if status.is_success() => Ok(v),
            Some(v) if ours(&v).is_some() => {
                let msg = ours(&v).unwrap_or_default();
                if status == http::StatusCode::BAD_REQUEST {
                    Err(UsageError(msg).into())
                } else {
                    Err(anyhow!("{msg}"))
                }
            }
            // Not an answer of Ferry's admin API (the S3 port by mistake, a proxy's page).
            _ => Err(anyhow!(
                "{url} answered HTTP {status} with {}: is {} a Ferry admin API (ferry serve --admin-listen)?",
                if bytes.is_empty() {
                    "nothing".to_owned()
                } else {
                    format!("{} bytes that are not Ferry's JSON", bytes.len())
                },
                self.base
            )),
        }
    }
}
