//! Leak reports over HTTP: the JSON API, the container page's form, the
//! report pages, their chart images and Markdown, and public links. Thin:
//! the engine freezes and stores, `report_view` writes as Markdown.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use leakscope_access::Principal;
use leakscope_chart::Theme;
use leakscope_engine::Engine;
use leakscope_model::reports::{Report, ReportListItem, ReportRequest, RunReportRequest};
use leakscope_model::ApiError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::web::HttpError;
use crate::web::SharedAccess;
use crate::web::images::{image, Format};
use leakscope_chart::report_spec;
use crate::report_view;
use crate::web::AppState;

/// The documented routes (see `openapi.rs`).
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(create_from_run)).routes(routes!(one)).routes(routes!(share, unshare))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct ReportCreated {
    id: String,
    /// The report's page, `/reports/{id}`.
    url: String,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct PublicLink {
    /// `/r/{token}`: readable without signing in until unshared.
    url: String,
}

pub fn routes() -> Router<AppState> {
    Router::new()
        // The pages (/reports, /reports/<slug>, /r/<token>) are the Leptos app's.
        .route("/reports", post(create_form))
        .route("/reports/new", get(new_from_dumps))
        .route("/reports/{slug}/chart.svg", get(chart_svg))
        .route("/reports/{slug}/chart.png", get(chart_png))
        .route("/reports/{slug}/report.md", get(markdown))
        .route("/reports/{slug}/share", post(share_form))
        .route("/reports/{slug}/unshare", post(unshare_form))
        .route("/r/{token}/chart.png", get(public_chart_png))
        .route("/r/{token}/chart.svg", get(public_chart_svg))
}

const CHART_WIDTH: u32 = 1000;
const CHART_HEIGHT: u32 = 320;
/// OpenGraph's preferred preview size.
const OG_WIDTH: u32 = 1200;
const OG_HEIGHT: u32 = 630;

/// Freeze a container's memory, events, verdict and chosen dumps' findings into a report.
#[utoipa::path(post, path = "/api/v1/reports", tag = "reports", request_body = ReportRequest,
    responses((status = 201, body = ReportCreated), (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 415, description = "the body is not `application/json`", body = ApiError), (status = 422, description = "the JSON does not match ReportRequest", body = ApiError)))]
async fn create(
    State(engine): State<Engine>,
    State(access): State<SharedAccess>,
    Extension(who): Extension<Principal>,
    Json(request): Json<ReportRequest>,
) -> Result<impl IntoResponse, HttpError> {
    let report = engine.create_report(request, &who.name).await?;
    access.audit(&who.name, "created report", &report.id, Some(report.title.clone())).await;
    Ok((StatusCode::CREATED, Json(ReportCreated { url: report.url(), id: report.id })))
}

/// Freeze a run measured elsewhere (`leakscope check --server` in CI) into a
/// report: its series, verdict and events come with the request; its dumps
/// were uploaded first (`POST /api/v1/dumps`).
#[utoipa::path(post, path = "/api/v1/check-reports", tag = "reports", request_body = RunReportRequest,
    responses((status = 201, body = ReportCreated), (status = 400, body = ApiError), (status = 404, description = "a named dump is unknown", body = ApiError),
        (status = 415, description = "the body is not `application/json`", body = ApiError), (status = 422, description = "the JSON does not match RunReportRequest", body = ApiError)))]
async fn create_from_run(
    State(engine): State<Engine>,
    State(access): State<SharedAccess>,
    Extension(who): Extension<Principal>,
    Json(request): Json<RunReportRequest>,
) -> Result<impl IntoResponse, HttpError> {
    let report = engine.create_run_report(request, &who.name).await?;
    access.audit(&who.name, "created report", &report.id, Some(report.title.clone())).await;
    Ok((StatusCode::CREATED, Json(ReportCreated { url: report.url(), id: report.id })))
}

/// Every report, newest first.
#[utoipa::path(get, path = "/api/v1/reports", tag = "reports", responses((status = 200, body = Vec<ReportListItem>)))]
async fn list(State(engine): State<Engine>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.reports().await?))
}

/// One report, as frozen.
#[utoipa::path(get, path = "/api/v1/reports/{id}", tag = "reports", params(("id" = String, Path, description = "report id")),
    responses((status = 200, body = Report), (status = 404, body = ApiError)))]
async fn one(State(engine): State<Engine>, Path(id): Path<String>) -> Result<impl IntoResponse, HttpError> {
    Ok(Json(engine.report(&id).await?))
}

/// Make a public link (the same one if it exists); audited.
#[utoipa::path(post, path = "/api/v1/reports/{id}/share", tag = "reports", params(("id" = String, Path, description = "report id")),
    responses((status = 200, body = PublicLink), (status = 404, body = ApiError)))]
async fn share(
    State(engine): State<Engine>,
    State(access): State<SharedAccess>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, HttpError> {
    let token = engine.share_report(&id).await?;
    access.audit(&who.name, "shared report", &id, None).await;
    Ok(Json(PublicLink { url: format!("/r/{token}") }))
}

/// Revoke the public link; audited.
#[utoipa::path(delete, path = "/api/v1/reports/{id}/share", tag = "reports", params(("id" = String, Path, description = "report id")),
    responses((status = 204, description = "the link no longer opens"), (status = 404, body = ApiError)))]
async fn unshare(
    State(engine): State<Engine>,
    State(access): State<SharedAccess>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, HttpError> {
    engine.unshare_report(&id).await?;
    access.audit(&who.name, "revoked public link", &id, None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The container page's form: container, window in seconds back from now, dumps (repeated), title, notes.
async fn create_form(
    State(engine): State<Engine>,
    State(access): State<SharedAccess>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> Result<Response, HttpError> {
    let text = std::str::from_utf8(&body).map_err(|_| HttpError(StatusCode::BAD_REQUEST, "the form is not UTF-8".into()))?;
    let mut request = ReportRequest::default();
    let mut window_s: i64 = 3600;
    for (key, value) in crate::web::query::url_pairs(text) {
        match key.as_str() {
            "container" => request.container = value,
            "window" => window_s = value.parse().map_err(|_| HttpError(StatusCode::BAD_REQUEST, format!("not a window: '{value}'")))?,
            "dumps" => request.dumps.push(value),
            "title" => request.title = value,
            "notes" => request.notes = value,
            _ => {}
        }
    }
    let now = chrono::Utc::now();
    request.to = now.to_rfc3339();
    request.from = (now - chrono::Duration::seconds(window_s.clamp(60, 90 * 86400))).to_rfc3339();
    let report = engine.create_report(request, &who.name).await?;
    access.audit(&who.name, "created report", &report.id, Some(report.title.clone())).await;
    Ok(Redirect::to(&report.url()).into_response())
}

#[derive(serde::Deserialize)]
struct FromDumps {
    dumps: String,
}

/// "Create report" on a dump or diff page: to the dumps' container page with them ticked.
async fn new_from_dumps(State(engine): State<Engine>, axum::extract::Query(q): axum::extract::Query<FromDumps>) -> Result<Response, HttpError> {
    let first = q.dumps.split(',').next().unwrap_or_default();
    let container = engine.dump(first).await?.container_name.ok_or_else(|| {
        HttpError(StatusCode::BAD_REQUEST, "this dump was uploaded without a container; a report is about a container".into())
    })?;
    let ids: Vec<&str> = q.dumps.split(',').filter(|id| leakscope_engine::dumps::valid_id(id)).collect();
    let name: String = container.chars().filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c)).collect();
    Ok(Redirect::to(&format!("/containers/{name}?report={}#report-form", ids.join(","))).into_response())
}

/// The chart's PNG as an absolute URL (chat previews and tickets).
fn chart_png_url(headers: &HeaderMap, report: &Report) -> String {
    let header = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
    format!("{}{}", leakscope_model::reports::site_origin(header("host"), header("x-forwarded-proto")), report.chart_png_path())
}

async fn chart_for(report: Report, format: Format) -> Result<Response, HttpError> {
    let (w, h) = match format {
        Format::Png => (OG_WIDTH, OG_HEIGHT),
        Format::Svg => (CHART_WIDTH, CHART_HEIGHT),
    };
    tokio::task::spawn_blocking(move || image(&report_spec(&report, w, h, Theme::Light), format))
        .await
        .map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

async fn chart_svg(State(engine): State<Engine>, Path(slug): Path<String>) -> Result<Response, HttpError> {
    chart_for(engine.report(&slug).await?, Format::Svg).await
}

async fn chart_png(State(engine): State<Engine>, Path(slug): Path<String>) -> Result<Response, HttpError> {
    chart_for(engine.report(&slug).await?, Format::Png).await
}

async fn public_chart_png(State(engine): State<Engine>, Path(token): Path<String>) -> Result<Response, HttpError> {
    chart_for(engine.public_report(&token).await?, Format::Png).await
}

async fn public_chart_svg(State(engine): State<Engine>, Path(token): Path<String>) -> Result<Response, HttpError> {
    chart_for(engine.public_report(&token).await?, Format::Svg).await
}

async fn markdown(State(engine): State<Engine>, headers: HeaderMap, Path(slug): Path<String>) -> Result<Response, HttpError> {
    let report = engine.report(&slug).await?;
    let md = report_view::markdown(&report, &chart_png_url(&headers, &report));
    Ok(([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], md).into_response())
}

async fn share_form(
    engine: State<Engine>,
    access: State<SharedAccess>,
    who: Extension<Principal>,
    Path(slug): Path<String>,
) -> Result<Response, HttpError> {
    share(engine, access, who, Path(slug.clone())).await?;
    Ok(Redirect::to(&format!("/reports/{slug}")).into_response())
}

async fn unshare_form(
    engine: State<Engine>,
    access: State<SharedAccess>,
    who: Extension<Principal>,
    Path(slug): Path<String>,
) -> Result<Response, HttpError> {
    unshare(engine, access, who, Path(slug.clone())).await?;
    Ok(Redirect::to(&format!("/reports/{slug}")).into_response())
}
