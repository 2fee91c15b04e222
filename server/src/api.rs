//! `/api/v1`: JSON for scripts and CI. Handlers parse, call the engine and
//! map errors; nothing else.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, Weak};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
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
        .routes(routes!(list_hosts))
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
    status.holds_background = engine.holds_background();
    status.background_holder = engine.background_holder();
    Json(status)
}

/// The Docker hosts this server watches: name, whether connected, when last heard from, and how (`direct` or `agent`).
#[utoipa::path(get, path = "/api/v1/hosts", tag = "engine", responses((status = 200, body = Vec<leakscope_model::HostInfo>)))]
async fn list_hosts(
    State(engine): State<Engine>,
    State(access): State<crate::web::SharedAccess>,
    State(hub): State<Arc<crate::agent_link::AgentHub>>,
) -> Result<impl IntoResponse, HttpError> {
    let agents = access.with(|s| s.agents()).await?;
    let mut hosts = engine.hosts();
    hosts.extend(hub.hosts(&agents));
    Ok(Json(hosts))
}

/// Every container Leakscope tracks, with its latest memory and verdict.
#[utoipa::path(get, path = "/api/v1/containers", tag = "containers", params(HostQuery),
    responses((status = 200, body = Vec<ContainerInfo>), (status = 503, description = "the Docker engine does not answer", body = ApiError)))]
async fn list_containers(State(engine): State<Engine>, Query(query): Query<HostQuery>) -> Result<impl IntoResponse, HttpError> {
    let mut containers = engine.containers()?;
    if let Some(host) = query.host.filter(|h| !h.is_empty()) {
        containers.retain(|c| c.host == host);
    }
    Ok(Json(containers))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct HostQuery {
    /// Only the containers of this host (its display name, as `/api/v1/hosts` lists it).
    host: Option<String>,
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
    /// Bucket width in seconds; under 60 reads raw samples, under 3600 minute rollups, else hourly ones.
    step: Option<u64>,
}

/// The memory series in a range: raw samples, minute or hourly rollups.
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
async fn stream(State(engine): State<Engine>) -> Response {
    let frames = tokio_stream::wrappers::WatchStream::new(engine.subscribe()).map(|overview| Some(overview_frame(&overview)));
    // A comment every 15 s keeps proxies from closing a stream that waits
    // (sampling pauses while the engine restarts).
    let keep_alive = futures::stream::unfold((), |()| async {
        tokio::time::sleep(std::time::Duration::from_secs(15)).await;
        Some((Some(Bytes::from_static(b":\n\n")), ()))
    });
    // Ends when the overviews end (the engine shut down), keep-alives or not.
    let until_the_end = frames.chain(futures::stream::once(async { None }));
    let body = futures::stream::select(until_the_end, keep_alive)
        .take_while(|frame| std::future::ready(frame.is_some()))
        .filter_map(|frame| std::future::ready(frame.map(Ok::<_, Infallible>)));
    ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(body)).into_response()
}

/// The overview as one server-sent event, made once per tick and shared by
/// every open stream (a reference count, not a copy): fifty open dashboards
/// would otherwise serialise the same containers fifty times a tick and hold
/// fifty copies of them, a resident set that grows with every client.
fn overview_frame(overview: &Arc<Overview>) -> Bytes {
    static LAST: Mutex<Option<(Weak<Overview>, Bytes)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // The Weak keeps the allocation, so its address cannot be reused by a newer overview.
    if let Some((_, frame)) = last.as_ref().filter(|(made_from, _)| std::ptr::eq(made_from.as_ptr(), Arc::as_ptr(overview))) {
        return frame.clone();
    }
    // Compact JSON has no line breaks (serde_json escapes them inside strings): one data line.
    let frame = match serde_json::to_string(&**overview) {
        Ok(json) => Bytes::from(format!("event: message\ndata: {json}\n\n")),
        Err(e) => Bytes::from(format!("event: error\ndata: {}\n\n", e.to_string().replace('\n', " "))),
    };
    *last = Some((Arc::downgrade(overview), frame.clone()));
    frame
}

async fn unknown_route() -> HttpError {
    HttpError(StatusCode::NOT_FOUND, "no such API route; see the README for /api/v1".into())
}
