//! A heap profile's call tree (any dominator tree) as a flame graph: one box
//! per node, as wide as what it retains, its children under it. Beside the
//! types, as the treemap's layout is, because the server draws the boxes
//! (plotters SVG) and the page lays links over the very same ones.

use serde::{Deserialize, Serialize};

use crate::analysis::{Analysis, TreeNode};

/// The drawing's width in pixels, and one row's height.
pub const WIDTH: u32 = 1200;
pub const ROW: u32 = 18;
/// Rows drawn at most, and the narrowest box drawn (a share of the whole).
pub const MAX_DEPTH: u32 = 40;
pub const MIN_WIDTH: f64 = 0.002;

/// One frame of a flame graph drawn from the dominator tree (for a Go heap
/// profile it is the call tree: callers above their callees).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlameFrame {
    pub object_id: String,
    pub name: String,
    /// 0 for the top row.
    pub depth: u32,
    /// Left edge and width as shares of everything (0 to 1).
    pub start: f64,
    pub width: f64,
    pub bytes: u64,
}

/// An analysis's browsable tree as a flame graph, as the page and the SVG draw it.
pub fn layout(analysis: &Analysis) -> Vec<FlameFrame> {
    frames(
        &analysis.tree,
        analysis.summary.reachable_bytes,
        MAX_DEPTH,
        MIN_WIDTH,
    )
}

/// Each node as wide as its retained share of `total`, its children under it,
/// biggest first; boxes narrower than `min_width` (a share) and rows below
/// `max_depth` are left out.
pub fn frames(tree: &[TreeNode], total: u64, max_depth: u32, min_width: f64) -> Vec<FlameFrame> {
    let total = total.max(1) as f64;
    let mut children: std::collections::HashMap<Option<&str>, Vec<&TreeNode>> =
        std::collections::HashMap::new();
    for node in tree {
        children
            .entry(node.parent.as_deref())
            .or_default()
            .push(node);
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| {
            b.retained_bytes
                .cmp(&a.retained_bytes)
                .then(a.object_id.cmp(&b.object_id))
        });
    }
    let mut frames = Vec::new();
    // (parent, depth, left edge) to lay out; a stack rather than recursion.
    let mut pending: Vec<(Option<&str>, u32, f64)> = vec![(None, 0, 0.0)];
    while let Some((parent, depth, mut start)) = pending.pop() {
        for node in children.get(&parent).map(Vec::as_slice).unwrap_or(&[]) {
            let width = node.retained_bytes as f64 / total;
            if width < min_width {
                break;
            }
            frames.push(FlameFrame {
                object_id: node.object_id.clone(),
                name: node.class.clone(),
                depth,
                start,
                width,
                bytes: node.retained_bytes,
            });
            if depth + 1 < max_depth {
                pending.push((Some(node.object_id.as_str()), depth + 1, start));
            }
            start += width;
        }
    }
    frames.sort_by(|a, b| a.depth.cmp(&b.depth).then(a.start.total_cmp(&b.start)));
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, parent: Option<&str>, retained: u64) -> TreeNode {
        TreeNode {
            object_id: id.into(),
            class: format!("f{id}"),
            shallow_bytes: 0,
            retained_bytes: retained,
            parent: parent.map(str::to_string),
            children: 0,
        }
    }

    #[test]
    fn children_sit_under_their_parent_biggest_first() {
        let tree = vec![
            node("1", None, 1000),
            node("2", Some("1"), 300),
            node("3", Some("1"), 600),
            node("4", Some("3"), 1),
        ];
        let frames = frames(&tree, 1000, MAX_DEPTH, MIN_WIDTH);
        let at = |id: &str| frames.iter().find(|f| f.object_id == id).unwrap();
        assert_eq!((at("1").depth, at("1").width), (0, 1.0));
        assert_eq!((at("3").depth, at("3").start, at("3").width), (1, 0.0, 0.6));
        assert_eq!((at("2").start, at("2").width), (0.6, 0.3));
        assert!(
            frames.iter().all(|f| f.object_id != "4"),
            "too narrow to draw"
        );
    }
}
