//! Heap dump capture jobs as the API and the container page show them.

use serde::{Deserialize, Serialize};

/// A process Leakscope can take a heap dump of, found inside a container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuntimeProcess {
    /// The pid as seen inside the container.
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `java` or `node`.
    pub runtime: String,
    /// `17.0.15` (from the JDK's `release` file), when known before the capture.
    pub version: Option<String>,
    /// Resident memory, when the listing could read it.
    #[serde(default)]
    pub rss_bytes: Option<u64>,
    /// A tool of the image the recipe uses, e.g. the JDK's `jcmd` beside the JVM.
    #[serde(default)]
    pub tool: Option<String>,
    /// False when the process cannot be dumped as it runs (`note` says why).
    pub capturable: bool,
    /// In words: `started with --inspect: its inspector is already open`,
    /// `started with -XX:+DisableAttachMechanism`, `the image has jcmd` …
    #[serde(default)]
    pub note: Option<String>,
    pub command: String,
    /// What can be captured of it now, richest first: `heap-dump` (JVM),
    /// `heap-snapshot` (Node.js), `object-graph` (Python), `heap-profile`
    /// (Go with pprof), `memory-map` (any process), `core` (any process; an
    /// ELF core for gdb, never the default: it stops the process).
    #[serde(default)]
    pub kinds: Vec<String>,
}

/// `running`, `done` or `failed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CaptureJob {
    pub job_id: String,
    pub container: String,
    pub state: String,
    /// `starting`, `locating`, `dumping`, `copying`, `storing`, `done`.
    pub stage: String,
    /// `java` or `node`, once the process is chosen.
    #[serde(default)]
    pub runtime: Option<String>,
    /// What is captured (`heap-dump`, `memory-map` …), once the process is chosen.
    #[serde(default)]
    pub kind: Option<String>,
    /// How the dump is taken: `jcmd`, `agent` (our static helper speaking
    /// HotSpot's attach protocol), `java-attach` (our jar on the container's
    /// java), `node-inspector` (our helper on node's inspector),
    /// `node-client` (our script on the container's own node), `python-walk`
    /// (our walk queued through ptrace), `python-remote-debug` (our walk handed
    /// over through CPython 3.14's PEP 768), `memory-map`, `core` or `go-pprof`.
    pub recipe: Option<String>,
    pub pid: Option<u32>,
    pub bytes_copied: u64,
    /// Dump size as the JVM reported it, once written.
    pub bytes_total: Option<u64>,
    pub rate_bytes_per_sec: f64,
    /// V8's own progress while it builds a snapshot: objects done of total.
    #[serde(default)]
    pub objects_done: Option<u64>,
    #[serde(default)]
    pub objects_total: Option<u64>,
    /// Node.js: what happened to the process's inspector (`opened for the
    /// snapshot and closed again`, or `already open; left open`).
    #[serde(default)]
    pub inspector: Option<String>,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub dump_id: Option<String>,
    pub error: Option<String>,
    /// Filled when the container runs several dumpable processes and none was chosen.
    pub processes: Vec<RuntimeProcess>,
}

impl CaptureJob {
    /// A job just started: running, at its first stage, nothing known yet.
    pub fn starting(job_id: String, container: String, pid: Option<u32>, started_ms: i64) -> CaptureJob {
        CaptureJob {
            job_id,
            container,
            state: "running".into(),
            stage: "starting".into(),
            runtime: None,
            kind: None,
            recipe: None,
            pid,
            bytes_copied: 0,
            bytes_total: None,
            rate_bytes_per_sec: 0.0,
            objects_done: None,
            objects_total: None,
            inspector: None,
            started_ms,
            finished_ms: None,
            dump_id: None,
            error: None,
            processes: Vec::new(),
        }
    }
}
