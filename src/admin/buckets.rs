//! Admin routes for namespace buckets (create, policy, status, failover, failback) and
//! `verify` (compare two `store:bucket[/prefix]` listings).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::{AdminState, ApiError, QueryOf, authorize, query};
use crate::bucket::{self, FailoverMode};
use crate::registry;
use crate::store::{self, BucketName};
use crate::transfer::diff::{self, Side};

impl From<bucket::Error> for ApiError {
    fn from(e: bucket::Error) -> Self {
        use bucket::Error as E;
        let status = match &e {
            E::Invalid(_) => StatusCode::BAD_REQUEST,
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Exists(_) | E::Conflict(_) => StatusCode::CONFLICT,
            E::Registry(r) => return ApiError::from_registry(r, e.to_string()),
            E::Store(s) if s.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
            // A target's store refusing the call (its credentials, a policy, an answer it
            // gives every caller) is no fault of the request: not 400, which the CLI says
            // is bad usage (exit 2).
            E::Store(store::Error::Remote { .. } | store::Error::Denied(_)) => {
                StatusCode::BAD_GATEWAY
            }
            E::Store(_) => StatusCode::BAD_REQUEST,
            E::Failback { .. } | E::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            E::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

use super::{Body, json_body as body};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBucket {
    name: String,
    write_to: Vec<String>,
    #[serde(default)]
    read_from: Vec<String>,
    /// Delete a secondary's keys the primary lacks instead of refusing.
    #[serde(default)]
    delete_extra: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPolicy {
    write_to: Vec<String>,
    #[serde(default)]
    read_from: Vec<String>,
    /// Give up what targets left out are still owed instead of refusing.
    #[serde(default)]
    drop_owed: bool,
    /// Delete an added secondary's keys the primary lacks instead of refusing.
    #[serde(default)]
    delete_extra: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    #[serde(default)]
    drop_owed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverReq {
    to: String,
    mode: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailbackQuery {
    #[serde(default)]
    wait: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyReq {
    a: String,
    b: String,
    /// Read and compare the objects whose content listings and HEAD cannot tell apart.
    #[serde(default)]
    download: bool,
}

pub async fn list(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(s.buckets.list()))
}

pub async fn create(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    b: Body<CreateBucket>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let req = body(b)?;
    let view = s
        .buckets
        .create(&req.name, &req.write_to, &req.read_from, req.delete_extra)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn status(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(s.buckets.status(&name).await?))
}

pub async fn set_policy(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(name): Path<String>,
    b: Body<SetPolicy>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let req = body(b)?;
    Ok(Json(
        s.buckets
            .set_policy(
                &name,
                &req.write_to,
                &req.read_from,
                req.drop_owed,
                req.delete_extra,
            )
            .await?,
    ))
}

pub async fn remove(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(name): Path<String>,
    q: QueryOf<RemoveQuery>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let q = query(q)?;
    s.buckets.remove(&name, q.drop_owed).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn failover(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(name): Path<String>,
    b: Body<FailoverReq>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let req = body(b)?;
    let mode = FailoverMode::parse(&req.mode).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    Ok(Json(s.buckets.failover(&name, &req.to, mode).await?))
}

pub async fn failback(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(name): Path<String>,
    q: QueryOf<FailbackQuery>,
) -> Result<axum::response::Response, ApiError> {
    authorize(&s, &h)?;
    let q = query(q)?;
    let buckets = s.buckets.clone();
    // Checks that need no waiting answer at once, with or without `wait`.
    let st = buckets.status(&name).await?;
    if st.failover.is_none() {
        return Err(bucket::Error::Conflict(format!("bucket {name} is not failed over")).into());
    }
    buckets.refuse_while_failing_back(&name)?;
    if q.wait {
        // In a task of its own: a client that goes away (Ctrl-C on `failback --wait`) must
        // not cancel a failback half-way; it finishes, and status shows it.
        let n = name.clone();
        let done = tokio::spawn(async move { buckets.failback(&n).await })
            .await
            .map_err(|e| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the failback of {name} stopped: {e}"),
                )
            })?;
        return Ok(Json(done?).into_response());
    }
    buckets.failback_refused(&name).await?;
    tokio::spawn(async move {
        if let Err(e) = buckets.failback(&name).await {
            tracing::error!(bucket = %name, error = %e, "failback failed");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "status": "failback started; see the bucket's status" })),
    )
        .into_response())
}

/// Parses `store:bucket[/prefix]`.
fn side_spec(s: &str) -> Result<(String, BucketName, String), ApiError> {
    let bad = |why: &str| ApiError(StatusCode::BAD_REQUEST, format!("{s:?}: {why}"));
    let (store, rest) = s
        .split_once(':')
        .ok_or_else(|| bad("expected store:bucket[/prefix]"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket = BucketName::parse(bucket).map_err(|e| bad(&e.to_string()))?;
    Ok((
        store.to_owned(),
        bucket,
        diff::folder_prefix(prefix).map_err(|e| bad(&e))?,
    ))
}

/// Most differences a verify answer lists (the counts are always complete).
const MAX_LISTED: usize = 100_000;

pub async fn verify(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    b: Body<VerifyReq>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let req = body(b)?;
    let (sa, ba, pa) = side_spec(&req.a)?;
    let (sb, bb, pb) = side_spec(&req.b)?;
    let opened_a = s.registry.get(&sa).await.map_err(|e| named(&sa, e))?;
    let opened_b = s.registry.get(&sb).await.map_err(|e| named(&sb, e))?;
    // An fs side is compared as its files are now, not as its index last saw them.
    for (opened, bucket) in [(&opened_a, &ba), (&opened_b, &bb)] {
        opened.refresh(bucket).await.map_err(side_error)?;
    }
    let store_a = s.buckets.watched(&sa, opened_a.store());
    let store_b = s.buckets.watched(&sb, opened_b.store());
    let a = Side {
        store: store_a.as_ref(),
        bucket: ba,
        prefix: pa,
    };
    let b = Side {
        store: store_b.as_ref(),
        bucket: bb,
        prefix: pb,
    };
    let mut listed = Vec::new();
    let summary = diff::diff(&a, &b, req.download, |d| {
        if listed.len() < MAX_LISTED {
            listed.push(d);
        }
    })
    .await
    .map_err(side_error)?;
    Ok(Json(json!({
        "summary": summary,
        "differences": listed,
        "truncated": summary.differences as usize > listed.len(),
    })))
}

/// The request was well-formed: a side could not be read.
fn side_error(e: store::Error) -> ApiError {
    let status = match &e {
        store::Error::NoSuchBucket { .. } => StatusCode::NOT_FOUND,
        e if e.is_retryable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError(status, e.to_string())
}

fn named(store: &str, e: registry::Error) -> ApiError {
    ApiError::from_registry(&e, format!("store {store:?}: {e}"))
}
