//! Retained sizes against a brute-force oracle (remove an object, count what
//! becomes unreachable), 4-byte ids, and bad input that must fail cleanly.

mod support;

use leakscope_heap::dominators;
use leakscope_heap::hprof::graph::HprofGraph as Graph;
use leakscope_heap::hprof;
use leakscope_heap::{analyze_bytes, retained_sizes, HeapError, Options};
use support::Writer;

const CLASS: u64 = 0x100;
const OBJ_NAME: u64 = 0x1;
const FIELD_NAMES: [u64; 3] = [0x2, 0x3, 0x4];

/// A tiny deterministic generator (no dependency needed for test data).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `n` instances of one class with three reference fields each, random edges, a few roots.
fn random_heap(seed: u64, n: u64, id_size: usize) -> (Vec<u8>, Vec<Vec<u64>>, Vec<u64>) {
    let mut rng = Lcg(seed);
    let ids: Vec<u64> = (0..n).map(|i| 0x1000 + i * 16).collect();
    let mut w = Writer::new(id_size);
    w.string(OBJ_NAME, "Obj");
    for (k, &f) in FIELD_NAMES.iter().enumerate() {
        w.string(f, &format!("f{k}"));
    }
    w.load_class(CLASS, OBJ_NAME);
    w.class_dump(CLASS, 0, &[], &FIELD_NAMES.map(|f| (f, 2)));
    let mut refs = Vec::new();
    for &id in &ids {
        let fields: Vec<u64> = (0..3).map(|_| if rng.next(4) == 0 { 0 } else { ids[rng.next(n) as usize] }).collect();
        w.instance(id, CLASS, &fields);
        refs.push(fields);
    }
    let roots: Vec<u64> = (0..3).map(|_| ids[rng.next(n) as usize]).collect();
    for &r in &roots {
        w.root(0x08, r);
    }
    w.root(0x05, CLASS);
    (w.finish(), refs, roots)
}

/// Objects reachable from the roots without passing through `removed`.
fn reachable(ids: &[u64], refs: &[Vec<u64>], roots: &[u64], removed: Option<u64>) -> Vec<bool> {
    let index = |id: u64| ids.iter().position(|&x| x == id);
    let mut seen = vec![false; ids.len()];
    let mut stack: Vec<usize> = roots.iter().filter(|&&r| Some(r) != removed).filter_map(|&r| index(r)).collect();
    while let Some(i) = stack.pop() {
        if seen[i] {
            continue;
        }
        seen[i] = true;
        for &t in &refs[i] {
            if t != 0 && Some(t) != removed {
                if let Some(j) = index(t) {
                    stack.push(j);
                }
            }
        }
    }
    seen
}

#[test]
fn retained_sizes_match_brute_force_on_random_heaps() {
    for (seed, id_size, n) in [(1, 8, 60), (2, 8, 60), (3, 4, 60), (4, 4, 60), (5, 8, 60), (6, 8, 60), (7, 8, 400), (8, 4, 400)] {
        let (bytes, refs, roots) = random_heap(seed, n, id_size);
        let ids: Vec<u64> = (0..n).map(|i| 0x1000 + i * 16).collect();
        let parsed = hprof::parse(&bytes, &|_| {}).unwrap();
        let graph = Graph::build(parsed, None).unwrap();
        let root_nodes: Vec<u32> = graph.roots.iter().map(|r| r.0).collect();
        let dom = dominators::compute(graph.len(), &root_nodes, |v| graph.successors(v));
        let retained = retained_sizes(&graph, &dom).retained;
        // Every Obj has the same shallow size; the class object is a root of its own.
        let size = graph.shallow[graph.index_of(ids[0]).unwrap() as usize];
        let live = reachable(&ids, &refs, &roots, None);
        for (i, &id) in ids.iter().enumerate() {
            let node = graph.index_of(id).unwrap() as usize;
            let expected = if live[i] {
                let without = reachable(&ids, &refs, &roots, Some(id));
                live.iter().zip(&without).filter(|(a, b)| **a && !**b).count() as u64 * size
            } else {
                0
            };
            assert_eq!(retained[node], expected, "seed {seed}, id size {id_size}, object 0x{id:x}");
        }
    }
}

#[test]
fn progress_runs_from_zero_to_done() {
    let (bytes, _, _) = random_heap(9, 2000, 8);
    let seen = std::sync::Mutex::new(Vec::new());
    let analysis = leakscope_heap::analyze_bytes_with_progress(&bytes, &Options::default(), &|p| seen.lock().unwrap().push(p)).unwrap();
    assert_eq!(analysis.summary.objects, 2001);
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.first().map(|p| p.percent), Some(0));
    assert_eq!(seen.last().map(|p| (p.percent, p.phase)), Some((100, "done")));
    assert!(seen.iter().all(|p| p.percent <= 100));
    // Reading reports per segment (this heap has dozens of them), so the bar moves while reading.
    let reading: Vec<u8> = seen.iter().filter(|p| p.phase == "reading the dump").map(|p| p.percent).collect();
    assert!(reading.len() > 10 && reading.iter().any(|&p| p > 0 && p < 25), "{reading:?}");
    let phases: Vec<&str> = seen.iter().map(|p| p.phase).collect();
    for phase in ["building the object graph", "computing dominators and retained sizes", "finding leak suspects"] {
        assert!(phases.contains(&phase), "{phase} missing from {phases:?}");
    }
}

#[test]
fn four_byte_ids_use_the_32_bit_layout() {
    let (bytes, _, _) = random_heap(9, 10, 4);
    let analysis = analyze_bytes(&bytes, &Options::default()).unwrap();
    assert_eq!(analysis.summary.id_size, 4);
    assert_eq!(analysis.summary.object_header_bytes, 8);
    let obj = analysis.histogram.iter().find(|e| e.class == "Obj").unwrap();
    // 8-byte header + three 4-byte references = 20, aligned to 24.
    assert_eq!(obj.shallow_bytes, obj.instances * 24);
}

#[test]
fn a_list_of_known_shape_retains_exactly_its_nodes_and_arrays() {
    // Holder.LIST -> node0 -> node1 -> ... each node holding a byte[K].
    let (n, k) = (500u64, 40usize);
    let mut w = Writer::new(8);
    w.string(1, "Node");
    w.string(2, "next");
    w.string(3, "data");
    w.string(4, "Holder");
    w.string(5, "LIST");
    w.string(6, "[B");
    w.load_class(0x10, 1);
    w.load_class(0x20, 4);
    w.class_dump(0x10, 0, &[], &[(2, 2), (3, 2)]);
    w.class_dump(0x20, 0, &[(5, 0x1000)], &[]);
    for i in 0..n {
        let id = 0x1000 + i * 0x100;
        let next = if i + 1 < n { id + 0x100 } else { 0 };
        w.instance(id, 0x10, &[next, id + 0x80]);
        w.byte_array(id + 0x80, k);
    }
    // Both classes are system classes (sticky roots), as a JVM's would be reachable through their loader.
    w.root(0x05, 0x20);
    w.root(0x05, 0x10);
    let analysis = analyze_bytes(&w.finish(), &Options::default()).unwrap();
    // Node: 12 header + 2 x 4 refs = 20 -> 24; byte[40]: 16 + 40 = 56.
    let head = analysis.dominators.iter().find(|d| d.class == "Node").unwrap();
    assert_eq!(head.retained_bytes, n * (24 + 56));
    let s = &analysis.suspects[0];
    assert!(s.description.starts_with("Holder.LIST -> Node"), "{}", s.description);
}

fn expect_error(bytes: &[u8]) -> HeapError {
    match analyze_bytes(bytes, &Options::default()) {
        Err(e) => e,
        Ok(_) => panic!("bad input was accepted"),
    }
}

#[test]
fn bad_input_gets_a_clear_error_with_the_offset() {
    let (good, _, _) = random_heap(7, 20, 8);
    assert!(matches!(expect_error(b"PK\x03\x04 not a dump"), HeapError::NotHprof));
    assert!(matches!(expect_error(b""), HeapError::NotHprof));
    // Truncated anywhere: an error naming a byte offset, never a panic.
    for cut in [19, 25, good.len() / 3, good.len() / 2, good.len() - 1] {
        let e = expect_error(&good[..cut]);
        assert!(e.to_string().contains("byte"), "cut at {cut}: {e}");
    }
    // An absurd record length.
    let mut absurd = good.clone();
    let first_record = 19 + 4 + 8;
    absurd[first_record + 5..first_record + 9].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(expect_error(&absurd), HeapError::Truncated { .. }));
    // A bad id size in the header.
    let mut bad_id = good.clone();
    bad_id[19..23].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(expect_error(&bad_id), HeapError::Corrupt { .. }));
    // Random corruption never panics.
    let mut rng = Lcg(42);
    for _ in 0..2000 {
        let mut bytes = good.clone();
        for _ in 0..1 + rng.next(4) {
            let at = rng.next(bytes.len() as u64) as usize;
            bytes[at] = rng.next(256) as u8;
        }
        let _ = analyze_bytes(&bytes, &Options::default());
    }
}

/// The browsable tree agrees with the dominators (each listed child's parent
/// dominates it; retained sizes as computed) and every listed object has a
/// real path from a GC root: consecutive steps are references, the first is a root.
#[test]
fn the_browsable_tree_and_its_paths_are_consistent_with_the_graph() {
    for (seed, id_size) in [(11, 8), (12, 4), (13, 8)] {
        let n = 200;
        let (bytes, refs, roots) = random_heap(seed, n, id_size);
        let ids: Vec<u64> = (0..n).map(|i| 0x1000 + i * 16).collect();
        let options = Options { tree_min_share: 0.0, tree_children: 1000, tree_nodes: 100_000, ..Options::default() };
        let analysis = analyze_bytes(&bytes, &options).unwrap();
        let parsed = hprof::parse(&bytes, &|_| {}).unwrap();
        let graph = Graph::build(parsed, None).unwrap();
        let root_nodes: Vec<u32> = graph.roots.iter().map(|r| r.0).collect();
        let dom = dominators::compute(graph.len(), &root_nodes, |v| graph.successors(v));
        let retained = retained_sizes(&graph, &dom).retained;
        let live = reachable(&ids, &refs, &roots, None);
        let parse_id = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
        // With no limits the tree lists every reachable object.
        let listed_objs = analysis.tree.iter().filter(|t| t.class == "Obj").count();
        assert_eq!(listed_objs, live.iter().filter(|l| **l).count(), "seed {seed}");
        for node in &analysis.tree {
            let v = graph.index_of(parse_id(&node.object_id)).unwrap();
            assert_eq!(node.retained_bytes, retained[v as usize]);
            let idom = dom.idom[v as usize];
            match &node.parent {
                None => assert_eq!(idom as usize, graph.len(), "a top-level node is dominated by the virtual root"),
                Some(p) => assert_eq!(graph.index_of(parse_id(p)).unwrap(), idom),
            }
            assert!(analysis.tree_children(Some(&node.object_id)).len() as u64 <= node.children);
            let path = analysis.path_to(&node.object_id);
            assert_eq!(path.last().unwrap().object_id, node.object_id);
            assert!(path[0].root_kind.is_some(), "the path starts at a GC root");
            let first = graph.index_of(parse_id(&path[0].object_id)).unwrap();
            assert!(graph.roots.iter().any(|r| r.0 == first));
            for pair in path.windows(2) {
                let (a, b) = (graph.index_of(parse_id(&pair[0].object_id)).unwrap(), graph.index_of(parse_id(&pair[1].object_id)).unwrap());
                assert!(graph.successors(a).contains(&b), "{} does not refer to {}", pair[0].object_id, pair[1].object_id);
                assert!(pair[0].field.is_some(), "a step names its field");
            }
        }
        // Children are listed largest first, and the ancestors of a deep node lead back to the top.
        let deepest = analysis.tree.iter().max_by_key(|t| analysis.tree_ancestors(&t.object_id).len()).unwrap();
        let chain = analysis.tree_ancestors(&deepest.object_id);
        assert!(chain[0].parent.is_none() && chain.last().unwrap().object_id == deepest.object_id);
        let top = analysis.tree_children(None);
        assert!(top.windows(2).all(|w| w[0].retained_bytes >= w[1].retained_bytes));
    }
}

#[test]
fn any_object_can_be_inspected_beyond_the_stored_tree() {
    let (bytes, _, _) = random_heap(11, 300, 8);
    let parsed = hprof::parse(&bytes, &|_| {}).unwrap();
    let graph = Graph::build(parsed, None).unwrap();
    let root_nodes: Vec<u32> = graph.roots.iter().map(|r| r.0).collect();
    let dom = dominators::compute(graph.len(), &root_nodes, |v| graph.successors(v));
    let retained = retained_sizes(&graph, &dom).retained;
    let mut inspected_reachable = 0;
    for i in (0..300u64).step_by(7) {
        let id = 0x1000 + i * 16;
        let node = graph.index_of(id).unwrap() as usize;
        let detail = leakscope_heap::inspect_object(&bytes, id, &Options::default()).unwrap().expect("the object exists");
        let hex = format!("0x{id:x}");
        assert_eq!(detail.object.object_id, hex);
        assert_eq!(detail.object.retained_bytes, retained[node]);
        assert!(detail.children.iter().all(|c| c.parent.as_deref() == Some(hex.as_str())));
        assert!(detail.children.windows(2).all(|w| w[0].retained_bytes >= w[1].retained_bytes));
        assert_eq!(detail.dominators.last().map(|d| d.object_id.clone()), detail.object.parent);
        assert!(detail.dominators.first().is_none_or(|d| d.parent.is_none()));
        if dom.idom[node] != dominators::NONE {
            inspected_reachable += 1;
            // The path reaches a GC root and includes the object itself.
            assert!(detail.gc_path.iter().any(|l| l.object_id == hex));
            assert!(detail.gc_path.iter().any(|l| l.root_kind.is_some()));
            // Woven into an analysis, the tree opens at the object and the path is complete.
            let analysis = analyze_bytes(&bytes, &Options { tree_nodes: 1, ..Options::default() }).unwrap().with_object(&detail);
            let path = analysis.path_to(&hex);
            assert_eq!(path.last().map(|s| s.object_id.clone()), Some(hex.clone()));
            assert!(path[0].root_kind.is_some());
            assert_eq!(analysis.tree_children(Some(&hex)).len(), detail.children.len());
        } else {
            assert!(detail.gc_path.is_empty());
        }
    }
    assert!(inspected_reachable > 10);
    assert!(leakscope_heap::inspect_object(&bytes, 0xdead_beef, &Options::default()).unwrap().is_none());
}
