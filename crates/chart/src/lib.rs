//! Memory charts drawn with plotters: one drawing routine, two encodings
//! (SVG for pages and reports, PNG for chat previews).
//!
//! Architecture invariant: pure function of its input; no I/O, no clock.

mod downsample;
mod flame;
mod treemap;

use chrono::{FixedOffset, TimeZone};
use leakscope_model::{ContainerEvent, MemoryPoint};
use plotters::coord::Shift;
use plotters::prelude::*;

pub use downsample::downsample;
pub use flame::{flame_height, render_flame_svg};
pub use treemap::render_treemap_svg;

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("chart drawing failed: {0}")]
    Draw(String),
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Theme {
    Light,
    Dark,
}

impl Theme {
    pub fn parse(value: Option<&str>) -> Theme {
        match value {
            Some("dark") => Theme::Dark,
            _ => Theme::Light,
        }
    }
}

struct Palette {
    background: RGBColor,
    text: RGBColor,
    grid: RGBColor,
    working_set: RGBColor,
    usage: RGBColor,
    limit: RGBColor,
    trend: RGBColor,
}

fn palette(theme: Theme) -> Palette {
    match theme {
        Theme::Light => Palette {
            background: RGBColor(255, 255, 255),
            text: RGBColor(60, 64, 72),
            grid: RGBColor(228, 231, 236),
            working_set: RGBColor(37, 99, 235),
            usage: RGBColor(148, 163, 184),
            limit: RGBColor(220, 38, 38),
            trend: RGBColor(234, 88, 12),
        },
        Theme::Dark => Palette {
            background: RGBColor(24, 27, 31),
            text: RGBColor(204, 204, 220),
            grid: RGBColor(50, 55, 62),
            working_set: RGBColor(96, 165, 250),
            usage: RGBColor(100, 116, 139),
            limit: RGBColor(248, 113, 113),
            trend: RGBColor(251, 146, 60),
        },
    }
}

/// What to draw.
#[derive(Clone, Debug)]
pub struct ChartSpec<'a> {
    pub points: &'a [MemoryPoint],
    pub from_ms: i64,
    pub to_ms: i64,
    /// Bucket width of the points; gaps longer than about three buckets break the line.
    pub step_ms: i64,
    pub width: u32,
    pub height: u32,
    /// Minutes east of UTC for axis labels (the viewer's zone).
    pub tz_offset_minutes: i32,
    pub theme: Theme,
    /// The leak detector's floor trend, drawn over its window and, when it
    /// heads for the limit, projected ahead (the time axis then extends).
    pub trend: Option<Trend>,
    /// Lifecycle events marked on the time axis (OOM kills in the limit colour).
    pub events: &'a [ContainerEvent],
}

#[derive(Clone, Debug, PartialEq)]
pub struct Trend {
    pub from_ms: i64,
    pub from_bytes: f64,
    pub to_ms: i64,
    pub to_bytes: f64,
    /// When the trend crosses the limit, if it does.
    pub limit_at_ms: Option<i64>,
    pub limit_bytes: Option<f64>,
}

const FONT: &str = "sans-serif";

fn ensure_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // DejaVu Sans ships in the repo so PNGs render the same on every host.
        let bytes: &'static [u8] = include_bytes!("../fonts/DejaVuSans.ttf");
        if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_err() {
            eprintln!("leakscope-chart: bundled font failed to load; chart text will be missing");
        }
    });
}

/// Draws the chart as an SVG document.
pub fn render_svg(spec: &ChartSpec) -> Result<String, ChartError> {
    ensure_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (spec.width, spec.height)).into_drawing_area();
        draw(&root, spec)?;
        root.present().map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    Ok(svg)
}

/// Draws the chart as a PNG image.
pub fn render_png(spec: &ChartSpec) -> Result<Vec<u8>, ChartError> {
    ensure_font();
    let (w, h) = (spec.width.clamp(100, 4000), spec.height.clamp(80, 3000));
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(&root, &ChartSpec { width: w, height: h, ..spec.clone() })?;
        root.present().map_err(|e| ChartError::Draw(e.to_string()))?;
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| ChartError::Png(e.to_string()))?;
        writer.write_image_data(&rgb).map_err(|e| ChartError::Png(e.to_string()))?;
    }
    Ok(out)
}

/// Splits points into runs without gaps, so a missing stretch (engine down,
/// container stopped) shows as a break instead of a straight line across it.
fn segments(points: &[MemoryPoint], max_gap_ms: i64) -> Vec<&[MemoryPoint]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..points.len() {
        if points[i].time_ms - points[i - 1].time_ms > max_gap_ms {
            out.push(&points[start..i]);
            start = i;
        }
    }
    if start < points.len() {
        out.push(&points[start..]);
    }
    out
}

fn time_label(t_ms: i64, span_ms: i64, offset: FixedOffset) -> String {
    let Some(t) = offset.timestamp_millis_opt(t_ms).single() else {
        return String::new();
    };
    if span_ms <= 36 * 3600 * 1000 {
        t.format("%H:%M").to_string()
    } else {
        t.format("%b %d %H:%M").to_string()
    }
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, spec: &ChartSpec) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| ChartError::Draw(e.to_string());
    let colors = palette(spec.theme);
    root.fill(&colors.background).map_err(err)?;

    let (from, data_to) = (spec.from_ms, spec.to_ms.max(spec.from_ms + 1));
    // A projection to the limit extends the time axis by up to half the range.
    let to = leakscope_model::chart_axis_end(from, data_to, spec.trend.as_ref().map(|t| t.to_ms), spec.trend.as_ref().and_then(|t| t.limit_at_ms));
    let projection_end = (to > data_to).then_some(to);
    let plot_columns = spec.width.saturating_sub(80).max(10) as usize;
    let points = downsample(spec.points, from, to, plot_columns);
    let step_ms = spec.step_ms.max(1).max((to - from) / plot_columns as i64);
    let max_gap = step_ms.saturating_mul(3);

    let top_bytes = points
        .iter()
        .map(|p| p.working_set_max_bytes.max(p.usage_bytes).max(p.limit_bytes.unwrap_or(0)))
        .max()
        .unwrap_or(0)
        .max(1 << 20) as f64
        * 1.08;
    // Plot in a binary unit so that ticks land on round numbers of MiB or GiB.
    let (unit, unit_name) = if top_bytes >= (2u64 << 30) as f64 {
        ((1u64 << 30) as f64, "GiB")
    } else if top_bytes >= (2u64 << 20) as f64 {
        ((1u64 << 20) as f64, "MiB")
    } else {
        (1024.0, "KiB")
    };
    let top = top_bytes / unit;
    let y = |bytes: u64| bytes as f64 / unit;
    let offset = FixedOffset::east_opt(spec.tz_offset_minutes.clamp(-1440, 1440) * 60)
        .unwrap_or(FixedOffset::east_opt(0).expect("zero offset is valid"));
    let zone = if spec.tz_offset_minutes == 0 {
        "UTC".to_string()
    } else {
        format!("UTC{:+03}:{:02}", spec.tz_offset_minutes / 60, (spec.tz_offset_minutes % 60).abs())
    };
    let span = to - from;
    let text_style = (FONT, 12).into_font().color(&colors.text);

    let mut chart = ChartBuilder::on(root)
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(72)
        .build_cartesian_2d(from..to, 0f64..top)
        .map_err(err)?;
    let x_fmt = |t: &i64| time_label(*t, span, offset);
    let y_fmt = |v: &f64| {
        if *v == 0.0 {
            "0".to_string()
        } else if v.fract() == 0.0 {
            format!("{v:.0} {unit_name}")
        } else {
            format!("{v:.1} {unit_name}")
        }
    };
    chart
        .configure_mesh()
        .bold_line_style(colors.grid)
        .light_line_style(colors.background)
        .axis_style(colors.grid)
        .x_labels(8)
        .y_labels(6)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(text_style.clone())
        .x_desc(zone)
        .draw()
        .map_err(err)?;

    for run in segments(&points, max_gap) {
        if run.len() > 1 && run.iter().any(|p| p.working_set_min_bytes != p.working_set_max_bytes) {
            // Min..max band: shows a GC sawtooth that the mean would hide.
            let mut band: Vec<(i64, f64)> = run.iter().map(|p| (p.time_ms, y(p.working_set_max_bytes))).collect();
            band.extend(run.iter().rev().map(|p| (p.time_ms, y(p.working_set_min_bytes))));
            chart
                .draw_series(std::iter::once(Polygon::new(band, colors.working_set.mix(0.18).filled())))
                .map_err(err)?;
        }
        chart
            .draw_series(LineSeries::new(run.iter().map(|p| (p.time_ms, y(p.usage_bytes))), colors.usage.stroke_width(1)))
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                run.iter().map(|p| (p.time_ms, y(p.working_set_bytes))),
                colors.working_set.stroke_width(2),
            ))
            .map_err(err)?;
        if run.len() == 1 {
            let p = run[0];
            chart
                .draw_series(std::iter::once(Circle::new((p.time_ms, y(p.working_set_bytes)), 2, colors.working_set.filled())))
                .map_err(err)?;
        }
        let limits: Vec<(i64, f64)> = run
            .iter()
            .filter_map(|p| p.limit_bytes.map(|l| (p.time_ms, y(l))))
            .collect();
        if limits.len() > 1 {
            chart
                .draw_series(DashedLineSeries::new(limits, 6, 4, colors.limit.stroke_width(2)))
                .map_err(err)?;
        }
    }

    if let Some(t) = spec.trend.as_ref().filter(|t| t.to_ms > from && t.to_ms > t.from_ms) {
        let slope = (t.to_bytes - t.from_bytes) / (t.to_ms - t.from_ms) as f64;
        let at = |ms: i64| (t.to_bytes + slope * (ms - t.to_ms) as f64).max(0.0);
        let start = t.from_ms.max(from);
        chart
            .draw_series(LineSeries::new([(start, at(start) / unit), (t.to_ms, t.to_bytes / unit)], colors.trend.stroke_width(2)))
            .map_err(err)?;
        if let Some(end) = projection_end {
            chart
                .draw_series(DashedLineSeries::new([(t.to_ms, t.to_bytes / unit), (end, at(end) / unit)], 8, 5, colors.trend.stroke_width(2)))
                .map_err(err)?;
            if let Some(limit) = t.limit_bytes {
                chart
                    .draw_series(DashedLineSeries::new([(data_to, limit / unit), (to, limit / unit)], 6, 4, colors.limit.stroke_width(2)))
                    .map_err(err)?;
            }
            if let Some(hit) = t.limit_at_ms.filter(|hit| *hit <= end) {
                chart
                    .draw_series(std::iter::once(Circle::new((hit, at(hit) / unit), 4, colors.limit.filled())))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("limit {}", time_label(hit, span, offset)),
                        (hit, at(hit) / unit),
                        text_style.clone(),
                    )))
                    .map_err(err)?;
            }
        }
    }

    for event in spec.events.iter().filter(|e| e.time_ms >= from && e.time_ms <= data_to && e.action != "oom") {
        let (color, tag) = if event.is_oom_kill() {
            (colors.limit, "OOM")
        } else if event.action == "die" || event.action == "kill" {
            (colors.usage, "")
        } else {
            (colors.grid, "")
        };
        let x = event.time_ms;
        chart
            .draw_series(DashedLineSeries::new([(x, 0.0), (x, top * 0.97)], 3, 3, color.stroke_width(if tag.is_empty() { 1 } else { 2 })))
            .map_err(err)?;
        if !tag.is_empty() {
            chart.draw_series(std::iter::once(Text::new(tag, (x, top * 0.99), text_style.clone()))).map_err(err)?;
        }
    }

    // Legend, drawn by hand to keep it compact and on one line.
    let mut legend = vec![
        ("working set", colors.working_set),
        ("usage", colors.usage),
        ("limit", colors.limit),
    ];
    if spec.trend.is_some() {
        legend.push(("trend", colors.trend));
    }
    let mut x = 76;
    for (label, color) in legend {
        root.draw(&Rectangle::new([(x, 10), (x + 14, 13)], color.filled())).map_err(err)?;
        root.draw(&Text::new(label, (x + 18, 5), text_style.clone())).map_err(err)?;
        x += 30 + label.len() as i32 * 7;
    }
    if points.is_empty() {
        let (w, h) = root.dim_in_pixel();
        root.draw(&Text::new(
            "no samples in this range",
            (w as i32 / 2 - 70, h as i32 / 2),
            (FONT, 14).into_font().color(&colors.text),
        ))
        .map_err(err)?;
    }
    Ok(())
}

/// The detector's trend line as the chart draws it.
pub fn trend_of(s: &leakscope_model::LeakStatus) -> Option<Trend> {
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
pub fn report_spec(report: &leakscope_model::reports::Report, width: u32, height: u32, theme: Theme) -> ChartSpec<'_> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: i64, ws: u64) -> MemoryPoint {
        MemoryPoint {
            time_ms: t,
            working_set_bytes: ws,
            working_set_min_bytes: ws,
            working_set_max_bytes: ws,
            usage_bytes: ws + 100,
            limit_bytes: Some(128 << 20),
        }
    }

    fn spec(points: &[MemoryPoint]) -> ChartSpec<'_> {
        ChartSpec {
            points,
            from_ms: 0,
            to_ms: 3_600_000,
            step_ms: 2000,
            width: 800,
            height: 300,
            tz_offset_minutes: 60,
            trend: None,
            events: &[],
            theme: Theme::Light,
        }
    }

    #[test]
    fn gaps_split_the_line() {
        let pts = vec![point(0, 1), point(2000, 2), point(60_000, 3), point(62_000, 4)];
        let runs = segments(&pts, 6000);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[1][0].working_set_bytes, 3);
    }

    #[test]
    fn svg_and_png_render_with_labels() {
        let pts: Vec<_> = (0..1800).map(|i| point(i * 2000, (40 << 20) + i as u64 * 1000)).collect();
        let svg = render_svg(&spec(&pts)).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        assert!(svg.contains("MiB"), "y axis in binary units");
        assert!(svg.contains("UTC+01:00"), "zone named on the axis");
        let png = render_png(&spec(&pts)).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn empty_range_says_so() {
        let svg = render_svg(&spec(&[])).unwrap();
        assert!(svg.contains("no samples in this range"));
    }
}
