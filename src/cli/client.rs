//! A small client for the admin API, used by the admin subcommands.

use std::path::Path;

use anyhow::{Context, anyhow};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::UsageError;

pub struct AdminClient {
    base: String,
    token: String,
    http: Client<HttpConnector, Full<bytes::Bytes>>,
}

impl AdminClient {
    /// Finds the server (`--server`, `FERRY_SERVER`, default `http://127.0.0.1:9001`) and the
    /// token (`FERRY_ADMIN_TOKEN`, else `DATA/admin-token`).
    pub fn new(server: Option<String>, data: Option<&Path>) -> anyhow::Result<Self> {
        let base = server
            .unwrap_or_else(|| "http://127.0.0.1:9001".into())
            .trim_end_matches('/')
            .to_owned();
        if !base.starts_with("http://") {
            return Err(UsageError(format!("--server {base:?} must be an http:// URL")).into());
        }
        let token = match std::env::var("FERRY_ADMIN_TOKEN") {
            Ok(t) if !t.is_empty() => t,
            _ => {
                let file = data.unwrap_or(Path::new("ferry-data")).join("admin-token");
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
        let http = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self { base, token, http })
    }

    /// Sends a request; returns the JSON body of a 2xx answer, or the server's error message.
    pub async fn call(
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
        let value: serde_json::Value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into())
            })
        };
        if status.is_success() {
            Ok(value)
        } else {
            let msg = value
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            Err(anyhow!("{msg}"))
        }
    }
}
