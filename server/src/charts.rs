//! `/containers/<name>/memory.svg` and `.png`: the same plotters drawing for
//! pages, reports and chat previews.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use leakscope_model::reports::Report;
use leakscope_model::LeakStatus;
use axum::routing::get;
use axum::Router;
use leakscope_chart::{render_png, render_svg, ChartSpec, Theme, Trend};
use leakscope_engine::Engine;
use serde::Deserialize;

use crate::api::{HttpError, RangeQuery};
use crate::serve::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/containers/{name}/memory.svg", get(svg))
        .route("/containers/{name}/memory.png", get(png))
}

#[derive(Debug, Deserialize)]
struct ChartQuery {
    #[serde(flatten)]
    range: RangeQuery,
    theme: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
}

pub enum Format {
    Svg,
    Png,
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

/// The detector's trend line as the chart draws it.
pub fn trend_of(s: &LeakStatus) -> Option<Trend> {
    (s.verdict != "unknown").then(|| Trend {
        from_ms: s.window_start_ms,
        from_bytes: s.floor_start_bytes,
        to_ms: s.window_end_ms,
        to_bytes: s.floor_end_bytes,
        limit_at_ms: s.time_to_limit_seconds.map(|t| s.window_end_ms + (t * 1000.0) as i64),
        limit_bytes: s.limit_bytes.map(|l| l as f64),
    })
}

/// A report's frozen window, drawn by the same code as the live chart.
pub fn report_spec(report: &Report, width: u32, height: u32, theme: Theme) -> ChartSpec<'_> {
    ChartSpec {
        points: &report.series,
        from_ms: report.from_ms,
        to_ms: report.to_ms,
        step_ms: report.step_ms.max(1000),
        width,
        height,
        tz_offset_minutes: 0,
        theme,
        events: &report.events,
        // The trend only when the report's window ends where the verdict's does.
        trend: report.leak.as_ref().filter(|s| s.window_end_ms <= report.to_ms + 120_000).and_then(trend_of),
    }
}

/// SVG or PNG bytes with their content type; never cached (charts may show private data).
pub fn image(spec: &ChartSpec, format: Format) -> Result<Response, HttpError> {
    let internal = |e: leakscope_chart::ChartError| HttpError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let (content_type, body) = match format {
        Format::Svg => ("image/svg+xml", render_svg(spec).map_err(internal)?.into_bytes()),
        Format::Png => ("image/png", render_png(spec).map_err(internal)?),
    };
    Ok(([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-store")], body).into_response())
}
