//! What grew between two dumps of the same service.

use std::collections::HashMap;

use leakscope_model::analysis::{AllocationSite, AllocationSiteDelta, Analysis, ClassDelta, HeapDiff, ObjectChange, SuspectDelta};

use crate::graph::ObjectGraph;

fn delta(a: u64, b: u64) -> i64 {
    b as i64 - a as i64
}

pub fn diff(before: &Analysis, after: &Analysis) -> HeapDiff {
    let mut classes: HashMap<&str, ClassDelta> = HashMap::new();
    let empty = |class: &str| ClassDelta {
        class: class.to_string(),
        instances_before: 0,
        instances_after: 0,
        instances_delta: 0,
        shallow_bytes_before: 0,
        shallow_bytes_after: 0,
        shallow_bytes_delta: 0,
        retained_bytes_before: 0,
        retained_bytes_after: 0,
        retained_bytes_delta: 0,
    };
    // Classes of one name from several loaders are summed.
    for e in &before.histogram {
        let d = classes.entry(&e.class).or_insert_with(|| empty(&e.class));
        d.instances_before += e.instances;
        d.shallow_bytes_before += e.shallow_bytes;
        d.retained_bytes_before += e.retained_bytes;
    }
    for e in &after.histogram {
        let d = classes.entry(&e.class).or_insert_with(|| empty(&e.class));
        d.instances_after += e.instances;
        d.shallow_bytes_after += e.shallow_bytes;
        d.retained_bytes_after += e.retained_bytes;
    }
    let mut classes: Vec<ClassDelta> = classes
        .into_values()
        .map(|mut d| {
            d.instances_delta = delta(d.instances_before, d.instances_after);
            d.shallow_bytes_delta = delta(d.shallow_bytes_before, d.shallow_bytes_after);
            d.retained_bytes_delta = delta(d.retained_bytes_before, d.retained_bytes_after);
            d
        })
        .collect();
    classes.sort_by(|a, b| {
        b.shallow_bytes_delta.cmp(&a.shallow_bytes_delta).then(b.instances_delta.cmp(&a.instances_delta)).then(a.class.cmp(&b.class))
    });
    let suspects = after
        .suspects
        .iter()
        .map(|s| {
            let before_bytes = before
                .suspects
                .iter()
                .find(|b| b.accumulation_class == s.accumulation_class && b.accumulated_class == s.accumulated_class)
                .map(|b| b.retained_bytes)
                .unwrap_or(0);
            SuspectDelta {
                description: s.description.clone(),
                accumulation_class: s.accumulation_class.clone(),
                retained_bytes_before: before_bytes,
                retained_bytes_after: s.retained_bytes,
                retained_bytes_delta: delta(before_bytes, s.retained_bytes),
            }
        })
        .collect();
    let findings = crate::formats::findings(&after.summary.format, &classes);
    HeapDiff {
        findings,
        before: before.summary.clone(),
        after: after.summary.clone(),
        heap_bytes_delta: delta(before.summary.heap_bytes, after.summary.heap_bytes),
        classes,
        suspects,
        objects: None,
        allocation_sites: site_deltas(&before.allocation_sites, &after.allocation_sites),
    }
}

/// Sites of both snapshots, matched by file and line, most growth first.
fn site_deltas(before: &[AllocationSite], after: &[AllocationSite]) -> Vec<AllocationSiteDelta> {
    let mut out: HashMap<(String, u32), (u64, u64, u64, u64)> = HashMap::new();
    for s in before {
        let e = out.entry((s.file.clone(), s.line)).or_default();
        e.0 += s.size_bytes;
        e.2 += s.blocks;
    }
    for s in after {
        let e = out.entry((s.file.clone(), s.line)).or_default();
        e.1 += s.size_bytes;
        e.3 += s.blocks;
    }
    let mut deltas: Vec<AllocationSiteDelta> = out
        .into_iter()
        .map(|((file, line), (size_before, size_after, blocks_before, blocks_after))| AllocationSiteDelta {
            file,
            line,
            size_bytes_before: size_before,
            size_bytes_after: size_after,
            size_bytes_delta: delta(size_before, size_after),
            blocks_delta: delta(blocks_before, blocks_after),
        })
        .collect();
    deltas.sort_by(|a, b| b.size_bytes_delta.cmp(&a.size_bytes_delta).then(a.file.cmp(&b.file)).then(a.line.cmp(&b.line)));
    deltas.truncate(50);
    deltas
}

/// Constructors kept in an object comparison, biggest change first.
const KEEP_CHANGES: usize = 500;

/// Every object of a graph as (id, class, shallow bytes), sorted by id; class
/// names interned into `classes` so that two graphs share the numbering.
fn objects_by_id(graph: &dyn ObjectGraph, classes: &mut HashMap<String, u32>) -> Vec<(u64, u32, u64)> {
    let names = graph.class_names();
    let shared: Vec<u32> = names
        .iter()
        .map(|name| {
            let next = classes.len() as u32;
            *classes.entry(name.clone()).or_insert(next)
        })
        .collect();
    let class_of = graph.class_of();
    let mut objects: Vec<(u64, u32, u64)> = (0..graph.len() as u32)
        .zip(graph.ids())
        .map(|(node, id)| {
            let shared = shared[class_of[node as usize] as usize];
            (id, shared, graph.shallow(node))
        })
        .collect();
    objects.sort_unstable_by_key(|o| o.0);
    objects
}

/// Objects added and freed per class between two snapshots of one process,
/// matched by object id (DevTools' Comparison view). Only meaningful when the
/// runtime keeps ids stable within a process, as V8 does; `None` when the ids
/// do not match up (objects of one id but different classes: two processes,
/// e.g. across a restart).
pub fn compare_objects(before: &dyn ObjectGraph, after: &dyn ObjectGraph) -> Option<Vec<ObjectChange>> {
    let mut classes = HashMap::new();
    let old = objects_by_id(before, &mut classes);
    let new = objects_by_id(after, &mut classes);
    compare_sorted(&old, &new, classes)
}

/// The same from the compact lists, so a caller can drop one graph before building the next.
fn compare_sorted(old: &[(u64, u32, u64)], new: &[(u64, u32, u64)], classes: HashMap<String, u32>) -> Option<Vec<ObjectChange>> {
    let mut names = vec![String::new(); classes.len()];
    for (name, index) in classes {
        names[index as usize] = name;
    }
    // new_objects, new_bytes, deleted_objects, deleted_bytes per class.
    let mut totals = vec![(0u64, 0u64, 0u64, 0u64); names.len()];
    let (mut i, mut j) = (0, 0);
    let (mut matched, mut mismatched) = (0u64, 0u64);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a.0 == b.0 => {
                matched += 1;
                if a.1 != b.1 {
                    // The id was freed and reused (a Python address): one object gone, one new.
                    mismatched += 1;
                    totals[a.1 as usize].2 += 1;
                    totals[a.1 as usize].3 += a.2;
                    totals[b.1 as usize].0 += 1;
                    totals[b.1 as usize].1 += b.2;
                }
                i += 1;
                j += 1;
            }
            (Some(a), b) if b.is_none_or(|b| a.0 < b.0) => {
                let t = &mut totals[a.1 as usize];
                t.2 += 1;
                t.3 += a.2;
                i += 1;
            }
            (_, Some(b)) => {
                let t = &mut totals[b.1 as usize];
                t.0 += 1;
                t.1 += b.2;
                j += 1;
            }
            _ => break,
        }
    }
    // Within one process an id never changes class; a few can (V8 reuses
    // some ids for internal objects), many cannot.
    if mismatched > matched / 100 + 16 {
        return None;
    }
    let mut changes: Vec<ObjectChange> = totals
        .into_iter()
        .zip(names)
        .filter(|(t, _)| t.0 + t.2 > 0)
        .map(|((new_objects, new_bytes, deleted_objects, deleted_bytes), class)| ObjectChange {
            class,
            new_objects,
            new_bytes,
            deleted_objects,
            deleted_bytes,
            objects_delta: delta(deleted_objects, new_objects),
            bytes_delta: delta(deleted_bytes, new_bytes),
        })
        .collect();
    changes.sort_by(|a, b| b.bytes_delta.cmp(&a.bytes_delta).then(b.new_bytes.cmp(&a.new_bytes)).then(a.class.cmp(&b.class)));
    changes.truncate(KEEP_CHANGES);
    Some(changes)
}

/// [`compare_objects`] of two dump files, one graph in memory at a time.
pub fn compare_object_files(before: &std::path::Path, after: &std::path::Path) -> Result<Option<Vec<ObjectChange>>, crate::HeapError> {
    let mut classes = HashMap::new();
    let mut list = |path: &std::path::Path| -> Result<Vec<(u64, u32, u64)>, crate::HeapError> {
        let dump = crate::DumpFile::open(path)?;
        let graph = crate::build_graph(dump.bytes(), &|_| {}, &|_| {})?;
        Ok(objects_by_id(graph.as_ref(), &mut classes))
    };
    let old = list(before)?;
    let new = list(after)?;
    Ok(compare_sorted(&old, &new, classes))
}
