//! Chart images as HTTP answers: one plotters drawing for the live chart,
//! reports and chat previews.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use leakscope_chart::{render_png, render_svg, ChartSpec};

use super::HttpError;

pub enum Format {
    Svg,
    Png,
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
