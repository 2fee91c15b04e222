//! `/api/v1`: JSON for scripts and CI. Handlers parse, call the engine and
//! map errors; nothing else.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use leakscope_engine::Engine;
use serde::Deserialize;

use crate::web::{AppState, HttpError, RangeQuery};

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

async fn engine_status(State(engine): State<Engine>) -> impl IntoResponse {
    let mut status = engine.status();
    status.handler_panics = crate::web::panics::count();
    Json(status)
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
