//! Chart images as HTTP answers: one plotters drawing for the live chart,
//! reports and chat previews.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use leakscope_chart::{render_png, render_svg, ChartSpec, Theme, Trend};
use leakscope_model::reports::Report;
use leakscope_model::LeakStatus;

use super::HttpError;

pub enum Format {
    Svg,
    Png,
}

/// The detector's trend line as the chart draws it.
pub fn trend_of(s: &LeakStatus) -> Option<Trend> {
    (s.verdict != "too young").then(|| Trend {
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
