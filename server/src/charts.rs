//! `/containers/<name>/memory.svg` and `.png`: the same plotters drawing for
//! pages, reports and chat previews.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use leakscope_chart::{ChartSpec, Theme};
use leakscope_engine::Engine;
use serde::Deserialize;

use crate::web::images::{image, Format};
use leakscope_chart::trend_of;
use crate::web::{AppState, HttpError, RangeQuery};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{name}/memory.svg", get(svg))
        .route("/containers/{name}/memory.png", get(png))
        .route("/dumps/{id}/treemap.svg", get(treemap))
        .route("/dumps/{id}/flame.svg", get(flame))
}

#[derive(Debug, Deserialize)]
struct ChartQuery {
    #[serde(flatten)]
    range: RangeQuery,
    theme: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
}


async fn svg(state: State<Engine>, name: Path<String>, query: Query<ChartQuery>) -> Result<impl IntoResponse, HttpError> {
    chart(state, name, query, Format::Svg).await
}

async fn png(state: State<Engine>, name: Path<String>, query: Query<ChartQuery>) -> Result<impl IntoResponse, HttpError> {
    chart(state, name, query, Format::Png).await
}

async fn chart(
    State(engine): State<Engine>,
    Path(name): Path<String>,
    Query(query): Query<ChartQuery>,
    format: Format,
) -> Result<impl IntoResponse, HttpError> {
    let range = query.range.resolve()?;
    let width = query.width.unwrap_or(1000).clamp(200, 4000);
    let height = query.height.unwrap_or(320).clamp(120, 3000);
    // About two buckets per pixel column: enough detail, never too many points.
    let step_seconds = ((range.duration_ms() / (width as i64 * 2)) / 1000).max(1) as u64;
    let series = engine.series(&name, range.from_ms, range.to_ms, Some(step_seconds)).await?;
    let events = engine.events(&name, range.from_ms, range.to_ms).await.unwrap_or_default();
    let spec = ChartSpec {
        points: &series.points,
        from_ms: range.from_ms,
        to_ms: range.to_ms,
        step_ms: (series.step_seconds as i64 * 1000).max(engine.config().sample_interval.as_millis() as i64),
        width,
        height,
        tz_offset_minutes: query.range.tz_minutes()?,
        theme: Theme::parse(query.theme.as_deref()),
        events: &events,
        trend: engine.leak_status(&name).as_ref().and_then(trend_of),
    };
    image(&spec, format)
}


#[derive(Debug, Deserialize)]
struct ThemeQuery {
    theme: Option<String>,
}

/// A heap profile's call tree (any dump's dominator tree) as a flame graph;
/// the dump page lays its links over the same boxes.
async fn flame(State(engine): State<Engine>, Path(id): Path<String>, Query(q): Query<ThemeQuery>) -> Result<Response, HttpError> {
    let analysis = engine.dump_analysis(&id).await?;
    let frames = leakscope_model::flame::layout(&analysis);
    let svg = leakscope_chart::render_flame_svg(&frames, Theme::parse(q.theme.as_deref()))
        .map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-store")], svg).into_response())
}

#[derive(Debug, Deserialize)]
struct TreemapQuery {
    node: Option<String>,
    theme: Option<String>,
}

/// The dominator tree under `node` (the top level without it) as a treemap;
/// the dump page lays its links over the same layout.
async fn treemap(State(engine): State<Engine>, Path(id): Path<String>, Query(q): Query<TreemapQuery>) -> Result<Response, HttpError> {
    let analysis = engine.dump_analysis(&id).await?;
    let node = q.node.as_deref().filter(|n| !n.is_empty());
    let (w, h) = leakscope_model::treemap::SIZE;
    let blocks = leakscope_model::treemap::layout(&analysis, node, w as f64, h as f64);
    let total = analysis.summary.reachable_bytes;
    let svg = leakscope_chart::render_treemap_svg(&blocks, w, h, total, Theme::parse(q.theme.as_deref()))
        .map_err(|e| HttpError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml"), (header::CACHE_CONTROL, "no-store")], svg).into_response())
}
