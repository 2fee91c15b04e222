//! The brute-force oracle for retained sizes on any front end's graph: remove
//! one object, and what becomes unreachable from the roots is what it retained.

use leakscope_heap::graph::ObjectGraph;
use leakscope_heap::{dominators, retained_sizes};

/// Objects reachable from the roots over strong edges, not entering `removed`.
pub fn reachable(graph: &dyn ObjectGraph, removed: Option<u32>) -> Vec<bool> {
    let mut seen = vec![false; graph.len()];
    let mut stack: Vec<u32> = graph.root_nodes().into_iter().filter(|&r| Some(r) != removed).collect();
    while let Some(v) = stack.pop() {
        if std::mem::replace(&mut seen[v as usize], true) {
            continue;
        }
        stack.extend(graph.successors(v).iter().copied().filter(|&w| Some(w) != removed && !seen[w as usize]));
    }
    seen
}

/// Checks the computed retained size of the 25 biggest retainers and a spread
/// of others (roots skipped: removing a root does not unroot what it holds).
pub fn check_retained_sizes(graph: &dyn ObjectGraph) {
    let dom = dominators::compute(graph.len(), &graph.root_nodes(), |v| graph.successors(v));
    let computed = retained_sizes(graph, &dom);
    let everything = reachable(graph, None);
    let roots: std::collections::HashSet<u32> = graph.root_nodes().into_iter().collect();
    let mut order: Vec<u32> = (0..graph.len() as u32).filter(|&v| everything[v as usize] && !roots.contains(&v)).collect();
    order.sort_by_key(|&v| std::cmp::Reverse(computed.retained[v as usize]));
    let mut sample: Vec<u32> = order.iter().take(25).copied().collect();
    sample.extend(order.iter().step_by(order.len() / 40 + 1).copied());
    for v in sample {
        let without = reachable(graph, Some(v));
        let lost: u64 = (0..graph.len()).filter(|&w| everything[w] && (!without[w] || w == v as usize)).map(|w| graph.shallow(w as u32)).sum();
        assert_eq!(computed.retained[v as usize], lost, "retained size of {} (id {:#x})", graph.display_class(v), graph.id(v));
    }
}
