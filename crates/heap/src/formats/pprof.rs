//! Go heap profiles (`/debug/pprof/heap`): the pprof protobuf, decoded with
//! prost from the message definitions below (the fields of pprof's
//! `profile.proto` that a heap profile uses; written out here so the build
//! needs no protoc).
//!
//! The graph is the profile's call tree: the root holds one node per
//! distinct call path (outermost caller first, inlined frames expanded as
//! `go tool pprof` does), a node's shallow size is the in-use bytes sampled
//! with that exact stack, and its count the in-use objects. So the
//! histogram by function is `go tool pprof -top`: shallow = flat, retained
//! = cum (a recursive function counted once per path, as pprof does), and
//! the dominator tree is the call tree with cumulative sizes.

use std::collections::HashMap;

use prost::Message;

use super::small::{Builder, Node, SmallGraph};
use crate::graph::{DumpFacts, Role};
use crate::HeapError;

#[derive(Clone, PartialEq, Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
}

/// True when these bytes may be a pprof profile: its first fields (up to
/// eight) are fields of `Profile` (numbers 1 to 14) with the wire type the
/// definition gives them (Go writes `period_type` first, other tools `sample_type`).
pub fn looks_like(data: &[u8]) -> bool {
    let mut at = 0usize;
    let varint = |at: &mut usize| -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *data.get(*at)?;
            *at += 1;
            value |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    };
    let mut fields = 0;
    while at < data.len() && fields < 8 {
        let Some(key) = varint(&mut at) else { return fields > 0 };
        let (number, wire) = (key >> 3, key & 7);
        // Messages, strings and packed numbers are length-delimited (2); single numbers are varints (0).
        let expected = match number {
            1..=6 | 11 => 2,
            7..=10 | 12 | 14 => 0,
            13 => wire,
            _ => return false,
        };
        if wire != expected || (wire != 0 && wire != 2) {
            return false;
        }
        let Some(value) = varint(&mut at) else { return fields > 0 };
        if wire == 2 {
            at = at.saturating_add(value as usize);
        }
        fields += 1;
    }
    fields >= 2 || (fields == 1 && at >= data.len())
}

pub fn decode(data: &[u8]) -> Result<Profile, HeapError> {
    let profile = Profile::decode(data).map_err(|e| {
        // prost says "buffer underflow" for a cut message.
        let text = e.to_string();
        if text.contains("underflow") || text.contains("invalid varint") && data.len() < 64 {
            HeapError::Truncated { offset: data.len() as u64, what: "the rest of the pprof profile" }
        } else {
            HeapError::Corrupt { offset: 0, reason: format!("not a pprof profile: {text}") }
        }
    })?;
    if profile.string_table.first().map(String::as_str) != Some("") {
        return Err(HeapError::Corrupt { offset: 0, reason: "not a pprof profile: its string table does not start with the empty string".into() });
    }
    Ok(profile)
}

/// A sample type's values, by name (`inuse_space`).
fn value_index(profile: &Profile, name: &str) -> Option<usize> {
    profile.sample_type.iter().position(|t| profile.string_table.get(t.r#type as usize).map(String::as_str) == Some(name))
}

/// The frames of one sample, outermost caller first, inlined calls expanded.
fn frames<'p>(locations: &crate::IdMap<&'p Location>, sample: &Sample) -> Result<Vec<&'p Line>, HeapError> {
    let mut out = Vec::new();
    for id in sample.location_id.iter().rev() {
        let location = locations.get(id).ok_or_else(|| HeapError::Corrupt { offset: 0, reason: format!("a sample names location {id}, which the profile does not have") })?;
        // A location's last line is the caller the earlier ones were inlined into.
        out.extend(location.line.iter().rev());
    }
    Ok(out)
}

pub fn parse(data: &[u8]) -> Result<SmallGraph, HeapError> {
    graph(&decode(data)?)
}

pub fn graph(profile: &Profile) -> Result<SmallGraph, HeapError> {
    let space = value_index(profile, "inuse_space").or_else(|| {
        let default = profile.default_sample_type;
        profile.sample_type.iter().position(|t| t.r#type == default && default != 0)
    });
    let Some(space) = space.filter(|&i| profile.string_table.get(profile.sample_type[i].unit as usize).map(String::as_str) == Some("bytes")) else {
        let names: Vec<&str> = profile.sample_type.iter().filter_map(|t| profile.string_table.get(t.r#type as usize)).map(String::as_str).collect();
        return Err(HeapError::Corrupt { offset: 0, reason: format!("not a heap profile: its sample types are {} (a heap profile has inuse_space)", names.join(", ")) });
    };
    let objects = value_index(profile, "inuse_objects");
    let string = |i: i64| profile.string_table.get(i as usize).map(String::as_str).unwrap_or("?");
    let functions: crate::IdMap<&Function> = profile.function.iter().map(|f| (f.id, f)).collect();
    let locations: crate::IdMap<&Location> = profile.location.iter().map(|l| (l.id, l)).collect();
    let mut b = Builder::default();
    let class = b.class("(all call paths)");
    let root = b.node(Node { id: 0, class, shallow: 0, count: 0, label: Some("all in-use memory".into()), role: Role::Holder });
    b.root(root, 0);
    // Interned class per function id, and call-tree children by (parent, function id).
    // Keys packed into one u64 for the multiply hasher (SipHash on tuples was
    // most of the build): a class per function id; children by (parent, class);
    // `file.go:42` per (class, line), interned once.
    let mut function_class: crate::IdMap<u32> = crate::IdMap::default();
    let mut children: crate::IdMap<u32> = crate::IdMap::default();
    let mut call_sites: crate::IdMap<u32> = crate::IdMap::default();
    for sample in &profile.sample {
        let bytes = sample.value.get(space).copied().unwrap_or(0);
        let count = objects.and_then(|o| sample.value.get(o).copied()).unwrap_or(0);
        if bytes < 0 || count < 0 {
            return Err(HeapError::Corrupt { offset: 0, reason: "a sample has a negative in-use size".into() });
        }
        if bytes == 0 && count == 0 {
            continue;
        }
        let mut at = root;
        for line in frames(&locations, sample)? {
            let function = functions.get(&line.function_id);
            let class = match function_class.get(&line.function_id) {
                Some(&c) => c,
                None => {
                    let c = b.class(function.map(|f| string(f.name)).unwrap_or("?"));
                    function_class.insert(line.function_id, c);
                    c
                }
            };
            let key = (at as u64) << 32 | class as u64;
            at = match children.get(&key) {
                Some(&node) => node,
                None => {
                    let site_key = (class as u64) << 32 | (line.line as u64 & 0xffff_ffff);
                    let site = match call_sites.get(&site_key) {
                        Some(&n) => n,
                        None => {
                            let file = function.map(|f| string(f.filename)).unwrap_or("");
                            let n = b.edge_name(&format!("{}:{}", file.rsplit('/').next().unwrap_or(file), line.line));
                            call_sites.insert(site_key, n);
                            n
                        }
                    };
                    // Call-path nodes are numbered as they are met: the id is the node's place.
                    let node = b.node(Node { id: b.len() as u64, class, shallow: 0, count: 0, label: None, role: Role::Object });
                    b.edge(at, node, Some(site));
                    children.insert(key, node);
                    node
                }
            };
        }
        let leaf = b.node_mut(at);
        leaf.shallow += bytes as u64;
        leaf.count += count as u64;
    }
    b.sites(allocation_sites(profile));
    b.profile_functions(by_function(profile, &locations));
    Ok(b.finish(
        DumpFacts { format: "pprof", runtime: "go", id_size: 8, timestamp_ms: profile.time_nanos / 1_000_000, ..DumpFacts::default() },
        &["the program"],
    )
    // The root holds everything by construction: the histogram by function is the answer.
    .without_suspects())
}

/// In-use and allocated space and objects per function, flat and cum, as
/// `go tool pprof -top -sample_index=…` counts them: flat goes to the
/// innermost frame (inlined frames expanded), cum once per sample to every
/// function on its stack.
pub fn by_function(profile: &Profile, locations: &crate::IdMap<&Location>) -> Vec<leakscope_model::analysis::ProfileFunction> {
    let index = |name: &str| value_index(profile, name);
    let columns = [index("inuse_space"), index("inuse_objects"), index("alloc_space"), index("alloc_objects")];
    let names: crate::IdMap<&str> = profile.function.iter().map(|f| (f.id, profile.string_table.get(f.name as usize).map(String::as_str).unwrap_or("?"))).collect();
    // Per function id: [flat; 4] and [cum; 4].
    let mut totals: crate::IdMap<([u64; 4], [u64; 4])> = crate::IdMap::default();
    let mut seen: Vec<u64> = Vec::new();
    for sample in &profile.sample {
        let values = columns.map(|c| c.and_then(|c| sample.value.get(c).copied()).unwrap_or(0).max(0) as u64);
        if values.iter().all(|v| *v == 0) {
            continue;
        }
        let Ok(lines) = frames(locations, sample) else { continue };
        if let Some(leaf) = lines.last() {
            let flat = &mut totals.entry(leaf.function_id).or_default().0;
            for (total, value) in flat.iter_mut().zip(values) {
                *total += value;
            }
        }
        seen.clear();
        for line in &lines {
            if seen.contains(&line.function_id) {
                continue;
            }
            seen.push(line.function_id);
            let cum = &mut totals.entry(line.function_id).or_default().1;
            for (total, value) in cum.iter_mut().zip(values) {
                *total += value;
            }
        }
    }
    let mut out: Vec<leakscope_model::analysis::ProfileFunction> = totals
        .into_iter()
        .map(|(id, (flat, cum))| leakscope_model::analysis::ProfileFunction {
            function: names.get(&id).copied().unwrap_or("?").to_string(),
            inuse_space_flat: flat[0],
            inuse_space_cum: cum[0],
            inuse_objects_flat: flat[1],
            alloc_space_flat: flat[2],
            alloc_space_cum: cum[2],
            alloc_objects_flat: flat[3],
        })
        .collect();
    // Functions of one name (rare: the same name from two binaries) are one row, as pprof shows them.
    out.sort_by(|a, b| a.function.cmp(&b.function));
    out.dedup_by(|next, kept| {
        if next.function != kept.function {
            return false;
        }
        kept.inuse_space_flat += next.inuse_space_flat;
        kept.inuse_space_cum += next.inuse_space_cum;
        kept.inuse_objects_flat += next.inuse_objects_flat;
        kept.alloc_space_flat += next.alloc_space_flat;
        kept.alloc_space_cum += next.alloc_space_cum;
        kept.alloc_objects_flat += next.alloc_objects_flat;
        true
    });
    out.sort_by(|a, b| b.inuse_space_cum.cmp(&a.inuse_space_cum).then(b.alloc_space_cum.cmp(&a.alloc_space_cum)).then(a.function.cmp(&b.function)));
    out
}

/// In-use memory by the line that allocated it (the sample's innermost frame):
/// Leakscope's allocation-site table, as for Python's tracemalloc.
pub fn allocation_sites(profile: &Profile) -> Vec<leakscope_model::analysis::AllocationSite> {
    let (Some(space), objects) = (value_index(profile, "inuse_space"), value_index(profile, "inuse_objects")) else {
        return Vec::new();
    };
    let string = |i: i64| profile.string_table.get(i as usize).map(String::as_str).unwrap_or("?");
    let functions: crate::IdMap<&Function> = profile.function.iter().map(|f| (f.id, f)).collect();
    let locations: crate::IdMap<&Location> = profile.location.iter().map(|l| (l.id, l)).collect();
    let mut sites: HashMap<(String, u32), (u64, u64)> = HashMap::new();
    for sample in &profile.sample {
        let Some(line) = sample.location_id.first().and_then(|id| locations.get(id)).and_then(|l| l.line.first()) else { continue };
        let function = functions.get(&line.function_id);
        let file = format!("{} ({})", function.map(|f| string(f.name)).unwrap_or("?"), function.map(|f| string(f.filename)).unwrap_or("?"));
        let e = sites.entry((file, line.line.max(0) as u32)).or_default();
        e.0 += sample.value.get(space).copied().unwrap_or(0).max(0) as u64;
        e.1 += objects.and_then(|o| sample.value.get(o).copied()).unwrap_or(0).max(0) as u64;
    }
    let mut out: Vec<_> = sites
        .into_iter()
        .filter(|(_, (size, _))| *size > 0)
        .map(|((file, line), (size_bytes, blocks))| leakscope_model::analysis::AllocationSite { file, line, size_bytes, blocks })
        .collect();
    out.sort_by(|a, b| b.size_bytes.cmp(&a.size_bytes).then(a.file.cmp(&b.file)));
    out.truncate(100);
    out
}
