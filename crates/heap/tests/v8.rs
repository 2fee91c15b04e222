//! The V8 front end on real snapshots written by the host's Node.js: known
//! shapes, retained sizes against a brute-force oracle, and bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/graph_oracle.rs"]
mod graph_oracle;

use leakscope_heap::graph::ObjectGraph;
use leakscope_heap::v8::V8Graph;
use leakscope_heap::{analyze_bytes, dominators, retained_sizes, HeapError, Options};

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("leakscope-v8-{}-{name}", std::process::id()))
}

/// A snapshot of `tests/node/shapes.js` run by the host's `node`.
fn shapes_snapshot(name: &str, sessions: u32, elements: u32, listeners: u32) -> PathBuf {
    let out = temp(name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/shapes.js");
    let status = Command::new("node")
        .arg(&script)
        .arg(&out)
        .args([sessions.to_string(), elements.to_string(), listeners.to_string()])
        .status()
        .expect("node runs (the test command installs nodejs)");
    assert!(status.success(), "node {} failed", script.display());
    out
}

#[test]
fn known_shapes_come_out_with_their_counts_sizes_and_path() {
    let file = shapes_snapshot("shapes.heapsnapshot", 2000, 1000, 300);
    let data = std::fs::read(&file).unwrap();
    let analysis = analyze_bytes(&data, &Options::default()).unwrap();
    assert_eq!(analysis.summary.format, "v8");
    assert_eq!(analysis.summary.runtime, "node");

    let class = |name: &str| analysis.histogram.iter().find(|e| e.class == name).unwrap_or_else(|| panic!("no {name} in the histogram"));
    let sessions = class("Session");
    assert_eq!(sessions.instances, 2000);
    // Each Session keeps its own array of 1000 numbers: at least 8 bytes per element.
    assert!(sessions.retained_bytes >= 2000 * 1000 * 8, "{sessions:?}");
    for name in ["(closure)", "(system)", "(compiled code)", "Map", "Object", "Array", "(string)"] {
        class(name);
    }

    let suspect = analysis.suspects.first().expect("the sessions map is a suspect");
    assert!(
        suspect.description.starts_with("global.sessions -> Map.table -> (array)[2000] holds 2 000 Session retaining"),
        "{}",
        suspect.description
    );
    assert_eq!(suspect.path.first().and_then(|s| s.root_kind.as_deref()), Some("global object"));
    assert_eq!(suspect.path[0].field.as_deref(), Some("sessions"));

    // The listeners' closures: the emitter retains 300 arrays of 500 numbers.
    let emitter = analysis.dominators.iter().find(|d| d.class == "EventEmitter").expect("the request bus is a big object");
    assert!(emitter.retained_bytes >= 300 * 500 * 8, "{emitter:?}");

    // Ids are V8's own object ids, and a lookup by id finds the same object.
    let id = u64::from_str_radix(suspect.accumulation_object_id.trim_start_matches("0x"), 16).unwrap();
    let detail = leakscope_heap::inspect_object(&data, id, &Options::default()).unwrap().expect("the accumulation point is found by its id");
    assert_eq!(detail.object.class, "(array)");
    assert_eq!(detail.children.len(), Options::default().tree_children);
    assert!(detail.gc_path.iter().any(|l| l.field.as_deref() == Some("table")), "{:?}", detail.gc_path);
    std::fs::remove_file(file).ok();
}

#[test]
fn retained_sizes_equal_a_brute_force_oracle() {
    let file = shapes_snapshot("oracle.heapsnapshot", 300, 50, 40);
    let data = std::fs::read(&file).unwrap();
    let graph = V8Graph::parse(&data, &|_| {}, &|| {}).unwrap();
    graph_oracle::check_retained_sizes(&graph);
    std::fs::remove_file(file).ok();
}

#[test]
fn bad_snapshots_fail_with_the_offset_and_never_panic() {
    let file = shapes_snapshot("bad.heapsnapshot", 50, 10, 5);
    let data = std::fs::read(&file).unwrap();
    std::fs::remove_file(file).ok();
    let expect_error = |bytes: &[u8]| match analyze_bytes(bytes, &Options::default()) {
        Ok(_) => panic!("accepted a bad snapshot of {} bytes", bytes.len()),
        Err(e) => e,
    };
    // Cut anywhere: a clear error, with the offset where the bytes ran out.
    for cut in [10, 200, 800, data.len() / 3, data.len() / 2, data.len() - 40, data.len() - 1] {
        match expect_error(&data[..cut]) {
            HeapError::Truncated { offset, .. } => assert!(offset <= cut as u64, "offset {offset} past the cut {cut}"),
            HeapError::Corrupt { offset, .. } => assert!(offset <= cut as u64),
            other => panic!("cut at {cut}: {other}"),
        }
    }
    let text = String::from_utf8(data.clone()).unwrap();
    let corrupt = |from: &str, to: &str| {
        assert!(text.contains(from), "the snapshot has {from}");
        let err = expect_error(text.replacen(from, to, 1).as_bytes());
        assert!(matches!(err, HeapError::Corrupt { .. } | HeapError::Truncated { .. }), "{from} -> {to}: {err}");
        err.to_string()
    };
    // Wrong meta: a field missing, and a node count that does not match.
    assert!(corrupt("\"self_size\"", "\"size_of_self\"").contains("self_size"));
    let node_count = text.split("\"node_count\":").nth(1).unwrap().split(',').next().unwrap();
    assert!(corrupt(&format!("\"node_count\":{node_count}"), "\"node_count\":5").contains("node_count"));
    // Absurd counts must not size an allocation.
    corrupt(&format!("\"node_count\":{node_count}"), "\"node_count\":9999999999999");
    // An edge pointing past the nodes, a non-number in the nodes, garbage after the header.
    corrupt("\"nodes\":[9,", "\"nodes\":[x,");
    corrupt("\"nodes\":[", "\"nodes\":{");
    let edges_at = text.find("\"edges\":[").unwrap() + 9;
    let first: Vec<&str> = text[edges_at..].splitn(4, ',').take(3).collect();
    assert!(corrupt(&format!("\"edges\":[{},{},{}", first[0], first[1], first[2]), &format!("\"edges\":[{},{},99999999", first[0], first[1])).contains("out of range"));
    // A file that is JSON but not a snapshot.
    assert!(matches!(expect_error(b"{\"nodes\":[]}"), HeapError::NotHprof));
}

/// DevTools' Comparison view: two snapshots of one process, matched by object id.
#[test]
fn two_snapshots_of_one_process_compare_by_object_id() {
    let (first, second) = (temp("first.heapsnapshot"), temp("second.heapsnapshot"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/two-snapshots.js");
    let status = Command::new("node").arg(&script).arg(&first).arg(&second).status().expect("node runs");
    assert!(status.success(), "node {} failed", script.display());
    let changes = leakscope_heap::diff::compare_object_files(&first, &second).unwrap().expect("one process");
    let change = |name: &str| changes.iter().find(|c| c.class == name).unwrap_or_else(|| panic!("no {name} in {changes:?}"));
    let grow = change("Grow");
    assert_eq!((grow.new_objects, grow.deleted_objects), (5000, 0), "{grow:?}");
    let gone = change("Gone");
    assert_eq!((gone.new_objects, gone.deleted_objects), (0, 3000), "{gone:?}");
    assert!(gone.bytes_delta < 0 && gone.deleted_bytes >= 3000 * 16, "{gone:?}");
    // The 5 000 arrays of 100 numbers are new too, and the biggest change comes first.
    assert!(change("Array").new_objects >= 5000);
    assert!(changes.windows(2).all(|w| w[0].bytes_delta >= w[1].bytes_delta));
    // A snapshot compared with itself changes nothing.
    assert!(leakscope_heap::diff::compare_object_files(&first, &first).unwrap().unwrap().is_empty());
    // Two processes: ids collide with other objects, and no comparison is made.
    let other = shapes_snapshot("other.heapsnapshot", 2000, 100, 10);
    assert!(leakscope_heap::diff::compare_object_files(&first, &other).unwrap().is_none());
    let _ = std::fs::remove_file(&other);
    let _ = std::fs::remove_file(&first);
    let _ = std::fs::remove_file(&second);
}

/// The peer as an oracle: memlab's own retained sizes (`getFullHeapFromFile`,
/// run for real by the host's node) for the 30 biggest objects of a snapshot.
/// The test command installs memlab (`./dev test`, `LEAKSCOPE_MEMLAB_MODULES`).
#[test]
fn retained_sizes_of_the_biggest_objects_equal_memlabs() {
    let modules = std::env::var("LEAKSCOPE_MEMLAB_MODULES").unwrap_or_else(|_| {
        panic!("memlab is not installed: run the suite with ./dev test (it installs @memlab/heap-analysis and sets LEAKSCOPE_MEMLAB_MODULES)")
    });
    let file = shapes_snapshot("memlab.heapsnapshot", 1500, 200, 120);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../end2end/fixtures/bench/memlab-full-heap.js");
    let output = Command::new("node").env("NODE_PATH", &modules).arg(&script).arg(&file).output().expect("node runs");
    assert!(output.status.success(), "memlab failed: {}", String::from_utf8_lossy(&output.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).expect("memlab's JSON");
    let data = std::fs::read(&file).unwrap();
    let graph = V8Graph::parse(&data, &|_| {}, &|| {}).unwrap();
    let dom = dominators::compute(graph.len(), &graph.root_nodes(), |v| graph.successors(v));
    let ours = retained_sizes(&graph, &dom);
    let mut compared = 0;
    for entry in answer["top"].as_array().unwrap() {
        let (size, id, name) = (entry[0].as_u64().unwrap(), entry[1].as_u64().unwrap(), entry[2].as_str().unwrap_or(""));
        let node = graph.index_of(id).unwrap_or_else(|| panic!("memlab's object {id} ({name}) is not in our graph"));
        // The synthetic root and (GC roots) are roots here (as in DevTools), not objects with a size.
        if graph.roots().iter().any(|r| r.0 == node) || name == "(GC roots)" || id == graph.id(0) {
            continue;
        }
        assert_eq!(ours.retained[node as usize], size, "retained size of {name} (id {id}) differs from memlab's");
        compared += 1;
    }
    assert!(compared >= 20, "only {compared} of memlab's biggest objects were comparable");
    let _ = std::fs::remove_file(&file);
}

/// Node ids and names and edge names are read back from the file on demand
/// (`formats/v8/cold.rs`): every one of them must equal what a plain JSON
/// reading of the whole (small) snapshot says, weak edges skipped as the graph skips them.
#[test]
fn ids_and_names_read_back_from_the_file_equal_a_plain_json_reading() {
    let file = shapes_snapshot("cold.heapsnapshot", 200, 30, 20);
    let data = std::fs::read(&file).unwrap();
    let graph = V8Graph::parse(&data, &|_| {}, &|| {}).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&data).unwrap();
    let meta = &json["snapshot"]["meta"];
    let position = |list: &str, name: &str| meta[list].as_array().unwrap().iter().position(|f| f == name).unwrap();
    let (node_fields, edge_fields) = (meta["node_fields"].as_array().unwrap().len(), meta["edge_fields"].as_array().unwrap().len());
    let (id_at, name_at, count_at) = (position("node_fields", "id"), position("node_fields", "name"), position("node_fields", "edge_count"));
    let (type_at, edge_name_at, to_at) = (position("edge_fields", "type"), position("edge_fields", "name_or_index"), position("edge_fields", "to_node"));
    let edge_types: Vec<&str> = meta["edge_types"][0].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let number = |v: &serde_json::Value| v.as_u64().unwrap();
    let (nodes, edges, strings) = (json["nodes"].as_array().unwrap(), json["edges"].as_array().unwrap(), json["strings"].as_array().unwrap());
    assert_eq!(graph.len(), nodes.len() / node_fields);
    let ids = graph.ids();
    let mut edge = 0;
    for v in 0..graph.len() {
        let node = &nodes[v * node_fields..(v + 1) * node_fields];
        assert_eq!(graph.id(v as u32), number(&node[id_at]), "id of node {v}");
        assert_eq!(ids[v], number(&node[id_at]));
        assert_eq!(graph.node_name(v as u32), strings[number(&node[name_at]) as usize].as_str().unwrap(), "name of node {v}");
        let mut named_targets = std::collections::HashSet::new();
        for _ in 0..number(&node[count_at]) {
            let e = &edges[edge * edge_fields..(edge + 1) * edge_fields];
            edge += 1;
            let kind = edge_types[number(&e[type_at]) as usize];
            if kind == "weak" || (kind == "shortcut" && v != 0) {
                continue;
            }
            let to = (number(&e[to_at]) as usize / node_fields) as u32;
            // The first strong edge to a target names it.
            if !named_targets.insert(to) {
                continue;
            }
            let name = &e[edge_name_at];
            let expected = if kind == "element" || kind == "hidden" { format!("[{}]", number(name)) } else { strings[number(name) as usize].as_str().unwrap().to_string() };
            assert_eq!(graph.edge_name(v as u32, to).as_deref(), Some(expected.as_str()), "edge {v} -> {to}");
        }
    }
    // And back: a lookup by id finds every node.
    for v in (0..graph.len() as u32).step_by(97) {
        assert_eq!(graph.index_of(graph.id(v)), Some(v));
    }
    std::fs::remove_file(file).ok();
}
