//! The Python front end on real snapshots: `tests/python/shapes.py`, run by
//! the host's python3, walks its own heap with Leakscope's walk (the same
//! code the helper runs inside a target) and counts it independently.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "support/graph_oracle.rs"]
mod graph_oracle;

use leakscope_heap::formats::python::PythonGraph;
use leakscope_heap::{analyze_bytes, HeapError, Options};

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("leakscope-py-{}-{name}", std::process::id()))
}

/// (snapshot bytes, per type name: [count, getsizeof total] from the independent count).
fn shapes(name: &str, items: u32, item_bytes: u32, entries: u32, cycle: u32) -> (Vec<u8>, serde_json::Value) {
    shapes_with(name, items, item_bytes, entries, cycle, &[])
}

fn shapes_with(name: &str, items: u32, item_bytes: u32, entries: u32, cycle: u32, extra: &[&str]) -> (Vec<u8>, serde_json::Value) {
    let (snapshot, oracle) = (temp(&format!("{name}.pyheap")), temp(&format!("{name}.json")));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/shapes.py");
    let status = Command::new("python3")
        .arg(&script)
        .args([&snapshot, &oracle])
        .args([items, item_bytes, entries, cycle].map(|n| n.to_string()))
        .args(extra)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "{} failed", script.display());
    let data = std::fs::read(&snapshot).unwrap();
    let counts = serde_json::from_slice(&std::fs::read(&oracle).unwrap()).unwrap();
    std::fs::remove_file(snapshot).ok();
    std::fs::remove_file(oracle).ok();
    (data, counts)
}

#[test]
fn known_shapes_come_out_with_their_counts_sizes_and_paths() {
    let (data, oracle) = shapes("shapes", 2000, 1000, 5000, 300);
    let analysis = analyze_bytes(&data, &Options::default()).unwrap();
    assert_eq!(analysis.summary.format, "python");
    assert_eq!(analysis.summary.runtime, "python");
    let class = |name: &str| analysis.histogram.iter().find(|e| e.class == name).unwrap_or_else(|| panic!("no {name} in the histogram"));
    // What the program made is counted exactly; builtin types within 1 % (the
    // walk and the count each create and free a few small objects of their own).
    for name in ["__main__.Item", "__main__.Node", "__main__.Cache", "bytearray"] {
        let ours = class(name);
        let theirs = &oracle[name];
        assert_eq!(ours.instances, theirs[0].as_u64().unwrap(), "{name}: {ours:?} vs {theirs}");
    }
    assert_eq!(class("bytearray").shallow_bytes, oracle["bytearray"][1].as_u64().unwrap());
    for name in ["bytes", "str", "int", "tuple", "function"] {
        let (ours, theirs) = (class(name), &oracle[name]);
        let (count, bytes) = (theirs[0].as_f64().unwrap(), theirs[1].as_f64().unwrap());
        assert!((ours.instances as f64 - count).abs() <= count * 0.01 + 2.0, "{name}: {ours:?} vs {theirs}");
        assert!((ours.shallow_bytes as f64 - bytes).abs() <= bytes * 0.01 + 200.0, "{name}: {ours:?} vs {theirs}");
    }
    // Items hold their payloads: each Item retains its bytes.
    let items = class("__main__.Item");
    assert!(items.retained_bytes >= 2000 * 1000, "{items:?}");

    let suspect = analysis.suspects.first().expect("the items list is a suspect");
    assert!(suspect.description.starts_with("module __main__.ITEMS -> list[2000] holds 2 000 Item retaining"), "{}", suspect.description);
    assert_eq!(suspect.path[0].class, "sys.modules");
    assert_eq!(suspect.path[0].field.as_deref(), Some("__main__"));

    // The cache's dict is reached through the instance's attribute, with its name.
    let store = analysis
        .dominators
        .iter()
        .find(|d| d.class == "dict" && d.retained_bytes > 5000 * 50)
        .expect("the cache's dict is a big object");
    let id = u64::from_str_radix(store.object_id.trim_start_matches("0x"), 16).unwrap();
    let detail = leakscope_heap::inspect_object(&data, id, &Options::default()).unwrap().expect("found by its id");
    let fields: Vec<Option<&str>> = detail.gc_path.iter().map(|l| l.field.as_deref()).collect();
    assert!(fields.contains(&Some("_store")) && fields.contains(&Some("CACHE")), "{:?}", detail.gc_path);

    // The ring of Nodes, held only by a global, is kept whole by it.
    let ring = analysis.dominators.iter().find(|d| d.class == "__main__.Node").expect("the ring's head is a big object");
    assert!(ring.retained_bytes >= 300 * (64 + 48), "{ring:?}");
}

#[test]
fn retained_sizes_equal_a_brute_force_oracle() {
    let (data, _) = shapes("oracle", 300, 100, 200, 40);
    let graph = PythonGraph::parse(&data, &|_| {}).unwrap();
    assert!(graph_oracle::reachable(&graph, None).iter().all(|&r| r), "every object is reached from a root");
    graph_oracle::check_retained_sizes(&graph);
}

#[test]
fn bad_snapshots_fail_with_the_offset_and_never_panic() {
    let (data, _) = shapes("bad", 20, 10, 10, 5);
    let expect_error = |bytes: &[u8]| match analyze_bytes(bytes, &Options::default()) {
        Ok(_) => panic!("{} bytes were accepted", bytes.len()),
        Err(e) => e,
    };
    // Cut anywhere: truncated, at or before the cut.
    for cut in [25usize, 200, data.len() / 3, data.len() / 2, data.len() - 30, data.len() - 1] {
        match expect_error(&data[..cut]) {
            HeapError::Truncated { offset, .. } => assert!(offset as usize <= cut, "cut {cut}: offset {offset}"),
            other => panic!("cut at {cut}: {other}"),
        }
    }
    // A newer version says so.
    let mut newer = data.clone();
    newer[b"LEAKSCOPE PYHEAP ".len()] = b'9';
    assert!(expect_error(&newer).to_string().contains("version 9"), "{}", expect_error(&newer));
    // Flipped bytes anywhere: an error or an analysis, never a panic.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..300 {
        let mut bad = data.clone();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = 20 + (seed as usize) % (bad.len() - 20);
            bad[at] = (seed >> 32) as u8;
        }
        let _ = analyze_bytes(&bad, &Options::default());
    }
    // The walk's own error record is reported in its words.
    let mut failed = data[..data.iter().position(|&b| b == b'\n').unwrap() + 1].to_vec();
    let header_end = failed.len();
    failed.extend_from_slice(&data[header_end..data[header_end..].iter().position(|&b| b == b'\n').unwrap() + header_end + 1]);
    failed.push(b'x');
    failed.extend_from_slice(&(9u32).to_le_bytes());
    failed.extend_from_slice(b"MemoryErr");
    assert!(expect_error(&failed).to_string().contains("the walk inside the interpreter failed: MemoryErr"));
}

#[test]
fn tracemalloc_sites_come_with_the_snapshot_when_it_traces() {
    let (quiet, _) = shapes("untraced", 20, 100, 10, 5);
    assert!(analyze_bytes(&quiet, &Options::default()).unwrap().allocation_sites.is_empty());
    let (traced, _) = shapes_with("traced", 2000, 1000, 100, 10, &["trace"]);
    let analysis = analyze_bytes(&traced, &Options::default()).unwrap();
    let top = analysis.allocation_sites.first().expect("tracemalloc's sites are in the snapshot");
    assert!(top.file.ends_with("shapes.py") && top.size_bytes >= 2000 * 1000 && top.blocks >= 2000, "{top:?}");
    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/shapes.py")).unwrap();
    let line = source.lines().nth(top.line as usize - 1).unwrap();
    assert!(line.contains("the biggest allocation site"), "{line}");
    // Two snapshots: the growth per site.
    let (more, _) = shapes_with("traced-more", 4000, 1000, 100, 10, &["trace"]);
    let diff = leakscope_heap::diff::diff(&analysis, &analyze_bytes(&more, &Options::default()).unwrap());
    let grown = diff.allocation_sites.first().unwrap();
    assert_eq!((grown.file.as_str(), grown.line), (top.file.as_str(), top.line));
    assert!(grown.size_bytes_delta >= 2000 * 1000, "{grown:?}");
}
