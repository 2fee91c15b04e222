//! A heap profile's call tree as a flame graph picture: the boxes
//! `leakscope_model::flame::layout` computed, filled by function (the
//! treemap's colours), labelled where they fit. The page lays links over the
//! same boxes, so this only draws.

use leakscope_model::flame::{FlameFrame, ROW, WIDTH};
use plotters::prelude::*;

use crate::treemap::{fill, fit};
use crate::{ensure_font, palette, ChartError, Theme, FONT};

/// The picture's height for these frames.
pub fn flame_height(frames: &[FlameFrame]) -> u32 {
    frames.iter().map(|f| f.depth + 1).max().unwrap_or(1) * ROW
}

/// Draws `frames` as an SVG document, [`WIDTH`] wide, one row per depth.
pub fn render_flame_svg(frames: &[FlameFrame], theme: Theme) -> Result<String, ChartError> {
    ensure_font();
    let colors = palette(theme);
    let err = |e: &dyn std::fmt::Display| ChartError::Draw(e.to_string());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, flame_height(frames))).into_drawing_area();
        root.fill(&colors.background).map_err(|e| err(&e))?;
        let label = TextStyle::from((FONT, 11).into_font()).color(&colors.text);
        for f in frames {
            let x0 = (f.start * WIDTH as f64).round() as i32;
            let x1 = ((f.start + f.width) * WIDTH as f64).round() as i32 - 1;
            let y0 = (f.depth * ROW) as i32;
            let y1 = y0 + ROW as i32 - 2;
            if x1 <= x0 {
                continue;
            }
            root.draw(&Rectangle::new([(x0, y0), (x1, y1)], fill(&f.name, theme).filled())).map_err(|e| err(&e))?;
            if let Some(name) = fit(&f.name, (x1 - x0) as f64) {
                root.draw(&Text::new(name, (x0 + 3, y0 + 3), label.clone())).map_err(|e| err(&e))?;
            }
        }
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_box_per_frame_with_its_name_where_it_fits() {
        let frame = |name: &str, depth, start, width| FlameFrame { object_id: name.into(), name: name.into(), depth, start, width, bytes: 1 };
        let frames = vec![frame("runtime.main", 0, 0.0, 1.0), frame("main.rememberSession", 1, 0.0, 0.7), frame("x<y>", 1, 0.7, 0.001)];
        let svg = render_flame_svg(&frames, Theme::Light).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("runtime.main") && svg.contains("main.rememberSession"));
        assert!(!svg.contains("x<y>"), "too narrow to label, and escaped anyway");
        assert_eq!(flame_height(&frames), 2 * ROW);
    }
}
