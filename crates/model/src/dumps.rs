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
