//! `/api/v1`: JSON for scripts and CI. Handlers parse, call the engine and
//! map errors; nothing else.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use leakscope_engine::{now_ms, Engine, EngineError};
use leakscope_model::{ApiError, TimeRange};
use serde::Deserialize;

use crate::serve::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/engine", get(engine_status))
        .route("/api/v1/containers", get(list_containers))
        .route("/api/v1/containers/{id}", get(container))
        .route("/api/v1/containers/{id}/memory", get(memory))
        .route("/api/v1/containers/{id}/leak", get(leak))
        .route("/api/v1/containers/{id}/events", get(events))
        .route("/api/v1/containers/{id}/limit-advice", get(limit_advice))
        .route("/api/v1/containers/{id}/logs", get(logs))
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/{*rest}", get(unknown_route))
}

/// An error answer: JSON `{"error": ...}` with the status that fits.
pub struct HttpError(pub StatusCode, pub String);

impl From<EngineError> for HttpError {
    fn from(e: EngineError) -> Self {
        let status = match &e {
            EngineError::UnknownContainer(_) | EngineError::UnknownDump(_) | EngineError::UnknownReport(_) | EngineError::UnknownObject { .. } => {
                StatusCode::NOT_FOUND
            }
            EngineError::AnalysisPending(_) => StatusCode::ACCEPTED,
            EngineError::AnalysisFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            EngineError::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            EngineError::EngineUnreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            EngineError::BadRequest(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "request failed");
        }
        HttpError(status, e.to_string())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

/// The range part of a query: `range=1h`, or `from`/`to` (RFC 3339, Unix
/// seconds, or local `YYYY-MM-DDTHH:MM` with `tz` minutes east of UTC).
#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    pub range: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Kept as text: numbers inside `#[serde(flatten)]` do not deserialize from query strings.
    pub tz: Option<String>,
}

impl RangeQuery {
    /// The viewer's zone in minutes east of UTC (0 when absent).
    pub fn tz_minutes(&self) -> Result<i32, HttpError> {
        match self.tz.as_deref().filter(|t| !t.is_empty()) {
            None => Ok(0),
            Some(t) => t
                .parse::<i32>()
                .ok()
                .filter(|m| m.abs() <= 24 * 60)
                .ok_or_else(|| HttpError(StatusCode::BAD_REQUEST, format!("'tz' must be minutes east of UTC, got '{t}'"))),
        }
    }

    pub fn resolve(&self) -> Result<TimeRange, HttpError> {
        TimeRange::from_query(
            self.range.as_deref(),
            self.from.as_deref(),
            self.to.as_deref(),
            self.tz_minutes()?,
            now_ms(),
        )
        .map_err(|e| HttpError(StatusCode::BAD_REQUEST, e.to_string()))
    }
}

async fn engine_status(State(engine): State<Engine>) -> impl IntoResponse {
    Json(engine.status())
}

async fn list_containers(State(engine): State<Engine>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.containers()?))
}

async fn container(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.container(&id).await?))
}

#[derive(Debug, Deserialize)]
struct MemoryQuery {
    #[serde(flatten)]
    range: RangeQuery,
    /// Bucket width in seconds; under 60 reads raw samples, else minute rollups.
    step: Option<u64>,
}

async fn memory(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Query(query): Query<MemoryQuery>,
) -> Result<impl IntoResponse, HttpError> {
    let range = query.range.resolve()?;
    Ok(Json(engine.series(&id, range.from_ms, range.to_ms, query.step).await?))
}

/// Lifecycle events (OOM kills, exits with their codes, starts, restarts) in a range.
async fn events(State(engine): State<Engine>, Path(id): Path<String>, Query(range): Query<RangeQuery>) -> Result<impl IntoResponse, HttpError> {
    let range = range.resolve()?;
    Ok(Json(engine.events(&id, range.from_ms, range.to_ms).await?))
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    /// Unix milliseconds: the minute around it (±30 s) unless `seconds` says otherwise.
    at: i64,
    seconds: Option<i64>,
}

/// Log lines around a moment (at most 500).
async fn logs(State(engine): State<Engine>, Path(id): Path<String>, Query(q): Query<LogsQuery>) -> Result<impl IntoResponse, HttpError> {
    let half = q.seconds.unwrap_or(60).clamp(2, 3600) * 1000 / 2;
    Ok(Json(engine.logs(&id, q.at - half, q.at + half, 500).await?))
}

/// A suggested limit and the command that applies it; `null` with under an hour of history.
async fn limit_advice(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.limit_advice(&id).await?))
}

/// The leak verdict, assessed now from the stored series.
async fn leak(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.assess_container(&id).await?))
}

/// Server-sent events: the whole overview on every sampling tick.
async fn stream(State(engine): State<Engine>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let updates = tokio_stream::wrappers::WatchStream::new(engine.subscribe()).map(|overview| {
        let event = match serde_json::to_string(&*overview) {
            Ok(json) => Event::default().event("message").data(json),
            Err(e) => Event::default().event("error").data(e.to_string()),
        };
        Ok(event)
    });
    Sse::new(updates).keep_alive(KeepAlive::default())
}

async fn unknown_route() -> HttpError {
    HttpError(StatusCode::NOT_FOUND, "no such API route; see the README for /api/v1".into())
}
