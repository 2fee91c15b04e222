//! From graph and dominators to what a person reads: histogram with
//! retained sizes, biggest objects, leak suspects with their paths.

use std::collections::{HashMap, VecDeque};

use leakscope_model::analysis::{Analysis, DominatorEntry, HeapSummary, HistogramEntry, ObjectDetail, PathLink, PathStep, Suspect, TreeNode};
use leakscope_model::{format_bytes, format_percent};

use crate::column::Column;
use crate::dominators::{Dominators, NONE};
use crate::join;
use crate::graph::{ObjectGraph, Role};

pub struct Options {
    /// How many biggest objects to list.
    pub top_dominators: usize,
    /// A suspect retains at least this share of the reachable heap.
    pub suspect_threshold: f64,
    pub max_suspects: usize,
    /// The browsable dominator tree: at most this many nodes in all,
    pub tree_nodes: usize,
    /// at most this many children under one node,
    pub tree_children: usize,
    /// and none retaining less than this share of the reachable heap.
    pub tree_min_share: f64,
}

impl Default for Options {
    fn default() -> Self {
        Options { top_dominators: 100, suspect_threshold: 0.10, max_suspects: 5, tree_nodes: 3000, tree_children: 25, tree_min_share: 0.0005 }
    }
}

pub fn hex(id: u64) -> String {
    format!("0x{id:x}")
}

pub struct Computed {
    pub retained: Column<u64>,
    pub virtual_root_retained: u64,
}

/// Retained size per node: its shallow size plus what it dominates.
pub fn retained_sizes(graph: &dyn ObjectGraph, dom: &Dominators) -> Computed {
    let n = graph.len();
    let mut retained = Column::filled(n + 1, 0u64);
    for &v in &dom.preorder[1..] {
        retained[v as usize] = graph.shallow(v);
    }
    // Children come after their dominator in preorder, so one reverse sweep suffices.
    for &v in dom.preorder[1..].iter().rev() {
        let d = dom.idom[v as usize];
        retained[d as usize] += retained[v as usize];
    }
    let virtual_root_retained = retained[n];
    retained.truncate(n);
    Computed { retained, virtual_root_retained }
}

/// Children lists of the dominator tree in CSR form (virtual root = n).
fn dominator_children(n: usize, dom: &Dominators) -> (Column<u32>, Column<u32>) {
    let mut start = Column::filled(n + 2, 0u32);
    for &v in &dom.preorder[1..] {
        start[dom.idom[v as usize] as usize + 1] += 1;
    }
    for i in 0..=n {
        start[i + 1] += start[i];
    }
    // Fill with the start array as cursor, then shift it back (no copy).
    let mut children = Column::filled(start[n + 1] as usize, 0u32);
    for &v in &dom.preorder[1..] {
        let d = dom.idom[v as usize] as usize;
        children[start[d] as usize] = v;
        start[d] += 1;
    }
    for i in (1..=n + 1).rev() {
        start[i] = start[i - 1];
    }
    start[0] = 0;
    (start, children)
}

/// Per histogram class: instances and shallow bytes.
fn class_totals(graph: &dyn ObjectGraph) -> (Vec<u64>, Vec<u64>) {
    let classes = graph.class_names().len();
    let mut instances = vec![0u64; classes];
    let mut shallow = vec![0u64; classes];
    let counts = graph.counts();
    for (v, &c) in graph.class_of().iter().enumerate() {
        instances[c as usize] += counts.as_ref().map_or(1, |n| n[v]);
        shallow[c as usize] += graph.shallow(v as u32);
    }
    (instances, shallow)
}

/// Retained bytes per histogram class, counting nested instances once: a
/// walk of the dominator tree keeping, per class, how many ancestors are instances of it.
fn class_retained<'k>(graph: &dyn ObjectGraph, retained: &[u64], kids: &(dyn Fn(u32) -> &'k [u32] + Sync)) -> Vec<u64> {
    let n = graph.len();
    let classes = graph.class_names().len();
    let mut class_retained = vec![0u64; classes];
    let mut open = vec![0u32; classes];
    let mut stack: Vec<(u32, bool)> = kids(n as u32).iter().rev().map(|&c| (c, false)).collect();
    while let Some((v, leaving)) = stack.pop() {
        let c = graph.class_of()[v as usize] as usize;
        if leaving {
            open[c] -= 1;
            continue;
        }
        if open[c] == 0 {
            class_retained[c] += retained[v as usize];
        }
        let below = kids(v);
        // Most objects dominate nothing: a leaf needs no leaving step.
        if !below.is_empty() {
            open[c] += 1;
            stack.push((v, true));
            stack.extend(below.iter().rev().map(|&k| (k, false)));
        }
    }
    class_retained
}

/// The objects retaining most, largest first: a bounded min-heap over every
/// reachable object (no copy of the preorder).
fn biggest_objects(graph: &dyn ObjectGraph, dom: &Dominators, retained: &[u64], top: usize) -> Vec<DominatorEntry> {
    let n = graph.len();
    let mut heap: std::collections::BinaryHeap<std::cmp::Reverse<(u64, std::cmp::Reverse<u32>)>> =
        std::collections::BinaryHeap::with_capacity(top + 1);
    if top > 0 {
        for &v in &dom.preorder[1..] {
            let entry = std::cmp::Reverse((retained[v as usize], std::cmp::Reverse(v)));
            if heap.len() < top {
                heap.push(entry);
            } else if heap.peek().is_some_and(|smallest| entry < *smallest) {
                heap.pop();
                heap.push(entry);
            }
        }
    }
    let mut biggest: Vec<u32> = heap.into_iter().map(|std::cmp::Reverse((_, std::cmp::Reverse(v)))| v).collect();
    biggest.sort_by(|&a, &b| retained[b as usize].cmp(&retained[a as usize]).then(a.cmp(&b)));
    // Depth in the dominator tree, only for the few listed.
    let depth = |mut v: u32| {
        let mut d = 0;
        while v != n as u32 && v != NONE {
            v = dom.idom[v as usize];
            d += 1;
        }
        d
    };
    biggest
        .iter()
        .map(|&v| DominatorEntry {
            object_id: hex(graph.id(v)),
            class: graph.display_class(v),
            shallow_bytes: graph.shallow(v),
            retained_bytes: retained[v as usize],
            depth: depth(v),
        })
        .collect()
}

/// `referrer` is the breadth-first search from the roots (`bfs_referrers`), run beside the dominators.
/// The independent parts run two at a time (this machine class has two cores).
pub fn analyze(graph: &dyn ObjectGraph, dom: &Dominators, referrer: &[u32], options: &Options, started: std::time::Instant) -> Analysis {
    let n = graph.len();
    let (computed, (instances, shallow), (child_start, children)) = std::thread::scope(|scope| {
        let tree = scope.spawn(|| dominator_children(n, dom));
        let computed = retained_sizes(graph, dom);
        let totals = class_totals(graph);
        (computed, totals, join(tree))
    });
    let retained = &computed.retained;
    let kids = |v: u32| &children[child_start[v as usize] as usize..child_start[v as usize + 1] as usize];
    // The dominator tree walk for retained bytes per class runs beside the rest.
    let (class_retained, (dominators, suspects, tree, gc_paths)) = std::thread::scope(|scope| {
        let per_class = scope.spawn(|| class_retained(graph, retained, &kids));
        let dominators = biggest_objects(graph, dom, retained, options.top_dominators);
        let suspects = if graph.has_suspects() { find_suspects(graph, retained, computed.virtual_root_retained, &kids, options, referrer) } else { Vec::new() };
        let tree_nodes = browsable_tree(n, retained, computed.virtual_root_retained, &kids, options);
        let tree: Vec<TreeNode> = tree_nodes
            .iter()
            .map(|&(v, parent)| TreeNode {
                object_id: hex(graph.id(v)),
                class: graph.display_class(v),
                shallow_bytes: graph.shallow(v),
                retained_bytes: retained[v as usize],
                parent: parent.map(|p| hex(graph.id(p))),
                children: kids(v).len() as u64,
            })
            .collect();
        let gc_paths = path_links(graph, referrer, tree_nodes.iter().map(|&(v, _)| v));
        (join(per_class), (dominators, suspects, tree, gc_paths))
    });
    let mut histogram: Vec<HistogramEntry> = (0..graph.class_names().len())
        .filter(|&c| instances[c] > 0 || class_retained[c] > 0)
        .map(|c| HistogramEntry {
            class: graph.class_names()[c].clone(),
            instances: instances[c],
            shallow_bytes: shallow[c],
            retained_bytes: class_retained[c],
        })
        .collect();
    histogram.sort_by(|a, b| {
        b.retained_bytes.cmp(&a.retained_bytes).then(b.shallow_bytes.cmp(&a.shallow_bytes)).then(a.class.cmp(&b.class))
    });

    let reachable_objects = (dom.preorder.len() - 1) as u64;
    let facts = graph.facts();
    Analysis {
        summary: HeapSummary {
            format: facts.format.into(),
            runtime: facts.runtime.into(),
            id_size: facts.id_size,
            timestamp_ms: facts.timestamp_ms,
            objects: n as u64,
            reachable_objects,
            classes: facts.classes,
            heap_bytes: shallow.iter().sum(),
            reachable_bytes: computed.virtual_root_retained,
            gc_roots: graph.roots().len() as u64,
            object_header_bytes: facts.object_header_bytes,
            reference_bytes: facts.reference_bytes,
            compressed_oops: facts.compressed_oops,
            analysis_millis: started.elapsed().as_millis() as u64,
        },
        histogram,
        dominators,
        suspects,
        tree,
        gc_paths,
        allocation_sites: graph.allocation_sites(),
        profile_functions: graph.profile_functions(),
    }
}

/// Everything about one object: its place in the dominator tree (dominators,
/// biggest children) and its shortest path from a GC root.
pub fn object_detail(graph: &dyn ObjectGraph, dom: &Dominators, referrer: &[u32], node: u32, options: &Options) -> ObjectDetail {
    let n = graph.len();
    let retained = retained_sizes(graph, dom).retained;
    let mut child_counts = Column::filled(n, 0u32);
    let mut children: Vec<u32> = Vec::new();
    for &v in &dom.preorder[1..] {
        let d = dom.idom[v as usize];
        if (d as usize) < n {
            child_counts[d as usize] += 1;
        }
        if d == node {
            children.push(v);
        }
    }
    children.sort_by(|&a, &b| retained[b as usize].cmp(&retained[a as usize]).then(a.cmp(&b)));
    children.truncate(options.tree_children);
    let parent_of = |v: u32| {
        let d = dom.idom[v as usize];
        ((d as usize) < n).then_some(d)
    };
    let tree_node = |v: u32| TreeNode {
        object_id: hex(graph.id(v)),
        class: graph.display_class(v),
        shallow_bytes: graph.shallow(v),
        retained_bytes: retained[v as usize],
        parent: parent_of(v).map(|p| hex(graph.id(p))),
        children: child_counts[v as usize] as u64,
    };
    let mut dominators = Vec::new();
    let mut at = parent_of(node);
    while let Some(d) = at {
        if dominators.len() >= 200 {
            break;
        }
        dominators.push(tree_node(d));
        at = parent_of(d);
    }
    dominators.reverse();
    ObjectDetail {
        object: tree_node(node),
        dominators,
        children: children.into_iter().map(tree_node).collect(),
        gc_path: path_links(graph, referrer, std::iter::once(node)),
    }
}

/// For every object, the one that first reached it in a breadth-first search
/// from the GC roots (a root points at itself; `NONE` = unreachable). One
/// search gives the shortest path from a root to every object.
pub fn bfs_referrers(graph: &dyn ObjectGraph) -> Column<u32> {
    let n = graph.len();
    let mut referrer = Column::filled(n, NONE);
    // Every object enters the queue once, so a plain vector with a read index will do.
    // Reserved whole (untouched pages cost nothing) rather than grown by copies.
    let mut queue: Column<u32> = Column::with_capacity(n);
    for &(r, _) in graph.roots() {
        if referrer[r as usize] == NONE {
            referrer[r as usize] = r;
            queue.push(r);
        }
    }
    let mut head = 0;
    while let Some(&v) = queue.get(head) {
        head += 1;
        for &w in graph.successors(v) {
            if referrer[w as usize] == NONE {
                referrer[w as usize] = v;
                queue.push(w);
            }
        }
    }
    referrer
}

/// Root first, from the referrers of a breadth-first search.
fn path_via(referrer: &[u32], target: u32) -> Vec<u32> {
    if referrer[target as usize] == NONE {
        return Vec::new();
    }
    let mut path = vec![target];
    let mut v = target;
    while referrer[v as usize] != v {
        v = referrer[v as usize];
        path.push(v);
    }
    path.reverse();
    path
}

/// (node, its dominator in the slice) breadth-first from the top: the biggest
/// children of each node, as long as they retain a visible share of the heap.
fn browsable_tree<'k>(n: usize, retained: &[u64], total: u64, kids: &dyn Fn(u32) -> &'k [u32], options: &Options) -> Vec<(u32, Option<u32>)> {
    let floor = ((total as f64 * options.tree_min_share) as u64).max(1);
    let mut out = Vec::new();
    let mut queue = VecDeque::from([(n as u32, None::<u32>)]);
    while let Some((v, _)) = queue.pop_front() {
        let mut children: Vec<u32> = kids(v).iter().copied().filter(|&k| retained[k as usize] >= floor).collect();
        let keep = options.tree_children.min(children.len());
        if keep > 0 && keep < children.len() {
            children.select_nth_unstable_by(keep - 1, |&a, &b| retained[b as usize].cmp(&retained[a as usize]));
        }
        children.truncate(keep);
        children.sort_by(|&a, &b| retained[b as usize].cmp(&retained[a as usize]).then(a.cmp(&b)));
        for k in children {
            if out.len() >= options.tree_nodes {
                return out;
            }
            let parent = (v != n as u32).then_some(v);
            out.push((k, parent));
            queue.push_back((k, parent));
        }
    }
    out
}

/// The reference paths from GC roots to `targets`, each object once.
fn path_links(graph: &dyn ObjectGraph, referrer: &[u32], targets: impl Iterator<Item = u32>) -> Vec<PathLink> {
    let mut seen = std::collections::HashSet::new();
    let mut links = Vec::new();
    for target in targets {
        let mut v = target;
        while referrer[v as usize] != NONE && seen.insert(v) {
            let r = referrer[v as usize];
            let is_root = r == v;
            links.push(PathLink {
                object_id: hex(graph.id(v)),
                class: graph.display_class(v),
                referrer: (!is_root).then(|| hex(graph.id(r))),
                field: (!is_root).then(|| graph.edge_name(r, v)).flatten(),
                root_kind: is_root.then(|| root_kind_of(graph, v)),
            });
            if is_root {
                break;
            }
            v = r;
        }
    }
    links
}

fn root_kind_of(graph: &dyn ObjectGraph, v: u32) -> String {
    let roots = graph.roots();
    roots.binary_search_by_key(&v, |r| r.0).ok().map(|k| graph.root_kind_name(roots[k].1)).unwrap_or_default()
}

fn find_suspects<'k>(
    graph: &dyn ObjectGraph,
    retained: &[u64],
    total: u64,
    kids: &dyn Fn(u32) -> &'k [u32],
    options: &Options,
    referrer: &[u32],
) -> Vec<Suspect> {
    let n = graph.len() as u32;
    if total == 0 {
        return Vec::new();
    }
    let threshold = (total as f64 * options.suspect_threshold) as u64;
    let mut top: Vec<u32> = kids(n).iter().copied().filter(|&v| retained[v as usize] >= threshold.max(1)).collect();
    top.sort_by(|&a, &b| retained[b as usize].cmp(&retained[a as usize]));
    top.truncate(options.max_suspects);
    top.into_iter()
        .map(|suspect| {
            // Descend while one child holds most of what its parent retains.
            let mut point = suspect;
            loop {
                let biggest = kids(point).iter().copied().max_by_key(|&k| retained[k as usize]);
                match biggest {
                    Some(k) if retained[k as usize] as f64 >= 0.6 * retained[point as usize] as f64 => point = k,
                    _ => break,
                }
            }
            // What accumulates there: the most common class among what it dominates.
            let mut counts: HashMap<u32, (u64, u64)> = HashMap::new();
            for &k in kids(point) {
                let e = counts.entry(graph.class_of()[k as usize]).or_default();
                e.0 += 1;
                e.1 += retained[k as usize];
            }
            let accumulated = counts.into_iter().max_by_key(|&(_, (count, bytes))| (count, bytes));
            let path_nodes = path_via(referrer, point);
            let path: Vec<PathStep> = path_nodes
                .iter()
                .enumerate()
                .map(|(i, &v)| PathStep {
                    object_id: hex(graph.id(v)),
                    class: graph.display_class(v),
                    field: path_nodes.get(i + 1).and_then(|&next| graph.edge_name(v, next)),
                    root_kind: (i == 0).then(|| root_kind_of(graph, v)),
                })
                .collect();
            let bytes = retained[suspect as usize];
            let share = bytes as f64 / total as f64;
            let point_bytes = retained[point as usize];
            let description = describe(graph, &path_nodes, point, point_bytes, total, accumulated.map(|(c, (count, _))| (c, count)));
            Suspect {
                description,
                object_id: hex(graph.id(suspect)),
                class: graph.display_class(suspect),
                retained_bytes: bytes,
                retained_share: share,
                accumulation_object_id: hex(graph.id(point)),
                accumulation_class: graph.display_class(point),
                accumulated_class: accumulated.map(|(c, _)| graph.class_names()[c as usize].clone()),
                accumulated_instances: accumulated.map(|(_, (count, _))| count).unwrap_or(0),
                path,
            }
        })
        .collect()
}

/// `Main.SESSIONS -> ArrayList.elementData -> Object[200000] holds 200 000 Main$Session retaining 140 MiB (63 %)`
fn describe(graph: &dyn ObjectGraph, path: &[u32], point: u32, bytes: u64, total: u64, accumulated: Option<(u32, u64)>) -> String {
    // Start the chain at the last class object (a static field) when there is one: that is where people look.
    let start = path.iter().rposition(|&v| graph.role(v) == Role::Holder).unwrap_or(0);
    let mut parts: Vec<String> = Vec::new();
    for w in path[start..].windows(2) {
        let (v, next) = (w[0], w[1]);
        let field = graph.edge_name(v, next).unwrap_or_else(|| "?".into());
        let owner = match graph.role(v) {
            Role::Holder => graph.short_name(graph.display_class(v).trim_start_matches("class ")).to_string(),
            _ => graph.short_name(graph.class_name(v)).to_string(),
        };
        if field.starts_with('[') {
            parts.push(format!("{owner}{field}"));
        } else {
            parts.push(format!("{owner}.{field}"));
        }
    }
    let last = match graph.role(point) {
        Role::Array(len) => {
            let display = graph.display_class(point);
            let name = graph.short_name(&display);
            match name.strip_suffix(']') {
                Some(open) => format!("{open}{len}]"),
                None => format!("{name}[{len}]"),
            }
        }
        _ => graph.short_name(&graph.display_class(point)).to_string(),
    };
    parts.push(last);
    let chain = parts.join(" -> ");
    let share = format_percent(bytes as f64 / total as f64);
    match accumulated {
        Some((class, count)) if count >= 2 => format!(
            "{chain} holds {} {} retaining {} ({share})",
            group_thousands(count),
            graph.short_name(&graph.class_names()[class as usize]),
            format_bytes(bytes)
        ),
        _ => format!("{chain} retains {} ({share})", format_bytes(bytes)),
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}
