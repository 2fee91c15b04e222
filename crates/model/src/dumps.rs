//! Heap dumps as the history lists them.

use serde::{Deserialize, Serialize};

use crate::analysis::HeapSummary;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DumpInfo {
    /// Random id; used in URLs (never a path).
    pub id: String,
    pub created_ms: i64,
    /// The name it was uploaded or captured under.
    pub file_name: String,
    /// `hprof` (Java) or `v8` (a Node.js `.heapsnapshot`).
    pub format: String,
    /// History groups by this: the compose service, else the image, else the container or file.
    pub service: String,
    pub container_name: Option<String>,
    pub container_id: Option<String>,
    pub image: Option<String>,
    /// Uncompressed size (what a download returns).
    pub size_bytes: u64,
    /// Size at rest (zstd).
    pub stored_bytes: u64,
    /// SHA-256 of the uncompressed dump, hex.
    pub sha256: String,
    /// `upload` or `capture`.
    pub trigger: String,
    /// `pending`, `running`, `done` or `failed`.
    pub analysis_state: String,
    pub analysis_error: Option<String>,
    /// While the analysis runs: how far it got (not stored; gone after a restart).
    #[serde(default)]
    pub analysis_progress: Option<AnalysisProgress>,
    pub summary: Option<HeapSummary>,
    /// Captures: the process's pid inside the container.
    #[serde(default)]
    pub pid: Option<u32>,
    /// `java 17.0.15`, `node v20.20.2`, when known.
    #[serde(default)]
    pub runtime: Option<String>,
    /// How long the capture took, end to end.
    #[serde(default)]
    pub capture_ms: Option<u64>,
    /// How long the process was paused while the dump was written.
    #[serde(default)]
    pub pause_ms: Option<u64>,
    /// Who asked for it.
    #[serde(default)]
    pub requested_by: Option<String>,
    /// Captures: the container's working set when the capture started.
    #[serde(default)]
    pub working_set_bytes: Option<u64>,
    /// Captures: the Docker host the container ran on (its display name); uploads have none.
    #[serde(default)]
    pub host: Option<String>,
}

impl DumpInfo {
    /// When a heap dump's live objects explain under half of the container's
    /// working set at capture: what the rest can be, in words. Memory maps and
    /// cores see everything, so they never get one.
    pub fn outside_heap_note(&self) -> Option<String> {
        let what_else = match self.format.as_str() {
            "hprof" => "heap garbage not yet collected and free heap the JVM keeps, metaspace, code cache, thread stacks, direct buffers (NIO) and native libraries",
            "v8" => "garbage not yet collected, Buffers and ArrayBuffers held outside the V8 heap, native add-ons and thread stacks",
            "python" => "memory pymalloc and the C allocator keep after objects are freed, C extensions' own memory (numpy arrays count, but libraries' native caches do not) and thread stacks",
            "pprof" => "memory the Go runtime holds but has not returned to the system, goroutine stacks, and cgo or native allocations (the heap profile samples only Go's own allocations)",
            _ => return None,
        };
        let heap = self.summary.as_ref()?.reachable_bytes;
        let working_set = self.working_set_bytes.filter(|w| *w > 0)?;
        let share = heap as f64 / working_set as f64;
        if share >= 0.5 {
            return None;
        }
        Some(format!(
            "This dump's live objects ({}) are {:.0} % of the container's working set when it was taken ({}). The rest is outside              what a heap dump sees: {what_else}. A memory map of pid {} (any process's Capture → memory map), taken twice, says which kind of memory grows.",
            crate::format_bytes(heap),
            share * 100.0,
            crate::format_bytes(working_set),
            self.pid.map(|p| p.to_string()).unwrap_or_else(|| "the process".into())
        ))
    }
}

/// How far a running analysis got.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnalysisProgress {
    pub percent: u8,
    /// What it is doing, in words: `reading the dump`, `building the object graph`, …
    pub phase: String,
}

/// Narrows the dump history; empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema, utoipa::IntoParams), into_params(parameter_in = Query))]
pub struct DumpFilter {
    pub service: Option<String>,
    /// Name or id.
    pub container: Option<String>,
    /// Prefix of the runtime, e.g. `java` or `java 17`.
    pub runtime: Option<String>,
}

impl DumpFilter {
    /// Blank fields become `None`.
    pub fn cleaned(self) -> DumpFilter {
        let clean = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        DumpFilter { service: clean(self.service), container: clean(self.container), runtime: clean(self.runtime) }
    }
}
