//! Admin routes for jobs: list, detail with live progress, pause, resume, cancel, the
//! dead-letter list and retrying it. The operations are `jobs::control`'s.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::json;

use super::{AdminState, ApiError, authorize};
use crate::jobs::control::{self, Error};

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::State(crate::state::Error::NoSuchJob(_)) => StatusCode::NOT_FOUND,
            Error::Conflict { .. } => StatusCode::CONFLICT,
            Error::StillRunning(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::State(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

fn state_err(e: crate::state::Error) -> ApiError {
    ApiError::from(Error::State(e))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submit {
    spec: crate::jobs::spec::MigrateSpec,
    fingerprint: Option<String>,
}

/// Checks both sides and records a migration job (or finds the unfinished one with the same
/// fingerprint); this server's job runner picks it up within seconds.
pub async fn submit(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    body: super::Body<Submit>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let req = super::json_body(body)?;
    // What is wrong with the spec itself first (an endpoint that is no URL is not missing
    // credentials).
    req.spec
        .check()
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    if let Some(why) = crate::jobs::open::missing_server_credentials(&req.spec) {
        return Err(ApiError(StatusCode::BAD_REQUEST, why));
    }
    let fp = req.fingerprint.unwrap_or_else(|| req.spec.fingerprint(""));
    let sub = crate::jobs::submit(&s.registry, &req.spec, &fp, false)
        .await
        .map_err(|e| {
            let status = match &e {
                crate::jobs::Error::Usage(_) => StatusCode::BAD_REQUEST,
                crate::jobs::Error::Side { source, .. } if source.is_retryable() => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                crate::jobs::Error::Side { .. } => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            // The whole chain in one line, as the CLI prints it.
            ApiError(status, crate::telemetry::one_line(&e))
        })?;
    let status = if sub.resumed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(json!({ "job": sub.job, "resumed": sub.resumed })),
    ))
}

pub async fn list(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    Ok(Json(s.registry.db().jobs().await.map_err(state_err)?))
}

pub async fn show(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let id = job_id(&id)?;
    Ok(Json(control::detail(s.registry.db(), id, 200).await?))
}

pub async fn pause(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let id = job_id(&id)?;
    let parts = control::pause(s.registry.db(), id).await?;
    Ok(Json(
        json!({ "job": id, "state": "paused", "recorded_parts": parts }),
    ))
}

pub async fn resume(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let id = job_id(&id)?;
    control::resume(s.registry.db(), id).await?;
    Ok(Json(json!({ "job": id, "state": "running" })))
}

pub async fn cancel(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let id = job_id(&id)?;
    let c = control::cancel(&s.registry, id).await?;
    Ok(Json(json!({
        "job": id,
        "state": "cancelled",
        "aborted_uploads": c.aborted,
        "uploads_not_aborted": c.not_aborted,
    })))
}

/// Dead letters per page at most (`limit`; [`control::DEAD_PAGE`] unless given).
const DEAD_MAX: i64 = 10_000;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadQuery {
    /// The `id` of the last dead letter of the page before.
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

/// A page of the dead-letter list, in task order: an empty page is its end.
pub async fn dead(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(id): Path<String>,
    q: Result<Query<DeadQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let id = job_id(&id)?;
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(control::DEAD_PAGE);
    if !(1..=DEAD_MAX).contains(&limit) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("limit must be 1 to {DEAD_MAX}, not {limit}"),
        ));
    }
    let db = s.registry.db();
    // 404 for a job that does not exist, not an empty list.
    db.job(id).await.map_err(state_err)?;
    Ok(Json(
        db.dead_tasks(id, q.after, limit).await.map_err(state_err)?,
    ))
}

pub async fn retry_dead(
    State(s): State<Arc<AdminState>>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    authorize(&s, &h)?;
    let id = job_id(&id)?;
    let n = control::retry_dead(s.registry.db(), id).await?;
    Ok((StatusCode::OK, Json(json!({ "job": id, "requeued": n }))))
}

/// A job id from the path: a number, else 400 saying so (not the router's "cannot parse to
/// an i64").
fn job_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{raw:?} is not a job id (a job's number, as `ferry job list` shows)"),
        )
    })
}
