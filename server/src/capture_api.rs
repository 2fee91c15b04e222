//! Heap dump capture: `POST /api/v1/containers/<id>/dumps` starts (or joins) a
//! job, `GET /api/v1/jobs/<id>` follows it; `POST /containers/<name>/capture` is
//! the container page's form (works without JavaScript). Thin: the engine does it.

use axum::body::Bytes;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::post;
use axum::{Extension, Json, Router};
use leakscope_access::Principal;
use leakscope_engine::capture::CaptureRequest;
use leakscope_engine::Engine;
use leakscope_model::dumps::DumpFilter;
use leakscope_model::capture::CaptureJob;
use leakscope_model::dumps::DumpInfo;
use leakscope_model::ApiError;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::web::HttpError;
use crate::web::SharedAccess;
use crate::web::AppState;

/// The documented routes (see `openapi.rs`).
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(start, list)).routes(routes!(job))
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/containers/{name}/capture", post(start_form))
}

/// Optional: which process to dump when the container runs several, and the
/// confirmation a Node.js snapshot needs in a container above 60 % of its limit.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CaptureBody {
    pid: Option<u32>,
    #[serde(default)]
    confirm: bool,
    /// `heap-dump`, `heap-snapshot`, `object-graph`, `heap-profile`,
    /// `memory-map` or `core`; by default the richest the process offers
    /// (never `core`, which stops the process while it is copied).
    kind: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct CaptureStarted {
    /// Follow it at `/api/v1/jobs/{job_id}`.
    job_id: String,
}

/// Capture a heap dump now (or join the capture already running for this container).
#[utoipa::path(post, path = "/api/v1/containers/{id}/dumps", tag = "capture",
    params(("id" = String, Path, description = "container id or name")),
    request_body(content = Option<CaptureBody>, description = "empty, or `{\"pid\": N, \"confirm\": true, \"kind\": \"memory-map\"}`"),
    responses((status = 202, body = CaptureStarted), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 503, body = ApiError)))]
async fn start(
    State(engine): State<Engine>,
    State(access): State<SharedAccess>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, HttpError> {
    let body: CaptureBody = if body.iter().all(u8::is_ascii_whitespace) {
        CaptureBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| HttpError(StatusCode::BAD_REQUEST, format!("body must be JSON like {{\"pid\": 1}}: {e}")))?
    };
    let request = CaptureRequest {
        container: id.clone(),
        pid: body.pid,
        confirmed: body.confirm,
        trigger: "manual".into(),
        requested_by: Some(who.name.clone()),
        kind: body.kind,
    };
    let job_id = engine.start_capture(request).await?;
    access.audit(&who.name, "captured heap dump", &id, Some(format!("job {job_id}"))).await;
    Ok((StatusCode::ACCEPTED, Json(CaptureStarted { job_id })))
}

/// This container's dumps, newest first.
#[utoipa::path(get, path = "/api/v1/containers/{id}/dumps", tag = "capture",
    params(("id" = String, Path, description = "container id or name")), responses((status = 200, body = Vec<DumpInfo>)))]
async fn list(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.dumps(DumpFilter { container: Some(id), ..Default::default() }).await?))
}

/// A capture job's progress; `processes` lists the choices when a pid is needed.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "capture", params(("id" = String, Path, description = "job id")),
    responses((status = 200, body = CaptureJob), (status = 404, body = ApiError)))]
async fn job(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    engine
        .capture_job_anywhere(&id)
        .await
        .map(Json)
        .ok_or_else(|| HttpError(StatusCode::NOT_FOUND, format!("no capture job with id '{id}'")))
}

#[derive(Debug, Deserialize)]
struct CaptureForm {
    pid: Option<String>,
    /// The form's checkbox: `on` when ticked.
    confirm: Option<String>,
    kind: Option<String>,
}

async fn start_form(
    State(engine): State<Engine>,
    State(access): State<SharedAccess>,
    Extension(who): Extension<Principal>,
    Path(name): Path<String>,
    Form(form): Form<CaptureForm>,
) -> Result<impl IntoResponse, HttpError> {
    let pid = match form.pid.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => Some(p.parse::<u32>().map_err(|_| HttpError(StatusCode::BAD_REQUEST, format!("not a pid: '{p}'")))?),
    };
    let confirmed = form.confirm.is_some_and(|c| !c.is_empty());
    let request = CaptureRequest {
        container: name.clone(),
        pid,
        confirmed,
        trigger: "manual".into(),
        requested_by: Some(who.name.clone()),
        kind: form.kind.filter(|k| !k.trim().is_empty()),
    };
    let job_id = engine.start_capture(request).await?;
    access.audit(&who.name, "captured heap dump", &name, Some(format!("job {job_id}"))).await;
    let name = utf8_percent(&name);
    Ok(Redirect::to(&format!("/containers/{name}?capture={job_id}")))
}

/// Container names are `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; escape anything else anyway.
fn utf8_percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
