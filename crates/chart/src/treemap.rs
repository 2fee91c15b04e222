//! The dominator tree as a treemap picture: the blocks `leakscope_model::treemap::layout`
//! computed, filled by class, labelled where they fit. The page lays links over
//! the same rectangles, so this only draws.

use leakscope_model::treemap::{Block, HEADER};
use leakscope_model::{format_bytes, format_percent};
use plotters::prelude::*;

use crate::{ensure_font, palette, ChartError, Theme, FONT};

/// Fill colours, picked by a hash of the class name so a class keeps its colour across dumps.
const LIGHT_FILLS: [RGBColor; 8] = [
    RGBColor(191, 219, 254), RGBColor(187, 247, 208), RGBColor(254, 215, 170), RGBColor(233, 213, 255),
    RGBColor(254, 202, 202), RGBColor(165, 243, 252), RGBColor(254, 240, 138), RGBColor(226, 232, 240),
];
const DARK_FILLS: [RGBColor; 8] = [
    RGBColor(30, 58, 138), RGBColor(20, 83, 45), RGBColor(124, 45, 18), RGBColor(88, 28, 135),
    RGBColor(127, 29, 29), RGBColor(22, 78, 99), RGBColor(113, 63, 18), RGBColor(51, 65, 85),
];

pub(crate) fn fill(class: &str, theme: Theme) -> RGBColor {
    // FNV-1a: stable across runs and builds (std's hasher is seeded).
    let hash = class.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    let fills = match theme {
        Theme::Light => &LIGHT_FILLS,
        Theme::Dark => &DARK_FILLS,
    };
    fills[(hash % fills.len() as u64) as usize]
}

/// Cuts a label to about what fits in `width` pixels at 11 px (about 6.2 px a character).
pub(crate) fn fit(text: &str, width: f64) -> Option<String> {
    let room = ((width - 6.0) / 6.2) as usize;
    if room < 3 {
        return None;
    }
    let count = text.chars().count();
    Some(if count <= room { text.to_string() } else { format!("{}…", text.chars().take(room - 1).collect::<String>()) })
}

/// Short class names read better in small blocks: `java.util.HashMap$Node` -> `HashMap$Node`.
fn short_class(class: &str) -> &str {
    class.rsplit(['.', '/']).next().unwrap_or(class)
}

/// Draws `blocks` (laid out for `width` x `height`) as an SVG document.
/// `total` is the heap size the percentages refer to.
pub fn render_treemap_svg(blocks: &[Block], width: u32, height: u32, total: u64, theme: Theme) -> Result<String, ChartError> {
    ensure_font();
    let colors = palette(theme);
    let err = |e: &dyn std::fmt::Display| ChartError::Draw(e.to_string());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&colors.background).map_err(|e| err(&e))?;
        let label = TextStyle::from((FONT, 11).into_font()).color(&colors.text);
        for b in blocks {
            let (x0, y0) = (b.x.round() as i32, b.y.round() as i32);
            let (x1, y1) = ((b.x + b.w).round() as i32 - 1, (b.y + b.h).round() as i32 - 1);
            if x1 <= x0 || y1 <= y0 {
                continue;
            }
            let base = fill(&b.class, theme);
            // Children are drawn over their parent a little see-through, so nesting reads at a glance.
            let style = if b.depth == 0 { base.filled() } else { base.mix(0.8).filled() };
            root.draw(&Rectangle::new([(x0, y0), (x1, y1)], style)).map_err(|e| err(&e))?;
            root.draw(&Rectangle::new([(x0, y0), (x1, y1)], colors.background.stroke_width(1))).map_err(|e| err(&e))?;
            let text_line = |line: String, dy: i32| Text::new(line, (x0 + 4, y0 + dy), label.clone());
            if b.h >= HEADER - 2.0 {
                if let Some(name) = fit(short_class(&b.class), b.w) {
                    root.draw(&text_line(name, 3)).map_err(|e| err(&e))?;
                }
            }
            if b.depth == 0 && b.h >= 2.0 * HEADER + 4.0 && b.w >= 80.0 {
                // Big top-level blocks say how much they hold, below their children's strip when they have none.
                let size = format!("{} · {}", format_bytes(b.retained_bytes), format_percent(b.retained_bytes as f64 / total.max(1) as f64));
                if let Some(size) = fit(&size, b.w) {
                    root.draw(&text_line(size, (b.h as i32) - 15)).map_err(|e| err(&e))?;
                }
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
    fn draws_every_block_with_its_label() {
        let blocks = vec![
            Block { object_id: "0x1".into(), class: "java.util.ArrayList".into(), retained_bytes: 900, depth: 0, x: 0.0, y: 0.0, w: 600.0, h: 300.0 },
            Block { object_id: "0x2".into(), class: "java.lang.Object[]".into(), retained_bytes: 800, depth: 1, x: 2.0, y: 16.0, w: 590.0, h: 270.0 },
            Block { object_id: "0x3".into(), class: "LeakMain$Session".into(), retained_bytes: 100, depth: 0, x: 600.0, y: 0.0, w: 400.0, h: 300.0 },
            Block { object_id: "0x4".into(), class: "Odd<T>&\"x\"".into(), retained_bytes: 10, depth: 1, x: 602.0, y: 16.0, w: 390.0, h: 200.0 },
        ];
        let svg = render_treemap_svg(&blocks, 1000, 300, 1000, Theme::Light).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("ArrayList") && svg.contains("Object[]") && svg.contains("LeakMain$Session"), "labels");
        assert!(svg.matches("<rect").count() >= 8, "a fill and an outline per block");
        assert!(!svg.contains("Odd<T>"), "class names are escaped in the SVG");
        assert!(render_treemap_svg(&[], 100, 100, 0, Theme::Dark).unwrap().contains("<svg"));
    }
}
