//! `/containers/<name>/memory.svg` and `.png`: the same plotters drawing for
//! pages, reports and chat previews.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
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

enum Format {
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
        trend: engine.leak_status(&name).filter(|s| s.verdict != "unknown").map(|s| Trend {
            from_ms: s.window_start_ms,
            from_bytes: s.floor_start_bytes,
            to_ms: s.window_end_ms,
            to_bytes: s.floor_end_bytes,
            limit_at_ms: s.time_to_limit_seconds.map(|t| s.window_end_ms + (t * 1000.0) as i64),
            limit_bytes: s.limit_bytes.map(|l| l as f64),
        }),
    };
    let internal = |e: leakscope_chart::ChartError| HttpError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    let (content_type, body) = match format {
        Format::Svg => ("image/svg+xml", render_svg(&spec).map_err(internal)?.into_bytes()),
        Format::Png => ("image/png", render_png(&spec).map_err(internal)?),
    };
    Ok(([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-store")], body))
}
