//! The admin server: a JSON REST API under `/api/v1` (bearer token), `/health`, `/ready`,
//! `/metrics` (Prometheus) and the OpenAPI document, on its own listener (loopback by
//! default).
//!
//! Owns: admin routes, token checking, JSON error bodies. The operations themselves live in
//! the layers below (`registry` for stores, `bucket` for namespace buckets, `jobs` for jobs).

mod buckets;
mod jobs;
mod openapi;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::bucket::Buckets;
use crate::registry::{self, AddStore, Opened, Registry};
use crate::telemetry::Metrics;

pub struct AdminState {
    pub registry: Arc<Registry>,
    pub buckets: Arc<Buckets>,
    pub metrics: Arc<Metrics>,
    pub token: String,
}

/// An admin API error: a status and a one-line message.
pub struct ApiError(StatusCode, String);

/// A JSON request body as a handler takes it.
pub(crate) type Body<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

/// The request's JSON document, or 400 naming what is wrong with it (axum says 422 for a
/// document of the wrong shape; for a client, and for the CLI's exit code 2, it is bad
/// input like any other). Other refusals keep their status (415, 413).
pub(crate) fn json_body<T>(b: Body<T>) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(|e| {
        let status = match e.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            s => s,
        };
        ApiError(status, e.body_text())
    })
}

/// A request's query parameters, or the rejection to answer with [`query`].
pub(crate) type QueryOf<T> =
    Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>;

/// The query's parameters, or 400 in the API's JSON naming what is wrong (a parameter the
/// route does not know: a typo must not pass unseen), checked after the token.
pub(crate) fn query<T>(q: QueryOf<T>) -> Result<T, ApiError> {
    q.map(|axum::extract::Query(t)| t)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(json!({ "error": self.1 }))).into_response();
        // A 401 names the scheme it wants (RFC 9110, section 15.5.2).
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"ferry admin\""),
            );
        }
        r
    }
}

impl From<registry::Error> for ApiError {
    fn from(e: registry::Error) -> Self {
        let msg = e.to_string();
        ApiError::from_registry(&e, msg)
    }
}

impl ApiError {
    /// The status a registry error answers with, and `msg`.
    fn from_registry(e: &registry::Error, msg: String) -> Self {
        use crate::state::Error as S;
        let status = match e {
            registry::Error::State(S::NoSuchStore(_)) => StatusCode::NOT_FOUND,
            registry::Error::State(S::StoreExists(_)) => StatusCode::CONFLICT,
            registry::Error::Invalid { .. } => StatusCode::BAD_REQUEST,
            registry::Error::InUse { .. } => StatusCode::CONFLICT,
            registry::Error::Store { source, .. } if !source.is_retryable() => {
                StatusCode::BAD_REQUEST
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, msg)
    }
}

fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        // The scheme is case-insensitive (RFC 9110).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim_start());
    // Constant-time comparison: the token is a secret.
    let ok = given.len() == state.token.len()
        && given
            .bytes()
            .zip(state.token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if ok {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token (Authorization: Bearer …)".into(),
        ))
    }
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .route("/api/v1/stores", get(list_stores).post(add_store))
        .route("/api/v1/stores/{name}", axum::routing::delete(remove_store))
        .route("/api/v1/stores/{name}/rescan", post(rescan_store))
        .route("/api/v1/buckets", get(buckets::list).post(buckets::create))
        .route(
            "/api/v1/buckets/{name}",
            get(buckets::status).delete(buckets::remove),
        )
        .route(
            "/api/v1/buckets/{name}/policy",
            axum::routing::put(buckets::set_policy),
        )
        .route("/api/v1/buckets/{name}/failover", post(buckets::failover))
        .route("/api/v1/buckets/{name}/failback", post(buckets::failback))
        .route("/api/v1/verify", post(buckets::verify))
        .route("/api/v1/jobs", get(jobs::list).post(jobs::submit))
        .route("/api/v1/jobs/{id}", get(jobs::show))
        .route("/api/v1/jobs/{id}/pause", post(jobs::pause))
        .route("/api/v1/jobs/{id}/resume", post(jobs::resume))
        .route("/api/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/api/v1/jobs/{id}/dead", get(jobs::dead))
        .route("/api/v1/jobs/{id}/retry-dead", post(jobs::retry_dead))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Whether the route at `/api/v1/{rest}` takes query parameters.
fn takes_query(method: &axum::http::Method, rest: &str) -> bool {
    let seg: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    matches!(
        (method.as_str(), seg.as_slice()),
        ("DELETE", ["buckets", _])
            | ("POST", ["buckets", _, "failback"])
            | ("POST", ["stores", _, "rescan"])
            | ("GET", ["jobs", _, "dead"])
            // A static document: a cache-busting `?v=…` from a browser or a UI is harmless.
            | ("GET", ["openapi.json"])
    )
}

/// In front of every route: the API's token is checked before anything of the request is
/// looked at (a malformed job id without a token is 401, not 400), and every error leaves as
/// the API's JSON (`{"error": …}`), including the ones axum answers itself: an unknown
/// route, a method a route does not take, a path or query that does not parse, a body over
/// the limit (413).
async fn guard(
    State(s): State<Arc<AdminState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    if path.starts_with("/api/v1/")
        && path != "/api/v1/openapi.json"
        && let Err(e) = authorize(&s, req.headers())
    {
        return e.into_response();
    }
    // A query parameter a route does not take is refused, not ignored (a probe's
    // `?drop_owed=true` on a policy PUT, where it belongs in the body, passed unseen); the
    // routes that take some refuse the ones they do not know themselves.
    if let (Some(rest), Some(q)) = (path.strip_prefix("/api/v1/"), req.uri().query())
        && !q.is_empty()
        && !takes_query(&method, rest)
    {
        return ApiError(
            StatusCode::BAD_REQUEST,
            format!("{method} {path} takes no query parameters (got {q:?})"),
        )
        .into_response();
    }
    // Run to its end even if the client goes away (Ctrl-C on the CLI): a policy change, a
    // failover or a store removal dropped between its steps would be left half done.
    let resp = match tokio::spawn(next.run(req)).await {
        Ok(r) => r,
        Err(e) => ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request's handler failed: {e}"),
        )
        .into_response(),
    };
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let msg = match status {
        _ if !text.is_empty() => text,
        StatusCode::NOT_FOUND => format!("no such route: {method} {path}"),
        StatusCode::METHOD_NOT_ALLOWED => format!("{path} does not take {method}"),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut out = ApiError(status, msg).into_response();
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

async fn ready(State(s): State<Arc<AdminState>>) -> Result<&'static str, ApiError> {
    s.registry
        .db()
        .setting("ready-probe")
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok("ready\n")
}

async fn metrics(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    s.buckets.refresh_metrics().await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn list_stores(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(s.registry.list().await?))
}

async fn add_store(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    body: Body<AddStore>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let req = json_body(body)?;
    let summary = s.registry.add(req).await?;
    let mut v = serde_json::to_value(&summary)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if let Some(w) = s.registry.first_call(&summary.name).await {
        v["warning"] = w.into();
    }
    Ok((StatusCode::CREATED, Json(v)))
}

async fn remove_store(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    s.registry.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?adopt=true`: take bucket folders replaced since they were recorded as the buckets'.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RescanQuery {
    #[serde(default)]
    adopt: bool,
}

async fn rescan_store(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(name): Path<String>,
    q: QueryOf<RescanQuery>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let q = query(q)?;
    match s.registry.get(&name).await? {
        Opened::Fs(fs) => {
            let report = fs.rescan_with(q.adopt).await.map_err(|e| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("store {name}: {e}"),
                )
            })?;
            Ok(Json(report))
        }
        Opened::S3(_) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("store {name} is an s3 store; only fs stores can be rescanned"),
        )),
    }
}
