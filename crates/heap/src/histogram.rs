//! The histogram-only pass: one scan that counts objects per class and keeps
//! no per-object index, for a quick look at a big dump (`--histogram`).

use leakscope_model::analysis::HistogramEntry;

use crate::formats::hprof::graph::{align, build_layouts, class_mirror_field_bytes, class_object_size, instance_end, SizeModel};
use crate::formats::hprof::{parse_with, primitive_array_name, value_size, Kind};
use crate::names::source_name;
use crate::{HeapError, IdMap};

/// Instances and shallow bytes per class; `retained_bytes` is 0 (no graph is built).
pub fn histogram_only(data: &[u8]) -> Result<Vec<HistogramEntry>, HeapError> {
    match crate::formats::sniff(data) {
        Some(crate::Format::V8) => return graph_histogram(&crate::v8::V8Graph::parse(data, &|_| {}, &|| {})?),
        Some(crate::Format::Python) => return graph_histogram(&crate::formats::python::PythonGraph::parse(data, &|_| {})?),
        Some(crate::Format::MemoryMap) => return graph_histogram(&crate::formats::memmap::parse(data)?),
        Some(crate::Format::HeapProfile) => return graph_histogram(&crate::formats::pprof::parse(data)?),
        Some(crate::Format::Core) => return graph_histogram(&crate::formats::elfcore::parse(data)?),
        _ => {}
    }
    // The size model needs the id size before the scan: it is in the header.
    let id_size = if data.len() > 23 && data.starts_with(b"JAVA PROFILE 1.0.") {
        let nul = data.iter().take(64).position(|&b| b == 0).unwrap_or(18);
        data.get(nul + 1..nul + 5).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize).unwrap_or(8)
    } else {
        8
    };
    let model = SizeModel::for_dump(id_size, id_size == 8 && (data.len() as u64) < 30 << 30);
    // Instances: count per class id (their size depends only on the class).
    let mut instances: IdMap<u64> = IdMap::default();
    // Arrays: count and bytes per class id, or per element type for primitive arrays.
    let mut object_arrays: IdMap<(u64, u64)> = IdMap::default();
    let mut primitive_arrays = [(0u64, 0u64); 12];
    let mut classes = 0u64;
    let parsed = parse_with(data, &mut |o| match o.kind {
        Kind::Instance => *instances.entry(o.class_id).or_default() += 1,
        Kind::ObjectArray => {
            let e = object_arrays.entry(o.class_id).or_default();
            e.0 += 1;
            e.1 += model.array(model.reference, o.len as u64);
        }
        Kind::PrimitiveArray(t) => {
            let e = &mut primitive_arrays[t as usize % 12];
            e.0 += 1;
            e.1 += model.array(value_size(t, 8).unwrap_or(1) as u64, o.len as u64);
        }
        Kind::Class => classes += 1,
    })?;
    let layouts = build_layouts(&parsed);
    let mut ends = IdMap::default();
    let name = |cid: u64| {
        parsed
            .class_names
            .get(&cid)
            .and_then(|&sid| parsed.string(sid))
            .map(source_name)
            .unwrap_or_else(|| format!("unknown class 0x{cid:x}"))
    };
    let mut out: Vec<HistogramEntry> = Vec::new();
    for (&cid, &n) in &instances {
        let size = align(instance_end(cid, &layouts, &model, &mut ends, 0));
        out.push(HistogramEntry { class: name(cid), instances: n, shallow_bytes: n * size, retained_bytes: 0 });
    }
    for (&cid, &(n, bytes)) in &object_arrays {
        out.push(HistogramEntry { class: name(cid), instances: n, shallow_bytes: bytes, retained_bytes: 0 });
    }
    for (t, &(n, bytes)) in primitive_arrays.iter().enumerate() {
        if n > 0 {
            out.push(HistogramEntry { class: primitive_array_name(t as u8).to_string(), instances: n, shallow_bytes: bytes, retained_bytes: 0 });
        }
    }
    if classes > 0 {
        let mirror = class_mirror_field_bytes(&parsed, &layouts, &model, &mut ends);
        let class_bytes: u64 = parsed.classes.values().map(|d| class_object_size(&model, mirror, d)).sum();
        out.push(HistogramEntry { class: "java.lang.Class".into(), instances: classes, shallow_bytes: class_bytes, retained_bytes: 0 });
    }
    out.sort_by(|a, b| b.shallow_bytes.cmp(&a.shallow_bytes).then(a.class.cmp(&b.class)));
    Ok(out)
}

/// A snapshot lists every node with its size: its histogram is the node table, counted.
fn graph_histogram(graph: &dyn crate::graph::ObjectGraph) -> Result<Vec<HistogramEntry>, HeapError> {
    let names = graph.class_names();
    let mut totals = vec![(0u64, 0u64); names.len()];
    let counts = graph.counts();
    for (v, &c) in graph.class_of().iter().enumerate() {
        totals[c as usize].0 += counts.as_ref().map_or(1, |n| n[v]);
        totals[c as usize].1 += graph.shallow(v as u32);
    }
    let mut out: Vec<HistogramEntry> = totals
        .into_iter()
        .enumerate()
        .filter(|(_, (n, bytes))| *n > 0 || *bytes > 0)
        .map(|(c, (instances, shallow_bytes))| HistogramEntry { class: names[c].clone(), instances, shallow_bytes, retained_bytes: 0 })
        .collect();
    out.sort_by(|a, b| b.shallow_bytes.cmp(&a.shallow_bytes).then(a.class.cmp(&b.class)));
    Ok(out)
}
