//! Types that cross the wire: between the server and the browser (Leptos
//! server functions, the SSE stream) and in the `/api/v1` JSON API.
//!
//! Architecture invariant: this crate compiles for `wasm32-unknown-unknown`
//! and never reads a clock; callers pass `now` in.

pub mod admin;
pub mod alerts;
pub mod api_doc;
pub mod analysis;
pub mod capture;
pub mod dumps;
pub mod reports;
pub mod services;
pub mod flame;
pub mod treemap;
mod format;
mod range;

pub use format::{civil_time, format_bytes, format_duration, format_percent, format_signed_bytes, format_timestamp, rfc3339_utc};
pub use range::{parse_time_ms, RangeError, RangePreset, TimeRange, DEFAULT_PRESET, PRESETS};

use serde::{Deserialize, Serialize};

/// How Leakscope sees its Docker engine right now.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EngineStatus {
    /// The address tried, as the docker CLI would name it (`unix:///var/run/docker.sock`).
    pub address: String,
    pub connected: bool,
    /// Engine version and negotiated API version, once connected.
    pub engine_version: Option<String>,
    pub api_version: Option<String>,
    /// Why the last attempt failed, in words a person can act on.
    pub error: Option<String>,
    /// Where memory numbers come from: `cgroup` (host files) or `api` (Engine stats API).
    pub stats_source: Option<String>,
    /// Requests that panicked since the server started (each answered 500 and logged with its route).
    #[serde(default)]
    pub handler_panics: u64,
    /// The engine's own name for its host (`docker info`'s `Name`), once connected: how
    /// containers, dumps and alerts say where they run.
    #[serde(default)]
    pub host_name: Option<String>,
    /// Unix milliseconds of the last answer from the engine (a sample tick or an event).
    #[serde(default)]
    pub last_seen_ms: Option<i64>,
    /// Whether this server does the work that runs once among servers sharing a database
    /// (automatic captures, notifications); a server with a database of its own always does.
    #[serde(default)]
    pub holds_background: bool,
    /// With a shared database: the server that does that work (host:pid:random), this one or another.
    #[serde(default)]
    pub background_holder: Option<String>,
}

/// A Docker host Leakscope watches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostInfo {
    /// Display name: the engine's host name.
    pub name: String,
    pub connected: bool,
    /// Unix milliseconds it was last heard from; its containers are stale after that, not gone.
    pub last_seen_ms: Option<i64>,
    /// `direct` (the server talks to the engine's API) or `agent`.
    pub via: String,
    /// The engine's address as the docker CLI would name it.
    pub address: String,
}

/// The latest memory reading of one container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemorySnapshot {
    /// Unix milliseconds of the reading.
    pub time_ms: i64,
    /// What `docker stats` shows: usage minus inactive file cache.
    pub working_set_bytes: u64,
    pub usage_bytes: u64,
    pub rss_bytes: u64,
    pub cache_bytes: u64,
    /// The configured memory limit; `None` when the container has none.
    pub limit_bytes: Option<u64>,
    /// False when `HostConfig.Memory` is 0: the kernel then reports host RAM as the limit.
    pub limit_set: bool,
}

impl MemorySnapshot {
    /// Working set as a share of the limit (0.0..), when a limit is set.
    pub fn limit_fraction(&self) -> Option<f64> {
        match self.limit_bytes {
            Some(limit) if limit > 0 => Some(self.working_set_bytes as f64 / limit as f64),
            _ => None,
        }
    }
}

/// One container as the dashboard lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// The Docker host it runs on (the host's display name, as in `/api/v1/hosts`).
    #[serde(default)]
    pub host: String,
    pub image: String,
    pub compose_project: Option<String>,
    pub compose_service: Option<String>,
    /// Docker's state word: `running`, `exited`, `paused`, `restarting`, `created`, `dead`.
    pub state: String,
    /// The configured memory limit, known even while the container is stopped.
    pub limit_bytes: Option<u64>,
    /// Latest reading; `None` while not running or before the first sample.
    pub memory: Option<MemorySnapshot>,
    /// Working set over the last hour, one value per minute (oldest first); `None` for minutes without samples.
    pub sparkline: Vec<Option<u64>>,
    /// The leak detector's latest verdict on this container's series (by name, across restarts).
    #[serde(default)]
    pub leak: Option<LeakStatus>,
    /// When Leakscope dumps this container by itself, in words (`on-leak`, `at-85%`, with where
    /// the setting comes from); `None` when automatic capture is off for it.
    #[serde(default)]
    pub auto_capture: Option<String>,
}

/// Log lines of a container around a moment (the chart's click-through).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogExcerpt {
    pub container: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// `(RFC 3339 timestamp from the engine, stream, text)`, oldest first.
    pub lines: Vec<LogLine>,
    /// True when more lines than the cap fell in the window.
    pub truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    pub timestamp: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub text: String,
}

/// Where a memory chart's time axis ends: the range's end, or later when the
/// leak trend's projection to the limit is drawn (up to half the range more).
/// Shared by the chart and the page, so a click maps to the right time.
pub fn chart_axis_end(from_ms: i64, to_ms: i64, trend_end_ms: Option<i64>, limit_at_ms: Option<i64>) -> i64 {
    let to = to_ms.max(from_ms + 1);
    match (trend_end_ms, limit_at_ms) {
        (Some(end), Some(at)) if end >= to - (to - from_ms) / 20 && at > to => at.min(to + (to - from_ms) / 2),
        _ => to,
    }
}

/// A memory limit suggested from what the container really used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitAdvice {
    /// 99.9th percentile of the per-minute peak working set over the observed window.
    pub p999_bytes: u64,
    /// p99.9 plus 25 % headroom, rounded up to 64 MiB.
    pub suggested_bytes: u64,
    pub observed_minutes: u64,
    /// The command that applies it.
    pub command: String,
}

/// A lifecycle event of a container, as Leakscope recorded it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContainerEvent {
    pub time_ms: i64,
    /// The engine's word: `oom`, `die`, `kill`, `start`, `restart`.
    pub action: String,
    pub exit_code: Option<i64>,
    /// In plain words; exit 137 says `killed (137)` unless an `oom` event confirms `OOM killed (137)`.
    pub label: String,
}

impl ContainerEvent {
    pub fn is_oom_kill(&self) -> bool {
        self.action == "die" && self.label.starts_with("OOM killed")
    }
}

/// The leak detector's verdict, as pages and the API show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeakStatus {
    pub leak: bool,
    /// `leak`, `growing`, `stable`, `warming up` or `too young`.
    pub verdict: String,
    pub slope_bytes_per_hour: f64,
    pub confidence: f64,
    /// `None` without a limit, or when memory is not growing towards it.
    pub time_to_limit_seconds: Option<f64>,
    pub limit_bytes: Option<u64>,
    /// The trend drawn on the chart: the fitted floor from the window's start to its end.
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub floor_start_bytes: f64,
    pub floor_end_bytes: f64,
    /// The reasoning in one sentence.
    pub reason: String,
    pub assessed_ms: i64,
}

impl LeakStatus {
    /// Leaks first, then growing, warming up, stable, too young.
    pub fn severity(&self) -> u8 {
        Self::severity_of(&self.verdict)
    }

    pub fn severity_of(verdict: &str) -> u8 {
        match verdict {
            "leak" => 4,
            "growing" => 3,
            "warming up" => 2,
            "stable" => 1,
            _ => 0,
        }
    }
}

impl ContainerInfo {
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }
}

/// Everything the dashboard needs, pushed whole on every sampling tick.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Overview {
    pub engine: EngineStatus,
    pub containers: Vec<ContainerInfo>,
    /// A verdict per compose service over its running replicas, most severe first.
    #[serde(default)]
    pub services: Vec<services::ServiceVerdict>,
    /// Unix milliseconds of the sampling tick this overview reflects.
    pub updated_ms: i64,
    pub sample_interval_ms: u64,
}

/// One point of a memory series. Raw samples have min == avg == max.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemoryPoint {
    /// Unix milliseconds (start of the bucket for aggregated points).
    pub time_ms: i64,
    /// Mean working set over the bucket.
    pub working_set_bytes: u64,
    pub working_set_min_bytes: u64,
    pub working_set_max_bytes: u64,
    pub usage_bytes: u64,
    pub limit_bytes: Option<u64>,
}

/// A memory series answer: the points plus how they were made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemorySeries {
    pub container: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// Width of one bucket in seconds.
    pub step_seconds: u64,
    /// `raw` (samples), `rollup_1m` (minute rollups) or `rollup_1h` (hourly rollups).
    pub source: String,
    pub points: Vec<MemoryPoint>,
}

/// A container page: the container (live or historical) and where it stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ContainerDetail {
    pub info: ContainerInfo,
    pub engine: EngineStatus,
    /// False when the container no longer exists on the engine (history only).
    pub present: bool,
}

/// The body of every JSON error answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    pub error: String,
}

/// The per-response nonce that lets the hydration script run under the CSP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CspNonce(pub String);

/// Who the page is shown to (for the menu and for forms' CSRF tokens).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// Browser sessions: every form that changes something sends it back.
    pub csrf: Option<String>,
}

impl Me {
    /// Operators and admins may capture, download, create and share.
    pub fn can_operate(&self) -> bool {
        matches!(self.role.as_str(), "operator" | "admin")
    }

    /// `action` with this session's CSRF token in its query (forms post to it).
    pub fn form_action(&self, action: &str) -> String {
        match &self.csrf {
            Some(token) => format!("{action}{}csrf={token}", if action.contains('?') { '&' } else { '?' }),
            None => action.to_string(),
        }
    }
}
