//! The result of analysing one heap dump, and the diff of two. Same JSON for
//! the CLI (`leakscope analyze --json`) and the API.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeapSummary {
    /// `hprof` for now; `v8` later.
    pub format: String,
    /// Identifier size in bytes (4 or 8).
    pub id_size: u32,
    /// Dump time, Unix milliseconds (from the HPROF header).
    pub timestamp_ms: i64,
    /// Objects in the dump: instances, arrays and class objects.
    pub objects: u64,
    /// Objects reachable from a GC root.
    pub reachable_objects: u64,
    pub classes: u64,
    /// Sum of shallow sizes of all objects.
    pub heap_bytes: u64,
    /// Sum of shallow sizes of reachable objects (what the root retains).
    pub reachable_bytes: u64,
    pub gc_roots: u64,
    /// Size model used: header bytes, reference bytes, alignment.
    pub object_header_bytes: u32,
    pub reference_bytes: u32,
    pub compressed_oops: bool,
    pub analysis_millis: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistogramEntry {
    /// Java source form: `long[]`, `java.lang.Object[]`, `com.example.Main$Session`.
    pub class: String,
    pub instances: u64,
    pub shallow_bytes: u64,
    /// Retained by all instances together (nested instances counted once).
    pub retained_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DominatorEntry {
    /// The object's id in the dump, hex (`0x...`).
    pub object_id: String,
    pub class: String,
    pub shallow_bytes: u64,
    pub retained_bytes: u64,
    /// Depth in the dominator tree (1 = dominated only by the virtual root).
    pub depth: u32,
}

/// One step on a path from a GC root: the object and the field leading onward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathStep {
    pub object_id: String,
    pub class: String,
    /// Field (or `[index]`) of this object that refers to the next step; `None` on the last step.
    pub field: Option<String>,
    /// For the first step: the GC root kind (`sticky class`, `thread object`, ...).
    pub root_kind: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suspect {
    /// One sentence a person can act on.
    pub description: String,
    /// The object that retains the memory.
    pub object_id: String,
    pub class: String,
    pub retained_bytes: u64,
    /// Share of the reachable heap, 0..1.
    pub retained_share: f64,
    /// Where the many similar objects accumulate (may equal the suspect).
    pub accumulation_object_id: String,
    pub accumulation_class: String,
    /// The most common class among the objects the accumulation point holds.
    pub accumulated_class: Option<String>,
    pub accumulated_instances: u64,
    /// Shortest path from a GC root to the accumulation point.
    pub path: Vec<PathStep>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub summary: HeapSummary,
    /// Sorted by retained bytes, then shallow bytes, largest first.
    pub histogram: Vec<HistogramEntry>,
    /// Objects with the largest retained sizes, largest first, nested ones included.
    pub dominators: Vec<DominatorEntry>,
    pub suspects: Vec<Suspect>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassDelta {
    pub class: String,
    pub instances_before: u64,
    pub instances_after: u64,
    pub instances_delta: i64,
    pub shallow_bytes_before: u64,
    pub shallow_bytes_after: u64,
    pub shallow_bytes_delta: i64,
    pub retained_bytes_before: u64,
    pub retained_bytes_after: u64,
    pub retained_bytes_delta: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuspectDelta {
    pub description: String,
    pub accumulation_class: String,
    pub retained_bytes_before: u64,
    pub retained_bytes_after: u64,
    pub retained_bytes_delta: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeapDiff {
    pub before: HeapSummary,
    pub after: HeapSummary,
    pub heap_bytes_delta: i64,
    /// Per class, sorted by shallow-byte growth, largest first.
    pub classes: Vec<ClassDelta>,
    /// Suspects of the later dump with how much they grew.
    pub suspects: Vec<SuspectDelta>,
}
