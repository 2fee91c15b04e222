//! Heap dump capture jobs as the API and the container page show them.

use serde::{Deserialize, Serialize};

/// A JVM process found inside a container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JvmProcess {
    /// The pid as seen inside the container.
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `17.0.15`, when the JVM's `release` file says so.
    pub version: Option<String>,
    /// Path of `jcmd` beside the JVM, when the image has one.
    pub jcmd: Option<String>,
    /// False when started with `-XX:+DisableAttachMechanism`.
    pub attach_enabled: bool,
    pub command: String,
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
    /// How the dump is taken: `jcmd` or `agent` (our static helper).
    pub recipe: Option<String>,
    pub pid: Option<u32>,
    pub bytes_copied: u64,
    /// Dump size as the JVM reported it, once written.
    pub bytes_total: Option<u64>,
    pub rate_bytes_per_sec: f64,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub dump_id: Option<String>,
    pub error: Option<String>,
    /// Filled when the container runs several JVMs and none was chosen.
    pub jvms: Vec<JvmProcess>,
}
