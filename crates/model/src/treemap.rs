//! The dominator tree as a treemap: one rectangle per object, its area its
//! retained size, nested one level. The layout lives here, beside the types,
//! because two places need the very same rectangles: the server draws them
//! (plotters SVG) and the page lays links over them (no script needed).
//!
//! Squarified layout (Bruls, Huizing and van Wijk, 2000): rows of blocks
//! along the shorter side, a row closed when adding a block would make its
//! worst aspect ratio worse. Written here because it is thirty lines and
//! must compile for the browser bundle too.

use serde::{Deserialize, Serialize};

use crate::analysis::Analysis;

/// One block, in the drawing's pixel space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Block {
    pub object_id: String,
    pub class: String,
    pub retained_bytes: u64,
    /// 0 for the objects the treemap is of, 1 for their children drawn inside.
    pub depth: u8,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// A rectangle of the layout.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// The drawing's size in pixels (the page scales it; links are placed in percent).
pub const SIZE: (u32, u32) = (1000, 360);
/// Height of the label strip kept at the top of a block that shows its children.
pub const HEADER: f64 = 16.0;
/// Blocks at most per level: the rest is too small to click.
const MAX_BLOCKS: usize = 40;

/// Lays `sizes` (any order) into `area`; returns one rectangle per size, in the same order.
pub fn squarify(sizes: &[f64], area: Rect) -> Vec<Rect> {
    let mut order: Vec<usize> = (0..sizes.len()).filter(|&i| sizes[i] > 0.0 && sizes[i].is_finite()).collect();
    order.sort_by(|&a, &b| sizes[b].total_cmp(&sizes[a]));
    let total: f64 = order.iter().map(|&i| sizes[i]).sum();
    let mut out = vec![Rect { x: area.x, y: area.y, w: 0.0, h: 0.0 }; sizes.len()];
    if total <= 0.0 || area.w <= 0.0 || area.h <= 0.0 {
        return out;
    }
    let scale = area.w * area.h / total;
    let mut free = area;
    let mut row: Vec<usize> = Vec::new();
    let worst = |row: &[usize], side: f64| {
        let sum: f64 = row.iter().map(|&i| sizes[i] * scale).sum();
        let (big, small) = row.iter().fold((0.0f64, f64::MAX), |(b, s), &i| (b.max(sizes[i] * scale), s.min(sizes[i] * scale)));
        (side * side * big / (sum * sum)).max(sum * sum / (side * side * small))
    };
    let mut i = 0;
    while i < order.len() {
        let side = free.w.min(free.h);
        let mut with = row.clone();
        with.push(order[i]);
        if row.is_empty() || worst(&with, side) <= worst(&row, side) {
            row = with;
            i += 1;
            if i < order.len() {
                continue;
            }
        }
        // Lay the row along the shorter side and shrink what is left.
        let sum: f64 = row.iter().map(|&k| sizes[k] * scale).sum();
        if free.w >= free.h {
            let width = (sum / free.h).min(free.w);
            let mut y = free.y;
            for &k in &row {
                let h = sizes[k] * scale / width;
                out[k] = Rect { x: free.x, y, w: width, h };
                y += h;
            }
            free = Rect { x: free.x + width, w: free.w - width, ..free };
        } else {
            let height = (sum / free.w).min(free.h);
            let mut x = free.x;
            for &k in &row {
                let w = sizes[k] * scale / height;
                out[k] = Rect { x, y: free.y, w, h: height };
                x += w;
            }
            free = Rect { y: free.y + height, h: free.h - height, ..free };
        }
        row.clear();
    }
    out
}

/// The treemap of `node`'s children in the stored dominator tree (the whole
/// heap's top level when `None`), each big enough showing its own children.
pub fn layout(analysis: &Analysis, node: Option<&str>, width: f64, height: f64) -> Vec<Block> {
    let mut top = analysis.tree_children(node);
    top.sort_by(|a, b| b.retained_bytes.cmp(&a.retained_bytes));
    top.truncate(MAX_BLOCKS);
    let sizes: Vec<f64> = top.iter().map(|n| n.retained_bytes as f64).collect();
    let mut blocks = Vec::new();
    for (n, r) in top.iter().zip(squarify(&sizes, Rect { x: 0.0, y: 0.0, w: width, h: height })) {
        blocks.push(Block { object_id: n.object_id.clone(), class: n.class.clone(), retained_bytes: n.retained_bytes, depth: 0, x: r.x, y: r.y, w: r.w, h: r.h });
        // Room for a label and children worth seeing: one level inside.
        if r.w < 60.0 || r.h < HEADER + 24.0 {
            continue;
        }
        let mut inner = analysis.tree_children(Some(&n.object_id));
        inner.sort_by(|a, b| b.retained_bytes.cmp(&a.retained_bytes));
        inner.truncate(MAX_BLOCKS);
        // Children cover their share of the parent; the rest is the parent's own and small objects.
        let share = inner.iter().map(|c| c.retained_bytes).sum::<u64>() as f64 / (n.retained_bytes.max(1) as f64);
        let room = Rect { x: r.x + 2.0, y: r.y + HEADER, w: r.w - 4.0, h: (r.h - HEADER - 2.0) };
        let used = Rect { h: room.h * share.clamp(0.0, 1.0), ..room };
        let sizes: Vec<f64> = inner.iter().map(|c| c.retained_bytes as f64).collect();
        for (c, cr) in inner.iter().zip(squarify(&sizes, used)) {
            if cr.w >= 3.0 && cr.h >= 3.0 {
                blocks.push(Block { object_id: c.object_id.clone(), class: c.class.clone(), retained_bytes: c.retained_bytes, depth: 1, x: cr.x, y: cr.y, w: cr.w, h: cr.h });
            }
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_tile_the_area_in_proportion_without_overlap() {
        let sizes = [6.0, 6.0, 4.0, 3.0, 2.0, 2.0, 1.0];
        let area = Rect { x: 0.0, y: 0.0, w: 600.0, h: 400.0 };
        let rects = squarify(&sizes, area);
        let total: f64 = sizes.iter().sum();
        for (s, r) in sizes.iter().zip(&rects) {
            assert!((r.w * r.h - s / total * 240_000.0).abs() < 1e-6, "{r:?} for {s}");
            assert!(r.x >= -1e-9 && r.y >= -1e-9 && r.x + r.w <= 600.0 + 1e-6 && r.y + r.h <= 400.0 + 1e-6, "{r:?} inside");
        }
        for (i, a) in rects.iter().enumerate() {
            for b in &rects[i + 1..] {
                let overlap_w = (a.x + a.w).min(b.x + b.w) - a.x.max(b.x);
                let overlap_h = (a.y + a.h).min(b.y + b.h) - a.y.max(b.y);
                assert!(overlap_w <= 1e-6 || overlap_h <= 1e-6, "{a:?} overlaps {b:?}");
            }
        }
        // Squarified: no sliver thinner than a fifth of its length for these sizes.
        assert!(rects.iter().all(|r| r.w.min(r.h) / r.w.max(r.h) > 0.2), "{rects:?}");
    }

    #[test]
    fn zero_and_missing_sizes_get_empty_rectangles() {
        let rects = squarify(&[0.0, f64::NAN, 5.0], Rect { x: 0.0, y: 0.0, w: 10.0, h: 10.0 });
        assert_eq!(rects[0].w * rects[0].h, 0.0);
        assert_eq!(rects[1].w * rects[1].h, 0.0);
        assert!((rects[2].w * rects[2].h - 100.0).abs() < 1e-9);
        assert!(squarify(&[], Rect { x: 0.0, y: 0.0, w: 10.0, h: 10.0 }).is_empty());
    }
}
