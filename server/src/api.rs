//! `/api/v1`: JSON for scripts and CI. Handlers parse, call the engine and
//! map errors; nothing else.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, Weak};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use leakscope_engine::Engine;
use leakscope_model::{ApiError, ContainerDetail, ContainerEvent, ContainerInfo, EngineStatus, LeakStatus, LimitAdvice, LogExcerpt, MemorySeries, Overview};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::web::{AppState, HttpError, RangeQuery};

/// The documented routes (see `openapi.rs`).
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(engine_status))
        .routes(routes!(list_containers))
        .routes(routes!(list_services))
        .routes(routes!(container))
        .routes(routes!(memory))
        .routes(routes!(leak))
        .routes(routes!(events))
        .routes(routes!(limit_advice))
        .routes(routes!(logs))
        .routes(routes!(stream))
}

/// Anything else under `/api/v1` answers a JSON 404, not the app's page.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/{*rest}", get(unknown_route))
}

/// Sampling health: the Docker engine, the sampler, storage, panics answered.
#[utoipa::path(get, path = "/api/v1/engine", tag = "engine", responses((status = 200, body = EngineStatus)))]
async fn engine_status(State(engine): State<Engine>) -> impl IntoResponse {
    let mut status = engine.status();
    status.handler_panics = crate::web::panics::count();
    Json(status)
}

/// Every container Leakscope tracks, with its latest memory and verdict.
#[utoipa::path(get, path = "/api/v1/containers", tag = "containers",
    responses((status = 200, body = Vec<ContainerInfo>), (status = 503, description = "the Docker engine does not answer", body = ApiError)))]
async fn list_containers(State(engine): State<Engine>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.containers()?))
}

/// A leak verdict per compose service over its running replicas (most severe first).
#[utoipa::path(get, path = "/api/v1/services", tag = "containers",
    responses((status = 200, body = Vec<leakscope_model::services::ServiceVerdict>), (status = 503, description = "the Docker engine does not answer", body = ApiError)))]
async fn list_services(State(engine): State<Engine>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.services()?))
}

/// One container by id or name: its details and latest snapshot.
#[utoipa::path(get, path = "/api/v1/containers/{id}", tag = "containers", params(("id" = String, Path, description = "container id, id prefix or name")),
    responses((status = 200, body = ContainerDetail), (status = 404, body = ApiError), (status = 503, body = ApiError)))]
async fn container(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.container(&id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct MemoryQuery {
    #[param(ignore)]
    #[serde(flatten)]
    range: RangeQuery,
    /// Bucket width in seconds; under 60 reads raw samples, else minute rollups.
    step: Option<u64>,
}

/// The memory series in a range: raw samples or minute rollups.
#[utoipa::path(get, path = "/api/v1/containers/{id}/memory", tag = "containers",
    params(("id" = String, Path, description = "container id or name"), RangeQuery, MemoryQuery),
    responses((status = 200, body = MemorySeries), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 503, body = ApiError)))]
async fn memory(
    State(engine): State<Engine>,
    Path(id): Path<String>,
    Query(query): Query<MemoryQuery>,
) -> Result<impl IntoResponse, HttpError> {
    let range = query.range.resolve()?;
    Ok(Json(engine.series(&id, range.from_ms, range.to_ms, query.step).await?))
}

/// Lifecycle events (OOM kills, exits with their codes, starts, restarts) in a range.
#[utoipa::path(get, path = "/api/v1/containers/{id}/events", tag = "containers",
    params(("id" = String, Path, description = "container id or name"), RangeQuery),
    responses((status = 200, body = Vec<ContainerEvent>), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 503, body = ApiError)))]
async fn events(State(engine): State<Engine>, Path(id): Path<String>, Query(range): Query<RangeQuery>) -> Result<impl IntoResponse, HttpError> {
    let range = range.resolve()?;
    Ok(Json(engine.events(&id, range.from_ms, range.to_ms).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    /// Unix milliseconds: the minute around it (±30 s) unless `seconds` says otherwise.
    at: i64,
    /// Width of the window, 2 to 3600 (default 60).
    seconds: Option<i64>,
}

/// Log lines around a moment (at most 500).
#[utoipa::path(get, path = "/api/v1/containers/{id}/logs", tag = "containers",
    params(("id" = String, Path, description = "container id or name"), LogsQuery),
    responses((status = 200, body = LogExcerpt), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 503, body = ApiError)))]
async fn logs(State(engine): State<Engine>, Path(id): Path<String>, Query(q): Query<LogsQuery>) -> Result<impl IntoResponse, HttpError> {
    let half = q.seconds.unwrap_or(60).clamp(2, 3600) * 1000 / 2;
    Ok(Json(engine.logs(&id, q.at.saturating_sub(half), q.at.saturating_add(half), 500).await?))
}

/// A suggested limit and the command that applies it; `null` with under an hour of history.
#[utoipa::path(get, path = "/api/v1/containers/{id}/limit-advice", tag = "containers",
    params(("id" = String, Path, description = "container id or name")),
    responses((status = 200, body = Option<LimitAdvice>), (status = 404, body = ApiError), (status = 503, body = ApiError)))]
async fn limit_advice(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.limit_advice(&id).await?))
}

/// The leak verdict, assessed now from the stored series.
#[utoipa::path(get, path = "/api/v1/containers/{id}/leak", tag = "containers",
    params(("id" = String, Path, description = "container id or name")),
    responses((status = 200, body = LeakStatus), (status = 404, body = ApiError), (status = 503, body = ApiError)))]
async fn leak(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.assess_container(&id).await?))
}

/// Server-sent events: the whole overview on every sampling tick.
#[utoipa::path(get, path = "/api/v1/stream", tag = "engine",
    responses((status = 200, description = "`text/event-stream`; each `message` event's data is an Overview as JSON", content_type = "text/event-stream", body = Overview)))]
async fn stream(State(engine): State<Engine>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let updates = tokio_stream::wrappers::WatchStream::new(engine.subscribe()).map(|overview| {
        let event = match overview_json(&overview) {
            Ok(json) => Event::default().event("message").data(&*json),
            Err(e) => Event::default().event("error").data(e),
        };
        Ok(event)
    });
    Sse::new(updates).keep_alive(KeepAlive::default())
}

/// The overview as JSON, made once per tick for every open stream: fifty open
/// dashboards would otherwise serialise the same containers fifty times a tick,
/// and hold fifty copies of it at once.
fn overview_json(overview: &Arc<Overview>) -> Result<Arc<str>, String> {
    static LAST: Mutex<Option<(Weak<Overview>, Arc<str>)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // The Weak keeps the allocation, so its address cannot be reused by a newer overview.
    if let Some((_, json)) = last.as_ref().filter(|(made_from, _)| std::ptr::eq(made_from.as_ptr(), Arc::as_ptr(overview))) {
        return Ok(json.clone());
    }
    let json: Arc<str> = serde_json::to_string(&**overview).map_err(|e| e.to_string())?.into();
    *last = Some((Arc::downgrade(overview), json.clone()));
    Ok(json)
}

async fn unknown_route() -> HttpError {
    HttpError(StatusCode::NOT_FOUND, "no such API route; see the README for /api/v1".into())
}
